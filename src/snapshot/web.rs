//! The HTTP side of heap snapshots (`snapshots.dir`, `--snapshot.dir`):
//!
//! - `POST /api/v1/snapshot?pid=N` starts a snapshot of a watched process: 202 at once, 409 while
//!   one is being taken;
//! - `GET /api/v1/snapshots`: the files (name, pid, bytes, time) and the state (running, last);
//! - `GET /api/v1/snapshots/<name>`: one file, streamed by the HTTP layer;
//! - `POST /api/v1/alertmanager`: Alertmanager's webhook; a firing heap leak alert for a process
//!   on this exporter's node takes one snapshot of it (at most one per process an hour).
//!
//! Snapshots hold the app's secrets: these paths are behind the endpoint's authentication like
//! every other but the probes, and answer 404 when snapshots are off. Nothing here blocks on a
//! snapshot; it runs on the runtime ([`super::store`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::store::{self, StartError, Store};
use crate::sampler::Snapshot;

/// An alert's process gets at most one snapshot in this time, however often Alertmanager
/// repeats the alert.
pub const ALERT_EVERY: Duration = Duration::from_secs(3600);

/// The largest webhook body read.
pub const MAX_WEBHOOK_BODY: usize = 4 << 20;

/// An answer, for the HTTP layer to send.
pub enum Reply {
    Body {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        allow: Option<&'static str>,
    },
    /// A snapshot file, streamed in chunks (never read whole).
    File {
        path: PathBuf,
        name: String,
    },
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::Body { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes(), allow: None }
    }

    fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        let body = serde_json::to_vec_pretty(value).unwrap_or_default();
        Reply::Body { status, content_type: "application/json", body, allow: None }
    }

    fn method_not_allowed(allow: &'static str) -> Reply {
        Reply::Body {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: format!("only {allow}\n").into_bytes(),
            allow: Some(allow),
        }
    }
}

/// Whether `path` is one of these.
pub fn is_path(path: &str) -> bool {
    path == "/api/v1/snapshot"
        || path == "/api/v1/snapshots"
        || path.starts_with("/api/v1/snapshots/")
        || path == "/api/v1/alertmanager"
}

/// Whether the request's body is read (and handed to [`handle`]).
pub fn wants_body(path: &str) -> bool {
    path == "/api/v1/alertmanager"
}

fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Answers one of [`is_path`]'s paths; `targets` is the latest sample (what may be snapshotted).
pub fn handle(method: &http::Method, path: &str, query: Option<&str>, body: &[u8], targets: &Snapshot) -> Reply {
    let Some(store) = store::current() else {
        return Reply::text(
            404,
            "heap snapshots are off: start the exporter with --snapshot.dir=DIR (or snapshots.dir in the configuration file)\n",
        );
    };
    let get = method == http::Method::GET || method == http::Method::HEAD;
    let post = method == http::Method::POST;
    match path {
        "/api/v1/snapshot" if post => start(&store, query, targets),
        "/api/v1/snapshot" => Reply::method_not_allowed("POST"),
        "/api/v1/snapshots" if get => list(&store),
        "/api/v1/alertmanager" if post => alertmanager(&store, body, targets),
        "/api/v1/alertmanager" => Reply::method_not_allowed("POST"),
        p if p.starts_with("/api/v1/snapshots") && !get => Reply::method_not_allowed("GET, HEAD"),
        p => {
            let name = p.strip_prefix("/api/v1/snapshots/").unwrap_or_default();
            match store.path_of(name) {
                Some(path) => Reply::File { path, name: name.to_string() },
                None => Reply::text(404, "no such snapshot: GET /api/v1/snapshots lists them\n"),
            }
        }
    }
}

/// The app of the watched process `pid`, if it is one.
fn watched(targets: &Snapshot, pid: i32) -> Option<&str> {
    targets.targets.iter().find(|t| t.pid == pid && t.state != "exited").map(|t| t.app.as_str())
}

fn start(store: &Arc<Store>, query: Option<&str>, targets: &Snapshot) -> Reply {
    let Some(pid) = param(query, "pid").and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0) else {
        return Reply::text(400, "pid=N is required\n");
    };
    let Some(app) = watched(targets, pid) else {
        return Reply::text(404, format!("pid {pid} is not a watched Node.js process\n"));
    };
    match store.start(pid, app) {
        Ok(name) => Reply::json(
            202,
            &serde_json::json!({
                "status": "started",
                "pid": pid,
                "name": name,
                "note": "the app stops while V8 walks its heap; GET /api/v1/snapshots for the state",
            }),
        ),
        Err(e @ StartError::Busy(_)) => Reply::text(409, format!("{e}\n")),
    }
}

fn list(store: &Store) -> Reply {
    match store.list() {
        Ok(snapshots) => {
            let s = store.settings();
            Reply::json(
                200,
                &serde_json::json!({
                    "max_files": s.max_files,
                    "max_bytes": s.max_bytes,
                    "status": store.status(),
                    "snapshots": snapshots,
                }),
            )
        }
        Err(e) => Reply::text(500, format!("cannot list the snapshot directory: {e}\n")),
    }
}

/// Alertmanager's webhook payload (version 4), the fields used.
#[derive(Debug, Deserialize)]
struct Webhook {
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What was done with each alert.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct WebhookResult {
    /// Snapshots started: pid and file name.
    pub started: Vec<(i32, String)>,
    /// Firing heap alerts for another node (another exporter acts on them).
    pub other_node: usize,
    /// Firing heap alerts of a process that had a snapshot from an alert within the hour, or
    /// while one was being taken.
    pub skipped: usize,
    /// Firing heap alerts whose pid is not watched here.
    pub unknown_pid: usize,
    /// Resolved alerts, other alerts, and heap alerts without a pid label.
    pub ignored: usize,
}

/// The host part of `instance` (`host:port`, `[v6]:port` or a bare host).
fn instance_host(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match instance.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => instance,
    }
}

/// Whether an alert is about a process on `node`: its `node` label, or else its `instance`'s host.
fn on_node(labels: &BTreeMap<String, String>, node: &str) -> bool {
    match (labels.get("node"), labels.get("instance")) {
        (Some(n), _) => n == node,
        (None, Some(i)) => instance_host(i) == node,
        (None, None) => false,
    }
}

fn alertmanager(store: &Arc<Store>, body: &[u8], targets: &Snapshot) -> Reply {
    let hook: Webhook = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => return Reply::text(400, format!("not an Alertmanager webhook payload: {e}\n")),
    };
    let settings = store.settings();
    let mut result = WebhookResult::default();
    for alert in &hook.alerts {
        let name = alert.labels.get("alertname").map(String::as_str).unwrap_or_default();
        let pid = alert.labels.get("pid").and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0);
        let (true, true, Some(pid)) = (alert.status == "firing", settings.alerts.iter().any(|a| a == name), pid) else {
            result.ignored += 1;
            continue;
        };
        if !on_node(&alert.labels, &settings.node_name) {
            result.other_node += 1;
            continue;
        }
        let Some(app) = watched(targets, pid) else {
            result.unknown_pid += 1;
            continue;
        };
        if !store.alert_due(pid, ALERT_EVERY) {
            store.counts.skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            result.skipped += 1;
            continue;
        }
        match store.start(pid, app) {
            Ok(file) => {
                tracing::info!(pid, alert = name, file = %file, "taking a heap snapshot for a firing alert");
                result.started.push((pid, file));
            }
            Err(StartError::Busy(_)) => {
                store.alert_not_started(pid);
                result.skipped += 1;
            }
        }
    }
    Reply::json(200, &result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_the_label_or_the_instance_host() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(on_node(&labels(&[("node", "n1"), ("instance", "n2:19229")]), "n1"));
        assert!(!on_node(&labels(&[("node", "n1"), ("instance", "n2:19229")]), "n2"));
        assert!(on_node(&labels(&[("instance", "n2:19229")]), "n2"));
        assert!(on_node(&labels(&[("instance", "n2")]), "n2"));
        assert!(on_node(&labels(&[("instance", "[fd00::1]:19229")]), "fd00::1"));
        assert!(!on_node(&labels(&[]), "n2"));
    }

    #[test]
    fn payloads_are_parsed_leniently() {
        let hook: Webhook = serde_json::from_str(
            r#"{"version":"4","status":"firing","receiver":"x","groupLabels":{},"alerts":[{"status":"firing","labels":{"alertname":"NodejsHeapLeak","pid":"12"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"f"}]}"#,
        )
        .unwrap();
        assert_eq!(hook.alerts.len(), 1);
        assert_eq!(hook.alerts[0].labels["pid"], "12");
        assert!(is_path("/api/v1/snapshots/x.heapsnapshot") && !is_path("/api/v1/snapshotsx"));
    }
}
