//! The HTTP side, in the Prometheus exporter conventions: metrics at the telemetry path,
//! `/-/healthy`, `/-/ready`, a status page at `/` and the same as JSON at `/api/v1/targets`.
//!
//! Handlers only read the latest [`Snapshot`]: a scrape never waits on a target.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Gauge, IntCounterVec, Opts, Registry as PromRegistry};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::sampler::Snapshot;
use crate::web::WebConfig;

/// Time a client has to complete the TLS handshake (and to send its first byte).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `POST /-/reload` asks for a reload; the answer is the error text of a failed one.
pub type ReloadRequests = mpsc::Sender<oneshot::Sender<Result<(), String>>>;

#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub telemetry_path: Arc<str>,
    /// Whether metrics are served at the telemetry path (`--web.disable-metrics` turns it off).
    pub metrics_enabled: bool,
    /// TLS and basic auth (`--web.config.file`).
    pub web: Arc<WebConfig>,
    /// The server's and the reloads' own metrics, appended to every scrape.
    pub server_metrics: Arc<ServerMetrics>,
    /// Set with `--web.enable-lifecycle`: `POST /-/reload` is served.
    pub reload: Option<ReloadRequests>,
    /// The listener's bound address: an Alertmanager webhook is never forwarded to it.
    pub listen_address: Option<SocketAddr>,
}

impl AppState {
    /// Plain HTTP, no authentication, no lifecycle API.
    pub fn new(snapshot: watch::Receiver<Arc<Snapshot>>, telemetry_path: &str, metrics_enabled: bool) -> AppState {
        AppState {
            snapshot,
            telemetry_path: telemetry_path.into(),
            metrics_enabled,
            web: Arc::new(WebConfig::disabled()),
            server_metrics: Arc::new(ServerMetrics::new()),
            reload: None,
            listen_address: None,
        }
    }
}

/// Metrics of the HTTP side and of configuration reloads, which happen outside the sampler:
/// rendered at scrape time after the latest snapshot.
pub struct ServerMetrics {
    registry: PromRegistry,
    /// By reason: `plain_http`, `not_tls`, `handshake`, `timeout`.
    pub tls_handshake_errors: IntCounterVec,
    pub unauthorized: prometheus::IntCounter,
    /// By result: `success`, `failure`.
    pub reloads: IntCounterVec,
    pub last_reload_successful: Gauge,
    pub last_reload_success: Gauge,
}

impl ServerMetrics {
    pub fn new() -> ServerMetrics {
        let registry = PromRegistry::new();
        let tls_handshake_errors = IntCounterVec::new(
            Opts::new(
                "nodejs_leak_exporter_http_tls_handshake_errors_total",
                "Connections to the TLS listener closed before a TLS session, by reason: plain_http (an HTTP request, answered 400), not_tls, handshake (refused by TLS: no or bad client certificate, no common version or suite), timeout.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let unauthorized = prometheus::IntCounter::new(
            "nodejs_leak_exporter_http_unauthorized_requests_total",
            "Requests refused with 401 for missing or wrong basic auth credentials.",
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "nodejs_leak_exporter_config_reloads_total",
                "Configuration reloads (SIGHUP or POST /-/reload), by result: success or failure (the running configuration stays).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let last_reload_successful = Gauge::new(
            "nodejs_leak_exporter_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1) or failed (0).",
        )
        .expect("valid metric");
        let last_reload_success = Gauge::new(
            "nodejs_leak_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (the start, or a reload).",
        )
        .expect("valid metric");
        for label in ["plain_http", "not_tls", "handshake", "timeout"] {
            tls_handshake_errors.with_label_values(&[label]);
        }
        for label in ["success", "failure"] {
            reloads.with_label_values(&[label]);
        }
        last_reload_successful.set(1.0);
        last_reload_success.set(unix_now());
        for c in [
            Box::new(tls_handshake_errors.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(unauthorized.clone()),
            Box::new(reloads.clone()),
            Box::new(last_reload_successful.clone()),
            Box::new(last_reload_success.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        ServerMetrics {
            registry,
            tls_handshake_errors,
            unauthorized,
            reloads,
            last_reload_successful,
            last_reload_success,
        }
    }

    /// Counts a reload's result.
    pub fn reloaded(&self, ok: bool) {
        self.reloads.with_label_values(&[if ok { "success" } else { "failure" }]).inc();
        self.last_reload_successful.set(if ok { 1.0 } else { 0.0 });
        if ok {
            self.last_reload_success.set(unix_now());
        }
    }

    fn encode(&self, out: &mut String) {
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, out) {
            tracing::warn!(error = %e, "cannot encode the server's own metrics");
        }
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics::new()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

type Body = Full<Bytes>;

/// What `handle` answers with: a body in memory, or a snapshot file streamed from disk.
pub type HttpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn boxed(response: Response<Body>) -> Response<HttpBody> {
    use http_body_util::BodyExt;
    response.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

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
        // As Go's servers do: without it, the last TLS record of a response can wait for the
        // client's delayed ACK (40 ms).
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            if !state.web.tls_enabled() {
                return serve_connection(stream, state, peer).await;
            }
            // The TLS configuration of the moment: a rotated certificate is used from the next
            // connection on.
            let Some(tls) = state.web.current().tls.clone() else { return };
            if let Some(stream) = accept_tls(stream, tls, &state.server_metrics, peer).await {
                serve_connection(stream, state, peer).await;
            }
        });
    }
}

/// Completes the TLS handshake, or closes the connection and counts why. A client speaking plain
/// HTTP gets a 400 saying so, as Go's servers answer it.
async fn accept_tls(
    mut stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    metrics: &ServerMetrics,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let count = |reason: &str| metrics.tls_handshake_errors.with_label_values(&[reason]).inc();
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        // Connected and closed without a byte (a TCP probe): not an error.
        Ok(Ok(0)) | Ok(Err(_)) => return None,
        Ok(Ok(_)) => {}
        Err(_) => {
            count("timeout");
            tracing::debug!(%peer, "no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return None;
        }
    }
    // A TLS record of type handshake starts with 22.
    if first[0] != 0x16 {
        if first[0].is_ascii_uppercase() {
            count("plain_http");
            tracing::debug!(%peer, "plain HTTP request on the TLS listener");
            answer_plain_http(&mut stream).await;
        } else {
            count("not_tls");
            tracing::debug!(%peer, "a connection to the TLS listener that does not speak TLS");
        }
        let _ = stream.shutdown().await;
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsAcceptor::from(tls).accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            count("handshake");
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            count("timeout");
            tracing::debug!(%peer, "TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}");
            None
        }
    }
}

/// Reads the request head (bounded), answers 400 and closes. Closing with unread request bytes
/// would reset the connection and lose the answer.
async fn answer_plain_http(stream: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let read_head = async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !tokio::time::timeout(Duration::from_secs(1), read_head).await.unwrap_or(false) {
        return;
    }
    let answer = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
    let _ = stream.shutdown().await;
    // Let the client read the answer and close first (bounded).
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

async fn serve_connection<S>(stream: S, state: AppState, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Paths served without authentication (still over TLS): liveness and readiness probes, which
/// carry no credentials (a Kubernetes httpGet probe sends only fixed headers) and tell nothing
/// about the watched processes.
fn is_probe(path: &str) -> bool {
    path == "/-/healthy" || path == "/-/ready"
}

pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<HttpBody> {
    let settings = state.web.current();
    let path = req.uri().path().to_string();
    let mut response = if let Some(auth) = settings.auth.as_ref().filter(|_| !is_probe(&path)) {
        if auth.allows(req.headers().get(header::AUTHORIZATION)).await {
            None
        } else {
            state.server_metrics.unauthorized.inc();
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            Some(boxed(r))
        }
    } else {
        None
    };
    if response.is_none() {
        response = Some(if path == "/-/reload" {
            boxed(reload(state, req.method()).await)
        } else if path == "/api/v1/profile" || path == "/profile" {
            boxed(profile(req.method(), &path, req.uri().query()))
        } else if crate::snapshot::web::is_path(&path) {
            snapshot(state, req).await
        } else {
            boxed(route(state, req.method(), &path, req.uri().query()))
        });
    }
    let mut response = response.expect("set above");
    for (name, value) in &settings.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Heap snapshots (`crate::snapshot::web`): taking them, listing and downloading them, and
/// Alertmanager's webhook. A file is streamed in chunks, never read whole.
async fn snapshot(state: &AppState, req: Request<Incoming>) -> Response<HttpBody> {
    use crate::snapshot::web::{self, Reply};
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let body = if web::wants_body(path) && parts.method == Method::POST {
        match http_body_util::Limited::new(body, web::MAX_WEBHOOK_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let mut r = text(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large or broken\n");
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_none() {
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                }
                return boxed(r);
            }
        }
    } else {
        Bytes::new()
    };
    let targets = state.snapshot.borrow().clone();
    let origin = web::Origin { headers: &parts.headers, tls: state.web.tls_enabled(), listen: state.listen_address };
    match web::handle(&parts.method, path, parts.uri.query(), &body, &targets, &origin).await {
        Reply::Body { status, content_type, body, allow } => {
            let mut r = Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("valid response");
            if let Some(allow) = allow {
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            boxed(r)
        }
        Reply::File { path, name } => match std::fs::File::open(&path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((len, file)) => Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len)
                .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""))
                .body(file_body(file, len))
                .expect("valid response"),
            Err(_) => boxed(text(StatusCode::NOT_FOUND, "no such snapshot: GET /api/v1/snapshots lists them\n")),
        },
    }
}

/// `file`'s first `len` bytes as a stream of chunks, each read off the runtime's threads.
fn file_body(file: std::fs::File, len: u64) -> HttpBody {
    use http_body_util::BodyExt;
    const CHUNK: usize = 256 << 10;
    // The state is None after an error, which ends the stream.
    let chunks = futures_util::stream::unfold(Some((file, len)), |state| async move {
        let (mut file, left) = state?;
        if left == 0 {
            return None;
        }
        let want = CHUNK.min(left as usize);
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; want];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((_, buf)) if buf.is_empty() => {
                Some((Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the snapshot file shrank")), None))
            }
            Ok((file, buf)) => {
                let left = left - buf.len() as u64;
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), Some((file, left))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    http_body_util::StreamBody::new(chunks).boxed_unsync()
}

/// Allocation sites (`crate::attribution::web`): GET the report or a pprof profile, POST to
/// profile on demand, `/profile` for the page.
fn profile(method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    use crate::attribution::web;
    let reply = match (path, method) {
        ("/api/v1/profile", &Method::GET | &Method::HEAD) => web::get(query),
        ("/api/v1/profile", &Method::POST) => web::post(query),
        ("/profile", &Method::GET | &Method::HEAD) => web::page(query),
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET, or POST to /api/v1/profile\n");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            return r;
        }
    };
    Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .body(Full::new(Bytes::from(reply.body)))
        .expect("valid response")
}

/// `/-/reload`, as Prometheus serves it: POST or PUT, only with the lifecycle API on.
async fn reload(state: &AppState, method: &Method) -> Response<Body> {
    if method != Method::POST && method != Method::PUT {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Only POST or PUT requests allowed\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
        return r;
    }
    let Some(requests) = &state.reload else {
        return text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled (--web.enable-lifecycle)\n");
    };
    let (reply, answer) = oneshot::channel();
    if requests.send(reply).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match answer.await {
        Ok(Ok(())) => text(StatusCode::OK, "configuration reloaded\n"),
        Ok(Err(e)) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(format!("failed to reload config: {e}\n"))))
            .expect("valid response"),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
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
        p if p == &*state.telemetry_path => {
            let mut body = String::with_capacity(snapshot.metrics.len() + 2048);
            body.push_str(&snapshot.metrics);
            state.server_metrics.encode(&mut body);
            if let Some(store) = crate::snapshot::store::current() {
                store.encode_metrics(&mut body);
            }
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(body)))
                .expect("valid response")
        }
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
        AppState::new(rx, "/metrics", true)
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
