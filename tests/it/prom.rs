//! Real Prometheus and Alertmanager (Debian's packages) for the tests: started on loopback ports
//! with temporary configuration and data, queried over their HTTP APIs, killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util;

/// A child process with its log, killed on drop.
pub struct Server {
    child: Mutex<Child>,
    pub addr: String,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(mut cmd: Command, addr: String, dir: tempfile::TempDir, ready_path: &str) -> Server {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let server = Server { child: Mutex::new(child), addr, log, _dir: dir };
        util::wait_for(&format!("{ready_path} of {cmd:?}"), Duration::from_secs(30), || {
            if let Ok(Some(status)) = server.child.lock().unwrap().try_wait() {
                panic!("{cmd:?} exited with {status}:\n{}", server.log());
            }
            let ok =
                std::net::TcpStream::connect(&server.addr).is_ok() && util::http_get(&server.addr, ready_path).0 == 200;
            ok.then_some(())
        });
        server
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts Prometheus with `config` (YAML; `rule_files` may name files written into its
/// directory by `files`), scraping and evaluating as fast as the config says.
pub fn prometheus(config: &str, files: &[(&str, &str)]) -> Option<Server> {
    let bin = util::require_tool("prometheus")?;
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let addr = format!("127.0.0.1:{}", util::free_port());
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        // Prometheus sends an alert again only after this delay (1m by default), and alerts raised
        // before its notifier has found the Alertmanager are dropped.
        .arg("--rules.alert.resend-delay=1s")
        .arg("--log.level=warn")
        .current_dir(dir.path());
    Some(Server::start(cmd, addr, dir, "/-/ready"))
}

/// Starts Alertmanager with `config` (clustering off).
pub fn alertmanager(config: &str) -> Option<Server> {
    let bin = util::require_tool("prometheus-alertmanager")?;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("alertmanager.yml");
    std::fs::write(&config_path, config).unwrap();
    let addr = format!("127.0.0.1:{}", util::free_port());
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .current_dir(dir.path());
    Some(Server::start(cmd, addr, dir, "/-/ready"))
}

/// An instant query; returns the `data.result` array.
pub fn query(server: &Server, promql: &str) -> Vec<serde_json::Value> {
    let (status, body) = util::http_get(&server.addr, &format!("/api/v1/query?query={}", encode(promql)));
    assert_eq!(status, 200, "query {promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Percent-encodes a query parameter.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP receiver on loopback that records the body of every POST, by path, and answers 202
/// as PagerDuty's Events API does.
pub struct Receiver {
    pub port: u16,
    received: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    if let Some((path, body)) = read_request(&mut stream) {
                        store.lock().unwrap().push((path, body));
                        let _ = stream.write_all(
                            b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 19\r\nConnection: close\r\n\r\n{\"status\":\"success\"}",
                        );
                    }
                });
            }
        });
        Receiver { port, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every body received so far on `path`, parsed as JSON.
    pub fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .filter_map(|(_, b)| serde_json::from_str(b).ok())
            .collect()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, String::from_utf8_lossy(&body).into_owned()))
}

/// A path inside a temporary directory that lives as long as the returned guard.
pub fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}
