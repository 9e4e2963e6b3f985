//! Exposition: turns readings into Prometheus metric families and text.
//!
//! [`Families`] collects samples by family name, so two sources may add to one family
//! (`nodejs_memory_limit_bytes{source="cgroup"}` and `{source="pm2"}`) and the text still holds
//! each family once. Every per-process series carries `pid` and `app` first.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::target::Target;

pub struct Families {
    families: Vec<MetricFamily>,
    index: std::collections::HashMap<String, usize>,
}

impl Default for Families {
    fn default() -> Self {
        Self::new()
    }
}

impl Families {
    pub fn new() -> Self {
        Families { families: Vec::with_capacity(64), index: std::collections::HashMap::with_capacity(64) }
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        let index = match self.index.get(name) {
            Some(i) => *i,
            None => {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(kind);
                self.families.push(f);
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        &mut self.families[index]
    }

    /// Adds one gauge sample with the given labels.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::from_label(label_pairs(labels));
        m.set_gauge(g);
        self.family(name, help, MetricType::GAUGE).mut_metric().push(m);
    }

    /// Adds one counter sample with the given labels. `name` ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        debug_assert!(name.ends_with("_total"), "{name}");
        let mut c = Counter::default();
        c.set_value(value);
        let mut m = Metric::from_label(label_pairs(labels));
        m.set_counter(c);
        self.family(name, help, MetricType::COUNTER).mut_metric().push(m);
    }

    /// Adds a per-target gauge: labels `pid`, `app`, then `extra`.
    pub fn target_gauge(&mut self, t: &Target, name: &str, help: &str, extra: &[(&str, &str)], value: f64) {
        with_target_labels(t, extra, |labels| self.gauge(name, help, labels, value));
    }

    /// Adds a per-target counter: labels `pid`, `app`, then `extra`.
    pub fn target_counter(&mut self, t: &Target, name: &str, help: &str, extra: &[(&str, &str)], value: f64) {
        with_target_labels(t, extra, |labels| self.counter(name, help, labels, value));
    }

    /// Adds one histogram sample: cumulative `counts` for each of `bounds`, then +Inf = `count`.
    #[allow(clippy::too_many_arguments)]
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        count: u64,
        sum: f64,
    ) {
        let mut h = prometheus::proto::Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        let buckets = bounds
            .iter()
            .zip(counts)
            .map(|(b, c)| {
                let mut bucket = prometheus::proto::Bucket::default();
                bucket.set_upper_bound(*b);
                bucket.set_cumulative_count((*c).min(count));
                bucket
            })
            .collect();
        h.set_bucket(buckets);
        let mut m = Metric::from_label(label_pairs(labels));
        m.set_histogram(h);
        self.family(name, help, MetricType::HISTOGRAM).mut_metric().push(m);
    }

    pub fn extend(&mut self, more: Vec<MetricFamily>) {
        self.families.extend(more);
    }

    /// Encodes every non-empty family in the text format (version 0.0.4).
    pub fn encode(self) -> String {
        let families: Vec<MetricFamily> = self.families.into_iter().filter(|f| !f.get_metric().is_empty()).collect();
        let mut out = String::with_capacity(families.len() * 256);
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// `pid`, `app`, then `namespace`, `pod` and `container` for a process in a Kubernetes container
/// whose names are known (and only then: a plain host's series do not change), then `extra`.
fn with_target_labels(t: &Target, extra: &[(&str, &str)], f: impl FnOnce(&[(&str, &str)])) {
    let pid = t.key.pid.to_string();
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(5 + extra.len());
    labels.push(("pid", &pid));
    labels.push(("app", &t.identity.app));
    if let Some(pod) = t.readings.kubernetes.as_ref().and_then(|k| k.label_pairs()) {
        labels.extend_from_slice(&pod);
    }
    labels.extend_from_slice(extra);
    f(&labels)
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v.to_string());
            p
        })
        .collect()
}

/// Metrics that come from discovery itself: identity and PM2's restart limit.
pub fn render_identity(targets: &[&Target], out: &mut Families) {
    for t in targets {
        let id = &t.identity;
        let pm2_id = id.pm2.as_ref().and_then(|p| p.id.as_deref()).unwrap_or("");
        let node_version = id.node_version.as_deref().unwrap_or("");
        let cgroup = t.readings.cgroup.as_ref().map(|c| c.location.path.as_str()).unwrap_or("");
        out.target_gauge(
            t,
            "nodejs_process_info",
            "Identity of a watched Node.js process; join on pid for the PM2 id, Node.js version, user and cgroup.",
            &[("pm2_id", pm2_id), ("node_version", node_version), ("user", &id.user), ("cgroup", cgroup)],
            1.0,
        );
        if let Some(limit) = id.pm2.as_ref().and_then(|p| p.max_memory_restart) {
            out.target_gauge(t, MEMORY_LIMIT, MEMORY_LIMIT_HELP, &[("source", "pm2")], limit as f64);
        }
    }
}

pub const WARNINGS: &str = "nodejs_warnings_total";
pub const WARNINGS_HELP: &str =
    "Process warnings by name, from the inspector and from logs (a warning seen by both counts once).";
pub const MAX_LISTENERS: &str = "nodejs_max_listeners_exceeded_warnings_total";
pub const MAX_LISTENERS_HELP: &str = "MaxListenersExceededWarning by event and emitter type. Node warns once per emitter and event, so one count is a leak already past its limit.";
pub const RESTARTS: &str = "nodejs_process_restarts_total";
pub const RESTARTS_HELP: &str = "Restarts of an app instance: a new process under the same PM2 name and id, or a new container for the same pod container.";

/// Warnings of each target, merged from the inspector and the logs. Both count the same events
/// of the same process (each may miss some: the inspector those before it attached, the logs
/// those printed elsewhere), so the larger count is the one that counts each warning once.
pub fn render_warnings(targets: &[&Target], out: &mut Families) {
    use std::collections::BTreeMap;
    for t in targets {
        let inspector = t.readings.inspector.as_ref();
        let logs = t.readings.logs.as_ref();
        let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
        let mut listeners: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (k, v) in inspector.iter().flat_map(|r| r.warnings.iter()).chain(logs.iter().flat_map(|l| l.by_name.iter()))
        {
            let e = by_name.entry(k.as_str()).or_default();
            *e = (*e).max(*v);
        }
        let sources = inspector
            .iter()
            .flat_map(|r| r.max_listeners.iter())
            .chain(logs.iter().flat_map(|l| l.max_listeners.iter()));
        for ((event, emitter), v) in sources {
            let e = listeners.entry((event.as_str(), emitter.as_str())).or_default();
            *e = (*e).max(*v);
        }
        for (name, n) in by_name {
            out.target_counter(t, WARNINGS, WARNINGS_HELP, &[("name", name)], n as f64);
        }
        for ((event, emitter), n) in listeners {
            out.target_counter(
                t,
                MAX_LISTENERS,
                MAX_LISTENERS_HELP,
                &[("event", event), ("emitter", emitter)],
                n as f64,
            );
        }
    }
}

pub const MEMORY_LIMIT: &str = "nodejs_memory_limit_bytes";
pub const MEMORY_LIMIT_HELP: &str =
    "Memory limit that will stop the process: its cgroup's limit (source=cgroup) or PM2's max_memory_restart (source=pm2).";

pub const MEMORY_GROWTH: &str = "nodejs_memory_growth_bytes_per_second";
pub const COUNT_GROWTH: &str = "nodejs_count_growth_per_second";
pub const LEAK_CONFIDENCE: &str = "nodejs_leak_confidence_ratio";
pub const LEAK_SUSPECTED: &str = "nodejs_leak_suspected";
pub const HEAP_ETA: &str = "nodejs_heap_exhaustion_eta_seconds";
pub const LIMIT_ETA: &str = "nodejs_memory_limit_eta_seconds";

/// The leak analysis of each target: growth and confidence per signal and window (once the
/// window holds enough data), the verdict per signal, and the time left before a limit.
pub fn render_leak(targets: &[&Target], out: &mut Families) {
    for t in targets {
        let Some(state) = &t.leak else { continue };
        let inspector = t.readings.inspector.as_ref().filter(|i| i.connected);
        let heap = inspector.and_then(|i| i.heap.as_ref()).filter(|h| h.limit_bytes > 0).map(|heap| {
            // V8 dies when what survives a full GC reaches the limit, not the top of the sawtooth.
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
        leak_series(state, heap, &limits, |name, help, labels, value| out.target_gauge(t, name, help, labels, value));
    }
}

/// The series of one process's leak analysis, for whoever serves them: the live exporter
/// ([`render_leak`]) and `analyze --output promtool`, so an alert rule tested on a replayed trace
/// sees what it will see live. `heap` is the heap floor (what the last full GC left, else heap
/// used) and the heap limit; `limits` holds each memory limit by `source` with the memory it
/// bounds. `emit` receives name, help, the labels after `pid` and `app`, and the value.
pub fn leak_series(
    state: &crate::leak::LeakState,
    heap: Option<(f64, f64)>,
    limits: &[(&str, Option<f64>, Option<f64>)],
    mut emit: impl FnMut(&str, &str, &[(&str, &str)], f64),
) {
    use crate::leak::{window_label, Signal};
    for signal in Signal::ALL {
        if !state.has_data(signal) {
            continue;
        }
        let label = signal.as_label();
        for r in state.results(signal).filter(|r| r.enough) {
            let window = window_label(r.window);
            let labels = [("signal", label), ("window", window.as_str())];
            if signal.is_bytes() {
                emit(MEMORY_GROWTH, "Growth of the memory floor (the lows the GC sawtooth leaves), bytes per second, Theil-Sen over the window.", &labels, r.estimate.slope);
            } else {
                emit(COUNT_GROWTH, "Growth of a count (open fds, sockets, active resources) at its lows, per second, Theil-Sen over the window.", &labels, r.estimate.slope);
            }
            emit(
                LEAK_CONFIDENCE,
                "Confidence (0 to 1, Mann-Kendall) that the floor of the signal rises over the window.",
                &labels,
                r.estimate.confidence,
            );
        }
        emit(
            LEAK_SUSPECTED,
            "1 while the signal is judged to leak: its floor rises, with confidence, faster than the minimum rate, in one of the windows (with hysteresis).",
            &[("signal", label)],
            if state.suspected(signal) { 1.0 } else { 0.0 },
        );
    }
    if let Some((floor, limit)) = heap {
        if let Some(eta) = state.eta(Signal::HeapUsed, floor, limit) {
            emit(HEAP_ETA, "Seconds until the V8 heap floor reaches the heap limit at its current growth; absent when not growing.", &[], eta);
        }
    }
    for (source, limit, used) in limits {
        let (Some(limit), Some(used)) = (limit, used) else { continue };
        if let Some(eta) = state.eta(Signal::Rss, *used, *limit) {
            emit(LIMIT_ETA, "Seconds until memory reaches the cgroup limit or PM2's max_memory_restart at the current RSS growth; absent when not growing.", &[("source", source)], eta);
        }
    }
}
