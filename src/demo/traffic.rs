//! The demo's traffic: keep-alive HTTP/1.1 clients, the same steady rate and the same sequence of
//! requests to each app, so the only difference between the two is their code.
//!
//! Connections are kept for the whole run, as a load balancer or a mobile client keeps them: that
//! is what makes a listener added per request to the socket pile up.
//!
//! The first [`WARMUP`] runs at [`WARMUP_RATE`]: V8 compiles an app's hot code over its first
//! thousands of requests, and the heap that code takes rises meanwhile; at the steady rate that
//! would take minutes, during which even the fixed app's heap floor creeps up. The exporter's
//! grace period covers the burst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Requests per second to each app.
pub const RATE: f64 = 40.0;
/// The warm-up burst: its length and rate.
pub const WARMUP: Duration = Duration::from_secs(15);
pub const WARMUP_RATE: f64 = 200.0;
/// Keep-alive connections to each app.
pub const CONNECTIONS: u64 = 4;
/// Distinct item ids; the database fails some of them.
const ITEMS: u64 = 1000;
const TIMEOUT: Duration = Duration::from_secs(5);

/// What one app answered so far.
#[derive(Debug, Default)]
pub struct Stats {
    /// 2xx answers.
    pub ok: AtomicU64,
    /// 5xx answers (the database failed).
    pub failed: AtomicU64,
    /// No answer: connection refused or reset, or timed out.
    pub errors: AtomicU64,
}

/// Drives requests at `127.0.0.1:port` over `CONNECTIONS` connections, `WARMUP_RATE` per second
/// for `WARMUP` from `start`, then `RATE`, until the returned tasks are aborted.
pub fn drive(port: u16, start: tokio::time::Instant, stats: Arc<Stats>) -> Vec<tokio::task::JoinHandle<()>> {
    let sequence = Arc::new(AtomicU64::new(0));
    (0..CONNECTIONS)
        .map(|i| {
            let (sequence, stats) = (sequence.clone(), stats.clone());
            // Spread the connections over the period, so requests arrive evenly.
            let first = start + period(Duration::ZERO).mul_f64(i as f64 / CONNECTIONS as f64);
            tokio::spawn(async move { connection(port, start, first, &sequence, &stats).await })
        })
        .collect()
}

/// Time between two requests on one connection, `since` the traffic started.
fn period(since: Duration) -> Duration {
    let rate = if since < WARMUP { WARMUP_RATE } else { RATE };
    Duration::from_secs_f64(CONNECTIONS as f64 / rate)
}

async fn connection(
    port: u16,
    start: tokio::time::Instant,
    first: tokio::time::Instant,
    sequence: &AtomicU64,
    stats: &Stats,
) {
    let mut next = first;
    loop {
        let sender = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await.ok(),
            Err(_) => None,
        };
        let Some((mut sender, conn)) = sender else {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let driver = tokio::spawn(conn);
        loop {
            tokio::time::sleep_until(next).await;
            // A late answer delays the next request rather than causing a burst.
            next = next.max(tokio::time::Instant::now() - period(next - start)) + period(next - start);
            let n = sequence.fetch_add(1, Ordering::Relaxed);
            // Every user is new: the URL (the cache key) is never seen twice.
            let request = http::Request::get(format!("/items/{}?user={n}", n % ITEMS))
                .header(http::header::HOST, format!("127.0.0.1:{port}"))
                .body(Empty::new())
                .expect("valid request");
            let answered = tokio::time::timeout(TIMEOUT, async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            })
            .await;
            match answered {
                Ok(Ok(status)) if status.is_success() => stats.ok.fetch_add(1, Ordering::Relaxed),
                Ok(Ok(_)) => stats.failed.fetch_add(1, Ordering::Relaxed),
                Ok(Err(_)) | Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
        }
        driver.abort();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
