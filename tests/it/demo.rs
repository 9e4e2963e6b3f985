//! `nodejs-leak-exporter demo` end to end: the real binary, its bundled apps, traffic and database.
//! While it runs, its `/metrics` must flag the leaky app on the heap and on sockets and count its
//! close-listener warning, and never flag the fixed twin; its final output must say the same; and
//! nothing it started may outlive it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util;

/// GET that returns None while nothing listens yet (the demo starts its apps first).
fn try_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[test]
fn the_demo_flags_the_leaky_app_on_its_three_bugs_and_the_fixed_twin_on_nothing() {
    let Some(node) = util::node() else { return };
    let addr = format!("127.0.0.1:{}", util::free_port());
    let mut demo = Command::new(util::exporter_bin())
        .args(["demo", "--duration", "150s", "--web.listen-address", &addr, "--log.level=warn"])
        .arg("--node")
        .arg(&node)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let output = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> =
        [Box::new(demo.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(demo.stderr.take().unwrap())]
            .into_iter()
            .map(|stream| {
                let output = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        let mut out = output.lock().unwrap();
                        out.push_str(&line);
                        out.push('\n');
                    }
                })
            })
            .collect();
    let started = Instant::now();
    let text = || output.lock().unwrap().clone();

    // The two apps as the exporter names them.
    let targets = util::wait_for("the demo's two apps on /api/v1/targets", Duration::from_secs(60), || {
        let body = try_get(&addr, "/api/v1/targets")?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let pid = |app: &str| json["targets"].as_array()?.iter().find(|t| t["app"] == app)?["pid"].as_i64();
        Some((pid("leaky")?, pid("fixed")?))
    });
    let (leaky, fixed) = targets;

    // Poll /metrics until the demo ends: the leaky app must be flagged on the heap and on sockets
    // with its close-listener warning counted; the fixed twin must never be flagged.
    let mut leaky_flagged_after = None;
    let mut last = String::new();
    let deadline = started + Duration::from_secs(200);
    while demo.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop within 200s; output:\n{}", text());
        if let Some(m) = try_get(&addr, "/metrics") {
            let wrong = util::flagged_signals(&m, fixed);
            assert!(wrong.is_empty(), "the fixed app flagged on {wrong:?}; metrics:\n{m}\noutput:\n{}", text());
            let signals = util::flagged_signals(&m, leaky);
            let warnings = util::metric_value(
                &m,
                "nodejs_max_listeners_exceeded_warnings_total",
                &[("pid", &leaky.to_string()), ("event", "close"), ("emitter", "Socket")],
            );
            if leaky_flagged_after.is_none()
                && ["heap_used", "sockets"].iter().all(|s| signals.iter().any(|f| f == s))
                && warnings.is_some_and(|w| w >= 1.0)
            {
                leaky_flagged_after = Some(started.elapsed());
            }
            last = m;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = demo.wait().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let out = text();
    assert!(status.success(), "the demo failed ({status}); output:\n{out}");
    let flagged_after = leaky_flagged_after.unwrap_or_else(|| {
        panic!("the leaky app was never flagged on heap_used and sockets with its warning; last metrics:\n{last}\noutput:\n{out}")
    });
    eprintln!("leaky flagged on heap_used and sockets {flagged_after:?} after the demo started");

    // The demo's own account says the same.
    let line = |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
    let leaky_line = line("leaky: ").unwrap_or_else(|| panic!("no summary line for leaky; output:\n{out}"));
    for want in ["leak suspected on", "heap_used (first after", "sockets (first after", "close listeners on Socket"] {
        assert!(leaky_line.contains(want), "leaky's summary lacks {want:?}: {leaky_line}\noutput:\n{out}");
    }
    let fixed_line = line("fixed: ").unwrap_or_else(|| panic!("no summary line for fixed; output:\n{out}"));
    assert!(fixed_line.starts_with("fixed: no leak suspected; warnings: none"), "{fixed_line}\noutput:\n{out}");
    assert!(out.contains("leaky: LEAK on heap_used") && out.contains("likely cause:"), "{out}");
    assert!(out.contains("Conclusion reached after"), "no conclusion within 150s; output:\n{out}");

    // Nothing it started outlives it: both apps are gone, and their directory.
    for pid in [leaky, fixed] {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains("app.js"), "app pid {pid} survived the demo");
    }
    let dir = std::env::temp_dir().join(format!("nodejs-leak-exporter-demo-{}-0", demo.id()));
    assert!(!dir.exists(), "{} survived the demo", dir.display());
}
