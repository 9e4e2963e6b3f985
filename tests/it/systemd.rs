//! The systemd unit in `packaging/systemd/`: `systemd-analyze verify` and an offline `security`
//! score on it, its capabilities against those `privileges.rs` proves needed, and the exporter run
//! as the unit runs it, as closely as a test can without systemd as PID 1 — an unprivileged uid
//! with the unit's capabilities as its ambient, inheritable and bounding sets and no new
//! privileges — reading root's Node.js processes (fds, sockets, PM2's name, the inspector found
//! through its sockets) and a PM2 log in a home directory it could not enter without them.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::heap_limit;
use crate::privileges::CHART_DAEMONSET_CAPABILITIES;
use crate::util::{self, metric_value, Exporter, NodeApp};

fn unit_path() -> PathBuf {
    util::repo().join("packaging/systemd/nodejs-leak-exporter.service")
}

fn unit() -> String {
    std::fs::read_to_string(unit_path()).unwrap()
}

/// Every value of `key=` in the unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().to_string()).collect()
}

fn value(unit: &str, key: &str) -> String {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "{key}= once in the unit: {v:?}");
    v[0].clone()
}

/// The unit with its binary and environment file where this checkout has them.
fn installed_unit(dir: &Path) -> PathBuf {
    let text = unit().replace("/usr/local/bin/nodejs-leak-exporter", util::exporter_bin().to_str().unwrap()).replace(
        "-/etc/default/nodejs-leak-exporter",
        &format!("-{}", util::repo().join("packaging/systemd/nodejs-leak-exporter.env").display()),
    );
    let path = dir.join("nodejs-leak-exporter.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_scores_ok() {
    let Some(analyze) = util::require_tool("systemd-analyze") else { return };
    let dir = tempfile::tempdir().unwrap();
    let unit = installed_unit(dir.path());
    let out = Command::new(&analyze).arg("verify").arg(&unit).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "systemd-analyze verify:\n{report}");
    // The exposure score systemd computes from the sandboxing options (0 best, 10 worst).
    let out = Command::new(&analyze).args(["security", "--offline=true"]).arg(&unit).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for nodejs-leak-exporter.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}{}", String::from_utf8_lossy(&out.stderr)));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 3.0, "exposure {score}:\n{report}");
}

#[test]
fn the_unit_grants_what_reading_other_users_processes_needs_and_no_more() {
    let unit = unit();
    let want: Vec<String> = CHART_DAEMONSET_CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect();
    let want = want.join(" ");
    assert_eq!(value(&unit, "AmbientCapabilities"), want);
    assert_eq!(value(&unit, "CapabilityBoundingSet"), want);
    assert_eq!(value(&unit, "NoNewPrivileges"), "yes");
    assert_eq!(value(&unit, "DynamicUser"), "yes", "not root");
    assert!(values(&unit, "User").is_empty());
    // Other processes' /proc entries stay visible.
    assert_eq!(value(&unit, "ProtectProc"), "default");
    assert_eq!(value(&unit, "ProcSubset"), "all");
    // PM2's logs under /home stay readable; nothing is written.
    assert_eq!(value(&unit, "ProtectHome"), "read-only");
    assert_eq!(value(&unit, "ProtectSystem"), "strict");
    assert_eq!(value(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value(&unit, "LimitNOFILE"), "65536");
    assert_eq!(value(&unit, "RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
}

/// A home directory of mode 0700 owned by root holding a PM2 error log with a warning, under a
/// fake root filesystem (with the host's passwd, for user names).
fn rootfs_with_a_pm2_log() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::copy("/etc/passwd", root.path().join("etc/passwd")).unwrap();
    let logs = root.path().join("home/alice/.pm2/logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(root.path().join("home"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in ["home/alice", "home/alice/.pm2", "home/alice/.pm2/logs"] {
        std::fs::set_permissions(root.path().join(dir), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let log = logs.join("orders-error.log");
    let mut f = std::fs::File::create(&log).unwrap();
    writeln!(
        f,
        "(node:4242) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners \
         added to [IncomingMessage]. MaxListeners is 10. Use emitter.setMaxListeners() to increase limit"
    )
    .unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    root
}

/// The exporter as uid/gid 65534 with exactly `caps` (setpriv's names, e.g. `sys_ptrace`) as its
/// ambient, inheritable and bounding sets and no new privileges: how the unit runs it.
fn exporter_as_nobody(caps: &[String], args: &[&str]) -> Option<Exporter> {
    let setpriv = util::require_tool("setpriv")?;
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=65534".to_string(),
        "--regid=65534".to_string(),
        "--clear-groups".to_string(),
        format!("--inh-caps=-all{set}"),
        format!("--ambient-caps=-all{set}"),
        format!("--bounding-set=-all{set}"),
        "--no-new-privs".to_string(),
        "--".to_string(),
    ])
    .arg(util::exporter_bin());
    let exporter = Exporter::start_with(cmd, args);
    let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.pid())).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    assert!(field("Uid:").starts_with("65534"), "{status}");
    assert_eq!(field("NoNewPrivs:"), "1");
    Some(exporter)
}

/// A config file under `dir` that watches only `pid`.
fn only(dir: &Path, pid: i32) -> String {
    let config = dir.join("only.yml");
    std::fs::write(&config, format!("discovery:\n  include: []\n  pids: [{pid}]\n")).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    format!("--config.file={}", config.display())
}

fn wait_samples(exporter: &Exporter, n: f64) {
    let start = exporter.wait_metric("nodejs_leak_exporter_samples_total", &[]);
    util::wait_for("more samples", std::time::Duration::from_secs(20), || {
        (metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[])? >= start + n).then_some(())
    });
}

#[test]
fn as_the_unit_runs_it_an_unprivileged_user_reads_root_s_node_processes() {
    if !util::require_root("root's apps and an exporter of another uid with chosen capabilities") {
        return;
    }
    let Some(app) =
        NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[("name", "unit-orders"), ("pm_id", "3")])
    else {
        return;
    };
    // The unit's capabilities, as setpriv spells them.
    let caps: Vec<String> = value(&unit(), "AmbientCapabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    let rootfs = rootfs_with_a_pm2_log();
    let Some(exporter) = exporter_as_nobody(
        &caps,
        &[
            &only(rootfs.path(), app.pid),
            &format!("--path.rootfs={}", rootfs.path().display()),
            "--log.start-at=beginning",
        ],
    ) else {
        return;
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.pid())).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    assert_eq!(field("CapEff:"), "0000000000080004", "exactly CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH");
    assert_eq!(field("CapAmb:"), "0000000000080004");

    let pid = app.pid_label();
    assert!(exporter.wait_metric("process_open_fds", &[("pid", &pid)]) > 0.0);
    assert!(exporter.wait_metric("nodejs_process_open_sockets", &[("pid", &pid), ("protocol", "tcp")]) >= 1.0);
    exporter.wait_metric(
        "nodejs_process_info",
        &[("pid", &pid), ("app", "unit-orders"), ("pm2_id", "3"), ("user", "root")],
    );
    heap_limit(&exporter, &app);
    // The PM2 log of a home it may only enter with CAP_DAC_READ_SEARCH.
    let warnings = exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("app", "orders"), ("event", "close"), ("emitter", "IncomingMessage")],
    );
    assert_eq!(warnings, 1.0);
    eprintln!("as uid 65534 with the unit's capabilities: fds, sockets, PM2 name, heap and the PM2 log read");
    let text = exporter.metrics();
    assert!(metric_value(&text, "nodejs_heap_size_used_bytes", &[("pid", &pid)]).is_some());
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("nodejs_leak_exporter_collector_errors_total") && l.contains("permission_denied")),
        "nothing was denied:\n{text}"
    );
}

/// The README's privilege table, "another user" row: without capabilities the exporter reads
/// root's process's memory and CPU, not its fds, environment (PM2's name), executable (version)
/// or sockets (the inspector on a random port), unless `--inspector.port` names the port; nor a
/// PM2 log in a home it cannot enter.
#[test]
fn as_another_user_without_capabilities_memory_and_a_named_inspector_port_only() {
    if !util::require_root("root's apps and an exporter of another uid") {
        return;
    }
    let Some(app) =
        NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[("name", "unit-orders"), ("pm_id", "3")])
    else {
        return;
    };
    let rootfs = rootfs_with_a_pm2_log();
    let config = only(rootfs.path(), app.pid);
    let rootfs_flag = format!("--path.rootfs={}", rootfs.path().display());
    let Some(exporter) = exporter_as_nobody(&[], &[&config, &rootfs_flag, "--log.start-at=beginning"]) else { return };
    let pid = app.pid_label();
    assert!(exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid)]) > 0.0);
    wait_samples(&exporter, 10.0);
    let text = exporter.metrics();
    assert_eq!(metric_value(&text, "process_open_fds", &[("pid", &pid)]), None, "{text}");
    assert_eq!(
        metric_value(
            &text,
            "nodejs_process_info",
            &[("pid", &pid), ("app", "idle.js"), ("pm2_id", ""), ("node_version", "")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric_value(&text, "nodejs_inspector_connected", &[("pid", &pid)]), Some(0.0));
    assert_eq!(metric_value(&text, "nodejs_max_listeners_exceeded_warnings_total", &[("app", "orders")]), None);
    assert!(
        metric_value(
            &text,
            "nodejs_leak_exporter_collector_errors_total",
            &[("collector", "procfs"), ("reason", "permission_denied")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    drop(exporter);
    // Named by --inspector.port, the inspector is reached: /json/list and the WebSocket need no
    // privilege, and the process.pid check tells it is the process's.
    let port = nodejs_leak_exporter::collect::inspector::locate::listening_sockets(Path::new("/proc"), app.pid)
        .unwrap()
        .first()
        .expect("the app's inspector socket")
        .port();
    let Some(exporter) = exporter_as_nobody(&[], &[&config, &format!("--inspector.port={port}")]) else { return };
    heap_limit(&exporter, &app);
}

/// The "same user" row: with no capability at all, everything of its own user's processes.
#[test]
fn as_the_same_user_without_capabilities_everything() {
    if !util::require_root("apps and an exporter of uid 65534") {
        return;
    }
    let Some(setpriv) = util::require_tool("setpriv") else { return };
    let Some(node) = util::node() else { return };
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(node)
        .arg("--inspect=127.0.0.1:0")
        .arg(util::fixture_app("idle.js"))
        .envs([("name", "same-orders"), ("pm_id", "5")]);
    let app = NodeApp::start(cmd);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(exporter) = exporter_as_nobody(&[], &[&only(dir.path(), app.pid)]) else { return };
    let pid = app.pid_label();
    assert!(exporter.wait_metric("process_open_fds", &[("pid", &pid)]) > 0.0);
    assert!(exporter.wait_metric("nodejs_process_open_sockets", &[("pid", &pid), ("protocol", "tcp")]) >= 1.0);
    exporter.wait_metric(
        "nodejs_process_info",
        &[("pid", &pid), ("app", "same-orders"), ("pm2_id", "5"), ("user", "nobody")],
    );
    heap_limit(&exporter, &app);
    assert!(!exporter.metrics().contains("permission_denied"), "nothing was denied:\n{}", exporter.metrics());
}
