//! The Grafana dashboards under dashboards/: their structure (ids, datasources, grid, variables,
//! no fallbacks), their conformance to Grafana's dashboard model (scripts/check-dashboards.py with
//! the Grafana Foundation SDK), and every panel and annotation query run against a real Prometheus
//! scraping the exporter that watches real Node.js processes — a leaking app, its fixed twin, an
//! app printing MaxListenersExceededWarning, a restarted PM2-named app, a heap-OOM crash, a cgroup
//! OOM kill — and an app exporting prom-client's default metrics itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::fleet::{self, Fleet};
use crate::prom::{self, Server};
use crate::util::{self, Cgroup, NodeApp};

const FLEET: &str = "nodejs-leak-fleet.json";
const PROCESS: &str = "nodejs-leak-process.json";
const VARIABLES: [&str; 3] = ["instance", "app", "pid"];
/// Grafana's own variables the queries may use.
const BUILTINS: [&str; 3] = ["__rate_interval", "__interval", "__range"];

fn load(name: &str) -> Value {
    let path = util::repo().join("dashboards").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn all_dashboards() -> Vec<(String, Value)> {
    let mut names: Vec<String> = std::fs::read_dir(util::repo().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.contains(&FLEET.to_string()) && names.contains(&PROCESS.to_string()), "{names:?}");
    names.into_iter().map(|n| (n.clone(), load(&n))).collect()
}

/// One query of a dashboard: a panel target or an annotation.
#[derive(Clone, Debug)]
struct Query {
    /// `panel 7 "Title" A`, or `annotation "Name"`.
    what: String,
    panel_title: String,
    expr: String,
    instant: bool,
}

fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        // Collapsed rows keep their panels inside.
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

fn queries(d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                what: format!("panel {} {:?} {}", p["id"], p["title"].as_str().unwrap_or_default(), t["refId"]),
                panel_title: p["title"].as_str().unwrap_or_default().to_string(),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
                instant: t["instant"] == true,
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Query {
                what: format!("annotation {:?}", a["name"].as_str().unwrap_or_default()),
                panel_title: format!("annotation {}", a["name"].as_str().unwrap_or_default()),
                expr: expr.to_string(),
                instant: false,
            });
        }
    }
    out
}

fn variable_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        q => q["query"].as_str().unwrap_or_default().to_string(),
    }
}

/// The `$name` and `${name...}` references in a text.
fn references(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    re.captures_iter(text).map(|c| c.get(1).or(c.get(2)).unwrap().as_str().to_string()).collect()
}

#[test]
fn dashboards_have_unique_ids_a_datasource_on_every_query_a_grid_without_overlap_and_variables_that_resolve() {
    let mut uids = BTreeSet::new();
    for (name, d) in all_dashboards() {
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40 && uids.insert(uid.to_string()), "{name}: uid {uid:?}");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}: title");
        assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 41), "{name}: schemaVersion {}", d["schemaVersion"]);
        // Loadable as is by file provisioning and the kube-prometheus-stack sidecar: no import
        // inputs to fill in, no instance-specific id.
        assert!(d.get("__inputs").is_none() && d.get("__requires").is_none(), "{name}: import-only sections");
        assert!(d.get("id").is_none_or(Value::is_null), "{name}: a numeric id");

        // Variables: the datasource first, then instance, app and pid, each resolving from the
        // datasource and from variables defined before it.
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["datasource", "instance", "app", "pid"], "{name}: variables");
        assert_eq!(vars[0]["type"], "datasource");
        assert_eq!(vars[0]["query"], "prometheus");
        for (i, v) in vars.iter().enumerate().skip(1) {
            assert_eq!(v["type"], "query", "{name}: {}", v["name"]);
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}: {}", v["name"]);
            assert_eq!(v["allValue"], ".*", "{name}: {} must match series without the label", v["name"]);
            let q = variable_query(v);
            assert!(q.starts_with("label_values("), "{name}: {}: {q}", v["name"]);
            for r in references(&q) {
                assert!(names[..i].contains(&r.as_str()), "{name}: {} uses ${r}, not defined before it", v["name"]);
            }
        }

        let all = panels(&d);
        let mut ids = BTreeSet::new();
        let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
        for p in &all {
            let title = p["title"].as_str().unwrap_or_default();
            let id = p["id"].as_u64().unwrap_or_else(|| panic!("{name}: panel {title:?} has no id"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let g = &p["gridPos"];
            let (x, y, w, h) = (g["x"].as_u64(), g["y"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
            let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else { panic!("{name}: {title:?} gridPos {g}") };
            assert!(w > 0 && h > 0 && x + w <= 24, "{name}: {title:?} gridPos {g}");
            for cx in x..x + w {
                for cy in y..y + h {
                    if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                        panic!("{name}: {title:?} overlaps {other:?} at x={cx} y={cy}");
                    }
                }
            }
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {title:?} datasource");
            let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{name}: {title:?} has no queries"));
            assert!(!targets.is_empty(), "{name}: {title:?} has no queries");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}: {title:?} query datasource");
                assert_eq!(t["datasource"]["type"], "prometheus", "{name}: {title:?} query datasource");
                let r = t["refId"].as_str().unwrap_or_default();
                assert!(!r.is_empty() && refs.insert(r.to_string()), "{name}: {title:?} refId {r:?}");
            }
        }
        for a in d["annotations"]["list"].as_array().expect("annotations.list") {
            assert!(a["datasource"]["uid"].is_string(), "{name}: annotation {} has no datasource", a["name"]);
        }

        for q in queries(&d) {
            assert!(!q.expr.trim().is_empty(), "{name}: {} has no expression", q.what);
            for r in references(&q.expr) {
                assert!(
                    VARIABLES.contains(&r.as_str()) || BUILTINS.contains(&r.as_str()),
                    "{name}: {} uses ${r}, which is no variable",
                    q.what
                );
            }
            // A query that falls back to a constant never says "no data" when it has none.
            for fallback in ["vector(", "absent(", "absent_over_time("] {
                assert!(!q.expr.contains(fallback), "{name}: {} falls back with {fallback}: {}", q.what, q.expr);
            }
        }
    }
}

/// The venv python with the Grafana Foundation SDK (scripts/install-test-deps.sh).
fn sdk_python() -> Option<PathBuf> {
    let py = util::repo().join("target/py/bin/python");
    let ok = py.exists()
        && Command::new(&py).args(["-c", "import grafana_foundation_sdk"]).status().is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    assert!(
        !util::ci(),
        "target/py with grafana-foundation-sdk is required under CI=true; run scripts/install-test-deps.sh"
    );
    eprintln!("SKIP: target/py with grafana-foundation-sdk missing (scripts/install-test-deps.sh installs it)");
    None
}

#[test]
fn dashboards_match_grafanas_dashboard_model_and_their_generator() {
    let Some(py) = sdk_python() else { return };
    let out = Command::new(py).arg("scripts/check-dashboards.py").current_dir(util::repo()).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/check-dashboards.py:\n{report}");
    assert!(report.contains("2 dashboards match Grafana's dashboard model"), "{report}");
}

// --- Against real data -----------------------------------------------------------------------------

/// prom-client from npm (scripts/install-test-deps.sh puts it under target/npm-tools).
fn prom_client_modules() -> Option<PathBuf> {
    let dir = util::repo().join("target/npm-tools/node_modules");
    if dir.join("prom-client/package.json").exists() {
        return Some(dir);
    }
    assert!(!util::ci(), "prom-client is required under CI=true; run scripts/install-test-deps.sh");
    eprintln!("SKIP: prom-client not installed (scripts/install-test-deps.sh installs it)");
    None
}

/// An app that exports prom-client's default metrics on its own /metrics, with a little work
/// (garbage, so GCs happen; a timer; a server), and no `app` or `pid` label.
const PROM_CLIENT_APP: &str = r#"
const http = require('http');
const client = require('prom-client');
client.collectDefaultMetrics({ gcDurationBuckets: [0.001, 0.01, 0.1, 1, 2, 5] });
const server = http.createServer(async (req, res) => {
  res.setHeader('Content-Type', client.register.contentType);
  res.end(await client.register.metrics());
});
let kept = [];
setInterval(() => { kept = Array.from({ length: 20000 }, (_, i) => ({ i, s: 'x'.repeat(i % 50) })); }, 100);
server.listen(Number(process.argv[2]), '127.0.0.1', () => process.stdout.write('ready\n'));
"#;

/// Variable values: None for All.
type Selection<'a> = [(&'a str, Option<String>); 3];

/// Grafana's formatting of a selected value for `=~`: regex metacharacters escaped, and the
/// backslash doubled inside the PromQL string.
fn regex_value(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "$^*{}[]'+?.()|\\".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// The query as Grafana sends it for `selection` over `range_s` seconds.
fn expand(expr: &str, selection: &Selection, range_s: u64) -> String {
    let mut out = expr
        .replace("$__rate_interval", "10s")
        .replace("$__interval", "2s")
        .replace("$__range", &format!("{range_s}s"));
    for (name, value) in selection {
        let v = value.as_deref().map(regex_value).unwrap_or_else(|| ".*".into());
        out = out.replace(&format!("${{{name}}}"), &v).replace(&format!("${name}"), &v);
    }
    out
}

/// GET over HTTP/1.0, so that large answers come whole rather than chunked.
fn get(server: &Server, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", server.addr).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_string())
}

struct Window {
    start: f64,
    end: f64,
}

/// Runs `q`; returns its series as (labels, values), values being the finite numbers returned.
fn run(prometheus: &Server, q: &Query, selection: &Selection, w: &Window) -> Result<Vec<(Value, Vec<f64>)>, String> {
    let expr = expand(&q.expr, selection, (w.end - w.start) as u64);
    let path = if q.instant {
        format!("/api/v1/query?query={}&time={}", prom::encode(&expr), w.end)
    } else {
        format!("/api/v1/query_range?query={}&start={}&end={}&step=2", prom::encode(&expr), w.start, w.end)
    };
    let (status, body) = get(prometheus, &path);
    if status != 200 {
        return Err(format!("{}: HTTP {status} for {expr}: {body}", q.what));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{}: {e}", q.what))?;
    let number = |p: &Value| p[1].as_str().and_then(|s| s.parse::<f64>().ok()).filter(|f| f.is_finite());
    Ok(v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let values = match s.get("values") {
                Some(vs) => vs.as_array().unwrap().iter().filter_map(number).collect(),
                None => number(&s["value"]).into_iter().collect(),
            };
            (s["metric"].clone(), values)
        })
        .filter(|(_, values): &(Value, Vec<f64>)| !values.is_empty())
        .collect())
}

/// The queries (of `dashboard`, except those of panels titled in `except`) that return no
/// number for `selection`, as readable lines.
fn empty(prometheus: &Server, d: &Value, selection: &Selection, w: &Window, except: &[&str]) -> Vec<String> {
    queries(d)
        .iter()
        .filter(|q| !except.contains(&q.panel_title.as_str()))
        .filter_map(|q| match run(prometheus, q, selection, w) {
            Ok(series) if !series.is_empty() => None,
            Ok(_) => Some(format!("{}: no data for {}", q.what, expand(&q.expr, selection, 60))),
            Err(e) => Some(e),
        })
        .collect()
}

fn label<'a>(series: &'a (Value, Vec<f64>), name: &str) -> &'a str {
    series.0[name].as_str().unwrap_or_default()
}

/// Label values of a variable's `label_values(SELECTOR, LABEL)` query for a selection.
fn variable_values(prometheus: &Server, d: &Value, name: &str, selection: &Selection, w: &Window) -> BTreeSet<String> {
    let v = d["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap();
    let q = expand(&variable_query(v), selection, 60);
    let inner = q.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).unwrap();
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let path = format!("/api/v1/series?match%5B%5D={}&start={}&end={}", prom::encode(selector.trim()), w.start, w.end);
    let (status, body) = get(prometheus, &path);
    assert_eq!(status, 200, "variable {name}: {q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"].as_array().unwrap().iter().filter_map(|s| s[label.trim()].as_str().map(String::from)).collect()
}

/// Panels of the Process dashboard that show data for an app exporting prom-client's default
/// metrics itself (README, "Dashboards", says the same).
const PROM_CLIENT_PANELS: &[&str] = &[
    "Heap used against the heap limit, with the floor and its slope",
    "Heap spaces (used, stacked)",
    "External memory and array buffers",
    "RSS and what it is made of, against the memory limit",
    "Open file descriptors and sockets",
    "Active resources by type",
    "GC pause, 99th percentile by kind",
    "Time spent in GC by kind",
];

/// Panels whose data depends on the RSS analysis judging a growth confident enough to project
/// (the memory-limit ETA), which a loaded 2-core machine does not always reach within minutes:
/// their queries must run, but may come back empty.
const MAY_BE_EMPTY: &[&str] = &["Memory limit reached in"];

/// Panels and annotations with nothing to show for the leaking app: it prints no warnings and
/// is never restarted.
const QUIET_FOR_THE_LEAK: &[&str] =
    &["MaxListenersExceededWarning by event and emitter", "Process warnings by name", "annotation Restarts"];

#[test]
fn every_panel_query_returns_real_data_and_the_fleet_table_lists_the_leak_not_its_twin() {
    let Some(node) = util::node() else { return };
    let Some(modules) = prom_client_modules() else { return };
    if !util::require_root("memory cgroups (a limit for the leaking app, an OOM kill)") {
        return;
    }
    // An app with prom-client's default metrics, outside the fleet's directory: the exporter
    // does not watch it, Prometheus scrapes it directly.
    let pc_dir = tempfile::tempdir().unwrap();
    let pc_script = pc_dir.path().join("shop-api.js");
    std::fs::write(&pc_script, PROM_CLIENT_APP).unwrap();
    let pc_port = util::free_port();
    let mut cmd = Command::new(&node);
    cmd.arg(&pc_script).arg(pc_port.to_string()).env("NODE_PATH", &modules);
    let _prom_client_app = NodeApp::start(cmd);
    let pc_instance = format!("127.0.0.1:{pc_port}");

    let logs = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(fleet::Options {
        leaky_cgroup_limit: Some(1 << 30),
        exporter_args: vec![format!("--log.path=crashy={}/*.log", logs.path().display())],
        exporter_config: "collectors:\n  logs:\n    pm2: false\n    kubernetes: false\n".into(),
        rule_overrides: vec![
            ("heap_leak_for", "5s"),
            ("native_leak_for", "5s"),
            ("handle_leak_for", "5s"),
            ("eta_for", "5s"),
        ],
        extra_scrapes: vec![("shop-api".into(), pc_instance.clone())],
        ..Default::default()
    });
    let Some(fleet) = fleet else { return };
    let exporter = &fleet.exporter;
    let seen = |pid: i32| {
        util::wait_for(&format!("the exporter to watch pid {pid}"), Duration::from_secs(20), || {
            exporter.target(pid).map(|_| ())
        })
    };

    // A connection-pool leak (sockets and fds) and a Buffer leak (external memory and RSS) in a
    // cgroup with a limit, so the fleet table shows each kind of leak.
    let service = |name: &str, args: &[&str], cgroup: Option<&Cgroup>| {
        let script = fleet.link("service.js", name);
        let mut args: Vec<&str> = args.to_vec();
        args.push("gc_every=500");
        match cgroup {
            Some(cg) => {
                let mut all: Vec<&std::path::Path> = fleet::NODE_ARGS.iter().map(std::path::Path::new).collect();
                all.push(&script);
                all.extend(args.iter().map(std::path::Path::new));
                NodeApp::start(cg.command(&node, &all))
            }
            None => {
                let mut cmd = Command::new(&node);
                cmd.args(fleet::NODE_ARGS).arg(&script).args(&args);
                NodeApp::start(cmd)
            }
        }
    };
    let _pool = service("payments-pool.js", &["leak=pool", "rps=40", "error_rate=0.1"], None);
    let buffer_cgroup = Cgroup::create(&format!("nle-dash-buffer-{}", std::process::id()), 1 << 30);
    let _buffer =
        service("images-buffer.js", &["leak=buffer", "leak_bytes=1048576", "leak_every=100"], Some(&buffer_cgroup));
    // MaxListenersExceededWarning, live through the inspector.
    let mut cmd = Command::new(&node);
    cmd.arg("--inspect=127.0.0.1:0").arg(fleet.link("listeners.js", "notifier.js"));
    let _notifier = NodeApp::start(cmd);
    // A PM2-named app restarted: a new process under the same name and id.
    let worker = fleet.link("idle.js", "worker.js");
    let start_worker = || {
        let mut cmd = Command::new(&node);
        cmd.arg(&worker).envs([("name", "worker"), ("pm_id", "0")]);
        NodeApp::start(cmd)
    };
    let mut first = start_worker();
    seen(first.pid);
    first.kill();
    let _worker = start_worker();
    exporter.wait_metric("nodejs_process_restarts_total", &[("app", "worker")]);
    // A heap-OOM crash, read from its log.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec '{}' --max-old-space-size=16 -e 'const a = []; for (;;) a.push(new Array(1000).fill(\"x\"))' 2>>'{}'",
            node.display(),
            logs.path().join("crashy.log").display()
        ))
        .status()
        .unwrap();
    assert!(!status.success(), "the process died of its heap");
    exporter.wait_metric("nodejs_heap_out_of_memory_crashes_total", &[("app", "crashy")]);
    // A cgroup OOM kill.
    let cgroup = Cgroup::create(&format!("nle-dash-hog-{}", std::process::id()), 96 << 20);
    let mut hog = NodeApp::start(cgroup.command(&node, &[&fleet.link("hog.js", "hog.js")]));
    seen(hog.pid);
    hog.send_line("go");
    assert!(!hog.wait_exit(Duration::from_secs(60)).success(), "the hog must be killed");
    util::wait_for("the OOM kill counted", Duration::from_secs(30), || {
        util::metric_value(&exporter.metrics(), "nodejs_cgroup_oom_kills_total", &[("app", "hog.js")])
            .filter(|v| *v >= 1.0)
    });

    let fleet_d = load(FLEET);
    let process_d = load(PROCESS);
    let all: Selection = [("instance", None), ("app", None), ("pid", None)];
    let leaky_name = "orders-leaky.js";
    let fixed_name = "orders-fixed.js";
    let leaky: Selection = [
        ("instance", Some(exporter.addr.clone())),
        ("app", Some(leaky_name.into())),
        ("pid", Some(fleet.leaky.pid.to_string())),
    ];
    let prom_client: Selection = [("instance", Some(pc_instance.clone())), ("app", None), ("pid", None)];
    let table =
        queries(&fleet_d).into_iter().filter(|q| q.panel_title == "Which processes leak now").collect::<Vec<_>>();
    assert_eq!(table.len(), 5, "{table:?}");
    let window = || Window {
        start: fleet.started_unix,
        end: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64(),
    };

    // Wait for the leak to be judged and every panel to fill, and for the fixed twin to be out of
    // the table: its warm-up may be judged for a moment before the verdict clears.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let (missing, twin) = loop {
        let w = window();
        let mut twin = Vec::new();
        for q in &table {
            let rows = run(&fleet.prometheus, q, &all, &w).unwrap_or_else(|e| panic!("{e}"));
            twin.extend(
                rows.into_iter().filter(|s| label(s, "app") == fixed_name).map(|s| format!("{}: {s:?}", q.what)),
            );
        }
        let quiet: Vec<&str> = QUIET_FOR_THE_LEAK.iter().chain(MAY_BE_EMPTY).copied().collect();
        let mut missing = empty(&fleet.prometheus, &fleet_d, &all, &w, MAY_BE_EMPTY);
        missing.extend(empty(&fleet.prometheus, &process_d, &all, &w, MAY_BE_EMPTY));
        missing.extend(empty(&fleet.prometheus, &process_d, &leaky, &w, &quiet));
        if (missing.is_empty() && twin.is_empty()) || std::time::Instant::now() > deadline {
            break (missing, twin);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(
        missing.is_empty(),
        "queries without data after {:?}:\n{}\nthe leaking app's leak series:\n{}",
        fleet.started.elapsed(),
        missing.join("\n"),
        leak_series(&exporter.metrics(), fleet.leaky.pid)
    );
    assert!(twin.is_empty(), "the fixed twin is listed as leaking:\n{}", twin.join("\n"));
    eprintln!("every query has data after {:?}", fleet.started.elapsed());
    for q in queries(&process_d).iter().filter(|q| MAY_BE_EMPTY.contains(&q.panel_title.as_str())) {
        let rows = run(&fleet.prometheus, q, &all, &window()).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: {} series", q.what, rows.len());
    }
    let w = window();

    // The fleet table: the leaking app's heap on every column but the count growth (which has
    // the pool leak's sockets and fds), and not the twin.
    for q in &table {
        let rows = run(&fleet.prometheus, q, &all, &w).unwrap();
        let (app, signal) =
            if q.expr.contains("count_growth") { ("payments-pool.js", "sockets") } else { (leaky_name, "heap_used") };
        assert!(
            rows.iter().any(|s| label(s, "app") == app && label(s, "signal") == signal),
            "{} does not list {app}'s {signal}: {rows:?}",
            q.what
        );
        assert!(rows.iter().all(|s| label(s, "app") != fixed_name), "{}: {rows:?}", q.what);
    }
    // The leaking app's process view shows only it.
    for q in queries(&process_d).iter().filter(|q| !QUIET_FOR_THE_LEAK.contains(&q.panel_title.as_str())) {
        for s in run(&fleet.prometheus, q, &leaky, &w).unwrap() {
            let pid = label(&s, "pid");
            assert!(pid.is_empty() || pid == fleet.leaky.pid.to_string(), "{}: {s:?}", q.what);
        }
    }
    // Events, each under its app.
    let max_of = |d: &Value, title: &str, app: &str| -> f64 {
        queries(d)
            .iter()
            .filter(|q| q.panel_title == title)
            .flat_map(|q| run(&fleet.prometheus, q, &all, &w).unwrap())
            .filter(|s| label(s, "app") == app)
            .flat_map(|s| s.1)
            .fold(0.0, f64::max)
    };
    assert!(max_of(&fleet_d, "MaxListenersExceededWarning by app", "notifier.js") >= 1.0);
    assert!(max_of(&fleet_d, "Process warnings by app", "notifier.js") >= 1.0);
    assert!(max_of(&fleet_d, "Heap OOM crashes by app", "crashy") >= 1.0);
    assert!(max_of(&fleet_d, "cgroup OOM kills by app", "hog.js") >= 1.0);
    assert!(max_of(&fleet_d, "Restarts by app", "worker") >= 1.0);
    assert!(max_of(&process_d, "Leak verdict per signal", leaky_name) == 1.0);

    // The variables resolve, to the exporter's processes and the prom-client app.
    let instances = variable_values(&fleet.prometheus, &process_d, "instance", &all, &w);
    assert!(instances.contains(&exporter.addr) && instances.contains(&pc_instance), "{instances:?}");
    let apps = variable_values(&fleet.prometheus, &process_d, "app", &all, &w);
    assert!(apps.contains(leaky_name) && apps.contains(fixed_name), "{apps:?}");
    let pids = variable_values(&fleet.prometheus, &process_d, "pid", &leaky, &w);
    assert_eq!(pids, BTreeSet::from([fleet.leaky.pid.to_string()]));

    // An app with prom-client's default metrics: its memory, handle and GC panels have data.
    let pc_empty: Vec<String> = empty(&fleet.prometheus, &process_d, &prom_client, &w, &[]);
    for title in PROM_CLIENT_PANELS {
        let panel_queries: Vec<_> = queries(&process_d).into_iter().filter(|q| q.panel_title == *title).collect();
        assert!(!panel_queries.is_empty(), "no panel {title:?}");
        assert!(
            panel_queries.iter().any(|q| !pc_empty.iter().any(|e| e.starts_with(&q.what))),
            "{title:?} shows nothing for the prom-client app: {pc_empty:#?}"
        );
    }

    if let Some(out) = std::env::var_os("RENDER_DASHBOARDS") {
        render(&fleet, &leaky, &PathBuf::from(out));
    }
}

/// The exporter's leak and limit series of one process, for failure messages.
fn leak_series(metrics: &str, pid: i32) -> String {
    let pid = format!("pid=\"{pid}\"");
    metrics
        .lines()
        .filter(|l| {
            l.contains(&pid) && (l.contains("growth") || l.contains("leak") || l.contains("limit") || l.contains("eta"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Draws both dashboards from the same queries over this data (scripts/render-dashboards.py)
/// while the fleet still runs: `RENDER_DASHBOARDS=docs/img cargo test --test it -- dashboards::`.
fn render(fleet: &Fleet, leaky: &Selection, out: &std::path::Path) {
    let py = sdk_python().expect("target/py");
    let vars: Vec<String> = leaky.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or(""))).collect();
    let status = Command::new(py)
        .arg("scripts/render-dashboards.py")
        .arg(format!("--prometheus=http://{}", fleet.prometheus.addr))
        .arg(format!("--start={}", fleet.started_unix))
        .arg(format!("--out={}", out.display()))
        .arg(format!("--process-vars={}", vars.join(",")))
        .current_dir(util::repo())
        .status()
        .unwrap();
    assert!(status.success(), "render-dashboards.py failed");
}
