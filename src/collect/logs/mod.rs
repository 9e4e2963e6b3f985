//! The logs collector: `MaxListenersExceededWarning`, other process warnings and heap-OOM crashes
//! read from log files — PM2's, Kubernetes container logs, and any path the operator names — for
//! processes that never had an inspector open, or crashed before anyone looked.
//!
//! A reader thread follows every file (see `tail`) and keeps bounded counts; the collector only
//! reads them. A warning line says whose it is (`(node:PID)`): host files map PID to a target
//! directly; container files map it through the container id in the file name and the target's
//! cgroup, and the PID as the container sees it (`NSpid`). A warning seen both here and through
//! the inspector counts once: each source counts the same events from the process, so the larger
//! of the two counts is exported.

pub mod format;
pub mod parse;
pub mod tail;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::format::{FileLabels, Format, Joiner};
use self::parse::LogEvent;
use self::tail::{Tail, TailError, TailStats};
use super::kubernetes::container_id_from_cgroup;
use super::{Collector, Outcome, Report};
use crate::config::{LogsConfig, StartAt};
use crate::exposition::Families;
use crate::target::Target;

/// Warning counts of one process, or of one file's unattributed lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarningCounts {
    pub by_name: BTreeMap<String, u64>,
    pub max_listeners: BTreeMap<(String, String), u64>,
}

impl WarningCounts {
    fn add(&mut self, event: &LogEvent<'_>, limit: usize) {
        let (name, listener) = match event {
            LogEvent::MaxListeners { event, emitter, .. } => ("MaxListenersExceededWarning", Some((*event, *emitter))),
            LogEvent::Warning { name, .. } => (*name, None),
            LogEvent::HeapOutOfMemory { .. } => return,
        };
        let name = if self.by_name.contains_key(name) || self.by_name.len() < limit { name } else { "other" };
        *self.by_name.entry(name.to_string()).or_default() += 1;
        if let Some((event, emitter)) = listener {
            let key = (event.to_string(), emitter.to_string());
            let key = if self.max_listeners.contains_key(&key) || self.max_listeners.len() < limit {
                key
            } else {
                ("other".to_string(), "other".to_string())
            };
            *self.max_listeners.entry(key).or_default() += 1;
        }
    }
}

/// Whose a `(node:PID)` is: the host's pid, or a pid inside a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProcessRef {
    /// Empty on the host.
    container_id: String,
    pid: u32,
}

#[derive(Debug, Default)]
struct ProcessEntry {
    labels: FileLabels,
    counts: WarningCounts,
    last_event: Option<Instant>,
}

/// What the reader thread knows, shared with the collector.
#[derive(Debug, Default)]
struct LogState {
    processes: HashMap<ProcessRef, ProcessEntry>,
    /// Warnings without a `(node:PID)` prefix, per file owner.
    unattributed: BTreeMap<FileLabels, WarningCounts>,
    oom_crashes: BTreeMap<FileLabels, u64>,
    restarts: BTreeMap<FileLabels, u64>,
    files: usize,
    stats: TailStats,
    file_errors: BTreeMap<&'static str, u64>,
    skipped_lines: BTreeMap<&'static str, u64>,
}

/// Most processes remembered from logs; the least recently heard from is forgotten first.
const MAX_PROCESSES: usize = 4096;

struct File {
    tail: Tail,
    format: Option<Format>,
    labels: FileLabels,
    joiner: Joiner,
    /// Last error, so each kind is counted once per file until it changes.
    failing: Option<TailError>,
}

pub struct LogsCollector {
    shared: Arc<Mutex<LogState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogsCollector {
    pub fn new(config: &LogsConfig, rootfs: PathBuf, label_limit: usize) -> Self {
        let shared = Arc::new(Mutex::new(LogState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader::new(config, rootfs, label_limit, shared.clone());
        let stop_flag = stop.clone();
        let interval = config.poll_interval;
        let thread = std::thread::Builder::new()
            .name("logs".into())
            .spawn(move || reader.run(stop_flag, interval))
            .map_err(|e| tracing::error!(error = %e, "cannot start the log reader"))
            .ok();
        LogsCollector { shared, stop, thread }
    }
}

struct Reader {
    globs: Vec<(String, Option<String>)>,
    start_at_end: bool,
    max_line: usize,
    label_limit: usize,
    files: BTreeMap<PathBuf, File>,
    /// (namespace, pod, container) → container id, to count container restarts.
    containers: HashMap<(String, String, String), String>,
    shared: Arc<Mutex<LogState>>,
    first_scan: bool,
}

impl Reader {
    fn new(config: &LogsConfig, rootfs: PathBuf, label_limit: usize, shared: Arc<Mutex<LogState>>) -> Self {
        let under_root = |p: &str| rootfs.join(p.trim_start_matches('/')).to_string_lossy().into_owned();
        let mut globs: Vec<(String, Option<String>)> =
            config.paths.iter().map(|p| (p.path.clone(), p.app.clone())).collect();
        if config.pm2 {
            globs.push((under_root("/root/.pm2/logs/*.log"), None));
            globs.push((under_root("/home/*/.pm2/logs/*.log"), None));
        }
        if config.kubernetes {
            globs.push((under_root("/var/log/containers/*.log"), None));
        }
        Reader {
            globs,
            start_at_end: config.start_at == StartAt::End,
            max_line: config.max_line_bytes,
            label_limit,
            files: BTreeMap::new(),
            containers: HashMap::new(),
            shared,
            first_scan: true,
        }
    }

    fn run(mut self, stop: Arc<AtomicBool>, interval: Duration) {
        let mut last_scan = Instant::now() - Duration::from_secs(3600);
        while !stop.load(Ordering::Relaxed) {
            if last_scan.elapsed() >= Duration::from_secs(5) || self.first_scan {
                self.scan();
                last_scan = Instant::now();
            }
            self.poll_all();
            // Wake often enough to notice a stop request quickly.
            let until = Instant::now() + interval;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(interval));
            }
        }
    }

    /// Finds files matching the globs; files present at the first scan start at their end (as
    /// configured), later ones at their start.
    fn scan(&mut self) {
        let mut seen = HashSet::new();
        for (pattern, app) in &self.globs {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                if format::is_rotated_copy(&path) || !path.is_file() {
                    continue;
                }
                seen.insert(path.clone());
                if self.files.contains_key(&path) {
                    continue;
                }
                let (format, labels) = format::identify(&path, app.as_deref());
                // A container restarted: the same pod container with a new id.
                if !labels.container.is_empty() && !labels.container_id.is_empty() {
                    let key = (labels.namespace.clone(), labels.pod.clone(), labels.container.clone());
                    let previous = self.containers.insert(key, labels.container_id.clone());
                    if previous.is_some_and(|p| p != labels.container_id) {
                        let mut restart_labels = labels.clone();
                        restart_labels.container_id.clear();
                        *self.shared.lock().expect("log state").restarts.entry(restart_labels).or_default() += 1;
                    }
                }
                let format = (format == Format::Plain).then_some(Format::Plain);
                let start_at_end = self.first_scan && self.start_at_end;
                self.files.insert(
                    path.clone(),
                    File {
                        tail: Tail::new(path, start_at_end, self.max_line),
                        format,
                        labels,
                        joiner: Joiner::default(),
                        failing: None,
                    },
                );
            }
        }
        // Files gone from every glob (and drained) are forgotten.
        self.files.retain(|p, _| seen.contains(p) || p.exists());
        self.first_scan = false;
        self.shared.lock().expect("log state").files = self.files.len();
    }

    fn poll_all(&mut self) {
        let max_line = self.max_line;
        let limit = self.label_limit;
        for file in self.files.values_mut() {
            let mut events: Vec<(FileLabels, Option<u32>, Owned)> = Vec::new();
            let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
            let before = file.tail.stats;
            let File { tail, format, labels, joiner, failing } = file;
            let mut sink = |raw: &[u8]| {
                let fmt = *format.get_or_insert_with(|| format::sniff(raw).unwrap_or(Format::Cri));
                let Some(line) = joiner.feed(fmt, raw, max_line) else { return };
                if !parse::may_matter(&line) {
                    return;
                }
                if line.contains(&0) {
                    *skipped.entry("binary").or_default() += 1;
                    return;
                }
                if std::str::from_utf8(&line).is_err() {
                    *skipped.entry("invalid_utf8").or_default() += 1;
                    return;
                }
                if let Some(event) = parse::parse_line(&line) {
                    let pid = match event {
                        LogEvent::MaxListeners { pid, .. }
                        | LogEvent::Warning { pid, .. }
                        | LogEvent::HeapOutOfMemory { pid } => pid,
                    };
                    events.push((labels.clone(), pid, Owned::from(&event)));
                }
            };
            let result = tail.poll(&mut sink);
            let after = tail.stats;
            let mut state = self.shared.lock().expect("log state");
            match result {
                Ok(()) => *failing = None,
                Err(e) => {
                    if *failing != Some(e) {
                        *state.file_errors.entry(e.as_label()).or_default() += 1;
                        tracing::warn!(path = %tail.path().display(), reason = e.as_label(), "cannot read log file");
                    }
                    *failing = Some(e);
                }
            }
            add_stats(&mut state.stats, before, after);
            for (k, v) in skipped {
                *state.skipped_lines.entry(k).or_default() += v;
            }
            if after.lines_too_long > before.lines_too_long {
                *state.skipped_lines.entry("too_long").or_default() += after.lines_too_long - before.lines_too_long;
            }
            for (labels, pid, event) in events {
                state.record(labels, pid, &event.as_event(), limit);
            }
        }
    }
}

fn add_stats(total: &mut TailStats, before: TailStats, after: TailStats) {
    total.bytes += after.bytes - before.bytes;
    total.lines += after.lines - before.lines;
    total.rotations += after.rotations - before.rotations;
    total.truncations += after.truncations - before.truncations;
    total.recovered_from_copy += after.recovered_from_copy - before.recovered_from_copy;
}

/// An event copied out of its line.
enum Owned {
    MaxListeners { event: String, emitter: String },
    Warning { name: String },
    HeapOutOfMemory,
}

impl Owned {
    fn from(e: &LogEvent<'_>) -> Owned {
        match e {
            LogEvent::MaxListeners { event, emitter, .. } => {
                Owned::MaxListeners { event: event.to_string(), emitter: emitter.to_string() }
            }
            LogEvent::Warning { name, .. } => Owned::Warning { name: name.to_string() },
            LogEvent::HeapOutOfMemory { .. } => Owned::HeapOutOfMemory,
        }
    }

    fn as_event(&self) -> LogEvent<'_> {
        match self {
            Owned::MaxListeners { event, emitter } => LogEvent::MaxListeners { pid: None, event, emitter },
            Owned::Warning { name } => LogEvent::Warning { pid: None, name },
            Owned::HeapOutOfMemory => LogEvent::HeapOutOfMemory { pid: None },
        }
    }
}

impl LogState {
    fn record(&mut self, labels: FileLabels, pid: Option<u32>, event: &LogEvent<'_>, limit: usize) {
        if matches!(event, LogEvent::HeapOutOfMemory { .. }) {
            let mut key = labels;
            key.container_id.clear();
            *self.oom_crashes.entry(key).or_default() += 1;
            return;
        }
        let Some(pid) = pid else {
            let mut key = labels;
            key.container_id.clear();
            self.unattributed.entry(key).or_default().add(event, limit);
            return;
        };
        let r = ProcessRef { container_id: labels.container_id.clone(), pid };
        if !self.processes.contains_key(&r) && self.processes.len() >= MAX_PROCESSES {
            if let Some(oldest) = self.processes.iter().min_by_key(|(_, e)| e.last_event).map(|(k, _)| k.clone()) {
                // Its counts are not lost: they move to its file's unattributed series.
                if let Some(gone) = self.processes.remove(&oldest) {
                    let mut key = gone.labels;
                    key.container_id.clear();
                    merge_counts(self.unattributed.entry(key).or_default(), &gone.counts);
                }
            }
        }
        let entry = self.processes.entry(r).or_insert_with(|| ProcessEntry { labels, ..ProcessEntry::default() });
        entry.counts.add(event, limit);
        entry.last_event = Some(Instant::now());
    }
}

fn merge_counts(into: &mut WarningCounts, from: &WarningCounts) {
    for (k, v) in &from.by_name {
        *into.by_name.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &from.max_listeners {
        *into.max_listeners.entry(k.clone()).or_default() += v;
    }
}

impl Collector for LogsCollector {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn collect(&mut self, target: &mut Target) -> Outcome {
        let state = self.shared.lock().expect("log state");
        let host = ProcessRef { container_id: String::new(), pid: target.key.pid as u32 };
        let mut counts = state.processes.get(&host).map(|e| e.counts.clone());
        if let Some(id) = container_id_of(target) {
            let ns_pid = target.identity.ns_pid.unwrap_or(target.key.pid) as u32;
            let inside = state.processes.iter().find(|(r, _)| {
                r.pid == ns_pid
                    && !r.container_id.is_empty()
                    && (id.starts_with(&r.container_id) || r.container_id.starts_with(id))
            });
            if let Some((_, e)) = inside {
                counts.get_or_insert_with(WarningCounts::default);
                merge_counts(counts.as_mut().expect("just set"), &e.counts);
            }
        }
        target.readings.logs = counts;
        Outcome::Read(Report::default())
    }

    fn render(&self, targets: &[&Target], out: &mut Families) {
        let state = self.shared.lock().expect("log state");
        // Warnings of processes that are not targets (gone, never discovered): under their file's
        // owner with an empty pid.
        let mut orphans: BTreeMap<FileLabels, WarningCounts> = state.unattributed.clone();
        let target_pids: HashSet<u32> = targets.iter().map(|t| t.key.pid as u32).collect();
        let target_ns: HashSet<(String, u32)> = targets
            .iter()
            .filter_map(|t| {
                let id = container_id_of(t)?;
                Some((id.to_string(), t.identity.ns_pid.unwrap_or(t.key.pid) as u32))
            })
            .collect();
        for (r, e) in &state.processes {
            let attributed = if r.container_id.is_empty() {
                target_pids.contains(&r.pid)
            } else {
                target_ns.iter().any(|(id, pid)| {
                    *pid == r.pid && (id.starts_with(&r.container_id) || r.container_id.starts_with(id.as_str()))
                })
            };
            if !attributed {
                let mut key = e.labels.clone();
                key.container_id.clear();
                merge_counts(orphans.entry(key).or_default(), &e.counts);
            }
        }
        for (labels, counts) in &orphans {
            // A container's file also names its pod, as the series of its processes do.
            let mut base = vec![("pid", ""), ("app", labels.app.as_str())];
            if !labels.namespace.is_empty() {
                base.extend(owner_labels(labels).into_iter().skip(1));
            }
            for (name, n) in &counts.by_name {
                let mut l = base.to_vec();
                l.push(("name", name));
                out.counter(crate::exposition::WARNINGS, crate::exposition::WARNINGS_HELP, &l, *n as f64);
            }
            for ((event, emitter), n) in &counts.max_listeners {
                let mut l = base.to_vec();
                l.extend([("event", event.as_str()), ("emitter", emitter.as_str())]);
                out.counter(crate::exposition::MAX_LISTENERS, crate::exposition::MAX_LISTENERS_HELP, &l, *n as f64);
            }
        }
        for (labels, n) in &state.oom_crashes {
            out.counter(
                "nodejs_heap_out_of_memory_crashes_total",
                "Node.js processes that died of a V8 heap out-of-memory (FATAL ERROR ... JavaScript heap out of memory), from their logs.",
                &owner_labels(labels),
                *n as f64,
            );
        }
        for (labels, n) in &state.restarts {
            out.counter(
                crate::exposition::RESTARTS,
                crate::exposition::RESTARTS_HELP,
                &owner_labels(labels),
                *n as f64,
            );
        }
        out.gauge("nodejs_leak_exporter_log_files", "Log files followed.", &[], state.files as f64);
        out.counter("nodejs_leak_exporter_log_lines_total", "Log lines read.", &[], state.stats.lines as f64);
        out.counter("nodejs_leak_exporter_log_bytes_total", "Log bytes read.", &[], state.stats.bytes as f64);
        out.counter(
            "nodejs_leak_exporter_log_rotations_total",
            "Log files renamed, deleted or recreated under the reader.",
            &[],
            state.stats.rotations as f64,
        );
        out.counter(
            "nodejs_leak_exporter_log_truncations_total",
            "Log files truncated under the reader (copytruncate or shrink).",
            &[],
            state.stats.truncations as f64,
        );
        for (reason, n) in &state.skipped_lines {
            out.counter(
                "nodejs_leak_exporter_log_skipped_lines_total",
                "Log lines not parsed (too_long lines keep their head, which is parsed).",
                &[("reason", reason)],
                *n as f64,
            );
        }
        for (reason, n) in &state.file_errors {
            out.counter(
                "nodejs_leak_exporter_log_file_errors_total",
                "Log files that could not be read, by reason.",
                &[("reason", reason)],
                *n as f64,
            );
        }
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The container a target runs in, by its cgroup path, or as the kubernetes collector read it
/// when the cgroup collector is off.
fn container_id_of(t: &Target) -> Option<&str> {
    let from_cgroup = t.readings.cgroup.as_ref().and_then(|c| container_id_from_cgroup(&c.location.path));
    from_cgroup.or_else(|| t.readings.kubernetes.as_ref()?.container.as_ref().map(|c| c.container_id.as_str()))
}

fn owner_labels(l: &FileLabels) -> Vec<(&str, &str)> {
    vec![
        ("app", l.app.as_str()),
        ("namespace", l.namespace.as_str()),
        ("pod", l.pod.as_str()),
        ("container", l.container.as_str()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded() {
        let mut c = WarningCounts::default();
        for i in 0..100 {
            let name = format!("W{i}Warning");
            c.add(&LogEvent::Warning { pid: None, name: &name }, 10);
        }
        assert_eq!(c.by_name.len(), 11);
        assert_eq!(c.by_name["other"], 90);
    }

    #[test]
    fn processes_are_bounded_and_their_counts_kept() {
        let mut s = LogState::default();
        let labels = FileLabels { app: "a".into(), ..FileLabels::default() };
        for pid in 0..(MAX_PROCESSES as u32 + 10) {
            s.record(labels.clone(), Some(pid), &LogEvent::Warning { pid: None, name: "Warning" }, 32);
        }
        assert_eq!(s.processes.len(), MAX_PROCESSES);
        assert_eq!(s.unattributed[&labels].by_name["Warning"], 10);
    }
}
