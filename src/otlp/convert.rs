//! One watched process's sample as one OTLP `ResourceMetrics`: its own resource (`service.name`
//! is the app, `process.pid` the pid), names, units and attributes by the pinned semantic
//! conventions where they exist, the `nodejs_leak.*` namespace where they do not. The table of
//! every Prometheus family and what it becomes is in `docs/otlp.md`; the tests below hold it.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::metrics::data::{
    Aggregation, Gauge, GaugeDataPoint, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, Sum,
    SumDataPoint,
};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::Resource;
use opentelemetry_semantic_conventions::{attribute as attr, metric as semconv, SCHEMA_URL};

use super::sample::{LeakPoint, ProcessSample};
use crate::collect::inspector::{HeapSpace, GC_BUCKETS};

/// The semantic conventions version the names follow (the schema URL of
/// `opentelemetry-semantic-conventions` 0.33.1).
pub const SEMCONV_VERSION: &str = "1.42.0";

/// What every process's resource shares: the host and `OTEL_RESOURCE_ATTRIBUTES`.
#[derive(Debug, Clone, Default)]
pub struct Common {
    pub host_name: String,
    pub extra: Vec<(String, String)>,
}

/// Builds the resource and metrics of one process at `time`.
pub fn resource_metrics(p: &ProcessSample, common: &Common, time: SystemTime) -> ResourceMetrics {
    let scope = InstrumentationScope::builder("nodejs-leak-exporter")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(SCHEMA_URL)
        .build();
    let mut out = Out { time, metrics: Vec::with_capacity(48) };
    process_metrics(p, &mut out);
    v8_metrics(p, &mut out);
    warning_metrics(p, &mut out);
    leak_metrics(&p.leak, &mut out);
    ResourceMetrics { resource: resource(p, common), scope_metrics: vec![ScopeMetrics { scope, metrics: out.metrics }] }
}

fn resource(p: &ProcessSample, common: &Common) -> Resource {
    let mut kv: Vec<KeyValue> = common
        .extra
        .iter()
        .filter(|(k, _)| k != attr::HOST_NAME)
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let host =
        common.extra.iter().find(|(k, _)| k == attr::HOST_NAME).map(|(_, v)| v.as_str()).unwrap_or(&common.host_name);
    let start_secs = p.started.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    kv.extend([
        KeyValue::new(attr::SERVICE_NAME, p.app.clone()),
        // Unique per process on the host, also across pid reuse: cluster workers and replicas
        // of one app share service.name.
        KeyValue::new(attr::SERVICE_INSTANCE_ID, format!("{host}/{}/{start_secs}", p.pid)),
        KeyValue::new(attr::HOST_NAME, host.to_string()),
        KeyValue::new(attr::PROCESS_PID, i64::from(p.pid)),
        KeyValue::new(attr::PROCESS_CREATION_TIME, humantime::format_rfc3339_millis(p.started).to_string()),
        KeyValue::new(attr::PROCESS_RUNTIME_NAME, "nodejs"),
        KeyValue::new(attr::PROCESS_OWNER, p.user.clone()),
    ]);
    if let Some(v) = &p.node_version {
        kv.push(KeyValue::new(attr::PROCESS_RUNTIME_VERSION, v.trim_start_matches('v').to_string()));
    }
    kv.extend(p.kubernetes.iter().map(|(k, v)| KeyValue::new(*k, v.clone())));
    if let Some(exe) = &p.exe_name {
        kv.push(KeyValue::new(attr::PROCESS_EXECUTABLE_NAME, exe.clone()));
    }
    Resource::builder_empty().with_attributes(kv).build()
}

/// Collects metrics; a metric without points is left out.
struct Out {
    time: SystemTime,
    metrics: Vec<Metric>,
}

type Points<T> = Vec<(Vec<KeyValue>, T)>;

impl Out {
    fn push(&mut self, name: &'static str, description: &'static str, unit: &'static str, data: Box<dyn Aggregation>) {
        self.metrics.push(Metric {
            name: Cow::Borrowed(name),
            description: Cow::Borrowed(description),
            unit: Cow::Borrowed(unit),
            data,
        });
    }

    /// A value that is not additive, or not a count: a gauge.
    fn gauge(&mut self, name: &'static str, description: &'static str, unit: &'static str, points: Points<f64>) {
        if points.is_empty() {
            return;
        }
        let data_points = points
            .into_iter()
            .map(|(attributes, value)| GaugeDataPoint { attributes, value, exemplars: vec![] })
            .collect();
        self.push(name, description, unit, Box::new(Gauge { data_points, start_time: None, time: self.time }));
    }

    /// An additive quantity read as a whole (bytes in use, open fds): what the semantic
    /// conventions make an UpDownCounter, a non-monotonic cumulative sum.
    fn updown(
        &mut self,
        name: &'static str,
        description: &'static str,
        unit: &'static str,
        start: SystemTime,
        points: Points<i64>,
    ) {
        self.sum(name, description, unit, start, points, false);
    }

    /// A count that only grows, from `start`.
    fn counter<T: Copy + Send + Sync + std::fmt::Debug + 'static>(
        &mut self,
        name: &'static str,
        description: &'static str,
        unit: &'static str,
        start: SystemTime,
        points: Points<T>,
    ) {
        self.sum(name, description, unit, start, points, true);
    }

    /// Quantities of the same kind as [`Out::updown`]'s, each one point when it was read:
    /// (name, description, unit, value).
    fn updowns(&mut self, start: SystemTime, rows: &[(&'static str, &'static str, &'static str, Option<u64>)]) {
        for &(name, description, unit, value) in rows {
            self.updown(name, description, unit, start, opt(value.map(int)));
        }
    }

    fn sum<T: Copy + Send + Sync + std::fmt::Debug + 'static>(
        &mut self,
        name: &'static str,
        description: &'static str,
        unit: &'static str,
        start: SystemTime,
        points: Points<T>,
        is_monotonic: bool,
    ) {
        if points.is_empty() {
            return;
        }
        let data_points = points
            .into_iter()
            .map(|(attributes, value)| SumDataPoint { attributes, value, exemplars: vec![] })
            .collect();
        let data =
            Sum { data_points, start_time: start, time: self.time, temporality: Temporality::Cumulative, is_monotonic };
        self.push(name, description, unit, Box::new(data));
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn one<T>(value: T) -> Points<T> {
    vec![(vec![], value)]
}

fn opt<T>(value: Option<T>) -> Points<T> {
    value.map(one).unwrap_or_default()
}

fn process_metrics(p: &ProcessSample, out: &mut Out) {
    let start = p.started;
    if let Some(r) = &p.procfs {
        out.counter(
            semconv::PROCESS_CPU_TIME,
            "CPU time the process spent, by mode.",
            "s",
            start,
            vec![
                (vec![KeyValue::new(attr::CPU_MODE, "user")], r.cpu_user_seconds),
                (vec![KeyValue::new(attr::CPU_MODE, "system")], r.cpu_system_seconds),
            ],
        );
        out.updowns(
            start,
            &[
                (semconv::PROCESS_MEMORY_USAGE, "Resident set size (VmRSS).", "By", Some(r.resident_bytes)),
                (semconv::PROCESS_MEMORY_VIRTUAL, "Virtual memory size.", "By", Some(r.virtual_bytes)),
                (semconv::PROCESS_THREAD_COUNT, "OS threads of the process.", "{thread}", Some(r.threads)),
                (
                    semconv::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
                    "Open file descriptors.",
                    "{file_descriptor}",
                    r.open_fds,
                ),
            ],
        );
        let uptime = out.time.duration_since(start).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        out.gauge(semconv::PROCESS_UPTIME, "Time since the process started.", "s", one(uptime));
        out.gauge(
            "nodejs_leak.process.file_descriptor.limit",
            "Soft limit of open file descriptors.",
            "{file_descriptor}",
            opt(r.max_fds.map(|v| v as f64)),
        );
        out.updown(
            "nodejs_leak.process.memory.data",
            "Data segment size (VmData), what prom-client calls process_heap_bytes.",
            "By",
            start,
            opt(r.data_bytes.map(int)),
        );
        let breakdown: Points<i64> =
            [("anon", r.rss_anon_bytes), ("file", r.rss_file_bytes), ("shmem", r.rss_shmem_bytes)]
                .into_iter()
                .filter_map(|(kind, v)| Some((vec![KeyValue::new("nodejs_leak.memory.type", kind)], int(v?))))
                .collect();
        out.updown(
            "nodejs_leak.process.memory.resident",
            "Resident memory by kind: anon grows with heap and native leaks.",
            "By",
            start,
            breakdown,
        );
        out.updowns(
            start,
            &[
                ("nodejs_leak.process.memory.swap", "Memory of the process swapped out.", "By", r.swap_bytes),
                ("nodejs_leak.process.memory.pss", "Proportional set size from smaps_rollup.", "By", r.pss_bytes),
            ],
        );
        let sockets: Points<i64> = r
            .sockets
            .iter()
            .flat_map(|s| [("tcp", s.tcp), ("udp", s.udp), ("unix", s.unix), ("other", s.other)])
            .map(|(proto, v)| (vec![KeyValue::new(attr::NETWORK_TRANSPORT, proto)], int(v)))
            .collect();
        out.updown("nodejs_leak.process.open_sockets", "Open sockets by transport.", "{socket}", start, sockets);
    }
    let limits: Points<f64> = [("cgroup", p.cgroup_limit), ("pm2", p.pm2_limit)]
        .into_iter()
        .filter_map(|(source, v)| Some((vec![KeyValue::new("nodejs_leak.limit.source", source)], v? as f64)))
        .collect();
    out.gauge(
        "nodejs_leak.memory.limit",
        "The memory limit that will stop the process: its cgroup's smallest limit, or PM2's max_memory_restart.",
        "By",
        limits,
    );
    out.updown(
        "nodejs_leak.cgroup.memory.usage",
        "Memory charged to the process's cgroup.",
        "By",
        start,
        opt(p.cgroup_usage.map(int)),
    );
    out.counter(
        "nodejs_leak.cgroup.oom_kills",
        "Processes of the process's cgroup killed by the OOM killer.",
        "{process}",
        start,
        opt(p.cgroup_oom_kills),
    );
}

/// A metric with a point per heap space: its name, description, and what of a space it reads.
type PerSpace = (&'static str, &'static str, fn(&HeapSpace) -> u64);

fn v8_metrics(p: &ProcessSample, out: &mut Out) {
    let Some(i) = &p.inspector else { return };
    if !p.exited {
        out.gauge(
            "nodejs_leak.inspector.connected",
            "1 while an inspector session is open and answering, so the V8 metrics are live.",
            "1",
            one(if i.connected { 1.0 } else { 0.0 }),
        );
    }
    let since = i.since.unwrap_or(p.watched_since).max(p.started);
    if let Some(h) = &i.heap {
        let space = |name: &str| vec![KeyValue::new(attr::V8JS_HEAP_SPACE_NAME, format!("{name}_space"))];
        #[allow(deprecated)]
        let per_space: [PerSpace; 4] = [
            (semconv::V8JS_MEMORY_HEAP_USED, "Heap space used (space_used_size), per space.", |s| s.used),
            (semconv::V8JS_MEMORY_HEAP_SPACE_SIZE, "Heap space size (space_size), per space.", |s| s.size),
            // The same sizes under the name older conventions (and this project's issue) give them:
            // 1.42.0 renamed `v8js.memory.heap.limit` to `v8js.memory.heap.space.size`, and backends
            // and dashboards built on the old name keep working.
            (
                semconv::V8JS_MEMORY_HEAP_LIMIT,
                "Heap space size (space_size), per space; the name before semantic conventions 1.42.0 (v8js.memory.heap.space.size).",
                |s| s.size,
            ),
            (
                semconv::V8JS_MEMORY_HEAP_SPACE_AVAILABLE_SIZE,
                "Heap space available (space_available_size), per space.",
                |s| s.available,
            ),
        ];
        for (name, description, value) in per_space {
            let points = h.spaces.iter().map(|s| (space(&s.name), int(value(s)))).collect();
            out.updown(name, description, "By", since, points);
        }
        out.gauge(
            "nodejs_leak.heap.limit",
            "V8's heap size limit (heap_size_limit, set by --max-old-space-size): what the heap floor must not reach.",
            "By",
            one(h.limit_bytes as f64),
        );
        out.updown(
            "nodejs_leak.memory.external",
            "V8 external memory, array buffers included: a Buffer or native leak shows here while the heap is flat.",
            "By",
            since,
            one(int(h.external_bytes)),
        );
        out.updown(
            "nodejs_leak.memory.array_buffers",
            "Memory of ArrayBuffers and Buffers.",
            "By",
            since,
            one(int(h.array_buffers_bytes)),
        );
        out.updown(
            "nodejs_leak.heap.detached_contexts",
            "Detached V8 contexts; a growing count leaks vm contexts.",
            "{context}",
            since,
            one(int(h.detached_contexts)),
        );
        out.gauge(
            semconv::V8JS_RESOURCE_ACTIVE,
            "Active resources keeping the event loop alive, by type.",
            "{resource}",
            h.active_resources
                .iter()
                .map(|(kind, n)| (vec![KeyValue::new(attr::V8JS_RESOURCE_TYPE, kind.clone())], *n as f64))
                .collect(),
        );
    }
    out.gauge(
        "nodejs_leak.heap.used_after_gc",
        "Heap used right after the last full GC: the floor a leak raises.",
        "By",
        opt(i.after_major_gc.map(|v| v as f64)),
    );
    if !i.gc.is_empty() {
        let data_points =
            i.gc.iter()
                .map(|(kind, h)| {
                    // V8's buckets are cumulative, as Prometheus keeps them; OTLP counts per bucket.
                    let mut bucket_counts = Vec::with_capacity(GC_BUCKETS.len() + 1);
                    let mut below = 0u64;
                    for c in h.buckets {
                        let c = c.min(h.count).max(below);
                        bucket_counts.push(c - below);
                        below = c;
                    }
                    bucket_counts.push(h.count.saturating_sub(below));
                    HistogramDataPoint {
                        attributes: vec![KeyValue::new(attr::V8JS_GC_TYPE, kind.clone())],
                        count: h.count,
                        bounds: GC_BUCKETS.to_vec(),
                        bucket_counts,
                        min: None,
                        max: None,
                        sum: h.sum,
                        exemplars: vec![],
                    }
                })
                .collect();
        let data = Histogram { data_points, start_time: since, time: out.time, temporality: Temporality::Cumulative };
        out.push(semconv::V8JS_GC_DURATION, "Garbage collection pauses, by type.", "s", Box::new(data));
    }
}

fn warning_metrics(p: &ProcessSample, out: &mut Out) {
    out.counter(
        "nodejs_leak.warnings",
        "Process warnings by name, from the inspector and logs (each warning once), since the exporter watches the process.",
        "{warning}",
        p.watched_since,
        p.warnings
            .iter()
            .map(|(name, n)| (vec![KeyValue::new("nodejs_leak.warning.name", name.clone())], *n))
            .collect(),
    );
    out.counter(
        "nodejs_leak.max_listeners_exceeded_warnings",
        "MaxListenersExceededWarning by event and emitter type; Node warns once per emitter and event.",
        "{warning}",
        p.watched_since,
        p.max_listeners
            .iter()
            .map(|((event, emitter), n)| {
                (
                    vec![
                        KeyValue::new("nodejs_leak.event.name", event.clone()),
                        KeyValue::new("nodejs_leak.emitter.type", emitter.clone()),
                    ],
                    *n,
                )
            })
            .collect(),
    );
}

/// The OTLP name, description and unit of each leak family, and how its labels are named.
fn leak_family(family: &str) -> Option<(&'static str, &'static str, &'static str)> {
    use crate::exposition as e;
    Some(match family {
        f if f == e::MEMORY_GROWTH => (
            "nodejs_leak.memory.growth",
            "Growth of the memory floor (the lows the GC sawtooth leaves), Theil-Sen over the window.",
            "By/s",
        ),
        f if f == e::COUNT_GROWTH => (
            "nodejs_leak.count.growth",
            "Growth of a count (open fds, sockets, active resources) at its lows, Theil-Sen over the window.",
            "1/s",
        ),
        f if f == e::LEAK_CONFIDENCE => (
            "nodejs_leak.confidence",
            "Confidence (0 to 1, Mann-Kendall) that the floor of the signal rises over the window.",
            "1",
        ),
        f if f == e::LEAK_SUSPECTED => (
            "nodejs_leak.suspected",
            "The verdict: 1 while the signal is judged to leak (with hysteresis), else 0.",
            "1",
        ),
        f if f == e::HEAP_ETA => (
            "nodejs_leak.heap.exhaustion_eta",
            "Time until the heap floor reaches the heap limit at its current growth; absent when not growing.",
            "s",
        ),
        f if f == e::LIMIT_ETA => (
            "nodejs_leak.memory_limit.eta",
            "Time until memory reaches the cgroup limit or PM2's max_memory_restart at the current RSS growth.",
            "s",
        ),
        _ => return None,
    })
}

fn leak_metrics(points: &[LeakPoint], out: &mut Out) {
    // Points arrive interleaved by signal; each family becomes one metric, in first-seen order.
    let mut families: Vec<(&'static str, Points<f64>)> = Vec::new();
    for p in points {
        let attributes = p
            .labels
            .iter()
            .map(|(k, v)| {
                let key = match *k {
                    "signal" => "nodejs_leak.signal",
                    "window" => "nodejs_leak.window",
                    _ => "nodejs_leak.limit.source",
                };
                KeyValue::new(key, Value::from(v.clone()))
            })
            .collect();
        match families.iter_mut().find(|(f, _)| *f == p.family) {
            Some((_, list)) => list.push((attributes, p.value)),
            None => families.push((p.family, vec![(attributes, p.value)])),
        }
    }
    for (family, list) in families {
        if let Some((name, description, unit)) = leak_family(family) {
            out.gauge(name, description, unit, list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::inspector::{GcHistogram, HeapReadings, HeapSpace};
    use crate::otlp::sample::InspectorSample;
    use std::time::Duration;

    fn sample() -> ProcessSample {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        ProcessSample {
            pid: 42,
            app: "orders".into(),
            user: "app".into(),
            exe_name: Some("node".into()),
            node_version: Some("v22.1.0".into()),
            started,
            watched_since: started + Duration::from_secs(60),
            exited: false,
            kubernetes: vec![(attr::K8S_POD_NAME, "orders-7d".into())],
            procfs: Some(crate::collect::procfs::ProcReadings {
                resident_bytes: 100 << 20,
                cpu_user_seconds: 1.5,
                cpu_system_seconds: 0.5,
                threads: 11,
                open_fds: Some(20),
                ..Default::default()
            }),
            cgroup_limit: Some(512 << 20),
            cgroup_usage: None,
            cgroup_oom_kills: None,
            pm2_limit: None,
            inspector: Some(InspectorSample {
                connected: true,
                heap: Some(HeapReadings {
                    used_bytes: 30 << 20,
                    limit_bytes: 2 << 30,
                    spaces: vec![HeapSpace { name: "old".into(), size: 40 << 20, used: 25 << 20, available: 1 << 20 }],
                    ..Default::default()
                }),
                gc: [("minor".to_string(), GcHistogram { buckets: [2, 5, 5, 5, 5, 5], count: 6, sum: 0.2 })].into(),
                after_major_gc: Some(24 << 20),
                since: Some(started + Duration::from_secs(120)),
            }),
            warnings: vec![("MaxListenersExceededWarning".into(), 3)],
            max_listeners: vec![(("close".into(), "Socket".into()), 3)],
            leak: vec![
                LeakPoint {
                    family: crate::exposition::MEMORY_GROWTH,
                    labels: vec![("signal", "heap_used".into()), ("window", "15m".into())],
                    value: 1000.0,
                },
                LeakPoint {
                    family: crate::exposition::LEAK_SUSPECTED,
                    labels: vec![("signal", "heap_used".into())],
                    value: 1.0,
                },
                LeakPoint {
                    family: crate::exposition::MEMORY_GROWTH,
                    labels: vec![("signal", "rss".into()), ("window", "15m".into())],
                    value: 10.0,
                },
                LeakPoint {
                    family: crate::exposition::LIMIT_ETA,
                    labels: vec![("source", "cgroup".into())],
                    value: 60.0,
                },
            ],
        }
    }

    fn find<'a>(rm: &'a ResourceMetrics, name: &str) -> Option<&'a Metric> {
        rm.scope_metrics[0].metrics.iter().find(|m| m.name == name)
    }

    #[test]
    fn one_resource_per_process_with_its_identity() {
        let common =
            Common { host_name: "h1".into(), extra: vec![("deployment.environment.name".into(), "prod".into())] };
        let rm = resource_metrics(&sample(), &common, SystemTime::now());
        let get = |k: &str| rm.resource.get(&opentelemetry::Key::from(k.to_string())).map(|v| v.to_string());
        assert_eq!(get("service.name").as_deref(), Some("orders"));
        assert_eq!(get("process.pid").as_deref(), Some("42"));
        assert_eq!(get("process.runtime.version").as_deref(), Some("22.1.0"));
        assert_eq!(get("process.creation.time").as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(get("service.instance.id").as_deref(), Some("h1/42/1700000000"));
        assert_eq!(get("k8s.pod.name").as_deref(), Some("orders-7d"));
        assert_eq!(get("deployment.environment.name").as_deref(), Some("prod"));
        assert!(get("telemetry.sdk.language").is_none(), "not the SDK's resource: the process's");
        let common = Common { host_name: "h1".into(), extra: vec![("host.name".into(), "node-7".into())] };
        let rm = resource_metrics(&sample(), &common, SystemTime::now());
        assert_eq!(rm.resource.get(&opentelemetry::Key::from("host.name")).unwrap().to_string(), "node-7");
    }

    #[test]
    fn counters_start_when_their_counts_do() {
        let p = sample();
        let rm = resource_metrics(&p, &Common::default(), SystemTime::now());
        let cpu = find(&rm, "process.cpu.time").unwrap().data.as_any().downcast_ref::<Sum<f64>>().unwrap();
        assert_eq!(cpu.start_time, p.started);
        assert!(cpu.is_monotonic);
        assert_eq!(cpu.data_points.len(), 2);
        let warnings = find(&rm, "nodejs_leak.warnings").unwrap().data.as_any().downcast_ref::<Sum<u64>>().unwrap();
        assert_eq!(warnings.start_time, p.watched_since);
        let gc = find(&rm, "v8js.gc.duration").unwrap().data.as_any().downcast_ref::<Histogram<f64>>().unwrap();
        assert_eq!(gc.start_time, p.inspector.as_ref().unwrap().since.unwrap());
    }

    #[test]
    fn gc_buckets_are_counted_per_bucket() {
        let rm = resource_metrics(&sample(), &Common::default(), SystemTime::now());
        let gc = find(&rm, "v8js.gc.duration").unwrap().data.as_any().downcast_ref::<Histogram<f64>>().unwrap();
        let p = &gc.data_points[0];
        assert_eq!(p.bounds, GC_BUCKETS.to_vec());
        assert_eq!(p.bucket_counts, vec![2, 3, 0, 0, 0, 0, 1], "cumulative [2,5,5,5,5,5] of 6");
        assert_eq!((p.count, p.sum, p.min, p.max), (6, 0.2, None, None));
    }

    #[test]
    fn heap_spaces_take_v8s_names_and_leak_series_their_families() {
        let rm = resource_metrics(&sample(), &Common::default(), SystemTime::now());
        let used = find(&rm, "v8js.memory.heap.used").unwrap().data.as_any().downcast_ref::<Sum<i64>>().unwrap();
        assert_eq!(used.data_points[0].attributes, vec![KeyValue::new("v8js.heap.space.name", "old_space")]);
        assert!(!used.is_monotonic);
        let growth = find(&rm, "nodejs_leak.memory.growth").unwrap();
        assert_eq!(growth.unit, "By/s");
        let g = growth.data.as_any().downcast_ref::<Gauge<f64>>().unwrap();
        assert_eq!(g.data_points.len(), 2, "both signals in one metric");
        assert_eq!(g.data_points[1].attributes[0], KeyValue::new("nodejs_leak.signal", "rss"));
        let eta =
            find(&rm, "nodejs_leak.memory_limit.eta").unwrap().data.as_any().downcast_ref::<Gauge<f64>>().unwrap();
        assert_eq!(eta.data_points[0].attributes, vec![KeyValue::new("nodejs_leak.limit.source", "cgroup")]);
        assert!(find(&rm, "nodejs_leak.cgroup.memory.usage").is_none(), "no points, no metric");
        assert!(find(&rm, "nodejs_leak.inspector.connected").is_some());
        let exited = ProcessSample { exited: true, ..sample() };
        let rm = resource_metrics(&exited, &Common::default(), SystemTime::now());
        assert!(find(&rm, "nodejs_leak.inspector.connected").is_none(), "as on /metrics: not for an exited process");
    }
}
