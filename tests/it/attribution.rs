//! Leak attribution (`nodejs-leak-exporter profile`) against real Node.js apps whose leaks are a
//! Map cache and a listener per request, amid ten times as much short-lived allocation in other
//! functions, and their fixed twin; and that sampling is stopped however a run ends.

use std::process::{Command, Stdio};
use std::time::Duration;

use nodejs_leak_exporter::attribution::cdp::Cdp;
use nodejs_leak_exporter::collect::inspector::locate;
use nodejs_leak_exporter::connector::DirectConnector;
use serde_json::{json, Value};

use crate::util::{self, metric_value, Exporter, NodeApp};

const FIXTURE: &str = "attribution.js";

/// Long enough for what a healthy app builds up after sampling starts to level off (on a loaded
/// machine, Node.js's timers showed 16 s of growth, level after), so every run is judged alike.
const RUN: &str = "30s";

fn leaky_app(leak: &str) -> Option<NodeApp> {
    NodeApp::with_node_args(
        &["--expose-gc", "--inspect=127.0.0.1:0"],
        FIXTURE,
        &[&format!("leak={leak}"), "rps=300", "gc_every=1000"],
        &[],
    )
}

fn profile_command(pid: i32, args: &[&str]) -> Command {
    let mut cmd = Command::new(util::exporter_bin());
    cmd.args(["profile", "--pid", &pid.to_string()]).args(args).env("RUST_LOG", "warn");
    cmd
}

/// Runs `profile` to its end and returns its JSON report.
fn profile_json(pid: i32, duration: &str) -> Value {
    let out =
        profile_command(pid, &["--duration", duration, "--every", "2s", "--interval", "8192", "--output", "json"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run profile");
    assert!(out.status.success(), "profile failed: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// The 1-based line of the function that holds the first line containing `needle`, found in the
/// fixture's source: V8 names a site by the function's definition, not by the statement.
fn function_holding(needle: &str) -> (u32, u32) {
    let source = std::fs::read_to_string(util::fixture_app(FIXTURE)).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let at = lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in the fixture"));
    let def = (0..at).rev().find(|i| lines[*i].starts_with("function ")).expect("a function above");
    assert!(lines[def..at].iter().all(|l| !l.starts_with('}')), "{needle} is inside the function at line {}", def + 1);
    (def as u32 + 1, at as u32 + 1)
}

/// The app's own growing sites, fastest first.
fn user_growing(report: &Value) -> Vec<&Value> {
    report["growing"].as_array().unwrap().iter().filter(|g| g["user"] == true).collect()
}

fn assert_attributed(report: &Value, needle: &str) {
    let (line, statement) = function_holding(needle);
    let growing = user_growing(report);
    let top = growing.first().unwrap_or_else(|| panic!("no growing site in the app's code: {report:#}"));
    assert!(top["url"].as_str().unwrap().ends_with(FIXTURE), "{top:#}");
    assert_eq!(
        (top["function"].as_str().unwrap(), top["line"].as_u64().unwrap()),
        ("onRequest", line as u64),
        "the site of `{needle}` (line {statement}) is its function, defined at line {line}: {report:#}"
    );
    assert!(top["growth_bytes_per_second"].as_f64().unwrap() > 1024.0, "{top:#}");
    // Short-lived allocation in render() (ten times the leak) never ranks.
    assert!(report["growing"].as_array().unwrap().iter().all(|g| g["function"] != "render"), "{report:#}");
}

#[test]
fn the_map_cache_is_attributed_to_the_function_that_fills_it_beside_the_exporter_s_session() {
    let Some(app) = leaky_app("map") else { return };
    // Node.js serves several inspector sessions at once: the exporter's stays connected.
    let exporter = Exporter::start_for(&[app.pid], &[]);
    util::wait_for("the exporter's inspector session", Duration::from_secs(30), || {
        (metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &app.pid_label())]) == Some(1.0))
            .then_some(())
    });
    let report = profile_json(app.pid, RUN);
    assert_attributed(&report, "leakyCache.set(");
    assert!(report["profiles"].as_u64().unwrap() >= 14, "{report:#}");
    let top = user_growing(&report)[0];
    // About 320 bytes per request at up to 300 requests a second (fewer on a loaded machine), plus
    // the Map's own growth.
    let rate = top["growth_bytes_per_second"].as_f64().unwrap();
    assert!((20e3..1e6).contains(&rate), "{rate}");
    assert_eq!(
        metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &app.pid_label())]),
        Some(1.0)
    );
}

#[test]
fn the_listener_leak_is_attributed_to_the_function_that_adds_the_listener() {
    let Some(app) = leaky_app("listeners") else { return };
    let report = profile_json(app.pid, RUN);
    assert_attributed(&report, "req.socket.on('close', () => leakyCache.delete(req.url))");
}

#[test]
fn the_fixed_twin_has_no_growing_site() {
    let Some(app) = leaky_app("none") else { return };
    let report = profile_json(app.pid, RUN);
    // No site of the app's code grows. (Node.js internals may, on a loaded machine: the
    // fixture's own traffic timers fall behind and queue up — `processTimers` grew 2.6 kB/s in a
    // CI run beside 240 other processes — which is load, not the app's code.)
    assert_eq!(user_growing(&report), Vec::<&Value>::new(), "{report:#}");
    // It was sampled all along: its handler's live allocations (the bounded cache) are there.
    assert!(report["largest"].as_array().unwrap().iter().any(|s| s["function"] == "onRequest"), "{report:#}");
}

/// Asks `pid`'s inspector, over a session of our own, for the current sampling profile: `Ok` while
/// some session samples, the inspector's error once none does.
fn sampling_profile(pid: i32) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = DirectConnector;
        let t = Duration::from_secs(5);
        let inspector = locate::locate_inspector(&c, "/proc".as_ref(), pid, &[], &[], t).await.unwrap();
        let mut cdp = Cdp::open(&c, pid, inspector.addr, &inspector.path, t, 64 << 20).await.unwrap();
        let r = cdp.call("HeapProfiler.getSamplingProfile", json!({}), t, 64 << 20).await.map_err(|e| e.to_string());
        cdp.close().await;
        r
    })
}

fn wait_sampling(pid: i32, on: bool) {
    util::wait_for(if on { "sampling to start" } else { "sampling to stop" }, Duration::from_secs(20), || {
        (sampling_profile(pid).is_ok() == on).then_some(())
    });
}

#[test]
fn sampling_stops_at_the_end_on_sigterm_and_when_the_profiler_is_killed() {
    let Some(app) = leaky_app("map") else { return };
    assert!(sampling_profile(app.pid).unwrap_err().contains("not started"));
    // The end of a run.
    let _ = profile_json(app.pid, "3s");
    assert!(sampling_profile(app.pid).is_err(), "sampling still on after the run");

    // SIGTERM: the run stops early, reports what it has, and stops sampling.
    let mut child = profile_command(app.pid, &["--duration", "10m", "--every", "1s", "--output", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_sampling(app.pid, true);
    std::thread::sleep(Duration::from_millis(1500)); // a profile or two
                                                     // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = util::wait_for("profile to exit on SIGTERM", Duration::from_secs(15), || child.try_wait().ok().flatten());
    assert!(out.success());
    let mut text = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut text).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["interrupted"], "SIGTERM", "{report:#}");
    assert!(sampling_profile(app.pid).is_err(), "sampling still on after SIGTERM");

    // SIGKILL: nothing of the profiler runs, and Node.js stops sampling when its session drops.
    let mut child = profile_command(app.pid, &["--duration", "10m"]).stdout(Stdio::null()).spawn().unwrap();
    wait_sampling(app.pid, true);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_sampling(app.pid, false);
}

#[test]
fn pprof_output_opens_as_gzipped_profile_proto() {
    let Some(app) = leaky_app("map") else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heap.pb.gz");
    let status = profile_command(
        app.pid,
        &[
            "--duration",
            "4s",
            "--every",
            "2s",
            "--interval",
            "16384",
            "--output",
            "pprof",
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .status()
    .unwrap();
    assert!(status.success());
    let gz = std::fs::read(&file).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let Some(gzip) = util::require_tool("gzip") else { return };
    let out = Command::new(gzip).arg("-dc").arg(&file).output().unwrap();
    assert!(out.status.success(), "gzip -dc: {}", String::from_utf8_lossy(&out.stderr));
    let raw = String::from_utf8_lossy(&out.stdout);
    for s in ["objects", "count", "space", "bytes", "onRequest", FIXTURE] {
        assert!(raw.contains(s), "{s} in the profile's strings");
    }
}

fn key_of(pid: i32) -> nodejs_leak_exporter::discovery::ProcessKey {
    let stat = procfs::process::Process::new(pid).unwrap().stat().unwrap();
    nodejs_leak_exporter::discovery::ProcessKey { pid, start_ticks: stat.starttime }
}

#[test]
fn the_exporter_s_profiler_samples_while_a_process_leaks_and_stops_when_it_no_longer_does() {
    use nodejs_leak_exporter::attribution::manager::{Manager, ManagerSettings, Status};
    let Some(leaky) = leaky_app("map") else { return };
    let Some(twin) = leaky_app("none") else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let settings = ManagerSettings {
        every: Duration::from_secs(2),
        interval: 8192,
        max_concurrent: 1,
        ..ManagerSettings::default()
    };
    let manager = Manager::new(rt.handle().clone(), std::sync::Arc::new(DirectConnector), settings);
    let (leaky_key, twin_key) = (key_of(leaky.pid), key_of(twin.pid));

    // The verdict is positive: sampling starts and the growing site shows; one run at a time.
    manager.update_leaking(&[leaky_key, twin_key]);
    wait_sampling(leaky.pid, true);
    assert_eq!(manager.report(twin.pid).unwrap().status, Status::Waiting);
    let (line, _) = function_holding("leakyCache.set(");
    util::wait_for("the Map's site to grow", Duration::from_secs(60), || {
        let g = manager.growing(5).into_iter().find(|(k, _)| *k == leaky_key)?.1;
        g.iter().find(|g| g.user).filter(|g| g.function == "onRequest" && g.line == line).cloned()
    });
    assert!(manager.growing(5).iter().all(|(_, g)| g.len() <= 5));
    let pprof = manager.pprof(leaky.pid).unwrap();
    assert_eq!(&pprof[..2], &[0x1f, 0x8b]);

    // The verdict clears: sampling stops, and the waiting run takes its turn.
    manager.update_leaking(&[twin_key]);
    wait_sampling(leaky.pid, false);
    util::wait_for("the leaky run to end", Duration::from_secs(10), || {
        (manager.report(leaky.pid).unwrap().status == Status::Done).then_some(())
    });
    wait_sampling(twin.pid, true);

    // Shutdown stops every run before it returns.
    manager.shutdown(Duration::from_secs(10));
    assert!(sampling_profile(twin.pid).is_err(), "sampling still on after shutdown");

    // On demand: a run for a while, then stopped.
    let manager = Manager::new(rt.handle().clone(), std::sync::Arc::new(DirectConnector), ManagerSettings::default());
    manager.request(leaky_key, Duration::from_secs(3)).unwrap();
    assert!(manager.request(leaky_key, Duration::from_secs(3)).is_err(), "one run on demand at a time");
    util::wait_for("the run on demand to end", Duration::from_secs(20), || {
        (manager.report(leaky.pid).unwrap().status == Status::Done).then_some(())
    });
    assert!(sampling_profile(leaky.pid).is_err(), "sampling still on after the run on demand");
    assert!(manager.report(leaky.pid).unwrap().report.is_some(), "the final profile is kept");
}

#[test]
fn the_exporter_exports_the_growing_sites_of_a_process_whose_heap_leaks_and_stops_sampling_at_shutdown() {
    let Some(app) = leaky_app("map") else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "discovery:\n  include: []\n  pids: [{}]\ncollectors:\n  logs:\n    enabled: false\n  attribution:\n    enabled: true\n    every: 2s\n    interval_bytes: 8192\n    top_sites: 3\n",
            app.pid
        ),
    )
    .unwrap();
    let config = format!("--config.file={}", file.display());
    let mut exporter = Exporter::start_with(
        Command::new(util::exporter_bin()),
        &[&config, "--sample.interval=250ms", "--leak.window=30s", "--leak.grace-period=20s"],
    );
    let pid = app.pid_label();
    let (line, _) = function_holding("leakyCache.set(");
    let site = format!("onRequest apps/{FIXTURE}:{line}");
    let live = util::wait_for("the Map's site in the metrics", Duration::from_secs(240), || {
        let text = exporter.metrics();
        let suspected = metric_value(&text, "nodejs_leak_suspected", &[("pid", &pid), ("signal", "heap_used")]);
        metric_value(&text, "nodejs_heap_live_bytes", &[("pid", &pid), ("site", &site)])
            .map(|v| (v, suspected, text.clone()))
    });
    assert_eq!(live.1, Some(1.0), "profiled only while the verdict is positive");
    assert!(live.0 > 8192.0, "{}", live.0);
    let text = live.2;
    assert!(
        metric_value(&text, "nodejs_heap_live_growth_bytes_per_second", &[("pid", &pid), ("site", &site)]).unwrap()
            > 0.0
    );
    assert!(util::series(&text, "nodejs_heap_live_bytes").len() <= 3, "at most top_sites per process");
    if let Some(promtool) = util::require_tool("promtool") {
        util::promtool_check(&promtool, &text);
    }
    assert!(sampling_profile(app.pid).is_ok(), "sampling while the verdict is positive");

    // The same run over HTTP: its report as JSON, its newest profile as pprof, and as a page.
    let (status, body) = util::http_request(&exporter.addr, "GET", &format!("/api/v1/profile?pid={pid}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let run: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(run["trigger"], "leak", "{run}");
    let growing = run["report"]["growing"].as_array().expect("growing sites");
    assert!(growing.iter().any(|g| g["function"] == "onRequest"), "{run}");
    let (status, pprof) = util::http_request(&exporter.addr, "GET", &format!("/api/v1/profile?pid={pid}&format=pprof"));
    assert_eq!(status, 200);
    assert_eq!(&pprof[..2], &[0x1f, 0x8b], "pprof is gzipped profile.proto");
    let (status, page) = util::http_request(&exporter.addr, "GET", &format!("/profile?pid={pid}"));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("onRequest"));
    // On demand: a run for a leaking process is the one already going; an unknown pid is refused.
    let (status, _) = util::http_request(&exporter.addr, "POST", &format!("/api/v1/profile?pid={pid}&duration=10s"));
    assert_eq!(status, 202);
    let (status, _) = util::http_request(&exporter.addr, "POST", "/api/v1/profile?pid=999999999&duration=10s");
    assert_eq!(status, 404);
    let (status, _) = util::http_request(&exporter.addr, "POST", &format!("/api/v1/profile?pid={pid}&duration=9h"));
    assert_eq!(status, 400, "longer than the longest run");
    exporter.stop();
    assert!(sampling_profile(app.pid).is_err(), "sampling still on after the exporter stopped");
}
