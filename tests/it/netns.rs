//! Inspectors inside other network namespaces, as a pod's are: real Node.js apps started in their
//! own namespace (`unshare --net`, loopback up) with inspectors on that namespace's loopback, read
//! by the exporter with `--inspector.enter-netns` and not without it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nodejs_leak_exporter::collect::inspector::locate;

use crate::util::{self, metric_value, Exporter, NodeApp};

/// `unshare --net`, then loopback up, then `node` (as `user` when given, through `setpriv`), so
/// the app's pid is the one spawned: both steps exec.
pub fn node_in_own_netns(
    user: Option<u32>,
    node_args: &[&str],
    fixture: &str,
    env: &[(&str, &str)],
) -> Option<NodeApp> {
    if !util::require_root("a network namespace of its own") {
        return None;
    }
    let unshare = util::require_tool("unshare")?;
    util::require_tool("ip")?;
    let node = util::node()?;
    let mut cmd = Command::new(unshare);
    let run = match user {
        Some(uid) => format!("exec setpriv --reuid={uid} --regid={uid} --clear-groups -- \"$@\""),
        None => "exec \"$@\"".to_string(),
    };
    if user.is_some() {
        util::require_tool("setpriv")?;
    }
    cmd.args(["--net", "sh", "-c", &format!("ip link set lo up && {run}"), "sh"])
        .arg(node)
        .args(node_args)
        .arg(util::fixture_app(fixture));
    cmd.envs(env.iter().copied());
    let app = NodeApp::start(cmd);
    assert_ne!(
        std::fs::read_link(format!("/proc/{}/ns/net", app.pid)).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "the app runs in a network namespace of its own"
    );
    Some(app)
}

/// The inspector collector's explanation on the status page, for `pid`.
pub fn inspector_missing(exporter: &Exporter, pid: i32) -> Option<String> {
    let t = exporter.target(pid)?;
    let c = t["collectors"].as_array()?.iter().find(|c| c["collector"] == "inspector")?.clone();
    Some(c["missing"].to_string())
}

pub fn wait_connected(exporter: &Exporter, app: &NodeApp) {
    util::wait_for(&format!("the inspector session of pid {} to connect", app.pid), Duration::from_secs(30), || {
        (metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &app.pid_label())]) == Some(1.0))
            .then_some(())
    });
}

/// Waits for the heap metrics of `app` and returns its heap limit.
pub fn heap_limit(exporter: &Exporter, app: &NodeApp) -> f64 {
    wait_connected(exporter, app);
    let pid = app.pid_label();
    let used = exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &pid)]);
    let limit = exporter.wait_metric("nodejs_heap_size_limit_bytes", &[("pid", &pid)]);
    assert!(used > 1e6 && used < limit, "used {used} limit {limit}");
    limit
}

/// Whether `app` listens on `port` on its namespace's loopback (its own `/proc/PID/net/tcp`).
fn listens_on(app: &NodeApp, port: u16) -> bool {
    let want: SocketAddr = ([127, 0, 0, 1], port).into();
    locate::listening_sockets(Path::new("/proc"), app.pid).is_ok_and(|s| s.contains(&want))
}

/// Samples the exporter takes from now on, to wait for a number of them.
fn wait_samples(exporter: &Exporter, n: f64) {
    let start = exporter.wait_metric("nodejs_leak_exporter_samples_total", &[]);
    util::wait_for("more samples", Duration::from_secs(20), || {
        (metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[])? >= start + n).then_some(())
    });
}

#[test]
fn random_port_in_its_own_namespace_is_read_only_when_entering_it() {
    let Some(app) = node_in_own_netns(None, &["--inspect=127.0.0.1:0"], "idle.js", &[]) else { return };
    let entering = Exporter::start_for(&[app.pid], &["--inspector.enter-netns"]);
    let staying = Exporter::start_for(&[app.pid], &[]);
    heap_limit(&entering, &app);
    // The metrics the inspector adds are all there, as for a process on the host's loopback.
    let text = entering.metrics();
    let pid = app.pid_label();
    assert!(
        metric_value(&text, "nodejs_heap_space_size_used_bytes", &[("pid", &pid), ("space", "old")]).unwrap() > 0.0
    );
    assert!(metric_value(&text, "nodejs_active_resources", &[("pid", &pid), ("type", "Timeout")]).unwrap() >= 1.0);
    // Without the flag the exporter stays on its own loopback: no heap, and the status page says
    // why and what to do.
    util::wait_for("the status page to name --inspector.enter-netns", Duration::from_secs(20), || {
        inspector_missing(&staying, app.pid).filter(|m| m.contains("--inspector.enter-netns"))
    });
    wait_samples(&staying, 5.0);
    let text = staying.metrics();
    assert_eq!(metric_value(&text, "nodejs_inspector_connected", &[("pid", &pid)]), Some(0.0));
    assert_eq!(metric_value(&text, "nodejs_heap_size_used_bytes", &[("pid", &pid)]), None);
}

#[test]
fn two_apps_on_port_9229_in_two_namespaces_each_get_their_own_heap() {
    // The same address in two namespaces: only a connection opened in the right one reaches each
    // app. Different heap limits tell the two apart in the metrics; the exporter's own check of
    // `process.pid` would refuse the other's inspector anyway.
    let inspect = "--inspect=127.0.0.1:9229";
    let Some(small) = node_in_own_netns(None, &[inspect, "--max-old-space-size=96"], "idle.js", &[]) else { return };
    let Some(large) = node_in_own_netns(None, &[inspect, "--max-old-space-size=192"], "idle.js", &[]) else { return };
    let exporter = Exporter::start_for(&[small.pid, large.pid], &["--inspector.enter-netns"]);
    let mib = 1024.0 * 1024.0;
    let small_limit = heap_limit(&exporter, &small);
    let large_limit = heap_limit(&exporter, &large);
    // V8's limit is the old space's plus the young generation's.
    assert!((96.0 * mib..96.0 * mib + 64.0 * mib).contains(&small_limit), "small app's heap limit {small_limit}");
    assert!((192.0 * mib..192.0 * mib + 64.0 * mib).contains(&large_limit), "large app's heap limit {large_limit}");
}

#[test]
fn inspect_port_zero_from_node_options_is_found_through_the_namespace_s_sockets() {
    // `--inspect-port=0` in NODE_OPTIONS: the port is found by matching the app's sockets against
    // its own namespace's /proc/PID/net/tcp.
    let env = [("NODE_OPTIONS", "--inspect --inspect-port=0")];
    let Some(app) = node_in_own_netns(None, &[], "idle.js", &env) else { return };
    // And one without an inspector, opened by SIGUSR1 (`--inspector.activate`) on a random port.
    let Some(activated) = node_in_own_netns(None, &[], "idle.js", &[("NODE_OPTIONS", "--inspect-port=0")]) else {
        return;
    };
    let exporter = Exporter::start_for(&[app.pid, activated.pid], &["--inspector.enter-netns", "--inspector.activate"]);
    heap_limit(&exporter, &app);
    heap_limit(&exporter, &activated);
    let sockets = locate::listening_sockets(Path::new("/proc"), activated.pid).unwrap();
    assert!(!sockets.is_empty() && sockets.iter().all(|s| s.ip().is_loopback()), "{sockets:?}");
}

#[test]
fn configured_ports_are_probed_in_the_process_s_namespace_not_the_host_s() {
    // A port the exporter learns only from --inspector.port (the app's flags name no open
    // inspector): the app's inspector on it in its namespace, another app's on the host.
    let port = util::free_port();
    let Some(host_app) = NodeApp::with_node_args(&[&format!("--inspect=127.0.0.1:{port}")], "idle.js", &[], &[]) else {
        return;
    };
    let inspect_port = format!("--inspect-port=127.0.0.1:{port}");
    let Some(app) = node_in_own_netns(None, &[], "idle.js", &[("NODE_OPTIONS", &inspect_port)]) else { return };
    // The app opens its inspector (on its own loopback) only when told to.
    app.signal(libc::SIGUSR1);
    util::wait_for("the app's inspector to listen in its namespace", Duration::from_secs(10), || {
        listens_on(&app, port).then_some(())
    });
    let flag = format!("--inspector.port={port}");
    let staying = Exporter::start_for(&[app.pid], &[&flag]);
    let entering = Exporter::start_for(&[app.pid], &[&flag, "--inspector.enter-netns"]);
    heap_limit(&entering, &app);
    // Without entering, the port on the host's loopback is the host app's inspector, which the
    // exporter refuses as another process's.
    util::wait_for("the host app's inspector to be refused", Duration::from_secs(20), || {
        staying.log().contains("inspector belongs to another process").then_some(())
    });
    wait_samples(&staying, 5.0);
    let pid = app.pid_label();
    assert_eq!(metric_value(&staying.metrics(), "nodejs_inspector_connected", &[("pid", &pid)]), Some(0.0));
    assert_eq!(metric_value(&staying.metrics(), "nodejs_heap_size_used_bytes", &[("pid", &pid)]), None);
    drop(host_app);
}
