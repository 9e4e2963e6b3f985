//! `nodejs-leak-exporter analyze`: the real binary on generated traces — CSV sawtooths and
//! Prometheus query_range answers, leaking and healthy — in every output, with the promtool
//! series checked by the real `promtool test rules`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `analyze` with `args`; returns success, stdout and stderr.
fn analyze(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(util::exporter_bin()).arg("analyze").args(args).output().expect("run the exporter");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn analyze_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = analyze(args);
    assert!(ok, "analyze {args:?} failed:\n{stderr}");
    stdout
}

/// Deterministic noise in [0, 1).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Three hours of a heap sawtooth sampled every 15 s, a GC every minute taking it back to a
/// floor that rises by `leak` MiB/min, with RSS following; `pid` per sample offset (seconds).
fn sawtooth_csv(dir: &Path, name: &str, leak: f64, pid: impl Fn(u64) -> u32) -> PathBuf {
    let mut noise = Noise(7);
    let mut text = String::from("# generated: a GC sawtooth\ntime,heap_used,rss,heap_limit,pid\n");
    for i in 0..720u64 {
        let t = i * 15;
        let floor = 200.0 * MIB + leak * MIB * t as f64 / 60.0;
        let heap = floor + 40.0 * MIB * (t % 60) as f64 / 60.0 + noise.next() * MIB;
        let _ = writeln!(text, "{},{heap:.0},{:.0},{},{}", 1_700_000_000 + t, heap * 1.5, 2048.0 * MIB, pid(t));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A query_range answer over 4 hours at a 1 minute step for two processes of one app: pid 100
/// leaks 0.5 MiB/min of heap, pid 200 does not. Both report the heap after each full GC (every
/// 5 minutes) and sockets split by protocol.
fn query_range_json(dir: &Path) -> PathBuf {
    let mut noise = Noise(11);
    let mut result = Vec::new();
    for (pid, leak) in [(100, 0.5), (200, 0.0)] {
        let (mut used, mut after_gc, mut limit, mut tcp, mut unix) = (vec![], vec![], vec![], vec![], vec![]);
        let mut last_gc = 0.0;
        for i in 0..240u64 {
            let t = 1_700_000_000 + i * 60;
            let floor = 150.0 * MIB + leak * MIB * i as f64;
            if i % 5 == 0 {
                last_gc = floor + noise.next() * 0.3 * MIB;
            }
            used.push(serde_json::json!([t, format!("{:.0}", floor + (i % 5) as f64 * 8.0 * MIB)]));
            after_gc.push(serde_json::json!([t, format!("{last_gc:.0}")]));
            limit.push(serde_json::json!([t, format!("{:.0}", 4096.0 * MIB)]));
            tcp.push(serde_json::json!([t, "4"]));
            unix.push(serde_json::json!([t, "1"]));
        }
        let labels = |name: &str, extra: Option<(&str, &str)>| {
            let mut m =
                serde_json::json!({"__name__": name, "app": "api", "pid": pid.to_string(), "instance": "h:19229"});
            if let Some((k, v)) = extra {
                m[k] = v.into();
            }
            m
        };
        result.push(serde_json::json!({"metric": labels("nodejs_heap_size_used_bytes", None), "values": used}));
        result.push(
            serde_json::json!({"metric": labels("nodejs_heap_size_used_after_gc_bytes", None), "values": after_gc}),
        );
        result.push(serde_json::json!({"metric": labels("nodejs_heap_size_limit_bytes", None), "values": limit}));
        let sockets = |proto, values| serde_json::json!({"metric": labels("nodejs_process_open_sockets", Some(("protocol", proto))), "values": values});
        result.push(sockets("tcp", tcp));
        result.push(sockets("unix", unix));
    }
    let answer = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
    let path = dir.join("api.json");
    std::fs::write(&path, answer.to_string()).unwrap();
    path
}

fn json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = analyze_ok(&[args, &["--output", "json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    v.as_array().expect("an array of traces").clone()
}

fn signal<'a>(trace: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    trace["signals"].as_array().unwrap().iter().find(|s| s["signal"] == name).unwrap_or_else(|| panic!("{name}"))
}

/// The floor growth of a summary line, in MiB/min.
fn growth_in_line(line: &str) -> f64 {
    let rest = line.split("floor growth ").nth(1).unwrap_or_else(|| panic!("no growth in {line:?}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn table_reports_a_leaking_sawtooth_with_its_slope_and_a_flat_one_as_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let leak = analyze_ok(&[sawtooth_csv(dir.path(), "leak.csv", 1.0, |_| 1).to_str().unwrap()]);
    let line = leak.lines().find(|l| l.starts_with("heap_used: ")).unwrap_or_else(|| panic!("{leak}"));
    assert!(line.starts_with("heap_used: leak suspected from +") && line.contains(" to end;"), "{line}");
    let growth = growth_in_line(line);
    assert!((0.9..1.1).contains(&growth), "{line}");
    assert!(leak.contains("LEAK") && leak.contains("15m growth") && leak.contains("ETA"), "{leak}");
    // RSS grows at 1.5 times the heap's rate.
    let rss = leak.lines().find(|l| l.starts_with("rss: ")).unwrap();
    assert!((1.35..1.65).contains(&growth_in_line(rss)), "{rss}");

    let flat = analyze_ok(&[sawtooth_csv(dir.path(), "flat.csv", 0.0, |_| 1).to_str().unwrap()]);
    assert!(flat.lines().any(|l| l.starts_with("heap_used: no leak")), "{flat}");
    assert!(!flat.contains("LEAK") && !flat.contains("leak suspected"), "{flat}");
}

#[test]
fn json_holds_per_step_records_and_a_summary_per_signal() {
    let dir = tempfile::tempdir().unwrap();
    let leak = sawtooth_csv(dir.path(), "leak.csv", 1.0, |_| 1);
    let traces = json(&[leak.to_str().unwrap(), "--step", "5m"]);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t["name"], "leak.csv");
    assert_eq!(t["samples"], 720);
    assert_eq!(t["interval_seconds"], 15.0);
    assert_eq!(t["windows"], serde_json::json!(["15m", "1h", "6h"]));
    assert_eq!(t["step_seconds"], 300.0);
    let heap = signal(t, "heap_used");
    assert_eq!(heap["verdict"], "leak");
    assert_eq!(heap["unit"], "bytes");
    let per_min = heap["growth"]["per_second"].as_f64().unwrap() * 60.0 / MIB;
    assert!((0.9..1.1).contains(&per_min), "{heap}");
    let from = heap["suspected"][0]["from_seconds"].as_f64().unwrap();
    assert!(heap["suspected"][0]["to_seconds"].is_null());
    // Before the warm-up ends there is no verdict; the leak is flagged once the 15m window holds
    // enough full-GC floors after it (one a minute here: BENCHMARKS.md, about 13-20 minutes).
    assert!((600.0..=1800.0).contains(&from), "flagged at {from} s");

    let steps = t["steps"].as_array().unwrap();
    let offsets: Vec<f64> = steps.iter().map(|s| s["offset_seconds"].as_f64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    for k in 0..36 {
        assert!(offsets.contains(&(k as f64 * 300.0)), "a row every 5m: {offsets:?}");
    }
    assert!(offsets.contains(&from), "the sample where the verdict rose is a row");
    let verdict_at = |offset: f64| {
        let step = steps.iter().find(|s| s["offset_seconds"] == offset).unwrap();
        let heap = step["signals"].as_array().unwrap().iter().find(|s| s["signal"] == "heap_used").unwrap();
        heap["verdict"].as_str().unwrap().to_string()
    };
    assert_eq!(verdict_at(0.0), "no_verdict");
    assert_eq!(verdict_at(from), "leak");
    let last = steps.last().unwrap();
    assert!(last["heap_eta_seconds"].as_f64().is_some_and(|eta| eta > 0.0), "{last}");
    let windows = &last["signals"][0]["windows"];
    assert_eq!(windows[1]["window"], "1h");
    assert_eq!(windows[1]["enough"], true);

    let flat = json(&[sawtooth_csv(dir.path(), "flat.csv", 0.0, |_| 1).to_str().unwrap()]);
    assert_eq!(signal(&flat[0], "heap_used")["verdict"], "no_leak");
    assert_eq!(signal(&flat[0], "heap_used")["suspected"], serde_json::json!([]));
}

#[test]
fn a_query_range_answer_is_one_trace_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = query_range_json(dir.path());
    let traces = json(&[file.to_str().unwrap(), "--assume-warm"]);
    assert_eq!(traces.len(), 2);
    let by_pid =
        |pid: &str| traces.iter().find(|t| t["name"].as_str().unwrap().contains(&format!("pid=\"{pid}\""))).unwrap();
    let leaking = signal(by_pid("100"), "heap_used");
    assert_eq!(leaking["verdict"], "leak", "{leaking}");
    let per_min = leaking["growth"]["per_second"].as_f64().unwrap() * 60.0 / MIB;
    assert!((0.45..0.55).contains(&per_min), "{leaking}");
    assert_eq!(signal(by_pid("200"), "heap_used")["verdict"], "no_leak");
    // Sockets of both protocols are summed: 5, flat.
    let steps = by_pid("200")["steps"].as_array().unwrap();
    let sockets = steps[0]["signals"].as_array().unwrap().iter().find(|s| s["signal"] == "sockets").unwrap();
    assert_eq!(sockets["value"], 5.0);
    assert_eq!(signal(by_pid("200"), "sockets")["verdict"], "no_leak");
}

const RULES: &str = r#"groups:
  - name: nodejs-leak
    rules:
      - alert: NodejsMemoryLeak
        expr: nodejs_leak_suspected == 1
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.app }} (pid {{ $labels.pid }}) leaks {{ $labels.signal }}"
          runbook_url: https://github.com/nodejs-leak-exporter/nodejs-leak-exporter#replaying-a-trace-analyze
"#;

/// Writes a promtool test file from `analyze --output promtool` outputs, each followed by its
/// assertions (indented as a test's keys), and runs `promtool test rules` on it.
fn promtool_test(promtool: &Path, dir: &Path, tests: &[(String, String)]) {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let mut file = String::from("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n");
    for (series, assertions) in tests {
        file.push_str(series);
        file.push_str(assertions);
    }
    let path = dir.join("test.yml");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new(promtool).arg("test").arg("rules").arg(&path).output().expect("run promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let head: String = file.lines().take(40).map(|l| format!("{}\n", &l[..l.len().min(200)])).collect();
    assert!(out.status.success(), "promtool test rules failed:\n{report}\n--- test file (head):\n{head}");
}

#[test]
fn promtool_series_fire_the_alert_on_the_leak_and_not_on_the_healthy_trace() {
    let Some(promtool) = util::require_tool("promtool") else { return };
    let dir = tempfile::tempdir().unwrap();
    let leak = sawtooth_csv(dir.path(), "leak.csv", 1.0, |_| 1);
    let flat = sawtooth_csv(dir.path(), "flat.csv", 0.0, |_| 1);
    let from =
        signal(&json(&[leak.to_str().unwrap()])[0], "heap_used")["suspected"][0]["from_seconds"].as_f64().unwrap();
    // The series hold a point a minute: the verdict shows from the next whole minute.
    let up = (from / 60.0).ceil() as u64;
    let leak_series = analyze_ok(&[leak.to_str().unwrap(), "--output", "promtool", "--labels", r#"env="test""#]);
    assert!(leak_series.contains("  - interval: 1m\n    input_series:\n"), "{leak_series}");
    let firing = r#"[{exp_labels: {pid: "1", app: leak, env: test, signal: heap_used, severity: warning},
                      exp_annotations: {summary: "leak (pid 1) leaks heap_used", runbook_url: "https://github.com/nodejs-leak-exporter/nodejs-leak-exporter#replaying-a-trace-analyze"}},
                     {exp_labels: {pid: "1", app: leak, env: test, signal: rss, severity: warning},
                      exp_annotations: {summary: "leak (pid 1) leaks rss", runbook_url: "https://github.com/nodejs-leak-exporter/nodejs-leak-exporter#replaying-a-trace-analyze"}}]"#;
    let leak_assertions = format!(
        "    alert_rule_test:\n\
         \x20     - eval_time: {before}m\n        alertname: NodejsMemoryLeak\n        exp_alerts: []\n\
         \x20     - eval_time: {after}m\n        alertname: NodejsMemoryLeak\n        exp_alerts: {firing}\n\
         \x20     - eval_time: 170m\n        alertname: NodejsMemoryLeak\n        exp_alerts: {firing}\n\
         \x20   promql_expr_test:\n\
         \x20     - expr: count(nodejs_memory_growth_bytes_per_second{{signal=\"heap_used\",window=\"1h\"}} > 15000 < 20000)\n\
         \x20       eval_time: 170m\n        exp_samples: [{{labels: '{{}}', value: 1}}]\n\
         \x20     - expr: count(nodejs_heap_exhaustion_eta_seconds > 0)\n\
         \x20       eval_time: 170m\n        exp_samples: [{{labels: '{{}}', value: 1}}]\n\
         \x20     - expr: nodejs_heap_size_limit_bytes\n\
         \x20       eval_time: 170m\n        exp_samples: [{{labels: 'nodejs_heap_size_limit_bytes{{pid=\"1\",app=\"leak\",env=\"test\"}}', value: 2147483648}}]\n",
        before = up + 3,
        after = up + 6,
    );
    let flat_series = analyze_ok(&[flat.to_str().unwrap(), "--output", "promtool"]);
    let flat_assertions = "    alert_rule_test:\n\
        \x20     - eval_time: 90m\n        alertname: NodejsMemoryLeak\n        exp_alerts: []\n\
        \x20     - eval_time: 179m\n        alertname: NodejsMemoryLeak\n        exp_alerts: []\n\
        \x20   promql_expr_test:\n\
        \x20     - expr: nodejs_leak_suspected\n\
        \x20       eval_time: 179m\n        exp_samples:\n\
        \x20         - {labels: 'nodejs_leak_suspected{pid=\"1\",app=\"flat\",signal=\"heap_used\"}', value: 0}\n\
        \x20         - {labels: 'nodejs_leak_suspected{pid=\"1\",app=\"flat\",signal=\"rss\"}', value: 0}\n"
        .to_string();
    promtool_test(&promtool, dir.path(), &[(leak_series, leak_assertions), (flat_series, flat_assertions)]);
}

#[test]
fn promtool_series_of_a_query_range_answer_keep_processes_apart() {
    let Some(promtool) = util::require_tool("promtool") else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = query_range_json(dir.path());
    let series = analyze_ok(&[file.to_str().unwrap(), "--output", "promtool", "--assume-warm", "--step", "2m"]);
    assert!(series.contains("  - interval: 2m\n"), "{series}");
    assert!(series.contains(r#"nodejs_process_open_sockets{pid="100",app="api",protocol="tcp"}"#), "{series}");
    let assertions = "    alert_rule_test:\n\
        \x20     - eval_time: 200m\n        alertname: NodejsMemoryLeak\n        exp_alerts:\n\
        \x20         - exp_labels: {pid: \"100\", app: api, signal: heap_used, severity: warning}\n\
        \x20           exp_annotations: {summary: \"api (pid 100) leaks heap_used\", runbook_url: \"https://github.com/nodejs-leak-exporter/nodejs-leak-exporter#replaying-a-trace-analyze\"}\n\
        \x20   promql_expr_test:\n\
        \x20     - expr: nodejs_process_open_sockets\n\
        \x20       eval_time: 200m\n        exp_samples:\n\
        \x20         - {labels: 'nodejs_process_open_sockets{pid=\"100\",app=\"api\",protocol=\"tcp\"}', value: 5}\n\
        \x20         - {labels: 'nodejs_process_open_sockets{pid=\"200\",app=\"api\",protocol=\"tcp\"}', value: 5}\n"
        .to_string();
    promtool_test(&promtool, dir.path(), &[(series, assertions)]);
}

/// Checks that every element opened is closed, in order: enough to catch a truncated or
/// malformed SVG without an XML parser.
fn assert_balanced_xml(text: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').unwrap_or_else(|| panic!("unclosed tag at {}", &rest[start..])) + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        assert!(!name.is_empty(), "empty tag <{tag}>");
        if tag.starts_with('/') {
            assert_eq!(open.pop().as_deref(), Some(name.as_str()), "</{name}> closes the wrong element");
        } else {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "never closed: {open:?}");
}

#[test]
fn the_plot_is_an_svg_of_each_signal_with_its_floor_slope_and_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let leak = sawtooth_csv(dir.path(), "leak.csv", 1.0, |_| 1);
    let svg_path = dir.path().join("leak.svg");
    analyze_ok(&[leak.to_str().unwrap(), "--plot", svg_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&svg_path).expect("the plot is written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..svg.len().min(300)]);
    assert_balanced_xml(&svg);
    for expected in ["leak.csv — heap_used: leak", "leak.csv — rss: leak", "leak suspected", "floor points", "window: "]
    {
        assert!(svg.contains(expected), "{expected:?} missing");
    }
    // Series and fits are polylines, floor points circles, the suspected span a shaded rect.
    assert!(svg.matches("<polyline").count() >= 4);
    assert!(svg.matches("<circle").count() >= 100, "a floor point per GC cycle");
    assert!(svg.contains(r##"fill="#FF0000""##), "shading");

    let flat = sawtooth_csv(dir.path(), "flat.csv", 0.0, |_| 1);
    let flat_svg = dir.path().join("flat.svg");
    analyze_ok(&[flat.to_str().unwrap(), "--output", "json", "--plot", flat_svg.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&flat_svg).unwrap();
    assert_balanced_xml(&svg);
    assert!(svg.contains("flat.csv — heap_used: no leak") && !svg.contains("leak suspected"));

    // The heap's floor is what full GCs leave where the trace says so.
    let qr = query_range_json(dir.path());
    let qr_svg = dir.path().join("qr.svg");
    analyze_ok(&[qr.to_str().unwrap(), "--assume-warm", "--plot", qr_svg.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&qr_svg).unwrap();
    assert_balanced_xml(&svg);
    assert!(svg.contains("heap after full GC"));
}

#[test]
fn a_restart_starts_the_analysis_over_as_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = sawtooth_csv(dir.path(), "restart.csv", 1.0, |t| if t < 5400 { 41 } else { 42 });
    let table = analyze_ok(&[file.to_str().unwrap()]);
    assert!(table.contains("restarts (the analysis starts over): pid 41 -> 42 at +1h30m"), "{table}");
    // Suspected before the restart, cleared by it, suspected again after the warm-up.
    let line = table.lines().find(|l| l.starts_with("heap_used: ")).unwrap();
    assert!(line.contains(" to +1h30m, from +1h") && line.ends_with("confidence 1.000)"), "{line}");
    let series = analyze_ok(&[file.to_str().unwrap(), "--output", "promtool"]);
    assert!(series.contains(r#"nodejs_leak_suspected{pid="41",app="restart",signal="heap_used"}"#));
    assert!(series.contains(r#"nodejs_leak_suspected{pid="42",app="restart",signal="heap_used"}"#));
}

#[test]
fn bad_input_fails_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("bad.csv", "time,heap_used\n1,100\n2,lots\n", &["bad.csv: line 3", "\"lots\" is not a number"]),
        ("cols.csv", "time,heap\n1,100\n", &["cols.csv: line 1", "unknown column \"heap\""]),
        ("order.csv", "1,100\n1,101\n", &["line 2", "times must increase"]),
        ("vector.json", r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, &["query_range"]),
        ("empty.csv", "# nothing\n", &["no samples"]),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, stdout, stderr) = analyze(&[path.to_str().unwrap()]);
        assert!(!ok, "{name} was accepted:\n{stdout}");
        for e in expected {
            assert!(stderr.contains(e), "{name}: {e:?} not in {stderr:?}");
        }
    }
    let (ok, _, stderr) = analyze(&[dir.path().join("missing.csv").to_str().unwrap()]);
    assert!(!ok && stderr.contains("cannot read") && stderr.contains("missing.csv"), "{stderr}");

    let good = sawtooth_csv(dir.path(), "good.csv", 0.0, |_| 1);
    let good = good.to_str().unwrap();
    for (args, expected) in [
        (vec![good, "--output", "promtool", "--labels", r#"signal="x""#], "--labels"),
        (vec![good, "--labels", r#"env="x""#], "only --output promtool"),
        (vec![good, "--interval", "5m"], "pass --leak.window"),
        (vec![good, "--signal", "heap"], "unknown signal"),
        (vec![good, "--output", "yaml"], "invalid value"),
    ] {
        let (ok, _, stderr) = analyze(&args);
        assert!(!ok && stderr.contains(expected), "{args:?}: {stderr}");
    }
}
