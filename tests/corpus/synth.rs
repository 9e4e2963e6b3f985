//! Labelled synthetic traces of a Node.js process, drawn from the documented parameter ranges of
//! tests/corpus/README.md with a seeded generator, so a failing draw can be reproduced exactly.
//!
//! A plain module shared by the corpus tests (tests/it/corpus.rs) and the detector benchmark
//! (benches/detectors.rs), both of which include it with `#[path = ...] mod synth;`. It only
//! generates traces and their labels; judging them is the callers' business.
//!
//! The model, at a 5 s sample interval:
//! - the **live heap** is a base size, plus a warm-up that fills then plateaus, plus what a leak
//!   has kept, plus what a traffic burst holds while it lasts;
//! - **old-space garbage** accumulates at a rate set by the traffic, and a **full GC** runs when it
//!   reaches the cycle's amplitude (jittered per cycle; with `amplitude_follows_heap`, scaled with
//!   the live heap as V8 scales its allocation limit, so a growing heap makes full GCs rarer). A
//!   full GC leaves some floating garbage, except an occasional deep (compacting) one that leaves
//!   none; it records the heap right after it and counts itself (`heap_used_after_gc`,
//!   `major_gcs`) when the trace has exact floors;
//! - `heap_used` at a sample is live heap + old-space garbage + the young generation's fill
//!   (uniform noise);
//! - `external` has its own small sawtooth (Buffers freed by the same GCs); `rss` is native
//!   memory + the heap's committed size (the top of its sawtooth, in 256 KiB pages) + external
//!   memory + a jitter of up to 0.5 MiB per sample (the recorded
//!   apps' RSS moves by a median of 0.02 to 0.3 MiB between samples); the counts (`sockets`,
//!   `open_fds`, `active_resources`) are fixed handles plus open connections, which follow the
//!   traffic;
//! - a **restart** (a new pid) starts everything over: base heap, warm-up, no full GC yet.

#![allow(dead_code)]

use nodejs_leak_exporter::leak::Signal;
use nodejs_leak_exporter::trace::{Trace, TraceSample};

pub const MIB: f64 = 1024.0 * 1024.0;
pub const INTERVAL: f64 = 5.0;
/// Where synthetic time starts (unix seconds, 2025-01-01): only differences matter to the
/// analysis; the benchmark moves it to write Prometheus blocks.
pub const EPOCH: f64 = 1_735_689_600.0;

/// The documented parameter ranges (tests/corpus/README.md).
pub mod ranges {
    /// Sawtooth amplitude: old-space garbage a full GC frees (MiB).
    pub const AMPLITUDE_MIB: (f64, f64) = (5.0, 200.0);
    /// Mean time between full GCs at normal traffic (s).
    pub const GC_PERIOD_S: (f64, f64) = (10.0, 600.0);
    /// Leak rates drawn for traces labelled leak, heap and external memory (MiB/min): at least
    /// twice the detector's minimum (64 KiB/min); below that is the gray zone, never asserted.
    pub const LEAK_MIB_PER_MIN: (f64, f64) = (0.125, 2.0);
    /// A native leak shows in RSS only, whose minimum is 256 KiB/min (MiB/min).
    pub const NATIVE_LEAK_MIB_PER_MIN: (f64, f64) = (0.5, 2.0);
    /// Leaked sockets per minute (the minimum is one per 10 minutes).
    pub const SOCKET_LEAK_PER_MIN: (f64, f64) = (0.2, 5.0);
    /// Live heap at start (MiB).
    pub const BASE_HEAP_MIB: (f64, f64) = (20.0, 400.0);
    /// Per-cycle jitter of the GC threshold (relative).
    pub const GC_JITTER: (f64, f64) = (0.05, 0.35);
    /// Young generation fill (MiB, uniform noise on every sample), at most half the amplitude.
    pub const YOUNG_MIB: (f64, f64) = (0.5, 8.0);
    /// Floating garbage a full GC leaves (share of the amplitude, uniform per GC); one full GC in
    /// DEEP_GC_ODDS leaves none.
    pub const FLOATING_SHARE: (f64, f64) = (0.0, 0.1);
    pub const DEEP_GC_ODDS: u32 = 10;
    /// Warm-up within the grace period: duration (min) and live-heap rise (MiB).
    pub const WARMUP_MIN: (f64, f64) = (1.0, 8.0);
    pub const WARMUP_RISE_MIB: (f64, f64) = (10.0, 200.0);
    /// A warm-up longer than the grace period (min), rising like a leak for a while.
    pub const LONG_WARMUP_MIN: (f64, f64) = (20.0, 90.0);
    /// Bursts: every (min), lasting (min), traffic factor, live heap held during a burst (share
    /// of the amplitude, at most 40 MiB). Bursts last less than a quarter of the shortest
    /// window (15 min): a step held longer cannot be told from the start of a fast leak at that
    /// scale; [`LONG_BURST_LENGTH_MIN`] draws those for the benchmark, not for assertions.
    pub const BURST_EVERY_MIN: (f64, f64) = (3.0, 30.0);
    pub const BURST_LENGTH_MIN: (f64, f64) = (0.5, 3.5);
    pub const LONG_BURST_LENGTH_MIN: (f64, f64) = (3.5, 10.0);
    pub const BURST_FACTOR: (f64, f64) = (2.0, 5.0);
    pub const BURST_LIVE_SHARE: (f64, f64) = (0.0, 0.3);
    /// Time between restarts (h).
    pub const RESTART_EVERY_H: (f64, f64) = (1.0, 8.0);
    /// A leak that starts after the process has run healthy for a while starts this long after
    /// the grace period (min).
    pub const LATE_ONSET_MIN: (f64, f64) = (10.0, 120.0);
}

/// splitmix64: small, seedable, good enough for drawing traces.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Log-uniform: each factor of the range equally likely (rates, sizes, periods).
    pub fn log_range(&mut self, (lo, hi): (f64, f64)) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A fresh seed (time and pid), or `CORPUS_SEED` when set, to reproduce a run.
pub fn seed_from_env() -> u64 {
    if let Some(seed) = std::env::var("CORPUS_SEED").ok().and_then(|s| s.trim().parse().ok()) {
        return seed;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut r = Rng::new(nanos as u64 ^ ((std::process::id() as u64) << 32));
    r.next_u64()
}

/// What leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakKind {
    /// Objects kept on the V8 heap (a Map cache without eviction).
    Heap,
    /// Buffers kept outside the heap.
    External,
    /// Pooled connections never released.
    Sockets,
    /// Native memory (an addon): RSS only.
    Native,
}

impl LeakKind {
    pub const ALL: [LeakKind; 4] = [LeakKind::Heap, LeakKind::External, LeakKind::Sockets, LeakKind::Native];

    /// The signal the leak must be flagged on.
    pub fn signal(self) -> Signal {
        match self {
            LeakKind::Heap => Signal::HeapUsed,
            LeakKind::External => Signal::External,
            LeakKind::Sockets => Signal::Sockets,
            LeakKind::Native => Signal::Rss,
        }
    }

    /// Signals the leak really raises: they may be flagged too; the others never.
    pub fn affected(self) -> &'static [Signal] {
        match self {
            LeakKind::Heap => &[Signal::HeapUsed, Signal::Rss],
            LeakKind::External => &[Signal::External, Signal::Rss],
            LeakKind::Sockets => &[Signal::Sockets, Signal::OpenFds, Signal::ActiveResources],
            LeakKind::Native => &[Signal::Rss],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LeakKind::Heap => "heap",
            LeakKind::External => "external",
            LeakKind::Sockets => "sockets",
            LeakKind::Native => "native",
        }
    }
}

/// A leak: what, how fast (bytes or handles per second), from when (seconds after the start of
/// each life of the process).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leak {
    pub kind: LeakKind,
    pub rate: f64,
    pub onset: f64,
}

/// Traffic bursts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bursts {
    pub every: f64,
    pub length: f64,
    pub factor: f64,
    /// Live heap held while a burst lasts (bytes).
    pub live: f64,
}

/// Everything a synthetic trace is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub seed: u64,
    pub duration: f64,
    /// Whether the trace records full GCs (`heap_used_after_gc`, `major_gcs`), as the exporter
    /// does with its GC observer; without, the heap's floor is found from the samples alone.
    pub exact_floors: bool,
    pub base_heap: f64,
    pub amplitude: f64,
    /// The amplitude scales with the live heap (V8's allocation limit follows it).
    pub amplitude_follows_heap: bool,
    pub gc_period: f64,
    pub gc_jitter: f64,
    pub young: f64,
    pub floating_share: f64,
    /// Warm-up: duration (s) and rise of the live heap (bytes).
    pub warmup: Option<(f64, f64)>,
    pub bursts: Option<Bursts>,
    pub restart_every: Option<f64>,
    pub leak: Option<Leak>,
    pub heap_limit: f64,
}

impl Params {
    /// The common draw: a healthy process with any of the features.
    fn draw_base(rng: &mut Rng, duration: f64) -> Params {
        use ranges::*;
        let amplitude = rng.log_range(AMPLITUDE_MIB) * MIB;
        Params {
            seed: 0,
            duration,
            exact_floors: rng.chance(0.5),
            base_heap: rng.log_range(BASE_HEAP_MIB) * MIB,
            amplitude,
            amplitude_follows_heap: rng.chance(0.5),
            gc_period: rng.log_range(GC_PERIOD_S),
            gc_jitter: rng.range(GC_JITTER),
            young: rng.log_range(YOUNG_MIB).min(amplitude / MIB / 2.0) * MIB,
            floating_share: rng.range(FLOATING_SHARE),
            warmup: rng.chance(0.7).then(|| (rng.range(WARMUP_MIN) * 60.0, rng.log_range(WARMUP_RISE_MIB) * MIB)),
            bursts: rng.chance(0.4).then(|| Bursts {
                every: rng.log_range(BURST_EVERY_MIN) * 60.0,
                length: rng.range(BURST_LENGTH_MIN) * 60.0,
                factor: rng.range(BURST_FACTOR),
                live: (rng.range(BURST_LIVE_SHARE) * amplitude).min(40.0 * MIB),
            }),
            restart_every: rng.chance(0.25).then(|| rng.range(RESTART_EVERY_H) * 3600.0),
            leak: None,
            heap_limit: if rng.chance(0.5) { 2048.0 * MIB } else { 4144.0 * MIB },
        }
    }

    /// A healthy process over `duration` seconds.
    pub fn healthy(seed: u64, duration: f64) -> Params {
        let mut rng = Rng::new(seed);
        Params { seed, ..Params::draw_base(&mut rng, duration) }
    }

    /// A healthy process whose traffic bursts last 3.5 to 10 minutes (the benchmark's gray zone).
    pub fn long_bursts(seed: u64, duration: f64) -> Params {
        let mut rng = Rng::new(seed);
        let mut p = Params::draw_base(&mut rng, duration);
        let amplitude = p.amplitude;
        p.bursts = Some(Bursts {
            every: rng.log_range(ranges::BURST_EVERY_MIN).max(12.0) * 60.0,
            length: rng.range(ranges::LONG_BURST_LENGTH_MIN) * 60.0,
            factor: rng.range(ranges::BURST_FACTOR),
            live: (rng.range(ranges::BURST_LIVE_SHARE) * amplitude).min(40.0 * MIB),
        });
        Params { seed, ..p }
    }

    /// A process whose warm-up outlasts the grace period: its heap rises for 20 to 90 minutes,
    /// then is flat for good. No restarts, so the plateau is the rest of the trace.
    pub fn long_warmup(seed: u64, duration: f64) -> Params {
        let mut rng = Rng::new(seed);
        let mut p = Params::draw_base(&mut rng, duration);
        p.warmup = Some((rng.range(ranges::LONG_WARMUP_MIN) * 60.0, rng.log_range((30.0, 300.0)) * MIB));
        p.restart_every = None;
        Params { seed, ..p }
    }

    /// A leak of `kind` at a drawn rate, from the start or later (`grace` seconds: a late onset
    /// is drawn after it).
    pub fn leaking(seed: u64, duration: f64, kind: LeakKind, grace: f64) -> Params {
        let mut rng = Rng::new(seed);
        let mut p = Params::draw_base(&mut rng, duration);
        let rate = match kind {
            LeakKind::Heap | LeakKind::External => rng.log_range(ranges::LEAK_MIB_PER_MIN) * MIB / 60.0,
            LeakKind::Native => rng.log_range(ranges::NATIVE_LEAK_MIB_PER_MIN) * MIB / 60.0,
            LeakKind::Sockets => rng.log_range(ranges::SOCKET_LEAK_PER_MIN) / 60.0,
        };
        let onset = if rng.chance(0.5) { 0.0 } else { grace + rng.range(ranges::LATE_ONSET_MIN) * 60.0 };
        p.leak = Some(Leak { kind, rate, onset });
        // A leak is judged within one life of the process.
        p.restart_every = None;
        Params { seed, ..p }
    }

    /// The label the corpus asserts.
    pub fn label(&self) -> String {
        match self.leak {
            Some(l) => format!("leak:{}", l.kind.signal().as_label()),
            None => "healthy".into(),
        }
    }

    /// One line with every parameter, for test output.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "seed={} {} {:.1}h {} base={:.0}MiB amp={:.0}MiB{} gc={:.0}s jitter={:.2} young={:.1}MiB float={:.2}",
            self.seed,
            self.label(),
            self.duration / 3600.0,
            if self.exact_floors { "exact-floors" } else { "samples-only" },
            self.base_heap / MIB,
            self.amplitude / MIB,
            if self.amplitude_follows_heap { "(scales)" } else { "" },
            self.gc_period,
            self.gc_jitter,
            self.young / MIB,
            self.floating_share,
        );
        if let Some(l) = self.leak {
            let rate = match l.kind {
                LeakKind::Sockets => format!("{:.2}/min", l.rate * 60.0),
                _ => format!("{:.3}MiB/min", l.rate * 60.0 / MIB),
            };
            s += &format!(" leak={}@{} onset={:.0}min", l.kind.name(), rate, l.onset / 60.0);
        }
        if let Some((d, rise)) = self.warmup {
            s += &format!(" warmup={:.0}min/{:.0}MiB", d / 60.0, rise / MIB);
        }
        if let Some(b) = self.bursts {
            s += &format!(
                " bursts=every{:.0}min/{:.1}min/x{:.1}/+{:.0}MiB",
                b.every / 60.0,
                b.length / 60.0,
                b.factor,
                b.live / MIB
            );
        }
        if let Some(r) = self.restart_every {
            s += &format!(" restarts=every{:.1}h", r / 3600.0);
        }
        s
    }
}

/// One life of the process: the state carried from sample to sample.
struct Life {
    start: f64,
    pid: i64,
    live0: f64,
    garbage: f64,
    threshold: f64,
    major_gcs: u64,
    after_gc: Option<f64>,
    ext_garbage: f64,
    native: f64,
    fixed_fds: f64,
    conns: f64,
}

/// Generates the trace `p` describes.
pub fn generate(p: &Params) -> Trace {
    // The draw of noise is its own stream, so the same parameters always give the same trace.
    let mut rng = Rng::new(p.seed ^ 0xC0FF_EE00_D15E_A5E5);
    let ext_amp = rng.range((0.5, 5.0)) * MIB;
    let ext_base = rng.range((1.0, 20.0)) * MIB;
    let mean_conns = rng.log_range((3.0, 40.0));
    let timers = rng.range((3.0, 30.0)).round();
    let mut samples = Vec::with_capacity((p.duration / INTERVAL) as usize + 1);
    let mut life = new_life(p, &mut rng, 0.0, 1000);
    let mut t = 0.0;
    let mut next_restart = p.restart_every;
    while t <= p.duration {
        if next_restart.is_some_and(|r| t >= r) {
            life = new_life(p, &mut rng, t, life.pid + 1);
            next_restart = next_restart.map(|r| r + p.restart_every.unwrap_or(f64::INFINITY));
        }
        let age = t - life.start;
        // Full GCs since the last sample, in sub-steps short against the shortest GC period.
        let steps = 5;
        let dt = INTERVAL / steps as f64;
        if age > 0.0 {
            for i in 0..steps {
                let at = age - INTERVAL + (i as f64 + 1.0) * dt;
                if at < 0.0 {
                    continue;
                }
                let traffic = traffic(p, at);
                life.garbage += p.amplitude / p.gc_period * traffic * dt;
                life.ext_garbage += ext_amp / p.gc_period * traffic * dt;
                if life.garbage >= life.threshold {
                    let deep = rng.next_u64() % ranges::DEEP_GC_ODDS as u64 == 0;
                    let floating = if deep { 0.0 } else { rng.unit() * p.floating_share * p.amplitude };
                    life.garbage = floating;
                    life.ext_garbage = 0.0;
                    life.major_gcs += 1;
                    life.after_gc = Some(live_heap(p, &life, at) + floating);
                    life.threshold = cycle_amplitude(p, &life, at) * (1.0 + p.gc_jitter * (2.0 * rng.unit() - 1.0));
                }
            }
        }
        let live = live_heap(p, &life, age);
        let heap_used = live + life.garbage + rng.unit() * p.young;
        let leaked = |kind: LeakKind| match p.leak {
            Some(l) if l.kind == kind && age > l.onset => l.rate * (age - l.onset),
            _ => 0.0,
        };
        let external = ext_base + life.ext_garbage + leaked(LeakKind::External) + rng.unit() * 0.2 * MIB;
        // The heap's committed size: the top of its sawtooth, in 256 KiB pages.
        let page = 256.0 * 1024.0;
        let committed = ((live + cycle_amplitude(p, &life, age) + p.young) / page).ceil() * page;
        let rss = life.native + committed + external + leaked(LeakKind::Native) + rng.unit() * 0.5 * MIB;
        // Open connections follow the traffic, each sample a noisy draw around the mean.
        let want = mean_conns * traffic(p, age);
        life.conns += (want - life.conns) * 0.3;
        let conns = (life.conns + rng.normal() * life.conns.sqrt()).max(0.0).round();
        let sockets = conns + 2.0 + leaked(LeakKind::Sockets).floor();
        let mut s = TraceSample {
            time: EPOCH + t + (rng.unit() - 0.5) * 0.2,
            pid: Some(life.pid),
            heap_limit: Some(p.heap_limit),
            ..TraceSample::default()
        };
        s.set(Signal::HeapUsed, Some(heap_used.round()));
        s.set(Signal::External, Some(external.round()));
        s.set(Signal::Rss, Some(rss.round()));
        s.set(Signal::Sockets, Some(sockets));
        s.set(Signal::OpenFds, Some(life.fixed_fds + sockets));
        s.set(Signal::ActiveResources, Some(timers + sockets));
        if p.exact_floors {
            s.heap_after_gc = life.after_gc.map(f64::round);
            s.major_gcs = Some(life.major_gcs);
        }
        samples.push(s);
        t += INTERVAL;
    }
    Trace { name: format!("synth-{}", p.seed), samples }
}

fn new_life(p: &Params, rng: &mut Rng, start: f64, pid: i64) -> Life {
    let mut life = Life {
        start,
        pid,
        live0: p.base_heap,
        garbage: 0.0,
        threshold: 0.0,
        major_gcs: 0,
        after_gc: None,
        ext_garbage: 0.0,
        native: rng.range((30.0, 80.0)) * MIB,
        fixed_fds: rng.range((15.0, 40.0)).round(),
        conns: 0.0,
    };
    life.threshold = cycle_amplitude(p, &life, 0.0) * (1.0 + p.gc_jitter * (2.0 * rng.unit() - 1.0));
    // A process is found at a random point of its first cycle.
    life.garbage = rng.unit() * life.threshold;
    life
}

/// The live heap `age` seconds into a life.
fn live_heap(p: &Params, life: &Life, age: f64) -> f64 {
    let mut live = life.live0;
    if let Some((d, rise)) = p.warmup {
        let u = (age / d).min(1.0);
        live += rise * (1.0 - (1.0 - u) * (1.0 - u));
    }
    if let Some(l) = p.leak.filter(|l| l.kind == LeakKind::Heap && age > l.onset) {
        live += l.rate * (age - l.onset);
    }
    if let Some(b) = p.bursts.filter(|b| in_burst(b, age)) {
        live += b.live;
    }
    live
}

/// The garbage a cycle collects. With `amplitude_follows_heap` it grows with the live heap, as
/// V8's allocation limit does, up to its largest growing factor (4: three times the live heap
/// of garbage) or the drawn amplitude when that is larger.
fn cycle_amplitude(p: &Params, life: &Life, age: f64) -> f64 {
    if p.amplitude_follows_heap {
        let live = live_heap(p, life, age);
        (p.amplitude * (live / life.live0).max(1.0)).min(p.amplitude.max(3.0 * live))
    } else {
        p.amplitude
    }
}

fn in_burst(b: &Bursts, age: f64) -> bool {
    age % b.every >= b.every - b.length
}

fn traffic(p: &Params, age: f64) -> f64 {
    match p.bursts {
        Some(b) if in_burst(&b, age) => b.factor,
        _ => 1.0,
    }
}

/// The heap-leak trace the delay targets are stated for: `rate` MiB/min under an
/// `amplitude` MiB sawtooth with a `gc_period` s GC period, from `onset`; the rest drawn (base
/// heap, jitter, young-generation noise, floating garbage, warm-up within the grace period;
/// the amplitude stays what it says) except traffic bursts and restarts, which are confounders of their own (a burst holding
/// 15 MiB looks like 15 minutes of this leak) and are reported apart in the benchmark.
pub fn target_case(
    seed: u64,
    duration: f64,
    exact_floors: bool,
    amplitude_mib: f64,
    gc_period: f64,
    rate_mib_min: f64,
    onset: f64,
) -> Params {
    let mut rng = Rng::new(seed);
    let mut p = Params::draw_base(&mut rng, duration);
    p.exact_floors = exact_floors;
    p.amplitude = amplitude_mib * MIB;
    p.amplitude_follows_heap = false;
    p.young = p.young.min(p.amplitude / 2.0);
    p.gc_period = gc_period;
    p.leak = Some(Leak { kind: LeakKind::Heap, rate: rate_mib_min * MIB / 60.0, onset });
    p.restart_every = None;
    p.bursts = None;
    Params { seed, ..p }
}

/// A day of one healthy app assembled from its recording: the part after its first 20 minutes
/// (warm-up) repeated, each copy shifted in time to follow on at 5 s and in level so that every
/// signal continues where the previous copy ended (the heap at its post-GC floor, the others at
/// their low over the copy's first and last 5 minutes); the full GC count keeps counting; one pid
/// throughout.
pub fn assembled_day(full: &Trace) -> Trace {
    let t0 = full.samples[0].time;
    let mut out: Vec<_> = full.samples.iter().take_while(|s| s.time - t0 < 1200.0).cloned().collect();
    let segment: Vec<_> = full.samples.iter().filter(|s| s.time - t0 >= 1200.0).cloned().collect();
    let pid = out[0].pid;
    while out.last().unwrap().time - t0 < 24.0 * 3600.0 {
        let last = out.last().unwrap().clone();
        let n = 60.min(segment.len());
        let tail = &out[out.len() - n..];
        let low =
            |xs: &[TraceSample], sig: Signal| xs.iter().filter_map(|s| s.value(sig)).fold(f64::INFINITY, f64::min);
        let floor_end = tail.iter().rev().find_map(|s| s.heap_after_gc);
        let floor_start = segment.iter().find_map(|s| s.heap_after_gc);
        let heap_shift = match (floor_end, floor_start) {
            (Some(a), Some(b)) => a - b,
            _ => 0.0,
        };
        let shifts: Vec<f64> = Signal::ALL
            .iter()
            .map(|&sig| {
                if sig == Signal::HeapUsed {
                    return heap_shift;
                }
                let (a, b) = (low(tail, sig), low(&segment[..n], sig));
                if a.is_finite() && b.is_finite() {
                    a - b
                } else {
                    0.0
                }
            })
            .collect();
        let dt = last.time + 5.0 - segment[0].time;
        let (gcs, gc0) = (last.major_gcs.unwrap_or(0), segment[0].major_gcs.unwrap_or(0));
        for s in &segment {
            let mut c = s.clone();
            c.time += dt;
            c.pid = pid;
            for (i, sig) in Signal::ALL.into_iter().enumerate() {
                let v = c.value(sig).map(|v| v + shifts[i]);
                c.set(sig, v);
            }
            c.heap_after_gc = c.heap_after_gc.map(|v| v + heap_shift);
            c.major_gcs = c.major_gcs.map(|k| gcs + k.saturating_sub(gc0) + 1);
            out.push(c);
        }
    }
    Trace { name: format!("{} x24h", full.name), samples: out }
}
