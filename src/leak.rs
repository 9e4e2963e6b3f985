//! Leak verdicts: per process and signal, a bounded history of floor points per window, growth
//! estimates per window from [`crate::analysis`], and a verdict per signal with hysteresis.
//! Everything here is deterministic given the samples and their times: the sampler feeds it live
//! readings ([`observation`]), `analyze` and the corpus tests replay traces through the same code.
//!
//! **Floor points.** A leak raises the floor of a signal, not its peaks. The heap's floor is what
//! full GCs leave: exact post-GC sizes where the inspector's GC observer reports them, else the
//! lowest sample after each drop of at least half the largest recent drop (a full GC frees far
//! more than a young collection; the heap only ever falls at a GC, so a heap window with no drop
//! is a GC cycle in progress, never evidence). RSS and external memory are floor points the same
//! way while they have dropped within the longest window (memory given back); one that has not,
//! and the counts (fds, sockets, active resources: no garbage waits for a collection there), are
//! their own floor: the lowest sample per bucket, and a window must then be 90% full, so that a
//! cycle longer than the window is not taken for growth. Floors are kept per window at most one per 1/60 of its length (the
//! lowest), so a window costs at most 60 points of 8 bytes, and its estimate is recomputed at
//! most once per 1/60 of its length, when its points changed.
//!
//! **The rule**, with constants fixed here (chosen from the statistics, not fitted to any corpus):
//! - the grace period (process warm-up; for the inspector's signals, also after the inspector
//!   first opened) is neither judged nor measured: the windows start when it ends, so a warm-up
//!   that ends within it raises nothing, even in a window that would still hold it;
//! - a window speaks once it holds 6 floor points spanning half its length;
//! - a window says "leak" when its floor rises with Mann–Kendall confidence ≥ 1 − 10⁻⁶ (exact for
//!   up to 20 points, so 10 cleanly rising floors can be enough), at a rate of at least the
//!   signal's minimum ([`min_rate`]), and, when a limit is known, fast enough to reach it within
//!   30 days — slower growth is certain but harmless;
//! - ... and only when the growth is sustained: the window without its newest quarter says so
//!   too, by the same test (a step at the end of a window, such as a traffic burst holding
//!   connections or a cache filling, is not a trend at its scale; a weaker confirmation, 0.999,
//!   let bursts through), and the growth goes on into the newest quarter (its floor is above the
//!   quarter's before it by at least half the minimum rate: a bump that fell back, or a rise
//!   that ended, is no leak, however confident the window still is about the rise before);
//! - a signal becomes suspected when a window has said leak for 2/60 of its length (3
//!   evaluations in a row where it gains a point per bucket) and the shortest window that speaks
//!   sees growth (at least half the minimum rate, confidence ≥ 0.9). A window is re-tested
//!   whenever it gains a point, thousands of times a day: the confidence and the hold are what
//!   keep chance trends in noise below one false alarm per process and year (see [`CONFIDENT`]);
//! - it is cleared when the shortest window that speaks sees the growth stopped (less than half
//!   the minimum rate and confidence < 0.9), so a plateau clears it within one short window while
//!   the longer ones still remember the rise (a window whose data reaches back before such a
//!   clear cannot raise the verdict again: the rise it sees was judged over); or when no window
//!   speaks and none has said leak for the length of the
//!   shortest window (full GCs stopped, samples missing: a verdict needs current evidence).

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

/// What counts as a drop (a GC, memory returned, handles closed) when finding the floor. The
/// heap's young generation alone swings by megabytes between two samples, so only a fall of 2%
/// of the heap (at least 1 MiB) counts there; RSS and external memory change by pages and
/// buffers, so any fall of 1 MiB is memory given back; a count drops when one handle closes.
fn min_drop(signal: Signal, value: f64) -> f64 {
    match signal {
        Signal::HeapUsed => (value * 0.02).max(MIB),
        Signal::Rss | Signal::External => MIB,
        Signal::OpenFds | Signal::Sockets | Signal::ActiveResources => 0.5,
    }
}

/// Mann–Kendall confidence a window needs to say leak: a one-sided p-value of 10⁻⁶. A window is
/// re-tested every time it gains a point, thousands of times a day, so a chance trend in pure
/// noise must be that rare; with [`HOLD_BUCKETS`] this gave no false alarm in 20 million evaluations of
/// i.i.d. noise per window size from 8 to 60 points, where 0.99 gave 100 to 1,900 per million.
const CONFIDENT: f64 = 1.0 - 1e-6;
/// How long (in buckets, 1/60 of the window) a window's finding must stand, re-tested on every
/// new point, before the verdict: in a window that gains a point per bucket, 3 evaluations in a
/// row. (A window whose floor points come rarely is re-tested on each; at 10⁻⁶ per test that is
/// rare enough on its own.)
const HOLD_BUCKETS: f64 = 2.0;
/// Below this confidence (and half the minimum rate), growth has stopped.
const CLEAR_BELOW: f64 = 0.9;
/// Floor points a window needs to speak.
const MIN_POINTS: usize = 6;
/// Points per window: one per 1/60 of its length, the most the estimators take.
const BUCKETS: usize = analysis::MAX_POINTS;
/// Growth that needs longer than this to reach a known limit is harmless.
const HARMLESS_AFTER: f64 = 30.0 * 24.0 * 3600.0;
/// Stored times are f32 seconds from a window's origin, moved forward after this long so they
/// keep millisecond precision.
const REBASE_AFTER: f64 = 1.0e6;

/// A stored point: f32 seconds since the window's origin and an f32 value (24 bits of mantissa:
/// 256 bytes at 4 GiB, exact counts below 16 million), half the memory of two f64.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    t: f32,
    v: f32,
}

/// One window's history: bucket minima of the samples, and floor points (post-GC sizes or the
/// lows after drops), the lowest per bucket.
#[derive(Debug, Clone)]
struct WindowHistory {
    length: f64,
    bucket: f64,
    /// Time (same clock as observations) that stored times count from; NaN until the first point.
    origin: f64,
    points: VecDeque<Point>,
    floors: VecDeque<Point>,
    /// Set when a point was added or dropped: the estimate is recomputed only then, and at most
    /// once per bucket, so long windows cost little per sample.
    changed: bool,
    next_evaluation: f64,
    /// Since when its evaluations have said leak.
    leak_since: Option<f64>,
}

impl WindowHistory {
    fn new(length: Duration, interval: Duration) -> Self {
        let length = length.as_secs_f64();
        // At most BUCKETS points, never finer than the sample interval.
        let bucket = (length / BUCKETS as f64).max(interval.as_secs_f64());
        WindowHistory {
            length,
            bucket,
            origin: f64::NAN,
            points: VecDeque::new(),
            floors: VecDeque::new(),
            changed: true,
            next_evaluation: f64::NEG_INFINITY,
            leak_since: None,
        }
    }

    /// `t` as a stored time, moving the origin forward when it has grown old.
    fn stored_time(&mut self, t: f64) -> f32 {
        if self.origin.is_nan() {
            self.origin = t;
        }
        if t - self.origin > REBASE_AFTER {
            let shift = t - self.origin;
            for p in self.points.iter_mut().chain(self.floors.iter_mut()) {
                p.t = (p.t as f64 - shift) as f32;
            }
            self.origin = t;
        }
        (t - self.origin) as f32
    }

    fn push(&mut self, t: f64, v: f64) {
        let point = Point { t: self.stored_time(t), v: v as f32 };
        self.changed |= push_lowest_per_bucket(&mut self.points, point, self.bucket);
    }

    fn push_floor(&mut self, t: f64, v: f64) {
        let point = Point { t: self.stored_time(t), v: v as f32 };
        if self.floors.back().is_none_or(|last| point.t > last.t) {
            self.changed |= push_lowest_per_bucket(&mut self.floors, point, self.bucket);
        }
    }

    /// Drops what is older than the window.
    fn expire(&mut self, now: f64) {
        if self.origin.is_nan() {
            return;
        }
        let oldest = (now - self.length - self.origin) as f32;
        for deque in [&mut self.points, &mut self.floors] {
            while deque.front().is_some_and(|p| p.t < oldest) {
                deque.pop_front();
                self.changed = true;
            }
        }
    }

    /// The time of the oldest point held.
    fn oldest(&self) -> Option<f64> {
        let t = match (self.points.front(), self.floors.front()) {
            (Some(a), Some(b)) => a.t.min(b.t),
            (a, b) => a.or(b)?.t,
        };
        Some(self.origin + t as f64)
    }
}

/// Appends `point`, or keeps the lower of it and the last point when both fall in one bucket.
/// Returns whether the deque changed.
fn push_lowest_per_bucket(deque: &mut VecDeque<Point>, point: Point, bucket: f64) -> bool {
    match deque.back_mut() {
        Some(last) if (point.t as f64 - bucket_start(last.t as f64, bucket)) < bucket => {
            if point.v <= last.v {
                *last = point;
                return true;
            }
            false
        }
        _ => {
            deque.push_back(point);
            true
        }
    }
}

fn bucket_start(t: f64, bucket: f64) -> f64 {
    (t / bucket).floor() * bucket
}

/// Finds the lows after drops in a stream of samples, one sample at a time.
#[derive(Debug, Clone)]
struct DropTracker {
    peak: f64,
    /// The lowest point of the drop in progress.
    low: Option<(f64, f64)>,
    /// When the last drop started.
    last_drop: Option<f64>,
    /// The largest drop seen (size, when), for [`DropTracker::threshold`].
    largest: Option<(f64, f64)>,
}

impl DropTracker {
    fn new() -> Self {
        DropTracker { peak: f64::NEG_INFINITY, low: None, last_drop: None, largest: None }
    }

    /// What counts as a drop of `signal` now. For the heap, a full GC is told from young
    /// collections by its size: it frees the old generation's garbage, far more than a
    /// scavenge frees, so only a fall of half the largest drop seen within `memory` seconds counts
    /// (and at least [`min_drop`]). Without the GC observer this is all the analysis knows of
    /// full GCs; the lows after young collections rise between two full GCs in any busy app.
    fn threshold(&self, signal: Signal, value: f64, t: f64, memory: f64) -> f64 {
        let floor = min_drop(signal, value);
        match self.largest {
            Some((size, at)) if signal == Signal::HeapUsed && t - at <= memory => floor.max(size / 2.0),
            _ => floor,
        }
    }

    /// Takes one sample; returns the low of a drop that just ended.
    fn feed(&mut self, t: f64, v: f64, min_drop: f64, memory: f64) -> Option<(f64, f64)> {
        match self.low {
            Some((_, low)) if v <= low => {
                self.low = Some((t, v));
                None
            }
            Some((lt, low)) => {
                let size = self.peak - low;
                if self.largest.is_none_or(|(largest, at)| size >= largest || t - at > memory) {
                    self.largest = Some((size, lt));
                }
                self.low = None;
                self.peak = v;
                Some((lt, low))
            }
            None if v < self.peak - min_drop => {
                self.low = Some((t, v));
                self.last_drop = Some(t);
                None
            }
            None => {
                self.peak = self.peak.max(v);
                None
            }
        }
    }
}

/// One window's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowResult {
    pub window: Duration,
    pub estimate: Estimate,
    /// Whether the window holds enough data for its estimate to mean something (6 floor points
    /// over half its length); its estimate is exported from then on.
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
    drops: DropTracker,
    /// When a window last said leak.
    last_leak: Option<f64>,
    /// When the verdict was last cleared because growth stopped: a window whose data reaches
    /// back before then cannot raise it again (the rise it still sees was judged over).
    stopped_at: Option<f64>,
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
    /// Points held in the histories of all signals and windows: at most `BUCKETS` points and as
    /// many floor points per window and signal, so the memory a process costs is bounded, and it
    /// fills for as long as the longest window (6h by default) after the process appears.
    pub fn points_held(&self) -> usize {
        self.signals.iter().flat_map(|s| &s.windows).map(|w| w.points.len() + w.floors.len()).sum()
    }

    pub fn new(settings: &LeakSettings) -> Self {
        let signal = SignalState {
            windows: settings.windows.iter().map(|w| WindowHistory::new(*w, settings.interval)).collect(),
            results: vec![None; settings.windows.len()],
            suspected: false,
            present: false,
            drops: DropTracker::new(),
            last_leak: None,
            stopped_at: None,
        };
        LeakState { windows: settings.windows.clone(), signals: vec![signal; Signal::ALL.len()], last_major_gc: 0 }
    }

    /// Takes one observation and re-evaluates every signal.
    pub fn observe(&mut self, o: &Observation, settings: &LeakSettings) {
        let new_floor = o.heap_after_gc.filter(|(_, _, n)| *n > self.last_major_gc);
        if let Some((_, _, n)) = new_floor {
            self.last_major_gc = n;
        }
        let shortest = self.windows.first().map_or(0.0, Duration::as_secs_f64);
        let longest = self.windows.last().map_or(0.0, Duration::as_secs_f64);
        let grace = settings.grace.as_secs_f64();
        for signal in Signal::ALL {
            let s = &mut self.signals[signal.index()];
            s.present = o.values[signal.index()].is_some();
            let Some(v) = o.values[signal.index()] else { continue };
            let warmed = o.age >= grace && (!signal.from_inspector() || o.inspector_age.is_none_or(|a| a >= grace));
            let threshold = s.drops.threshold(signal, v, o.t, longest);
            let low = s.drops.feed(o.t, v, threshold, longest);
            if !warmed {
                // The warm-up is neither judged nor measured: the windows start when it ends. (The
                // drops seen meanwhile still tell which signals cycle.)
                continue;
            }
            // With the GC observer, the heap's floor is only what full GCs leave, never the lows
            // after young collections, which rise between full GCs in any busy app.
            let exact = signal == Signal::HeapUsed && o.exact_heap_floors;
            let floors_only = match signal {
                Signal::HeapUsed => true,
                Signal::Rss | Signal::External => s.drops.last_drop.is_some_and(|d| o.t - d <= longest),
                // A count has no garbage that a collection frees: its floor is its low in each
                // bucket, and a connection closing now and then is no cycle.
                Signal::OpenFds | Signal::Sockets | Signal::ActiveResources => false,
            };
            let limit = match signal {
                Signal::HeapUsed => o.heap_limit,
                Signal::Rss => o.memory_limit,
                _ => None,
            };
            let mut confirmed = false;
            let mut shortest_speaking: Option<WindowResult> = None;
            for (i, w) in s.windows.iter_mut().enumerate() {
                w.expire(o.t);
                w.push(o.t, v);
                match (exact, new_floor, low) {
                    (true, Some((t, floor, _)), _) => w.push_floor(t, floor),
                    (false, _, Some((t, floor))) => w.push_floor(t, floor),
                    _ => {}
                }
                if w.changed && o.t >= w.next_evaluation {
                    w.changed = false;
                    w.next_evaluation = o.t + w.bucket;
                    let result = evaluate(signal, w, floors_only, v, limit, warmed, self.windows[i]);
                    w.leak_since = match result {
                        Some(r) if r.says_leak => w.leak_since.or(Some(o.t)),
                        _ => None,
                    };
                    s.results[i] = result;
                }
                if let Some(r) = s.results[i] {
                    let fresh = s.stopped_at.is_none_or(|at| w.oldest().is_some_and(|t| t >= at));
                    let held = w.leak_since.is_some_and(|since| o.t - since >= HOLD_BUCKETS * w.bucket);
                    confirmed |= r.says_leak && held && fresh;
                    if r.says_leak {
                        s.last_leak = Some(o.t);
                    }
                    if r.speaks && shortest_speaking.is_none() {
                        shortest_speaking = Some(r);
                    }
                }
            }
            // The shortest window that speaks has the last word on whether growth goes on, with
            // a band between raising and clearing: a raise needs it to see growth (half the
            // minimum rate, 0.9 confidence), a clear needs it to see neither. So a plateau
            // clears the verdict within one short window, and the longer windows, which still
            // remember the rise, cannot raise it again while the short one sees no growth.
            let half_rate = min_rate(signal) / 2.0;
            let growing =
                shortest_speaking.is_none_or(|r| r.estimate.slope >= half_rate && r.estimate.confidence >= CLEAR_BELOW);
            let stopped =
                shortest_speaking.is_some_and(|r| r.estimate.slope < half_rate && r.estimate.confidence < CLEAR_BELOW);
            let unsupported = shortest_speaking.is_none() && s.last_leak.is_none_or(|at| o.t - at >= shortest);
            if !s.suspected {
                s.suspected = warmed && confirmed && growing;
            } else if !warmed || stopped || unsupported {
                s.suspected = false;
                if stopped {
                    s.stopped_at = Some(o.t);
                }
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

    /// The windows analysed, shortest first.
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

/// One window's estimate and what it says. `floors_only`: the signal is a sawtooth, so only its
/// floor points count; else the bucket minima are its floor.
fn evaluate(
    signal: Signal,
    w: &WindowHistory,
    floors_only: bool,
    current: f64,
    limit: Option<f64>,
    warmed: bool,
    window: Duration,
) -> Option<WindowResult> {
    let source = if floors_only { &w.floors } else { &w.points };
    let points: Vec<(f64, f64)> = source.iter().map(|p| (p.t as f64, p.v as f64)).collect();
    let estimate = analysis::estimate_floor(&points)?;
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    // Floor points from drops need half the window; a series that never dropped must fill it,
    // so that a cycle longer than half the window is not taken for growth.
    let needed = if floors_only { w.length / 2.0 } else { w.length * 0.9 };
    let enough = estimate.points >= MIN_POINTS && span >= needed;
    let speaks = warmed && enough;
    let rises = |e: &Estimate, confidence: f64| {
        let harmful = match limit {
            Some(limit) if e.slope > 0.0 => (limit - current) / e.slope < HARMLESS_AFTER,
            _ => true,
        };
        e.confidence >= confidence && e.slope >= min_rate(signal) && harmful
    };
    // A leak is sustained growth: it already shows without the window's newest quarter (a jump
    // within that quarter is a step: a traffic burst holding connections or memory, a cache
    // filling; not yet a trend at the window's scale), and it goes on into that quarter, whose
    // floor is above the quarter's before it by half the minimum rate at least (a floor that
    // fell back was a bump; one that stopped rising ended its rise, however confident the window
    // still is about the rise before). Checked only when the whole window says leak.
    let says_leak = speaks && rises(&estimate, CONFIDENT) && {
        let at = |share: f64| points.partition_point(|p| p.0 <= points[0].0 + share * span);
        let (half, three_quarters) = (at(0.5), at(0.75));
        let sustained = analysis::estimate_floor(&points[..three_quarters]).is_some_and(|e| rises(&e, CONFIDENT));
        // The median point (time, value) of a part: its level, and when.
        let level = |part: &[(f64, f64)]| {
            let mut v: Vec<f64> = part.iter().map(|p| p.1).collect();
            v.sort_by(f64::total_cmp);
            let t = part.get(part.len() / 2)?.0;
            Some((t, *v.get(v.len() / 2)?))
        };
        let goes_on = match (level(&points[half..three_quarters]), level(&points[three_quarters..])) {
            (Some((t0, before)), Some((t1, last))) if t1 > t0 => (last - before) / (t1 - t0) >= min_rate(signal) / 2.0,
            _ => false,
        };
        sustained && goes_on
    };
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

    /// Feeds `minutes` of one signal at 5 s through the default windows; returns the times
    /// (minutes) the verdict rose.
    fn feed(
        s: &LeakSettings,
        minutes: f64,
        signal: Signal,
        mut sample: impl FnMut(f64) -> (f64, Option<(f64, f64, u64)>),
    ) -> (Vec<f64>, LeakState) {
        let mut state = LeakState::new(s);
        let mut raised = Vec::new();
        let mut t = 0.0;
        while t < minutes * 60.0 {
            let (v, gc) = sample(t);
            let mut o = Observation {
                t,
                age: t,
                inspector_age: Some(t),
                heap_after_gc: gc,
                exact_heap_floors: gc.is_some(),
                ..Observation::default()
            };
            o.values[signal.index()] = Some(v);
            let was = state.suspected(signal);
            state.observe(&o, s);
            if state.suspected(signal) && !was {
                raised.push(t / 60.0);
            }
            t += 5.0;
        }
        (raised, state)
    }

    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn the_history_fills_for_the_longest_window_and_then_stays_bounded() {
        let s = settings();
        let held = |minutes: f64| {
            let (_, state) = feed(&s, minutes, Signal::Rss, |t| (1e8 + t, None));
            state.points_held()
        };
        let (half_hour, six_hours, two_days) = (held(30.0), held(6.0 * 60.0), held(48.0 * 60.0));
        // 15m: up to 60 buckets of 15 s; 1h: 60 of 1 min; 6h: 60 of 6 min. No floors without
        // drops. After 30 minutes: the first full, about half the second, a twelfth of the third.
        assert!((85..=95).contains(&half_hour), "{half_hour}");
        assert!(six_hours > half_hour && six_hours <= 3 * BUCKETS + 3, "{six_hours}");
        assert_eq!(two_days, six_hours, "bounded after the longest window");
    }

    #[test]
    fn a_warm_up_within_the_grace_period_is_no_evidence() {
        // The floor rises 60 MiB in the first 4.5 minutes of a 5 minute grace period, then is
        // flat: right after the grace period every window would still see that rise.
        let s = settings();
        let (raised, _) = feed(&s, 120.0, Signal::HeapUsed, |t| {
            let floor = 100.0 * MIB + 60.0 * MIB * (t / 270.0).min(1.0);
            let n = (t / 30.0) as u64;
            (floor + 20.0 * MIB * (t % 30.0) / 30.0, Some((n as f64 * 30.0, floor, n + 1)))
        });
        assert!(raised.is_empty(), "raised at {raised:?} min");
    }

    #[test]
    fn chance_trends_in_noise_raise_nothing_in_two_days() {
        // A count that is pure noise, re-tested at every sample for two days: 0.99 confidence
        // with two evaluations in a row raised a verdict here several times a day.
        let s = settings();
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let (raised, _) = feed(&s, 2.0 * 24.0 * 60.0, Signal::Sockets, |_| (20.0 + (noise.next() * 9.0).floor(), None));
        assert!(raised.is_empty(), "raised at {raised:?} min");
    }

    #[test]
    fn a_traffic_burst_holding_connections_is_not_a_leak() {
        // Connections jump from ~10 to ~40 for 3 minutes every 20 minutes, for a day.
        let s = settings();
        let mut noise = Noise(77);
        let (raised, _) = feed(&s, 24.0 * 60.0, Signal::Sockets, |t| {
            let base = if t % 1200.0 >= 1020.0 { 40.0 } else { 10.0 };
            (base + (noise.next() * 4.0).floor(), None)
        });
        assert!(raised.is_empty(), "raised at {raised:?} min");
    }

    #[test]
    fn a_signal_that_stopped_dropping_is_its_own_floor_again() {
        // RSS fell once early (memory given back), then grows 1 MiB/min without ever falling:
        // once the drop has left the longest window the samples are its floor again.
        let s = LeakSettings {
            windows: vec![Duration::from_secs(15 * 60), Duration::from_secs(3600)],
            grace: Duration::from_secs(300),
            interval: Duration::from_secs(5),
        };
        let (raised, _) = feed(&s, 150.0, Signal::Rss, |t| {
            let dropped = if t >= 600.0 { 30.0 * MIB } else { 0.0 };
            (500.0 * MIB - dropped + t / 60.0 * MIB, None)
        });
        let first = *raised.first().expect("flagged");
        assert!((70.0..=90.0).contains(&first), "flagged at {first} min");
    }

    #[test]
    fn the_verdict_clears_when_no_window_speaks_any_more() {
        // A leak flagged from exact floors, then full GCs stop for good (an idle process): the
        // floors age out of every window, and the verdict must not stay up on old evidence.
        let s = settings();
        let (raised, state) = feed(&s, 180.0, Signal::HeapUsed, |t| {
            let gc_t = t.min(45.0 * 60.0);
            let n = (gc_t / 20.0) as u64;
            let floor = 100.0 * MIB + gc_t / 60.0 * MIB;
            (floor + 10.0 * MIB, Some((n as f64 * 20.0, floor, n + 1)))
        });
        assert!(!raised.is_empty(), "the leak was flagged");
        assert!(!state.suspected(Signal::HeapUsed), "still suspected 135 minutes after the last full GC");
    }

    #[test]
    fn history_is_bounded_and_compact() {
        let s = settings();
        let mut noise = Noise(5);
        let (_, state) = feed(&s, 8.0 * 60.0, Signal::Rss, |_| (300.0 * MIB + noise.next() * 5.0 * MIB, None));
        let rss = &state.signals[Signal::Rss.index()];
        for w in &rss.windows {
            assert!(
                w.points.len() <= BUCKETS + 1 && w.floors.len() <= BUCKETS + 1,
                "{} {}",
                w.points.len(),
                w.floors.len()
            );
        }
        assert_eq!(std::mem::size_of::<Point>(), 8);
    }

    #[test]
    fn stored_times_keep_their_precision_on_a_unix_clock() {
        // Traces use unix time (1.7e9 s): points are stored relative to the window's origin.
        let mut w = WindowHistory::new(Duration::from_secs(900), Duration::from_secs(5));
        let t0 = 1.7e9;
        for i in 0..2_000_000u64 {
            w.push(t0 + i as f64 * 5.0, 1.0);
        }
        let last = w.points.back().unwrap();
        assert!((w.origin + last.t as f64 - (t0 + 1_999_999.0 * 5.0)).abs() < 0.01);
    }

    #[test]
    fn window_labels() {
        assert_eq!(window_label(Duration::from_secs(900)), "15m");
        assert_eq!(window_label(Duration::from_secs(3600)), "1h");
        assert_eq!(window_label(Duration::from_secs(30)), "30s");
    }
}
