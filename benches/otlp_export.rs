//! The cost of one OTLP push at 200 watched processes: the copy the sampler thread makes, the
//! conversion to one ResourceMetrics per process, the protobuf bytes, and a whole push over
//! HTTP/protobuf to an in-process receiver on loopback through `opentelemetry-otlp` — and the
//! exporter's thread count before and after, which must not grow with the process count.
//!
//! `cargo bench --bench otlp_export` (release build). Prints one table.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nodejs_leak_exporter::collect::inspector::{GcHistogram, HeapReadings, HeapSpace, InspectorReadings};
use nodejs_leak_exporter::collect::procfs::{ProcReadings, SocketCounts};
use nodejs_leak_exporter::collect::Readings;
use nodejs_leak_exporter::discovery::{Identity, ProcessKey};
use nodejs_leak_exporter::otlp::sample::{Batch, ProcessSample};
use nodejs_leak_exporter::otlp::{self, convert, Protocol, PushMetrics, Settings};
use nodejs_leak_exporter::target::{Target, TargetState};
use prost::Message;

const PROCESSES: usize = 200;
const ROUNDS: usize = 30;

/// A process as a busy app with an inspector looks after an hour: 9 heap spaces, 3 GC kinds, 6
/// resource types, a few warnings, and the leak analysis over three windows.
fn target(i: usize, settings: &nodejs_leak_exporter::leak::LeakSettings) -> Target {
    let now = Instant::now();
    let spaces = [
        "read_only",
        "new",
        "old",
        "code",
        "shared",
        "trusted",
        "new_large_object",
        "large_object",
        "code_large_object",
    ];
    let inspector = InspectorReadings {
        connected: true,
        heap: Some(HeapReadings {
            total_bytes: 80 << 20,
            used_bytes: 60 << 20,
            limit_bytes: 4 << 30,
            external_bytes: 3 << 20,
            array_buffers_bytes: 1 << 20,
            detached_contexts: 0,
            spaces: spaces
                .iter()
                .map(|s| HeapSpace { name: s.to_string(), size: 8 << 20, used: 6 << 20, available: 1 << 20 })
                .collect(),
            active_resources: ["Timeout", "TCPSocketWrap", "TCPServerWrap", "FSReqCallback", "Immediate", "PipeWrap"]
                .iter()
                .map(|s| (s.to_string(), 5))
                .collect(),
            version: "v22.1.0".into(),
        }),
        warnings: [("MaxListenersExceededWarning".to_string(), 3), ("DeprecationWarning".to_string(), 1)].into(),
        max_listeners: [(("close".to_string(), "Socket".to_string()), 3)].into(),
        gc: ["major", "minor", "incremental"]
            .iter()
            .map(|k| (k.to_string(), GcHistogram { buckets: [10, 90, 99, 100, 100, 100], count: 100, sum: 0.5 }))
            .collect(),
        after_major_gc: Some((0.0, 50 << 20)),
        major_gcs: 100,
        first_connected: Some(now),
    };
    let procfs = ProcReadings {
        start_time_seconds: 1_700_000_000.0,
        cpu_user_seconds: 100.0,
        cpu_system_seconds: 20.0,
        resident_bytes: 150 << 20,
        virtual_bytes: 1 << 30,
        data_bytes: Some(200 << 20),
        rss_anon_bytes: Some(100 << 20),
        rss_file_bytes: Some(50 << 20),
        rss_shmem_bytes: Some(0),
        swap_bytes: Some(0),
        threads: 11,
        open_fds: Some(40),
        max_fds: Some(65536),
        sockets: Some(SocketCounts { tcp: 20, udp: 0, unix: 2, other: 0 }),
        ..Default::default()
    };
    let mut t = Target {
        key: ProcessKey { pid: 10_000 + i as i32, start_ticks: i as u64 },
        identity: Identity {
            app: format!("app-{}", i % 20),
            comm: "node".into(),
            exe_name: Some("node".into()),
            script: Some("server.js".into()),
            uid: 1000,
            user: "app".into(),
            pm2: None,
            inspect: Default::default(),
            ns_pid: None,
            explicit: false,
            node_version: Some("v22.1.0".into()),
        },
        handle: None,
        state: TargetState::Active,
        started_at: now - Duration::from_secs(3600),
        readings: Readings { procfs: Some(procfs), inspector: Some(inspector), ..Default::default() },
        gaps: Default::default(),
        exported_once: true,
        stat: None,
        leak: None,
    };
    // An hour of samples every 5 s so every window speaks.
    let mut state = nodejs_leak_exporter::leak::LeakState::new(settings);
    for k in 0..720u64 {
        if let Some(p) = t.readings.procfs.as_mut() {
            p.resident_bytes = (150 << 20) + k * 1000 + (k % 7) * 100_000;
            p.open_fds = Some(40 + k % 3);
        }
        let o = nodejs_leak_exporter::leak::observation(&t, k as f64 * 5.0, now, 1_700_000_000.0 + k as f64 * 5.0);
        state.observe(&o, settings);
    }
    t.leak = Some(state);
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: only `cargo bench`
    // measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not measuring: run with `cargo bench --bench otlp_export`");
        return;
    }
    let config = nodejs_leak_exporter::config::LeakConfig::default();
    let settings = nodejs_leak_exporter::leak::LeakSettings::new(&config, Duration::from_secs(5));
    let targets: Vec<Target> = (0..PROCESSES).map(|i| target(i, &settings)).collect();
    let unix_now = SystemTime::now();
    let now = Instant::now();

    // The sampler thread's share: the owned copy.
    let mut copy_times = Vec::new();
    let mut batch = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let processes: Vec<ProcessSample> =
            targets.iter().map(|t| ProcessSample::of(t, unix_now, now, unix_now)).collect();
        copy_times.push(t.elapsed());
        batch = Some(Batch { sampled_at: unix_now, processes });
    }
    let batch = batch.unwrap();

    // The export task's share: conversion and encoding (what opentelemetry-otlp does per request).
    let common = convert::Common { host_name: "bench".into(), extra: vec![] };
    let mut convert_times = Vec::new();
    let mut encode_times = Vec::new();
    let mut bytes = 0usize;
    let mut points = 0usize;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let rms: Vec<_> = batch.processes.iter().map(|p| convert::resource_metrics(p, &common, unix_now)).collect();
        convert_times.push(t.elapsed());
        let t = Instant::now();
        bytes = 0;
        for rm in &rms {
            let req = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::from(rm);
            bytes += req.encode_to_vec().len();
        }
        encode_times.push(t.elapsed());
        points = rms
            .iter()
            .flat_map(|rm| rm.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
            .map(|m| {
                use opentelemetry_sdk::metrics::data::{Gauge, Histogram, Sum};
                let d = m.data.as_any();
                d.downcast_ref::<Sum<i64>>()
                    .map(|s| s.data_points.len())
                    .or_else(|| d.downcast_ref::<Sum<u64>>().map(|s| s.data_points.len()))
                    .or_else(|| d.downcast_ref::<Sum<f64>>().map(|s| s.data_points.len()))
                    .or_else(|| d.downcast_ref::<Gauge<f64>>().map(|s| s.data_points.len()))
                    .or_else(|| d.downcast_ref::<Histogram<f64>>().map(|s| s.data_points.len()))
                    .unwrap_or(0)
            })
            .sum();
    }

    // A whole push over HTTP/protobuf to a receiver on loopback that reads and acknowledges.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let addr = runtime.block_on(serve(received.clone()));
    let threads_before = threads();
    let s = Settings {
        protocol: Protocol::HttpProtobuf,
        endpoint: format!("http://{addr}/v1/metrics"),
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
        headers: Default::default(),
        ca_file: None,
        client_cert: None,
        resource_attributes: vec![],
        notes: vec![],
    };
    let exporter = {
        let _g = runtime.enter();
        otlp::build_exporter(&s).unwrap()
    };
    let metrics = PushMetrics::new();
    let mut push_times = Vec::new();
    for _ in 0..ROUNDS {
        received.store(0, Ordering::Relaxed);
        let t = Instant::now();
        runtime.block_on(otlp::push(&exporter, &batch, &common, s.timeout, &metrics)).unwrap();
        push_times.push(t.elapsed());
    }
    let wire = received.load(Ordering::Relaxed);
    let threads_after = threads();

    println!("OTLP push at {PROCESSES} processes ({points} points), median of {ROUNDS}:");
    println!("  copy on the sampler thread          {:>8.2} ms", median(copy_times).as_secs_f64() * 1e3);
    println!("  convert to ResourceMetrics          {:>8.2} ms", median(convert_times).as_secs_f64() * 1e3);
    println!("  protobuf encode (as the exporter)   {:>8.2} ms", median(encode_times).as_secs_f64() * 1e3);
    println!("  whole push, HTTP/protobuf, loopback {:>8.2} ms", median(push_times).as_secs_f64() * 1e3);
    println!(
        "  bytes per push                      {:>8} ({} per process, {} request bodies on the wire)",
        bytes,
        bytes / PROCESSES,
        wire
    );
    println!("  threads before / after 30 pushes    {threads_before:>5} / {threads_after}");
}

/// An HTTP/1.1 receiver that counts body bytes and answers 200 with an empty response.
async fn serve(received: Arc<AtomicU64>) -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let received = received.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        received.fetch_add(body.len() as u64, Ordering::Relaxed);
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
