//! Heap snapshots of real leaky apps (tests/fixtures/apps/service.js: each request makes ten
//! times more short-lived garbage than a leak keeps) taken with `snapshot` and compared with
//! `diff`: the leaking constructor comes first, and the fixed twin shows nothing growing.
//!
//! The apps drive themselves at 400 requests/s; snapshots are 12 s apart, so about 4,800 requests
//! (R) fall between two. The fixture's ring of recent requests (2,000) and the fixed twin's
//! bounded cache (500) turn over in less than that (even at half the rate, on a loaded machine), so nothing they hold is alive across three
//! snapshots, while a leak keeps at least one object per request: about R of its class.
//! **Noise threshold**: R/10, one object per ten requests, ten times below the smallest
//! per-request leak; what stays below it in the fixed twin is V8's own warm-up (compiled code,
//! feedback, shapes), which does not scale with traffic.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::{self, Exporter, NodeApp};

const RPS: u32 = 400;
const EVERY_SECS: u32 = 12;
/// Requests between two snapshots, at the least (the app may fall behind its rate on a loaded
/// machine, and stops while a snapshot is taken): half the nominal count.
const MIN_REQUESTS: u64 = (RPS * EVERY_SECS / 2) as u64;
const NOISE: u64 = (RPS * EVERY_SECS / 10) as u64;

fn service(args: &[&str]) -> Option<NodeApp> {
    let rps = format!("rps={RPS}");
    let mut all = vec![rps.as_str()];
    all.extend_from_slice(args);
    let app = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "service.js", &all, &[])?;
    // Warm-up: code compiled, the ring of recent requests filled.
    std::thread::sleep(Duration::from_secs(6));
    Some(app)
}

/// Three snapshots of `pid` on one session, `EVERY_SECS` apart.
fn three_snapshots(dir: &Path, pid: i32) -> Vec<PathBuf> {
    let outs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dir.join(format!("{n}.heapsnapshot"))).collect();
    let mut cmd = Command::new(util::exporter_bin());
    cmd.args(["snapshot", "--pid", &pid.to_string(), "--every", &format!("{EVERY_SECS}s"), "--timeout", "60s"]);
    for o in &outs {
        cmd.arg("--out").arg(o);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "snapshot failed: {}", String::from_utf8_lossy(&out.stderr));
    for o in &outs {
        let meta = std::fs::metadata(o).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", o.display());
        assert!(meta.len() > 1 << 20, "{} is {} bytes", o.display(), meta.len());
    }
    outs
}

fn diff(args: &[&str], files: &[PathBuf]) -> String {
    let out = Command::new(util::exporter_bin()).arg("diff").args(args).args(files).output().unwrap();
    assert!(out.status.success(), "diff failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn diff_json(args: &[&str], files: &[PathBuf]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&diff(&all, files)).unwrap()
}

fn leak<'a>(report: &'a Value, constructor: &str) -> Option<&'a Value> {
    report["leaks"].as_array().unwrap().iter().find(|c| c["constructor"] == constructor)
}

/// The first row under the comparison's header in the table.
fn first_row(table: &str) -> String {
    let mut lines = table.lines().skip_while(|l| !l.starts_with("Constructor"));
    lines.next();
    lines.next().unwrap_or_default().to_string()
}

#[test]
fn a_map_cache_leak_is_its_cached_value_type() {
    let Some(app) = service(&["leak=map", "leak_bytes=300"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = three_snapshots(dir.path(), app.pid);
    drop(app);

    // Shallow, first against last: the cached arrays' element stores grow most, by size.
    let table = diff(&["--top", "5"], &[files[0].clone(), files[2].clone()]);
    assert!(first_row(&table).starts_with("(array) "), "{table}");
    let shallow = diff_json(&[], &files);
    let arrays = leak(&shallow, "Array").expect("Array objects leak");
    assert!(arrays["count"].as_u64().unwrap() >= MIN_REQUESTS, "{arrays}");

    // With retained sizes, the cached value type (`new Array(n)`: DevTools' "Array") retains
    // the most of what leaked, and most of them are held by the module's Map.
    let report = diff_json(&["--retained", "--top", "3", "--samples", "1"], &files);
    let top = &report["leaks"][0];
    assert_eq!(top["constructor"], "Array", "{:#}", report["leaks"]);
    let paths: Vec<String> = top["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect::<Vec<_>>().join(" → "))
        .collect();
    assert!(paths[0].contains("leakyCache (context) Map"), "{:#}", top["samples"]);
    assert!(top["samples"][0]["similar"].as_u64().unwrap() * 2 > top["samples"][0]["sampled"].as_u64().unwrap());
    let table = diff(&["--retained", "--top", "3"], &files);
    assert!(table.contains("Leaks (allocated after A, alive in B and still alive in C)"), "{table}");
    assert!(table.contains("leakyCache (context) Map"), "{table}");
}

#[test]
fn a_listener_leak_is_the_closures_added_to_the_socket() {
    let Some(app) = service(&["leak=listeners"]) else { return };
    // The exporter's own session stays attached: a second session takes the snapshots.
    let exporter = Exporter::start_for(&[app.pid], &[]);
    util::wait_for("the exporter's inspector session", Duration::from_secs(20), || {
        (util::metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &app.pid_label())])
            == Some(1.0))
        .then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let files = three_snapshots(dir.path(), app.pid);
    assert_eq!(
        util::metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &app.pid_label())]),
        Some(1.0),
        "the exporter's session survived the snapshots"
    );
    drop(app);

    let report = diff_json(&["--retained", "--top", "5", "--samples", "1"], &files);
    let top = &report["leaks"][0];
    assert_eq!(top["constructor"], "(closure)", "{:#}", report["leaks"]);
    assert!(top["count"].as_u64().unwrap() >= MIN_REQUESTS, "{top}");
    let path = top["samples"][0]["path"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect::<Vec<_>>();
    assert!(path.iter().any(|p| p.starts_with("._events")), "the closure hangs on an emitter's listeners: {path:#?}");
    assert!(path.iter().any(|p| p.contains("Socket")), "{path:#?}");
    // Each closure keeps its request alive.
    assert!(leak(&report, "IncomingMessage").unwrap()["count"].as_u64().unwrap() >= MIN_REQUESTS);
}

#[test]
fn the_fixed_twin_grows_nothing_above_noise() {
    let Some(app) = service(&["leak=none", "cache_max=500"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = three_snapshots(dir.path(), app.pid);
    drop(app);

    let report = diff_json(&["--retained"], &files);
    for c in report["leaks"].as_array().unwrap() {
        assert!(c["count"].as_u64().unwrap() < NOISE, "{c}\nall leaks: {:#}", report["leaks"]);
    }
    // First against last, V8's own code and metadata still change as it optimizes (hundreds of
    // compiled code objects over 16 s); the app's objects do not grow.
    let v8_internal = |name: &str| {
        ["(compiled code)", "(system)", "(object shape)", "(closure)"].contains(&name) || name.starts_with("system / ")
    };
    for c in report["classes"].as_array().unwrap() {
        if !v8_internal(c["constructor"].as_str().unwrap()) {
            assert!(c["count_delta"].as_i64().unwrap() < NOISE as i64, "{c}");
        }
    }
}
