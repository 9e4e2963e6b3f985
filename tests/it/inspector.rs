//! The inspector collector against real Node.js processes (`NODE_BIN` selects the major), fake
//! inspectors that hang or lie, and a second DevTools client.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use nodejs_leak_exporter::collect::inspector::{self, locate, session::Session};
use nodejs_leak_exporter::connector::DirectConnector;
use serde_json::json;

use crate::util::{self, metric_value, Exporter, FakeServer, NodeApp};

/// An exporter watching only these apps: inspector tests must not touch each other's processes.
fn exporter_for(apps: &[&NodeApp], args: &[&str]) -> Exporter {
    let pids: Vec<i32> = apps.iter().map(|a| a.pid).collect();
    Exporter::start_for(&pids, args)
}

const INSPECT_RANDOM: &str = "--inspect=127.0.0.1:0";

fn wait_connected(exporter: &Exporter, app: &NodeApp) {
    let v = exporter.wait_metric("nodejs_inspector_connected", &[("pid", &app.pid_label())]);
    if v != 1.0 {
        util::wait_for("the inspector session to connect", Duration::from_secs(20), || {
            (metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &app.pid_label())]) == Some(1.0))
                .then_some(())
        });
    }
}

fn assert_heap_metrics(exporter: &Exporter, app: &NodeApp) {
    wait_connected(exporter, app);
    let pid = app.pid_label();
    let used = exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &pid)]);
    let total = exporter.wait_metric("nodejs_heap_size_total_bytes", &[("pid", &pid)]);
    let limit = exporter.wait_metric("nodejs_heap_size_limit_bytes", &[("pid", &pid)]);
    assert!(used > 1e6 && used <= total && total < limit, "used {used} total {total} limit {limit}");
    let text = exporter.metrics();
    assert!(
        metric_value(&text, "nodejs_heap_space_size_used_bytes", &[("pid", &pid), ("space", "old")]).unwrap() > 0.0
    );
    assert!(metric_value(&text, "nodejs_external_memory_bytes", &[("pid", &pid)]).unwrap() > 0.0);
    assert!(metric_value(&text, "nodejs_array_buffers_bytes", &[("pid", &pid)]).is_some());
    assert!(metric_value(&text, "nodejs_active_resources", &[("pid", &pid), ("type", "Timeout")]).unwrap() >= 1.0);
    let version = node_version();
    assert_eq!(
        metric_value(&text, "nodejs_version_info", &[("pid", &pid), ("version", &version)]),
        Some(1.0),
        "{version}"
    );
}

fn node_version() -> String {
    let out = Command::new(util::node().unwrap()).arg("--version").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn random_port_from_the_command_line() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    assert_heap_metrics(&exporter, &app);
}

#[test]
fn fixed_port_from_the_command_line() {
    let port = util::free_port();
    let flag = format!("--inspect=127.0.0.1:{port}");
    let Some(app) = NodeApp::with_node_args(&[&flag], "idle.js", &[], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    assert_heap_metrics(&exporter, &app);
}

#[test]
fn inspector_from_node_options() {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[("NODE_OPTIONS", INSPECT_RANDOM)]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    assert_heap_metrics(&exporter, &app);
}

#[test]
fn es_module_app() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "esm.mjs", &[], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    wait_connected(&exporter, &app);
    let used = exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]);
    assert!(used > 1e6);
    // The GC observer works in ESM too: the Map grows and young collections happen.
    exporter.wait_metric("nodejs_gc_duration_seconds_count", &[("pid", &app.pid_label()), ("kind", "minor")]);
}

#[test]
fn no_inspector_is_not_an_error_and_nothing_is_activated_by_default() {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[("NODE_OPTIONS", "--inspect-port=0")]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    assert_eq!(exporter.wait_metric("nodejs_inspector_connected", &[("pid", &app.pid_label())]), 0.0);
    util::wait_for("the status page to say there is no inspector", Duration::from_secs(10), || {
        let t = exporter.target(app.pid)?;
        let c = t["collectors"].as_array()?.iter().find(|c| c["collector"] == "inspector")?.clone();
        let missing = c["missing"].to_string();
        (missing.contains("no inspector open") && missing.contains("not_available")).then_some(())
    });
    // Several samples later, still no inspector: the exporter did not open one.
    let samples = exporter.wait_metric("nodejs_leak_exporter_samples_total", &[]);
    util::wait_for("five more samples", Duration::from_secs(10), || {
        (metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[])? >= samples + 5.0).then_some(())
    });
    assert!(
        locate::listening_sockets(std::path::Path::new("/proc"), app.pid).unwrap().is_empty(),
        "no port was opened"
    );
    let errors = metric_value(
        &exporter.metrics(),
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "inspector"), ("reason", "not_available")],
    );
    assert_eq!(errors, None, "'no inspector' is not counted as an error");
}

#[test]
fn sigusr1_activation_when_the_operator_opts_in() {
    // --inspect-port=0 avoids 9229 collisions between processes, as the README recommends.
    let Some(app) = NodeApp::fixture("idle.js", &[], &[("NODE_OPTIONS", "--inspect-port=0")]) else { return };
    let exporter = exporter_for(&[&app], &["--inspector.activate"]);
    assert_heap_metrics(&exporter, &app);
    let sockets = locate::listening_sockets(std::path::Path::new("/proc"), app.pid).unwrap();
    assert!(sockets.iter().all(|s| s.ip().is_loopback()), "the inspector opened on loopback: {sockets:?}");
}

#[test]
fn listener_leak_on_an_event_emitter_is_counted() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "listeners.js", &["close"], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    let pid = app.pid_label();
    let n = exporter.wait_close_listener_leak(&pid);
    // It keeps counting: a new emitter leaks every 200 ms.
    util::wait_for("the count to grow", Duration::from_secs(10), || {
        let v = metric_value(
            &exporter.metrics(),
            "nodejs_max_listeners_exceeded_warnings_total",
            &[("pid", &pid), ("event", "close")],
        )?;
        (v > n).then_some(())
    });
    assert!(exporter.log().contains("MaxListenersExceededWarning"), "a warning is logged with event and emitter");
}

#[test]
fn listener_leak_on_an_abort_signal_is_counted() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "listeners.js", &["abort"], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("pid", &app.pid_label()), ("event", "abort"), ("emitter", "AbortSignal")],
    );
}

#[test]
fn listener_leak_on_a_bare_event_target_is_counted() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "listeners.js", &["target"], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("pid", &app.pid_label()), ("event", "foo"), ("emitter", "EventTarget")],
    );
}

#[test]
fn warnings_are_counted_even_with_no_warnings() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM, "--no-warnings"], "listeners.js", &["close"], &[]) else {
        return;
    };
    let exporter = exporter_for(&[&app], &[]);
    exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[("pid", &app.pid_label()), ("event", "close"), ("emitter", "IncomingMessage")],
    );
}

#[test]
fn an_app_that_finishes_exits_on_time_while_attached() {
    let started = Instant::now();
    let Some(mut app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "lifetime.js", &["3000"], &[]) else { return };
    let exporter = exporter_for(&[&app], &[]);
    wait_connected(&exporter, &app);
    // Without the exporter leaving on NodeRuntime.waitingForDisconnect, node would print
    // "Waiting for the debugger to disconnect..." and hang here.
    let status = app.wait_exit(Duration::from_secs(15));
    let lived = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(lived < Duration::from_millis(3000 + 2500), "the app exited {lived:?} after start for a 3 s lifetime");
}

#[test]
fn a_process_killed_mid_session_is_an_exit_not_a_failure() {
    let Some(mut app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let Some(other) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let exporter = exporter_for(&[&app, &other], &[]);
    wait_connected(&exporter, &app);
    wait_connected(&exporter, &other);
    app.kill();
    util::wait_for("the killed target to be marked exited", Duration::from_secs(10), || {
        exporter.target(app.pid).filter(|t| t["state"] == "exited")
    });
    // The other process is still read, and the exporter still answers.
    let before = exporter.wait_metric("nodejs_leak_exporter_samples_total", &[]);
    util::wait_for("more samples", Duration::from_secs(10), || {
        (metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[])? > before + 2.0).then_some(())
    });
    assert_eq!(
        metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &other.pid_label())]),
        Some(1.0)
    );
    assert!(
        !exporter.log().contains(&format!("of pid {} ", app.pid)),
        "no warning logged for an exit:\n{}",
        exporter.log()
    );
}

#[test]
fn a_port_that_accepts_and_never_answers_delays_nobody() {
    let silent = FakeServer::silent();
    // One process whose only candidate is the silent port, one with a working inspector.
    let Some(quiet) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let port = silent.port.to_string();
    let exporter = exporter_for(&[&quiet, &app], &["--inspector.port", &port]);
    wait_connected(&exporter, &app);
    let timeouts = exporter.wait_metric(
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "inspector"), ("reason", "timeout")],
    );
    assert!(timeouts >= 1.0);
    // Scrapes stay fast while sessions wait on the silent port.
    for _ in 0..20 {
        let t = Instant::now();
        exporter.metrics();
        assert!(t.elapsed() < Duration::from_millis(500), "a scrape took {:?}", t.elapsed());
    }
    let samples = exporter.wait_metric("nodejs_leak_exporter_samples_total", &[]);
    util::wait_for("sampling to go on", Duration::from_secs(5), || {
        (metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[])? > samples + 3.0).then_some(())
    });
}

#[test]
fn a_non_inspector_http_server_on_the_port_is_a_protocol_error() {
    let server = FakeServer::http(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
    );
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let port = server.port.to_string();
    let exporter = exporter_for(&[&app], &["--inspector.port", &port]);
    let n = exporter.wait_metric(
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "inspector"), ("reason", "protocol")],
    );
    assert!(n >= 1.0);
}

#[test]
fn garbage_and_early_close_from_a_fake_inspector_are_survived() {
    let garbage = FakeServer::http("\u{0}\u{1}garbage\r\n\r\nmore garbage");
    let Some(quiet) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let port = garbage.port.to_string();
    let exporter = exporter_for(&[&quiet, &app], &["--inspector.port", &port]);
    wait_connected(&exporter, &app);
    exporter.wait_metric(
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "inspector"), ("reason", "protocol")],
    );
    assert_eq!(exporter.get("/-/healthy").0, 200);
}

/// A DevTools-like client of our own, through the library's session type.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn open_session(pid: i32) -> Session {
    let sockets = tokio::task::spawn_blocking(move || locate::listening_sockets(std::path::Path::new("/proc"), pid))
        .await
        .unwrap()
        .unwrap();
    let mut last = None;
    for addr in sockets {
        match locate::probe(&DirectConnector, pid, addr, Duration::from_secs(2)).await {
            Ok(path) => {
                return Session::open(&DirectConnector, pid, addr, &path, Duration::from_secs(2)).await.unwrap().0
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    panic!("no inspector found for pid {pid}: {last:?}");
}

async fn eval(session: &Session, expression: &str) -> serde_json::Value {
    let v = session
        .call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "includeCommandLineAPI": true}),
            Duration::from_secs(5),
            1 << 20,
        )
        .await
        .unwrap();
    assert!(v.get("exceptionDetails").is_none(), "{expression}: {v}");
    v["result"]["value"].clone()
}

#[test]
fn a_second_devtools_client_works_alongside() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let rt = runtime();
    let second = rt.block_on(open_session(app.pid));
    let exporter = exporter_for(&[&app], &[]);
    wait_connected(&exporter, &app);
    // Both are served at the same time.
    for i in 0..5 {
        assert_eq!(rt.block_on(eval(&second, &format!("{i} + 1"))), json!(i + 1));
        let v = exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]);
        assert!(v > 0.0);
    }
}

#[test]
fn shutdown_removes_what_was_injected() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "idle.js", &[], &[]) else { return };
    let rt = runtime();
    let probe = rt.block_on(open_session(app.pid));
    let before = rt.block_on(eval(&probe, "process.listenerCount('warning')"));
    let mut exporter = exporter_for(&[&app], &[]);
    wait_connected(&exporter, &app);
    let during = rt.block_on(eval(
        &probe,
        "[typeof globalThis[Symbol.for('nodejs-leak-exporter')], process.listenerCount('warning')]",
    ));
    assert_eq!(during[0], "object");
    assert_eq!(during[1], json!(before.as_i64().unwrap() + 1));
    exporter.stop();
    let after = rt.block_on(eval(&probe, "[typeof globalThis[Symbol.for('nodejs-leak-exporter')], process.listenerCount('warning'), typeof globalThis.__nodejsLeakExporterWarning]"));
    assert_eq!(after[0], "undefined", "state removed");
    assert_eq!(after[1], before, "listener removed");
}

#[test]
fn a_thousand_reconnects_leave_the_heap_floor_where_an_unattached_twin_has_it() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM, "--expose-gc"], "idle.js", &[], &[]) else { return };
    let Some(twin) = NodeApp::with_node_args(&[INSPECT_RANDOM, "--expose-gc"], "idle.js", &[], &[]) else { return };
    let rt = runtime();
    let (addr, path): (SocketAddr, String) = rt.block_on(async {
        let sockets = locate::listening_sockets(std::path::Path::new("/proc"), app.pid).unwrap();
        for a in sockets {
            if let Ok(p) = locate::probe(&DirectConnector, app.pid, a, Duration::from_secs(2)).await {
                return (a, p);
            }
        }
        panic!("no inspector");
    });
    rt.block_on(async {
        for i in 0..1000 {
            let (session, _events) =
                Session::open(&DirectConnector, app.pid, addr, &path, Duration::from_secs(5)).await.unwrap();
            let install = inspector::install_expression(&format!("reconnect-{}", i % 3));
            let r = eval(&session, &install).await;
            assert!(r == "installed" || r == "present", "{r}");
            let sample = eval(&session, inspector::SAMPLE).await;
            inspector::parse_sample(sample.as_str().unwrap()).unwrap();
            session.close().await;
        }
    });
    let floor = |pid: i32| {
        rt.block_on(async {
            let s = open_session(pid).await;
            let v = eval(&s, "gc(); gc(); require('v8').getHeapStatistics().used_heap_size").await;
            s.close().await;
            v.as_f64().unwrap()
        })
    };
    let (attached, alone) = (floor(app.pid), floor(twin.pid));
    assert!(
        attached < alone + 512.0 * 1024.0,
        "after 1,000 reconnects the heap floor is {attached} bytes against {alone} for the unattached twin"
    );
}

#[test]
fn sessions_are_shared_safely_across_exporters() {
    let Some(app) = NodeApp::with_node_args(&[INSPECT_RANDOM], "listeners.js", &["close"], &[]) else { return };
    let first = exporter_for(&[&app], &[]);
    let mut second = exporter_for(&[&app], &[]);
    wait_connected(&first, &app);
    wait_connected(&second, &app);
    second.stop();
    // The first exporter's listener survives the second's shutdown.
    let pid = app.pid_label();
    let n = first.wait_metric("nodejs_max_listeners_exceeded_warnings_total", &[("pid", &pid), ("event", "close")]);
    util::wait_for("counting to go on after the other exporter left", Duration::from_secs(10), || {
        let v = metric_value(
            &first.metrics(),
            "nodejs_max_listeners_exceeded_warnings_total",
            &[("pid", &pid), ("event", "close")],
        )?;
        (v > n + 1.0).then_some(())
    });
}
