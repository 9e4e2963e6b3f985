//! What the Helm chart grants the exporter, in one place: the chart test checks the rendered
//! DaemonSet grants exactly these, and the tests here run the exporter under `setpriv` as uid 0
//! with exactly these (every other capability dropped from its bounding, inheritable and ambient
//! sets), against Node.js apps of another user, and check it still produces its metrics — and,
//! leaving each capability out in turn, that it no longer does: each one is needed.
//!
//! Measured on Linux 6.18 with `setpriv` as uid 0 against a process of uid 65534 (its
//! `/proc/PID/fd` is `dr-x------`, its `environ` `-r--------`, both owned by the app's user):
//!
//! | read | needs |
//! |---|---|
//! | `stat`, `status`, `cmdline`, `net/tcp*` | nothing |
//! | list `fd/` (the fd count) | `DAC_READ_SEARCH` |
//! | `readlink fd/N` (sockets, inspector sockets) | `DAC_READ_SEARCH` + `SYS_PTRACE` |
//! | `exe` (Node.js version), `smaps_rollup` (PSS), open `ns/net` | `SYS_PTRACE` |
//! | `environ` (PM2 name, `NODE_OPTIONS`) | `DAC_READ_SEARCH` + `SYS_PTRACE` (or `SYS_ADMIN`) |
//! | `setns` into the app's network namespace | `SYS_ADMIN` (+ `SYS_PTRACE` to open `ns/net`) |
//! | `SIGUSR1` (`kill`, `pidfd_send_signal`) | `KILL` |

use std::process::Command;
use std::time::Duration;

use crate::netns::{heap_limit, inspector_missing, node_in_own_netns};
use crate::util::{self, metric_value, Exporter, NodeApp};

/// The DaemonSet container runs as uid 0 with every capability dropped but these. Kubernetes
/// gives added capabilities to a non-root user only in the bounding set (no ambient
/// capabilities), so uid 0 is what makes them effective; without them uid 0 reads no more than
/// any other user of another user's processes.
/// - `SYS_PTRACE`: ptrace read access to another user's process: `/proc/PID/exe` (the Node.js
///   version), `fd/*` links (sockets, and the inspector's socket), `environ` (with
///   `DAC_READ_SEARCH`: PM2's name, `NODE_OPTIONS`), `ns/net`;
/// - `DAC_READ_SEARCH`: list another user's `/proc/PID/fd` (mode 0500) and read its `environ`
///   (mode 0400), both owned by the app's user.
pub const CHART_DAEMONSET_CAPABILITIES: &[&str] = &["SYS_PTRACE", "DAC_READ_SEARCH"];

/// Added with `inspector.enterNetns`: `setns` into a pod's network namespace needs `SYS_ADMIN`.
pub const CHART_ENTER_NETNS_CAPABILITIES: &[&str] = &["SYS_ADMIN"];

/// Added with `inspector.activate`: `SIGUSR1` to another user's process needs `KILL`.
pub const CHART_ACTIVATE_CAPABILITIES: &[&str] = &["KILL"];

/// The user the apps run as: not the exporter's.
const APP_UID: u32 = 65534;

/// Capability numbers (`linux/capability.h`) of the names the chart uses.
fn capability_number(name: &str) -> u32 {
    match name {
        "DAC_READ_SEARCH" => 2,
        "KILL" => 5,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        other => panic!("capability {other} is not known to this test"),
    }
}

/// The capability sets: every constant given, flattened.
fn grant(sets: &[&[&'static str]]) -> Vec<&'static str> {
    sets.iter().flat_map(|s| s.iter().copied()).collect()
}

/// The exporter as uid 0 with exactly `caps`, watching only `pids`, with `args`.
fn exporter_with(caps: &[&str], pids: &[i32], args: &[&str]) -> Option<(Exporter, tempfile::TempDir)> {
    let setpriv = util::require_tool("setpriv")?;
    let bounding: String = caps.iter().map(|c| format!(",+{}", c.to_lowercase())).collect();
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=0",
        "--regid=0",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        &format!("--bounding-set=-all{bounding}"),
        "--",
    ])
    .arg(util::exporter_bin());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("only.yml");
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    std::fs::write(&file, format!("discovery:\n  include: []\n  pids: [{}]\n", list.join(", "))).unwrap();
    let mut all = vec![format!("--config.file={}", file.display())];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let exporter = Exporter::start_with(cmd, &all);
    // It runs with exactly these capabilities, no more.
    let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.pid())).unwrap();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    let want: u64 = caps.iter().map(|c| 1u64 << capability_number(c)).sum();
    assert_eq!(u64::from_str_radix(effective, 16).unwrap(), want, "effective capabilities of the exporter");
    Some((exporter, dir))
}

/// `node node_args idle.js` as [`APP_UID`], with `env`.
fn app_of_another_user(node_args: &[&str], env: &[(&str, &str)]) -> Option<NodeApp> {
    if !util::require_root("apps of another user and an exporter with chosen capabilities") {
        return None;
    }
    let setpriv = util::require_tool("setpriv")?;
    let node = util::node()?;
    let uid = APP_UID.to_string();
    let mut cmd = Command::new(setpriv);
    cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()])
        .arg(node)
        .args(node_args)
        .arg(util::fixture_app("idle.js"))
        .envs(env.iter().copied());
    Some(NodeApp::start(cmd))
}

/// A PM2-named app of another user with an inspector on a random port.
fn pm2_app() -> Option<NodeApp> {
    app_of_another_user(&["--inspect=127.0.0.1:0"], &[("name", "priv-orders"), ("pm_id", "7")])
}

fn node_version() -> String {
    let out = Command::new(util::node().unwrap()).arg("--version").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Waits until the `collector` collector reports `what` missing for `pid` on the status page.
fn wait_missing(exporter: &Exporter, pid: i32, collector: &str, what: &str) -> String {
    util::wait_for(&format!("{collector} to report {what:?} missing"), Duration::from_secs(20), || {
        let t = exporter.target(pid)?;
        let c = t["collectors"].as_array()?.iter().find(|c| c["collector"] == collector)?.clone();
        let missing = c["missing"].to_string();
        missing.contains(what).then_some(missing)
    })
}

fn wait_samples(exporter: &Exporter, n: f64) {
    let start = exporter.wait_metric("nodejs_leak_exporter_samples_total", &[]);
    util::wait_for("more samples", Duration::from_secs(20), || {
        (metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[])? >= start + n).then_some(())
    });
}

#[test]
fn the_daemonset_s_capabilities_read_everything_of_another_user_s_process() {
    let Some(app) = pm2_app() else { return };
    let Some((exporter, _dir)) = exporter_with(CHART_DAEMONSET_CAPABILITIES, &[app.pid], &[]) else { return };
    let pid = app.pid_label();
    // fds and sockets (DAC_READ_SEARCH to list, SYS_PTRACE to read the links).
    assert!(exporter.wait_metric("process_open_fds", &[("pid", &pid)]) > 0.0);
    assert!(exporter.wait_metric("nodejs_process_open_sockets", &[("pid", &pid), ("protocol", "tcp")]) >= 1.0);
    // The executable (the Node.js version) and the environment (PM2's name).
    exporter.wait_metric(
        "nodejs_process_info",
        &[
            ("pid", &pid),
            ("app", "priv-orders"),
            ("pm2_id", "7"),
            ("node_version", &node_version()),
            ("user", "nobody"),
        ],
    );
    // The inspector, found through the process's sockets, and its heap.
    heap_limit(&exporter, &app);
    let text = exporter.metrics();
    assert_eq!(
        metric_value(&text, "nodejs_leak_exporter_collector_errors_total", &[("reason", "permission_denied")]),
        None,
        "nothing was denied:\n{text}"
    );
}

/// The DaemonSet's set without `SYS_PTRACE`.
fn without_sys_ptrace() -> Vec<&'static str> {
    CHART_DAEMONSET_CAPABILITIES.iter().copied().filter(|c| *c != "SYS_PTRACE").collect()
}

#[test]
fn without_sys_ptrace_no_environment_executable_or_inspector_socket() {
    let Some(app) = pm2_app() else { return };
    let Some((exporter, _dir)) = exporter_with(&without_sys_ptrace(), &[app.pid], &[]) else { return };
    let pid = app.pid_label();
    wait_samples(&exporter, 5.0);
    let text = exporter.metrics();
    // No environment: not PM2's name but the script's; no executable: no Node.js version.
    assert_eq!(
        metric_value(
            &text,
            "nodejs_process_info",
            &[("pid", &pid), ("app", "idle.js"), ("pm2_id", ""), ("node_version", "")]
        ),
        Some(1.0),
        "{text}"
    );
    // No fd links: the inspector's random port is not found among the app's sockets.
    assert_eq!(metric_value(&text, "nodejs_inspector_connected", &[("pid", &pid)]), Some(0.0));
    assert_eq!(metric_value(&text, "nodejs_heap_size_used_bytes", &[("pid", &pid)]), None);
    // Memory is still read (stat and status are world-readable).
    assert!(metric_value(&text, "process_resident_memory_bytes", &[("pid", &pid)]).unwrap() > 0.0);
}

#[test]
fn without_sys_ptrace_fds_and_sockets_are_permission_denied_not_zero() {
    let Some(app) = pm2_app() else { return };
    let Some((exporter, _dir)) = exporter_with(&without_sys_ptrace(), &[app.pid], &[]) else { return };
    let pid = app.pid_label();
    wait_missing(&exporter, app.pid, "procfs", "fds and sockets: permission_denied");
    let errors = exporter.wait_metric(
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "procfs"), ("reason", "permission_denied")],
    );
    assert!(errors >= 1.0);
    let text = exporter.metrics();
    assert_eq!(metric_value(&text, "process_open_fds", &[("pid", &pid)]), None, "{text}");
    assert_eq!(metric_value(&text, "nodejs_process_open_sockets", &[("pid", &pid)]), None, "{text}");
}

#[test]
fn without_dac_read_search_no_fd_count() {
    let Some(app) = pm2_app() else { return };
    let caps: Vec<&str> = CHART_DAEMONSET_CAPABILITIES.iter().copied().filter(|c| *c != "DAC_READ_SEARCH").collect();
    let Some((exporter, _dir)) = exporter_with(&caps, &[app.pid], &[]) else { return };
    let pid = app.pid_label();
    wait_missing(&exporter, app.pid, "procfs", "fds and sockets: permission_denied");
    let text = exporter.metrics();
    assert_eq!(metric_value(&text, "process_open_fds", &[("pid", &pid)]), None);
    // The executable needs only SYS_PTRACE: the version is there; the environment is not.
    assert_eq!(
        metric_value(
            &text,
            "nodejs_process_info",
            &[("pid", &pid), ("app", "idle.js"), ("node_version", &node_version())]
        ),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn entering_a_pod_s_network_namespace_needs_sys_admin() {
    let Some(app) = node_in_own_netns(Some(APP_UID), &["--inspect=127.0.0.1:0"], "idle.js", &[]) else { return };
    let entering = grant(&[CHART_DAEMONSET_CAPABILITIES, CHART_ENTER_NETNS_CAPABILITIES]);
    let Some((exporter, _dir)) = exporter_with(&entering, &[app.pid], &["--inspector.enter-netns"]) else { return };
    heap_limit(&exporter, &app);
    assert!(!exporter.log().contains("lacks CAP_SYS_ADMIN"), "{}", exporter.log());

    // Without SYS_ADMIN: a warning at start, and permission_denied naming the capability.
    let Some((denied, _dir)) = exporter_with(CHART_DAEMONSET_CAPABILITIES, &[app.pid], &["--inspector.enter-netns"])
    else {
        return;
    };
    assert!(denied.log().contains("lacks CAP_SYS_ADMIN"), "a warning at start:\n{}", denied.log());
    let errors = denied.wait_metric(
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "inspector"), ("reason", "permission_denied")],
    );
    assert!(errors >= 1.0);
    let missing = inspector_missing(&denied, app.pid).unwrap();
    assert!(missing.contains("CAP_SYS_ADMIN") && missing.contains("permission_denied"), "{missing}");
    util::wait_for("the log to name CAP_SYS_ADMIN for the pid", Duration::from_secs(10), || {
        denied
            .log()
            .lines()
            .any(|l| l.contains(&format!("of pid {}", app.pid)) && l.contains("CAP_SYS_ADMIN"))
            .then_some(())
    });
    wait_samples(&denied, 5.0);
    assert_eq!(metric_value(&denied.metrics(), "nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]), None);
}

#[test]
fn activating_another_user_s_inspector_needs_kill() {
    // Both apps would open their inspector on a random port when signalled.
    let env = [("NODE_OPTIONS", "--inspect-port=0")];
    let Some(app) = app_of_another_user(&[], &env) else { return };
    let Some(refused) = app_of_another_user(&[], &env) else { return };
    let activating = grant(&[CHART_DAEMONSET_CAPABILITIES, CHART_ACTIVATE_CAPABILITIES]);
    let Some((exporter, _dir)) = exporter_with(&activating, &[app.pid], &["--inspector.activate"]) else { return };
    heap_limit(&exporter, &app);

    let Some((denied, _dir)) = exporter_with(CHART_DAEMONSET_CAPABILITIES, &[refused.pid], &["--inspector.activate"])
    else {
        return;
    };
    util::wait_for("the refused SIGUSR1 in the log", Duration::from_secs(20), || {
        denied
            .log()
            .lines()
            .any(|l| l.contains("cannot send SIGUSR1") && l.contains("Operation not permitted"))
            .then_some(())
    });
    wait_samples(&denied, 5.0);
    assert_eq!(
        metric_value(&denied.metrics(), "nodejs_inspector_connected", &[("pid", &refused.pid_label())]),
        Some(0.0)
    );
    assert!(
        nodejs_leak_exporter::collect::inspector::locate::listening_sockets(std::path::Path::new("/proc"), refused.pid)
            .unwrap()
            .is_empty(),
        "no inspector was opened"
    );
}

/// The chart's `snapshots.enabled`: the DaemonSet's capabilities suffice to take a heap snapshot
/// of another user's app into the snapshot volume, an emptyDir as the kubelet makes it (root's,
/// mode 0777), creating the directory below it as the chart configures it: uid 0 owns what it
/// writes there, so no `DAC_OVERRIDE`, `CHOWN` or `FOWNER` is needed.
#[test]
fn the_daemonset_s_capabilities_take_a_heap_snapshot_into_the_snapshot_volume() {
    use std::os::unix::fs::PermissionsExt;
    let Some(app) = app_of_another_user(&["--inspect=127.0.0.1:0"], &[]) else { return };
    let volume = tempfile::tempdir().unwrap();
    std::fs::set_permissions(volume.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = volume.path().join("snapshots");
    let flag = format!("--snapshot.dir={}", dir.display());
    let Some((exporter, _config)) = exporter_with(CHART_DAEMONSET_CAPABILITIES, &[app.pid], &[&flag]) else { return };
    heap_limit(&exporter, &app);
    let (status, body) = util::http_request(&exporter.addr, "POST", &format!("/api/v1/snapshot?pid={}", app.pid));
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let last = util::wait_for("the snapshot to finish", Duration::from_secs(90), || {
        let list: serde_json::Value = serde_json::from_str(&exporter.get("/api/v1/snapshots").1).ok()?;
        (list["status"]["running"].is_null() && !list["status"]["last"].is_null())
            .then(|| list["status"]["last"].clone())
    });
    assert_eq!(last["ok"], true, "{last}\n{}", exporter.log());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let file = dir.join(last["name"].as_str().unwrap());
    assert_eq!(mode(&file), 0o600);
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
}
