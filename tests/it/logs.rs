//! The logs collector against real files written by real Node.js processes, rotated under them,
//! a real PM2, container log fixtures, a real heap OOM crash, and bad input.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, metric_value, series, Exporter, NodeApp};

const FAST: &str = "--log.poll-interval=100ms";

/// `node <node_args> <fixture> <args>` with stderr appended to `log`.
fn node_logging_to(log: &Path, node_args: &[&str], fixture: &str, args: &[&str]) -> Option<NodeApp> {
    let node = util::node()?;
    let mut script = format!("exec '{}'", node.display());
    for a in node_args {
        script.push_str(&format!(" '{a}'"));
    }
    script.push_str(&format!(" '{}'", util::fixture_app(fixture).display()));
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    script.push_str(&format!(" 2>>'{}'", log.display()));
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    Some(NodeApp::start(cmd))
}

fn glob_flag(dir: &Path) -> String {
    format!("--log.path={}/*.log", dir.display())
}

#[test]
fn warnings_in_a_log_file_count_for_their_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    std::fs::write(&log, "").unwrap();
    let Some(app) = node_logging_to(&log, &[], "listeners.js", &["close"]) else { return };
    let exporter = Exporter::start_for(&[app.pid], &["--no-collector.inspector", FAST, &glob_flag(dir.path())]);
    let pid = app.pid_label();
    exporter.wait_close_listener_leak(&pid);
    let lines = exporter.wait_metric("nodejs_leak_exporter_log_lines_total", &[]);
    assert!(lines >= 1.0);
}

#[test]
fn inspector_and_logs_count_a_warning_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    std::fs::write(&log, "").unwrap();
    let Some(mut app) = node_logging_to(&log, &["--inspect=127.0.0.1:0"], "listeners.js", &["close"]) else { return };
    let exporter = Exporter::start_for(&[app.pid], &[FAST, &glob_flag(dir.path()), "--log.start-at=beginning"]);
    let pid = app.pid_label();
    exporter.wait_metric("nodejs_inspector_connected", &[("pid", &pid)]);
    util::wait_for("warnings from both sources", Duration::from_secs(15), || {
        let text = exporter.metrics();
        let v =
            metric_value(&text, "nodejs_max_listeners_exceeded_warnings_total", &[("pid", &pid), ("event", "close")])?;
        (v >= 5.0).then_some(())
    });
    // Stop the leak, let both sources catch up, and compare with the lines in the file.
    app.signal(libc::SIGSTOP);
    let in_file = || std::fs::read_to_string(&log).unwrap().matches("MaxListenersExceededWarning").count() as f64;
    let expected = in_file();
    util::wait_for("the count to match the file", Duration::from_secs(15), || {
        let v = metric_value(
            &exporter.metrics(),
            "nodejs_max_listeners_exceeded_warnings_total",
            &[("pid", &pid), ("event", "close")],
        )?;
        (v == expected).then_some(())
    });
    app.signal(libc::SIGCONT);
    app.kill();
}

#[test]
fn rotations_lose_no_line_and_count_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let Some(mut logger) = NodeApp::fixture("logger.js", &[log.to_str().unwrap()], &[]) else { return };
    let exporter = Exporter::start_for(
        &[logger.pid],
        &["--no-collector.inspector", FAST, &glob_flag(dir.path()), "--log.start-at=beginning"],
    );
    let pid = logger.pid_label();
    let count = |e: &Exporter| {
        metric_value(&e.metrics(), "nodejs_warnings_total", &[("pid", &pid), ("name", "Warning")]).unwrap_or(0.0)
    };
    let grows = |e: &Exporter, what: &str| {
        let before = count(e);
        util::wait_for(what, Duration::from_secs(15), || (count(e) > before + 20.0).then_some(()));
    };
    grows(&exporter, "lines to be counted");

    // 1. rename-and-create: the writer keeps writing into the renamed file until it reopens.
    let renamed = dir.path().join("app.log.1");
    std::fs::rename(&log, &renamed).unwrap();
    let size = std::fs::metadata(&renamed).unwrap().len();
    util::wait_for("the writer to write into the renamed file", Duration::from_secs(10), || {
        (std::fs::metadata(&renamed).unwrap().len() > size + 200).then_some(())
    });
    logger.signal(libc::SIGUSR2);
    util::wait_for("the writer to reopen", Duration::from_secs(10), || log.exists().then_some(()));
    grows(&exporter, "lines after rename-and-create");

    // 2. copytruncate (with the writer paused, as the only way no copytruncate loses lines).
    logger.signal(libc::SIGSTOP);
    std::fs::copy(&log, dir.path().join("app.log.2")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    logger.signal(libc::SIGCONT);
    grows(&exporter, "lines after copytruncate");

    // 3. delete and recreate.
    logger.signal(libc::SIGSTOP);
    std::fs::remove_file(&log).unwrap();
    logger.signal(libc::SIGUSR2);
    logger.signal(libc::SIGCONT);
    util::wait_for("the file to be recreated", Duration::from_secs(10), || log.exists().then_some(()));
    grows(&exporter, "lines after delete-and-recreate");

    // 4. a file that shrinks under the writer, and is written past the old size again.
    logger.signal(libc::SIGSTOP);
    std::fs::copy(&log, dir.path().join("app.log.3")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    logger.signal(libc::SIGCONT);
    grows(&exporter, "lines after a shrink");

    logger.send_line("count");
    let wrote: f64 = logger.wait_line("wrote ", Duration::from_secs(10)).trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = count(&exporter);
        if got == wrote {
            break;
        }
        assert!(got <= wrote, "a line was counted twice: {got} counted, {wrote} written");
        assert!(Instant::now() < deadline, "lines lost: {got} counted, {wrote} written; log:\n{}", exporter.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = exporter.metrics();
    assert!(metric_value(&text, "nodejs_leak_exporter_log_rotations_total", &[]).unwrap() >= 2.0);
    assert!(metric_value(&text, "nodejs_leak_exporter_log_truncations_total", &[]).unwrap() >= 2.0);
}

#[test]
fn a_real_heap_out_of_memory_crash_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start_for(&[], &["--no-collector.inspector", FAST, &glob_flag(dir.path())]);
    let log = dir.path().join("crashy.log");
    let node = util::node().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec '{}' --max-old-space-size=16 -e 'const a = []; for (;;) a.push(new Array(1000).fill(\"x\"))' 2>>'{}'",
            node.display(),
            log.display()
        ))
        .status()
        .unwrap();
    assert!(!status.success(), "the process died of its heap");
    let n = exporter.wait_metric("nodejs_heap_out_of_memory_crashes_total", &[("app", "crashy")]);
    assert_eq!(n, 1.0);
}

fn container_log(root: &Path, name: &str, lines: &[&str]) {
    let dir = root.join("var/log/containers");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

const ID1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const ID2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn kubernetes_container_logs_in_cri_and_json_file_formats() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("var/log/containers")).unwrap();
    let rootfs = format!("--path.rootfs={}", root.path().display());
    let exporter = Exporter::start_for(&[], &["--no-collector.inspector", FAST, &rootfs]);
    // CRI, with a warning split into a partial and a final piece.
    container_log(root.path(), &format!("api-7d9f_shop_node-{ID1}.log"), &[
        "2025-05-24T03:00:00.000000001Z stdout F GET /health 200",
        "2025-05-24T03:00:00.000000002Z stderr P (node:1) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listen",
        "2025-05-24T03:00:00.000000003Z stderr F ers added to [IncomingMessage]. MaxListeners is 10. Use emitter.setMaxListeners() to increase limit",
        "2025-05-24T03:00:01.000000000Z stderr F FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
    ]);
    // Docker json-file.
    container_log(
        root.path(),
        &format!("web-55aa_shop_server-{ID2}.log"),
        &[
            r#"{"log":"(node:1) [DEP0005] DeprecationWarning: Buffer() is deprecated\n","stream":"stderr","time":"2025-05-24T03:00:00Z"}"#,
            r#"{"log":"(node:1) MaxListenersExceededWarning: Possible EventTarget memory leak detected. 11 abort listeners added to [AbortSignal]. ","stream":"stderr","time":"2025-05-24T03:00:00Z"}"#,
            r#"{"log":"Use events.setMaxListeners() to increase limit\n","stream":"stderr","time":"2025-05-24T03:00:00Z"}"#,
        ],
    );
    let listeners = exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("app", "node"), ("event", "close"), ("emitter", "IncomingMessage")],
    );
    assert_eq!(listeners, 1.0);
    let oom = exporter.wait_metric(
        "nodejs_heap_out_of_memory_crashes_total",
        &[("namespace", "shop"), ("pod", "api-7d9f"), ("container", "node")],
    );
    assert_eq!(oom, 1.0);
    exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("app", "server"), ("event", "abort"), ("emitter", "AbortSignal")],
    );
    exporter.wait_metric("nodejs_warnings_total", &[("app", "server"), ("name", "DeprecationWarning")]);
    // The container restarts: the same pod container with a new id.
    container_log(
        root.path(),
        &format!("api-7d9f_shop_node-{}.log", "3".repeat(64)),
        &["2025-05-24T03:05:00Z stdout F started"],
    );
    let restarts = exporter.wait_metric(
        "nodejs_process_restarts_total",
        &[("namespace", "shop"), ("pod", "api-7d9f"), ("container", "node")],
    );
    assert_eq!(restarts, 1.0);
    promtool_check(&exporter.metrics());
}

#[test]
fn bad_input_is_skipped_counted_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start_for(&[], &["--no-collector.inspector", FAST, &glob_flag(dir.path())]);
    let warning = "(node:99) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners added to [Pool]. Use emitter.setMaxListeners() to increase limit\n";
    // Invalid UTF-8, a 100 MB line, then a good line, then one with no newline yet.
    {
        let mut f = std::fs::File::create(dir.path().join("bad.log")).unwrap();
        f.write_all(b"(node:99) Warning: \xff\xfe broken\n").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        f.write_all(b"(node:99) Warning: huge ").unwrap();
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\n").unwrap();
        f.write_all(warning.as_bytes()).unwrap();
        f.write_all(warning.trim_end().as_bytes()).unwrap();
    }
    std::fs::write(dir.path().join("core.log"), b"\x7fELF\x00\x00\x00\x01Warning: not text\n").unwrap();
    let n =
        exporter.wait_metric("nodejs_max_listeners_exceeded_warnings_total", &[("app", "bad"), ("emitter", "Pool")]);
    assert_eq!(n, 1.0, "the unterminated last line is not counted yet");
    // The writer finishes the line.
    std::fs::OpenOptions::new().append(true).open(dir.path().join("bad.log")).unwrap().write_all(b"\n").unwrap();
    util::wait_for("the finished line", Duration::from_secs(10), || {
        (metric_value(
            &exporter.metrics(),
            "nodejs_max_listeners_exceeded_warnings_total",
            &[("app", "bad"), ("emitter", "Pool")],
        )? == 2.0)
            .then_some(())
    });
    let text = exporter.metrics();
    assert_eq!(
        metric_value(&text, "nodejs_leak_exporter_log_skipped_lines_total", &[("reason", "invalid_utf8")]),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "nodejs_leak_exporter_log_skipped_lines_total", &[("reason", "too_long")]),
        Some(1.0)
    );
    assert_eq!(metric_value(&text, "nodejs_leak_exporter_log_file_errors_total", &[("reason", "binary")]), Some(1.0));
    // The huge line's head was parsed (it is a warning), and memory stayed bounded.
    assert!(metric_value(&text, "nodejs_warnings_total", &[("app", "bad"), ("name", "Warning")]).is_some());
    let rss = metric_value(&text, "nodejs_leak_exporter_process_resident_memory_bytes", &[]).unwrap();
    assert!(rss < 64.0 * 1024.0 * 1024.0, "exporter RSS {rss} after a 100 MB line");
    promtool_check(&text);
}

#[test]
fn a_real_pm2_in_fork_and_cluster_mode() {
    let Some(pm2) = util::pm2() else { return };
    let home = tempfile::tempdir().unwrap();
    let pm2_cmd = |args: &[&str]| {
        let out = Command::new(&pm2).args(args).env("PM2_HOME", home.path()).output().unwrap();
        assert!(out.status.success(), "pm2 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let script = util::fixture_app("listeners.js");
    let script = script.to_str().unwrap();
    pm2_cmd(&["start", script, "--name", "orders", "--", "close"]);
    pm2_cmd(&["start", script, "--name", "billing", "-i", "2", "--", "close"]);
    let _cleanup = Defer(Box::new({
        let pm2 = pm2.clone();
        let home = home.path().to_path_buf();
        move || {
            let _ = Command::new(&pm2).args(["kill"]).env("PM2_HOME", &home).output();
        }
    }));
    let logs = format!("--log.path={}/logs/*.log", home.path().display());
    let exporter = Exporter::start(&[FAST, &logs, "--log.start-at=beginning"]);
    // Fork mode: the app is PM2's name, the warnings come from its error log.
    exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("app", "orders"), ("event", "close"), ("emitter", "IncomingMessage")],
    );
    // Cluster mode: two workers, each its own series, neither a restart.
    util::wait_for("both billing workers warned", Duration::from_secs(20), || {
        let text = exporter.metrics();
        let pids: std::collections::HashSet<String> = series(&text, "nodejs_max_listeners_exceeded_warnings_total")
            .into_iter()
            .filter(|(l, _)| l.iter().any(|(k, v)| k == "app" && v == "billing"))
            .filter_map(|(l, _)| l.into_iter().find(|(k, v)| k == "pid" && !v.is_empty()).map(|(_, v)| v))
            .collect();
        (pids.len() >= 2).then_some(())
    });
    assert_eq!(metric_value(&exporter.metrics(), "nodejs_process_restarts_total", &[("app", "billing")]), None);
    // A restart of the fork-mode app: a new pid under the same name and id.
    pm2_cmd(&["restart", "orders"]);
    let restarts = exporter.wait_metric("nodejs_process_restarts_total", &[("app", "orders")]);
    assert_eq!(restarts, 1.0);
}

struct Defer(Box<dyn FnMut()>);

impl Drop for Defer {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn promtool_check(text: &str) {
    if let Some(promtool) = util::require_tool("promtool") {
        util::promtool_check(&promtool, text);
    }
}

#[test]
fn an_unreadable_log_file_is_skipped_and_counted() {
    if !util::require_root("running the exporter as another user") {
        return;
    }
    let Some(setpriv) = util::require_tool("setpriv") else { return };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("secret.log");
    std::fs::write(&secret, "(node:1) Warning: hidden\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open = dir.path().join("open.log");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(util::exporter_bin());
    let glob = glob_flag(dir.path());
    let exporter = Exporter::start_with(cmd, &["--no-collector.inspector", FAST, &glob, "--log.start-at=beginning"]);
    let n = exporter.wait_metric("nodejs_leak_exporter_log_file_errors_total", &[("reason", "permission_denied")]);
    assert_eq!(n, 1.0, "counted once, not at every poll");
    // The readable file next to it is still followed.
    std::fs::write(&open, "(node:2) Warning: visible\n").unwrap();
    exporter.wait_metric("nodejs_warnings_total", &[("app", "open"), ("name", "Warning")]);
    assert!(metric_value(&exporter.metrics(), "nodejs_warnings_total", &[("app", "secret")]).is_none());
}
