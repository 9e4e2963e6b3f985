//! Heap snapshots through the exporter's HTTP API (`--snapshot.dir`): behind basic auth, taken in
//! the background, listed, downloaded byte for byte, kept under the count cap, and taken for a
//! firing heap leak alert from Alertmanager's webhook only by the exporter on the alert's node,
//! which another exporter forwards it to (`snapshots.forward`) when the webhook reached that one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, metric_value, Exporter, NodeApp};

/// `alice:s3cret`.
const AUTH: &str = "Basic YWxpY2U6czNjcmV0";

/// A request over plain HTTP/1.1, with credentials when `auth`; returns (status, body bytes).
fn request(addr: &str, method: &str, path: &str, auth: bool, body: &[u8]) -> (u16, Vec<u8>) {
    let auth = if auth { format!("Authorization: {AUTH}\r\n") } else { String::new() };
    request_with(addr, method, path, &auth, body)
}

/// As [`request`], with `headers` (each line ending in CRLF) as they are.
fn request_with(addr: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response");
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    (status, raw[end + 4..].to_vec())
}

fn json(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (status, body) = request(addr, method, path, true, body);
    let v = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, v)
}

fn names(addr: &str) -> Vec<String> {
    let (status, list) = json(addr, "GET", "/api/v1/snapshots", b"");
    assert_eq!(status, 200, "{list}");
    list["snapshots"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// Waits until no snapshot is running and returns the last one's outcome, which must be a success.
fn wait_done(addr: &str, name: &str) {
    let last = util::wait_for("the snapshot to finish", Duration::from_secs(90), || {
        let (_, list) = json(addr, "GET", "/api/v1/snapshots", b"");
        (list["status"]["running"].is_null() && list["status"]["last"]["name"] == name)
            .then(|| list["status"]["last"].clone())
    });
    assert_eq!(last["ok"], true, "{last}");
}

fn take(addr: &str, pid: i32) -> String {
    let (status, started) = json(addr, "POST", &format!("/api/v1/snapshot?pid={pid}"), b"");
    assert_eq!(status, 202, "{started}");
    let name = started["name"].as_str().unwrap().to_string();
    wait_done(addr, &name);
    name
}

fn alert(node: &str, pid: i32) -> Vec<u8> {
    alerts(&[(node, "127.0.0.1:19229", pid)])
}

/// A webhook payload with one firing heap leak alert per (node, instance, pid).
fn alerts(list: &[(&str, &str, i32)]) -> Vec<u8> {
    let alerts: Vec<Value> = list
        .iter()
        .map(|(node, instance, pid)| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "NodejsHeapLeak", "pid": pid.to_string(), "node": node, "instance": instance},
                "annotations": {"summary": "heap grows"},
                "startsAt": "2026-01-01T00:00:00Z",
            })
        })
        .collect();
    serde_json::json!({"version": "4", "status": "firing", "receiver": "snapshots", "alerts": alerts})
        .to_string()
        .into_bytes()
}

#[test]
fn snapshots_over_http_and_from_alertmanager() {
    let Some(app) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[]) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snaps");
    let config = tmp.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "discovery:\n  include: []\n  pids: [{}]\nsnapshots:\n  dir: {}\n  max_files: 2\n  node_name: test-node\n",
            app.pid,
            dir.display()
        ),
    )
    .unwrap();
    let web = tmp.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {}\n", bcrypt::hash("s3cret", 4).unwrap())).unwrap();
    let e = Exporter::start_with(
        Command::new(util::exporter_bin()),
        &[&format!("--config.file={}", config.display()), &format!("--web.config.file={}", web.display())],
    );
    let addr = e.addr.as_str();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);

    // Behind the endpoint's authentication.
    let post = format!("/api/v1/snapshot?pid={}", app.pid);
    assert_eq!(request(addr, "POST", &post, false, b"").0, 401);
    assert_eq!(request(addr, "GET", "/api/v1/snapshots", false, b"").0, 401);
    assert_eq!(request(addr, "POST", "/api/v1/alertmanager", false, &alert("test-node", app.pid)).0, 401);
    assert!(names(addr).is_empty());
    // Only watched processes.
    assert_eq!(request(addr, "POST", &format!("/api/v1/snapshot?pid={}", e.pid()), true, b"").0, 404);
    assert_eq!(request(addr, "POST", "/api/v1/snapshot", true, b"").0, 400);

    // One snapshot: listed, 0600, downloaded as written.
    let first = take(addr, app.pid);
    assert!(first.contains(&format!("-{}-", app.pid)) && first.ends_with(".heapsnapshot"), "{first}");
    assert_eq!(names(addr), [first.as_str()]);
    let file = dir.join(&first);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let (status, bytes) = request(addr, "GET", &format!("/api/v1/snapshots/{first}"), true, b"");
    assert_eq!(status, 200);
    assert!(bytes.len() > 100_000, "{} bytes", bytes.len());
    assert!(bytes == std::fs::read(&file).unwrap(), "the download differs from the file");
    for bad in
        ["/api/v1/snapshots/..%2Fconfig.yml", "/api/v1/snapshots/../config.yml", "/api/v1/snapshots/x.heapsnapshot"]
    {
        assert_eq!(request(addr, "GET", bad, true, b"").0, 404, "{bad}");
    }
    assert_eq!(request(addr, "GET", &format!("/api/v1/snapshots/{first}"), false, b"").0, 401);

    // The count cap: the third snapshot removes the first.
    let second = take(addr, app.pid);
    let third = take(addr, app.pid);
    assert_eq!(names(addr), [second.clone(), third.clone()]);
    assert!(!file.exists());
    // Both parse, as snapshots of one process.
    let out = Command::new(util::exporter_bin())
        .args(["diff", "--output", "json"])
        .args([dir.join(&second), dir.join(&third)])
        .output()
        .unwrap();
    assert!(out.status.success(), "diff: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).expect("diff's JSON");

    // Alertmanager: another node's alert is left to its exporter; this node's takes one snapshot,
    // once an hour per process.
    let (status, done) = json(addr, "POST", "/api/v1/alertmanager", &alert("other-node", app.pid));
    assert_eq!((status, &done["other_node"], done["started"].as_array().unwrap().len()), (200, &Value::from(1), 0));
    assert_eq!(done["forwarded"], serde_json::json!([]), "forwarding is off by default: {done}");
    let (status, done) = json(addr, "POST", "/api/v1/alertmanager", &alert("test-node", app.pid));
    assert_eq!(status, 200, "{done}");
    let started = done["started"][0][1].as_str().unwrap_or_else(|| panic!("{done}")).to_string();
    wait_done(addr, &started);
    assert_eq!(names(addr), [third, started]);
    let (_, again) = json(addr, "POST", "/api/v1/alertmanager", &alert("test-node", app.pid));
    assert_eq!((&again["skipped"], again["started"].as_array().unwrap().len()), (&Value::from(1), 0), "{again}");
    assert_eq!(request(addr, "POST", "/api/v1/alertmanager", true, b"not json").0, 400);

    let (status, metrics) = request(addr, "GET", "/metrics", true, b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let count = |result| metric_value(&metrics, "nodejs_leak_exporter_snapshots_total", &[("result", result)]);
    assert_eq!((count("success"), count("failure"), count("skipped")), (Some(4.0), Some(0.0), Some(1.0)));
    assert!(!metrics.contains("nodejs_leak_exporter_snapshot_forwards_total"), "forwarding is off");
    if let Some(promtool) = util::require_tool("promtool") {
        util::promtool_check(&promtool, &metrics);
    }
}

#[test]
fn without_a_snapshot_dir_the_api_says_how_to_turn_it_on() {
    let e = Exporter::start(&[]);
    let (status, body) = util::http_request(&e.addr, "POST", "/api/v1/snapshot?pid=1");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("--snapshot.dir"));
    assert_eq!(e.get("/api/v1/snapshots").0, 404);
    assert!(!e.metrics().contains("nodejs_leak_exporter_snapshots_total"));
}

#[test]
fn a_snapshot_past_the_size_cap_is_abandoned_and_leaves_no_file() {
    let Some(app) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[]) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snaps");
    let config = tmp.path().join("config.yml");
    // An idle app's snapshot is a few MiB: past the smallest cap.
    std::fs::write(
        &config,
        format!(
            "discovery:\n  include: []\n  pids: [{}]\nsnapshots:\n  dir: {}\n  max_bytes: 1048576\n",
            app.pid,
            dir.display()
        ),
    )
    .unwrap();
    let e = Exporter::start_with(Command::new(util::exporter_bin()), &[&format!("--config.file={}", config.display())]);
    let (status, body) = util::http_request(&e.addr, "POST", &format!("/api/v1/snapshot?pid={}", app.pid));
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let last = util::wait_for("the snapshot to end", Duration::from_secs(90), || {
        let list: Value = serde_json::from_str(&e.get("/api/v1/snapshots").1).unwrap();
        (list["status"]["running"].is_null() && !list["status"]["last"].is_null())
            .then(|| list["status"]["last"].clone())
    });
    assert_eq!(last["ok"], false, "{last}");
    assert!(last["error"].as_str().unwrap().contains("exceeds"), "{last}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the partial file is removed");
    let failures = metric_value(&e.metrics(), "nodejs_leak_exporter_snapshots_total", &[("result", "failure")]);
    assert_eq!(failures, Some(1.0));
}

/// An exporter on "node" `node` watching `pid`, with snapshots into `<tmp>/<node>` and forwarding
/// on; `web` is a web config file. The node comes from NODE_NAME when `from_env`, else from
/// `snapshots.node_name`.
fn forwarding_exporter(
    tmp: &std::path::Path,
    node: &str,
    from_env: bool,
    pid: i32,
    web: Option<&std::path::Path>,
) -> Exporter {
    let config = tmp.join(format!("{node}.yml"));
    let node_name = if from_env { String::new() } else { format!("  node_name: {node}\n") };
    std::fs::write(
        &config,
        format!(
            "discovery:\n  include: []\n  pids: [{pid}]\nsnapshots:\n  dir: {}\n  forward_timeout: 2s\n{node_name}",
            tmp.join(node).display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(util::exporter_bin());
    if from_env {
        cmd.env("NODE_NAME", node);
    }
    let config_flag = format!("--config.file={}", config.display());
    let web_flag = web.map(|w| format!("--web.config.file={}", w.display()));
    let mut args = vec![config_flag.as_str(), "--snapshot.forward"];
    args.extend(web_flag.as_deref());
    Exporter::start_with(cmd, &args)
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

fn forwards(e: &Exporter, auth: bool, result: &str) -> Option<f64> {
    let (status, metrics) = request(&e.addr, "GET", "/metrics", auth, b"");
    assert_eq!(status, 200);
    metric_value(
        &String::from_utf8(metrics).unwrap(),
        "nodejs_leak_exporter_snapshot_forwards_total",
        &[("result", result)],
    )
}

#[test]
fn a_heap_alert_for_another_node_is_forwarded_to_the_exporter_that_scraped_it() {
    let Some(app) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[]) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let a = forwarding_exporter(tmp.path(), "node-a", true, app.pid, None);
    let b = forwarding_exporter(tmp.path(), "node-b", false, app.pid, None);

    // The webhook reached A; the alert is B's (as Prometheus labels it: B's scrape address).
    let (status, done) = json(&a.addr, "POST", "/api/v1/alertmanager", &alerts(&[("node-b", &b.addr, app.pid)]));
    assert_eq!(status, 200, "{done}");
    assert_eq!((&done["other_node"], done["started"].as_array().unwrap().len()), (&Value::from(0), 0), "{done}");
    let forwarded = &done["forwarded"][0];
    assert_eq!(
        (&forwarded["instance"], &forwarded["alerts"], &forwarded["status"]),
        (&Value::from(b.addr.as_str()), &Value::from(1), &Value::from(200)),
        "{done}"
    );
    assert!(forwarded["error"].is_null(), "{done}");
    let name =
        forwarded["answer"]["started"][0][1].as_str().unwrap_or_else(|| panic!("B's answer: {done}")).to_string();
    wait_done(&b.addr, &name);
    assert_eq!(files_in(&tmp.path().join("node-b")), [name]);
    assert!(files_in(&tmp.path().join("node-a")).is_empty(), "A took no snapshot");
    // Logged before the answer, read by the test's own thread.
    let logged = |e: &Exporter, text: &str| {
        util::wait_for(text, Duration::from_secs(5), || e.log().contains(text).then_some(()));
    };
    logged(&a, "forwarded a heap alert");

    // A forwarded webhook is never forwarded again: B acts only on its own node.
    let marked = "X-Nodejs-Leak-Exporter-Forwarded: node-a\r\n";
    let (status, body) =
        request_with(&b.addr, "POST", "/api/v1/alertmanager", marked, &alerts(&[("node-a", &a.addr, app.pid)]));
    let done: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, &done["other_node"], &done["forwarded"]), (200, &Value::from(1), &serde_json::json!([])));
    assert_eq!(done["not_forwarded"]["forwarded_request"], 1, "{done}");
    assert_eq!((forwards(&b, false, "success"), forwards(&b, false, "failure")), (Some(0.0), Some(0.0)));

    // Unusable instances are not posted to: a URL, our own listener.
    let (_, done) = json(
        &a.addr,
        "POST",
        "/api/v1/alertmanager",
        &alerts(&[
            ("node-x", "http://127.0.0.1:1/x", app.pid),
            ("node-y", &a.addr, app.pid),
            ("node-z", "user@h:1", app.pid),
        ]),
    );
    assert_eq!(
        (&done["not_forwarded"]["bad_instance"], &done["not_forwarded"]["own_listener"]),
        (&Value::from(2), &Value::from(1)),
        "{done}"
    );
    assert_eq!((&done["other_node"], &done["forwarded"]), (&Value::from(3), &serde_json::json!([])), "{done}");

    // An exporter that is gone, and one that never answers: failures within the 2s timeout, one
    // POST per instance, and A keeps serving.
    let silent = util::FakeServer::silent();
    let (gone, hung) = (format!("127.0.0.1:{}", util::free_port()), format!("127.0.0.1:{}", silent.port));
    let started = Instant::now();
    let (status, done) = json(
        &a.addr,
        "POST",
        "/api/v1/alertmanager",
        &alerts(&[("node-c", &gone, app.pid), ("node-d", &hung, app.pid), ("node-d", &hung, app.pid + 1)]),
    );
    let took = started.elapsed();
    assert_eq!(status, 200, "{done}");
    assert!(took < Duration::from_secs(6), "the forwards took {took:?}");
    let by_instance = |i: &str| {
        done["forwarded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["instance"] == i)
            .cloned()
            .unwrap_or_else(|| panic!("{i}: {done}"))
    };
    let (to_gone, to_hung) = (by_instance(&gone), by_instance(&hung));
    assert!(to_gone["status"].is_null() && to_gone["error"].as_str().is_some(), "{to_gone}");
    assert_eq!((&to_hung["alerts"], to_hung["status"].is_null()), (&Value::from(2), true), "{to_hung}");
    assert!(to_hung["error"].as_str().unwrap().contains("2s"), "{to_hung}");
    assert_eq!(a.get("/-/healthy").0, 200);
    logged(&a, "cannot forward a heap alert");

    let (status, metrics) = request(&a.addr, "GET", "/metrics", false, b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let count = |result| metric_value(&metrics, "nodejs_leak_exporter_snapshot_forwards_total", &[("result", result)]);
    assert_eq!((count("success"), count("failure")), (Some(1.0), Some(2.0)));
    if let Some(promtool) = util::require_tool("promtool") {
        util::promtool_check(&promtool, &metrics);
    }
}

#[test]
fn a_forward_passes_on_the_webhooks_basic_auth_credentials() {
    let Some(app) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[]) else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Every pod of a DaemonSet shares the web config, so the credentials valid here are valid there.
    let web = tmp.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {}\n", bcrypt::hash("s3cret", 4).unwrap())).unwrap();
    let a = forwarding_exporter(tmp.path(), "node-a", false, app.pid, Some(&web));
    let b = forwarding_exporter(tmp.path(), "node-b", false, app.pid, Some(&web));
    let hook = alerts(&[("node-b", &b.addr, app.pid)]);
    assert_eq!(request(&a.addr, "POST", "/api/v1/alertmanager", false, &hook).0, 401, "A needs them too");

    let (status, done) = json(&a.addr, "POST", "/api/v1/alertmanager", &hook);
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["forwarded"][0]["status"], 200, "{done}");
    let name = done["forwarded"][0]["answer"]["started"][0][1].as_str().unwrap_or_else(|| panic!("{done}")).to_string();
    wait_done(&b.addr, &name);
    assert_eq!(files_in(&tmp.path().join("node-b")), [name]);
    assert_eq!(forwards(&a, true, "success"), Some(1.0));
}
