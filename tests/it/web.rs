//! The listener's web configuration (`--web.config.file`: TLS, client certificates, basic auth)
//! with real TLS clients — curl and an in-process rustls client — against certificates `openssl`
//! makes at test time; configuration reloads (SIGHUP, `POST /-/reload`); and shutdown on SIGTERM
//! with an inspector that hangs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodejs_leak_exporter::collect::inspector::{locate, session::Session};
use nodejs_leak_exporter::connector::DirectConnector;

use crate::util::{self, metric_value, wait_for, Exporter, FakeServer, NodeApp};

/// A CA, a server certificate for 127.0.0.1 and localhost, a second server certificate (for
/// rotation) and a client certificate, all made by openssl in a temporary directory.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make() -> Option<Certs> {
        util::require_tool("openssl")?;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(d).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (ca, name) in [("ca", "Test CA"), ("other-ca", "Other CA")] {
            openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &format!("{ca}.key")]);
            openssl(&[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{ca}.key"),
                "-sha256",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        for (leaf, ca, ext) in [
            ("server", "ca", "server.ext"),
            ("server2", "ca", "server.ext"),
            ("client", "ca", "client.ext"),
            ("stranger", "other-ca", "client.ext"),
        ] {
            openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &format!("{leaf}.ec.key")]);
            // PKCS#8, as most tools write keys today.
            openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &format!("{leaf}.ec.key"), "-out", &format!("{leaf}.key")]);
            openssl(&[
                "req",
                "-new",
                "-key",
                &format!("{leaf}.key"),
                "-subj",
                &format!("/CN={leaf}"),
                "-out",
                &format!("{leaf}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{leaf}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                ext,
                "-out",
                &format!("{leaf}.pem"),
            ]);
        }
        Some(Certs { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `web.yml` next to the certificates (so relative paths resolve against it).
    fn web_config(&self, text: &str) -> PathBuf {
        let p = self.path("web.yml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

fn users(cost: u32) -> String {
    format!("basic_auth_users:\n  alice: {}\n", bcrypt::hash("s3cret", cost).unwrap())
}

/// The exporter binary on a TLS listener: what `util::Exporter` does, without its plain-HTTP
/// readiness check.
struct Launched {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Launched {
    fn start(args: &[&str]) -> Launched {
        let listen = args.iter().any(|a| a.starts_with("--web.listen-address"));
        let mut child = Command::new(util::exporter_bin())
            .args((!listen).then_some("--web.listen-address=127.0.0.1:0"))
            .args([
                "--sample.interval=200ms",
                "--discovery.min-age=0s",
                "--no-collector.inspector",
                "--log.format=json",
                "--log.level=debug",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ = tx.send(v["fields"]["address"].as_str().unwrap_or_default().to_string());
                    }
                }
                let mut log = writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("the exporter did not listen within 20s:\n{}", log.lock().unwrap());
        };
        Launched { child, addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` with `args`; Ok((status, body)), or Err(curl's error) when no HTTP response came.
fn curl(args: &[&str]) -> Result<(u16, String), String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.trim().parse().unwrap(), body.to_string()))
}

/// An in-process rustls client: one request, the status, the body and the server's certificate.
fn rustls_get(certs: &Certs, addr: &str, path: &str, auth: Option<(&str, &str)>) -> (u16, String, Vec<u8>) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(certs.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let authorization = auth
        .map(|(u, p)| {
            use base64::Engine as _;
            format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
        })
        .unwrap_or_default();
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    // rustls reports a peer that closes without close_notify as an error after the data.
    let _ = tls.read_to_end(&mut raw);
    let cert = tls.conn.peer_certificates().unwrap()[0].to_vec();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response: {raw:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string(), cert)
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path).unwrap().to_vec()
}

fn wait_ready(e: &Launched, certs: &Certs) {
    let ca = certs.path("ca.pem");
    wait_for("the first sample", Duration::from_secs(20), || {
        let (code, _) = curl(&["--cacert", ca.to_str().unwrap(), &e.url("/-/ready")]).ok()?;
        (code == 200).then_some(())
    });
}

#[test]
fn tls_and_basic_auth_with_curl_and_rustls() {
    let Some(certs) = Certs::make() else { return };
    if util::require_tool("curl").is_none() {
        return;
    }
    let web = certs.web_config(&format!(
        "{TLS}http_server_config:\n  headers:\n    X-Frame-Options: deny\n{}",
        users(bcrypt::DEFAULT_COST)
    ));
    let e = Launched::start(&[&format!("--web.config.file={}", web.display())]);
    wait_ready(&e, &certs);
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let metrics = e.url("/metrics");

    let (code, body) = curl(&["--cacert", ca, "-u", "alice:s3cret", &metrics]).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("nodejs_leak_exporter_build_info"), "{body}");
    let (code, _) = curl(&["--cacert", ca, "-u", "alice:wrong", &metrics]).unwrap();
    assert_eq!(code, 401, "wrong password");
    let (code, _) = curl(&["--cacert", ca, "-u", "mallory:s3cret", &metrics]).unwrap();
    assert_eq!(code, 401, "unknown user");
    let (code, _) = curl(&["--cacert", ca, &metrics]).unwrap();
    assert_eq!(code, 401, "no credentials");
    let head =
        Command::new("curl").args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert", ca, &metrics]).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(head.contains("www-authenticate: basic"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "headers from the file: {head}");
    for path in ["/", "/api/v1/targets"] {
        assert_eq!(curl(&["--cacert", ca, &e.url(path)]).unwrap().0, 401, "{path} is protected");
    }
    // Probes need no credentials (still over TLS).
    assert_eq!(curl(&["--cacert", ca, &e.url("/-/healthy")]).unwrap().0, 200);
    // Without the CA the server is not trusted.
    assert!(curl(&[&metrics]).is_err());

    // The in-process client, several times: after the first bcrypt the check is cached.
    for _ in 0..3 {
        let (code, body, cert) = rustls_get(&certs, &e.addr, "/metrics", Some(("alice", "s3cret")));
        assert_eq!(code, 200);
        assert!(body.contains("nodejs_leak_exporter_samples_total"));
        assert_eq!(cert, pem_der(&certs.path("server.pem")));
    }
    assert_eq!(rustls_get(&certs, &e.addr, "/metrics", Some(("alice", "nope"))).0, 401);

    // Plain HTTP to the TLS port: a 400 that says so, and the exporter goes on serving.
    let (code, body) = util::http_get(&e.addr, "/metrics");
    assert_eq!(code, 400);
    assert!(body.contains("HTTPS"), "{body}");
    let (code, body) = curl(&["--cacert", ca, "-u", "alice:s3cret", &metrics]).unwrap();
    assert_eq!(code, 200);
    assert!(
        metric_value(&body, "nodejs_leak_exporter_http_tls_handshake_errors_total", &[("reason", "plain_http")])
            .unwrap()
            >= 1.0
    );
    assert!(metric_value(&body, "nodejs_leak_exporter_http_unauthorized_requests_total", &[]).unwrap() >= 4.0);
    assert!(!e.log().contains("\"level\":\"ERROR\""), "nothing logged at error level:\n{}", e.log());
}

/// An exporter of node `node`, listening on `listen` with the TLS of `web`, that takes snapshots
/// and forwards alerts for other nodes; `forward` adds lines under `snapshots:`.
fn start_forwarder(certs: &Certs, web: &Path, node: &str, listen: &str, forward: &str) -> Launched {
    let config = certs.path(&format!("{node}.yml"));
    let dir = certs.path(node);
    std::fs::write(
        &config,
        format!("snapshots:\n  dir: {}\n  node_name: {node}\n  forward: true\n{forward}", dir.display()),
    )
    .unwrap();
    Launched::start(&[
        &format!("--web.listen-address={listen}"),
        &format!("--config.file={}", config.display()),
        &format!("--web.config.file={}", web.display()),
    ])
}

/// Posts the webhook payload `hook` to `e` over TLS (the test CA trusted); the first forward of
/// its answer.
fn post_alert(e: &Launched, certs: &Certs, hook: &str) -> serde_json::Value {
    let ca = certs.path("ca.pem");
    let (code, body) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        hook,
        &e.url("/api/v1/alertmanager"),
    ])
    .unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["forwarded"][0].clone()
}

/// Exporters on a TLS listener forward Alertmanager's webhook over https (`snapshots.forward`):
/// trusting `snapshots.forward_ca_file`, or any certificate with
/// `snapshots.forward_insecure_skip_verify`; with the system's roots alone the test CA is not
/// trusted and the forward fails, saying so.
#[test]
fn alerts_are_forwarded_over_tls_to_a_trusted_certificate() {
    let Some(certs) = Certs::make() else { return };
    if util::require_tool("curl").is_none() {
        return;
    }
    let web = certs.web_config(TLS);
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let start = |node: &str, forward: &str| {
        let e = start_forwarder(&certs, &web, node, "127.0.0.1:0", forward);
        wait_ready(&e, &certs);
        e
    };
    let b = start("node-b", "");
    // A pid no exporter watches: B answers what it did (unknown_pid) without taking a snapshot.
    let hook = serde_json::json!({"version": "4", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "NodejsHeapLeak", "pid": "999999999", "node": "node-b", "instance": b.addr},
    }]})
    .to_string();
    let post = |e: &Launched| post_alert(e, &certs, &hook);

    let trusting = start("node-a", &format!("  forward_ca_file: {ca}\n"));
    let forwarded = post(&trusting);
    assert_eq!((&forwarded["status"], &forwarded["answer"]["unknown_pid"]), (&200.into(), &1.into()), "{forwarded}");

    let insecure = start("node-c", "  forward_insecure_skip_verify: true\n");
    assert_eq!(post(&insecure)["status"], 200);

    let system_roots = start("node-d", "");
    let forwarded = post(&system_roots);
    assert!(forwarded["status"].is_null(), "{forwarded}");
    let error = forwarded["error"].as_str().unwrap();
    assert!(error.contains("https://") && error.to_lowercase().contains("certificate"), "{error}");
    // The log line is written before the answer, and read by the test's own thread.
    wait_for("the failure's log line", Duration::from_secs(5), || {
        system_roots.log().contains("cannot forward a heap alert").then_some(())
    });
}

#[test]
fn a_forward_checks_the_certificate_against_the_configured_server_name() {
    // Pods share one certificate for the Service's name, which names none of their addresses:
    // here B listens on 127.0.0.2, which the test certificate (127.0.0.1, localhost) does not name.
    let Some(certs) = Certs::make() else { return };
    if util::require_tool("curl").is_none() {
        return;
    }
    let web = certs.web_config(TLS);
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let start = |node: &str, listen: &str, forward: &str| {
        start_forwarder(&certs, &web, node, listen, &format!("  forward_ca_file: {ca}\n{forward}"))
    };
    let b = start("node-b", "127.0.0.2:0", "");
    let hook = serde_json::json!({"version": "4", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "NodejsHeapLeak", "pid": "999999999", "node": "node-b", "instance": b.addr},
    }]})
    .to_string();
    let post = |e: &Launched| {
        wait_ready(e, &certs);
        post_alert(e, &certs, &hook)
    };
    let by_address = post(&start("node-a", "127.0.0.1:0", ""));
    let error = by_address["error"].as_str().unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{by_address}");
    let by_name = post(&start("node-c", "127.0.0.1:0", "  forward_server_name: localhost\n"));
    assert_eq!((&by_name["status"], &by_name["answer"]["unknown_pid"]), (&200.into(), &1.into()), "{by_name}");
    assert_eq!(by_name["instance"], b.addr.as_str(), "reported by the address it went to");
}

#[test]
fn the_example_web_config_works_as_written() {
    let Some(certs) = Certs::make() else { return };
    if util::require_tool("curl").is_none() {
        return;
    }
    let web = certs.web_config(&std::fs::read_to_string(util::repo().join("examples/web-config.yml")).unwrap());
    let e = Launched::start(&[&format!("--web.config.file={}", web.display())]);
    wait_ready(&e, &certs);
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let (code, body) = curl(&["--cacert", ca, "-u", "prometheus:changeme", &e.url("/metrics")]).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(curl(&["--cacert", ca, &e.url("/metrics")]).unwrap().0, 401);
}

#[test]
fn a_required_client_certificate_is_checked_in_the_handshake() {
    let Some(certs) = Certs::make() else { return };
    if util::require_tool("curl").is_none() {
        return;
    }
    let web =
        certs.web_config(&format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"));
    let e = Launched::start(&[&format!("--web.config.file={}", web.display())]);
    let path = |n: &str| certs.path(n).to_str().unwrap().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let url = e.url("/metrics");
    wait_for("a scrape with the client certificate", Duration::from_secs(20), || {
        curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]).ok().filter(|(c, _)| *c == 200)
    });
    let missing = curl(&["--cacert", &ca, &url]);
    assert!(missing.is_err(), "no client certificate: {missing:?}");
    let (s_cert, s_key) = (path("stranger.pem"), path("stranger.key"));
    let stranger = curl(&["--cacert", &ca, "--cert", &s_cert, "--key", &s_key, &url]);
    assert!(stranger.is_err(), "a certificate from another CA: {stranger:?}");
    let (code, body) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]).unwrap();
    assert_eq!(code, 200);
    assert!(
        metric_value(&body, "nodejs_leak_exporter_http_tls_handshake_errors_total", &[("reason", "handshake")])
            .unwrap()
            >= 2.0
    );
}

#[test]
fn a_bad_web_config_file_stops_the_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, field) in [
        ("basic_auth_users:\n  alice: s3cret\n", "basic_auth_users.alice"),
        ("tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n", "tls_server_config.cert_file"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config.client_auth_type",
        ),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n", "tls_server_config.min_version"),
        ("basic_auth:\n  alice: x\n", "basic_auth"),
    ] {
        let file = dir.path().join("web.yml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(util::exporter_bin())
            .args(["--web.listen-address=127.0.0.1:0", &format!("--web.config.file={}", file.display())])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(field), "{field} named for {text:?}: {stderr}");
    }
}

#[test]
fn rotated_certificates_are_used_without_a_restart() {
    let Some(certs) = Certs::make() else { return };
    if util::require_tool("curl").is_none() {
        return;
    }
    let web = certs.web_config(TLS);
    let e = Launched::start(&[&format!("--web.config.file={}", web.display())]);
    wait_ready(&e, &certs);
    assert_eq!(rustls_get(&certs, &e.addr, "/-/healthy", None).2, pem_der(&certs.path("server.pem")));
    // Replace both files atomically, as cert-manager and kubelet's secret volumes do.
    for (from, to) in [("server2.key", "server.key"), ("server2.pem", "server.pem")] {
        std::fs::copy(certs.path(from), certs.path(&format!("{to}.new"))).unwrap();
        std::fs::rename(certs.path(&format!("{to}.new")), certs.path(to)).unwrap();
    }
    let rotated = pem_der(&certs.path("server2.pem"));
    wait_for("the new certificate to be served", Duration::from_secs(10), || {
        (rustls_get(&certs, &e.addr, "/-/healthy", None).2 == rotated).then_some(())
    });
    // A broken certificate is refused (logged) and the last good one stays.
    std::fs::write(certs.path("server.pem"), "not a certificate\n").unwrap();
    wait_for("the broken certificate to be refused", Duration::from_secs(10), || {
        rustls_get(&certs, &e.addr, "/-/healthy", None);
        e.log().contains("web config file changed but cannot be used").then_some(())
    });
    let (code, _, cert) = rustls_get(&certs, &e.addr, "/-/healthy", None);
    assert_eq!((code, cert), (200, rotated));
}

/// A process watched only when the configuration names its pid: `sleep`, so no Node.js needed.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("600").spawn().unwrap())
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watched(e: &Exporter, pid: i32) -> bool {
    e.targets()["targets"].as_array().unwrap().iter().any(|t| t["pid"] == pid)
}

fn reloads(e: &Exporter, result: &str) -> f64 {
    metric_value(&e.metrics(), "nodejs_leak_exporter_config_reloads_total", &[("result", result)]).unwrap()
}

fn post(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(70))).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), body.to_string())
}

#[test]
fn sighup_applies_a_good_file_and_keeps_running_on_a_bad_one() {
    let sleeper = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    std::fs::write(&file, "discovery:\n  include: []\n").unwrap();
    let e = Exporter::start(&[&format!("--config.file={}", file.display())]);
    let hup = || unsafe { libc::kill(e.pid(), libc::SIGHUP) };
    assert!(!watched(&e, sleeper.pid()));
    assert_eq!(reloads(&e, "success"), 0.0);

    // Good: the pid is watched from the next sample on, by the same exporter process.
    std::fs::write(&file, format!("discovery:\n  include: []\n  pids: [{}]\n", sleeper.pid())).unwrap();
    hup();
    wait_for("the reloaded configuration to watch the pid", Duration::from_secs(20), || {
        watched(&e, sleeper.pid()).then_some(())
    });
    assert_eq!(reloads(&e, "success"), 1.0);
    let first =
        metric_value(&e.metrics(), "nodejs_leak_exporter_config_last_reload_success_timestamp_seconds", &[]).unwrap();

    // Bad: refused, logged, counted; the running configuration stays.
    std::fs::write(&file, "discovery:\n  include:\n    - cmdline: '(oops'\n").unwrap();
    hup();
    wait_for("the failed reload to be counted", Duration::from_secs(20), || {
        (reloads(&e, "failure") == 1.0).then_some(())
    });
    let m = e.metrics();
    assert_eq!(metric_value(&m, "nodejs_leak_exporter_config_last_reload_successful", &[]), Some(0.0));
    assert_eq!(metric_value(&m, "nodejs_leak_exporter_config_last_reload_success_timestamp_seconds", &[]), Some(first));
    // The log is read from the exporter's stderr by another thread: wait for it too.
    wait_for("the failed reload to be logged with its reason", Duration::from_secs(5), || {
        let log = e.log();
        (log.contains("configuration reload failed") && log.contains("invalid regex")).then_some(())
    });
    assert!(watched(&e, sleeper.pid()), "the old configuration goes on");

    // What needs a restart is said and ignored; the rest applies.
    std::fs::write(&file, "leak:\n  windows: [2h]\ndiscovery:\n  include: []\n").unwrap();
    hup();
    wait_for("the pid to be dropped", Duration::from_secs(20), || {
        e.targets()["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["pid"] != sleeper.pid() || t["state"] == "exited")
            .then_some(())
    });
    wait_for("the restart-only field to be logged", Duration::from_secs(5), || {
        e.log().contains("needs a restart").then_some(())
    });
    assert!(e.log().contains("leak.windows"));
    let windows = e.metrics();
    assert!(!windows.contains("window=\"2h\""), "the running windows stay");
}

#[test]
fn post_reload_only_with_the_lifecycle_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    std::fs::write(&file, "leak:\n  grace_period: 10m\n").unwrap();
    let config = format!("--config.file={}", file.display());
    let without = Exporter::start(&[&config]);
    assert_eq!(post(&without.addr, "/-/reload").0, 403);
    assert_eq!(without.get("/-/reload").0, 405);

    let e = Exporter::start(&[&config, "--web.enable-lifecycle"]);
    assert_eq!(e.get("/-/reload").0, 405);
    std::fs::write(&file, "leak:\n  grace_period: 1m\n").unwrap();
    let (code, body) = post(&e.addr, "/-/reload");
    assert_eq!(code, 200, "{body}");
    std::fs::write(&file, "leak:\n  grace_period: 1m\n  windows: []\n").unwrap();
    let (code, body) = post(&e.addr, "/-/reload");
    assert_eq!(code, 500);
    assert!(body.contains("leak.windows"), "the error names the field: {body}");
    assert_eq!(reloads(&e, "success"), 1.0);
    assert_eq!(reloads(&e, "failure"), 1.0);
}

/// The web config is re-read on SIGHUP too: a new user is let in at once.
#[test]
fn sighup_reloads_the_web_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, users(4)).unwrap();
    let e = Launched::start(&[&format!("--web.config.file={}", web.display())]);
    let addr = e.addr.clone();
    let get = |auth: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(auth);
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {b}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw.split_whitespace().nth(1).unwrap().parse::<u16>().unwrap()
    };
    assert_eq!(get("alice:s3cret"), 200);
    assert_eq!(get("bob:hunter2"), 401);
    let text = format!("{}  bob: {}\n", users(4), bcrypt::hash("hunter2", 4).unwrap());
    std::fs::write(&web, text).unwrap();
    unsafe { libc::kill(e.child.id() as i32, libc::SIGHUP) };
    wait_for("bob to be let in", Duration::from_secs(10), || (get("bob:hunter2") == 200).then_some(()));
    // Turning TLS on needs a restart: refused, and the listener stays plain.
    std::fs::write(&web, "tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n").unwrap();
    unsafe { libc::kill(e.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload to fail", Duration::from_secs(10), || {
        e.log().contains("configuration reload failed").then_some(())
    });
    assert_eq!(get("bob:hunter2"), 200);
}

#[test]
fn sigterm_removes_what_was_injected_and_exits_in_time_despite_a_hanging_inspector() {
    let silent = FakeServer::silent();
    // One process whose only inspector candidate is the silent port, one with a real inspector.
    let Some(quiet) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let Some(app) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[]) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let probe = rt.block_on(open_session(app.pid));
    let listeners = "process.listenerCount('warning')";
    let before = rt.block_on(eval(&probe, listeners));
    let port = silent.port.to_string();
    let mut e = Exporter::start_for(&[quiet.pid, app.pid], &["--inspector.port", &port]);
    let pid = app.pid_label();
    wait_for("the inspector session", Duration::from_secs(20), || {
        (metric_value(&e.metrics(), "nodejs_inspector_connected", &[("pid", &pid)]) == Some(1.0)).then_some(())
    });
    e.wait_metric("nodejs_leak_exporter_collector_errors_total", &[("collector", "inspector"), ("reason", "timeout")]);
    assert_eq!(rt.block_on(eval(&probe, listeners)), serde_json::json!(before.as_i64().unwrap() + 1));
    let t = Instant::now();
    e.stop();
    // 8 s for the sampler and 2 s for the runtime at most; `stop` panics after 10 s.
    assert!(t.elapsed() < Duration::from_secs(10), "stopped after {:?}", t.elapsed());
    let after =
        rt.block_on(eval(&probe, &format!("[typeof globalThis[Symbol.for('nodejs-leak-exporter')], {listeners}]")));
    assert_eq!(after, serde_json::json!(["undefined", before]), "injected state and listener removed");
}

async fn open_session(pid: i32) -> Session {
    for addr in locate::listening_sockets(Path::new("/proc"), pid).unwrap() {
        if let Ok(path) = locate::probe(&DirectConnector, pid, addr, Duration::from_secs(2)).await {
            return Session::open(&DirectConnector, pid, addr, &path, Duration::from_secs(2)).await.unwrap().0;
        }
    }
    panic!("no inspector found for pid {pid}");
}

async fn eval(session: &Session, expression: &str) -> serde_json::Value {
    let params = serde_json::json!({"expression": expression, "returnByValue": true});
    let v = session.call("Runtime.evaluate", params, Duration::from_secs(5), 1 << 20).await.unwrap();
    v["result"]["value"].clone()
}
