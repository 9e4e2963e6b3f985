//! The HTTP side of heap snapshots (`snapshots.dir`, `--snapshot.dir`):
//!
//! - `POST /api/v1/snapshot?pid=N` starts a snapshot of a watched process: 202 at once, 409 while
//!   one is being taken;
//! - `GET /api/v1/snapshots`: the files (name, pid, bytes, time) and the state (running, last);
//! - `GET /api/v1/snapshots/<name>`: one file, streamed by the HTTP layer;
//! - `POST /api/v1/alertmanager`: Alertmanager's webhook; a firing heap leak alert for a process
//!   on this exporter's node takes one snapshot of it (at most one per process an hour). With
//!   `snapshots.forward`, an alert for another node is passed on to the exporter that scraped it
//!   ([`super::forward`]), and the answer says what that exporter did.
//!
//! Snapshots hold the app's secrets: these paths are behind the endpoint's authentication like
//! every other but the probes, and answer 404 when snapshots are off. Nothing here blocks on a
//! snapshot; it runs on the runtime ([`super::store`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::forward::{self, Forwarded, Instance, FORWARDED_HEADER, MAX_INSTANCES};
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

/// What the HTTP layer knows of a request and its listener, besides the path: what a webhook
/// needs to forward alerts.
pub struct Origin<'a> {
    pub headers: &'a http::HeaderMap,
    /// Whether the listener speaks TLS: forwards use the same scheme.
    pub tls: bool,
    /// The listener's bound address, never forwarded to.
    pub listen: Option<SocketAddr>,
}

/// Answers one of [`is_path`]'s paths; `targets` is the latest sample (what may be snapshotted).
pub async fn handle(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    targets: &Snapshot,
    origin: &Origin<'_>,
) -> Reply {
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
        "/api/v1/alertmanager" if post => alertmanager(&store, body, targets, origin).await,
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

/// One alert: the fields read, and the others kept as they came so a forward passes the alert on
/// whole (annotations, times, fingerprint).
#[derive(Debug, Deserialize, serde::Serialize)]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// What was done with each alert.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct WebhookResult {
    /// Snapshots started: pid and file name.
    pub started: Vec<(i32, String)>,
    /// Firing heap alerts for another node that were not forwarded (its exporter acts on them if
    /// Alertmanager reaches it; with forwarding on, `not_forwarded` says why).
    pub other_node: usize,
    /// Forwards to the exporters on other nodes (`snapshots.forward`), one per instance.
    pub forwarded: Vec<Forwarded>,
    /// Alerts for another node not forwarded although forwarding is on, by reason.
    pub not_forwarded: NotForwarded,
    /// Firing heap alerts of a process that had a snapshot from an alert within the hour, or
    /// while one was being taken.
    pub skipped: usize,
    /// Firing heap alerts whose pid is not watched here.
    pub unknown_pid: usize,
    /// Resolved alerts, other alerts, and heap alerts without a pid label.
    pub ignored: usize,
}

/// Why alerts for another node were not forwarded, with forwarding on.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub struct NotForwarded {
    /// The webhook was itself a forward: never forwarded again.
    pub forwarded_request: usize,
    /// No `instance` label, or not a plain `host:port`.
    pub bad_instance: usize,
    /// The `instance` is this exporter's own listener.
    pub own_listener: usize,
    /// Past the cap of instances one webhook is forwarded to.
    pub over_limit: usize,
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

async fn alertmanager(store: &Arc<Store>, body: &[u8], targets: &Snapshot, origin: &Origin<'_>) -> Reply {
    let hook: Webhook = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => return Reply::text(400, format!("not an Alertmanager webhook payload: {e}\n")),
    };
    let settings = store.settings();
    let forwarded_by = origin.headers.get(FORWARDED_HEADER).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut result = WebhookResult::default();
    let mut to_forward: Vec<(Instance, &Alert)> = Vec::new();
    let mut local_addresses: Option<BTreeSet<IpAddr>> = None;
    for alert in &hook.alerts {
        let name = alert.labels.get("alertname").map(String::as_str).unwrap_or_default();
        let pid = alert.labels.get("pid").and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0);
        let (true, true, Some(pid)) = (alert.status == "firing", settings.alerts.iter().any(|a| a == name), pid) else {
            result.ignored += 1;
            continue;
        };
        if !on_node(&alert.labels, &settings.node_name) {
            if store.forwarder().is_none() {
                result.other_node += 1;
                continue;
            }
            let not_forwarded = &mut result.not_forwarded;
            if forwarded_by.is_some() {
                // A forward's receiver acts only on its own node: no chains, no loops.
                not_forwarded.forwarded_request += 1;
            } else {
                match alert.labels.get("instance").and_then(|i| Instance::parse(i)) {
                    None => not_forwarded.bad_instance += 1,
                    Some(i) if is_own_listener(&i, origin, &settings.node_name, &mut local_addresses) => {
                        not_forwarded.own_listener += 1
                    }
                    Some(i) => {
                        to_forward.push((i, alert));
                        continue;
                    }
                }
            }
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
                tracing::info!(pid, alert = name, file = %file, forwarded_by, "taking a heap snapshot for a firing alert");
                result.started.push((pid, file));
            }
            Err(StartError::Busy(_)) => {
                store.alert_not_started(pid);
                result.skipped += 1;
            }
        }
    }
    if let (Some(forwarder), false) = (store.forwarder(), to_forward.is_empty()) {
        let (groups, over_limit) = forward::group(to_forward, MAX_INSTANCES);
        result.not_forwarded.over_limit = over_limit;
        result.other_node += over_limit;
        result.forwarded = forward_all(store, forwarder, groups, origin).await;
    }
    Reply::json(200, &result)
}

/// Whether `instance` is this exporter's listener; `local` caches this host's addresses, read at
/// most once per webhook and only when an alert could be forwarded.
fn is_own_listener(instance: &Instance, origin: &Origin<'_>, node: &str, local: &mut Option<BTreeSet<IpAddr>>) -> bool {
    origin.listen.is_some_and(|listen| {
        let local = local.get_or_insert_with(forward::local_addresses);
        forward::is_own_listener(instance, listen, local, &[node])
    })
}

/// Forwards each group of alerts to its instance, all at once, and waits for every answer.
///
/// Awaited rather than fired and forgotten: the webhook's answer then says what each exporter did
/// (or why it could not be reached), which is what someone reading Alertmanager's log or posting
/// by hand needs. The wait is bounded by `snapshots.forward_timeout` (at most a minute), as the
/// forwards run side by side, and it holds no thread: the forwards are I/O on the runtime.
/// Alertmanager waits longer for a webhook (its `timeout` is unset by default), and a snapshot
/// itself never runs inside the request, so the other exporters answer at once.
async fn forward_all(
    store: &Store,
    forwarder: &forward::Forwarder,
    groups: Vec<(Instance, Vec<&Alert>)>,
    origin: &Origin<'_>,
) -> Vec<Forwarded> {
    let node = &store.settings().node_name;
    let authorization = origin.headers.get(http::header::AUTHORIZATION);
    let sends = groups.into_iter().map(|(instance, alerts)| async move {
        // Only the alerts for that instance: the receiver acts on those on its node.
        let count = alerts.len();
        let payload = serde_json::json!({"version": "4", "status": "firing", "alerts": alerts});
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let done = forwarder.send(&instance, origin.tls, authorization, node, count, body).await;
        if done.ok() {
            store.counts.forward_success.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(instance = %done.instance, alerts = done.alerts, status = done.status, "forwarded a heap alert to the exporter on its node");
        } else {
            store.counts.forward_failure.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(instance = %done.instance, alerts = done.alerts, error = done.error.as_deref().unwrap_or_default(), "cannot forward a heap alert to the exporter on its node");
        }
        done
    });
    futures_util::future::join_all(sends).await
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
