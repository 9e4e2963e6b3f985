//! What the demo shows: per app, the readings and verdicts of the exporter's latest snapshot (its
//! leak analysis as the status page has it, and a few values parsed from its metrics text), the
//! moments verdicts come up, with the likely cause and fix in the typical incident's words, and a
//! conclusion. Plain text: a refreshed screen on a terminal, appended blocks otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::leak::{min_rate, Signal};
use crate::sampler::{LeakStatus, Snapshot, WindowStatus};

use super::traffic::Stats;

/// The app with the bugs and the signals its bugs must be flagged on.
pub const LEAKY: &str = "leaky";
pub const FIXED: &str = "fixed";
const EXPECTED: [&str; 2] = ["heap_used", "sockets"];
/// The same confidence the verdict needs (`crate::leak`), for picking the window to quote.
const CONFIDENT: f64 = 0.99;
/// How long the expected verdicts must hold before the conclusion is drawn.
const STABLE_FOR: Duration = Duration::from_secs(10);

/// One app as the exporter saw it at the last sample.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub app: &'static str,
    pub pid: i32,
    /// Whether the exporter watches it.
    pub watched: bool,
    pub age_seconds: f64,
    pub inspector: bool,
    pub heap_used: Option<f64>,
    /// Heap used right after the last full GC.
    pub heap_floor: Option<f64>,
    /// Seconds until the heap floor reaches the heap limit at its growth.
    pub heap_eta: Option<f64>,
    pub heap_limit: Option<f64>,
    pub full_gcs: Option<f64>,
    pub rss: Option<f64>,
    pub sockets: Option<f64>,
    /// `MaxListenersExceededWarning`s by (event, emitter type).
    pub max_listeners: Vec<(String, String, f64)>,
    pub leak: Vec<LeakStatus>,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub requests_unanswered: u64,
}

impl Reading {
    pub fn from_snapshot(snapshot: &Snapshot, app: &'static str, pid: i32, stats: &Stats) -> Reading {
        let pid_label = pid.to_string();
        let mut r = Reading {
            app,
            pid,
            requests_ok: stats.ok.load(Ordering::Relaxed),
            requests_failed: stats.failed.load(Ordering::Relaxed),
            requests_unanswered: stats.errors.load(Ordering::Relaxed),
            ..Reading::default()
        };
        if let Some(t) = snapshot.targets.iter().find(|t| t.pid == pid && t.state != "exited") {
            r.watched = true;
            r.age_seconds = t.age_seconds;
            r.leak = t.leak.clone();
        }
        let mut sockets = None;
        for (name, labels, value) in samples(&snapshot.metrics) {
            if label(&labels, "pid") != Some(pid_label.as_str()) {
                continue;
            }
            match name {
                "nodejs_inspector_connected" => r.inspector = value == 1.0,
                "nodejs_heap_size_used_bytes" => r.heap_used = Some(value),
                "nodejs_heap_size_used_after_gc_bytes" => r.heap_floor = Some(value),
                "nodejs_heap_exhaustion_eta_seconds" => r.heap_eta = Some(value),
                "nodejs_heap_size_limit_bytes" => r.heap_limit = Some(value),
                "nodejs_gc_duration_seconds_count" if label(&labels, "kind") == Some("major") => {
                    r.full_gcs = Some(value)
                }
                "process_resident_memory_bytes" => r.rss = Some(value),
                "nodejs_process_open_sockets" => *sockets.get_or_insert(0.0) += value,
                "nodejs_max_listeners_exceeded_warnings_total" => r.max_listeners.push((
                    label(&labels, "event").unwrap_or_default().to_string(),
                    label(&labels, "emitter").unwrap_or_default().to_string(),
                    value,
                )),
                _ => {}
            }
        }
        r.sockets = sockets;
        r
    }

    pub fn warnings(&self) -> f64 {
        self.max_listeners.iter().map(|(_, _, n)| n).fold(0.0, |a, b| a + b)
    }

    pub fn suspected(&self) -> Vec<&'static str> {
        self.leak.iter().filter(|l| l.suspected).map(|l| l.signal).collect()
    }

    fn signal(&self, signal: &str) -> Option<&LeakStatus> {
        self.leak.iter().find(|l| l.signal == signal)
    }
}

/// Whether the exporter holds an inspector session to `pid`.
pub fn inspector_connected(snapshot: &Snapshot, pid: i32) -> bool {
    let pid = pid.to_string();
    samples(&snapshot.metrics).any(|(name, labels, v)| {
        name == "nodejs_inspector_connected" && label(&labels, "pid") == Some(&pid) && v == 1.0
    })
}

/// One sample of an exposition text: name, labels, value.
type Sample<'a> = (&'a str, Vec<(&'a str, String)>, f64);

/// The samples of an exposition text. Comments and malformed lines are skipped.
fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(parse_sample)
}

fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some(open) = head.find('{') else { return Some((head, Vec::new(), value)) };
    let name = &head[..open];
    let mut rest = head[open + 1..].strip_suffix('}')?;
    let mut labels = Vec::new();
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break eq + 2 + i + 1,
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        rest = &rest[end..];
    }
    Some((name, labels, value))
}

fn label<'a>(labels: &'a [(&str, String)], key: &str) -> Option<&'a str> {
    labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
}

/// Something worth a line of its own.
#[derive(Debug, Clone)]
pub enum Event {
    /// A signal became suspected.
    /// A signal became suspected; for the heap, with the time left until its limit and the limit.
    Flagged { at: Duration, app: &'static str, status: LeakStatus, heap_eta: Option<(f64, f64)> },
    /// A suspected signal was cleared.
    Cleared { at: Duration, app: &'static str, signal: &'static str },
    /// The first `MaxListenersExceededWarning` of an app.
    Warning { at: Duration, app: &'static str, event: String, emitter: String, count: f64 },
    /// The leaky app is flagged on what its bugs leak, the fixed twin judged and flagged on nothing.
    Conclusion { at: Duration },
}

/// Follows the verdicts from one snapshot to the next.
#[derive(Debug, Default)]
pub struct Tracker {
    /// When each (app, signal) was first suspected, since the traffic started.
    pub first_flagged: BTreeMap<(&'static str, &'static str), Duration>,
    flagged: BTreeSet<(&'static str, &'static str)>,
    /// How often each (app, signal) was cleared after being suspected.
    pub cleared: BTreeMap<(&'static str, &'static str), u32>,
    pub first_warning: BTreeMap<&'static str, Duration>,
    /// Each (app, signal) once a window of it has spoken: the exporter had enough data to judge.
    judged: BTreeSet<(&'static str, &'static str)>,
    /// When the fixed twin was first judged on every expected signal.
    pub fixed_judged: Option<Duration>,
    stable_since: Option<Duration>,
    pub concluded: Option<Duration>,
}

impl Tracker {
    /// Whether a window of the app's signal has spoken at some point.
    pub fn judged(&self, app: &'static str, signal: &str) -> bool {
        self.judged.iter().any(|(a, s)| *a == app && *s == signal)
    }

    pub fn update(&mut self, at: Duration, readings: &[Reading]) -> Vec<Event> {
        let mut events = Vec::new();
        for r in readings.iter().filter(|r| r.watched) {
            for status in &r.leak {
                let key = (r.app, status.signal);
                if status.windows.iter().any(|w| w.speaks) {
                    self.judged.insert(key);
                }
                if status.suspected && self.flagged.insert(key) {
                    self.first_flagged.entry(key).or_insert(at);
                    let heap_eta = r.heap_eta.zip(r.heap_limit).filter(|_| status.signal == "heap_used");
                    events.push(Event::Flagged { at, app: r.app, status: status.clone(), heap_eta });
                } else if !status.suspected && self.flagged.remove(&key) {
                    *self.cleared.entry(key).or_default() += 1;
                    events.push(Event::Cleared { at, app: r.app, signal: status.signal });
                }
            }
            if r.warnings() > 0.0 && !self.first_warning.contains_key(r.app) {
                self.first_warning.insert(r.app, at);
                let (event, emitter, _) =
                    r.max_listeners.iter().find(|(_, _, n)| *n > 0.0).cloned().unwrap_or_default();
                events.push(Event::Warning { at, app: r.app, event, emitter, count: r.warnings() });
            }
        }
        let leaky = readings.iter().find(|r| r.app == LEAKY);
        let fixed = readings.iter().find(|r| r.app == FIXED);
        if self.fixed_judged.is_none() && EXPECTED.iter().all(|s| self.judged(FIXED, s)) {
            self.fixed_judged = Some(at);
        }
        let settled = leaky.is_some_and(|l| EXPECTED.iter().all(|s| l.suspected().contains(s)) && l.warnings() > 0.0)
            && fixed.is_some_and(|f| f.watched && f.suspected().is_empty())
            && self.fixed_judged.is_some();
        self.stable_since = if settled { self.stable_since.or(Some(at)) } else { None };
        if self.concluded.is_none() && self.stable_since.is_some_and(|since| at >= since + STABLE_FOR) {
            self.concluded = Some(at);
            events.push(Event::Conclusion { at });
        }
        events
    }
}

/// What the header says.
pub struct Header<'a> {
    pub node_version: &'a str,
    pub listen_address: &'a str,
    /// (name, pid, port)
    pub apps: &'a [(&'static str, i32, u16)],
    pub windows: &'a [Duration],
    pub grace: Duration,
    pub rate: f64,
    pub warmup_rate: f64,
    pub warmup: Duration,
    pub heap_limit_mib: u32,
    pub connections: u64,
    pub fail_every: u64,
    pub duration: Option<Duration>,
}

/// Where the demo writes: stdout, redrawn in place on a terminal, appended otherwise.
pub struct Output {
    terminal: bool,
    /// Everything but the table, kept for redrawing.
    lines: Vec<String>,
    last_table: Option<Duration>,
}

/// Seconds between two tables: a terminal redraws often, a log gets a block now and then.
const TERMINAL_REFRESH: Duration = Duration::from_secs(2);
const LOG_REFRESH: Duration = Duration::from_secs(15);

impl Output {
    pub fn new(terminal: bool) -> Output {
        Output { terminal, lines: Vec::new(), last_table: None }
    }

    pub fn line(&mut self, text: &str) {
        if !self.terminal {
            write_out(&format!("{text}\n"));
        }
        self.lines.push(text.to_string());
    }

    pub fn header(&mut self, h: &Header) {
        let base = metrics_base(h.listen_address);
        let windows: Vec<String> = h.windows.iter().map(|w| crate::leak::window_label(*w)).collect();
        let mut apps = String::new();
        for (name, pid, port) in h.apps {
            let what = if *name == LEAKY {
                [
                    "the three bugs: a 'close' listener added per request, a connection not",
                    "released on an error path, a Map cache with no eviction",
                ]
            } else {
                ["the fixes: the listener added once to the response, release in finally,", "a bounded cache"]
            };
            let head = format!("  {name:<5}  pid {pid:<7}  http://127.0.0.1:{port}/  ");
            let _ = writeln!(apps, "{head}{}\n{:width$}{}", what[0], "", what[1], width = head.len());
        }
        let stop = match h.duration {
            Some(d) => format!("Stops after {}; Ctrl-C stops it earlier.", clock(d)),
            None => "Runs until Ctrl-C, which stops both apps too.".to_string(),
        };
        let text = format!(
            "nodejs-leak-exporter demo: the typical incident in about two minutes (Node.js {node}).

One HTTP service, two copies, the same traffic, the same small database (one query in {fail_every} fails):
{apps}Traffic: {connections} keep-alive connections to each app, {warmup_rate} requests/s for {warmup}s to warm them up, then {rate}/s.
Both run with --max-old-space-size={heap_limit}, a heap limit as production sets one, and --inspect=127.0.0.1:0:
the exporter finds each inspector and reads the V8 heap, GCs and warnings through it, with no change
to the app (loopback only: an inspector is remote code execution). The rest it reads from /proc.
Exporter settings for the demo: a sample every second, windows of {windows}, {grace}s of grace (production:
5s, 15m/1h/6h, 10m): the traffic makes in minutes the full GCs a server makes in hours.
Metrics: {base}/metrics   status page: {base}/
{stop}",
            node = h.node_version,
            fail_every = h.fail_every,
            connections = h.connections,
            warmup_rate = h.warmup_rate,
            warmup = h.warmup.as_secs(),
            rate = h.rate,
            heap_limit = h.heap_limit_mib,
            windows = windows.join(" and "),
            grace = h.grace.as_secs(),
        );
        for l in text.lines() {
            self.line(l);
        }
    }

    pub fn event(&mut self, event: &Event) {
        for l in describe(event).lines() {
            for wrapped in wrap(l, WIDTH, INDENT) {
                self.line(&wrapped);
            }
        }
    }

    /// Shows the table if it is time to.
    pub fn refresh(&mut self, at: Duration, readings: &[Reading], tracker: &Tracker) {
        let every = if self.terminal { TERMINAL_REFRESH } else { LOG_REFRESH };
        if self.last_table.is_some_and(|last| at < last + every) {
            return;
        }
        self.last_table = Some(at);
        let table = table(at, readings, tracker, self.terminal);
        if self.terminal {
            // Clear and redraw: header and events, then the table at the bottom.
            let mut screen = String::from("\x1b[H\x1b[2J");
            for l in &self.lines {
                screen.push_str(l);
                screen.push('\n');
            }
            screen.push('\n');
            screen.push_str(&table);
            write_out(&screen);
        } else {
            write_out(&format!("\n{table}\n"));
        }
    }

    pub fn summary(&mut self, at: Duration, reason: &str, readings: &[Reading], tracker: &Tracker) {
        let mut text = String::new();
        let _ = writeln!(text);
        let _ = writeln!(text, "Stopped after {} ({reason}).", clock(at));
        for r in readings {
            let flagged: Vec<String> = Signal::ALL
                .iter()
                .filter_map(|s| {
                    let at = tracker.first_flagged.get(&(r.app, s.as_label()))?;
                    let cleared = tracker.cleared.get(&(r.app, s.as_label())).copied().unwrap_or(0);
                    let flaps = if cleared > 0 { format!(", cleared {cleared}x") } else { String::new() };
                    Some(format!("{} (first after {}{flaps})", s.as_label(), clock(*at)))
                })
                .collect();
            let verdict = if flagged.is_empty() {
                "no leak suspected".to_string()
            } else {
                format!("leak suspected on {}", flagged.join(", "))
            };
            let warnings = match r.max_listeners.iter().filter(|(_, _, n)| *n > 0.0).collect::<Vec<_>>() {
                w if w.is_empty() => "none".to_string(),
                w => w
                    .iter()
                    .map(|(event, emitter, n)| {
                        format!("{n} MaxListenersExceededWarning ({event} listeners on {emitter})")
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let _ = writeln!(
                text,
                "{}: {verdict}; warnings: {warnings}; requests: {} answered, {} database errors, {} unanswered.",
                r.app, r.requests_ok, r.requests_failed, r.requests_unanswered
            );
        }
        match (tracker.concluded, tracker.fixed_judged) {
            (Some(at), _) => {
                let _ = writeln!(text, "Conclusion reached after {}.", clock(at));
            }
            (None, None) => {
                let _ =
                    writeln!(text, "No conclusion yet: the fixed app was not judged on every signal; run it longer.");
            }
            (None, Some(_)) => {
                let _ = writeln!(text, "No conclusion: the verdicts did not settle as expected (see above).");
            }
        }
        if self.terminal {
            write_out(&text);
        } else {
            for l in text.lines() {
                self.line(l);
            }
        }
    }
}

/// Event lines are wrapped at this width, continued under their text.
const WIDTH: usize = 116;
const INDENT: usize = 11;

/// Splits `line` at spaces into lines of at most `width` characters (a longer word stays whole);
/// continuation lines are indented by `indent`.
fn wrap(line: &str, width: usize, indent: usize) -> Vec<String> {
    if line.chars().count() <= width {
        return vec![line.to_string()];
    }
    let lead = line.len() - line.trim_start().len();
    let mut out = Vec::new();
    let mut current = line[..lead].to_string();
    let mut empty = true;
    for word in line[lead..].split(' ').filter(|w| !w.is_empty()) {
        if !empty && current.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::replace(&mut current, " ".repeat(indent)));
            empty = true;
        }
        if !empty {
            current.push(' ');
        }
        current.push_str(word);
        empty = false;
    }
    out.push(current);
    out
}

fn write_out(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`demo | head`) must not stop the demo's cleanup.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn metrics_base(listen_address: &str) -> String {
    let addr = crate::config::parse_listen_address(listen_address).ok();
    match addr {
        Some(a) if a.ip().is_unspecified() => format!("http://localhost:{}", a.port()),
        Some(a) => format!("http://{a}"),
        None => format!("http://{listen_address}"),
    }
}

fn table(at: Duration, readings: &[Reading], tracker: &Tracker, terminal: bool) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "[{}] what the exporter sees", clock(at));
    let _ = writeln!(
        t,
        "  {:<5}  {:>7}  {:>9}  {:>10}  {:>16}  {:>9}  {:>7}  {:>8}  {:>8}  verdict",
        "app", "pid", "heap used", "heap floor", "floor growth", "RSS", "sockets", "warnings", "full GCs"
    );
    for r in readings {
        let growth = r
            .signal("heap_used")
            .and_then(|l| l.windows.first())
            .map(|w| format!("{} {}", per_minute(Signal::HeapUsed, w.growth_per_second), w.window))
            .unwrap_or_else(|| "-".to_string());
        let verdict = verdict(r, tracker, terminal);
        let _ = writeln!(
            t,
            "  {:<5}  {:>7}  {:>9}  {:>10}  {:>16}  {:>9}  {:>7}  {:>8}  {:>8}  {verdict}",
            r.app,
            r.pid,
            r.heap_used.map(mib).unwrap_or_else(|| "-".into()),
            r.heap_floor.map(mib).unwrap_or_else(|| "-".into()),
            growth,
            r.rss.map(mib).unwrap_or_else(|| "-".into()),
            r.sockets.map(|v| format!("{v}")).unwrap_or_else(|| "-".into()),
            format!("{}", r.warnings()),
            r.full_gcs.map(|v| format!("{v}")).unwrap_or_else(|| "-".into()),
        );
    }
    t
}

fn verdict(r: &Reading, tracker: &Tracker, terminal: bool) -> String {
    if !r.watched {
        return "not watched (yet)".into();
    }
    if !r.inspector {
        return "no inspector session (yet)".into();
    }
    let suspected = r.suspected();
    if !suspected.is_empty() {
        let text = format!("LEAK: {}", suspected.join(", "));
        return if terminal { format!("\x1b[1;31m{text}\x1b[0m") } else { text };
    }
    let judged: Vec<&str> = Signal::ALL.iter().map(|s| s.as_label()).filter(|s| tracker.judged(r.app, s)).collect();
    if !judged.is_empty() {
        let plural = if judged.len() == 1 { "" } else { "s" };
        return format!("no leak ({} signal{plural} judged)", judged.len());
    }
    if r.age_seconds < super::GRACE.as_secs_f64() {
        return "warming up".into();
    }
    "collecting data".into()
}

/// The window worth quoting for a verdict: the shortest that says leak, else the shortest that
/// speaks, else the shortest with data.
fn quoted_window(status: &LeakStatus) -> Option<&WindowStatus> {
    let min = Signal::ALL.iter().find(|s| s.as_label() == status.signal).map(|s| min_rate(*s)).unwrap_or(0.0);
    let w = &status.windows;
    w.iter()
        .find(|w| w.speaks && w.confidence >= CONFIDENT && w.growth_per_second >= min)
        .or_else(|| w.iter().find(|w| w.speaks))
        .or_else(|| w.first())
}

/// What grows, the likely cause and the fix of a leak on a signal, in the typical incident's words.
fn cause_and_fix(signal: &str) -> (&'static str, &'static str, &'static str) {
    match signal {
        "heap_used" => (
            "the heap floor (what survives each full GC) grows",
            "objects that are never garbage collected: a module-level cache with no eviction policy (a plain Map that only grows), and the request state that listeners piling up hold",
            "bound the cache (a maximum size and a TTL, as lru-cache does)",
        ),
        "sockets" => (
            "open sockets grow",
            "connections taken from a pool and not released on an error path: the query throws before release() is reached",
            "release in a finally block",
        ),
        "open_fds" => (
            "open file descriptors grow",
            "every connection not released keeps its socket, and each socket is a file descriptor",
            "release in a finally block",
        ),
        "active_resources" => (
            "active resources (handles the event loop holds) grow",
            "every connection not released stays open as a TCP handle",
            "release in a finally block",
        ),
        "rss" => (
            "resident memory grows",
            "it follows the heap floor and the connections' buffers",
            "fix the heap and connection leaks",
        ),
        _ => (
            "memory outside the V8 heap (Buffers) grows",
            "Buffers kept in a cache or a list",
            "bound what keeps them",
        ),
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Flagged { at, app, status, heap_eta } => {
            let (what, cause, fix) = cause_and_fix(status.signal);
            let evidence = match quoted_window(status) {
                Some(w) => {
                    let signal =
                        Signal::ALL.into_iter().find(|s| s.as_label() == status.signal).unwrap_or(Signal::HeapUsed);
                    format!(
                        "{what} {}, confidence {:.3} over the last {}",
                        per_minute(signal, w.growth_per_second),
                        w.confidence,
                        w.window
                    )
                }
                None => what.to_string(),
            };
            let unexpected = if *app == FIXED { " (unexpected: the fixed app has none of the bugs)" } else { "" };
            let eta = match heap_eta {
                Some((eta, limit)) => format!(
                    "\n           at this rate the floor reaches the heap limit ({:.0} MiB) in about {}: then the app dies with 'JavaScript heap out of memory'.",
                    limit / (1024.0 * 1024.0),
                    long_duration(*eta)
                ),
                None => String::new(),
            };
            format!(
                "[{}] {app}: LEAK on {}{unexpected}: {evidence}.{eta}\n           likely cause: {cause}.\n           fix: {fix}.",
                clock(*at),
                status.signal
            )
        }
        Event::Cleared { at, app, signal } => {
            format!("[{}] {app}: {signal} cleared: its floor stopped rising over the shortest window.", clock(*at))
        }
        Event::Warning { at, app, event, emitter, count } => format!(
            "[{}] {app}: MaxListenersExceededWarning: 11 {event} listeners added to [{emitter}] ({count} so far: Node warns once per emitter, here once per keep-alive connection).\n           likely cause: a '{event}' listener added on every request to an emitter that outlives the request.\n           fix: add it with once() to the request or response, or remove it when done; and don't ignore this warning in your logs.",
            clock(*at)
        ),
        Event::Conclusion { at } => format!(
            "[{}] CONCLUSION: {LEAKY} leaks on {} and warns about its listeners: the three bugs of the story.\n           {FIXED} has been judged on the same signals under the same traffic and is flagged on nothing: the fixes work.\n           (The demo goes on; Ctrl-C stops it.)",
            clock(*at),
            EXPECTED.join(" and ")
        ),
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// A growth rate per minute, in the signal's unit.
fn per_minute(signal: Signal, per_second: f64) -> String {
    let v = per_second * 60.0;
    if signal.is_bytes() {
        if v.abs() >= 1024.0 * 1024.0 {
            format!("{:+.2} MiB/min", v / (1024.0 * 1024.0))
        } else {
            format!("{:+.0} KiB/min", v / 1024.0)
        }
    } else {
        format!("{v:+.1}/min")
    }
}

/// `3h20m`, `12m`.
fn long_duration(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    if minutes >= 60 {
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    } else {
        format!("{minutes}m")
    }
}

/// `1m05s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(metrics: &str, leak: Vec<LeakStatus>) -> Snapshot {
        let target = crate::sampler::TargetStatus {
            pid: 42,
            app: LEAKY.into(),
            state: "active",
            age_seconds: 60.0,
            user: "u".into(),
            script: None,
            exe: None,
            pm2_id: None,
            node_version: None,
            kubernetes: None,
            collectors: Vec::new(),
            leak,
        };
        Snapshot { metrics: metrics.into(), targets: vec![target], ..Snapshot::default() }
    }

    fn status(signal: &'static str, suspected: bool, speaks: bool) -> LeakStatus {
        let window = WindowStatus { window: "1m".into(), growth_per_second: 100_000.0, confidence: 0.999, speaks };
        LeakStatus { signal, suspected, windows: vec![window] }
    }

    const METRICS: &str = r#"# HELP nodejs_heap_size_used_bytes x
nodejs_heap_size_used_bytes{pid="42",app="leaky"} 1048576
nodejs_heap_size_used_bytes{pid="43",app="fixed"} 7
nodejs_heap_size_used_after_gc_bytes{pid="42",app="leaky"} 524288
nodejs_gc_duration_seconds_count{pid="42",app="leaky",kind="minor"} 90
nodejs_gc_duration_seconds_count{pid="42",app="leaky",kind="major"} 9
nodejs_process_open_sockets{pid="42",app="leaky",protocol="tcp"} 30
nodejs_process_open_sockets{pid="42",app="leaky",protocol="unix"} 2
nodejs_max_listeners_exceeded_warnings_total{pid="42",app="leaky",event="close",emitter="Socket"} 4
nodejs_inspector_connected{pid="42",app="leaky"} 1
nodejs_warnings_total{pid="42",app="a \"quoted\" name",name="X"} 1
"#;

    #[test]
    fn readings_come_from_the_metrics_of_their_pid() {
        let s = snapshot(METRICS, vec![]);
        let r = Reading::from_snapshot(&s, LEAKY, 42, &Stats::default());
        assert!(r.watched && r.inspector);
        assert_eq!(r.heap_used, Some(1048576.0));
        assert_eq!(r.heap_floor, Some(524288.0));
        assert_eq!(r.full_gcs, Some(9.0));
        assert_eq!(r.sockets, Some(32.0));
        assert_eq!(r.max_listeners, vec![("close".to_string(), "Socket".to_string(), 4.0)]);
        assert!(inspector_connected(&s, 42));
        assert!(!inspector_connected(&s, 43));
    }

    #[test]
    fn labels_with_escapes_parse() {
        let (name, labels, v) = parse_sample(r#"m{a="x\"y",b="z\\"} 2"#).unwrap();
        assert_eq!((name, v), ("m", 2.0));
        assert_eq!(label(&labels, "a"), Some("x\"y"));
        assert_eq!(label(&labels, "b"), Some("z\\"));
        assert!(parse_sample("m{a=\"x} 2").is_none());
    }

    #[test]
    fn a_verdict_is_reported_once_with_its_evidence_and_the_conclusion_waits_until_stable() {
        let mut tracker = Tracker::default();
        let leaky = |suspected| {
            let s = snapshot(METRICS, vec![status("heap_used", suspected, true), status("sockets", suspected, true)]);
            Reading::from_snapshot(&s, LEAKY, 42, &Stats::default())
        };
        let fixed = Reading {
            app: FIXED,
            watched: true,
            leak: vec![status("heap_used", false, true), status("sockets", false, true)],
            ..Reading::default()
        };
        assert!(tracker
            .update(Duration::from_secs(1), &[leaky(false), fixed.clone()])
            .iter()
            .all(|e| matches!(e, Event::Warning { .. })));
        let events = tracker.update(Duration::from_secs(2), &[leaky(true), fixed.clone()]);
        assert_eq!(events.len(), 2, "{events:?}");
        let text = describe(&events[0]);
        assert!(
            text.contains("LEAK on heap_used")
                && text.contains("+5.72 MiB/min")
                && text.contains("0.999 over the last 1m"),
            "{text}"
        );
        assert!(tracker.update(Duration::from_secs(3), &[leaky(true), fixed.clone()]).is_empty());
        let events = tracker.update(Duration::from_secs(12), &[leaky(true), fixed.clone()]);
        assert!(matches!(events[..], [Event::Conclusion { .. }]), "{events:?}");
        let events = tracker.update(Duration::from_secs(13), &[leaky(false), fixed]);
        assert_eq!(events.len(), 2);
        assert_eq!(tracker.cleared.get(&(LEAKY, "sockets")), Some(&1));
    }

    #[test]
    fn clocks_and_rates() {
        assert_eq!(clock(Duration::from_secs(65)), "1m05s");
        assert_eq!(wrap("[0m01s] leaky: a b c", 14, 4), vec!["[0m01s] leaky:", "    a b c"]);
        assert_eq!(wrap("           fix: once", 116, 11), vec!["           fix: once"]);
        assert_eq!(long_duration(12000.0), "3h20m");
        assert_eq!(long_duration(61.0), "1m");
        assert_eq!(per_minute(Signal::Sockets, 0.8), "+48.0/min");
        assert_eq!(per_minute(Signal::HeapUsed, 1024.0), "+60 KiB/min");
        assert_eq!(metrics_base(":19229"), "http://localhost:19229");
        assert_eq!(metrics_base("127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
