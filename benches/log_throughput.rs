//! Log reader throughput: a 1 GiB log (access-log lines with a Node.js warning every 10,000
//! lines and a heap-OOM crash at the end) read through the same tail, joiner and parser the
//! logs collector uses, on one core, from the page cache. Prints a table; asserts nothing.
//!
//! `cargo bench --bench log_throughput` (NLE_BENCH_LOG_MIB=64 for a quick run).

use std::io::Write;
use std::time::Instant;

use nodejs_leak_exporter::collect::logs::format::{Format, Joiner};
use nodejs_leak_exporter::collect::logs::parse::{self, LogEvent};
use nodejs_leak_exporter::collect::logs::tail::Tail;

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: only `cargo bench`
    // (or `cargo run --release --bench ...` with `--bench`) measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not measuring: run with `cargo bench --bench <name>`");
        return;
    }
    let mib: usize = std::env::var("NLE_BENCH_LOG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut table = Vec::new();
    for (name, format) in [("plain (PM2, files)", Format::Plain), ("CRI (Kubernetes)", Format::Cri)] {
        let path = dir.path().join(format!("{}.log", name.split(' ').next().unwrap()));
        let written = write_log(&path, mib << 20, format);
        // Warm the page cache so the disk is not what is measured.
        let _ = std::fs::read(&path).map(|b| b.len());
        let mut tail = Tail::new(path.clone(), false, 64 * 1024);
        let mut joiner = Joiner::default();
        let (mut warnings, mut ooms) = (0u64, 0u64);
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        tail.poll(&mut |raw: &[u8]| {
            let Some(line) = joiner.feed(format, raw, 64 * 1024) else { return };
            if !parse::may_matter(&line) {
                return;
            }
            match parse::parse_line(&line) {
                Some(LogEvent::HeapOutOfMemory { .. }) => ooms += 1,
                Some(_) => warnings += 1,
                None => {}
            }
        })
        .expect("read");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let stats = tail.stats;
        assert_eq!(stats.bytes, written, "read everything");
        table.push(format!(
            "| {name} | {:.0} MiB | {} | {:.2} s | {:.2} s | {:.0} MB/s | {:.1} M lines/s | {warnings} | {ooms} |",
            written as f64 / (1 << 20) as f64,
            stats.lines,
            wall,
            cpu,
            written as f64 / 1e6 / wall,
            stats.lines as f64 / 1e6 / wall,
        ));
        std::fs::remove_file(&path).ok();
    }
    println!("| format | size | lines | wall | CPU | throughput | lines/s | warnings found | OOM crashes found |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in table {
        println!("{row}");
    }
}

/// Writes `bytes` of log: realistic access lines, a MaxListenersExceededWarning every 10,000
/// lines, other warnings, and one heap-OOM crash at the end.
fn write_log(path: &std::path::Path, bytes: usize, format: Format) -> u64 {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut written = 0usize;
    let mut i = 0u64;
    let prefix = |stream: &str| match format {
        Format::Cri => format!("2025-05-24T03:00:00.123456789Z {stream} F "),
        _ => String::new(),
    };
    while written < bytes {
        let line = if i % 10_000 == 9_999 {
            format!("{}(node:4242) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners added to [IncomingMessage]. MaxListeners is 10. Use emitter.setMaxListeners() to increase limit\n", prefix("stderr"))
        } else if i % 25_000 == 24_999 {
            format!("{}(node:4242) [DEP0005] DeprecationWarning: Buffer() is deprecated due to security and usability issues.\n", prefix("stderr"))
        } else {
            format!(
                "{}::ffff:10.0.{}.{} - - [24/May/2025:03:00:00 +0000] \"GET /api/users/{} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0\" rt=0.{:03}\n",
                prefix("stdout"),
                i % 256,
                (i * 7) % 256,
                i,
                512 + i % 4096,
                i % 1000
            )
        };
        out.write_all(line.as_bytes()).expect("write");
        written += line.len();
        i += 1;
    }
    let crash = format!(
        "{}FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n",
        prefix("stderr")
    );
    out.write_all(crash.as_bytes()).expect("write");
    written += crash.len();
    out.flush().expect("flush");
    written as u64
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}
