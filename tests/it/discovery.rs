//! The exporter core against real Node.js processes: discovery, naming, /proc memory, cgroup
//! limits, process churn, another user, and the HTTP endpoints.

use std::process::Command;
use std::time::Duration;

use crate::util::{self, metric_value, series, Cgroup, Exporter, NodeApp};

fn pid_label(app: &NodeApp) -> String {
    app.pid.to_string()
}

#[test]
fn plain_node_process_is_exported_with_its_memory() {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let exporter = Exporter::start(&[]);
    let pid = pid_label(&app);
    let rss = exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid), ("app", "idle.js")]);
    assert!(rss > 10.0 * 1024.0 * 1024.0, "a node process has more than 10 MiB resident: {rss}");
    let text = exporter.metrics();
    let l = [("pid", pid.as_str())];
    for name in [
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "nodejs_process_threads",
    ] {
        let v = metric_value(&text, name, &l).unwrap_or_else(|| panic!("{name} missing for pid {pid}"));
        assert!(v > 0.0, "{name} = {v}");
    }
    let anon =
        metric_value(&text, "nodejs_process_resident_memory_breakdown_bytes", &[("pid", &pid), ("type", "anon")])
            .unwrap();
    let file =
        metric_value(&text, "nodejs_process_resident_memory_breakdown_bytes", &[("pid", &pid), ("type", "file")])
            .unwrap();
    assert!(anon > 0.0 && file > 0.0);
    // The start time is the real one, within a few seconds of now minus the process's age.
    let start = metric_value(&text, "process_start_time_seconds", &l).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - start) < 120.0 && now >= start - 2.0, "start {start} vs now {now}");
    // Node's version comes from the binary itself.
    let node = util::node().unwrap();
    let version = String::from_utf8(Command::new(node).arg("--version").output().unwrap().stdout).unwrap();
    assert!(
        metric_value(&text, "nodejs_process_info", &[("pid", &pid), ("node_version", version.trim())]).is_some(),
        "nodejs_process_info with node_version={} for pid {pid}",
        version.trim()
    );
}

#[test]
fn pm2_fork_mode_environment_names_the_app_and_its_restart_limit() {
    let env = [
        ("name", "orders-api"),
        ("pm_id", "3"),
        ("max_memory_restart", "209715200"),
        ("PM2_HOME", "/root/.pm2"),
        ("DB_PASSWORD", "hunter2-fork-secret"),
    ];
    let Some(app) = NodeApp::fixture("idle.js", &[], &env) else { return };
    let exporter = Exporter::start(&[]);
    let pid = pid_label(&app);
    exporter.wait_metric("nodejs_process_info", &[("pid", &pid), ("app", "orders-api"), ("pm2_id", "3")]);
    let limit = exporter.wait_metric("nodejs_memory_limit_bytes", &[("pid", &pid), ("source", "pm2")]);
    assert_eq!(limit, 209715200.0);
    assert_no_secret(&exporter, "hunter2-fork-secret");
}

#[test]
fn pm2_cluster_mode_environment_names_the_app() {
    let pm2_env = r#"{"name":"billing","pm_id":5,"exec_mode":"cluster_mode","max_memory_restart":314572800,"env":{"API_KEY":"sk-cluster-secret"},"API_KEY":"sk-cluster-secret"}"#;
    let env = [("pm2_env", pm2_env), ("NODE_UNIQUE_ID", "1"), ("API_KEY", "sk-cluster-secret")];
    let Some(app) = NodeApp::fixture("idle.js", &[], &env) else { return };
    let exporter = Exporter::start(&[]);
    let pid = pid_label(&app);
    exporter.wait_metric("nodejs_process_info", &[("pid", &pid), ("app", "billing"), ("pm2_id", "5")]);
    assert_eq!(exporter.wait_metric("nodejs_memory_limit_bytes", &[("pid", &pid), ("source", "pm2")]), 314572800.0);
    assert_no_secret(&exporter, "sk-cluster-secret");
}

/// Environment values and command lines never reach a label, a page or a log line.
fn assert_no_secret(exporter: &Exporter, secret: &str) {
    for path in ["/metrics", "/", "/api/v1/targets"] {
        let (_, body) = exporter.get(path);
        assert!(!body.contains(secret), "{path} leaks an environment value");
        assert!(!body.contains("fixtures/apps"), "{path} leaks a command line");
    }
    assert!(!exporter.log().contains(secret), "the log leaks an environment value");
}

#[test]
fn process_title_rewrite_is_still_discovered() {
    let Some(app) = NodeApp::fixture("idle.js", &["api-worker-7"], &[]) else { return };
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", app.pid)).unwrap();
    assert_eq!(comm.trim(), "api-worker-7", "process.title changes comm");
    let exporter = Exporter::start(&[]);
    // Found by its executable; named by its title since the script is no longer visible.
    exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid_label(&app)), ("app", "api-worker-7")]);
}

#[test]
fn wrappers_are_left_out() {
    // npm sets its title to "npm"; the exporter must not count it as an app.
    let Some(app) = NodeApp::fixture("idle.js", &["npm"], &[]) else { return };
    let Some(control) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let exporter = Exporter::start(&[]);
    exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid_label(&control))]);
    assert!(exporter.target(app.pid).is_none(), "a process titled npm is a wrapper, not a target");
}

#[test]
fn app_template_names_processes() {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let exporter = Exporter::start(&["--discovery.app-template={script_dir}/{script}"]);
    exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid_label(&app)), ("app", "apps/idle.js")]);
}

#[test]
fn exited_process_series_stay_for_the_retention_then_go() {
    let Some(mut app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let exporter = Exporter::start(&["--discovery.exit-retention=3s"]);
    let pid = pid_label(&app);
    exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid)]);
    app.kill();
    util::wait_for("the target to be marked exited", Duration::from_secs(10), || {
        exporter.target(app.pid).filter(|t| t["state"] == "exited")
    });
    // Its last values are still served, so Prometheus sees the final counts...
    let text = exporter.metrics();
    assert!(metric_value(&text, "process_resident_memory_bytes", &[("pid", &pid)]).is_some(), "series kept after exit");
    // ...and then everything about it goes.
    util::wait_for("the exited target's series to be removed", Duration::from_secs(15), || {
        let text = exporter.metrics();
        (!text.contains(&format!("pid=\"{pid}\"")) && exporter.target(app.pid).is_none()).then_some(())
    });
}

#[test]
fn processes_younger_than_the_minimum_age_are_not_exported() {
    let Some(node) = util::node() else { return };
    let exporter = Exporter::start(&["--discovery.min-age=3s", "--discovery.exit-retention=1m"]);
    // A short-lived script: lives ~1s, sampled several times, never old enough.
    let mut short = NodeApp::start({
        let mut c = Command::new(&node);
        c.arg("-e").arg("process.stdout.write('ready\\n'); setTimeout(() => {}, 1000)");
        c
    });
    let pid = short.pid;
    util::wait_for("the short-lived process to be seen warming", Duration::from_secs(10), || {
        exporter.target(pid).filter(|t| t["state"] == "warming")
    });
    assert!(!exporter.metrics().contains(&format!("pid=\"{pid}\"")), "a warming process is not exported");
    short.wait_exit(Duration::from_secs(10));
    util::wait_for("the short-lived process to be forgotten", Duration::from_secs(10), || {
        exporter.target(pid).is_none().then_some(())
    });
    assert!(!exporter.metrics().contains(&format!("pid=\"{pid}\"")));
}

#[test]
fn explicit_pids_are_watched_whatever_they_run() {
    // A non-node process named explicitly.
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let exporter = Exporter::start(&["--discovery.min-age=1h", &format!("--discovery.pid={pid}")]);
    exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid), ("app", "sleep")]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn cgroup_memory_limit_and_oom_kills_are_exported() {
    if !util::require_root("creating a memory cgroup") {
        return;
    }
    let Some(node) = util::node() else { return };
    let cgroup = Cgroup::create(&format!("nle-test-{}", std::process::id()), 96 << 20);
    let mut hog = NodeApp::start(cgroup.command(&node, &[&util::fixture_app("hog.js")]));
    let exporter = Exporter::start(&["--discovery.exit-retention=1m"]);
    let pid = pid_label(&hog);
    let limit = exporter.wait_metric("nodejs_memory_limit_bytes", &[("pid", &pid), ("source", "cgroup")]);
    assert_eq!(limit, (96u64 << 20) as f64);
    assert!(exporter.wait_metric("nodejs_cgroup_memory_usage_bytes", &[("pid", &pid)]) > 0.0);
    let before = exporter.wait_metric("nodejs_cgroup_oom_kills_total", &[("pid", &pid)]);
    let info = exporter.metrics();
    let cg = series(&info, "nodejs_process_info")
        .into_iter()
        .find(|(l, _)| l.iter().any(|(k, v)| k == "pid" && *v == pid))
        .and_then(|(l, _)| l.into_iter().find(|(k, _)| k == "cgroup").map(|(_, v)| v))
        .unwrap();
    assert!(cg.ends_with(&format!("nle-test-{}", std::process::id())), "cgroup label {cg}");
    // Fill memory past the limit: the kernel's OOM killer ends the process.
    hog.send_line("go");
    let status = hog.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the hog must be killed, not exit: {status:?}");
    // The kill is read from the cgroup after the process is gone, on the series it had.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = exporter.metrics();
        let v = metric_value(&text, "nodejs_cgroup_oom_kills_total", &[("pid", &pid)]);
        if v.is_some_and(|v| v >= before + 1.0) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let events = std::fs::read_to_string(cgroup.dir.join("memory.oom_control")).unwrap_or_default();
            panic!(
                "OOM kill not counted: {v:?} (before {before}); exit {status:?}; cgroup says {events:?}; target {:?}",
                exporter.target(hog.pid)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn another_users_process_is_watched_and_named_for_its_user() {
    if !util::require_root("running a process as another user") {
        return;
    }
    let Some(node) = util::node() else { return };
    let Some(setpriv) = util::require_tool("setpriv") else { return };
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(node).arg(util::fixture_app("idle.js"));
    let app = NodeApp::start(cmd);
    let exporter = Exporter::start(&[]);
    let pid = pid_label(&app);
    exporter.wait_metric("nodejs_process_info", &[("pid", &pid), ("user", "nobody"), ("app", "idle.js")]);
    exporter.wait_metric("process_open_fds", &[("pid", &pid)]);
}

#[test]
fn unprivileged_exporter_reads_what_it_may_and_says_what_it_cannot() {
    if !util::require_root("running the exporter as another user") {
        return;
    }
    let Some(setpriv) = util::require_tool("setpriv") else { return };
    // Owned by root; the exporter runs as nobody without CAP_SYS_PTRACE.
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(util::exporter_bin());
    let exporter = Exporter::start_with(cmd, &[]);
    let pid = pid_label(&app);
    // stat and status are world-readable: memory is there, found by comm/argv[0] alone.
    let rss = exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid), ("app", "idle.js")]);
    assert!(rss > 0.0);
    // fds are not, and the status page says so and why.
    let target = exporter.target(app.pid).expect("target listed");
    let procfs = target["collectors"].as_array().unwrap().iter().find(|c| c["collector"] == "procfs").unwrap();
    assert_eq!(procfs["complete"], false);
    let missing = procfs["missing"].to_string();
    assert!(missing.contains("fds and sockets: permission_denied"), "{missing}");
    assert!(metric_value(&exporter.metrics(), "process_open_fds", &[("pid", &pid)]).is_none());
    let errors = exporter.wait_metric(
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "procfs"), ("reason", "permission_denied")],
    );
    assert!(errors >= 1.0);
    let (_, page) = exporter.get("/");
    assert!(page.contains("permission_denied"), "the status page says why");
}

#[test]
fn sockets_are_counted_by_protocol() {
    let Some(app) = NodeApp::fixture("sockets.js", &["4"], &[]) else { return };
    let exporter = Exporter::start(&[]);
    let pid = pid_label(&app);
    // 4 client ends, 4 server ends, 1 listener.
    let tcp = exporter.wait_metric("nodejs_process_open_sockets", &[("pid", &pid), ("protocol", "tcp")]);
    assert_eq!(tcp, 9.0);
}

#[test]
fn endpoints_follow_the_exporter_conventions() {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let exporter = Exporter::start(&["--web.telemetry-path=/custom"]);
    assert_eq!(exporter.get("/-/healthy").0, 200);
    assert_eq!(exporter.get("/-/ready").0, 200);
    assert_eq!(exporter.get("/metrics").0, 404);
    util::wait_for("the app on the status page", Duration::from_secs(10), || {
        let (status, page) = exporter.get("/");
        (status == 200 && page.contains(&format!("<td>{}</td>", app.pid))).then_some(())
    });
    let (status, body) = exporter.get("/custom");
    assert_eq!(status, 200);
    assert!(body.contains("nodejs_leak_exporter_build_info{"));
    assert!(metric_value(&body, "nodejs_leak_exporter_targets", &[("state", "active")]).unwrap() >= 1.0);
    assert!(
        metric_value(&body, "nodejs_leak_exporter_collector_duration_seconds", &[("collector", "procfs")]).is_some()
    );
    // Its own process metrics never collide with the watched processes' names.
    assert!(metric_value(&body, "nodejs_leak_exporter_process_resident_memory_bytes", &[]).unwrap() > 0.0);
}

#[test]
fn sigterm_stops_the_exporter_promptly() {
    let mut exporter = Exporter::start(&[]);
    exporter.stop();
}

#[test]
fn bad_configuration_is_refused_with_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yml");
    std::fs::write(&file, "discovery:\n  min_age: 5s\n  include:\n    - cmdline: '(oops'\n").unwrap();
    let out = Command::new(util::exporter_bin()).arg(format!("--config.file={}", file.display())).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("discovery.include[0]") && err.contains("line 4") && err.contains("invalid regex"), "{err}");
}

#[test]
fn full_output_passes_promtool_check_metrics() {
    let Some(promtool) = util::require_tool("promtool") else { return };
    let Some(_plain) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let Some(pm2) = NodeApp::fixture("idle.js", &[], &[("name", "x"), ("pm_id", "1"), ("max_memory_restart", "100M")])
    else {
        return;
    };
    let Some(sockets) = NodeApp::fixture("sockets.js", &["2"], &[]) else { return };
    let Some(inspected) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "listeners.js", &["abort"], &[]) else {
        return;
    };
    let pids = [_plain.pid, pm2.pid, sockets.pid, inspected.pid];
    let exporter = Exporter::start_for(&pids, &["--collector.procfs.pss"]);
    let ipid = inspected.pid.to_string();
    exporter.wait_metric("nodejs_max_listeners_exceeded_warnings_total", &[("pid", &ipid)]);
    exporter.wait_metric("nodejs_gc_duration_seconds_count", &[("pid", &ipid)]);
    exporter.wait_metric("nodejs_memory_limit_bytes", &[("pid", &pm2.pid.to_string()), ("source", "pm2")]);
    exporter.wait_metric("nodejs_process_pss_bytes", &[("pid", &pm2.pid.to_string())]);
    util::promtool_check(&promtool, &exporter.metrics());
}
