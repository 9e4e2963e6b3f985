//! The sampler: every `--sample.interval`, discover targets, run every collector over them, and
//! publish one immutable [`Snapshot`] that scrapes serve as is.
//!
//! It runs on its own thread, so a slow `/proc` read never delays a scrape, and a scrape never
//! triggers a read. Failures are counted by collector and reason and logged at most once a minute
//! per kind; a vanished process is not a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry as PromRegistry};
use serde::Serialize;
use tokio::sync::watch;

use crate::collect::procfs::{Clock, ProcfsCollector};
use crate::collect::{Collector, Outcome, Reason};
use crate::config::Config;
use crate::discovery::Discovery;
use crate::exposition::{render_identity, Families};
use crate::target::{Registry, Target, TargetState};

/// What one sample produced: the metrics text and what the status page shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Rendered exposition text of every target and of the exporter itself.
    pub metrics: String,
    pub targets: Vec<TargetStatus>,
    /// Unix time of the sample; zero before the first one.
    pub sampled_at: f64,
    pub sample_duration_seconds: f64,
    /// Whether at least one sample has completed.
    pub ready: bool,
}

/// One target as the status page and `/api/v1/targets` show it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub pid: i32,
    pub app: String,
    pub state: &'static str,
    pub age_seconds: f64,
    pub user: String,
    pub script: Option<String>,
    pub exe: Option<String>,
    pub pm2_id: Option<String>,
    pub node_version: Option<String>,
    /// `namespace/pod/container` of a process in a Kubernetes pod whose names are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<PodStatus>,
    pub collectors: Vec<CollectorStatus>,
    /// The leak analysis of each signal that has data.
    pub leak: Vec<LeakStatus>,
}

/// The pod a process runs in, as its series label it.
#[derive(Debug, Clone, Serialize)]
pub struct PodStatus {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// One signal's leak analysis as the status page, the JSON API and the demo show it.
#[derive(Debug, Clone, Serialize)]
pub struct LeakStatus {
    pub signal: &'static str,
    pub suspected: bool,
    pub windows: Vec<WindowStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowStatus {
    pub window: String,
    /// Units (bytes or count) per second of the floor.
    pub growth_per_second: f64,
    pub confidence: f64,
    /// Whether the window holds enough data, past the warm-up, to vote.
    pub speaks: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectorStatus {
    pub collector: &'static str,
    /// Whether everything the collector reads was readable.
    pub complete: bool,
    /// Parts that could not be read, with the reason: `fds and sockets: permission_denied`.
    pub missing: Vec<String>,
}

/// The exporter's own metrics, `nodejs_leak_exporter_*`.
struct SelfMetrics {
    registry: PromRegistry,
    targets: GaugeVec,
    collector_duration: GaugeVec,
    collector_errors: IntCounterVec,
    sample_duration: Gauge,
    samples: IntCounter,
    last_sample: Gauge,
    discovered: IntCounter,
    processes_scanned: Gauge,
    history_points: Gauge,
}

impl SelfMetrics {
    fn new() -> Self {
        let registry = PromRegistry::new();
        let build_info = GaugeVec::new(
            Opts::new("nodejs_leak_exporter_build_info", "Version of nodejs-leak-exporter, constant 1."),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("NLE_REVISION").unwrap_or("unknown")])
            .set(1.0);
        let targets = GaugeVec::new(
            Opts::new("nodejs_leak_exporter_targets", "Watched processes by state: warming (younger than the minimum age), active, exited (kept for the exit retention)."),
            &["state"],
        )
        .expect("valid metric");
        let collector_duration = GaugeVec::new(
            Opts::new(
                "nodejs_leak_exporter_collector_duration_seconds",
                "Time the collector took over all targets in the last sample.",
            ),
            &["collector"],
        )
        .expect("valid metric");
        let collector_errors = IntCounterVec::new(
            Opts::new(
                "nodejs_leak_exporter_collector_errors_total",
                "Reads that failed, by collector and reason; a process that exits is not an error.",
            ),
            &["collector", "reason"],
        )
        .expect("valid metric");
        let sample_duration =
            Gauge::new("nodejs_leak_exporter_sample_duration_seconds", "Duration of the last sample of all targets.")
                .expect("valid metric");
        let samples = IntCounter::new("nodejs_leak_exporter_samples_total", "Samples taken.").expect("valid metric");
        let last_sample = Gauge::new(
            "nodejs_leak_exporter_last_sample_timestamp_seconds",
            "Unix time the last sample completed; stale when the sampler is stuck.",
        )
        .expect("valid metric");
        let discovered = IntCounter::new(
            "nodejs_leak_exporter_discovered_processes_total",
            "Node.js processes discovered since the exporter started.",
        )
        .expect("valid metric");
        let processes_scanned = Gauge::new(
            "nodejs_leak_exporter_scanned_processes",
            "Processes of any kind seen under procfs at the last scan.",
        )
        .expect("valid metric");
        // Tells the exporter's own memory growth apart from a leak: its histories fill for the
        // longest leak window after start (and shrink with the targets), then stay bounded.
        let history_points = Gauge::new(
            "nodejs_leak_exporter_history_points",
            "Points held in the leak histories of all targets (8 bytes each); bounded by targets x signals x windows x 120.",
        )
        .expect("valid metric");
        for c in [
            Box::new(build_info) as Box<dyn prometheus::core::Collector>,
            Box::new(history_points.clone()),
            Box::new(targets.clone()),
            Box::new(collector_duration.clone()),
            Box::new(collector_errors.clone()),
            Box::new(sample_duration.clone()),
            Box::new(samples.clone()),
            Box::new(last_sample.clone()),
            Box::new(discovered.clone()),
            Box::new(processes_scanned.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        SelfMetrics {
            registry,
            targets,
            collector_duration,
            collector_errors,
            sample_duration,
            samples,
            last_sample,
            discovered,
            processes_scanned,
            history_points,
        }
    }
}

/// Logs a failure kind at most once a minute, saying how many were held back.
#[derive(Default)]
struct LogLimiter {
    last: HashMap<(&'static str, &'static str), (Instant, u64)>,
}

impl LogLimiter {
    fn warn(&mut self, collector: &'static str, reason: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let entry = self.last.entry((collector, reason)).or_insert((now - Duration::from_secs(3600), 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            let suppressed = entry.1;
            *entry = (now, 0);
            tracing::warn!(collector, reason, suppressed, "{}", message());
        } else {
            entry.1 += 1;
        }
    }
}

pub struct Sampler {
    procfs: PathBuf,
    interval: Duration,
    discovery: Discovery,
    registry: Registry,
    collectors: Vec<Box<dyn Collector>>,
    self_metrics: SelfMetrics,
    own: ProcfsCollector,
    clock: Clock,
    limiter: LogLimiter,
    publish: watch::Sender<Arc<Snapshot>>,
    leak: crate::leak::LeakSettings,
    /// The origin of the analysis clock.
    epoch: Instant,
    /// Where a copy of the sample goes once per OTLP interval, when pushing is on.
    otlp: Option<crate::otlp::Handoff>,
    /// Whether the snapshot carries the metrics text (`--web.disable-metrics` turns it off).
    serve_metrics: bool,
    /// The configuration in use, and what collectors are built with: a reload rebuilds from them.
    config: Config,
    context: crate::collect::Context,
}

/// What the sampler thread is told between two samples.
pub enum Control {
    /// Apply a new, validated configuration ([`Sampler::apply`]) and answer how it went.
    Apply(Box<Config>, tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Finish: undo what was injected into processes and return.
    Stop,
}

impl Sampler {
    pub fn new(
        config: &Config,
        context: &crate::collect::Context,
        publish: watch::Sender<Arc<Snapshot>>,
    ) -> Result<Self, crate::config::ConfigError> {
        let discovery =
            Discovery::new(&config.paths.procfs, &config.paths.rootfs.join("etc/passwd"), config.discovery.clone())?;
        Ok(Sampler {
            procfs: config.paths.procfs.clone(),
            interval: config.sample.interval,
            discovery,
            registry: Registry::new(config.discovery.min_age, config.discovery.exit_retention),
            collectors: crate::collect::build_enabled(config, context),
            self_metrics: SelfMetrics::new(),
            own: ProcfsCollector::new(std::path::Path::new("/proc"), false),
            clock: Clock::read(&config.paths.procfs),
            limiter: LogLimiter::default(),
            publish,
            leak: crate::leak::LeakSettings::new(&config.leak, config.sample.interval),
            epoch: Instant::now(),
            otlp: None,
            serve_metrics: !config.web.disable_metrics,
            config: config.clone(),
            context: context.clone(),
        })
    }

    /// Pushes a copy of the sample over OTLP once per interval, through `handoff`.
    pub fn set_otlp(&mut self, handoff: crate::otlp::Handoff) {
        self.otlp = Some(handoff);
    }

    /// Samples every interval until told to stop (or every sender is gone); applies new
    /// configurations between samples.
    pub fn run(mut self, control: Receiver<Control>) {
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next {
                self.sample_once();
                next += self.interval;
                let now = Instant::now();
                if next < now {
                    // Fell behind (suspended, or a sample longer than the interval): skip, don't burst.
                    next = now + self.interval;
                }
                continue;
            }
            match control.recv_timeout(next - now) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Control::Apply(config, reply)) => {
                    let result = self.apply(&config).map_err(|e| e.to_string());
                    // A shorter interval takes effect now, not after the old one.
                    next = next.min(Instant::now() + self.interval);
                    let _ = reply.send(result);
                }
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.shutdown();
    }

    /// Applies a reloaded configuration in place, keeping every target, its readings and its
    /// leak history: discovery is rebuilt when its section changed (every process is matched
    /// again at the next scan), and each collector whose options changed is shut down (undoing
    /// what it injected) and built anew; a collector turned off takes its readings with it.
    /// What a running sampler cannot change (`Config::restart_only_changes`) must already be
    /// the running values. On error nothing has changed.
    pub fn apply(&mut self, new: &Config) -> Result<(), crate::config::ConfigError> {
        let old = &self.config;
        let discovery = if format!("{:?}", old.discovery) != format!("{:?}", new.discovery) {
            Some(Discovery::new(&new.paths.procfs, &new.paths.rootfs.join("etc/passwd"), new.discovery.clone())?)
        } else {
            None
        };
        let mut changed: Vec<String> = Vec::new();
        if let Some(d) = discovery {
            self.discovery = d;
            changed.push("discovery".into());
        }
        self.registry.set_ages(new.discovery.min_age, new.discovery.exit_retention);
        if new.sample.interval != old.sample.interval {
            changed.push("sample.interval".into());
        }
        self.interval = new.sample.interval;
        if new.leak.grace_period != old.leak.grace_period {
            changed.push("leak.grace_period".into());
        }
        self.leak.grace = new.leak.grace_period;
        self.leak.interval = new.sample.interval;
        let mut running: HashMap<&'static str, Box<dyn Collector>> =
            self.collectors.drain(..).map(|c| (c.name(), c)).collect();
        for spec in crate::collect::COLLECTORS {
            let current = running.remove(spec.name);
            let enabled = spec.enabled_in(new);
            match current {
                Some(mut c) if !enabled => {
                    c.shutdown();
                    for t in self.registry.iter_mut() {
                        forget_readings(spec.name, t);
                    }
                    changed.push(format!("collector {} off", spec.name));
                }
                Some(c) if collector_inputs(spec.name, old) == collector_inputs(spec.name, new) => {
                    self.collectors.push(c)
                }
                Some(mut c) => {
                    c.shutdown();
                    self.collectors.push((spec.build)(new, &self.context));
                    changed.push(format!("collector {} rebuilt", spec.name));
                }
                None if enabled => {
                    self.collectors.push((spec.build)(new, &self.context));
                    changed.push(format!("collector {} on", spec.name));
                }
                None => {}
            }
        }
        // Collectors not in the table (none today) are kept as they are.
        self.collectors.extend(running.into_values());
        self.config = new.clone();
        tracing::info!(changed = %changed.join(", "), "configuration applied");
        Ok(())
    }

    /// Lets every collector undo what it changed in watched processes.
    pub fn shutdown(&mut self) {
        for c in self.collectors.iter_mut() {
            c.shutdown();
        }
    }

    /// Takes one sample and publishes it.
    pub fn sample_once(&mut self) {
        let started = Instant::now();
        let uptime = read_uptime(&self.procfs);
        let tps = self.clock.ticks_per_second as f64;
        let known: HashMap<i32, (&procfs::process::Process, u64)> = self
            .registry
            .iter()
            .filter(|t| !matches!(t.state, TargetState::Exited { .. }))
            .filter_map(|t| t.handle.as_ref().map(|h| (t.key.pid, (h, t.key.start_ticks))))
            .collect();
        let scanned = self.discovery.scan(&known);
        drop(known);
        match scanned {
            Ok((found, stats)) => {
                self.self_metrics.processes_scanned.set(stats.processes_seen as f64);
                let update = self.registry.update(found, started, |start_ticks| {
                    uptime
                        .map(|up| Duration::from_secs_f64((up - start_ticks as f64 / tps).max(0.0)))
                        .unwrap_or(Duration::ZERO)
                });
                self.self_metrics.discovered.inc_by(update.added as u64);
            }
            Err(e) => {
                let reason = Reason::from_io_error(&e).as_label();
                self.self_metrics.collector_errors.with_label_values(&["discovery", reason]).inc();
                let procfs = self.procfs.display().to_string();
                self.limiter.warn("discovery", reason, || format!("cannot list processes under {procfs}: {e}"));
            }
        }
        self.collect_all();
        self.analyse();
        if let Some(otlp) = self.otlp.as_mut() {
            otlp.offer(self.registry.iter());
        }
        let snapshot = self.render(started);
        // Receivers may all be gone at shutdown; that is fine.
        let _ = self.publish.send(Arc::new(snapshot));
    }

    fn collect_all(&mut self) {
        let now = Instant::now();
        let mut vanished = Vec::new();
        for collector in self.collectors.iter_mut() {
            let name = collector.name();
            let started = Instant::now();
            collector.begin_sample();
            for target in self.registry.iter_mut() {
                if matches!(target.state, TargetState::Exited { .. }) {
                    collector.collect_exited(target);
                    continue;
                }
                match collector.collect(target) {
                    Outcome::Read(report) => {
                        for reason in &report.errors {
                            self.self_metrics.collector_errors.with_label_values(&[name, reason.as_label()]).inc();
                        }
                        for gap in report.gaps.iter().filter(|g| g.reason.is_error()) {
                            let reason = gap.reason.as_label();
                            let (pid, app, what) = (target.key.pid, target.identity.app.clone(), gap.what);
                            self.limiter.warn(name, reason, || {
                                format!("cannot read {what} of pid {pid} (app {app}): {reason}{}", hint(gap.reason))
                            });
                        }
                        target.gaps.insert(name, report.gaps);
                    }
                    Outcome::Vanished => vanished.push(target.key),
                }
            }
            self.self_metrics.collector_duration.with_label_values(&[name]).set(started.elapsed().as_secs_f64());
        }
        for key in vanished {
            self.registry.mark_exited(&key, now);
        }
    }

    /// Feeds this sample of every live target to its leak analysis.
    fn analyse(&mut self) {
        let now = Instant::now();
        let t = now.duration_since(self.epoch).as_secs_f64();
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut points = 0;
        for target in self.registry.iter_mut() {
            if !matches!(target.state, TargetState::Exited { .. }) {
                let o = crate::leak::observation(target, t, now, unix_now);
                target.leak.get_or_insert_with(|| crate::leak::LeakState::new(&self.leak)).observe(&o, &self.leak);
            }
            points += target.leak.as_ref().map_or(0, |l| l.points_held());
        }
        self.self_metrics.history_points.set(points as f64);
    }

    fn render(&mut self, started: Instant) -> Snapshot {
        let now = Instant::now();
        let exported: Vec<&Target> = self.registry.iter().filter(|t| t.is_exported()).collect();
        let mut families = Families::new();
        render_identity(&exported, &mut families);
        crate::exposition::render_warnings(&exported, &mut families);
        crate::exposition::render_leak(&exported, &mut families);
        for (app, n) in self.registry.restarts() {
            families.counter(
                crate::exposition::RESTARTS,
                crate::exposition::RESTARTS_HELP,
                &[("app", app), ("namespace", ""), ("pod", ""), ("container", "")],
                *n as f64,
            );
        }
        for collector in &self.collectors {
            collector.render(&exported, &mut families);
        }
        let mut by_state: HashMap<&'static str, usize> = HashMap::new();
        for t in self.registry.iter() {
            *by_state.entry(t.state.as_label()).or_default() += 1;
        }
        for state in ["warming", "active", "exited"] {
            self.self_metrics.targets.with_label_values(&[state]).set(*by_state.get(state).unwrap_or(&0) as f64);
        }
        let sampled_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let duration = started.elapsed().as_secs_f64();
        self.self_metrics.sample_duration.set(duration);
        self.self_metrics.samples.inc();
        self.self_metrics.last_sample.set(sampled_at);
        self.render_own_process(&mut families);
        families.extend(self.self_metrics.registry.gather());
        if let Some(otlp) = &self.otlp {
            families.extend(otlp.gather());
        }
        let metrics = if self.serve_metrics { families.encode() } else { String::new() };
        let targets = self.registry.iter().map(|t| status_of(t, now)).collect();
        Snapshot { metrics, targets, sampled_at, sample_duration_seconds: duration, ready: true }
    }

    /// The exporter's own process metrics, under its own prefix so they never collide with the
    /// watched processes' `process_*` series.
    fn render_own_process(&mut self, out: &mut Families) {
        let Ok(me) = procfs::process::Process::myself() else { return };
        let Ok((r, _)) = self.own.read(&me, None, None) else { return };
        let p = "nodejs_leak_exporter_process_";
        out.counter(
            &format!("{p}cpu_seconds_total"),
            "CPU time the exporter spent, in seconds.",
            &[],
            r.cpu_user_seconds + r.cpu_system_seconds,
        );
        out.gauge(
            &format!("{p}resident_memory_bytes"),
            "Resident memory of the exporter in bytes.",
            &[],
            r.resident_bytes as f64,
        );
        out.gauge(
            &format!("{p}virtual_memory_bytes"),
            "Virtual memory of the exporter in bytes.",
            &[],
            r.virtual_bytes as f64,
        );
        out.gauge(
            &format!("{p}start_time_seconds"),
            "Start time of the exporter since unix epoch in seconds.",
            &[],
            r.start_time_seconds,
        );
        if let Some(v) = r.open_fds {
            out.gauge(&format!("{p}open_fds"), "Open file descriptors of the exporter.", &[], v as f64);
        }
        if let Some(v) = r.max_fds {
            out.gauge(&format!("{p}max_fds"), "File descriptor limit of the exporter.", &[], v as f64);
        }
    }
}

/// What a collector is built from, to tell whether a reload changed it.
fn collector_inputs(name: &str, c: &Config) -> String {
    let x = &c.collectors;
    match name {
        "procfs" => format!("{:?}{:?}", c.paths.procfs, x.procfs),
        "cgroup" => format!("{:?}{:?}", c.paths.sysfs, x.cgroup),
        "kubernetes" => format!("{:?}{:?}", c.paths.rootfs, x.kubernetes),
        "inspector" => format!("{:?}{:?}{:?}", c.paths.procfs, x.inspector, c.sample.interval),
        "logs" => format!("{:?}{:?}{:?}", c.paths.rootfs, x.logs, x.inspector.label_limit),
        _ => format!("{:?}{:?}{:?}", c.paths, x, c.sample),
    }
}

/// Drops what a collector turned off had read, so nothing stale is rendered or analysed.
fn forget_readings(name: &str, t: &mut Target) {
    let r = &mut t.readings;
    match name {
        "procfs" => r.procfs = None,
        "cgroup" => r.cgroup = None,
        "kubernetes" => r.kubernetes = None,
        "inspector" => r.inspector = None,
        "logs" => r.logs = None,
        _ => {}
    }
    t.gaps.remove(name);
}

fn hint(reason: Reason) -> &'static str {
    match reason {
        // Which capability depends on what was read (README, "Privileges"); the gap says it
        // where one collector knows (entering a network namespace needs CAP_SYS_ADMIN).
        Reason::PermissionDenied => {
            " (another user's process or a namespace: run as that user or as root, or grant the capability README \"Privileges\" lists)"
        }
        _ => "",
    }
}

fn status_of(t: &Target, now: Instant) -> TargetStatus {
    let id = &t.identity;
    TargetStatus {
        pid: t.key.pid,
        app: id.app.clone(),
        state: t.state.as_label(),
        age_seconds: t.age(now).as_secs_f64(),
        user: id.user.clone(),
        script: id.script.clone(),
        exe: id.exe_name.clone(),
        pm2_id: id.pm2.as_ref().and_then(|p| p.id.clone()),
        node_version: id.node_version.clone(),
        kubernetes: t.readings.kubernetes.as_ref().and_then(|k| k.labels.as_ref()).map(|l| PodStatus {
            namespace: l.namespace.clone(),
            pod: l.pod.clone(),
            container: l.container.clone(),
        }),
        collectors: t
            .gaps
            .iter()
            .map(|(collector, gaps)| CollectorStatus {
                collector,
                complete: gaps.is_empty(),
                missing: gaps.iter().map(|g| format!("{}: {}", g.what, g.reason)).collect(),
            })
            .collect(),
        leak: t.leak.as_ref().map(leak_status).unwrap_or_default(),
    }
}

fn leak_status(state: &crate::leak::LeakState) -> Vec<LeakStatus> {
    crate::leak::Signal::ALL
        .into_iter()
        .filter(|s| state.has_data(*s))
        .map(|signal| LeakStatus {
            signal: signal.as_label(),
            suspected: state.suspected(signal),
            windows: state
                .results(signal)
                .filter(|r| r.enough)
                .map(|r| WindowStatus {
                    window: crate::leak::window_label(r.window),
                    growth_per_second: r.estimate.slope,
                    confidence: r.estimate.confidence,
                    speaks: r.speaks,
                })
                .collect(),
        })
        .collect()
}

fn read_uptime(procfs: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(procfs.join("uptime")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sampler watching only this test process, through the live /proc.
    fn sampler(config: &Config) -> (Sampler, tokio::runtime::Runtime) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let context = crate::collect::Context {
            runtime: runtime.handle().clone(),
            connector: Arc::new(crate::connector::DirectConnector),
            instance: "test".into(),
        };
        let (tx, _rx) = watch::channel(Arc::new(Snapshot::default()));
        (Sampler::new(config, &context, tx).unwrap(), runtime)
    }

    fn only_me() -> Config {
        let mut c =
            Config::from_yaml(&format!("discovery:\n  include: []\n  pids: [{}]\n", std::process::id())).unwrap();
        c.collectors.inspector.enabled = false;
        c.collectors.logs.enabled = false;
        c
    }

    fn names(s: &Sampler) -> Vec<&'static str> {
        s.collectors.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn apply_keeps_targets_and_leak_history() {
        let config = only_me();
        let (mut s, _rt) = sampler(&config);
        s.sample_once();
        s.sample_once();
        assert_eq!(s.registry.len(), 1);
        assert!(s.registry.iter().all(|t| t.leak.is_some()));
        assert_eq!(names(&s), ["procfs", "cgroup", "kubernetes"]);

        let mut new = config.clone();
        new.collectors.cgroup.enabled = false;
        new.leak.grace_period = Duration::from_secs(1);
        new.sample.interval = Duration::from_secs(1);
        new.discovery.min_age = Duration::from_secs(0);
        new.validate().unwrap();
        s.apply(&new).unwrap();
        assert_eq!(names(&s), ["procfs", "kubernetes"]);
        assert_eq!((s.interval, s.leak.grace), (Duration::from_secs(1), Duration::from_secs(1)));
        let t = s.registry.iter().next().unwrap();
        assert!(t.leak.is_some(), "leak history kept");
        assert!(t.readings.cgroup.is_none() && !t.gaps.contains_key("cgroup"), "readings of a collector turned off go");
        s.sample_once();
        assert_eq!(s.registry.len(), 1);
    }

    #[test]
    fn a_configuration_that_cannot_be_applied_changes_nothing() {
        let config = only_me();
        let (mut s, _rt) = sampler(&config);
        s.sample_once();
        let mut bad = config.clone();
        bad.collectors.cgroup.enabled = false;
        bad.discovery.include =
            Config::from_yaml("discovery:\n  include:\n    - user: no-such-user-here\n").unwrap().discovery.include;
        let err = s.apply(&bad).unwrap_err().to_string();
        assert!(err.starts_with("discovery.include[0].user"), "{err}");
        assert_eq!(names(&s), ["procfs", "cgroup", "kubernetes"]);
        assert_eq!(format!("{:?}", s.config.discovery), format!("{:?}", config.discovery));
    }
}
