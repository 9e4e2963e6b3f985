//! Traces: recorded series of one process, read from a CSV file or a Prometheus `query_range`
//! answer, and replayed through the same leak analysis the live exporter runs ([`replay`]).
//!
//! This module reads and replays; it does not print. `analyze` formats what a replay produced;
//! the corpus tests and the detector benchmark replay traces they generate or recorded.
//!
//! CSV: optional `#` comment lines, then an optional header naming the columns, then one row per
//! sample. Without a header the two columns are `time,value`. Columns:
//! - `time` (first): unix seconds (fractions allowed) or an RFC 3339 timestamp;
//! - `value`: the signal given by `--signal` (default `heap_used`);
//! - a signal by name: `heap_used`, `rss`, `external`, `open_fds`, `sockets`, `active_resources`;
//! - `heap_used_after_gc` (heap right after the last full GC) and `major_gcs` (their count),
//!   which give the heap its exact floor; `heap_limit`; `memory_limit` (cgroup or PM2);
//! - `pid`: a change of pid is a restart, and the analysis starts over as for a new process;
//! - anything else known to be informative only (`heap_total`) is ignored; an unknown column is
//!   an error that names it.
//!
//! Empty cells are missing values.

use std::collections::BTreeMap;
use std::path::Path;

use crate::leak::{LeakSettings, LeakState, Observation, Signal};

/// One sample of a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSample {
    /// Seconds (unix time, or any origin: only differences matter).
    pub time: f64,
    /// Indexed like [`Signal::ALL`].
    pub values: [Option<f64>; 6],
    pub heap_after_gc: Option<f64>,
    pub major_gcs: Option<u64>,
    pub heap_limit: Option<f64>,
    pub memory_limit: Option<f64>,
    /// The process behind the series, where known; a change is a restart.
    pub pid: Option<i64>,
}

impl TraceSample {
    pub fn value(&self, signal: Signal) -> Option<f64> {
        self.values[signal_index(signal)]
    }

    pub fn set(&mut self, signal: Signal, v: Option<f64>) {
        self.values[signal_index(signal)] = v;
    }
}

fn signal_index(signal: Signal) -> usize {
    Signal::ALL.iter().position(|s| *s == signal).expect("listed")
}

/// A series of one process (or of one app across restarts), in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// What the series is: the file name, or the labels of a Prometheus series.
    pub name: String,
    pub samples: Vec<TraceSample>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
    #[error("not a Prometheus query_range answer: {0}")]
    Json(String),
    #[error("the trace holds no samples")]
    Empty,
}

/// Parses a signal name as the metric label writes it.
pub fn parse_signal(s: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|sig| sig.as_label() == s)
}

/// Reads a trace file: a Prometheus answer when it starts with `{`, CSV otherwise. A Prometheus
/// answer may hold several processes: one trace each.
pub fn read_file(path: &Path, default_signal: Signal) -> Result<Vec<Trace>, TraceError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| TraceError::Read { path: path.display().to_string(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&text, &name, default_signal)
}

/// Parses trace text, CSV or JSON (see the module documentation).
pub fn parse(text: &str, name: &str, default_signal: Signal) -> Result<Vec<Trace>, TraceError> {
    let traces = if text.trim_start().starts_with('{') {
        parse_query_range(text, default_signal)?
    } else {
        vec![parse_csv(text, name, default_signal)?]
    };
    if traces.iter().all(|t| t.samples.is_empty()) {
        return Err(TraceError::Empty);
    }
    Ok(traces)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Time,
    Signal(Signal),
    HeapAfterGc,
    MajorGcs,
    HeapLimit,
    MemoryLimit,
    Pid,
    Ignored,
}

fn column(name: &str, default_signal: Signal) -> Option<Column> {
    Some(match name {
        "time" | "timestamp" => Column::Time,
        "value" => Column::Signal(default_signal),
        "heap_used_after_gc" => Column::HeapAfterGc,
        "major_gcs" => Column::MajorGcs,
        "heap_limit" => Column::HeapLimit,
        "memory_limit" => Column::MemoryLimit,
        "pid" => Column::Pid,
        "heap_total" => Column::Ignored,
        other => Column::Signal(parse_signal(other)?),
    })
}

/// Parses the CSV form.
pub fn parse_csv(text: &str, name: &str, default_signal: Signal) -> Result<Trace, TraceError> {
    let mut columns: Option<Vec<Column>> = None;
    let mut trace = Trace { name: name.to_string(), samples: Vec::new() };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |message: String| TraceError::Csv { line: i + 1, message };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cols = match &columns {
            Some(c) => c,
            None => {
                let first = cells[0].trim_matches('"');
                if parse_time(first).is_none() {
                    // A header.
                    let mut parsed = Vec::with_capacity(cells.len());
                    for cell in &cells {
                        let cell = cell.trim_matches('"');
                        parsed.push(column(cell, default_signal).ok_or_else(|| {
                            err(format!(
                                "unknown column {cell:?}; known: time, value, heap_used, rss, external, open_fds, \
                                 sockets, active_resources, heap_used_after_gc, major_gcs, heap_limit, \
                                 memory_limit, pid, heap_total"
                            ))
                        })?);
                    }
                    if parsed.first() != Some(&Column::Time) {
                        return Err(err("the first column must be time".into()));
                    }
                    columns = Some(parsed);
                    continue;
                }
                columns = Some(vec![Column::Time, Column::Signal(default_signal)]);
                columns.as_ref().expect("just set")
            }
        };
        if cells.len() != cols.len() {
            return Err(err(format!("{} cells where the header has {}", cells.len(), cols.len())));
        }
        let mut s = TraceSample::default();
        for (cell, col) in cells.iter().zip(cols) {
            let cell = cell.trim_matches('"');
            if cell.is_empty() {
                continue;
            }
            if *col == Column::Time {
                s.time = parse_time(cell).ok_or_else(|| err(format!("{cell:?} is not a time")))?;
                continue;
            }
            let v: f64 = cell.parse().map_err(|_| err(format!("{cell:?} is not a number")))?;
            if !v.is_finite() {
                return Err(err(format!("{cell:?} is not a finite number")));
            }
            match col {
                Column::Signal(sig) => s.set(*sig, Some(v)),
                Column::HeapAfterGc => s.heap_after_gc = Some(v),
                Column::MajorGcs => s.major_gcs = Some(v.max(0.0) as u64),
                Column::HeapLimit => s.heap_limit = Some(v),
                Column::MemoryLimit => s.memory_limit = Some(v),
                Column::Pid => s.pid = Some(v as i64),
                Column::Time | Column::Ignored => {}
            }
        }
        if trace.samples.last().is_some_and(|last| s.time <= last.time) {
            return Err(err("times must increase".into()));
        }
        trace.samples.push(s);
    }
    Ok(trace)
}

/// Writes a trace as CSV with a header, every column [`parse_csv`] reads back (empty cells for
/// missing values), so generated traces can be fed to `analyze`.
pub fn to_csv(trace: &Trace) -> String {
    use std::fmt::Write;
    let mut out = String::from("time");
    for signal in Signal::ALL {
        out.push(',');
        out.push_str(signal.as_label());
    }
    out.push_str(",heap_used_after_gc,major_gcs,heap_limit,memory_limit,pid\n");
    let cell = |out: &mut String, v: Option<String>| {
        out.push(',');
        if let Some(v) = v {
            out.push_str(&v);
        }
    };
    for s in &trace.samples {
        let _ = write!(out, "{}", s.time);
        for v in s.values {
            cell(&mut out, v.map(|v| v.to_string()));
        }
        cell(&mut out, s.heap_after_gc.map(|v| v.to_string()));
        cell(&mut out, s.major_gcs.map(|v| v.to_string()));
        cell(&mut out, s.heap_limit.map(|v| v.to_string()));
        cell(&mut out, s.memory_limit.map(|v| v.to_string()));
        cell(&mut out, s.pid.map(|v| v.to_string()));
        out.push('\n');
    }
    out
}

fn parse_time(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// What a metric of the exporter (or of prom-client) feeds: the column it fills, summed over
/// label values such as `protocol` or `type`.
fn metric_column(name: &str) -> Option<Column> {
    Some(match name {
        "nodejs_heap_size_used_bytes" => Column::Signal(Signal::HeapUsed),
        "process_resident_memory_bytes" => Column::Signal(Signal::Rss),
        "nodejs_external_memory_bytes" => Column::Signal(Signal::External),
        "process_open_fds" => Column::Signal(Signal::OpenFds),
        "nodejs_process_open_sockets" => Column::Signal(Signal::Sockets),
        "nodejs_active_resources" | "nodejs_active_resources_total" => Column::Signal(Signal::ActiveResources),
        "nodejs_heap_size_used_after_gc_bytes" => Column::HeapAfterGc,
        "nodejs_heap_size_limit_bytes" => Column::HeapLimit,
        "nodejs_memory_limit_bytes" => Column::MemoryLimit,
        _ => return None,
    })
}

/// Labels that split a metric into parts to sum, not into processes.
const PART_LABELS: [&str; 4] = ["__name__", "protocol", "type", "source"];

#[derive(serde::Deserialize)]
struct Answer {
    status: Option<String>,
    data: Option<Data>,
    #[serde(rename = "resultType")]
    result_type: Option<String>,
    result: Option<Vec<Series>>,
}

#[derive(serde::Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Series>,
}

#[derive(serde::Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Parses a Prometheus `query_range` answer (the whole answer, or its `data`). Series are grouped
/// into processes by their labels other than the metric name and the part labels (`protocol`,
/// `type`, `source`); a series with an unknown name, or none (an expression), is `default_signal`.
pub fn parse_query_range(text: &str, default_signal: Signal) -> Result<Vec<Trace>, TraceError> {
    let answer: Answer = serde_json::from_str(text).map_err(|e| TraceError::Json(e.to_string()))?;
    if let Some(status) = &answer.status {
        if status != "success" {
            return Err(TraceError::Json(format!("status is {status:?}")));
        }
    }
    let (kind, result) = match (answer.data, answer.result_type, answer.result) {
        (Some(d), _, _) => (d.result_type, d.result),
        (None, Some(k), Some(r)) => (k, r),
        _ => return Err(TraceError::Json("no data.result".into())),
    };
    if kind != "matrix" {
        return Err(TraceError::Json(format!("resultType is {kind:?}, expected \"matrix\" (use query_range)")));
    }
    // process labels -> time (ms, exact) -> sample
    let mut processes: BTreeMap<String, BTreeMap<i64, TraceSample>> = BTreeMap::new();
    for series in result {
        let col =
            series.metric.get("__name__").and_then(|n| metric_column(n)).unwrap_or(Column::Signal(default_signal));
        // prom-client's memory limit, or a cgroup one: the smallest wins, like the live exporter.
        let key: Vec<String> = series
            .metric
            .iter()
            .filter(|(k, _)| !PART_LABELS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let pid = series.metric.get("pid").and_then(|p| p.parse::<i64>().ok());
        let samples = processes.entry(key.join(",")).or_default();
        for (t, v) in series.values {
            let Ok(v) = v.parse::<f64>() else { continue };
            if !v.is_finite() {
                continue;
            }
            let s = samples.entry((t * 1000.0).round() as i64).or_insert_with(|| TraceSample {
                time: t,
                pid,
                ..TraceSample::default()
            });
            match col {
                Column::Signal(sig) => {
                    let i = signal_index(sig);
                    s.values[i] = Some(s.values[i].unwrap_or(0.0) + v);
                }
                Column::HeapAfterGc => s.heap_after_gc = Some(v),
                Column::HeapLimit => s.heap_limit = Some(v),
                Column::MemoryLimit => s.memory_limit = Some(s.memory_limit.map_or(v, |m: f64| m.min(v))),
                _ => {}
            }
        }
    }
    Ok(processes
        .into_iter()
        .map(|(name, samples)| Trace {
            name: if name.is_empty() { "series".into() } else { format!("{{{name}}}") },
            samples: samples.into_values().collect(),
        })
        .collect())
}

/// Replays a trace through the leak analysis, calling `each` after every sample with the state
/// the exporter would have had then. `initial_age` is the process's age at the first sample
/// (zero: the trace starts when the process starts, so the grace period applies). A change of
/// `pid` starts the analysis over, with age zero, as the exporter does for a new process.
pub fn replay(
    trace: &Trace,
    settings: &LeakSettings,
    initial_age: f64,
    mut each: impl FnMut(&TraceSample, &LeakState),
) {
    let Some(first) = trace.samples.first() else { return };
    let mut state = LeakState::new(settings);
    let mut born = first.time - initial_age;
    let mut pid = first.pid;
    let mut last_floor: Option<f64> = None;
    let mut gcs: u64 = 0;
    // A trace that records full GCs at all is one from an exporter whose GC observer ran.
    let exact_heap_floors = trace.samples.iter().any(|s| s.heap_after_gc.is_some() || s.major_gcs.is_some());
    for s in &trace.samples {
        if s.pid != pid {
            state = LeakState::new(settings);
            born = s.time;
            pid = s.pid;
            last_floor = None;
            gcs = 0;
        }
        let age = s.time - born;
        let mut o = Observation {
            t: s.time,
            age,
            inspector_age: Some(age),
            values: s.values,
            heap_limit: s.heap_limit,
            memory_limit: s.memory_limit,
            ..Observation::default()
        };
        o.exact_heap_floors = exact_heap_floors;
        if let Some(floor) = s.heap_after_gc {
            // Each full GC once: by its count where the trace has it, else by a change of value.
            let count = match s.major_gcs {
                Some(n) => n,
                None if last_floor != Some(floor) => gcs + 1,
                None => gcs,
            };
            gcs = count;
            last_floor = Some(floor);
            o.heap_after_gc = Some((s.time, floor, count));
        }
        state.observe(&o, settings);
        each(s, &state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_columns_without_header() {
        let t = parse_csv("# comment\n0,10\n5,11.5\n", "x", Signal::Rss).unwrap();
        assert_eq!(t.samples.len(), 2);
        assert_eq!(t.samples[1].value(Signal::Rss), Some(11.5));
    }

    #[test]
    fn header_names_columns_and_unknown_ones_are_refused() {
        let t = parse_csv("time,heap_used,heap_used_after_gc,pid\n1,5,,7\n2,6,4,7\n", "x", Signal::Rss).unwrap();
        assert_eq!(t.samples[1].heap_after_gc, Some(4.0));
        assert_eq!(t.samples[0].heap_after_gc, None);
        assert_eq!(t.samples[0].pid, Some(7));
        let e = parse_csv("time,heap,rss\n1,2,3\n", "x", Signal::Rss).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("\"heap\""), "{e}");
        let e = parse_csv("time,rss\n1,2\n1,3\n", "x", Signal::Rss).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("increase"), "{e}");
        let e = parse_csv("1,2\n2,x\n", "x", Signal::Rss).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_csv("1,2\n2,3,4\n", "x", Signal::Rss).unwrap_err().to_string();
        assert!(e.contains("cells"), "{e}");
    }

    #[test]
    fn csv_round_trips() {
        let text = "time,heap_used,rss,heap_used_after_gc,major_gcs,heap_limit,memory_limit,pid\n\
                    1.5,100,200,,,4096,,7\n2.5,110,210.25,90,3,4096,1000,7\n";
        let t = parse_csv(text, "x", Signal::Rss).unwrap();
        let again = parse_csv(&to_csv(&t), "x", Signal::Rss).unwrap();
        assert_eq!(t, again);
    }

    #[test]
    fn rfc3339_times() {
        let t = parse_csv("2025-01-01T00:00:00Z,1\n2025-01-01T00:00:05Z,2\n", "x", Signal::Rss).unwrap();
        assert_eq!(t.samples[1].time - t.samples[0].time, 5.0);
    }

    #[test]
    fn query_range_groups_processes_and_sums_parts() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"__name__":"nodejs_process_open_sockets","pid":"1","app":"a","protocol":"tcp"},"values":[[10,"3"],[15,"4"]]},
          {"metric":{"__name__":"nodejs_process_open_sockets","pid":"1","app":"a","protocol":"unix"},"values":[[10,"1"],[15,"1"]]},
          {"metric":{"__name__":"nodejs_heap_size_used_bytes","pid":"1","app":"a"},"values":[[10,"100"],[15,"NaN"]]},
          {"metric":{"__name__":"nodejs_heap_size_used_bytes","pid":"2","app":"b"},"values":[[10,"7"]]}
        ]}}"#;
        let traces = parse(text, "x", Signal::HeapUsed).unwrap();
        assert_eq!(traces.len(), 2);
        let a = &traces[0];
        assert_eq!(a.samples.len(), 2);
        assert_eq!(a.samples[0].value(Signal::Sockets), Some(4.0));
        assert_eq!(a.samples[1].value(Signal::Sockets), Some(5.0));
        assert_eq!(a.samples[0].value(Signal::HeapUsed), Some(100.0));
        assert_eq!(a.samples[1].value(Signal::HeapUsed), None);
        assert_eq!(a.samples[0].pid, Some(1));
        let e = parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#, "x", Signal::Rss);
        assert!(e.unwrap_err().to_string().contains("query_range"));
    }

    #[test]
    fn replay_restarts_on_a_new_pid() {
        let mut text = String::from("time,rss,pid\n");
        for i in 0..100 {
            text.push_str(&format!("{},{},{}\n", i * 5, 1_000_000 + i * 1000, if i < 50 { 1 } else { 2 }));
        }
        let t = parse_csv(&text, "x", Signal::Rss).unwrap();
        let settings = LeakSettings {
            windows: vec![std::time::Duration::from_secs(60)],
            grace: std::time::Duration::ZERO,
            interval: std::time::Duration::from_secs(5),
        };
        let mut points_seen = Vec::new();
        replay(&t, &settings, 0.0, |_, state| {
            points_seen.push(state.results(Signal::Rss).next().map(|r| r.estimate.points).unwrap_or(0))
        });
        // The history starts over at the restart: one point after it is too few for an estimate.
        assert!(points_seen[49] > 0);
        assert_eq!(points_seen[50], 0);
    }
}
