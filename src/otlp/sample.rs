//! The compact, owned copy of one sample that the sampler hands to the pusher: only the values
//! OTLP sends, so the export task never touches the sampler's state and the sampler never waits
//! on the export.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use crate::collect::inspector::{GcHistogram, HeapReadings};
use crate::collect::procfs::ProcReadings;
use crate::target::Target;

/// Every exported process at one sample.
#[derive(Debug, Clone)]
pub struct Batch {
    /// When the sample was taken: every point's timestamp.
    pub sampled_at: SystemTime,
    pub processes: Vec<ProcessSample>,
}

/// One process at one sample.
#[derive(Debug, Clone)]
pub struct ProcessSample {
    pub pid: i32,
    pub app: String,
    pub user: String,
    pub exe_name: Option<String>,
    /// As Node.js writes it, `v22.1.0`.
    pub node_version: Option<String>,
    /// The process's start: the start time of its cumulative CPU time.
    pub started: SystemTime,
    /// When the exporter first saw it: the start of the counts the exporter makes itself
    /// (warnings, GC pauses, OOM kills), which cover only what happened since.
    pub watched_since: SystemTime,
    /// Exited, kept for the exit retention with its last values.
    pub exited: bool,
    /// Kubernetes names and ids, where the process runs in a pod: resource attributes.
    pub kubernetes: Vec<(&'static str, String)>,
    pub procfs: Option<ProcReadings>,
    pub cgroup_limit: Option<u64>,
    pub cgroup_usage: Option<u64>,
    pub cgroup_oom_kills: Option<u64>,
    pub pm2_limit: Option<u64>,
    pub inspector: Option<InspectorSample>,
    /// Warnings by name, inspector and logs merged (each warning once).
    pub warnings: Vec<(String, u64)>,
    /// `MaxListenersExceededWarning` by (event, emitter type), merged likewise.
    pub max_listeners: Vec<((String, String), u64)>,
    /// The leak analysis as the Prometheus endpoint serves it: family name, labels after `pid`
    /// and `app`, value.
    pub leak: Vec<LeakPoint>,
}

#[derive(Debug, Clone)]
pub struct InspectorSample {
    pub connected: bool,
    pub heap: Option<HeapReadings>,
    pub gc: BTreeMap<String, GcHistogram>,
    /// Heap used right after the last full GC.
    pub after_major_gc: Option<u64>,
    /// When the exporter first attached: GC pauses are counted from then.
    pub since: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct LeakPoint {
    pub family: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The Prometheus families of the leak analysis, so a point keeps a static name.
const LEAK_FAMILIES: [&str; 6] = [
    crate::exposition::MEMORY_GROWTH,
    crate::exposition::COUNT_GROWTH,
    crate::exposition::LEAK_CONFIDENCE,
    crate::exposition::LEAK_SUSPECTED,
    crate::exposition::HEAP_ETA,
    crate::exposition::LIMIT_ETA,
];

/// Turns an instant of this process's clock into wall-clock time.
fn wall(at: Instant, now: Instant, unix_now: SystemTime) -> SystemTime {
    unix_now.checked_sub(now.saturating_duration_since(at)).unwrap_or(unix_now)
}

impl ProcessSample {
    /// Copies what OTLP sends of one target. `watched_since` is when the exporter first saw it.
    pub fn of(t: &Target, watched_since: SystemTime, now: Instant, unix_now: SystemTime) -> ProcessSample {
        let r = &t.readings;
        let started = r
            .procfs
            .as_ref()
            .filter(|p| p.start_time_seconds > 0.0)
            .and_then(|p| SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs_f64(p.start_time_seconds)))
            .unwrap_or_else(|| wall(t.started_at, now, unix_now));
        let inspector = r.inspector.as_ref().map(|i| InspectorSample {
            connected: i.connected,
            heap: i.heap.clone(),
            gc: i.gc.clone(),
            after_major_gc: i.after_major_gc.map(|(_, used)| used),
            since: i.first_connected.map(|at| wall(at, now, unix_now)),
        });
        let (warnings, max_listeners) = merged_warnings(t);
        ProcessSample {
            pid: t.key.pid,
            app: t.identity.app.clone(),
            user: t.identity.user.clone(),
            exe_name: t.identity.exe_name.clone(),
            node_version: t.identity.node_version.clone().or_else(|| {
                r.inspector.as_ref().and_then(|i| i.heap.as_ref()).map(|h| h.version.clone()).filter(|v| !v.is_empty())
            }),
            started,
            watched_since: watched_since.max(started),
            exited: matches!(t.state, crate::target::TargetState::Exited { .. }),
            kubernetes: kubernetes_attributes(t),
            procfs: r.procfs.clone(),
            cgroup_limit: r.cgroup.as_ref().and_then(|c| c.limit_bytes),
            cgroup_usage: r.cgroup.as_ref().and_then(|c| c.usage_bytes),
            cgroup_oom_kills: r.cgroup.as_ref().and_then(|c| c.oom_kills),
            pm2_limit: t.identity.pm2.as_ref().and_then(|p| p.max_memory_restart),
            inspector,
            warnings,
            max_listeners,
            leak: leak_points(t),
        }
    }
}

/// `k8s.*` and `container.id` from what the Kubernetes collector read (cgroup path and kubelet
/// log file names, never the process's environment).
fn kubernetes_attributes(t: &Target) -> Vec<(&'static str, String)> {
    use opentelemetry_semantic_conventions::attribute as attr;
    let Some(k) = &t.readings.kubernetes else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(l) = &k.labels {
        out.push((attr::K8S_NAMESPACE_NAME, l.namespace.clone()));
        out.push((attr::K8S_POD_NAME, l.pod.clone()));
        out.push((attr::K8S_CONTAINER_NAME, l.container.clone()));
    }
    if let Some(c) = &k.container {
        out.push((attr::K8S_POD_UID, c.pod_uid.clone()));
        out.push((attr::CONTAINER_ID, c.container_id.clone()));
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// The warning counts of a target as `exposition::render_warnings` merges them: both the
/// inspector and the logs count the same events, so the larger count counts each warning once.
type Warnings = (Vec<(String, u64)>, Vec<((String, String), u64)>);

fn merged_warnings(t: &Target) -> Warnings {
    let inspector = t.readings.inspector.as_ref();
    let logs = t.readings.logs.as_ref();
    let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, v) in inspector.iter().flat_map(|r| r.warnings.iter()).chain(logs.iter().flat_map(|l| l.by_name.iter())) {
        let e = by_name.entry(k.as_str()).or_default();
        *e = (*e).max(*v);
    }
    let mut listeners: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let sources =
        inspector.iter().flat_map(|r| r.max_listeners.iter()).chain(logs.iter().flat_map(|l| l.max_listeners.iter()));
    for ((event, emitter), v) in sources {
        let e = listeners.entry((event.as_str(), emitter.as_str())).or_default();
        *e = (*e).max(*v);
    }
    (
        by_name.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        listeners.into_iter().map(|((e, m), v)| ((e.to_string(), m.to_string()), v)).collect(),
    )
}

/// The leak series of a target through the same function that renders them for Prometheus
/// (`exposition::leak_series`), with the heap floor and limits chosen as `render_leak` does.
fn leak_points(t: &Target) -> Vec<LeakPoint> {
    let mut out = Vec::new();
    let Some(state) = &t.leak else { return out };
    let inspector = t.readings.inspector.as_ref().filter(|i| i.connected);
    let heap = inspector.and_then(|i| i.heap.as_ref()).filter(|h| h.limit_bytes > 0).map(|heap| {
        let floor = inspector.and_then(|i| i.after_major_gc).map(|(_, used)| used).unwrap_or(heap.used_bytes);
        (floor as f64, heap.limit_bytes as f64)
    });
    let rss = t.readings.procfs.as_ref().map(|p| p.resident_bytes as f64);
    let cgroup = t.readings.cgroup.as_ref();
    let limits = [
        (
            "cgroup",
            cgroup.and_then(|c| c.limit_bytes).map(|l| l as f64),
            cgroup.and_then(|c| c.usage_bytes).map(|u| u as f64).or(rss),
        ),
        ("pm2", t.identity.pm2.as_ref().and_then(|p| p.max_memory_restart).map(|l| l as f64), rss),
    ];
    crate::exposition::leak_series(state, heap, &limits, |name, _help, labels, value| {
        let Some(family) = LEAK_FAMILIES.iter().find(|f| **f == name) else { return };
        let labels = labels
            .iter()
            .filter_map(|(k, v)| {
                let key = match *k {
                    "signal" => "signal",
                    "window" => "window",
                    "source" => "source",
                    _ => return None,
                };
                Some((key, v.to_string()))
            })
            .collect();
        out.push(LeakPoint { family, labels, value });
    });
    out
}
