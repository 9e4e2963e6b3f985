//! `nodejs-leak-exporter analyze FILE`: replays a trace through the leak analysis the live
//! exporter runs and reports the verdict over time — a table for people, JSON for machines, the
//! exporter's series as promtool `input_series` so alert rules can be unit-tested on real traces,
//! and a plot ([`crate::plot`]).
//!
//! This module formats; it does not judge. Reading and replaying belong to [`crate::trace`], the
//! verdict to [`crate::leak`], and the promtool series come from
//! [`crate::exposition::leak_series`], the function the live exporter renders with, so a rule
//! tested here sees the series it will see live.
//!
//! JSON output (`--output json`): an array with one object per trace (process):
//! - `name`, `samples`, `start` and `end` (times as in the file), `interval_seconds`, `windows`
//!   (labels such as `"15m"`), `grace_period_seconds`, `assume_warm`, `step_seconds`;
//! - `signals`: one summary per analysed signal: `signal`, `unit` (`bytes` or `count`),
//!   `verdict` (`leak`, `no_leak` or `no_verdict`), `suspected` (spans `{from_seconds,
//!   to_seconds}` from the first sample, `to_seconds` null when still suspected at the end),
//!   `growth` (`{window, per_second, confidence}` or null) and `text` (the table's summary line);
//! - `steps`: the table's rows for all signals (every step, and every sample where a verdict
//!   changes): `offset_seconds`, `time`, `pid`, `heap_eta_seconds`, `memory_limit_eta_seconds`,
//!   and `signals`, each `{signal, value, verdict (no_data, no_verdict, ok, leak), suspected,
//!   windows}` where each window is `{window, growth_per_second, confidence, points, enough,
//!   speaks, says_leak}` (the exporter serves growth and confidence once `enough` is true).
//!
//! Fields are only ever added to this structure.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::{parse_duration, ConfigError, LeakConfig};
use crate::exposition::{self, HEAP_ETA, LIMIT_ETA};
use crate::leak::{window_label, LeakSettings, Signal, WindowResult};
use crate::plot::{Fit, Panel, PlotError};
use crate::trace::{self, Trace, TraceError};

/// Arguments of `analyze`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: nodejs-leak-exporter analyze heap.csv --plot heap.svg\n\
    CSV columns: time (unix seconds or RFC 3339), value, heap_used, rss, external, open_fds, sockets, \
    active_resources, heap_used_after_gc, major_gcs, heap_limit, memory_limit, pid.")]
pub struct AnalyzeArgs {
    /// Trace file: CSV (`time,value`, or a header naming the columns) or the JSON answer of a
    /// Prometheus query_range (one trace per process).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// What a bare `value` column, or a Prometheus series of unknown name, holds: heap_used, rss,
    /// external, open_fds, sockets or active_resources.
    #[arg(long, value_name = "NAME", default_value = "heap_used", value_parser = parse_signal_arg)]
    pub signal: Signal,

    /// What to print: table (for people), json (for machines), or promtool (the exporter's
    /// series for the trace, as a promtool test's interval and input_series).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Window over which leak growth is estimated (repeatable) [default: 15m, 1h, 6h].
    #[arg(long = "leak.window", value_name = "DURATION", value_parser = parse_duration)]
    pub leak_windows: Vec<Duration>,

    /// Warm-up after the process starts (the first sample, unless --assume-warm, and every
    /// restart) that raises no leak verdict [default: 10m].
    #[arg(long = "leak.grace-period", value_name = "DURATION", value_parser = parse_duration)]
    pub leak_grace_period: Option<Duration>,

    /// Sample interval the exporter is assumed to have had [default: the median spacing of each
    /// trace].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,

    /// The process was already past its warm-up at the first sample (a slice of Prometheus
    /// history, say): no grace period at the start of the trace.
    #[arg(long)]
    pub assume_warm: bool,

    /// Time between two rows of the table and JSON, or two points of the promtool series
    /// [default: 1m for promtool; about 20 rows over the trace for the table and JSON, which
    /// also get every sample where a verdict changes].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub step: Option<Duration>,

    /// Also write an SVG plot of each analysed signal: the series, its floor points, the slope
    /// fitted by the shortest window that speaks at the end, and shading where a leak was
    /// suspected.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Labels of the promtool series, e.g. 'app="api",env="prod"'; `app` and `pid` replace the
    /// defaults [default: app from the file name, pid from the trace or 1].
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Promtool,
}

fn parse_signal_arg(s: &str) -> Result<Signal, String> {
    trace::parse_signal(s).ok_or_else(|| {
        let names: Vec<&str> = Signal::ALL.iter().map(|s| s.as_label()).collect();
        format!("unknown signal {s:?}; known: {}", names.join(", "))
    })
}

/// Errors of `analyze`. Each message is whole: the causes inside already say theirs.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{0}")]
    Read(TraceError),
    #[error("{path}: {error}")]
    Trace { path: String, error: TraceError },
    #[error("{trace}: {error} (pass --leak.window, or --interval if the trace's spacing is not the exporter's)")]
    Windows { trace: String, error: ConfigError },
    #[error("--labels: {0}")]
    Labels(String),
    #[error("--{0} must be at least 1ms")]
    TooShort(&'static str),
    #[error("{0}")]
    Plot(PlotError),
}

/// The memory limit of a trace is written as `source="cgroup"`: a trace does not say which
/// limit it is, and the cgroup's is the usual one.
const LIMIT_SOURCE: &str = "cgroup";
/// Socket counts are written under one protocol, active resources under one type: a trace holds
/// their sums.
const SOCKETS_PROTOCOL: &str = "tcp";
const RESOURCES_TYPE: &str = "all";

pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let text = analyze(args)?;
    print!("{text}");
    Ok(())
}

/// Runs the analysis the arguments ask for; returns what to print (and writes the plot).
pub fn analyze(args: &AnalyzeArgs) -> Result<String, AnalyzeError> {
    let path = args.file.display().to_string();
    let traces = trace::read_file(&args.file, args.signal).map_err(|error| match error {
        e @ TraceError::Read { .. } => AnalyzeError::Read(e),
        error => AnalyzeError::Trace { path: path.clone(), error },
    })?;
    if args.labels.is_some() && args.output != Output::Promtool {
        return Err(AnalyzeError::Labels("only --output promtool writes labels".into()));
    }
    for (flag, d) in [("step", args.step), ("interval", args.interval)] {
        if d.is_some_and(|d| d < Duration::from_millis(1)) {
            return Err(AnalyzeError::TooShort(flag));
        }
    }
    let mut config = LeakConfig::default();
    if !args.leak_windows.is_empty() {
        config.windows = args.leak_windows.clone();
    }
    if let Some(g) = args.leak_grace_period {
        config.grace_period = g;
    }
    let initial_age = if args.assume_warm { config.grace_period.as_secs_f64() } else { 0.0 };
    let traces: Vec<Trace> = traces.into_iter().filter(|t| !t.samples.is_empty()).collect();
    let mut settings = Vec::with_capacity(traces.len());
    for t in &traces {
        let interval = args.interval.unwrap_or_else(|| median_interval(t));
        config.validate(interval).map_err(|error| AnalyzeError::Windows { trace: t.name.clone(), error })?;
        settings.push(LeakSettings::new(&config, interval));
    }

    let app = args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "trace".into());
    let out = match args.output {
        Output::Promtool => {
            let labels = parse_labels(args.labels.as_deref().unwrap_or("")).map_err(AnalyzeError::Labels)?;
            let step = args.step.unwrap_or(Duration::from_secs(60));
            let grid = Grid::new(&traces, &settings, step);
            let replayed: Vec<Replayed> = traces
                .into_iter()
                .zip(settings)
                .enumerate()
                .map(|(i, (t, s))| {
                    let expose: HashSet<usize> = grid.samples[i].iter().flatten().copied().collect();
                    replay(t, s, initial_age, &expose)
                })
                .collect();
            let text = promtool(&replayed, &grid, &app, &labels, &path);
            write_plot(args, &replayed)?;
            text
        }
        Output::Table | Output::Json => {
            let replayed: Vec<Replayed> =
                traces.into_iter().zip(settings).map(|(t, s)| replay(t, s, initial_age, &HashSet::new())).collect();
            write_plot(args, &replayed)?;
            if args.output == Output::Table {
                replayed
                    .iter()
                    .map(|r| table(r, args.step.unwrap_or_else(|| default_step(r)), args.assume_warm))
                    .collect()
            } else {
                let all: Vec<JsonTrace> = replayed
                    .iter()
                    .map(|r| json_trace(r, args.step.unwrap_or_else(|| default_step(r)), args))
                    .collect();
                let mut text = serde_json::to_string_pretty(&all).expect("plain data serializes");
                text.push('\n');
                text
            }
        }
    };
    Ok(out)
}

fn write_plot(args: &AnalyzeArgs, replayed: &[Replayed]) -> Result<(), AnalyzeError> {
    let Some(path) = &args.plot else { return Ok(()) };
    let panels: Vec<Panel> = replayed.iter().flat_map(panels).collect();
    crate::plot::write_svg(path, &panels).map_err(AnalyzeError::Plot)
}

/// The median spacing of a trace's samples (the exporter's interval, when it wrote the trace).
fn median_interval(t: &Trace) -> Duration {
    let mut gaps: Vec<f64> = t.samples.windows(2).map(|w| w[1].time - w[0].time).collect();
    if gaps.is_empty() {
        return Duration::from_secs(1);
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    Duration::from_millis((median * 1000.0).round().max(1.0) as u64)
}

/// What the exporter knew of one signal after one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRecord {
    pub value: Option<f64>,
    pub has_data: bool,
    pub suspected: bool,
    /// Each window with an estimate, shortest first.
    pub windows: Vec<WindowResult>,
}

impl SignalRecord {
    pub fn verdict(&self) -> Verdict {
        if !self.has_data {
            Verdict::NoData
        } else if self.suspected {
            Verdict::Leak
        } else if self.windows.iter().any(|w| w.speaks) {
            Verdict::Ok
        } else {
            Verdict::NoVerdict
        }
    }
}

/// The verdict on a signal at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The sample has no value for the signal.
    NoData,
    /// No window speaks yet: warm-up, or too little data.
    NoVerdict,
    Ok,
    Leak,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::NoData => "no data",
            Verdict::NoVerdict => "no verdict",
            Verdict::Ok => "ok",
            Verdict::Leak => "LEAK",
        }
    }
}

/// What the exporter knew after one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: f64,
    pub pid: Option<i64>,
    /// Like [`Replayed::signals`].
    pub signals: Vec<SignalRecord>,
    /// What the last full GC left of the heap, where the trace says.
    pub heap_floor: Option<f64>,
    pub heap_eta: Option<f64>,
    pub limit_eta: Option<f64>,
}

/// One series the exporter would have served: name, labels after `pid` and `app`, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposed {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A trace replayed: a record per sample.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub trace: Trace,
    pub settings: LeakSettings,
    pub initial_age: f64,
    /// The signals the trace has values for.
    pub signals: Vec<Signal>,
    /// One per sample of the trace.
    pub records: Vec<Record>,
    /// The leak series at the samples asked for.
    pub exposed: HashMap<usize, Vec<Exposed>>,
}

impl Replayed {
    fn start(&self) -> f64 {
        self.records.first().map_or(0.0, |r| r.time)
    }

    fn signal_records(&self, i: usize) -> impl Iterator<Item = (f64, &SignalRecord)> + '_ {
        self.records.iter().map(move |r| (r.time, &r.signals[i]))
    }
}

/// Replays a trace, keeping what the exporter knew after each sample, and the series it would
/// have served at the samples in `expose`.
pub fn replay(trace: Trace, settings: LeakSettings, initial_age: f64, expose: &HashSet<usize>) -> Replayed {
    let signals: Vec<Signal> =
        Signal::ALL.into_iter().filter(|s| trace.samples.iter().any(|x| x.value(*s).is_some())).collect();
    let mut records = Vec::with_capacity(trace.samples.len());
    let mut exposed = HashMap::new();
    let mut heap_floor: Option<f64> = None;
    let mut pid = trace.samples.first().and_then(|s| s.pid);
    trace::replay(&trace, &settings, initial_age, |s, state| {
        if s.pid != pid {
            pid = s.pid;
            heap_floor = None;
        }
        heap_floor = s.heap_after_gc.or(heap_floor);
        // As the live exporter: the heap ETA needs the heap read at this sample.
        let heap = match (s.value(Signal::HeapUsed), s.heap_limit.filter(|l| *l > 0.0)) {
            (Some(used), Some(limit)) => Some((heap_floor.unwrap_or(used), limit)),
            _ => None,
        };
        let limits = [(LIMIT_SOURCE, s.memory_limit, s.value(Signal::Rss))];
        let (mut heap_eta, mut limit_eta) = (None, None);
        let mut series = Vec::new();
        let index = records.len();
        let keep = expose.contains(&index);
        exposition::leak_series(state, heap, &limits, |name, _help, labels, value| {
            match name {
                HEAP_ETA => heap_eta = Some(value),
                LIMIT_ETA => limit_eta = Some(value),
                _ => {}
            }
            if keep {
                let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                series.push(Exposed { name: name.to_string(), labels, value });
            }
        });
        if keep {
            exposed.insert(index, series);
        }
        records.push(Record {
            time: s.time,
            pid: s.pid,
            signals: signals
                .iter()
                .map(|sig| SignalRecord {
                    value: s.value(*sig),
                    has_data: state.has_data(*sig),
                    suspected: state.suspected(*sig),
                    windows: state.results(*sig).copied().collect(),
                })
                .collect(),
            heap_floor,
            heap_eta,
            limit_eta,
        });
    });
    Replayed { trace, settings, initial_age, signals, records, exposed }
}

const MIB: f64 = 1024.0 * 1024.0;

/// A value in the unit the table shows: MiB for bytes.
fn fmt_value(signal: Signal, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if signal.is_bytes() => format!("{:.1}", v / MIB),
        Some(v) if v.fract() == 0.0 => format!("{v}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// A growth per second as the table shows it: MiB/min for bytes, per minute for counts.
fn rate_per_minute(signal: Signal, per_second: f64) -> f64 {
    if signal.is_bytes() {
        per_second * 60.0 / MIB
    } else {
        per_second * 60.0
    }
}

fn rate_unit(signal: Signal) -> &'static str {
    if signal.is_bytes() {
        "MiB/min"
    } else {
        "/min"
    }
}

/// A growth per second as a rate per minute with its unit: `1.02 MiB/min`, `0.1/min`.
fn fmt_rate(signal: Signal, per_second: f64) -> String {
    let space = if signal.is_bytes() { " " } else { "" };
    format!("{}{space}{}", fmt_sig(rate_per_minute(signal, per_second)), rate_unit(signal))
}

/// Three significant digits, no exponent.
fn fmt_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = |v: f64| (2 - v.abs().log10().floor() as i32).clamp(0, 12);
    // Digits of the rounded value, so 0.9996 reads 1.00, not 1.000.
    let d = digits(v);
    let rounded = (v * 10f64.powi(d)).round() / 10f64.powi(d);
    let d = digits(rounded) as usize;
    format!("{rounded:.d$}")
}

/// Seconds as `3h12m`: the two largest units, from days to seconds.
fn fmt_duration(secs: f64) -> String {
    let total = secs.max(0.0).round() as u64;
    let units = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(size, _)| total >= *size) else { return "0s".into() };
    let mut out = String::new();
    let mut rest = total;
    for (size, name) in &units[first..(first + 2).min(units.len())] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            let _ = write!(out, "{n}{name}");
        }
    }
    out
}

/// A step for about 20 rows over the trace, never finer than its interval.
fn default_step(r: &Replayed) -> Duration {
    let span = r.records.last().map_or(0.0, |l| l.time - r.start());
    let want = (span / 20.0).max(r.settings.interval.as_secs_f64());
    const NICE: [u64; 19] =
        [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
    Duration::from_secs(NICE.iter().copied().find(|s| *s as f64 >= want).unwrap_or(604800))
}

/// The samples that make rows: the first at or after each step, every one where a verdict of
/// `signals` changes, and the last.
fn rows(r: &Replayed, step: Duration, signals: &[usize]) -> Vec<usize> {
    let step = step.as_secs_f64();
    let start = r.start();
    let mut out = Vec::new();
    let mut next = 0.0;
    for (i, rec) in r.records.iter().enumerate() {
        let offset = rec.time - start;
        let changed =
            i > 0 && signals.iter().any(|s| rec.signals[*s].verdict() != r.records[i - 1].signals[*s].verdict());
        if offset + 1e-9 >= next || changed || i + 1 == r.records.len() {
            out.push(i);
        }
        if offset + 1e-9 >= next {
            next = ((offset + 1e-9) / step).floor() * step + step;
        }
    }
    out
}

/// The spans (seconds from the first sample) during which a signal was suspected; the last
/// is open when the trace ends suspected.
fn suspected_spans(r: &Replayed, i: usize) -> Vec<(f64, Option<f64>)> {
    let start = r.start();
    let mut spans: Vec<(f64, Option<f64>)> = Vec::new();
    for (t, s) in r.signal_records(i) {
        let up = s.verdict() == Verdict::Leak;
        match spans.last_mut() {
            Some((_, end @ None)) if !up => *end = Some(t - start),
            Some((_, None)) => {}
            _ if up => spans.push((t - start, None)),
            _ => {}
        }
    }
    spans
}

/// The summary of one signal over a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Summary {
    signal: &'static str,
    unit: &'static str,
    verdict: &'static str,
    suspected: Vec<Span>,
    growth: Option<Growth>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Span {
    from_seconds: f64,
    to_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Growth {
    window: String,
    per_second: f64,
    confidence: f64,
}

fn summary(r: &Replayed, i: usize) -> Summary {
    let signal = r.signals[i];
    let spans = suspected_spans(r, i);
    let records: Vec<&SignalRecord> = r.records.iter().map(|rec| &rec.signals[i]).collect();
    let longest = |s: &SignalRecord, leak_only: bool| {
        s.windows.iter().rev().find(|w| w.speaks && (!leak_only || w.says_leak)).copied()
    };
    // A leak is described by the longest window that says so at the last suspected sample; a
    // healthy trace by the longest window that spoke last.
    let growth = if !spans.is_empty() {
        records.iter().rev().find(|s| s.verdict() == Verdict::Leak).and_then(|s| longest(s, true).or(longest(s, false)))
    } else {
        records.iter().rev().find_map(|s| longest(s, false))
    };
    let growth_text = growth.map(|w| {
        format!(
            "floor growth {} ({} window, confidence {:.3})",
            fmt_rate(signal, w.estimate.slope),
            window_label(w.window),
            w.estimate.confidence
        )
    });
    let label = signal.as_label();
    let (verdict, text) = if !spans.is_empty() {
        let when: Vec<String> = spans
            .iter()
            .map(|(a, b)| {
                let end = b.map_or("end".to_string(), |b| format!("+{}", fmt_duration(b)));
                format!("from +{} to {end}", fmt_duration(*a))
            })
            .collect();
        let mut text = format!("{label}: leak suspected {}", when.join(", "));
        if let Some(g) = &growth_text {
            let _ = write!(text, "; {g}");
        }
        ("leak", text)
    } else if let Some(g) = growth_text {
        ("no_leak", format!("{label}: no leak; {g}"))
    } else {
        let shortest = r.settings.windows.first().map(|w| window_label(*w)).unwrap_or_default();
        let warm = if r.initial_age > 0.0 {
            String::new()
        } else {
            format!(" after the {} warm-up (--assume-warm skips it)", fmt_duration(r.settings.grace.as_secs_f64()))
        };
        let text = format!(
            "{label}: no verdict: no window could speak (the {shortest} window needs half its length of data and \
             6 floor points{warm}; --leak.window sets shorter windows)"
        );
        ("no_verdict", text)
    };
    Summary {
        signal: label,
        unit: if signal.is_bytes() { "bytes" } else { "count" },
        verdict,
        suspected: spans.iter().map(|(a, b)| Span { from_seconds: *a, to_seconds: *b }).collect(),
        growth: growth.map(|w| Growth {
            window: window_label(w.window),
            per_second: w.estimate.slope,
            confidence: w.estimate.confidence,
        }),
        text,
    }
}

/// Pads cells into aligned columns, numbers to the right and the columns in `left` to the left.
fn columns(header: &[String], rows: &[Vec<String>], left: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        let mut line = String::from("  ");
        for (j, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if j > 0 {
                line.push_str("  ");
            }
            if left.contains(&j) {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn restarts(r: &Replayed) -> Vec<String> {
    let start = r.start();
    r.records
        .windows(2)
        .filter(|w| w[0].pid != w[1].pid)
        .map(|w| {
            let pid = |p: Option<i64>| p.map_or("?".into(), |p| p.to_string());
            format!("pid {} -> {} at +{}", pid(w[0].pid), pid(w[1].pid), fmt_duration(w[1].time - start))
        })
        .collect()
}

/// The table of one trace: a block per analysed signal, then a summary line per signal.
fn table(r: &Replayed, step: Duration, assume_warm: bool) -> String {
    let mut out = String::new();
    let start = r.start();
    let end = r.records.last().map_or(start, |l| l.time);
    let windows: Vec<String> = r.settings.windows.iter().map(|w| window_label(*w)).collect();
    let warm = if assume_warm {
        "already warm at the first sample".to_string()
    } else {
        format!("{} warm-up from the first sample", fmt_duration(r.settings.grace.as_secs_f64()))
    };
    let _ = writeln!(
        out,
        "{}: {} sample{} over {}, every {}; windows {}; {warm}",
        r.trace.name,
        r.records.len(),
        if r.records.len() == 1 { "" } else { "s" },
        fmt_duration(end - start),
        fmt_duration(r.settings.interval.as_secs_f64()),
        windows.join(", ")
    );
    let restarts = restarts(r);
    if !restarts.is_empty() {
        let _ = writeln!(out, "restarts (the analysis starts over): {}", restarts.join(", "));
    }
    for (i, signal) in r.signals.iter().enumerate() {
        let eta = match signal {
            Signal::HeapUsed => Some("time until the heap floor reaches the heap limit"),
            Signal::Rss => Some("time until RSS reaches the memory limit"),
            _ => None,
        };
        let unit = if signal.is_bytes() { "MiB" } else { "count" };
        let _ = write!(out, "\n{} ({unit}; growth in {} per window", signal.as_label(), rate_unit(*signal));
        if let Some(eta) = eta {
            let _ = write!(out, "; ETA: {eta}");
        }
        out.push_str(")\n");
        let mut header = vec!["time".to_string(), signal.as_label().to_string()];
        for w in &windows {
            header.push(format!("{w} growth"));
            header.push("conf".into());
        }
        header.push("verdict".into());
        if eta.is_some() {
            header.push("ETA".into());
        }
        let mut lines = Vec::new();
        for idx in rows(r, step, &[i]) {
            let rec = &r.records[idx];
            let s = &rec.signals[i];
            let mut row = vec![format!("+{}", fmt_duration(rec.time - start)), fmt_value(*signal, s.value)];
            for w in &r.settings.windows {
                match s.windows.iter().find(|x| x.window == *w).filter(|x| x.enough && s.has_data) {
                    Some(x) => {
                        let rate = rate_per_minute(*signal, x.estimate.slope);
                        row.push(format!("{}{}", if rate >= 0.0 { "+" } else { "" }, fmt_sig(rate)));
                        row.push(format!("{:.3}", x.estimate.confidence));
                    }
                    None => row.extend(["-".to_string(), "-".to_string()]),
                }
            }
            row.push(s.verdict().text().to_string());
            if eta.is_some() {
                let v = if *signal == Signal::HeapUsed { rec.heap_eta } else { rec.limit_eta };
                row.push(v.map_or("-".into(), fmt_duration));
            }
            lines.push(row);
        }
        let last = header.len() - 1;
        let verdict_col = if eta.is_some() { last - 1 } else { last };
        out.push_str(&columns(&header, &lines, &[0, verdict_col]));
    }
    out.push('\n');
    for i in 0..r.signals.len() {
        let _ = writeln!(out, "{}", summary(r, i).text);
    }
    out.push('\n');
    out
}

#[derive(Serialize)]
struct JsonTrace {
    name: String,
    samples: usize,
    start: f64,
    end: f64,
    interval_seconds: f64,
    windows: Vec<String>,
    grace_period_seconds: f64,
    assume_warm: bool,
    step_seconds: f64,
    signals: Vec<Summary>,
    steps: Vec<JsonStep>,
}

#[derive(Serialize)]
struct JsonStep {
    offset_seconds: f64,
    time: f64,
    pid: Option<i64>,
    heap_eta_seconds: Option<f64>,
    memory_limit_eta_seconds: Option<f64>,
    signals: Vec<JsonSignal>,
}

#[derive(Serialize)]
struct JsonSignal {
    signal: &'static str,
    value: Option<f64>,
    verdict: Verdict,
    suspected: bool,
    windows: Vec<JsonWindow>,
}

#[derive(Serialize)]
struct JsonWindow {
    window: String,
    growth_per_second: f64,
    confidence: f64,
    points: usize,
    enough: bool,
    speaks: bool,
    says_leak: bool,
}

fn json_trace(r: &Replayed, step: Duration, args: &AnalyzeArgs) -> JsonTrace {
    let start = r.start();
    let all: Vec<usize> = (0..r.signals.len()).collect();
    let steps = rows(r, step, &all)
        .into_iter()
        .map(|i| {
            let rec = &r.records[i];
            JsonStep {
                offset_seconds: rec.time - start,
                time: rec.time,
                pid: rec.pid,
                heap_eta_seconds: rec.heap_eta,
                memory_limit_eta_seconds: rec.limit_eta,
                signals: r
                    .signals
                    .iter()
                    .zip(&rec.signals)
                    .map(|(sig, s)| JsonSignal {
                        signal: sig.as_label(),
                        value: s.value,
                        verdict: s.verdict(),
                        suspected: s.suspected,
                        windows: s
                            .windows
                            .iter()
                            .map(|w| JsonWindow {
                                window: window_label(w.window),
                                growth_per_second: w.estimate.slope,
                                confidence: w.estimate.confidence,
                                points: w.estimate.points,
                                enough: w.enough,
                                speaks: w.speaks,
                                says_leak: w.says_leak,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    JsonTrace {
        name: r.trace.name.clone(),
        samples: r.records.len(),
        start,
        end: r.records.last().map_or(start, |l| l.time),
        interval_seconds: r.settings.interval.as_secs_f64(),
        windows: r.settings.windows.iter().map(|w| window_label(*w)).collect(),
        grace_period_seconds: r.settings.grace.as_secs_f64(),
        assume_warm: args.assume_warm,
        step_seconds: step.as_secs_f64(),
        signals: (0..r.signals.len()).map(|i| summary(r, i)).collect(),
        steps,
    }
}

/// The promtool time grid shared by all traces: a point every `step` from the earliest first
/// sample, and for each trace and point the sample the exporter would have served then (the
/// latest one, unless older than a step and two intervals: then the process was not seen).
struct Grid {
    step: Duration,
    points: usize,
    /// Per trace, per point.
    samples: Vec<Vec<Option<usize>>>,
}

impl Grid {
    fn new(traces: &[Trace], settings: &[LeakSettings], step: Duration) -> Grid {
        let first = traces.iter().filter_map(|t| t.samples.first()).map(|s| s.time).fold(f64::INFINITY, f64::min);
        let last = traces.iter().filter_map(|t| t.samples.last()).map(|s| s.time).fold(f64::NEG_INFINITY, f64::max);
        let dt = step.as_secs_f64();
        let points = if first.is_finite() { ((last - first) / dt + 1e-9).floor() as usize + 1 } else { 0 };
        let samples = traces
            .iter()
            .zip(settings)
            .map(|(t, s)| {
                let fresh = dt.max(2.0 * s.interval.as_secs_f64());
                let mut j = 0;
                (0..points)
                    .map(|k| {
                        let at = first + k as f64 * dt + 1e-6;
                        while j < t.samples.len() && t.samples[j].time <= at {
                            j += 1;
                        }
                        (j > 0 && at - t.samples[j - 1].time <= fresh + 1e-6).then(|| j - 1)
                    })
                    .collect()
            })
            .collect();
        Grid { step, points, samples }
    }
}

/// Parses `name="value",...` (braces optional).
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let s = s.trim();
    let s = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(s);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(c) = chars.peek().copied().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            chars.next();
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("expected a label name in {s:?}"));
        }
        if ["__name__", "signal", "window", "source", "protocol", "type"].contains(&name.as_str()) {
            return Err(format!("label {name:?} is set by the series themselves"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("label {name:?} given twice"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("expected {name}=\"value\""));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated value of {name}")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => return Err(format!("bad escape \\{} in the value of {name}", other.unwrap_or(' '))),
                },
                Some(c) => value.push(c),
            }
        }
        out.push((name, value));
    }
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A value as promtool reads it: no exponent for ordinary numbers.
fn fmt_series_value(v: f64) -> String {
    let plain = format!("{v}");
    if plain.len() > 20 {
        format!("{v:e}")
    } else {
        plain
    }
}

/// A series' values in promtool's expanding notation: `vxN` for N+1 equal values, `_xN` for N
/// missing ones, `stale` where a series disappears (as Prometheus marks it at the next scrape).
fn expand_notation(values: &[Option<f64>]) -> String {
    let mut tokens: Vec<String> = Vec::new();
    let mut seen = false;
    let mut prev_present = false;
    for v in values {
        match v {
            Some(v) => {
                tokens.push(fmt_series_value(*v));
                prev_present = true;
                seen = true;
            }
            None if seen && prev_present => {
                tokens.push("stale".into());
                prev_present = false;
            }
            None => tokens.push("_".into()),
        }
    }
    // What follows the last sample (and its staleness) says nothing.
    while tokens.last().is_some_and(|t| t == "_") {
        tokens.pop();
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let mut n = 1;
        while i + n < tokens.len() && tokens[i + n] == tokens[i] && tokens[i] != "stale" {
            n += 1;
        }
        out.push(match (tokens[i].as_str(), n) {
            (t, 1) => t.to_string(),
            ("_", n) => format!("_x{n}"),
            (t, n) => format!("{t}x{}", n - 1),
        });
        i += n;
    }
    out.join(" ")
}

/// A duration as Prometheus writes it: `1m`, `1m30s`, `500ms`.
fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut s = ms / 1000;
    let mut out = String::new();
    for (size, unit) in [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if s >= size {
            let _ = write!(out, "{}{unit}", s / size);
            s %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// An input series of a sample: name, value, labels after the process's.
type Input<'a> = (&'a str, Option<f64>, &'a [(&'a str, &'a str)]);

/// The series the exporter would have served for the traces, on the grid, as a promtool test's
/// `interval` and `input_series`.
fn promtool(replayed: &[Replayed], grid: &Grid, app: &str, labels: &[(String, String)], path: &str) -> String {
    let user_pid = labels.iter().find(|(k, _)| k == "pid").map(|(_, v)| v.clone());
    let user_app = labels.iter().find(|(k, _)| k == "app").map(|(_, v)| v.clone());
    let extra: Vec<&(String, String)> = labels.iter().filter(|(k, _)| k != "pid" && k != "app").collect();
    let base = |r: &Replayed, i: usize, trace: Option<usize>| {
        let pid = user_pid.clone().or_else(|| r.records[i].pid.map(|p| p.to_string())).unwrap_or_else(|| "1".into());
        let mut l = vec![("pid".to_string(), pid), ("app".to_string(), user_app.clone().unwrap_or_else(|| app.into()))];
        l.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(n) = trace {
            l.push(("trace".into(), n.to_string()));
        }
        l
    };
    // Two processes of a query_range answer may share pid and app (other instances): a `trace`
    // label keeps their series apart.
    let mut owners: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut clash = false;
    for (n, (r, points)) in replayed.iter().zip(&grid.samples).enumerate() {
        for i in points.iter().flatten() {
            clash |= *owners.entry(base(r, *i, None)).or_insert(n) != n;
        }
    }

    let mut order: Vec<String> = Vec::new();
    let mut series: HashMap<String, Vec<Option<f64>>> = HashMap::new();
    let mut put = |name: &str, labels: &[(String, String)], k: usize, v: f64| {
        let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v))).collect();
        let key = format!("{name}{{{}}}", rendered.join(","));
        let values = series.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            vec![None; grid.points]
        });
        values[k] = Some(v);
    };
    for (n, (r, points)) in replayed.iter().zip(&grid.samples).enumerate() {
        for (k, i) in points.iter().enumerate() {
            let Some(i) = *i else { continue };
            let labels = base(r, i, clash.then_some(n));
            let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
                labels.iter().cloned().chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string()))).collect()
            };
            let s = &r.trace.samples[i];
            let inputs: [Input; 9] = [
                ("nodejs_heap_size_used_bytes", s.value(Signal::HeapUsed), &[]),
                ("nodejs_heap_size_used_after_gc_bytes", r.records[i].heap_floor, &[]),
                ("nodejs_heap_size_limit_bytes", s.heap_limit, &[]),
                ("nodejs_external_memory_bytes", s.value(Signal::External), &[]),
                ("nodejs_active_resources", s.value(Signal::ActiveResources), &[("type", RESOURCES_TYPE)]),
                ("process_resident_memory_bytes", s.value(Signal::Rss), &[]),
                ("process_open_fds", s.value(Signal::OpenFds), &[]),
                ("nodejs_process_open_sockets", s.value(Signal::Sockets), &[("protocol", SOCKETS_PROTOCOL)]),
                (exposition::MEMORY_LIMIT, s.memory_limit, &[("source", LIMIT_SOURCE)]),
            ];
            for (name, v, extra) in inputs {
                if let Some(v) = v {
                    put(name, &with(extra), k, v);
                }
            }
            for e in r.exposed.get(&i).into_iter().flatten() {
                let extra: Vec<(&str, &str)> = e.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                put(&e.name, &with(&extra), k, e.value);
            }
        }
    }

    let interval = prom_duration(grid.step);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The series nodejs-leak-exporter would have served for {path}: one promtool test, a point every {interval}\n\
         # from the first sample (time 0 of the test). Paste it under `tests:` and add alert_rule_test or\n\
         # promql_expr_test; or paste its series under another test's input_series. Sockets are written as\n\
         # protocol=\"{SOCKETS_PROTOCOL}\", active resources as type=\"{RESOURCES_TYPE}\", a memory limit as \
         source=\"{LIMIT_SOURCE}\"."
    );
    let _ = writeln!(out, "  - interval: {interval}");
    out.push_str("    input_series:\n");
    for key in &order {
        let _ = writeln!(out, "      - series: '{}'", key.replace('\'', "''"));
        let _ = writeln!(out, "        values: '{}'", expand_notation(&series[key]));
    }
    out
}

/// What the plot shows of each analysed signal of a trace.
fn panels(r: &Replayed) -> Vec<Panel> {
    let start = r.start();
    let span = r.records.last().map_or(0.0, |l| l.time - start);
    let (x_unit, x_label) = if span > 6.0 * 3600.0 { (3600.0, "hours") } else { (60.0, "minutes") };
    let x = |t: f64| (t - start) / x_unit;
    let exact_floors = r.trace.samples.iter().any(|s| s.heap_after_gc.is_some());
    r.signals
        .iter()
        .enumerate()
        .map(|(i, signal)| {
            let scale = if signal.is_bytes() { MIB } else { 1.0 };
            // Segments end at a missing value or a restart.
            let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut raw: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut prev_pid = None;
            for (j, s) in r.trace.samples.iter().enumerate() {
                match s.value(*signal) {
                    Some(v) if j > 0 && s.pid == prev_pid && !raw.last().is_none_or(Vec::is_empty) => {
                        raw.last_mut().expect("checked").push((s.time, v));
                    }
                    Some(v) => raw.push(vec![(s.time, v)]),
                    None => raw.push(Vec::new()),
                }
                prev_pid = s.pid;
            }
            raw.retain(|seg| !seg.is_empty());
            let floors: Vec<(f64, f64)> = if *signal == Signal::HeapUsed && exact_floors {
                let mut last = None;
                r.trace
                    .samples
                    .iter()
                    .filter_map(|s| {
                        let f = s.heap_after_gc?;
                        let new = last != Some((f, s.major_gcs));
                        last = Some((f, s.major_gcs));
                        new.then_some((s.time, f))
                    })
                    .collect()
            } else {
                raw.iter()
                    .flat_map(|seg| {
                        let current = seg.last().map_or(0.0, |p| p.1);
                        crate::analysis::floor_points(seg, plot_min_drop(*signal, current))
                    })
                    .collect()
            };
            for seg in &raw {
                segments.push(seg.iter().map(|(t, v)| (x(*t), v / scale)).collect());
            }
            let fit = fit_line(r, i, &floors).map(|f| Fit {
                from: (x(f.from.0), f.from.1 / scale),
                to: (x(f.to.0), f.to.1 / scale),
                label: f.label,
            });
            let suspected =
                suspected_spans(r, i).into_iter().map(|(a, b)| (a / x_unit, b.unwrap_or(span) / x_unit)).collect();
            let sum = summary(r, i);
            Panel {
                title: format!("{} — {}: {}", r.trace.name, signal.as_label(), sum.verdict.replace('_', " ")),
                x_label: format!("{x_label} from the first sample"),
                y_label: if signal.is_bytes() { "MiB".into() } else { "count".into() },
                segments,
                floors: floors.iter().map(|(t, v)| (x(*t), v / scale)).collect(),
                floor_label: if *signal == Signal::HeapUsed && exact_floors {
                    "heap after full GC".into()
                } else {
                    "floor points".into()
                },
                fit,
                suspected,
            }
        })
        .collect()
}

/// What counts as a drop when finding floor points for the plot: the rule the detector uses
/// (2% of the value and at least 1 MiB for bytes, half a unit for counts).
fn plot_min_drop(signal: Signal, value: f64) -> f64 {
    if signal.is_bytes() {
        (value * 0.02).max(MIB)
    } else {
        0.5
    }
}

/// The slope of the shortest window that speaks at the last sample with the signal, through
/// the median of its floor points over that window (Theil–Sen's intercept).
fn fit_line(r: &Replayed, i: usize, floors: &[(f64, f64)]) -> Option<Fit> {
    let signal = r.signals[i];
    let (end, s) = r.signal_records(i).filter(|(_, s)| s.has_data).last()?;
    let w = s.windows.iter().find(|w| w.speaks)?;
    let from = (end - w.window.as_secs_f64()).max(r.start());
    let slope = w.estimate.slope;
    let mut offsets: Vec<f64> =
        floors.iter().filter(|(t, _)| *t >= from && *t <= end).map(|(t, v)| v - slope * (t - from)).collect();
    if offsets.is_empty() {
        return None;
    }
    offsets.sort_by(f64::total_cmp);
    let at_from = offsets[offsets.len() / 2];
    let label = format!(
        "{} window: {} (confidence {:.3})",
        window_label(w.window),
        fmt_rate(signal, slope),
        w.estimate.confidence
    );
    Some(Fit { from: (from, at_from), to: (end, at_from + slope * (end - from)), label })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(windows: &[u64], grace: u64, interval: u64) -> LeakSettings {
        LeakSettings {
            windows: windows.iter().map(|s| Duration::from_secs(*s)).collect(),
            grace: Duration::from_secs(grace),
            interval: Duration::from_secs(interval),
        }
    }

    /// A heap sawtooth: `minutes` of 15 s samples, a GC every minute, the floor rising by
    /// `leak` MiB/min; `pid` at each sample.
    fn sawtooth(minutes: u64, leak: f64, pid: impl Fn(u64) -> i64) -> Trace {
        let mut text = String::from("time,heap_used,rss,heap_limit,memory_limit,pid\n");
        for i in 0..minutes * 4 {
            let t = i * 15;
            let floor = 200.0 * MIB + leak * MIB * t as f64 / 60.0;
            let v = floor + 30.0 * MIB * (t % 60) as f64 / 60.0;
            let _ = writeln!(text, "{t},{v},{},{},{},{}", v * 1.5, 2048.0 * MIB, 4096.0 * MIB, pid(t));
        }
        trace::parse_csv(&text, "saw.csv", Signal::HeapUsed).unwrap()
    }

    fn replayed(t: Trace, expose_all: bool) -> Replayed {
        let expose: HashSet<usize> = if expose_all { (0..t.samples.len()).collect() } else { HashSet::new() };
        replay(t, settings(&[900, 3600], 300, 15), 0.0, &expose)
    }

    #[test]
    fn durations_and_numbers_read_well() {
        assert_eq!(fmt_duration(0.0), "0s");
        assert_eq!(fmt_duration(615.0), "10m15s");
        assert_eq!(fmt_duration(3600.0), "1h");
        assert_eq!(fmt_duration(3600.0 * 26.0 + 125.0), "1d2h");
        assert_eq!(fmt_duration(3.0 * 3600.0 + 12.0 * 60.0 + 30.0), "3h12m");
        assert_eq!(fmt_sig(1.0234), "1.02");
        assert_eq!(fmt_sig(0.99996), "1.00");
        assert_eq!(fmt_sig(-0.0012345), "-0.00123");
        assert_eq!(fmt_sig(1234.5), "1235");
        assert_eq!(fmt_rate(Signal::HeapUsed, MIB / 60.0), "1.00 MiB/min");
        assert_eq!(fmt_rate(Signal::OpenFds, 1.0 / 600.0), "0.100/min");
        assert_eq!(prom_duration(Duration::from_secs(60)), "1m");
        assert_eq!(prom_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn promtool_notation_expands_runs_missing_and_stale_samples() {
        let v = [None, None, Some(1.0), Some(1.0), Some(1.0), Some(2.5), None, None, Some(3.0), None, None];
        assert_eq!(expand_notation(&v), "_x2 1x2 2.5 stale _ 3 stale");
        assert_eq!(expand_notation(&[Some(-0.5)]), "-0.5");
        assert_eq!(expand_notation(&[None, None]), "");
        assert_eq!(fmt_series_value(1e-300), "1e-300");
        assert_eq!(fmt_series_value(2147483648.0), "2147483648");
    }

    #[test]
    fn labels_parse_with_or_without_braces_and_refuse_series_labels() {
        let l = parse_labels(r#"{app="api", env="a \"b\"\\c"}"#).unwrap();
        assert_eq!(l, vec![("app".into(), "api".into()), ("env".into(), "a \"b\"\\c".into())]);
        assert_eq!(parse_labels("").unwrap(), vec![]);
        assert_eq!(parse_labels(r#"pid="7""#).unwrap(), vec![("pid".into(), "7".into())]);
        for (bad, why) in [
            (r#"signal="x""#, "set by the series"),
            (r#"a="1",a="2""#, "twice"),
            (r#"a="1"#, "unterminated"),
            ("a=1", "a=\"value\""),
            (r#"1a="x""#, "label name"),
        ] {
            let e = parse_labels(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_leak_is_reported_with_its_span_and_slope() {
        let r = replayed(sawtooth(120, 1.0, |_| 1), false);
        assert_eq!(r.signals, vec![Signal::HeapUsed, Signal::Rss]);
        let s = summary(&r, 0);
        assert_eq!(s.verdict, "leak");
        assert_eq!(s.suspected.len(), 1);
        assert!(s.suspected[0].to_seconds.is_none());
        let g = s.growth.unwrap();
        let per_min = g.per_second * 60.0 / MIB;
        assert!((per_min - 1.0).abs() < 0.05, "{per_min}");
        assert!(s.text.starts_with("heap_used: leak suspected from +"), "{}", s.text);
        assert!(s.text.contains("to end; floor growth 1.0"), "{}", s.text);
        // The ETAs are the exporter's: heap floor towards the heap limit, RSS towards the limit.
        let last = r.records.last().unwrap();
        let eta = last.heap_eta.unwrap();
        let expected = (2048.0 - 320.0) * 60.0; // MiB left at 1 MiB/min
        assert!((eta - expected).abs() < expected * 0.1, "{eta}");
        assert!(last.limit_eta.is_some());
    }

    #[test]
    fn a_flat_trace_is_no_leak_and_a_short_one_no_verdict() {
        let r = replayed(sawtooth(120, 0.0, |_| 1), false);
        let s = summary(&r, 0);
        assert_eq!(s.verdict, "no_leak", "{}", s.text);
        assert!(r.records.iter().all(|rec| !rec.signals[0].suspected));
        let r = replayed(sawtooth(4, 1.0, |_| 1), false);
        let s = summary(&r, 0);
        assert_eq!(s.verdict, "no_verdict");
        assert!(s.text.contains("no window could speak") && s.text.contains("--assume-warm"), "{}", s.text);
    }

    #[test]
    fn table_rows_are_steps_verdict_changes_and_the_end() {
        let r = replayed(sawtooth(60, 1.0, |_| 1), false);
        let rows = rows(&r, Duration::from_secs(600), &[0]);
        let offsets: Vec<f64> = rows.iter().map(|i| r.records[*i].time).collect();
        for step in [0.0, 600.0, 1200.0, 1800.0, 2400.0, 3000.0, 3585.0] {
            assert!(offsets.contains(&step), "{step} in {offsets:?}");
        }
        let up = r.records.iter().position(|rec| rec.signals[0].suspected).unwrap();
        assert!(rows.contains(&up), "the sample where the verdict rises is a row");
        let text = table(&r, Duration::from_secs(600), false);
        assert!(text.contains("LEAK") && text.contains("no verdict"), "{text}");
        assert!(text.contains("15m growth") && text.contains("1h growth"), "{text}");
    }

    #[test]
    fn promtool_series_match_the_exporter_and_split_at_a_restart() {
        let t = sawtooth(90, 1.0, |t| if t < 3600 { 10 } else { 11 });
        let traces = vec![t];
        let s = vec![settings(&[900, 3600], 300, 15)];
        let grid = Grid::new(&traces, &s, Duration::from_secs(60));
        assert_eq!(grid.points, 90);
        let expose: HashSet<usize> = grid.samples[0].iter().flatten().copied().collect();
        let r = replay(traces.into_iter().next().unwrap(), s.into_iter().next().unwrap(), 0.0, &expose);
        let text = promtool(std::slice::from_ref(&r), &grid, "saw", &parse_labels(r#"env="test""#).unwrap(), "saw.csv");
        assert!(text.contains("  - interval: 1m\n    input_series:\n"), "{text}");
        let series = |name: &str| -> Vec<(String, String)> {
            let mut out = Vec::new();
            let mut lines = text.lines();
            while let Some(l) = lines.next() {
                if let Some(s) = l.trim().strip_prefix("- series: '") {
                    let values = lines.next().unwrap().trim().strip_prefix("values: '").unwrap();
                    if s.starts_with(&format!("{name}{{")) {
                        out.push((s.trim_end_matches('\'').to_string(), values.trim_end_matches('\'').to_string()));
                    }
                }
            }
            out
        };
        let suspected = series("nodejs_leak_suspected");
        // Per signal and per pid: the restart is a new process.
        assert_eq!(suspected.len(), 4, "{suspected:?}");
        let (name, values) = &suspected[0];
        assert_eq!(name, r#"nodejs_leak_suspected{pid="10",app="saw",env="test",signal="heap_used"}"#);
        // Up within the hour, and stale at the restart.
        assert!(values.starts_with("0x") && values.contains(" 1x") && values.ends_with(" stale"), "{values}");
        let (name, values) = &suspected[2];
        assert!(name.contains(r#"pid="11""#), "{name}");
        assert!(values.starts_with("_x60 0"), "{values}");
        // Growth and confidence only once a window holds enough data: the 1h window never does
        // before the restart, nor for 30 minutes after it.
        let growth = series("nodejs_memory_growth_bytes_per_second");
        assert!(growth.iter().all(|(n, _)| !(n.contains("window=\"1h\"") && n.contains("pid=\"11\""))), "{growth:?}");
        assert!(growth.iter().any(|(n, _)| n.contains("window=\"1h\"") && n.contains("pid=\"10\"")));
        assert_eq!(series("nodejs_heap_exhaustion_eta_seconds").len(), 2);
        let limit = series("nodejs_memory_limit_eta_seconds");
        assert!(limit[0].0.contains(r#"source="cgroup""#), "{limit:?}");
        for input in ["nodejs_heap_size_used_bytes", "process_resident_memory_bytes", "nodejs_memory_limit_bytes"] {
            assert_eq!(series(input).len(), 2, "{input}");
        }
        // A pid given in --labels holds across the restart.
        let merged = promtool(&[r], &grid, "saw", &parse_labels(r#"pid="1""#).unwrap(), "saw.csv");
        assert_eq!(merged.matches("- series: 'nodejs_leak_suspected{").count(), 2);
    }

    #[test]
    fn the_grid_marks_a_process_absent_when_its_samples_stop() {
        let text = "time,rss\n0,1\n60,2\n120,3\n600,4\n660,5\n";
        let t = trace::parse_csv(text, "x", Signal::Rss).unwrap();
        let grid = Grid::new(&[t], &[settings(&[900], 0, 60)], Duration::from_secs(60));
        let got: Vec<Option<usize>> = grid.samples[0].clone();
        assert_eq!(got[..4], [Some(0), Some(1), Some(2), Some(2)]);
        assert_eq!(got[5], None);
        assert_eq!(got[10], Some(3));
        assert_eq!(got[11], Some(4));
    }

    #[test]
    fn the_heap_floor_is_carried_until_a_restart() {
        let text = "time,heap_used,heap_used_after_gc,pid\n0,10,,1\n5,12,8,1\n10,14,,1\n15,9,,2\n";
        let t = trace::parse_csv(text, "x", Signal::HeapUsed).unwrap();
        let r = replay(t, settings(&[900], 0, 5), 0.0, &HashSet::new());
        let floors: Vec<Option<f64>> = r.records.iter().map(|rec| rec.heap_floor).collect();
        assert_eq!(floors, vec![None, Some(8.0), Some(8.0), None]);
        assert_eq!(restarts(&r), vec!["pid 1 -> 2 at +15s".to_string()]);
    }
}
