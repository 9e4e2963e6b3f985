//! The inspector collector: V8 heap statistics, GC pauses and process warnings of each Node.js
//! process, read through its inspector (the Chrome DevTools Protocol that `node --inspect` serves).
//!
//! One persistent session per process runs as a task on the async runtime; the collector (on the
//! sampler thread) only starts sessions and reads what they last produced, so a hung or lying
//! inspector delays nobody. Sessions never hold an app alive: they ask to be told when the app
//! waits for the debugger to disconnect before exiting, and disconnect at once. What they inject
//! (`install.js`) is bounded, idempotent and removed at shutdown (`uninstall.js`).

pub mod limits;
pub mod locate;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use self::limits::Call;
use self::locate::{InspectFlags, ProbeError};
use self::session::{CallError, Event, Session};
use super::{Collector, Gap, Outcome, Reason, Report};
use crate::config::InspectorConfig;
use crate::connector::{Connector, NsId};
use crate::discovery::ProcessKey;
use crate::exposition::Families;
use crate::target::{Target, TargetState};

const INSTALL: &str = include_str!("install.js");
/// The expression evaluated at every sample; returns one JSON string ([`parse_sample`]).
pub const SAMPLE: &str = include_str!("sample.js");
const UNINSTALL: &str = include_str!("uninstall.js");

/// The expression that installs the warning listener and GC observer for `owner`.
pub fn install_expression(owner: &str) -> String {
    INSTALL.replace("__OWNER__", &serde_json::to_string(owner).expect("a string serializes"))
}

/// The expression that removes `owner`'s claim, and the code once no owner is left.
pub fn uninstall_expression(owner: &str) -> String {
    UNINSTALL.replace("__OWNER__", &serde_json::to_string(owner).expect("a string serializes"))
}
/// The binding the injected warning listener calls; unique so no other client's binding clashes.
const BINDING: &str = "__nodejsLeakExporterWarning";
/// prom-client's GC histogram buckets, which install.js counts into.
pub const GC_BUCKETS: [f64; 6] = [0.001, 0.01, 0.1, 1.0, 2.0, 5.0];

/// What the inspector told about one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InspectorReadings {
    /// Whether a session is open and answered the last sample.
    pub connected: bool,
    /// The last heap reading; cleared when the session is lost, so stale heap data is never served.
    pub heap: Option<HeapReadings>,
    /// Warnings by name, cumulative since the listener was installed.
    pub warnings: BTreeMap<String, u64>,
    /// MaxListenersExceededWarning by (event, emitter type).
    pub max_listeners: BTreeMap<(String, String), u64>,
    /// GC pauses by kind: cumulative bucket counts, count, sum of seconds.
    pub gc: BTreeMap<String, GcHistogram>,
    /// Heap used right after the last full GC, the unix time of that GC in milliseconds, and how
    /// many full GCs the process has had since the exporter first attached.
    pub after_major_gc: Option<(f64, u64)>,
    pub major_gcs: u64,
    /// When a session was first opened on this process.
    pub first_connected: Option<Instant>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeapReadings {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub limit_bytes: u64,
    pub external_bytes: u64,
    pub array_buffers_bytes: u64,
    pub detached_contexts: u64,
    pub spaces: Vec<HeapSpace>,
    pub active_resources: Vec<(String, u64)>,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeapSpace {
    /// As prom-client writes it: `old`, `new`, `code`, `large_object`, ...
    pub name: String,
    pub size: u64,
    pub used: u64,
    pub available: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcHistogram {
    pub buckets: [u64; 6],
    pub count: u64,
    pub sum: f64,
}

/// Settings a session needs, shared by all of them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub procfs: PathBuf,
    pub interval: Duration,
    pub activate: bool,
    pub ports: Vec<u16>,
    /// Whether connections enter the process's network namespace (the connector does it); here
    /// only to explain why a process in another namespace has no heap data when it is off.
    pub enter_netns: bool,
    /// The exporter's own network namespace, when it can be read.
    pub own_netns: Option<NsId>,
    pub allowed_addresses: Vec<IpAddr>,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    pub max_backoff: Duration,
    pub label_limit: usize,
    /// Identifies this exporter instance among the owners of the injected code.
    pub owner: String,
}

impl Settings {
    pub fn new(config: &InspectorConfig, procfs: PathBuf, interval: Duration, owner: String) -> Self {
        Settings {
            procfs,
            interval,
            activate: config.activate,
            ports: config.ports.clone(),
            enter_netns: config.enter_netns,
            own_netns: crate::connector::own_netns().ok(),
            allowed_addresses: config.allowed_addresses.clone(),
            connect_timeout: config.connect_timeout,
            call_timeout: config.call_timeout,
            max_backoff: config.max_backoff,
            label_limit: config.label_limit,
            owner,
        }
    }
}

/// What a session task shares with the collector.
#[derive(Debug, Default)]
struct Shared {
    readings: InspectorReadings,
    /// Why there is no heap data now, for the status page.
    state: Option<Gap>,
    /// Failures since the collector last looked, to count.
    errors: Vec<Reason>,
}

struct Slot {
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    seen: bool,
}

pub struct InspectorCollector {
    runtime: tokio::runtime::Handle,
    connector: Arc<dyn Connector>,
    settings: Arc<Settings>,
    slots: HashMap<ProcessKey, Slot>,
}

impl InspectorCollector {
    pub fn new(runtime: tokio::runtime::Handle, connector: Arc<dyn Connector>, settings: Settings) -> Self {
        InspectorCollector { runtime, connector, settings: Arc::new(settings), slots: HashMap::new() }
    }

    fn start(&mut self, target: &Target) -> &mut Slot {
        let key = target.key;
        let spec = SessionSpec {
            key,
            ns_pid: target.identity.ns_pid.unwrap_or(key.pid),
            app: target.identity.app.clone(),
            flags: target.identity.inspect.clone(),
        };
        let shared = Arc::new(Mutex::new(Shared {
            state: Some(Gap::new("heap (looking for an inspector)", Reason::NotAvailable)),
            ..Shared::default()
        }));
        let (stop, stop_rx) = watch::channel(false);
        let task = self.runtime.spawn(run_session(
            spec,
            shared.clone(),
            stop_rx,
            self.connector.clone(),
            self.settings.clone(),
        ));
        self.slots.entry(key).or_insert(Slot { shared, stop, task, seen: true })
    }

    /// Stops every session, removing what was injected, within a bounded time.
    fn stop_all(&mut self, timeout: Duration) {
        let runs = self.slots.drain().map(|(_, s)| (s.stop, s.task)).collect();
        self.runtime.block_on(stop_and_join(runs, timeout));
    }
}

/// Tells every task to stop (all at once, so they wind down side by side), then waits for them,
/// at most `timeout` in all: the inspector sessions and the profiler runs end this way.
pub(crate) async fn stop_and_join(runs: Vec<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>, timeout: Duration) {
    for (stop, _) in &runs {
        let _ = stop.send(true);
    }
    let wait = async {
        for (_, task) in runs {
            let _ = task.await;
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
}

impl Collector for InspectorCollector {
    fn name(&self) -> &'static str {
        "inspector"
    }

    fn begin_sample(&mut self) {
        // Sessions of targets no longer listed (exited and removed) end here.
        let gone: Vec<ProcessKey> = self.slots.iter().filter(|(_, s)| !s.seen).map(|(k, _)| *k).collect();
        for key in gone {
            if let Some(slot) = self.slots.remove(&key) {
                let _ = slot.stop.send(true);
                slot.task.abort();
            }
        }
        for slot in self.slots.values_mut() {
            slot.seen = false;
        }
    }

    fn collect(&mut self, target: &mut Target) -> Outcome {
        if !self.slots.contains_key(&target.key) {
            self.start(target);
        }
        let slot = self.slots.get_mut(&target.key).expect("slot just ensured");
        slot.seen = true;
        let mut shared = slot.shared.lock().expect("inspector state lock");
        let errors = std::mem::take(&mut shared.errors);
        let gaps = shared.state.clone().into_iter().collect();
        target.readings.inspector = Some(shared.readings.clone());
        Outcome::Read(Report { gaps, errors })
    }

    fn collect_exited(&mut self, target: &mut Target) {
        // Keep the last counters for the exit retention; the heap is no longer live.
        if let Some(slot) = self.slots.get_mut(&target.key) {
            slot.seen = true;
            let _ = slot.stop.send(true);
        }
        if let Some(r) = target.readings.inspector.as_mut() {
            r.connected = false;
            r.heap = None;
        }
    }

    fn shutdown(&mut self) {
        // Each session finishes the call it is in (at most the call timeout), then uninstalls:
        // two more calls. 5 s leaves room for a loaded machine within the exporter's 8 s.
        self.stop_all(Duration::from_secs(5));
    }

    fn render(&self, targets: &[&Target], out: &mut Families) {
        for t in targets {
            let connected = t.readings.inspector.as_ref().is_some_and(|r| r.connected);
            if !matches!(t.state, TargetState::Exited { .. }) {
                out.target_gauge(
                    t,
                    "nodejs_inspector_connected",
                    "Whether an inspector session is open and answering (1), so heap metrics are live.",
                    &[],
                    if connected { 1.0 } else { 0.0 },
                );
            }
            let Some(r) = &t.readings.inspector else { continue };
            if let Some(h) = &r.heap {
                render_heap(out, t, h);
            }
            // Warnings are rendered with the logs' (exposition::render_warnings).
            for (kind, h) in &r.gc {
                let pid = t.key.pid.to_string();
                out.histogram(
                    "nodejs_gc_duration_seconds",
                    "Garbage collection pauses by kind, in seconds (prom-client's buckets).",
                    &[("pid", &pid), ("app", &t.identity.app), ("kind", kind)],
                    &GC_BUCKETS,
                    &h.buckets,
                    h.count,
                    h.sum,
                );
            }
            if let Some((_, used)) = r.after_major_gc {
                out.target_gauge(
                    t,
                    "nodejs_heap_size_used_after_gc_bytes",
                    "V8 heap used right after the last full (mark-compact) GC: the floor a leak raises.",
                    &[],
                    used as f64,
                );
            }
        }
    }
}

fn render_heap(out: &mut Families, t: &Target, h: &HeapReadings) {
    out.target_gauge(
        t,
        "nodejs_heap_size_total_bytes",
        "Process heap size from Node.js in bytes.",
        &[],
        h.total_bytes as f64,
    );
    out.target_gauge(
        t,
        "nodejs_heap_size_used_bytes",
        "Process heap size used from Node.js in bytes.",
        &[],
        h.used_bytes as f64,
    );
    out.target_gauge(
        t,
        "nodejs_heap_size_limit_bytes",
        "V8 heap size limit (v8.getHeapStatistics().heap_size_limit, set by --max-old-space-size) in bytes.",
        &[],
        h.limit_bytes as f64,
    );
    out.target_gauge(
        t,
        "nodejs_external_memory_bytes",
        "Node.js external memory size in bytes (includes array buffers).",
        &[],
        h.external_bytes as f64,
    );
    out.target_gauge(
        t,
        "nodejs_array_buffers_bytes",
        "Memory of ArrayBuffers and SharedArrayBuffers, including Buffers, in bytes.",
        &[],
        h.array_buffers_bytes as f64,
    );
    out.target_gauge(
        t,
        "nodejs_heap_detached_contexts",
        "Detached V8 contexts (a growing count is a leak of vm contexts or iframes).",
        &[],
        h.detached_contexts as f64,
    );
    for s in &h.spaces {
        let l = [("space", s.name.as_str())];
        out.target_gauge(
            t,
            "nodejs_heap_space_size_total_bytes",
            "Process heap space size total from Node.js in bytes.",
            &l,
            s.size as f64,
        );
        out.target_gauge(
            t,
            "nodejs_heap_space_size_used_bytes",
            "Process heap space size used from Node.js in bytes.",
            &l,
            s.used as f64,
        );
        out.target_gauge(
            t,
            "nodejs_heap_space_size_available_bytes",
            "Process heap space size available from Node.js in bytes.",
            &l,
            s.available as f64,
        );
    }
    for (kind, n) in &h.active_resources {
        out.target_gauge(
            t,
            "nodejs_active_resources",
            "Active resources keeping the event loop alive, by type (timers, handles, requests).",
            &[("type", kind)],
            *n as f64,
        );
    }
    if let Some((major, minor, patch)) = parse_version(&h.version) {
        let (major, minor, patch) = (major.to_string(), minor.to_string(), patch.to_string());
        out.target_gauge(
            t,
            "nodejs_version_info",
            "Node.js version info.",
            &[("version", &h.version), ("major", &major), ("minor", &minor), ("patch", &patch)],
            1.0,
        );
    }
}

fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.strip_prefix('v')?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.split('-').next()?.parse().ok()?))
}

/// What one session needs to know about its process.
struct SessionSpec {
    key: ProcessKey,
    /// The pid as the process sees itself (inside its pid namespace), to recognise its inspector.
    ns_pid: i32,
    app: String,
    flags: InspectFlags,
}

/// Why a session attempt ended.
enum Ended {
    /// The exporter is stopping; cleanup was done.
    Stopped,
    /// The inspector answered for another process.
    NotOurs,
    /// The app is exiting and waits for debuggers to leave: leave and don't come back soon.
    AppExiting,
    Failed(CallError),
    /// Failed after the failure was counted (a sample call's), so it is not counted again.
    Lost(CallError),
}

async fn run_session(
    spec: SessionSpec,
    shared: Arc<Mutex<Shared>>,
    mut stop: watch::Receiver<bool>,
    connector: Arc<dyn Connector>,
    settings: Arc<Settings>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut activated = false;
    // Inspectors that answered for another process (a shared network namespace), skipped until
    // they are forgotten, since ports get reused.
    let mut not_ours: std::collections::HashSet<SocketAddr> = Default::default();
    let mut not_ours_since = Instant::now();
    // The inspector of the last session that ended other than by a stop: what it installed may
    // still be there, and is removed if the exporter stops before a new session does it.
    let mut left_behind: Option<(SocketAddr, String)> = None;
    loop {
        if *stop.borrow() {
            return leave(&spec, left_behind, &*connector, &settings).await;
        }
        if not_ours_since.elapsed() > Duration::from_secs(600) {
            not_ours.clear();
            not_ours_since = Instant::now();
        }
        let found = find_inspector(&spec, &*connector, &settings, activated, &not_ours).await;
        let mut pause = None;
        let mut failure = found.error;
        let mut attached = false;
        let mut counted = false;
        if let Some((addr, path)) = found.answered {
            let ended = attach(&spec, addr, &path, &shared, &mut stop, &*connector, &settings).await;
            left_behind = match &ended {
                // An exiting app is never reopened: a new session would hold it again.
                Ended::Stopped | Ended::NotOurs | Ended::AppExiting => None,
                _ => Some((addr, path.clone())),
            };
            match &ended {
                Ended::Stopped => return,
                Ended::NotOurs => {
                    not_ours.insert(addr);
                    continue;
                }
                Ended::AppExiting => {
                    attached = true;
                    pause = Some(Duration::from_secs(30));
                }
                Ended::Failed(_) | Ended::Lost(_) if !still_running(&settings.procfs, spec.key) => return,
                Ended::Failed(e) | Ended::Lost(e) => {
                    counted = matches!(ended, Ended::Lost(_));
                    attached = true;
                    tracing::debug!(pid = spec.key.pid, app = %spec.app, error = %e, "inspector session ended");
                    failure =
                        Some(ProbeError { reason: e.reason, message: e.message.clone(), missing_capability: None });
                }
            }
        }
        // A process that vanished while we looked for its inspector is an exit, not a failure; so
        // is one that is exiting: Node.js closes its inspector before the process is gone.
        if failure.is_some() {
            if !still_running(&settings.procfs, spec.key) || wait_or_stop(&mut stop, EXIT_GRACE).await {
                return;
            }
            if !still_running(&settings.procfs, spec.key) {
                return;
            }
        }
        let was_connected = {
            let mut s = shared.lock().expect("inspector state lock");
            let was = s.readings.connected;
            s.readings.connected = false;
            s.readings.heap = None;
            was
        };
        if was_connected {
            backoff = Duration::from_secs(1);
        }
        match failure {
            Some(e) => {
                let what = match e.missing_capability {
                    Some("CAP_SYS_ADMIN") => "heap (cannot enter the process's network namespace: needs CAP_SYS_ADMIN)",
                    Some(_) => "heap (cannot open the process's network namespace: needs CAP_SYS_PTRACE)",
                    None if attached => "heap (inspector session lost)",
                    None if elsewhere(&settings, spec.key.pid) => NETNS_OFF,
                    None => "heap (inspector not reachable)",
                };
                let mut s = shared.lock().expect("inspector state lock");
                if !counted {
                    s.errors.push(e.reason);
                }
                s.state = Some(Gap::new(what, e.reason));
            }
            None if !attached => {
                // No inspector: not an error. Open one if the operator asked for it.
                if settings.activate && !activated && !spec.flags.enabled {
                    activated = true;
                    match activate(&settings.procfs, spec.key) {
                        Ok(()) => {
                            tracing::info!(pid = spec.key.pid, app = %spec.app, "sent SIGUSR1: the process opens its inspector on loopback");
                            // Node opens it within milliseconds; look again soon.
                            if wait_or_stop(&mut stop, Duration::from_millis(300)).await {
                                return;
                            }
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(pid = spec.key.pid, app = %spec.app, error = %e, "cannot send SIGUSR1 to open the inspector")
                        }
                    }
                }
                let what = if (spec.flags.enabled || activated) && elsewhere(&settings, spec.key.pid) {
                    NETNS_OFF
                } else {
                    "heap (no inspector open: start node with --inspect=127.0.0.1:0, or enable --inspector.activate)"
                };
                shared.lock().expect("inspector state lock").state = Some(Gap::new(what, Reason::NotAvailable));
            }
            None => {}
        }
        let pause = pause.unwrap_or(backoff);
        backoff = (backoff * 2).min(settings.max_backoff);
        if wait_or_stop(&mut stop, pause).await {
            return leave(&spec, left_behind, &*connector, &settings).await;
        }
    }
}

/// At a stop between sessions: removes what an earlier session installed, on a session of its
/// own (uninstall.js is idempotent: it only drops this exporter's claim). Bounded by the call
/// timeouts, and by the collector's shutdown budget around it.
async fn leave(
    spec: &SessionSpec,
    left_behind: Option<(SocketAddr, String)>,
    connector: &dyn Connector,
    settings: &Settings,
) {
    let Some((addr, path)) = left_behind else { return };
    if !still_running(&settings.procfs, spec.key) || settings.owner.is_empty() {
        return;
    }
    let Ok((session, _events)) = Session::open(connector, spec.key.pid, addr, &path, settings.connect_timeout).await
    else {
        return;
    };
    let timeout = settings.call_timeout;
    let uninstall = uninstall_expression(&settings.owner);
    let _ = call(
        &session,
        Call::Uninstall,
        json!({"expression": uninstall, "returnByValue": true, "silent": true}),
        timeout,
    )
    .await;
    let _ = call(&session, Call::RemoveBinding, json!({"name": BINDING}), timeout).await;
    session.close().await;
}

/// How long a failure waits to be counted, in case its process is exiting.
const EXIT_GRACE: Duration = Duration::from_millis(250);

/// Why a process whose inspector is open has no heap data when the exporter stays in its own
/// network namespace.
const NETNS_OFF: &str =
    "heap (the process is in another network namespace, where its inspector listens on loopback: enable --inspector.enter-netns)";

/// Whether the exporter stays in its own network namespace while `pid` is in another, so a
/// loopback inspector of `pid` cannot be reached.
fn elsewhere(settings: &Settings, pid: i32) -> bool {
    !settings.enter_netns
        && settings
            .own_netns
            .is_some_and(|own| crate::connector::netns_of(&settings.procfs, pid).is_ok_and(|theirs| theirs != own))
}

/// Waits `d`; true when asked to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

/// The first inspector that answered `/json/list`, or the failure worth counting when none did.
struct Candidates {
    answered: Option<(SocketAddr, String)>,
    error: Option<ProbeError>,
}

/// Finds the address and WebSocket path of an inspector that may be the process's: its flags'
/// address, its listening sockets, then configured ports, skipping those known to be another's.
async fn find_inspector(
    spec: &SessionSpec,
    connector: &dyn Connector,
    settings: &Settings,
    activated: bool,
    skip: &std::collections::HashSet<SocketAddr>,
) -> Candidates {
    // (address, whether a failure there is worth counting)
    let mut candidates: Vec<(SocketAddr, bool)> = Vec::new();
    let opened = spec.flags.enabled || activated;
    if opened {
        candidates.extend(spec.flags.address().map(|a| (a, true)));
        // The process's own listening sockets. Probed only when the inspector is known to be
        // open, so the app's own HTTP server is not sent requests for nothing; failures there are
        // the app's other servers, not errors.
        let procfs = settings.procfs.clone();
        let pid = spec.key.pid;
        if let Ok(Ok(sockets)) = tokio::task::spawn_blocking(move || locate::listening_sockets(&procfs, pid)).await {
            candidates.extend(sockets.into_iter().map(|a| (a, false)));
        }
    }
    // Configured ports are the operator's word that an inspector listens there.
    candidates.extend(settings.ports.iter().map(|p| (SocketAddr::from(([127, 0, 0, 1], *p)), true)));
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|(a, _)| !skip.contains(a) && seen.insert(*a));
    let mut error = None;
    for (addr, counts) in candidates {
        if !locate::address_allowed(addr.ip(), &settings.allowed_addresses) {
            tracing::debug!(pid = spec.key.pid, %addr, "inspector address not on loopback and not allowed");
            continue;
        }
        match locate::probe(connector, spec.key.pid, addr, settings.connect_timeout).await {
            Ok(path) => return Candidates { answered: Some((addr, path)), error: None },
            // Every other address would fail the same way.
            Err(e) if e.missing_capability.is_some() => return Candidates { answered: None, error: Some(e) },
            Err(e) if counts => error = Some(e),
            Err(_) => {}
        }
    }
    Candidates { answered: None, error }
}

async fn attach(
    spec: &SessionSpec,
    addr: SocketAddr,
    path: &str,
    shared: &Arc<Mutex<Shared>>,
    stop: &mut watch::Receiver<bool>,
    connector: &dyn Connector,
    settings: &Settings,
) -> Ended {
    let (session, mut events) = match Session::open(connector, spec.key.pid, addr, path, settings.connect_timeout).await
    {
        Ok(s) => s,
        Err(e) => return Ended::Failed(e),
    };
    let timeout = settings.call_timeout;
    // A shared network namespace (a sidecar, configured ports) may show another process's
    // inspector: check whose it is before injecting anything.
    match call(
        &session,
        Call::WhosePid,
        json!({"expression": "process.pid", "returnByValue": true, "silent": true}),
        timeout,
    )
    .await
    {
        Ok(v) if v["result"]["value"].as_i64() == Some(spec.ns_pid as i64) => {}
        Ok(v) => {
            tracing::debug!(pid = spec.key.pid, %addr, other = %v["result"]["value"], "inspector belongs to another process");
            session.close().await;
            return Ended::NotOurs;
        }
        Err(e) => return Ended::Failed(e),
    }
    let setup = [
        (Call::NotifyDisconnect, json!({"enabled": true})),
        (Call::AddBinding, json!({"name": BINDING})),
        // Without the DevTools command-line API where Node.js has `process.getBuiltinModule`
        // (20.16+): an evaluation with it that arrives while Node.js 20 waits at exit for
        // debuggers to disconnect crashes the app (SIGSEGV in V8Console::CommandLineAPIScope),
        // and an app that ends just as the exporter attaches is exactly that case. Older
        // versions need the API's `require`: the install is retried with it below.
        (
            Call::Install,
            json!({
                "expression": install_expression(&settings.owner),
                "returnByValue": true, "silent": true,
            }),
        ),
    ];
    for (c, params) in setup {
        let mut result = call(&session, c, params.clone(), timeout).await;
        if c == Call::Install && result.as_ref().is_ok_and(|v| exception_text(v).contains("require is not defined")) {
            let mut with_api = params;
            with_api["includeCommandLineAPI"] = json!(true);
            result = call(&session, c, with_api, timeout).await;
        }
        match result {
            Ok(v) if v.get("exceptionDetails").is_some() => {
                return Ended::Failed(CallError::new(
                    Reason::Protocol,
                    format!("{} threw: {}", c.method(), exception_text(&v)),
                ));
            }
            Ok(_) => {}
            Err(e) => return Ended::Failed(e),
        }
    }
    tracing::debug!(pid = spec.key.pid, app = %spec.app, %addr, "inspector session open");
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    let label_limit = settings.label_limit;
    let ended = loop {
        tokio::select! {
            _ = ticker.tick() => {
                match sample(&session, timeout).await {
                    Ok(reply) => {
                        failures = 0;
                        let mut s = shared.lock().expect("inspector state lock");
                        if reply.pid != spec.ns_pid as i64 {
                            break Ended::Failed(CallError::new(Reason::Protocol, "the inspector changed process"));
                        }
                        apply(&mut s.readings, reply, label_limit);
                        s.readings.connected = true;
                        s.readings.first_connected.get_or_insert_with(Instant::now);
                        s.state = None;
                    }
                    // A call cut short by the process's exit is no failure: run_session ends quietly.
                    Err(e) if !still_running(&settings.procfs, spec.key) => break Ended::Failed(e),
                    Err(e) => {
                        failures += 1;
                        let mut s = shared.lock().expect("inspector state lock");
                        s.errors.push(e.reason);
                        s.readings.connected = false;
                        s.readings.heap = None;
                        s.state = Some(Gap::new("heap (inspector call failed)", e.reason));
                        if failures >= 3 || !session.is_open() {
                            break Ended::Lost(e);
                        }
                    }
                }
            }
            event = events.recv() => match event {
                Some(Event { method, .. }) if method == "NodeRuntime.waitingForDisconnect" => {
                    // The app has finished and waits for us: leave now so it can exit.
                    session.close().await;
                    tracing::debug!(pid = spec.key.pid, app = %spec.app, "app waits for debugger disconnect: detached");
                    break Ended::AppExiting;
                }
                Some(Event { method, params }) if method == "Runtime.bindingCalled" && params["name"] == BINDING => {
                    let key = params["payload"].as_str().unwrap_or_default();
                    let mut parts = key.split('\u{0}');
                    let (name, event, emitter) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    if name == "MaxListenersExceededWarning" {
                        tracing::info!(pid = spec.key.pid, app = %spec.app, event = %truncate(event), emitter = %truncate(emitter), "MaxListenersExceededWarning: listeners pile up (a leak)");
                    } else {
                        tracing::debug!(pid = spec.key.pid, app = %spec.app, warning = %truncate(name), "process warning");
                    }
                }
                Some(_) => {}
                None => break Ended::Failed(CallError::new(Reason::Unreachable, "inspector closed the session")),
            },
            _ = stop.changed() => {
                let uninstall = uninstall_expression(&settings.owner);
                let _ = call(&session, Call::Uninstall, json!({"expression": uninstall, "returnByValue": true, "silent": true}), timeout).await;
                let _ = call(&session, Call::RemoveBinding, json!({"name": BINDING}), timeout).await;
                session.close().await;
                break Ended::Stopped;
            }
        }
    };
    ended
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn exception_text(v: &serde_json::Value) -> String {
    let d = &v["exceptionDetails"];
    let text = d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("exception");
    truncate(text)
}

/// Whether the process is still the one we know: a session lost because its process exited is
/// an exit, not a failure.
fn still_running(procfs: &std::path::Path, key: ProcessKey) -> bool {
    procfs::process::Process::new_with_root(procfs.join(key.pid.to_string()))
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.starttime == key.start_ticks && s.state != 'Z' && s.state != 'X')
}

/// Sends SIGUSR1 through a pidfd after checking the process is still the one we know, so a
/// reused pid is never signalled.
fn activate(procfs: &std::path::Path, key: ProcessKey) -> std::io::Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, key.pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = fd as libc::c_int;
    let result = (|| {
        let stat = procfs::process::Process::new_with_root(procfs.join(key.pid.to_string()))
            .and_then(|p| p.stat())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if stat.starttime != key.start_ticks {
            return Err(std::io::Error::other("the pid now belongs to another process"));
        }
        // SAFETY: fd is a pidfd we own; a null siginfo sends a plain signal.
        let rc = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGUSR1, std::ptr::null::<libc::siginfo_t>(), 0)
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })();
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    result
}

/// The per-sample reply (`sample.js`), validated for shape and bounds by [`parse_sample`]: a
/// process can be hostile (or simply redefine `JSON.stringify`). Fields it does not know are
/// ignored; a missing required field fails the sample (a gap, counted as `protocol`).
#[derive(Debug, Deserialize)]
pub struct SampleReply {
    pub v: u32,
    pub pid: i64,
    pub version: String,
    pub heap: [f64; 6],
    pub spaces: Vec<(String, f64, f64, f64)>,
    pub resources: BTreeMap<String, f64>,
    pub warnings: Option<Vec<(String, String, String, f64)>>,
    pub gc: Option<BTreeMap<String, GcReply>>,
    pub major: Option<(f64, f64, f64)>,
}

#[derive(Debug, Deserialize)]
pub struct GcReply {
    pub b: [f64; 6],
    pub n: f64,
    pub s: f64,
}

/// Makes `c` under its limits (`limits.rs`).
async fn call(
    session: &Session,
    c: Call,
    params: serde_json::Value,
    call_timeout: Duration,
) -> Result<serde_json::Value, CallError> {
    session.call(c.method(), params, c.timeout(call_timeout), c.max_reply()).await
}

async fn sample(session: &Session, timeout: Duration) -> Result<SampleReply, CallError> {
    let v = call(
        session,
        Call::Sample,
        // Without the command-line API: an evaluate that installs it, dispatched while Node.js 20
        // waits at exit for debuggers to disconnect, crashes the app (SIGSEGV in V8Console's
        // CommandLineAPIScope on the context being torn down). The sample needs no `require`
        // once install.js ran, and Node.js 20.16+ has process.getBuiltinModule anyway.
        json!({"expression": SAMPLE, "returnByValue": true, "silent": true}),
        timeout,
    )
    .await?;
    if v.get("exceptionDetails").is_some() {
        return Err(CallError::new(Reason::Protocol, format!("sample threw: {}", exception_text(&v))));
    }
    let text = v["result"]["value"]
        .as_str()
        .ok_or_else(|| CallError::new(Reason::Protocol, "sample did not return a string"))?;
    parse_sample(text)
}

/// Bounds of a sample reply, as `install.js` and `sample.js` produce it.
mod bounds {
    /// install.js cuts every warning string to 120 UTF-16 units (at most 120 chars).
    pub const LABEL_CHARS: usize = 120;
    /// install.js keeps 64 warning keys, then counts under `other`.
    pub const WARNING_KEYS: usize = 65;
    /// V8 has about ten heap spaces, Node.js a few dozen resource types, install.js five GC kinds.
    pub const SPACES: usize = 32;
    pub const RESOURCES: usize = 256;
    pub const GC_KINDS: usize = 8;
    /// Byte counts and counters: finite, non-negative, below an exabyte.
    pub const NUMBER: f64 = 1e18;
}

/// Parses and bounds a sample reply: shape checked by serde, sizes and values checked here.
/// Numbers must be finite and non-negative (JSON.stringify turns NaN and Infinity into null,
/// which fails the shape); every string is bounded.
pub fn parse_sample(text: &str) -> Result<SampleReply, CallError> {
    use bounds::*;
    let reply: SampleReply = serde_json::from_str(text)
        .map_err(|e| CallError::new(Reason::Protocol, format!("unexpected sample shape: {e}")))?;
    let number = |x: f64| x.is_finite() && (0.0..NUMBER).contains(&x);
    let label = |s: &str, max_chars: usize| s.len() <= 4 * max_chars && s.chars().count() <= max_chars;
    let ok = reply.v == 1
        && reply.pid > 0
        && label(&reply.version, 32)
        && reply.heap.iter().all(|x| number(*x))
        && reply.spaces.len() <= SPACES
        && reply.spaces.iter().all(|(n, a, b, c)| label(n, 64) && number(*a) && number(*b) && number(*c))
        && reply.resources.len() <= RESOURCES
        && reply.resources.iter().all(|(k, n)| label(k, 128) && number(*n))
        && reply.warnings.as_ref().is_none_or(|w| {
            w.len() <= WARNING_KEYS
                && w.iter().all(|(a, b, c, n)| {
                    label(a, LABEL_CHARS) && label(b, LABEL_CHARS) && label(c, LABEL_CHARS) && number(*n)
                })
        })
        && reply.gc.as_ref().is_none_or(|g| {
            g.len() <= GC_KINDS
                && g.iter().all(|(k, h)| label(k, 16) && number(h.n) && number(h.s) && h.b.iter().all(|x| number(*x)))
        })
        && reply.major.is_none_or(|(t, u, n)| number(t) && number(u) && number(n));
    if !ok {
        return Err(CallError::new(Reason::Protocol, "sample values out of range"));
    }
    Ok(reply)
}

/// Folds a validated reply into the readings, capping every label taken from the app.
pub fn apply(r: &mut InspectorReadings, reply: SampleReply, label_limit: usize) {
    let [total, used, limit, external, array_buffers, detached] = reply.heap;
    let mut resources: Vec<(String, u64)> = Vec::new();
    let mut other = 0;
    for (kind, n) in reply.resources {
        if resources.len() < label_limit {
            resources.push((kind, n as u64));
        } else {
            other += n as u64;
        }
    }
    if other > 0 {
        resources.push(("other".into(), other));
    }
    r.heap = Some(HeapReadings {
        total_bytes: total as u64,
        used_bytes: used as u64,
        limit_bytes: limit as u64,
        external_bytes: external as u64,
        array_buffers_bytes: array_buffers as u64,
        detached_contexts: detached as u64,
        spaces: reply
            .spaces
            .into_iter()
            .map(|(name, size, used, available)| HeapSpace {
                name: name.strip_suffix("_space").unwrap_or(&name).to_string(),
                size: size as u64,
                used: used as u64,
                available: available as u64,
            })
            .collect(),
        active_resources: resources,
        version: reply.version,
    });
    if let Some(warnings) = reply.warnings {
        // The in-app counters are cumulative: recompute from them, capping labels.
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_listener: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (name, event, emitter, n) in warnings {
            let name = if by_name.contains_key(&name) || by_name.len() < label_limit { name } else { "other".into() };
            *by_name.entry(name.clone()).or_default() += n as u64;
            if name == "MaxListenersExceededWarning" {
                let key = (event, emitter);
                let key = if by_listener.contains_key(&key) || by_listener.len() < label_limit {
                    key
                } else {
                    ("other".into(), "other".into())
                };
                *by_listener.entry(key).or_default() += n as u64;
            }
        }
        // Counters never go down: a value lower than what we had means a new install.
        for (k, v) in by_name {
            let e = r.warnings.entry(k).or_default();
            *e = (*e).max(v);
        }
        for (k, v) in by_listener {
            let e = r.max_listeners.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    if let Some(gc) = reply.gc {
        for (kind, h) in gc {
            let kind = match kind.as_str() {
                "major" | "minor" | "incremental" | "weakcb" => kind,
                _ => "other".into(),
            };
            let mut buckets = [0u64; 6];
            for (b, v) in buckets.iter_mut().zip(h.b) {
                *b = v as u64;
            }
            let entry = r.gc.entry(kind).or_default();
            if h.n as u64 >= entry.count {
                *entry = GcHistogram { buckets, count: h.n as u64, sum: h.s };
            }
        }
    }
    if let Some((at, used, count)) = reply.major {
        r.after_major_gc = Some((at, used as u64));
        r.major_gcs = count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = r#"{"v":1,"pid":42,"version":"v20.20.2","heap":[5000000,4000000,4345298944,1600000,11000,0],
        "spaces":[["old_space",3000000,2500000,100],["new_space",1000000,500000,200]],
        "resources":{"Timeout":2,"TCPServerWrap":1},
        "warnings":[["MaxListenersExceededWarning","close","IncomingMessage",1],["DeprecationWarning","","",3]],
        "gc":{"minor":{"b":[3,5,5,5,5,5],"n":5,"s":0.004},"major":{"b":[0,1,2,2,2,2],"n":2,"s":0.05}},
        "major":[1700000000000,3900000,2]}"#;

    #[test]
    fn a_sample_reply_becomes_readings() {
        let mut r = InspectorReadings::default();
        apply(&mut r, parse_sample(REPLY).unwrap(), 32);
        let h = r.heap.as_ref().unwrap();
        assert_eq!((h.used_bytes, h.limit_bytes, h.array_buffers_bytes), (4000000, 4345298944, 11000));
        assert_eq!(h.spaces.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["old", "new"]);
        assert_eq!(r.max_listeners[&("close".to_string(), "IncomingMessage".to_string())], 1);
        assert_eq!(r.warnings["DeprecationWarning"], 3);
        assert_eq!(r.gc["major"].count, 2);
        assert_eq!(r.after_major_gc, Some((1700000000000.0, 3900000)));
        assert_eq!(parse_version("v20.20.2"), Some((20, 20, 2)));
    }

    #[test]
    fn hostile_replies_are_refused() {
        let deep = format!(r#"{{"v":1,"x":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        let warnings = |w: &str| {
            REPLY.replace(
                r#"[["MaxListenersExceededWarning","close","IncomingMessage",1],["DeprecationWarning","","",3]]"#,
                w,
            )
        };
        let many: Vec<String> = (0..66).map(|i| format!(r#"["W{i}","","",1]"#)).collect();
        for (what, bad) in [
            ("not JSON", "not json".to_string()),
            ("missing fields", r#"{"v":1}"#.to_string()),
            ("a negative size", REPLY.replace("4000000,", "-1,")),
            ("NaN (JSON.stringify writes null)", REPLY.replace("4000000,", "null,")),
            ("a number out of f64's range", REPLY.replace("4000000,", "1e400,")),
            ("an exabyte", REPLY.replace("4000000,", "2e18,")),
            ("a negative count", REPLY.replace(r#""Timeout":2"#, r#""Timeout":-2"#)),
            ("a negative GC sum", REPLY.replace(r#""s":0.05"#, r#""s":-0.05"#)),
            ("a string for a number", REPLY.replace("4000000,", r#""4000000","#)),
            ("an object for a list", REPLY.replace(r#""heap":["#, r#""heap":{"a":1},"x":["#)),
            ("too few heap numbers", REPLY.replace("[5000000,4000000,", "[")),
            ("a long version", REPLY.replace("v20.20.2", &"x".repeat(100))),
            ("a long warning name", warnings(&format!(r#"[["{}","","",1]]"#, "W".repeat(121)))),
            ("too many warning keys", warnings(&format!("[{}]", many.join(",")))),
            ("a long space name", REPLY.replace("old_space", &"o".repeat(65))),
            ("another version of the reply", REPLY.replace(r#""v":1"#, r#""v":2"#)),
            ("pid 0", REPLY.replace(r#""pid":42"#, r#""pid":0"#)),
            ("deep nesting", deep),
            // install.js replaces them: escaped by JSON.stringify, serde_json refuses them.
            ("a lone surrogate", warnings(r#"[["\ud800x","","",1]]"#)),
        ] {
            assert_eq!(parse_sample(&bad).unwrap_err().reason, Reason::Protocol, "{what}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_optional_ones_may_be_missing() {
        let extra = REPLY.replace(r#""v":1"#, r#""v":1,"extra":{"nested":[1,2,3]}"#);
        assert!(parse_sample(&extra).is_ok());
        let bare = r#"{"v":1,"pid":42,"version":"v18.0.0","heap":[1,1,1,1,1,0],"spaces":[],"resources":{}}"#;
        let mut r = InspectorReadings::default();
        apply(&mut r, parse_sample(bare).unwrap(), 32);
        assert!(r.heap.is_some() && r.warnings.is_empty() && r.gc.is_empty() && r.after_major_gc.is_none());
    }

    #[test]
    fn labels_at_install_js_s_bounds_pass() {
        // 120 characters, some outside the BMP (two UTF-16 units each in the app, one char here).
        let name = "😀".repeat(60) + &"W".repeat(60);
        let reply = REPLY.replace("DeprecationWarning", &name);
        let mut r = InspectorReadings::default();
        apply(&mut r, parse_sample(&reply).unwrap(), 32);
        assert_eq!(r.warnings[&name], 3);
    }

    #[test]
    fn labels_from_the_app_are_capped() {
        let warnings: Vec<String> = (0..50).map(|i| format!(r#"["W{i}Warning","","",1]"#)).collect();
        let reply = REPLY.replace(
            r#"[["MaxListenersExceededWarning","close","IncomingMessage",1],["DeprecationWarning","","",3]]"#,
            &format!("[{}]", warnings.join(",")),
        );
        let mut r = InspectorReadings::default();
        apply(&mut r, parse_sample(&reply).unwrap(), 10);
        assert_eq!(r.warnings.len(), 11);
        assert_eq!(r.warnings["other"], 40);
    }

    #[test]
    fn counters_never_go_down() {
        let mut r = InspectorReadings::default();
        apply(&mut r, parse_sample(REPLY).unwrap(), 32);
        apply(
            &mut r,
            parse_sample(&REPLY.replace(r#""DeprecationWarning","","",3"#, r#""DeprecationWarning","","",1"#)).unwrap(),
            32,
        );
        assert_eq!(r.warnings["DeprecationWarning"], 3);
    }

    #[test]
    fn injected_scripts_are_expressions() {
        for s in [INSTALL, SAMPLE, UNINSTALL] {
            assert!(s.trim_end().ends_with("})()"), "an IIFE whose value Runtime.evaluate returns");
        }
        assert!(INSTALL.contains("__OWNER__") && UNINSTALL.contains("__OWNER__"));
    }
}
