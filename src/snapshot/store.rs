//! Heap snapshots taken inside the exporter, into one directory under a count and a size cap
//! (`snapshots:` in the configuration). One snapshot at a time, on the async runtime: the request
//! that starts it returns at once and the state (running, last result) is read from
//! [`Store::status`]. Before a snapshot is written the oldest files are removed so the count stays
//! within `max_files` and the size within `max_bytes`; the snapshot itself may use what is left of
//! `max_bytes` and is abandoned (its file removed) past it.
//!
//! Files are `<app>-<pid>-<UTC time>.heapsnapshot`, created new with mode `0600` in a `0700`
//! directory: a snapshot holds every string of the app. This module never reads a snapshot's
//! contents; the HTTP side (`super::web`) serves the files behind the endpoint's authentication.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::capture::{self, CaptureSettings};
use super::forward::{ForwardClientError, ForwardSettings, Forwarder};
use crate::collect::inspector::locate;
use crate::config::{Config, SnapshotsConfig};
use crate::connector::Connector;

const SUFFIX: &str = ".heapsnapshot";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("snapshots.dir {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("snapshots.dir {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(transparent)]
    Forward(#[from] ForwardClientError),
}

/// Why a snapshot was not started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartError {
    #[error("a snapshot of pid {0} is being taken; one at a time")]
    Busy(i32),
}

/// Settings of a store, from the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub dir: PathBuf,
    pub max_files: usize,
    pub max_bytes: u64,
    pub gc: bool,
    pub timeout: Duration,
    pub node_name: String,
    pub alerts: Vec<String>,
    pub procfs: PathBuf,
    pub ports: Vec<u16>,
    pub allowed_addresses: Vec<IpAddr>,
    pub call_timeout: Duration,
    /// How alerts for other nodes are forwarded; None: they are not (`snapshots.forward`).
    pub forward: Option<ForwardSettings>,
}

impl StoreSettings {
    /// The settings of `config`, or None when snapshots are off (no `snapshots.dir`).
    pub fn from_config(config: &Config) -> Option<StoreSettings> {
        let s: &SnapshotsConfig = &config.snapshots;
        let i = &config.collectors.inspector;
        Some(StoreSettings {
            dir: s.dir.clone()?,
            max_files: s.max_files,
            max_bytes: s.max_bytes,
            gc: s.gc,
            timeout: s.timeout,
            node_name: s.node_name.clone().unwrap_or_else(default_node_name),
            alerts: s.alerts.clone(),
            procfs: config.paths.procfs.clone(),
            ports: i.ports.clone(),
            allowed_addresses: i.allowed_addresses.clone(),
            // A snapshot's small calls (enable, the pid check) wait behind whatever the app is
            // doing; the collectors' 2s is short for that.
            call_timeout: i.call_timeout.max(Duration::from_secs(10)),
            forward: s.forward.then(|| ForwardSettings {
                timeout: s.forward_timeout,
                ca_file: s.forward_ca_file.clone(),
                server_name: s.forward_server_name.clone(),
                insecure_skip_verify: s.forward_insecure_skip_verify,
            }),
        })
    }
}

/// `NODE_NAME` (a DaemonSet sets it from `spec.nodeName`), else the host name.
pub fn default_node_name() -> String {
    if let Some(n) = std::env::var("NODE_NAME").ok().filter(|n| !n.trim().is_empty()) {
        return n.trim().to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

/// A snapshot being taken.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Running {
    pub pid: i32,
    pub name: String,
    /// Unix time it started.
    pub started: f64,
}

/// How the last snapshot ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub pid: i32,
    pub name: String,
    pub ok: bool,
    pub bytes: u64,
    pub seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix time it ended.
    pub finished: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub running: Option<Running>,
    pub last: Option<Outcome>,
}

/// A snapshot in the directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub pid: i32,
    pub bytes: u64,
    /// Unix time of its last write.
    pub time: f64,
}

/// Snapshots taken, by result: `success`, `failure`, `skipped` (one already running, or an
/// alert's snapshot already taken).
#[derive(Debug, Default)]
pub struct Counts {
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub skipped: AtomicU64,
    /// Webhooks forwarded to another exporter (one per instance), by result: the other exporter
    /// answered 2xx, or not.
    pub forward_success: AtomicU64,
    pub forward_failure: AtomicU64,
}

pub struct Store {
    settings: StoreSettings,
    connector: Arc<dyn Connector>,
    status: Mutex<Status>,
    /// When each pid's snapshot was last started from an alert.
    alerted: Mutex<HashMap<i32, Instant>>,
    /// Built once at start when `snapshots.forward` is on.
    forwarder: Option<Forwarder>,
    pub counts: Counts,
}

/// The store the HTTP side uses: set at start, absent when snapshots are off.
static CURRENT: Mutex<Option<Arc<Store>>> = Mutex::new(None);

/// Opens the store `config` asks for (creating its directory) and makes it the one the HTTP side
/// uses; with no `snapshots.dir`, there is none.
pub fn install(config: &Config, connector: Arc<dyn Connector>) -> Result<(), StoreError> {
    let store = match StoreSettings::from_config(config) {
        Some(settings) => {
            let store = Store::open(settings, connector)?;
            tracing::info!(dir = %store.settings.dir.display(), node = %store.settings.node_name, forward = store.forwarder.is_some(), "heap snapshots on request are on");
            Some(Arc::new(store))
        }
        None => None,
    };
    *CURRENT.lock().expect("snapshot store lock") = store;
    Ok(())
}

/// The running store, if snapshots are on.
pub fn current() -> Option<Arc<Store>> {
    CURRENT.lock().expect("snapshot store lock").clone()
}

impl Store {
    /// Opens `settings.dir`, created `0700` when missing.
    pub fn open(settings: StoreSettings, connector: Arc<dyn Connector>) -> Result<Store, StoreError> {
        let dir = &settings.dir;
        let wrap = |source| StoreError::Dir { path: dir.clone(), source };
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(wrap)?;
        }
        let meta = std::fs::metadata(dir).map_err(wrap)?;
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory { path: dir.clone() });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the snapshot directory is open to other users; the files themselves are 0600");
        }
        let forwarder = settings.forward.as_ref().map(Forwarder::new).transpose()?;
        Ok(Store {
            settings,
            forwarder,
            connector,
            status: Mutex::new(Status::default()),
            alerted: Mutex::new(HashMap::new()),
            counts: Counts::default(),
        })
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// The client that forwards alerts for other nodes, when `snapshots.forward` is on.
    pub fn forwarder(&self) -> Option<&Forwarder> {
        self.forwarder.as_ref()
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("snapshot status lock").clone()
    }

    /// Starts a snapshot of `pid` (named after `app`) on the current runtime and returns its file
    /// name at once; only one runs at a time.
    pub fn start(self: &Arc<Self>, pid: i32, app: &str) -> Result<String, StartError> {
        let name = file_name(app, pid, SystemTime::now());
        {
            let mut status = self.status.lock().expect("snapshot status lock");
            if let Some(r) = &status.running {
                self.counts.skipped.fetch_add(1, Ordering::Relaxed);
                return Err(StartError::Busy(r.pid));
            }
            status.running = Some(Running { pid, name: name.clone(), started: unix(SystemTime::now()) });
        }
        let store = self.clone();
        let file = name.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = store.take(pid, &file).await;
            let outcome = match result {
                Ok(c) => {
                    store.counts.success.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(pid, file = %file, bytes = c.bytes, seconds = format!("{:.2}", c.seconds), "heap snapshot written");
                    Outcome {
                        pid,
                        name: file,
                        ok: true,
                        bytes: c.bytes,
                        seconds: c.seconds,
                        error: None,
                        finished: 0.0,
                    }
                }
                Err(e) => {
                    store.counts.failure.fetch_add(1, Ordering::Relaxed);
                    // capture's own message names the CLI's --max-size.
                    let e = match e {
                        capture::CaptureError::TooLarge { max } => format!(
                            "the snapshot exceeds the {max} bytes snapshots.max_bytes leaves; the partial file was removed"
                        ),
                        e => e.to_string(),
                    };
                    tracing::warn!(pid, error = %e, "heap snapshot failed");
                    let seconds = started.elapsed().as_secs_f64();
                    Outcome { pid, name: file, ok: false, bytes: 0, seconds, error: Some(e), finished: 0.0 }
                }
            };
            let mut status = store.status.lock().expect("snapshot status lock");
            status.running = None;
            status.last = Some(Outcome { finished: unix(SystemTime::now()), ..outcome });
        });
        Ok(name)
    }

    /// Whether an alert for `pid` may start a snapshot now: not within `every` of the last one it
    /// started. Records the start when it may.
    pub fn alert_due(&self, pid: i32, every: Duration) -> bool {
        let mut alerted = self.alerted.lock().expect("alerted lock");
        alerted.retain(|_, at| at.elapsed() < every);
        if alerted.contains_key(&pid) {
            return false;
        }
        alerted.insert(pid, Instant::now());
        true
    }

    /// Forgets an alert's start that did not happen (the store was busy), so the next one tries.
    pub fn alert_not_started(&self, pid: i32) {
        self.alerted.lock().expect("alerted lock").remove(&pid);
    }

    async fn take(&self, pid: i32, name: &str) -> Result<capture::Captured, capture::CaptureError> {
        let s = &self.settings;
        let connector = &*self.connector;
        let inspector = locate::locate_inspector(
            connector,
            &s.procfs,
            pid,
            &s.ports,
            &s.allowed_addresses,
            s.call_timeout.min(Duration::from_secs(5)),
        )
        .await?;
        let budget = make_room(&s.dir, s.max_files, s.max_bytes, name);
        if budget == 0 {
            return Err(capture::CaptureError::TooLarge { max: 0 });
        }
        tracing::info!(pid, addr = %inspector.addr, budget, "taking a heap snapshot (the app stops while V8 walks its heap)");
        let settings =
            CaptureSettings { gc: s.gc, max_bytes: budget, timeout: s.timeout, call_timeout: s.call_timeout };
        let out = [s.dir.join(name)];
        let mut taken = capture::capture(connector, pid, &inspector, &out, Duration::ZERO, settings, |_| {}).await?;
        Ok(taken.pop().expect("one file asked for"))
    }

    /// The snapshots in the directory, oldest first, without the one being written.
    pub fn list(&self) -> std::io::Result<Vec<Entry>> {
        let running = self.status().running.map(|r| r.name);
        let mut entries = list_dir(&self.settings.dir)?;
        entries.retain(|e| Some(&e.name) != running.as_ref());
        Ok(entries)
    }

    /// The path of the finished snapshot `name`, if it is one: a plain name (no `/`, no `..`)
    /// of a regular file in the directory, not the one being written.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        if !valid_name(name) || self.status().running.is_some_and(|r| r.name == name) {
            return None;
        }
        let path = self.settings.dir.join(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        meta.file_type().is_file().then_some(path)
    }

    /// The exporter's own metric, in the text format.
    pub fn encode_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP nodejs_leak_exporter_snapshots_total Heap snapshots asked for (HTTP or an Alertmanager webhook), by result: success, failure, skipped (one was already being taken, or the alert's process had one within the hour).\n");
        out.push_str("# TYPE nodejs_leak_exporter_snapshots_total counter\n");
        for (result, n) in
            [("failure", &self.counts.failure), ("skipped", &self.counts.skipped), ("success", &self.counts.success)]
        {
            let _ = writeln!(
                out,
                "nodejs_leak_exporter_snapshots_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        if self.forwarder.is_none() {
            return;
        }
        out.push_str("# HELP nodejs_leak_exporter_snapshot_forwards_total Alertmanager webhooks forwarded to the exporter on the alert's node (snapshots.forward), one per instance, by result: success (it answered 2xx) or failure.\n");
        out.push_str("# TYPE nodejs_leak_exporter_snapshot_forwards_total counter\n");
        for (result, n) in [("failure", &self.counts.forward_failure), ("success", &self.counts.forward_success)] {
            let _ = writeln!(
                out,
                "nodejs_leak_exporter_snapshot_forwards_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `<app>-<pid>-<UTC time>.heapsnapshot`, the app name reduced to `[A-Za-z0-9._]` (other
/// characters become `_`, at most 64), `pid` when there is none.
pub fn file_name(app: &str, pid: i32, at: SystemTime) -> String {
    let mut clean: String =
        app.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '_' }).take(64).collect();
    if clean.trim_matches(['.', '_']).is_empty() {
        clean = "pid".into();
    }
    let time: String =
        humantime::format_rfc3339_millis(at).to_string().chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{clean}-{pid}-{time}{SUFFIX}")
}

/// The pid in a name made by [`file_name`].
fn pid_of(name: &str) -> Option<i32> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (rest, _time) = stem.rsplit_once('-')?;
    let (_app, pid) = rest.rsplit_once('-')?;
    pid.parse().ok()
}

/// A name that can only be a file directly in the directory.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && !name.contains("..")
        && name.ends_with(SUFFIX)
}

fn list_dir(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let Ok(item) = item else { continue };
        let Some(name) = item.file_name().to_str().map(str::to_string) else { continue };
        let Some(pid) = pid_of(&name) else { continue };
        let Ok(meta) = item.metadata() else { continue };
        if !meta.file_type().is_file() || !valid_name(&name) {
            continue;
        }
        let time = meta.modified().map(unix).unwrap_or(0.0);
        entries.push(Entry { name, pid, bytes: meta.len(), time });
    }
    entries.sort_by(|a, b| a.time.total_cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

/// Removes the oldest snapshots so that one more fits under `max_files`, and under `max_bytes`
/// when it is as large as the newest one; returns the bytes left for it. `writing` is never
/// removed.
fn make_room(dir: &Path, max_files: usize, max_bytes: u64, writing: &str) -> u64 {
    let mut entries = match list_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the snapshot directory");
            Vec::new()
        }
    };
    entries.retain(|e| e.name != writing);
    let expected = entries.last().map(|e| e.bytes).unwrap_or(0);
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut kept = entries.len();
    for e in &entries {
        if kept < max_files && total.saturating_add(expected) <= max_bytes {
            break;
        }
        match std::fs::remove_file(dir.join(&e.name)) {
            Ok(()) => {
                tracing::info!(file = %e.name, bytes = e.bytes, "removed the oldest heap snapshot to make room");
                total -= e.bytes;
                kept -= 1;
            }
            Err(err) => tracing::warn!(file = %e.name, error = %err, "cannot remove an old heap snapshot"),
        }
    }
    max_bytes.saturating_sub(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + 5)
    }

    #[test]
    fn names_carry_app_pid_and_time() {
        let n = file_name("shop/api v2", 42, at(1_700_000_000));
        assert_eq!(n, "shop_api_v2-42-20231114T221320.005Z.heapsnapshot");
        assert_eq!(pid_of(&n), Some(42));
        assert!(valid_name(&n));
        assert_eq!(file_name("", 7, at(0)), "pid-7-19700101T000000.005Z.heapsnapshot");
        assert_eq!(file_name("..", 7, at(0)), "pid-7-19700101T000000.005Z.heapsnapshot");
        for bad in ["", "../x.heapsnapshot", "a/b.heapsnapshot", ".x.heapsnapshot", "x.json", "a..b.heapsnapshot"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    fn write(dir: &Path, name: &str, bytes: usize, age: u64) {
        let path = dir.join(name);
        std::fs::write(&path, vec![b'x'; bytes]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn the_oldest_make_room_for_count_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a-1-1.heapsnapshot", 100, 30);
        write(d, "a-1-2.heapsnapshot", 100, 20);
        write(d, "a-1-3.heapsnapshot", 100, 10);
        write(d, "notes.txt", 5, 40);
        // Count: three files, at most three: the oldest goes.
        assert_eq!(make_room(d, 3, 10_000, "new.heapsnapshot"), 10_000 - 200);
        let names: Vec<String> = list_dir(d).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a-1-2.heapsnapshot", "a-1-3.heapsnapshot"]);
        // Size: 200 kept and 100 expected do not fit in 250: the oldest goes.
        assert_eq!(make_room(d, 10, 250, "new.heapsnapshot"), 150);
        assert_eq!(list_dir(d).unwrap().len(), 1);
        assert!(d.join("notes.txt").exists(), "other files are left alone");
        // Nothing fits: everything goes, and the budget is the whole cap.
        assert_eq!(make_room(d, 10, 50, "new.heapsnapshot"), 50);
        assert!(list_dir(d).unwrap().is_empty());
    }

    /// Two files of at most 1 MiB into `dir`, processes looked up under `procfs`.
    fn test_settings(dir: PathBuf, procfs: PathBuf) -> StoreSettings {
        StoreSettings {
            dir,
            max_files: 2,
            max_bytes: 1 << 20,
            gc: false,
            timeout: Duration::from_secs(5),
            node_name: "n".into(),
            alerts: vec![],
            procfs,
            ports: vec![],
            allowed_addresses: vec![],
            call_timeout: Duration::from_secs(1),
            forward: None,
        }
    }

    #[test]
    fn the_directory_is_created_private_and_names_are_checked() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("snaps");
        let store =
            Store::open(test_settings(dir.clone(), "/proc".into()), Arc::new(crate::connector::DirectConnector))
                .unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        write(&dir, "a-1-1.heapsnapshot", 10, 1);
        std::os::unix::fs::symlink("/etc/passwd", dir.join("b-1-1.heapsnapshot")).unwrap();
        assert!(store.path_of("a-1-1.heapsnapshot").is_some());
        assert!(store.path_of("b-1-1.heapsnapshot").is_none(), "a symlink is not served");
        assert!(store.path_of("../snaps/a-1-1.heapsnapshot").is_none());
        assert!(store.path_of("c-1-1.heapsnapshot").is_none());
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.alert_due(5, Duration::from_secs(3600)));
        assert!(!store.alert_due(5, Duration::from_secs(3600)));
        store.alert_not_started(5);
        assert!(store.alert_due(5, Duration::from_secs(3600)));
    }

    #[test]
    fn a_failed_snapshot_is_the_last_result_and_counted() {
        let base = tempfile::tempdir().unwrap();
        // No such process under an empty procfs.
        let settings = test_settings(base.path().to_path_buf(), base.path().join("proc"));
        let store = Arc::new(Store::open(settings, Arc::new(crate::connector::DirectConnector)).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            store.start(4242, "app").unwrap();
            assert_eq!(store.start(4243, "app"), Err(StartError::Busy(4242)));
            for _ in 0..200 {
                if store.status().running.is_none() {
                    break;
                }
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let last = store.status().last.expect("finished");
        assert!(!last.ok);
        assert!(last.error.unwrap().contains("not found"));
        assert_eq!(store.counts.failure.load(Ordering::Relaxed), 1);
        assert_eq!(store.counts.skipped.load(Ordering::Relaxed), 1);
        let mut text = String::new();
        store.encode_metrics(&mut text);
        assert!(text.contains("nodejs_leak_exporter_snapshots_total{result=\"failure\"} 1"), "{text}");
    }
}
