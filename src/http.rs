//! The HTTP side, in the Prometheus exporter conventions: metrics at the telemetry path,
//! `/-/healthy`, `/-/ready`, a status page at `/` and the same as JSON at `/api/v1/targets`.
//!
//! Handlers only read the latest [`Snapshot`]: a scrape never waits on a target.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::sampler::Snapshot;

#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub telemetry_path: Arc<str>,
    /// Whether metrics are served at the telemetry path (`--web.disable-metrics` turns it off).
    pub metrics_enabled: bool,
}

type Body = Full<Bytes>;

/// Serves until `shutdown` resolves. Connections in flight are given a moment to finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

pub fn handle(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    route(state, req.method(), req.uri().path(), req.uri().query())
}

/// Routing, separate from hyper's types so it can be tested directly.
pub fn route(state: &AppState, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let snapshot = state.snapshot.borrow().clone();
    match path {
        p if p == &*state.telemetry_path && !state.metrics_enabled => text(
            StatusCode::NOT_FOUND,
            "metrics are not served here (--web.disable-metrics): they are pushed over OTLP\n",
        ),
        p if p == &*state.telemetry_path => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(snapshot.metrics.clone())))
            .expect("valid response"),
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if snapshot.ready => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not ready: first sample not taken yet\n"),
        "/api/v1/targets" => json(&snapshot),
        "/" if query.is_some_and(|q| q.split('&').any(|kv| kv == "format=json")) => json(&snapshot),
        "/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(status_page(
                &snapshot,
                state.metrics_enabled.then_some(&*state.telemetry_path),
            ))))
            .expect("valid response"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid response")
}

fn json(snapshot: &Snapshot) -> Response<Body> {
    let body = serde_json::json!({
        "sampled_at": snapshot.sampled_at,
        "sample_duration_seconds": snapshot.sample_duration_seconds,
        "targets": snapshot.targets,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn human_age(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The status page; `telemetry_path` is None when metrics are not served.
fn status_page(snapshot: &Snapshot, telemetry_path: Option<&str>) -> String {
    let mut html = String::with_capacity(4096 + snapshot.targets.len() * 256);
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>nodejs-leak-exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.gap{{color:#a40}}.ok{{color:#070}}</style>\
         </head><body><h1>nodejs-leak-exporter {}</h1><p>{}\
         <a href=\"/api/v1/targets\">Targets as JSON</a> · last sample took {:.1} ms</p>",
        env!("CARGO_PKG_VERSION"),
        telemetry_path.map(|p| format!("<a href=\"{}\">Metrics</a> · ", escape(p))).unwrap_or_default(),
        snapshot.sample_duration_seconds * 1000.0,
    );
    if !snapshot.ready {
        html.push_str("<p>The first sample has not been taken yet.</p>");
    } else if snapshot.targets.is_empty() {
        html.push_str("<p>No Node.js process found. Processes younger than the minimum age are not shown until they are sampled.</p>");
    } else {
        html.push_str(
            "<table><tr><th>app</th><th>pid</th><th>state</th><th>age</th><th>user</th><th>script</th>\
             <th>PM2 id</th><th>Node.js</th><th>pod</th><th>what the collectors read</th><th>leak verdict</th></tr>",
        );
        for t in &snapshot.targets {
            let mut read = String::new();
            for c in &t.collectors {
                if c.complete {
                    let _ = write!(read, "<div class=\"ok\">{}: all</div>", escape(c.collector));
                } else {
                    let _ = write!(
                        read,
                        "<div class=\"gap\">{}: missing {}</div>",
                        escape(c.collector),
                        escape(&c.missing.join(", "))
                    );
                }
            }
            let leaking: Vec<&str> = t.leak.iter().filter(|l| l.suspected).map(|l| l.signal).collect();
            let verdict = if leaking.is_empty() {
                "<span class=\"ok\">none</span>".to_string()
            } else {
                format!("<span class=\"gap\">leaking: {}</span>", escape(&leaking.join(", ")))
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.app),
                t.pid,
                t.state,
                human_age(t.age_seconds),
                escape(&t.user),
                escape(t.script.as_deref().unwrap_or("")),
                escape(t.pm2_id.as_deref().unwrap_or("")),
                escape(t.node_version.as_deref().unwrap_or("")),
                t.kubernetes
                    .as_ref()
                    .map(|k| escape(&format!("{}/{} ({})", k.namespace, k.pod, k.container)))
                    .unwrap_or_default(),
                read,
                verdict,
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    html
}

/// Binds the listen address, with the error naming it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::TargetStatus;

    fn state(snapshot: Snapshot) -> AppState {
        let (_tx, rx) = watch::channel(Arc::new(snapshot));
        AppState { snapshot: rx, telemetry_path: "/metrics".into(), metrics_enabled: true }
    }

    #[test]
    fn ready_only_after_the_first_sample() {
        let s = state(Snapshot::default());
        assert_eq!(route(&s, &Method::GET, "/-/ready", None).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(route(&s, &Method::GET, "/-/healthy", None).status(), StatusCode::OK);
        let s = state(Snapshot { ready: true, ..Snapshot::default() });
        assert_eq!(route(&s, &Method::GET, "/-/ready", None).status(), StatusCode::OK);
    }

    #[test]
    fn unknown_paths_and_methods() {
        let s = state(Snapshot::default());
        assert_eq!(route(&s, &Method::GET, "/nope", None).status(), StatusCode::NOT_FOUND);
        assert_eq!(route(&s, &Method::POST, "/metrics", None).status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn status_page_escapes_app_names() {
        let t = TargetStatus {
            pid: 1,
            app: "<script>".into(),
            state: "active",
            age_seconds: 5.0,
            user: "u".into(),
            script: None,
            exe: None,
            pm2_id: None,
            node_version: None,
            kubernetes: Some(crate::sampler::PodStatus {
                namespace: "shop".into(),
                pod: "<b>api</b>".into(),
                container: "node".into(),
            }),
            collectors: vec![],
            leak: vec![],
        };
        let html = status_page(&Snapshot { ready: true, targets: vec![t], ..Snapshot::default() }, Some("/metrics"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("shop/&lt;b&gt;api&lt;/b&gt; (node)"), "{html}");
    }
}
