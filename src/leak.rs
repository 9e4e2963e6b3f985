//! Leak verdicts: per process and signal, a bounded history at sample resolution (downsampled for
//! long windows), growth estimates per window from [`crate::analysis`], and a verdict per signal
//! with hysteresis. Everything here is deterministic given the samples and their times: the
//! sampler feeds it live readings ([`observation`]), `analyze` replays traces through the same code.
//!
//! The rule, with constants fixed here (not fitted to any test corpus):
//! - samples taken during the grace period (process warm-up; for what the inspector reads, also
//!   after the inspector first opened) never enter the history; a window speaks once it holds at
//!   least half its length of data after that and 6 floor points;
//! - a window says "leak" when the floor rises with Mann–Kendall confidence ≥ 0.99 at a rate of at
//!   least the signal's minimum ([`min_rate`]), and, when a limit is known, fast enough to reach it
//!   within 30 days — slower growth is certain but harmless;
//! - a signal becomes suspected when any window says leak at two evaluations in a row, and is
//!   cleared when the shortest window that can speak sees no growth (confidence < 0.9 or less than
//!   half the minimum rate), so a plateau clears it within one short window.

use std::collections::VecDeque;
use std::time::Duration;

use crate::analysis::{self, Estimate};

/// The signals analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    HeapUsed,
    Rss,
    External,
    OpenFds,
    Sockets,
    ActiveResources,
}

impl Signal {
    pub const ALL: [Signal; 6] =
        [Signal::HeapUsed, Signal::Rss, Signal::External, Signal::OpenFds, Signal::Sockets, Signal::ActiveResources];

    pub fn as_label(self) -> &'static str {
        match self {
            Signal::HeapUsed => "heap_used",
            Signal::Rss => "rss",
            Signal::External => "external",
            Signal::OpenFds => "open_fds",
            Signal::Sockets => "sockets",
            Signal::ActiveResources => "active_resources",
        }
    }

    /// Whether the signal is read through the inspector (its warm-up restarts when an inspector
    /// is first opened on the process, since that is when its history starts).
    pub fn from_inspector(self) -> bool {
        matches!(self, Signal::HeapUsed | Signal::External | Signal::ActiveResources)
    }

    pub fn is_bytes(self) -> bool {
        matches!(self, Signal::HeapUsed | Signal::Rss | Signal::External)
    }

    fn index(self) -> usize {
        Signal::ALL.iter().position(|s| *s == self).expect("listed")
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The smallest growth that makes a leak, per second: 64 KiB/min of heap or external memory,
/// 256 KiB/min of RSS (allocators keep freed memory, so RSS creeps), one fd, socket or active
/// resource per 10 minutes.
pub fn min_rate(signal: Signal) -> f64 {
    match signal {
        Signal::HeapUsed | Signal::External => 64.0 * 1024.0 / 60.0,
        Signal::Rss => 256.0 * 1024.0 / 60.0,
        Signal::OpenFds | Signal::Sockets | Signal::ActiveResources => 1.0 / 600.0,
    }
}

/// What counts as a drop (a GC, memory returned, handles closed) when finding the floor.
fn min_drop(signal: Signal, value: f64) -> f64 {
    if signal.is_bytes() {
        (value * 0.02).max(MIB)
    } else {
        0.5
    }
}

const CONFIDENT: f64 = 0.99;
const CLEAR_BELOW: f64 = 0.9;
const BUCKETS: usize = 120;
const HARMLESS_AFTER: f64 = 30.0 * 24.0 * 3600.0;

/// One window's downsampled history: the minimum of each bucket (the floor survives
/// downsampling; peaks need not).
#[derive(Debug, Clone)]
struct WindowHistory {
    length: f64,
    bucket: f64,
    points: VecDeque<(f64, f64)>,
    /// Post-GC floor values (heap only), exact.
    floors: VecDeque<(f64, f64)>,
    /// Set when a bucket or a floor point was added or dropped: the estimate is recomputed only
    /// then, so long windows cost little per sample.
    changed: bool,
}

impl WindowHistory {
    fn new(length: Duration, interval: Duration) -> Self {
        let length = length.as_secs_f64();
        // At most BUCKETS points, never finer than the sample interval.
        let bucket = (length / BUCKETS as f64).max(interval.as_secs_f64());
        WindowHistory { length, bucket, points: VecDeque::new(), floors: VecDeque::new(), changed: true }
    }

    fn push(&mut self, t: f64, v: f64) {
        match self.points.back_mut() {
            Some(last) if t - bucket_start(last.0, self.bucket) < self.bucket => {
                if v <= last.1 {
                    *last = (t, v);
                }
            }
            _ => {
                self.points.push_back((t, v));
                self.changed = true;
            }
        }
        while self.points.front().is_some_and(|p| p.0 < t - self.length) {
            self.points.pop_front();
            self.changed = true;
        }
        while self.floors.front().is_some_and(|p| p.0 < t - self.length) {
            self.floors.pop_front();
            self.changed = true;
        }
    }

    fn push_floor(&mut self, t: f64, v: f64) {
        if self.floors.back().is_none_or(|last| t > last.0) {
            // Bounded like the samples: full GCs closer together than a bucket keep their lowest.
            let full = self.floors.len() >= BUCKETS;
            match self.floors.back_mut() {
                Some(last) if full && t - bucket_start(last.0, self.bucket) < self.bucket => {
                    if v <= last.1 {
                        *last = (t, v);
                    }
                }
                _ => self.floors.push_back((t, v)),
            }
            self.changed = true;
        }
    }

    fn span(&self) -> f64 {
        match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        }
    }
}

fn bucket_start(t: f64, bucket: f64) -> f64 {
    (t / bucket).floor() * bucket
}

/// One window's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowResult {
    pub window: Duration,
    pub estimate: Estimate,
    /// Whether the window holds enough data for its estimate to mean something (half its length
    /// and six floor points); its estimate is exported from then on.
    pub enough: bool,
    /// Whether it has enough data and the process is past its warm-up: only then does it vote.
    pub speaks: bool,
    pub says_leak: bool,
}

#[derive(Debug, Clone)]
struct SignalState {
    windows: Vec<WindowHistory>,
    results: Vec<Option<WindowResult>>,
    suspected: bool,
    /// Whether the last observation had a value.
    present: bool,
    /// Consecutive evaluations with a window saying leak.
    streak: u32,
    last: f64,
    /// Whether this signal was ever seen to drop (a sawtooth): then a window needs floor points
    /// from real drops to speak, since a long GC cycle looks like growth between two drops.
    sawtooth: bool,
}

/// The leak state of one process.
#[derive(Debug, Clone)]
pub struct LeakState {
    windows: Vec<Duration>,
    signals: Vec<SignalState>,
    /// The count of full GCs last taken as a heap floor point.
    last_major_gc: u64,
}

/// Settings of the analysis.
#[derive(Debug, Clone)]
pub struct LeakSettings {
    /// Shortest first.
    pub windows: Vec<Duration>,
    pub grace: Duration,
    pub interval: Duration,
}

impl LeakSettings {
    pub fn new(config: &crate::config::LeakConfig, interval: Duration) -> Self {
        LeakSettings { windows: config.sorted_windows(), grace: config.grace_period, interval }
    }
}

/// One sample of a process, as the analysis needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation {
    /// Seconds on a monotonic clock.
    pub t: f64,
    /// Seconds since the process started (grace).
    pub age: f64,
    /// Seconds since the inspector first connected, when it did (heap grace).
    pub inspector_age: Option<f64>,
    pub values: [Option<f64>; 6],
    /// Heap used right after the last full GC, and when (same clock as `t`), with the count of
    /// full GCs so each is taken once.
    pub heap_after_gc: Option<(f64, f64, u64)>,
    /// Limits against which growth is harmless or not: heap limit, smallest memory limit.
    pub heap_limit: Option<f64>,
    pub memory_limit: Option<f64>,
    /// Whether full GCs are observed (the inspector's GC observer runs): then the heap's floor is
    /// only what full GCs leave, never the lows after young collections, which rise between two
    /// full GCs in any busy app.
    pub exact_heap_floors: bool,
}

impl LeakState {
    pub fn new(settings: &LeakSettings) -> Self {
        let signal = SignalState {
            windows: settings.windows.iter().map(|w| WindowHistory::new(*w, settings.interval)).collect(),
            results: vec![None; settings.windows.len()],
            suspected: false,
            present: false,
            streak: 0,
            last: 0.0,
            sawtooth: false,
        };
        LeakState { windows: settings.windows.clone(), signals: vec![signal; Signal::ALL.len()], last_major_gc: 0 }
    }

    /// Takes one observation and re-evaluates every signal.
    pub fn observe(&mut self, o: &Observation, settings: &LeakSettings) {
        let new_floor = o.heap_after_gc.filter(|(_, _, n)| *n > self.last_major_gc);
        if let Some((_, _, n)) = new_floor {
            self.last_major_gc = n;
        }
        for signal in Signal::ALL {
            let s = &mut self.signals[signal.index()];
            s.present = o.values[signal.index()].is_some();
            let Some(v) = o.values[signal.index()] else { continue };
            if s.last - v > min_drop(signal, s.last) {
                s.sawtooth = true;
            }
            s.last = v;
            let grace = settings.grace.as_secs_f64();
            let warmed = o.age >= grace && (!signal.from_inspector() || o.inspector_age.is_none_or(|a| a >= grace));
            // What grows during the warm-up (caches filling, code compiled, the young generation
            // sized) never enters the history: a window judges only what came after it, or the
            // first verdict after the grace period would judge the warm-up itself.
            if warmed {
                for w in s.windows.iter_mut() {
                    w.push(o.t, v);
                    if signal == Signal::HeapUsed {
                        if let Some((t, floor, _)) = new_floor {
                            w.push_floor(t, floor);
                        }
                    }
                }
            }
            let limit = match signal {
                Signal::HeapUsed => o.heap_limit,
                Signal::Rss => o.memory_limit,
                _ => None,
            };
            let mut any_leak = false;
            let mut shortest_speaking: Option<WindowResult> = None;
            let sawtooth = s.sawtooth;
            // Once full GCs are seen, the heap's floor is what they leave: the lows after young
            // collections rise between full GCs in any busy app.
            let full_gc_floors = signal == Signal::HeapUsed && o.exact_heap_floors;
            for (i, w) in s.windows.iter_mut().enumerate() {
                let result = if w.changed || s.results[i].is_none_or(|r| r.speaks != warmed) {
                    w.changed = false;
                    evaluate(signal, w, v, limit, warmed, sawtooth, full_gc_floors, self.windows[i])
                } else {
                    s.results[i]
                };
                if let Some(r) = result {
                    any_leak |= r.says_leak;
                    if r.speaks && shortest_speaking.is_none() {
                        shortest_speaking = Some(r);
                    }
                }
                s.results[i] = result;
            }
            s.streak = if any_leak { s.streak + 1 } else { 0 };
            // The shortest window that speaks has the last word on whether growth goes on: a
            // plateau there clears the verdict even while longer windows still see the old rise.
            let still_growing = shortest_speaking.is_none_or(|r| r.estimate.slope >= min_rate(signal) / 2.0);
            if !s.suspected && s.streak >= 2 && still_growing {
                s.suspected = true;
            } else if s.suspected && (!warmed || !still_growing) {
                s.suspected = false;
            }
        }
    }

    /// Whether the last observation had a value for the signal: its verdict is current. (A
    /// heap verdict is not served while the inspector is away.)
    pub fn has_data(&self, signal: Signal) -> bool {
        self.signals[signal.index()].present
    }

    pub fn suspected(&self, signal: Signal) -> bool {
        self.signals[signal.index()].suspected
    }

    /// Each window's estimate of a signal (none until it has at least two floor points).
    pub fn results(&self, signal: Signal) -> impl Iterator<Item = &WindowResult> {
        self.signals[signal.index()].results.iter().flatten()
    }

    /// The growth rate of a signal worth projecting: the shortest window that speaks and is
    /// confident the floor rises.
    pub fn projected_slope(&self, signal: Signal) -> Option<f64> {
        self.results(signal)
            .find(|r| r.speaks && r.estimate.confidence >= CLEAR_BELOW && r.estimate.slope >= min_rate(signal) / 2.0)
            .map(|r| r.estimate.slope)
    }

    /// Whether any signal has data (the process was observed at least once).
    pub fn windows(&self) -> &[Duration] {
        &self.windows
    }

    /// Seconds until `value` reaches `limit` at the projected growth; none when not growing.
    pub fn eta(&self, signal: Signal, value: f64, limit: f64) -> Option<f64> {
        let slope = self.projected_slope(signal)?;
        Some(((limit - value) / slope).max(0.0))
    }
}

/// What the analysis takes from one target's readings at one sample. `t` is seconds on the
/// sampler's monotonic clock, `unix_now` the wall clock of the same moment (the injected GC
/// observer stamps full GCs with the app's wall clock).
pub fn observation(target: &crate::target::Target, t: f64, now: std::time::Instant, unix_now: f64) -> Observation {
    let r = &target.readings;
    let mut o = Observation { t, age: target.age(now).as_secs_f64(), ..Observation::default() };
    if let Some(p) = &r.procfs {
        o.values[Signal::Rss.index()] = Some(p.resident_bytes as f64);
        o.values[Signal::OpenFds.index()] = p.open_fds.map(|v| v as f64);
        o.values[Signal::Sockets.index()] = p.sockets.map(|s| (s.tcp + s.udp + s.unix + s.other) as f64);
    }
    if let Some(i) = r.inspector.as_ref().filter(|i| i.connected) {
        o.inspector_age = i.first_connected.map(|at| now.saturating_duration_since(at).as_secs_f64());
        if let Some(h) = &i.heap {
            o.values[Signal::HeapUsed.index()] = Some(h.used_bytes as f64);
            o.values[Signal::External.index()] = Some(h.external_bytes as f64);
            o.values[Signal::ActiveResources.index()] = Some(h.active_resources.iter().map(|(_, n)| *n as f64).sum());
            o.heap_limit = Some(h.limit_bytes as f64).filter(|l| *l > 0.0);
        }
        if let Some((at_ms, used)) = i.after_major_gc {
            let ago = (unix_now - at_ms / 1000.0).clamp(0.0, t.max(0.0));
            o.heap_after_gc = Some((t - ago, used as f64, i.major_gcs));
        }
        o.exact_heap_floors = !i.gc.is_empty();
    }
    o.memory_limit = memory_limit(target).map(|(_, limit)| limit);
    o
}

/// The smallest memory limit that applies to a process, and where it comes from (`cgroup` or
/// `pm2`): the one that will stop it first as its memory grows.
pub fn memory_limit(target: &crate::target::Target) -> Option<(&'static str, f64)> {
    let cgroup = target.readings.cgroup.as_ref().and_then(|c| c.limit_bytes).map(|l| ("cgroup", l as f64));
    let pm2 = target.identity.pm2.as_ref().and_then(|p| p.max_memory_restart).map(|l| ("pm2", l as f64));
    match (cgroup, pm2) {
        (Some(c), Some(p)) => Some(if p.1 < c.1 { p } else { c }),
        (c, p) => c.or(p),
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    signal: Signal,
    w: &WindowHistory,
    current: f64,
    limit: Option<f64>,
    warmed: bool,
    sawtooth: bool,
    full_gc_floors: bool,
    window: Duration,
) -> Option<WindowResult> {
    let (estimate, enough) = if full_gc_floors {
        // Exact post-GC heap sizes from the inspector: at least 6 full GCs in the window.
        let floors: Vec<(f64, f64)> = w.floors.iter().copied().collect();
        let e = analysis::estimate_floor(&floors)?;
        let span = match (w.floors.front(), w.floors.back()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        };
        (e, e.points >= 6 && span >= w.length / 2.0)
    } else {
        let points: Vec<(f64, f64)> = w.points.iter().copied().collect();
        let (floors, drops) = analysis::floor_points_counted(&points, min_drop(signal, current));
        if sawtooth {
            // A sawtooth speaks through the lows after its drops: at least 6 GC cycles.
            let e = analysis::estimate_floor(&floors).or_else(|| analysis::estimate(&points, f64::INFINITY))?;
            (e, drops >= 6 && w.span() >= w.length / 2.0)
        } else {
            // A series that never dropped is its own floor; it must fill the window, so that a
            // GC cycle longer than half the window is not taken for growth.
            let e = analysis::estimate(&points, f64::INFINITY)?;
            (e, e.points >= 6 && w.span() >= w.length * 0.9)
        }
    };
    let speaks = warmed && enough;
    let harmful = match limit {
        Some(limit) if estimate.slope > 0.0 => (limit - current) / estimate.slope < HARMLESS_AFTER,
        _ => true,
    };
    let says_leak = speaks && estimate.confidence >= CONFIDENT && estimate.slope >= min_rate(signal) && harmful;
    Some(WindowResult { window, estimate, enough, speaks, says_leak })
}

/// Formats a window the way flags write it (`15m`, `1h`, `30s`).
pub fn window_label(d: Duration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{}s", s.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeakSettings {
        LeakSettings {
            windows: vec![Duration::from_secs(15 * 60), Duration::from_secs(3600), Duration::from_secs(6 * 3600)],
            grace: Duration::from_secs(300),
            interval: Duration::from_secs(5),
        }
    }

    fn heap_obs(t: f64, v: f64) -> Observation {
        let mut o = Observation {
            t,
            age: t + 3600.0,
            inspector_age: Some(t + 3600.0),
            heap_limit: Some(2048.0 * MIB),
            exact_heap_floors: false,
            ..Observation::default()
        };
        o.values[Signal::HeapUsed.index()] = Some(v);
        o
    }

    /// Runs a heap sawtooth through the analysis; returns when (seconds) the verdict was first up
    /// and whether it was up at the end.
    fn run(
        minutes: f64,
        amplitude: f64,
        gc_period: f64,
        leak_per_min: f64,
        plateau_after: Option<f64>,
    ) -> (Option<f64>, bool) {
        let s = settings();
        let mut state = LeakState::new(&s);
        let mut first = None;
        let mut t = 0.0;
        let mut floor = 200.0 * MIB;
        while t < minutes * 60.0 {
            if plateau_after.is_none_or(|p| t < p * 60.0) {
                floor += leak_per_min * MIB / 60.0 * 5.0;
            }
            let phase = (t % gc_period) / gc_period;
            state.observe(&heap_obs(t, floor + amplitude * MIB * phase), &s);
            if state.suspected(Signal::HeapUsed) && first.is_none() {
                first = Some(t);
            }
            t += 5.0;
        }
        (first, state.suspected(Signal::HeapUsed))
    }

    #[test]
    fn one_mib_per_minute_under_a_50_mib_sawtooth_within_ten_minutes() {
        let (first, _) = run(30.0, 50.0, 30.0, 1.0, None);
        let first = first.expect("flagged");
        assert!(first <= 10.0 * 60.0, "flagged after {first} s");
    }

    #[test]
    fn a_quarter_mib_per_minute_within_thirty_minutes() {
        let (first, _) = run(60.0, 50.0, 60.0, 0.25, None);
        assert!(first.expect("flagged") <= 30.0 * 60.0);
    }

    #[test]
    fn a_healthy_sawtooth_is_never_flagged() {
        for gc in [10.0, 45.0, 120.0, 600.0] {
            let (first, _) = run(6.0 * 60.0, 200.0, gc, 0.0, None);
            assert_eq!(first, None, "GC period {gc} s");
        }
    }

    #[test]
    fn a_plateau_clears_the_verdict_within_one_window() {
        let (first, end) = run(60.0, 50.0, 30.0, 1.0, Some(20.0));
        assert!(first.is_some());
        assert!(!end, "cleared 40 minutes into the plateau");
    }

    #[test]
    fn warm_up_raises_no_verdict() {
        let s = settings();
        let mut state = LeakState::new(&s);
        for i in 0..60 {
            let t = i as f64 * 5.0;
            let mut o = heap_obs(t, 100.0 * MIB + t * MIB);
            o.age = t; // younger than the 5 minute grace throughout
            state.observe(&o, &s);
        }
        assert!(!state.suspected(Signal::HeapUsed));
    }

    #[test]
    fn window_labels() {
        assert_eq!(window_label(Duration::from_secs(900)), "15m");
        assert_eq!(window_label(Duration::from_secs(3600)), "1h");
        assert_eq!(window_label(Duration::from_secs(30)), "30s");
    }
}
