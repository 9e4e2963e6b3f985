//! OTLP export: pushes what the sampler reads to an OpenTelemetry receiver over gRPC or
//! HTTP/protobuf through `opentelemetry-otlp`, beside the Prometheus endpoint.
//!
//! **One resource per watched process.** The OpenTelemetry SDK binds one `Resource` to a
//! `MeterProvider`, so instruments would need a provider (its pipeline, its instruments, their
//! aggregation state) per process. Instead the sampler's readings are already aggregated values,
//! and [`convert`] builds one `ResourceMetrics` per process from them — `service.name` the app,
//! `process.pid` the pid — which [`push`] hands to `opentelemetry_otlp::MetricExporter::export`,
//! one request per process. Nothing is kept per process between pushes: a push at 200 processes
//! costs 200 short-lived values, no thread and no provider (`benches/otlp_export.rs` measures it).
//! This needs `opentelemetry_sdk` 0.29, the last release whose metrics data model can be built
//! outside the SDK (0.30 made its fields private); it is what gives the counters the process's
//! start as start time and sends V8's GC histogram with its own buckets, neither of which the
//! SDK's instruments can do.
//!
//! **Off the sampler thread, bounded.** Once per interval the sampler hands an owned, compact
//! copy of its readings ([`sample::Batch`]) to a queue of [`QUEUE_CAPACITY`] batches and goes on;
//! when the queue is full the oldest batch is dropped and counted. The export runs on its own
//! task with a deadline (`OTEL_EXPORTER_OTLP_TIMEOUT`), so a dead or hanging receiver never slows
//! sampling or a scrape. A failed request is counted and not retried: counters are cumulative, so
//! the next push carries everything again.
//!
//! What it must not do: put command lines or environment values of watched processes into
//! attributes, or log header values (they carry credentials).

pub mod convert;
pub mod sample;
pub mod settings;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry as PromRegistry};

pub use settings::{OtlpConfig, Protocol, Settings};

use crate::target::Target;
use sample::{Batch, ProcessSample};

/// Batches waiting to be sent: the one being built while the previous is still in flight.
pub const QUEUE_CAPACITY: usize = 2;
/// Requests in flight at once (one per process): enough to push 200 processes within a second
/// of round trips, few enough not to flood a receiver.
const CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("cannot read {what} {path}: {source}")]
    ReadFile { what: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("invalid {what}: {message}")]
    Tls { what: &'static str, message: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The bounded queue between the sampler thread and the export task.
struct Queue {
    batches: Mutex<VecDeque<Batch>>,
    ready: tokio::sync::Notify,
}

impl Queue {
    /// Adds a batch; returns the batch it displaced when full.
    fn push(&self, batch: Batch) -> Option<Batch> {
        let mut q = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = if q.len() >= QUEUE_CAPACITY { q.pop_front() } else { None };
        q.push_back(batch);
        drop(q);
        self.ready.notify_one();
        dropped
    }

    fn pop(&self) -> Option<Batch> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    fn len(&self) -> usize {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn next(&self) -> Batch {
        loop {
            if let Some(b) = self.pop() {
                return b;
            }
            self.ready.notified().await;
        }
    }
}

/// The exporter's own metrics about pushing, served on `/metrics` with the others.
#[derive(Clone)]
pub struct PushMetrics {
    registry: PromRegistry,
    requests: IntCounter,
    failures: IntCounterVec,
    dropped: IntCounter,
    queued: Gauge,
    last_success: Gauge,
    duration: Gauge,
}

impl Default for PushMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PushMetrics {
    pub fn new() -> PushMetrics {
        let registry = PromRegistry::new();
        let requests = IntCounter::new(
            "nodejs_leak_exporter_otlp_export_requests_total",
            "OTLP export requests attempted, one per watched process per push.",
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "nodejs_leak_exporter_otlp_export_failures_total",
                "OTLP export requests that failed, by reason (timeout, unreachable, rejected, other); their points are lost, the next push carries the cumulative values again.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let dropped = IntCounter::new(
            "nodejs_leak_exporter_otlp_dropped_batches_total",
            "Batches dropped unsent because the queue was full: pushes took longer than the interval.",
        )
        .expect("valid metric");
        let queued = Gauge::new("nodejs_leak_exporter_otlp_queued_batches", "Batches waiting to be pushed.")
            .expect("valid metric");
        let last_success = Gauge::new(
            "nodejs_leak_exporter_otlp_last_success_timestamp_seconds",
            "Unix time of the last push whose every request succeeded; 0 before the first.",
        )
        .expect("valid metric");
        let duration = Gauge::new(
            "nodejs_leak_exporter_otlp_push_duration_seconds",
            "Duration of the last push (all of its requests).",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(dropped.clone()),
            Box::new(queued.clone()),
            Box::new(last_success.clone()),
            Box::new(duration.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        for reason in ["timeout", "unreachable", "rejected", "other"] {
            failures.with_label_values(&[reason]);
        }
        PushMetrics { registry, requests, failures, dropped, queued, last_success, duration }
    }
}

/// The sampler's end: once per interval, a copy of the sample goes into the queue.
pub struct Handoff {
    queue: Arc<Queue>,
    metrics: PushMetrics,
    interval: Duration,
    next_due: Instant,
    /// When the exporter started: the earliest any of its own counts can start.
    started: SystemTime,
}

impl Handoff {
    /// Called after every sample; takes a copy only when a push is due.
    pub fn offer<'a>(&mut self, targets: impl Iterator<Item = &'a Target>) {
        let now = Instant::now();
        if now < self.next_due {
            return;
        }
        self.next_due += self.interval;
        if self.next_due <= now {
            self.next_due = now + self.interval;
        }
        let unix_now = SystemTime::now();
        let processes =
            targets.filter(|t| t.is_exported()).map(|t| ProcessSample::of(t, self.started, now, unix_now)).collect();
        if self.queue.push(Batch { sampled_at: unix_now, processes }).is_some() {
            self.metrics.dropped.inc();
        }
        self.metrics.queued.set(self.queue.len() as f64);
    }

    /// The push metrics, for the snapshot.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.metrics.queued.set(self.queue.len() as f64);
        self.metrics.registry.gather()
    }
}

/// Builds the exporter and starts the export task on `runtime`; returns the sampler's end.
pub fn start(settings: &Settings, runtime: &tokio::runtime::Handle) -> Result<Handoff, OtlpError> {
    let exporter = {
        let _guard = runtime.enter(); // tonic's lazy channel spawns its worker on the runtime
        build_exporter(settings)?
    };
    let queue =
        Arc::new(Queue { batches: Mutex::new(VecDeque::with_capacity(QUEUE_CAPACITY)), ready: Default::default() });
    let metrics = PushMetrics::new();
    let common = convert::Common { host_name: host_name(), extra: settings.resource_attributes.clone() };
    runtime.spawn(push_loop(queue.clone(), exporter, common, settings.timeout, metrics.clone()));
    for note in &settings.notes {
        tracing::info!("OTLP: {note}");
    }
    tracing::info!(
        endpoint = %settings.endpoint,
        protocol = settings.protocol.as_str(),
        interval = ?settings.interval,
        timeout = ?settings.timeout,
        headers = settings.headers.len(),
        "pushing metrics over OTLP"
    );
    Ok(Handoff {
        queue,
        metrics,
        interval: settings.interval,
        // The first push comes one interval after start, like the SDKs' periodic readers: the
        // first samples have no leak analysis and processes are still warming.
        next_due: Instant::now() + settings.interval,
        started: SystemTime::now(),
    })
}

async fn push_loop(
    queue: Arc<Queue>,
    exporter: opentelemetry_otlp::MetricExporter,
    common: convert::Common,
    timeout: Duration,
    metrics: PushMetrics,
) {
    let mut limiter = WarnLimiter::default();
    loop {
        let batch = queue.next().await;
        metrics.queued.set(queue.len() as f64);
        let started = Instant::now();
        let outcome = push(&exporter, &batch, &common, timeout, &metrics).await;
        metrics.duration.set(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                metrics.last_success.set(now);
                tracing::debug!(processes = batch.processes.len(), "pushed over OTLP");
            }
            Err((reason, failed, message)) => limiter.warn(reason, || {
                format!("OTLP push: {failed} of {} requests failed ({reason}): {message}", batch.processes.len())
            }),
        }
    }
}

/// Sends one batch, one request per process, all within `timeout`. On failure: the reason of the
/// first failure, how many failed, and its message.
pub async fn push(
    exporter: &opentelemetry_otlp::MetricExporter,
    batch: &Batch,
    common: &convert::Common,
    timeout: Duration,
    metrics: &PushMetrics,
) -> Result<(), (&'static str, usize, String)> {
    use futures_util::StreamExt;
    let total = batch.processes.len();
    metrics.requests.inc_by(total as u64);
    let done = AtomicUsize::new(0);
    let first_error: Mutex<Option<(&'static str, String)>> = Mutex::new(None);
    let failed = AtomicUsize::new(0);
    let requests = futures_util::stream::iter(batch.processes.iter()).for_each_concurrent(CONCURRENCY, |p| {
        let (done, failed, first_error) = (&done, &failed, &first_error);
        async move {
            let mut rm = convert::resource_metrics(p, common, batch.sampled_at);
            let result = exporter.export(&mut rm).await;
            done.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = result {
                let message = e.to_string();
                let reason = classify(&message);
                metrics.failures.with_label_values(&[reason]).inc();
                failed.fetch_add(1, Ordering::Relaxed);
                first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert((reason, message));
            }
        }
    });
    if tokio::time::timeout(timeout, requests).await.is_err() {
        let abandoned = total - done.load(Ordering::Relaxed);
        metrics.failures.with_label_values(&["timeout"]).inc_by(abandoned as u64);
        failed.fetch_add(abandoned, Ordering::Relaxed);
        first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(("timeout", format!("no answer within {timeout:?}")));
    }
    let failed = failed.load(Ordering::Relaxed);
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some((reason, message)) if failed > 0 => Err((reason, failed, shorten(&message))),
        _ => Ok(()),
    }
}

/// The bounded `reason` of a failed request, from the exporter's error text (it has no kinds).
fn classify(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("timed out") || m.contains("timeout") || m.contains("deadline") {
        "timeout"
    } else if ["connect", "refused", "unavailable", "transport error", "dns", "broken pipe", "reset"]
        .iter()
        .any(|s| m.contains(s))
    {
        "unreachable"
    } else if m.contains("status") {
        "rejected"
    } else {
        "other"
    }
}

fn shorten(s: &str) -> String {
    let s = s.replace('\n', " ");
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// One warning per reason a minute, saying how many were held back.
#[derive(Default)]
struct WarnLimiter {
    last: std::collections::HashMap<&'static str, (Instant, u64)>,
}

impl WarnLimiter {
    fn warn(&mut self, reason: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let entry = self.last.entry(reason).or_insert((now - Duration::from_secs(3600), 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            let suppressed = entry.1;
            *entry = (now, 0);
            tracing::warn!(collector = "otlp", reason, suppressed, "{}", message());
        } else {
            entry.1 += 1;
        }
    }
}

/// Builds the `opentelemetry-otlp` exporter for the settings, TLS included.
pub fn build_exporter(s: &Settings) -> Result<opentelemetry_otlp::MetricExporter, OtlpError> {
    let builder = opentelemetry_otlp::MetricExporter::builder()
        .with_temporality(opentelemetry_sdk::metrics::Temporality::Cumulative);
    let tls = s.endpoint.starts_with("https://");
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| OtlpError::ReadFile { what, path: path.to_path_buf(), source })
    };
    let ca = match (&s.ca_file, tls) {
        (Some(p), true) => Some(read("CA file", p)?),
        _ => None,
    };
    let identity = match (&s.client_cert, tls) {
        (Some((c, k)), true) => Some((read("client certificate", c)?, read("client key", k)?)),
        _ => None,
    };
    let exporter = match s.protocol {
        Protocol::Grpc => {
            let mut b = builder.with_tonic().with_endpoint(s.endpoint.clone()).with_timeout(s.timeout);
            if tls {
                let mut config = tonic::transport::ClientTlsConfig::new();
                config = match &ca {
                    Some(pem) => config.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                    None => config.with_native_roots(),
                };
                if let Some((cert, key)) = &identity {
                    config = config.identity(tonic::transport::Identity::from_pem(cert, key));
                }
                b = b.with_tls_config(config);
            }
            // Applied after the exporter's own headers (which include OTEL_EXPORTER_OTLP_HEADERS),
            // so the configuration wins over the environment, as everywhere else.
            let metadata: Arc<Vec<(tonic::metadata::AsciiMetadataKey, tonic::metadata::AsciiMetadataValue)>> =
                Arc::new(s.headers.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?))).collect());
            #[allow(clippy::result_large_err)] // the shape tonic's Interceptor trait asks for
            b.with_interceptor(move |mut req: tonic::Request<()>| {
                for (k, v) in metadata.iter() {
                    req.metadata_mut().insert(k.clone(), v.clone());
                }
                Ok(req)
            })
            .build()?
        }
        Protocol::HttpProtobuf => {
            let mut client = reqwest::Client::builder().timeout(s.timeout);
            if let Some(pem) = &ca {
                let cert = reqwest::Certificate::from_pem(pem)
                    .map_err(|e| OtlpError::Tls { what: "CA file", message: e.to_string() })?;
                client = client.add_root_certificate(cert);
            }
            if let Some((cert, key)) = &identity {
                let id = reqwest::Identity::from_pem(&[cert.as_slice(), b"\n", key.as_slice()].concat())
                    .map_err(|e| OtlpError::Tls { what: "client certificate or key", message: e.to_string() })?;
                client = client.identity(id);
            }
            let client = client.build().map_err(|e| OtlpError::Tls { what: "HTTP client", message: e.to_string() })?;
            let headers = s
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.parse::<http::HeaderName>().ok()?, v.parse::<http::HeaderValue>().ok()?)))
                .collect();
            builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(s.endpoint.clone())
                .with_timeout(s.timeout)
                .with_http_client(HeaderClient { inner: client, headers })
                .build()?
        }
    };
    Ok(exporter)
}

/// The HTTP client: reqwest, with the configured headers set last so they win over
/// `OTEL_EXPORTER_OTLP_HEADERS`, which the exporter adds on its own.
struct HeaderClient {
    inner: reqwest::Client,
    headers: http::HeaderMap,
}

impl std::fmt::Debug for HeaderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are credentials.
        f.debug_struct("HeaderClient").field("headers", &self.headers.keys().collect::<Vec<_>>()).finish()
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HeaderClient {
    async fn send_bytes(
        &self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        for (k, v) in &self.headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        self.inner.send_bytes(request).await
    }
}

/// The host's name, for `host.name` (`OTEL_RESOURCE_ATTRIBUTES=host.name=...` overrides it,
/// e.g. with the node name in a pod that has its own UTS namespace).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
