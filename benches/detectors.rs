//! Detector benchmark (issue 6): detection delay on leaking traces and false alerts per 24 h on
//! healthy ones, for this project's verdict and three rules people use today:
//! - `deriv(nodejs_heap_size_used_bytes[1h]) > 0` for 15m, and
//! - `predict_linear(nodejs_heap_size_used_bytes[1h], 4*3600) > 2 GiB` for 15m, both evaluated by
//!   a real Prometheus on the same samples (written as OpenMetrics, loaded with
//!   `promtool tsdb create-blocks-from openmetrics`, queried with `/api/v1/query_range` at the
//!   1 minute evaluation interval; `for:` applied as the rule manager does: firing once the
//!   expression held at every evaluation for 15 minutes, reset by one evaluation without it);
//! - node-memwatch's `leak` event: the heap after a full GC grew across five consecutive full GCs
//!   (its counter then starts over), on the post-GC sizes the trace records.
//!
//! The traces come from tests/corpus/synth.rs (the corpus the tests draw from) and
//! tests/corpus/recorded/. Prints markdown tables; asserts nothing.
//!
//! `cargo bench --bench detectors` (a few minutes; `-- --quick` for a smaller corpus,
//! `-- --no-prometheus` without the PromQL rules). `DETECTORS_SEED` fixes the draws (default 1).

#[path = "../tests/corpus/synth.rs"]
mod synth;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodejs_leak_exporter::config::LeakConfig;
use nodejs_leak_exporter::leak::{LeakSettings, Signal};
use nodejs_leak_exporter::trace::{self, Trace};

use synth::Params;

const HOUR: f64 = 3600.0;
const ONSET: f64 = HOUR;
const AFTER_ONSET: f64 = 8.0 * HOUR;
const RATES: [f64; 4] = [0.25, 0.5, 1.0, 2.0];
const GC_PERIODS: [f64; 6] = [10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
const DERIV: &str = "deriv(nodejs_heap_size_used_bytes[1h]) > 0";
const PREDICT: &str = "predict_linear(nodejs_heap_size_used_bytes[1h], 4*3600) > 2147483648";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Detector {
    Ours,
    OursSamplesOnly,
    Deriv,
    Predict,
    Memwatch,
}

impl Detector {
    const ALL: [Detector; 5] =
        [Detector::Ours, Detector::OursSamplesOnly, Detector::Deriv, Detector::Predict, Detector::Memwatch];

    fn name(self) -> &'static str {
        match self {
            Detector::Ours => "this exporter (`nodejs_leak_suspected`)",
            Detector::OursSamplesOnly => "this exporter, heap samples only (no GC observer)",
            Detector::Deriv => "`deriv(heap_used[1h]) > 0` for 15m",
            Detector::Predict => "`predict_linear(heap_used[1h], 4h) > 2 GiB` for 15m",
            Detector::Memwatch => "node-memwatch `leak` (5 growing full GCs)",
        }
    }
}

/// One trace of the benchmark and what it is.
struct Case {
    id: String,
    trace: Trace,
    kind: CaseKind,
    /// The parameters it was drawn from, or the file it was read from.
    what: String,
}

#[derive(Clone, PartialEq)]
enum CaseKind {
    /// A heap leak of `rate` MiB/min under a 50 MiB sawtooth with a `gc` s GC period, from ONSET.
    Leak { rate: f64, gc: f64 },
    /// A recorded leaking app (delay from its start's grace period end).
    RecordedLeak,
    /// Healthy, in a group of the false-alert table.
    Healthy(&'static str),
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: only `cargo bench`
    // (or `cargo run --release --bench ...` with `--bench`) measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not measuring: run with `cargo bench --bench <name>`");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let with_prometheus = !args.iter().any(|a| a == "--no-prometheus");
    let seed: u64 = std::env::var("DETECTORS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let (seeds, healthy_days, burst_days) = if quick { (1, 6, 2) } else { (3, 30, 10) };

    let mut cases = Vec::new();
    for rate in RATES {
        for gc in GC_PERIODS {
            for i in 0..seeds {
                let s = seed * 1_000_003 + (rate * 100.0) as u64 * 1000 + gc as u64 * 10 + i;
                let p = synth::target_case(s, ONSET + AFTER_ONSET, true, 50.0, gc, rate, ONSET);
                cases.push(Case {
                    id: format!("leak-{rate}-{gc}-{i}"),
                    trace: synth::generate(&p),
                    kind: CaseKind::Leak { rate, gc },
                    what: p.describe(),
                });
            }
        }
    }
    for i in 0..healthy_days {
        let p = Params::healthy(seed * 7_919 + 100 + i, 24.0 * HOUR);
        cases.push(Case {
            id: format!("healthy-{i}"),
            trace: synth::generate(&p),
            kind: CaseKind::Healthy("synthetic"),
            what: p.describe(),
        });
    }
    for i in 0..burst_days {
        let p = Params::long_bursts(seed * 7_919 + 500 + i, 24.0 * HOUR);
        cases.push(Case {
            id: format!("bursts-{i}"),
            trace: synth::generate(&p),
            kind: CaseKind::Healthy("long bursts"),
            what: p.describe(),
        });
    }
    let recorded = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/recorded");
    for name in ["healthy-fixed", "healthy-bursty", "healthy-warmup", "healthy-low-traffic"] {
        let full = read(&recorded.join(format!("{name}.csv")));
        cases.push(Case {
            id: format!("day-{name}"),
            trace: synth::assembled_day(&full),
            kind: CaseKind::Healthy("recorded"),
            what: format!("{name}.csv, its steady part repeated to 24 h"),
        });
    }
    for name in ["leak-heap-map-1mib", "leak-heap-map-slow", "leak-heap-listeners", "leak-external-buffer"] {
        cases.push(Case {
            id: format!("rec-{name}"),
            trace: read(&recorded.join(format!("{name}.csv"))),
            kind: CaseKind::RecordedLeak,
            what: format!("{name}.csv"),
        });
    }
    let samples: usize = cases.iter().map(|c| c.trace.samples.len()).sum();
    eprintln!("{} traces, {samples} samples (seed {seed})", cases.len());

    // Alerts: per detector and case, when each alert fired and stopped (s from the trace's start).
    let mut alerts: Alerts = BTreeMap::new();
    let mut any_signal: BTreeMap<String, usize> = BTreeMap::new();
    let mut raised: BTreeMap<String, String> = BTreeMap::new();
    let t0 = Instant::now();
    for c in &cases {
        let (heap, all, which) = ours(&c.trace);
        alerts.insert((Detector::Ours, c.id.clone()), heap);
        any_signal.insert(c.id.clone(), all);
        raised.insert(c.id.clone(), which);
    }
    let ours_time = t0.elapsed().as_secs_f64();
    for c in &cases {
        let mut stripped = c.trace.clone();
        for s in &mut stripped.samples {
            s.heap_after_gc = None;
            s.major_gcs = None;
        }
        alerts.insert((Detector::OursSamplesOnly, c.id.clone()), ours(&stripped).0);
        alerts.insert((Detector::Memwatch, c.id.clone()), memwatch(&c.trace));
    }
    if with_prometheus {
        match promql(&cases) {
            Ok(fired) => {
                for ((rule, id), times) in fired {
                    alerts.insert((rule, id), times);
                }
            }
            Err(e) => eprintln!("PromQL rules skipped: {e}"),
        }
    }

    println!("Corpus: {} traces, {samples} samples at 5 s (seed {seed}).", cases.len());
    println!(
        "This exporter replayed them at {:.1} µs per sample (six signals, three windows; one core, release build).\n",
        ours_time * 1e6 / samples as f64
    );
    let detectors: Vec<Detector> = Detector::ALL.into_iter().filter(|d| alerts.keys().any(|(x, _)| x == d)).collect();

    println!("Detection delay, minutes from the leak's onset (1 h after start) until an alert is firing (0: one already was); median of {seeds} draw(s); 50 MiB sawtooth; `—`: none within 8 h.\n");
    print!("| rate | detector |");
    for gc in GC_PERIODS {
        print!(" GC {} |", fmt_period(gc));
    }
    println!();
    print!("|---|---|");
    for _ in GC_PERIODS {
        print!("---:|");
    }
    println!();
    for rate in RATES {
        for d in &detectors {
            print!("| {rate} MiB/min | {} |", d.name());
            for gc in GC_PERIODS {
                let mut delays: Vec<f64> = cases
                    .iter()
                    .filter(|c| c.kind == CaseKind::Leak { rate, gc })
                    .map(|c| delay(&alerts[&(*d, c.id.clone())], ONSET).map_or(f64::INFINITY, |t| t / 60.0))
                    .collect();
                delays.sort_by(f64::total_cmp);
                let median = delays[delays.len() / 2];
                if median.is_finite() {
                    print!(" {median:.0} |");
                } else {
                    print!(" — |");
                }
            }
            println!();
        }
    }

    println!("\nFalse alerts per 24 h on healthy processes (alerts that started, summed over the days, divided by the days).\n");
    let groups = ["synthetic", "recorded", "long bursts"];
    print!("| detector |");
    for g in groups {
        let days: f64 =
            cases.iter().filter(|c| c.kind == CaseKind::Healthy(g)).map(|c| duration(&c.trace) / (24.0 * HOUR)).sum();
        print!(" {g} ({days:.0} days) |");
    }
    println!();
    println!("|---|---:|---:|---:|");
    for d in &detectors {
        print!("| {} |", d.name());
        for g in groups {
            print!(" {} |", per_day(&cases, g, |c| alerts[&(*d, c.id.clone())].len()));
        }
        println!();
    }
    print!("| this exporter, any of its six signals |");
    for g in groups {
        print!(" {} |", per_day(&cases, g, |c| any_signal[&c.id]));
    }
    println!();

    println!("\nHealthy traces with a false alert of this exporter's (`+signal@minute`):\n");
    for c in cases.iter().filter(|c| matches!(c.kind, CaseKind::Healthy(_)) && any_signal[&c.id] > 0) {
        let (CaseKind::Healthy(group), Some(changes)) = (&c.kind, raised.get(&c.id)) else { continue };
        println!("- {group}: {} — {changes}", c.what);
    }

    println!("\nRecorded apps (80 minutes at 5 s, tests/corpus/recorded/): minutes from the start to the first heap alert; the grace period is the first 10.\n");
    print!("| app |");
    for d in &detectors {
        print!(" {} |", d.name());
    }
    println!();
    print!("|---|");
    for _ in &detectors {
        print!("---:|");
    }
    println!();
    for c in cases.iter().filter(|c| c.kind == CaseKind::RecordedLeak) {
        print!("| {} |", c.id.trim_start_matches("rec-"));
        for d in &detectors {
            match alerts[&(*d, c.id.clone())].first() {
                Some((t, _)) => print!(" {:.0} |", t / 60.0),
                None => print!(" — |"),
            }
        }
        println!();
    }
}

fn fmt_period(s: f64) -> String {
    if s >= 60.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

fn per_day(cases: &[Case], group: &'static str, count: impl Fn(&Case) -> usize) -> String {
    let (mut n, mut days) = (0usize, 0.0);
    for c in cases.iter().filter(|c| c.kind == CaseKind::Healthy(group)) {
        n += count(c);
        days += duration(&c.trace) / (24.0 * HOUR);
    }
    if days == 0.0 {
        return "—".into();
    }
    format!("{:.2}", n as f64 / days)
}

fn duration(t: &Trace) -> f64 {
    t.samples.last().map_or(0.0, |l| l.time - t.samples[0].time)
}

/// Seconds from `onset` until an alert is firing: zero when one already is.
fn delay(alerts: &[(f64, f64)], onset: f64) -> Option<f64> {
    alerts.iter().find(|(_, end)| *end >= onset).map(|(start, _)| (start - onset).max(0.0))
}

fn read(path: &Path) -> Trace {
    trace::read_file(path, Signal::HeapUsed).unwrap_or_else(|e| panic!("{}: {e}", path.display())).remove(0)
}

/// This exporter's verdicts: when the heap verdict was up, how many times any signal's rose,
/// and which (`+signal@minute`, the first few).
fn ours(t: &Trace) -> (Vec<(f64, f64)>, usize, String) {
    let s = LeakSettings::new(&LeakConfig::default(), Duration::from_secs(5));
    let t0 = t.samples[0].time;
    let mut up = [false; 6];
    let (mut heap, mut any, mut which) = (Vec::new(), 0, Vec::new());
    trace::replay(t, &s, 0.0, |sample, state| {
        for (i, signal) in Signal::ALL.into_iter().enumerate() {
            let now = state.suspected(signal);
            if now && !up[i] {
                any += 1;
                if which.len() < 6 {
                    which.push(format!("+{}@{:.0}", signal.as_label(), (sample.time - t0) / 60.0));
                }
                if signal == Signal::HeapUsed {
                    heap.push((sample.time - t0, f64::INFINITY));
                }
            }
            if !now && up[i] && signal == Signal::HeapUsed {
                if let Some(last) = heap.last_mut() {
                    last.1 = sample.time - t0;
                }
            }
            up[i] = now;
        }
    });
    (heap, any, which.join(" "))
}

/// node-memwatch's leak event (lloyd/node-memwatch, src/memwatch.cc): at each full GC, if the
/// heap right after it is larger than after the previous one, a counter grows, else it starts
/// over; at 5 the event fires and the counter starts over. A new pid is a new process.
fn memwatch(t: &Trace) -> Vec<(f64, f64)> {
    let t0 = t.samples[0].time;
    let (mut last_base, mut growth, mut last_count, mut pid) = (0.0, 0u32, 0u64, None);
    let mut events = Vec::new();
    for s in &t.samples {
        if s.pid != pid {
            (last_base, growth, last_count, pid) = (0.0, 0, 0, s.pid);
        }
        let (Some(after), Some(count)) = (s.heap_after_gc, s.major_gcs) else { continue };
        if count <= last_count {
            continue;
        }
        last_count = count;
        if after > last_base {
            growth += 1;
            if growth >= 5 {
                growth = 0;
                events.push((s.time - t0, s.time - t0));
            }
        } else {
            growth = 0;
        }
        last_base = after;
    }
    events
}

/// When each alert fired and stopped (seconds from the trace's start), per detector and case.
type Alerts = BTreeMap<(Detector, String), Vec<(f64, f64)>>;

/// The two PromQL rules, evaluated by a real Prometheus over blocks made from the cases'
/// heap samples. Returns when each alert fired and stopped, per rule and case.
fn promql(cases: &[Case]) -> Result<Alerts, String> {
    let promtool = which("promtool").ok_or("promtool not on PATH (scripts/install-test-deps.sh)")?;
    let prometheus = which("prometheus").ok_or("prometheus not on PATH (scripts/install-test-deps.sh)")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Whole minutes, three days back: every trace starts at `base`; blocks in the past.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let base = ((now - 3.0 * 24.0 * HOUR) / 60.0).floor() * 60.0;
    let om = dir.path().join("heap.om");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&om).map_err(|e| e.to_string())?);
    let w = |e: std::io::Error| e.to_string();
    writeln!(out, "# TYPE nodejs_heap_size_used_bytes gauge").map_err(w)?;
    let mut end: f64 = base;
    for c in cases {
        let t0 = c.trace.samples[0].time;
        for s in &c.trace.samples {
            let Some(v) = s.value(Signal::HeapUsed) else { continue };
            let t = base + (s.time - t0);
            end = end.max(t);
            let pid = s.pid.unwrap_or(0);
            writeln!(out, "nodejs_heap_size_used_bytes{{trace=\"{}\",pid=\"{pid}\"}} {v:.0} {t:.3}", c.id)
                .map_err(w)?;
        }
    }
    writeln!(out, "# EOF").map_err(w)?;
    out.flush().map_err(w)?;
    drop(out);
    let blocks = dir.path().join("data");
    let status = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&om)
        .arg(&blocks)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("promtool tsdb create-blocks-from openmetrics failed: {status}"));
    }
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  evaluation_interval: 1m\nscrape_configs: []\n").map_err(|e| e.to_string())?;
    let server = Server(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", blocks.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=10y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(port, "/-/ready").is_ok_and(|b| b.contains("Ready")) {
        if Instant::now() > deadline {
            return Err("prometheus not ready within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut fired = BTreeMap::new();
    for (rule, expr) in [(Detector::Deriv, DERIV), (Detector::Predict, PREDICT)] {
        // One query per trace keeps each answer small; the evaluation grid is every minute from
        // the common start.
        for c in cases {
            let start = base;
            let stop = base + duration(&c.trace);
            let selector = expr
                .replace("nodejs_heap_size_used_bytes", &format!("nodejs_heap_size_used_bytes{{trace=\"{}\"}}", c.id));
            let path = format!("/api/v1/query_range?query={}&start={start}&end={stop}&step=60", encode(&selector));
            let body = get(port, &path)?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body:.200}"))?;
            if v["status"] != "success" {
                return Err(format!("query failed: {body:.300}"));
            }
            let mut times = Vec::new();
            for series in v["data"]["result"].as_array().into_iter().flatten() {
                let points: Vec<f64> =
                    series["values"].as_array().into_iter().flatten().filter_map(|p| p[0].as_f64()).collect();
                times.extend(for_15m(&points, 60.0).into_iter().map(|(a, b)| (a - base, b - base)));
            }
            times.sort_by(|a, b| a.0.total_cmp(&b.0));
            fired.insert((rule, c.id.clone()), times);
        }
    }
    drop(server);
    Ok(fired)
}

/// The rule manager's `for: 15m` over evaluations every `step` seconds: an alert goes pending
/// at the first evaluation where the expression has a value, fires once it has had one at every
/// evaluation for 15 minutes, and is dropped at the first evaluation without. Returns when it
/// started and stopped firing.
fn for_15m(present: &[f64], step: f64) -> Vec<(f64, f64)> {
    let mut fired: Vec<(f64, f64)> = Vec::new();
    let mut active_at: Option<f64> = None;
    let mut firing = false;
    let mut prev: Option<f64> = None;
    for &t in present {
        if prev.is_none_or(|p| t - p > step * 1.5) {
            active_at = Some(t);
            firing = false;
        }
        prev = Some(t);
        if firing {
            if let Some(last) = fired.last_mut() {
                last.1 = t;
            }
        } else if active_at.is_some_and(|a| t - a >= 15.0 * 60.0) {
            firing = true;
            fired.push((t, t));
        }
    }
    fired
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|p| p.join(name)).find(|p| p.is_file())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET on loopback; the body.
fn get(port: u16, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.") || head.split(' ').nth(1).is_none_or(|c| c != "200") {
        return Err(format!("{}: {body:.300}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}
