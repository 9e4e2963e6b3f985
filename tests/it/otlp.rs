//! OTLP export against a receiver independent of the exporter's protobuf types
//! (`tests/otlp/receiver.py`: PyPI's opentelemetry-proto and grpcio), over gRPC and
//! HTTP/protobuf: names, units, attributes, resources and values for real Node.js processes by
//! the pinned semantic conventions; a receiver that is down and comes back; one that accepts and
//! never answers while scrapes go on.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, metric_value, Exporter, FakeServer, NodeApp};

/// The venv scripts/install-test-deps.sh fills; missing is a failure under CI=true.
fn python() -> Option<PathBuf> {
    let python = util::repo().join("target/py/bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import grpc; from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(!util::ci(), "the OTLP receiver needs opentelemetry-proto and grpcio in target/py under CI=true; run scripts/install-test-deps.sh");
    eprintln!("SKIP: opentelemetry-proto/grpcio not in target/py (scripts/install-test-deps.sh installs them)");
    None
}

/// tests/otlp/receiver.py, killed on drop.
struct Receiver {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(python: &PathBuf, grpc_port: u16, http_port: u16) -> Receiver {
        Receiver::start_with(python, grpc_port, http_port, &[])
    }

    fn start_with(python: &PathBuf, grpc_port: u16, http_port: u16, args: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("requests.jsonl");
        let mut child = Command::new(python)
            .arg(util::repo().join("tests/otlp/receiver.py"))
            .args(["--out", out.to_str().unwrap()])
            .args(["--grpc-port", &grpc_port.to_string(), "--http-port", &http_port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("the receiver did not say ready within 20s");
        let port = |name: &str| -> u16 {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|p| p.parse().ok()).expect(&line)
        };
        Receiver { grpc_port: port("grpc="), http_port: port("http="), child, out, _dir: dir }
    }

    /// Every request received so far, as JSON.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a request carrying a resource of `pid` that satisfies `check`; returns that
    /// resource's `ResourceMetrics` and the request's protocol.
    fn wait_resource(&self, pid: i32, what: &str, check: impl Fn(&Value) -> bool) -> (Value, String) {
        util::wait_for(what, Duration::from_secs(60), || {
            self.requests().into_iter().rev().find_map(|r| {
                let protocol = r["protocol"].as_str()?.to_string();
                r["request"]["resource_metrics"]
                    .as_array()?
                    .iter()
                    .find(|rm| {
                        attr_int(&rm["resource"]["attributes"], "process.pid") == Some(i64::from(pid)) && check(rm)
                    })
                    .map(|rm| (rm.clone(), protocol))
            })
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attr<'a>(attributes: &'a Value, key: &str) -> Option<&'a Value> {
    attributes.as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

fn attr_str<'a>(attributes: &'a Value, key: &str) -> Option<&'a str> {
    attr(attributes, key)?["string_value"].as_str()
}

fn attr_int(attributes: &Value, key: &str) -> Option<i64> {
    attr(attributes, key)?["int_value"].as_str()?.parse().ok()
}

fn metrics(rm: &Value) -> Vec<Value> {
    rm["scope_metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["metrics"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn metric(rm: &Value, name: &str) -> Option<Value> {
    metrics(rm).into_iter().find(|m| m["name"] == name)
}

/// The data points of a metric with its kind (`sum`, `gauge`, `histogram`).
fn points(m: &Value) -> (&'static str, Vec<Value>) {
    for kind in ["sum", "gauge", "histogram"] {
        if let Some(p) = m[kind]["data_points"].as_array() {
            return (kind, p.clone());
        }
    }
    panic!("no data points in {m}")
}

fn number(p: &Value) -> f64 {
    match (&p["as_int"], &p["as_double"]) {
        (Value::String(s), _) => s.parse().unwrap(),
        (_, Value::Number(n)) => n.as_f64().unwrap(),
        // proto3 JSON leaves zero out.
        _ => 0.0,
    }
}

/// The value of the point of `name` whose attributes include `labels`.
fn value(rm: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let m = metric(rm, name)?;
    points(&m)
        .1
        .into_iter()
        .find(|p| labels.iter().all(|(k, v)| attr_str(&p["attributes"], k) == Some(*v)))
        .map(|p| number(&p))
}

/// Every metric name the exporter may send, with its unit and kind: the table of docs/otlp.md.
const MAPPING: &[(&str, &str, &str)] = &[
    ("process.cpu.time", "s", "sum"),
    ("process.memory.usage", "By", "sum"),
    ("process.memory.virtual", "By", "sum"),
    ("process.thread.count", "{thread}", "sum"),
    ("process.unix.file_descriptor.count", "{file_descriptor}", "sum"),
    ("process.uptime", "s", "gauge"),
    ("nodejs_leak.process.file_descriptor.limit", "{file_descriptor}", "gauge"),
    ("nodejs_leak.process.memory.data", "By", "sum"),
    ("nodejs_leak.process.memory.resident", "By", "sum"),
    ("nodejs_leak.process.memory.swap", "By", "sum"),
    ("nodejs_leak.process.memory.pss", "By", "sum"),
    ("nodejs_leak.process.open_sockets", "{socket}", "sum"),
    ("nodejs_leak.memory.limit", "By", "gauge"),
    ("nodejs_leak.cgroup.memory.usage", "By", "sum"),
    ("nodejs_leak.cgroup.oom_kills", "{process}", "sum"),
    ("nodejs_leak.inspector.connected", "1", "gauge"),
    ("v8js.memory.heap.used", "By", "sum"),
    ("v8js.memory.heap.space.size", "By", "sum"),
    ("v8js.memory.heap.limit", "By", "sum"),
    ("v8js.memory.heap.space.available_size", "By", "sum"),
    ("nodejs_leak.heap.limit", "By", "gauge"),
    ("nodejs_leak.heap.used_after_gc", "By", "gauge"),
    ("nodejs_leak.memory.external", "By", "sum"),
    ("nodejs_leak.memory.array_buffers", "By", "sum"),
    ("nodejs_leak.heap.detached_contexts", "{context}", "sum"),
    ("v8js.resource.active", "{resource}", "gauge"),
    ("v8js.gc.duration", "s", "histogram"),
    ("nodejs_leak.warnings", "{warning}", "sum"),
    ("nodejs_leak.max_listeners_exceeded_warnings", "{warning}", "sum"),
    ("nodejs_leak.memory.growth", "By/s", "gauge"),
    ("nodejs_leak.count.growth", "1/s", "gauge"),
    ("nodejs_leak.confidence", "1", "gauge"),
    ("nodejs_leak.suspected", "1", "gauge"),
    ("nodejs_leak.heap.exhaustion_eta", "s", "gauge"),
    ("nodejs_leak.memory_limit.eta", "s", "gauge"),
];

fn close(what: &str, otlp: f64, prom: f64, tolerance: f64) {
    assert!(
        (otlp - prom).abs() <= tolerance * prom.abs().max(1.0),
        "{what}: OTLP {otlp} vs Prometheus {prom} (tolerance {tolerance})"
    );
}

fn node_version() -> String {
    let out = Command::new(util::node().unwrap()).arg("--version").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().trim_start_matches('v').to_string()
}

const SECRET: &str = "nle-otlp-secret-4711";

fn conventions(protocol: &str) {
    let Some(python) = python() else { return };
    let Some(idle) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[("NLE_TEST_TOKEN", SECRET)])
    else {
        return;
    };
    let Some(busy) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "leaky.js", &["fixed"], &[]) else { return };
    let receiver = Receiver::start(&python, 0, 0);
    let endpoint = match protocol {
        "grpc" => format!("--otlp.endpoint=http://127.0.0.1:{}", receiver.grpc_port),
        _ => format!("--otlp.endpoint=http://127.0.0.1:{}", receiver.http_port),
    };
    let exporter = Exporter::start_for(
        &[idle.pid, busy.pid],
        &[
            &endpoint,
            &format!("--otlp.protocol={protocol}"),
            "--otlp.interval=1s",
            "--leak.window=3s",
            "--leak.grace-period=0s",
        ],
    );
    let (pid, busy_pid) = (idle.pid_label(), busy.pid_label());
    exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &pid)]);
    exporter.wait_metric("nodejs_gc_duration_seconds_count", &[("pid", &busy_pid), ("kind", "minor")]);

    // The idle app's resource once it carries the heap and the leak analysis.
    let (rm, got_protocol) = receiver.wait_resource(idle.pid, "the idle app's heap and growth over OTLP", |rm| {
        metric(rm, "v8js.memory.heap.used").is_some() && metric(rm, "nodejs_leak.memory.growth").is_some()
    });
    let prom = exporter.metrics();
    assert_eq!(got_protocol, protocol);
    let res = &rm["resource"]["attributes"];
    assert_eq!(attr_str(res, "service.name"), Some("idle.js"));
    assert_eq!(attr_int(res, "process.pid"), Some(i64::from(idle.pid)));
    assert_eq!(attr_str(res, "process.runtime.name"), Some("nodejs"));
    assert_eq!(attr_str(res, "process.runtime.version"), Some(node_version().as_str()));
    assert!(attr_str(res, "host.name").is_some_and(|h| !h.is_empty()));
    assert!(attr_str(res, "service.instance.id").is_some_and(|i| i.contains(&format!("/{pid}/"))));
    assert!(attr_str(res, "process.creation.time").is_some_and(|t| t.ends_with('Z')));
    let scope = &rm["scope_metrics"][0];
    assert_eq!(scope["scope"]["name"], "nodejs-leak-exporter");
    assert_eq!(scope["schema_url"], "https://opentelemetry.io/schemas/1.42.0");

    // Every metric is in the table, with its unit and kind; cumulative where it is a sum.
    for m in metrics(&rm) {
        let name = m["name"].as_str().unwrap();
        let (_, unit, kind) =
            MAPPING.iter().find(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("{name} is not in the mapping table"));
        assert_eq!(m["unit"], *unit, "{name}");
        assert_eq!(points(&m).0, *kind, "{name}");
        if *kind != "gauge" {
            assert_eq!(m[*kind]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE", "{name}");
        }
    }
    let monotonic = |name: &str| metric(&rm, name).unwrap()["sum"]["is_monotonic"].as_bool().unwrap_or(false);
    assert!(monotonic("process.cpu.time"));
    assert!(!monotonic("process.memory.usage"), "an UpDownCounter by the conventions");

    // Values match what /metrics serves.
    let p = |name: &str, labels: &[(&str, &str)]| {
        let mut l = vec![("pid", pid.as_str())];
        l.extend_from_slice(labels);
        metric_value(&prom, name, &l).unwrap_or_else(|| panic!("{name}{labels:?} missing on /metrics"))
    };
    close("RSS", value(&rm, "process.memory.usage", &[]).unwrap(), p("process_resident_memory_bytes", &[]), 0.1);
    close("virtual", value(&rm, "process.memory.virtual", &[]).unwrap(), p("process_virtual_memory_bytes", &[]), 0.1);
    close("fds", value(&rm, "process.unix.file_descriptor.count", &[]).unwrap(), p("process_open_fds", &[]), 0.2);
    close("threads", value(&rm, "process.thread.count", &[]).unwrap(), p("nodejs_process_threads", &[]), 0.3);
    let user = value(&rm, "process.cpu.time", &[("cpu.mode", "user")]).unwrap();
    close("user CPU", user, p("process_cpu_user_seconds_total", &[]), 0.5);
    let cpu = metric(&rm, "process.cpu.time").unwrap();
    let start_ns: f64 = cpu["sum"]["data_points"][0]["start_time_unix_nano"].as_str().unwrap().parse().unwrap();
    close("CPU start time = process start", start_ns / 1e9, p("process_start_time_seconds", &[]), 1e-6);
    close(
        "heap limit",
        value(&rm, "nodejs_leak.heap.limit", &[]).unwrap(),
        p("nodejs_heap_size_limit_bytes", &[]),
        0.0,
    );
    for space in ["old", "code"] {
        let name = format!("{space}_space");
        let l = [("v8js.heap.space.name", name.as_str())];
        close(
            &format!("{name} used"),
            value(&rm, "v8js.memory.heap.used", &l).unwrap(),
            p("nodejs_heap_space_size_used_bytes", &[("space", space)]),
            0.25,
        );
        close(
            &format!("{name} size"),
            value(&rm, "v8js.memory.heap.space.size", &l).unwrap(),
            p("nodejs_heap_space_size_total_bytes", &[("space", space)]),
            0.25,
        );
        assert_eq!(
            value(&rm, "v8js.memory.heap.limit", &l),
            value(&rm, "v8js.memory.heap.space.size", &l),
            "{name}: the pre-1.42 name carries the same size"
        );
        assert!(value(&rm, "v8js.memory.heap.space.available_size", &l).is_some());
    }
    assert!(value(&rm, "v8js.resource.active", &[("v8js.resource.type", "Timeout")]).unwrap() >= 1.0);
    assert_eq!(value(&rm, "nodejs_leak.inspector.connected", &[]), Some(1.0));
    assert!(value(&rm, "nodejs_leak.suspected", &[("nodejs_leak.signal", "heap_used")]).is_some());
    let growth = metric(&rm, "nodejs_leak.memory.growth").unwrap();
    assert!(points(&growth).1.iter().all(|pt| attr_str(&pt["attributes"], "nodejs_leak.window") == Some("3s")));

    // The busy app has its own resource, and V8's GC histogram with prom-client's buckets.
    let (busy_rm, _) = receiver.wait_resource(busy.pid, "the busy app's GC histogram", |rm| {
        metric(rm, "v8js.gc.duration")
            .is_some_and(|m| points(&m).1.iter().any(|pt| attr_str(&pt["attributes"], "v8js.gc.type") == Some("minor")))
    });
    assert_eq!(attr_str(&busy_rm["resource"]["attributes"], "service.name"), Some("leaky.js"));
    let gc = metric(&busy_rm, "v8js.gc.duration").unwrap();
    let minor =
        points(&gc).1.into_iter().find(|pt| attr_str(&pt["attributes"], "v8js.gc.type") == Some("minor")).unwrap();
    let bounds: Vec<f64> = minor["explicit_bounds"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
    assert_eq!(bounds, vec![0.001, 0.01, 0.1, 1.0, 2.0, 5.0]);
    let counts: Vec<u64> =
        minor["bucket_counts"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().parse().unwrap()).collect();
    let count: u64 = minor["count"].as_str().unwrap().parse().unwrap();
    assert_eq!(counts.len(), 7);
    assert_eq!(counts.iter().sum::<u64>(), count, "per-bucket counts add up to the count");
    assert!(count >= 1 && minor["sum"].as_f64().unwrap() > 0.0);

    // Nothing of the command line or the environment, anywhere.
    let all = std::fs::read_to_string(&receiver.out).unwrap();
    for leak in [SECRET, "--inspect", "idle.js fixed", util::fixture_app("idle.js").to_str().unwrap()] {
        assert!(!all.contains(leak), "{leak:?} was exported");
    }
    let names: BTreeSet<&str> = MAPPING.iter().map(|(n, _, _)| *n).collect();
    assert!(names.len() == MAPPING.len(), "each name once in the table");
}

#[test]
fn grpc_carries_real_processes_by_the_conventions() {
    conventions("grpc");
}

#[test]
fn http_protobuf_carries_real_processes_by_the_conventions() {
    conventions("http/protobuf");
}

fn counter(exporter: &Exporter, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&exporter.metrics(), name, labels).unwrap_or(0.0)
}

fn down_then_up(protocol: &str) {
    let Some(python) = python() else { return };
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let port = util::free_port();
    let exporter = Exporter::start_for(
        &[app.pid],
        &[
            &format!("--otlp.endpoint=http://127.0.0.1:{port}"),
            &format!("--otlp.protocol={protocol}"),
            "--otlp.interval=300ms",
            "--otlp.timeout=1s",
        ],
    );
    util::wait_for("failed pushes to be counted while the receiver is down", Duration::from_secs(30), || {
        (counter(&exporter, "nodejs_leak_exporter_otlp_export_failures_total", &[("reason", "unreachable")]) >= 2.0)
            .then_some(())
    });
    assert_eq!(counter(&exporter, "nodejs_leak_exporter_otlp_last_success_timestamp_seconds", &[]), 0.0);
    let samples = counter(&exporter, "nodejs_leak_exporter_samples_total", &[]);
    assert!(samples >= 3.0, "sampling goes on while the receiver is down");
    let (grpc_port, http_port) = if protocol == "grpc" { (port, 0) } else { (0, port) };
    let receiver = Receiver::start(&python, grpc_port, http_port);
    let (rm, _) = receiver
        .wait_resource(app.pid, "data after the receiver came back", |rm| metric(rm, "process.memory.usage").is_some());
    assert_eq!(attr_str(&rm["resource"]["attributes"], "service.name"), Some("idle.js"));
    util::wait_for("the last success to be recorded", Duration::from_secs(10), || {
        (counter(&exporter, "nodejs_leak_exporter_otlp_last_success_timestamp_seconds", &[]) > 0.0).then_some(())
    });
    assert!(counter(&exporter, "nodejs_leak_exporter_otlp_export_requests_total", &[]) >= 3.0);
}

#[test]
fn grpc_receiver_down_then_back() {
    down_then_up("grpc");
}

#[test]
fn http_receiver_down_then_back() {
    down_then_up("http/protobuf");
}

fn hanging(protocol: &str) {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let silent = FakeServer::silent();
    let exporter = Exporter::start_for(
        &[app.pid],
        &[
            &format!("--otlp.endpoint=http://127.0.0.1:{}", silent.port),
            &format!("--otlp.protocol={protocol}"),
            "--otlp.interval=200ms",
            "--otlp.timeout=2s",
        ],
    );
    // Pushes hang for 2s each while a batch is due every 200ms: the 2-batch queue overflows.
    let before = counter(&exporter, "nodejs_leak_exporter_samples_total", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let text = exporter.metrics();
        slowest = slowest.max(t.elapsed());
        let dropped = metric_value(&text, "nodejs_leak_exporter_otlp_dropped_batches_total", &[]).unwrap_or(0.0);
        let timeouts = metric_value(&text, "nodejs_leak_exporter_otlp_export_failures_total", &[("reason", "timeout")])
            .unwrap_or(0.0);
        if dropped >= 3.0 && timeouts >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no drops or timeouts counted within 30s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(slowest < Duration::from_millis(500), "a scrape took {slowest:?} while the receiver hung");
    let after = counter(&exporter, "nodejs_leak_exporter_samples_total", &[]);
    assert!(after >= before + 10.0, "sampling went on: {before} -> {after} samples");
    assert!(counter(&exporter, "nodejs_leak_exporter_otlp_queued_batches", &[]) <= 2.0);
}

#[test]
fn a_hanging_grpc_receiver_slows_neither_sampling_nor_scrapes() {
    hanging("grpc");
}

#[test]
fn a_hanging_http_receiver_slows_neither_sampling_nor_scrapes() {
    hanging("http/protobuf");
}

#[test]
fn metrics_endpoint_can_be_turned_off_while_pushing() {
    let Some(python) = python() else { return };
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let receiver = Receiver::start(&python, 0, 0);
    let exporter = Exporter::start_for(
        &[app.pid],
        &[
            &format!("--otlp.endpoint=http://127.0.0.1:{}", receiver.http_port),
            "--otlp.interval=300ms",
            "--web.disable-metrics",
        ],
    );
    assert_eq!(exporter.get("/metrics").0, 404);
    assert_eq!(exporter.get("/-/healthy").0, 200);
    assert_eq!(exporter.get("/-/ready").0, 200);
    assert!(exporter.target(app.pid).is_some(), "the status API stays");
    receiver.wait_resource(app.pid, "pushed data with /metrics off", |rm| metric(rm, "process.memory.usage").is_some());
}

#[test]
fn nothing_to_export_is_refused_at_start() {
    let out = Command::new(util::exporter_bin())
        .args(["--web.listen-address=127.0.0.1:0", "--web.disable-metrics"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing would be exported"));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
fn certificates(dir: &std::path::Path) -> bool {
    let Some(openssl) = util::require_tool("openssl") else { return false };
    let run = |args: &[&str]| {
        let out = Command::new(&openssl).args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=otlp-test-ca"],
    ]
    .concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let (key, csr, pem, ext) =
            (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
        run(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={who}")]].concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
    true
}

fn mutual_tls(protocol: &str) {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    if !certificates(dir.path()) {
        return;
    }
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let receiver = Receiver::start_with(
        &python,
        0,
        0,
        &["--tls-cert", &path("server.pem"), "--tls-key", &path("server.key"), "--client-ca", &path("ca.pem")],
    );
    let port = if protocol == "grpc" { receiver.grpc_port } else { receiver.http_port };
    let _exporter = Exporter::start_for(
        &[app.pid],
        &[
            &format!("--otlp.endpoint=https://127.0.0.1:{port}"),
            &format!("--otlp.protocol={protocol}"),
            "--otlp.interval=300ms",
            &format!("--otlp.ca-file={}", path("ca.pem")),
            &format!("--otlp.cert-file={}", path("client.pem")),
            &format!("--otlp.key-file={}", path("client.key")),
        ],
    );
    receiver.wait_resource(app.pid, "data over mutual TLS", |rm| metric(rm, "process.memory.usage").is_some());
}

#[test]
fn grpc_over_mutual_tls() {
    mutual_tls("grpc");
}

#[test]
fn http_protobuf_over_mutual_tls() {
    mutual_tls("http/protobuf");
}
