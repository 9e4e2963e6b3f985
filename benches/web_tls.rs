//! What TLS and basic auth cost a scrape (issue 11): the exporter's own HTTP server (`http::serve`,
//! in process) serving a fixed snapshot, scraped over keep-alive connections as Prometheus does
//! — plain HTTP, TLS, TLS with basic auth — and with a new connection per scrape (a TLS
//! handshake each); plus what the bcrypt cache saves: one bcrypt check at the cost people use
//! (10, `htpasswd -B`'s default) against a cached check.
//!
//! Certificates come from `openssl` (P-256, as in the tests). The client is rustls over a
//! blocking socket, one request at a time. Prints a markdown table; asserts nothing.
//!
//! `cargo bench --bench web_tls` (`-- --scrapes N`, default 2000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use nodejs_leak_exporter::http::{self as server, AppState, ServerMetrics};
use nodejs_leak_exporter::sampler::Snapshot;
use nodejs_leak_exporter::web::WebConfig;
use rustls_pki_types::pem::PemObject;

const PASSWORD: &str = "s3cret";
const COST: u32 = 10;

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: only `cargo bench`
    // measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not measuring: run with `cargo bench --bench web_tls`");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let scrapes: usize =
        args.iter().position(|a| a == "--scrapes").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let hash = bcrypt::hash(PASSWORD, COST).unwrap();
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    let auth = format!("basic_auth_users:\n  alice: {hash}\n");
    let metrics = snapshot_text();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client_config = client_config(&dir.path().join("ca.pem"));

    println!(
        "{} scrapes of a {:.0} KiB exposition per row; server: the exporter's (2 async workers); client: rustls, one request at a time\n",
        scrapes,
        metrics.len() as f64 / 1024.0
    );
    println!("| listener | connection | p50 | p99 | max | mean | scrapes/s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, web) in [
        ("plain HTTP", None),
        ("plain HTTP + basic auth", Some(auth.clone())),
        ("TLS 1.3", Some(tls.to_string())),
        ("TLS 1.3 + basic auth", Some(format!("{tls}{auth}"))),
    ] {
        let web = web.map(|text| {
            let p = dir.path().join(format!("web-{}.yml", name.len()));
            std::fs::write(&p, text).unwrap();
            p
        });
        let addr = start_server(&runtime, web.as_deref(), &metrics);
        let tls = name.starts_with("TLS").then_some(&client_config);
        let authorization = name.ends_with("auth").then(|| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}")))
        });
        // Warm-up: the first authenticated request pays the bcrypt.
        scrape_keep_alive(addr, tls, authorization.as_deref(), 20);
        let times = scrape_keep_alive(addr, tls, authorization.as_deref(), scrapes);
        row(name, "keep-alive", &times);
        let times = scrape_new_connections(addr, tls, authorization.as_deref(), scrapes / 4);
        row(name, "new per scrape", &times);
    }

    println!("\nbasic auth check, per request:\n");
    println!("| check | p50 | p99 | mean |");
    println!("|---|---|---|---|");
    let mut verify = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert!(bcrypt::verify(PASSWORD, &hash).unwrap());
        verify.push(t.elapsed());
    }
    let (p50, p99, mean) = stats(&mut verify);
    println!("| bcrypt verify, cost {COST} (uncached: every request would pay it) | {p50} | {p99} | {mean} |");
    let auth_only = nodejs_leak_exporter::web::auth::BasicAuth::new(&std::collections::BTreeMap::from([(
        "alice".to_string(),
        hash.clone(),
    )]))
    .unwrap();
    let header = ::http::HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"))
    ))
    .unwrap();
    runtime.block_on(auth_only.allows(Some(&header)));
    let mut cached = Vec::new();
    for _ in 0..scrapes {
        let t = Instant::now();
        assert!(runtime.block_on(auth_only.allows(Some(&header))));
        cached.push(t.elapsed());
    }
    let (p50, p99, mean) = stats(&mut cached);
    println!("| cached (SHA-256 + constant-time compare, incl. block_on) | {p50} | {p99} | {mean} |");
}

fn row(name: &str, connection: &str, times: &[Duration]) {
    let mut t = times.to_vec();
    let total: Duration = t.iter().sum();
    let (p50, p99, mean) = stats(&mut t);
    let max = fmt(*t.last().unwrap());
    println!(
        "| {name} | {connection} | {p50} | {p99} | {max} | {mean} | {:.0} |",
        t.len() as f64 / total.as_secs_f64()
    );
}

fn stats(times: &mut [Duration]) -> (String, String, String) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    (fmt(at(0.5)), fmt(at(0.99)), fmt(mean))
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.0} µs")
    }
}

/// About what 20 watched processes with inspectors make.
fn snapshot_text() -> String {
    let mut s = String::new();
    for pid in 0..20 {
        for i in 0..120 {
            s.push_str(&format!(
                "nodejs_bench_metric_{}{{pid=\"{}\",app=\"app-{}\",namespace=\"shop\",pod=\"api-{}\",container=\"node\"}} {}\n",
                i % 40,
                1000 + pid,
                pid,
                pid,
                i * 12345
            ));
        }
    }
    s
}

fn start_server(runtime: &tokio::runtime::Runtime, web: Option<&Path>, metrics: &str) -> SocketAddr {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot {
        metrics: metrics.to_string(),
        ready: true,
        ..Snapshot::default()
    }));
    let state = AppState {
        snapshot: rx,
        telemetry_path: "/metrics".into(),
        metrics_enabled: true,
        web: Arc::new(web.map(|p| WebConfig::load(p).unwrap()).unwrap_or_else(WebConfig::disabled)),
        server_metrics: Arc::new(ServerMetrics::new()),
        reload: None,
        listen_address: None,
    };
    let listener = runtime.block_on(server::bind("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let _keep = tx;
        let _ = server::serve(listener, state, std::future::pending()).await;
    });
    addr
}

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Box<dyn Stream> {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    match tls {
        None => Box::new(sock),
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
            Box::new(rustls::StreamOwned::new(conn, sock))
        }
    }
}

/// One request and its whole response (by Content-Length).
fn scrape(reader: &mut BufReader<Box<dyn Stream>>, authorization: Option<&str>) {
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(reader.get_mut(), "GET /metrics HTTP/1.1\r\nHost: bench\r\n{auth}\r\n").unwrap();
    reader.get_mut().flush().unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
}

fn scrape_keep_alive(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    authorization: Option<&str>,
    n: usize,
) -> Vec<Duration> {
    let mut reader = BufReader::with_capacity(1 << 16, connect(addr, tls));
    (0..n)
        .map(|_| {
            let t = Instant::now();
            scrape(&mut reader, authorization);
            t.elapsed()
        })
        .collect()
}

fn scrape_new_connections(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    authorization: Option<&str>,
    n: usize,
) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let mut reader = BufReader::with_capacity(1 << 16, connect(addr, tls));
            scrape(&mut reader, authorization);
            t.elapsed()
        })
        .collect()
}

fn make_certs(d: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output().expect("openssl is needed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(d.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    openssl(&["req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2", "-subj", "/CN=CA", "-out", "ca.pem"]);
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.ec"]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "server.ec", "-out", "server.key"]);
    openssl(&["req", "-new", "-key", "server.key", "-subj", "/CN=server", "-out", "server.csr"]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}
