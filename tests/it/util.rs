//! Test helpers in one place: real Node.js apps, the real exporter binary, a plain HTTP client,
//! bounded waits, cgroups, and finding the real tools (which must exist under CI=true).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_app(name: &str) -> PathBuf {
    repo().join("tests/fixtures/apps").join(name)
}

/// Finds a tool on PATH. Missing under CI=true is a failure; elsewhere the test is skipped
/// with a message saying how to install it.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    match found {
        Some(p) => Some(p),
        None if ci() => panic!("{name} is required under CI=true but is not on PATH; run scripts/install-test-deps.sh"),
        None => {
            eprintln!("SKIP: {name} not found (scripts/install-test-deps.sh installs it)");
            None
        }
    }
}

/// The node binary: `NODE_BIN` when set (other majors), else `node` on PATH.
pub fn node() -> Option<PathBuf> {
    match std::env::var_os("NODE_BIN") {
        Some(p) => Some(PathBuf::from(p)),
        None => require_tool("node"),
    }
}

/// PM2 from npm, installed by scripts/install-test-deps.sh under target/npm-tools.
pub fn pm2() -> Option<PathBuf> {
    let p = repo().join("target/npm-tools/node_modules/.bin/pm2");
    if p.exists() {
        return Some(p);
    }
    assert!(!ci(), "pm2 is required under CI=true but {} is missing; run scripts/install-test-deps.sh", p.display());
    eprintln!("SKIP: pm2 not installed (scripts/install-test-deps.sh installs it)");
    None
}

/// Whether we may do root-only things (cgroups, setpriv to another user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Root-only cases: a failure under CI (which runs as root), a skip elsewhere.
pub fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!ci(), "{what} needs root, and CI runs as root");
    eprintln!("SKIP: {what} needs root");
    false
}

/// Polls `check` until it returns Some, or panics after `timeout` with `what` and `context()`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running Node.js app, killed on drop.
pub struct NodeApp {
    pub child: Child,
    pub pid: i32,
    stdin: Option<ChildStdin>,
    stdout: std::sync::mpsc::Receiver<String>,
}

impl NodeApp {
    /// Starts `cmd` (whose stdout prints `ready`, or `ready <details>`, once set up) and waits for
    /// that line.
    pub fn start(mut cmd: Command) -> NodeApp {
        // The inspector prints "Debugger attached." on every attach: keep test output readable.
        let stderr = if std::env::var_os("NLE_TEST_APP_STDERR").is_some() { Stdio::inherit() } else { Stdio::null() };
        cmd.stdout(Stdio::piped()).stdin(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.trim() == "ready" || line.starts_with("ready ") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!("{cmd:?} did not print 'ready' within 20s");
                }
            }
        }
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        NodeApp { child, pid, stdin, stdout: rx }
    }

    /// `node <fixture> args...` with extra environment.
    pub fn fixture(name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<NodeApp> {
        NodeApp::with_node_args(&[], name, args, env)
    }

    /// `node <node_args> <fixture> args...` with extra environment.
    pub fn with_node_args(node_args: &[&str], name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<NodeApp> {
        let node = node()?;
        let mut cmd = Command::new(node);
        cmd.args(node_args).arg(fixture_app(name)).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Some(NodeApp::start(cmd))
    }

    /// Waits for a line on the app's stdout that starts with `prefix`; returns the rest.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(_) => panic!("the app did not print a line starting with {prefix:?} within {timeout:?}"),
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid, sig) };
    }

    pub fn pid_label(&self) -> String {
        self.pid.to_string()
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to app stdin");
        stdin.flush().expect("flush app stdin");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the app to exit on its own (bounded).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for("the app to exit", timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The exporter binary under test, killed on drop.
pub struct Exporter {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
    _config_dir: Option<tempfile::TempDir>,
}

pub fn exporter_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nodejs-leak-exporter"))
}

impl Exporter {
    /// Starts the exporter on a random loopback port with fast sampling and no minimum age,
    /// discovering every Node.js process on the host, then `args` (later flags win).
    ///
    /// Tests run in parallel and each one's exporter sees every other test's processes: this one
    /// leaves inspectors alone (`--collector.inspector` in `args` turns it back on), so it never
    /// touches what an inspector test injects or measures. Inspector tests use [`start_for`].
    pub fn start(args: &[&str]) -> Exporter {
        let mut all = vec!["--no-collector.inspector"];
        all.extend_from_slice(args);
        Exporter::start_with(Command::new(exporter_bin()), &all)
    }

    /// Starts the exporter watching only `pids` (no discovery matchers), with every collector.
    pub fn start_for(pids: &[i32], args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("only.yml");
        let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        std::fs::write(&file, format!("discovery:\n  include: []\n  pids: [{}]\n", list.join(", "))).unwrap();
        let flag = format!("--config.file={}", file.display());
        let mut all = vec![flag.as_str()];
        all.extend_from_slice(args);
        let mut e = Exporter::start_with(Command::new(exporter_bin()), &all);
        e._config_dir = Some(dir);
        e
    }

    /// Starts the exporter as [`Exporter::start`] does, with the inspector collector, watching the
    /// processes whose command line matches `cmdline` (a discovery matcher), then `args`.
    pub fn start_matching(cmdline: &str, args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yml");
        std::fs::write(&file, format!("discovery:\n  include:\n    - cmdline: '{cmdline}'\n")).unwrap();
        let flag = format!("--config.file={}", file.display());
        let mut all = vec!["--collector.inspector", flag.as_str()];
        all.extend_from_slice(args);
        let mut e = Exporter::start(&all);
        e._config_dir = Some(dir);
        e
    }

    /// As `start`, with a prepared command (e.g. `setpriv ... exporter`).
    pub fn start_with(cmd: Command, args: &[&str]) -> Exporter {
        let exporter = Exporter::listening(cmd, args);
        wait_for("the exporter's first sample", Duration::from_secs(20), || {
            (exporter.get("/-/ready").0 == 200).then_some(())
        });
        exporter
    }

    /// As `start_with`, returning once the exporter listens, without asking whether it is ready:
    /// over plain HTTP, which a TLS listener refuses.
    pub fn listening(mut cmd: Command, args: &[&str]) -> Exporter {
        cmd.args([
            "--web.listen-address=127.0.0.1:0",
            "--sample.interval=200ms",
            "--discovery.min-age=0s",
            "--log.format=json",
            "--log.level=debug",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the exporter {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ = tx.send(v["fields"]["address"].as_str().unwrap_or_default().to_string());
                    }
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("exporter did not start listening within 20s; log:\n{}", log.lock().unwrap());
            }
        };
        Exporter { child, addr, log, _config_dir: None }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// GET over plain HTTP/1.1; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    pub fn targets(&self) -> serde_json::Value {
        let (status, body) = self.get("/api/v1/targets");
        assert_eq!(status, 200, "GET /api/v1/targets: {body}");
        serde_json::from_str(&body).expect("targets JSON")
    }

    pub fn target(&self, pid: i32) -> Option<serde_json::Value> {
        self.targets()["targets"].as_array()?.iter().find(|t| t["pid"] == pid).cloned()
    }

    /// Waits until a series of `name` with the given labels appears and returns its value.
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let what = format!("{name}{labels:?}");
        let mut last;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            last = self.metrics();
            if let Some(v) = metric_value(&last, name, labels) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last metrics:\n{last}\nlog:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the `close` listener leak of listeners.js is counted for `pid`, under both
    /// warning counters; returns the listener count.
    pub fn wait_close_listener_leak(&self, pid: &str) -> f64 {
        let n = self.wait_metric(
            "nodejs_max_listeners_exceeded_warnings_total",
            &[("pid", pid), ("event", "close"), ("emitter", "IncomingMessage")],
        );
        assert!(n >= 1.0);
        let warnings =
            self.wait_metric("nodejs_warnings_total", &[("pid", pid), ("name", "MaxListenersExceededWarning")]);
        assert!(warnings >= 1.0);
        n
    }

    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("exporter did not stop within 10s of SIGTERM");
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_string())
}

/// A request with an empty body over plain HTTP/1.1; returns (status, body bytes).
pub fn http_request(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response");
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, raw[end + 4..].to_vec())
}

/// Parses the labels of one exposition line into pairs.
pub fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim().to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &rest[end..];
    }
    out
}

/// The value of the first series of `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(text, name)
        .into_iter()
        .find_map(|(l, v)| labels.iter().all(|(k, want)| l.iter().any(|(lk, lv)| lk == k && lv == want)).then_some(v))
}

/// Every series of `name`: (labels, value).
pub fn series(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match head.find('{') {
                Some(i) => (&head[..i], parse_labels(&head[i + 1..head.len() - 1])),
                None => (head, Vec::new()),
            };
            (metric == name).then(|| Some((labels, value.parse().ok()?))).flatten()
        })
        .collect()
}

/// Runs `promtool check metrics` on an exposition and fails with its report and the text.
pub fn promtool_check(promtool: &Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n--- metrics:\n{text}"
    );
}

/// A free loopback port (bound then released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP server on a loopback port that accepts connections and never answers, or answers every
/// request with a fixed HTTP response; it stops when dropped.
pub struct FakeServer {
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeServer {
    pub fn silent() -> FakeServer {
        FakeServer::start(None)
    }

    pub fn http(response: &'static str) -> FakeServer {
        FakeServer::start(Some(response))
    }

    fn start(response: Option<&'static str>) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        if let Some(r) = response {
                            let mut buf = [0u8; 4096];
                            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                            let _ = s.read(&mut buf);
                            let _ = s.write_all(r.as_bytes());
                        } else {
                            held.push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeServer { port, stop }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A memory cgroup made for one test (v1 or v2), removed on drop.
pub struct Cgroup {
    pub dir: PathBuf,
}

impl Cgroup {
    pub fn create(name: &str, limit_bytes: u64) -> Cgroup {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
        let v1 = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            c.split(',').any(|c| c == "memory").then(|| path.to_string())
        });
        let (dir, limit_file) = match v1 {
            Some(path) => (
                Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')).join(name),
                "memory.limit_in_bytes",
            ),
            None => (Path::new("/sys/fs/cgroup").join(name), "memory.max"),
        };
        if dir.exists() {
            let _ = std::fs::remove_dir(&dir);
        }
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
        std::fs::write(dir.join(limit_file), limit_bytes.to_string())
            .unwrap_or_else(|e| panic!("set {} in {}: {e}", limit_file, dir.display()));
        Cgroup { dir }
    }

    /// A command that joins this cgroup and then execs `node args...`.
    pub fn command(&self, node: &Path, args: &[&Path]) -> Command {
        let mut cmd = Command::new("sh");
        let mut script = format!("echo $$ > '{}/cgroup.procs' && exec '{}'", self.dir.display(), node.display());
        for a in args {
            script.push_str(&format!(" '{}'", a.display()));
        }
        cmd.arg("-c").arg(script);
        cmd
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes must be gone before the directory can go; give the kernel a moment.
        let _ = wait_for_removal(&self.dir);
    }
}

fn wait_for_removal(dir: &Path) -> Result<(), std::io::Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The signals `nodejs_leak_suspected` flags for `pid` in a scrape.
pub fn flagged_signals(metrics: &str, pid: impl ToString) -> std::collections::BTreeSet<String> {
    let pid = pid.to_string();
    series(metrics, "nodejs_leak_suspected")
        .into_iter()
        .filter(|(labels, v)| *v == 1.0 && labels.iter().any(|(k, val)| k == "pid" && *val == pid))
        .filter_map(|(labels, _)| labels.into_iter().find(|(k, _)| k == "signal").map(|(_, s)| s))
        .collect()
}
