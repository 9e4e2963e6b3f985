//! Profiling runs inside the exporter: on demand for a while, and automatically while a process's
//! heap verdict is positive. Each run is a task on the async runtime with its own inspector
//! session ([`super::Run`]); at most [`ManagerSettings::max_concurrent`] sample at once (the others
//! wait), and every run stops sampling when it ends: at its deadline, when the verdict clears
//! ([`Manager::update_leaking`]), when the process goes, when the session drops, and at shutdown
//! ([`Manager::shutdown`]). The sampler and the HTTP side only call these methods and read
//! [`Manager::report`]; nothing here runs inside a scrape.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use super::cli::{Report, SiteReport};
use super::profile::{Profile, ProfileLimits};
use super::sites::{self, GrowthRule};
use super::{AttributionError, Run, RunSettings};
use crate::collect::inspector::locate;
use crate::connector::Connector;
use crate::discovery::ProcessKey;

/// Time before a run that ended while its process still leaks is started again.
const RETRY: Duration = Duration::from_secs(60);

/// Settings shared by every run.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    pub procfs: PathBuf,
    pub ports: Vec<u16>,
    pub allowed_addresses: Vec<IpAddr>,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// Sampling interval in bytes.
    pub interval: u64,
    /// Time between two profiles of a run.
    pub every: Duration,
    /// Runs sampling at once; more wait for a turn.
    pub max_concurrent: usize,
    /// Longest run on demand.
    pub max_duration: Duration,
    pub max_reply: usize,
    pub rule: GrowthRule,
    /// Sites kept per process in a report.
    pub top: usize,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        ManagerSettings {
            procfs: PathBuf::from("/proc"),
            ports: Vec::new(),
            allowed_addresses: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            interval: super::DEFAULT_INTERVAL,
            every: Duration::from_secs(30),
            max_concurrent: 2,
            max_duration: Duration::from_secs(3600),
            max_reply: super::DEFAULT_MAX_REPLY,
            rule: GrowthRule::default(),
            top: 10,
        }
    }
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// While the heap verdict is positive.
    Leak,
    /// Asked for, for a while.
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a turn (too many runs at once).
    Waiting,
    Sampling,
    /// Ended; sampling stopped.
    Done,
    /// Ended on an error; sampling stopped (or the session is gone, which stops it).
    Failed(String),
}

/// What one process's run has found so far.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunState {
    pub trigger: Trigger,
    pub status: Status,
    pub report: Option<Report>,
    #[serde(skip)]
    last: Option<(f64, Profile, u64)>,
}

struct Slot {
    trigger: Trigger,
    started: std::time::Instant,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<RunState>>,
}

pub struct Manager {
    runtime: tokio::runtime::Handle,
    connector: Arc<dyn Connector>,
    settings: Arc<ManagerSettings>,
    permits: Arc<Semaphore>,
    slots: Mutex<HashMap<ProcessKey, Slot>>,
    /// The processes watched at the last sample: what a request by pid may profile.
    watched: Mutex<Vec<ProcessKey>>,
}

/// The manager of the running attribution collector, for the HTTP side. Collectors are built by
/// the sampler and rebuilt on a reload, so the HTTP side finds the live one here rather than
/// holding one; a manager that was dropped (collector off, rebuilt) is gone from it too.
static CURRENT: Mutex<std::sync::Weak<Manager>> = Mutex::new(std::sync::Weak::new());

/// Makes `manager` the one the HTTP side uses.
pub fn make_current(manager: &Arc<Manager>) {
    *CURRENT.lock().expect("current manager lock") = Arc::downgrade(manager);
}

/// The running attribution collector's manager, if the collector is on.
pub fn current() -> Option<Arc<Manager>> {
    CURRENT.lock().expect("current manager lock").upgrade()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("a run on demand is already going for pid {0}")]
    Running(i32),
    #[error("duration must be more than 0 and at most {0:?}")]
    Duration(Duration),
}

impl Manager {
    pub fn new(runtime: tokio::runtime::Handle, connector: Arc<dyn Connector>, settings: ManagerSettings) -> Manager {
        let permits = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
        Manager {
            runtime,
            connector,
            settings: Arc::new(settings),
            permits,
            slots: Mutex::new(HashMap::new()),
            watched: Mutex::new(Vec::new()),
        }
    }

    /// Profiles `key` for `duration`. A run already going because the process leaks keeps going
    /// and is reported instead.
    pub fn request(&self, key: ProcessKey, duration: Duration) -> Result<(), RequestError> {
        if duration.is_zero() || duration > self.settings.max_duration {
            return Err(RequestError::Duration(self.settings.max_duration));
        }
        let mut slots = self.slots.lock().expect("profiler lock");
        if let Some(s) = slots.get(&key) {
            if !s.task.is_finished() {
                return match s.trigger {
                    Trigger::OnDemand => Err(RequestError::Running(key.pid)),
                    Trigger::Leak => Ok(()),
                };
            }
        }
        let slot = self.spawn(key, Trigger::OnDemand, Some(duration));
        slots.insert(key, slot);
        Ok(())
    }

    /// Starts runs for the processes whose heap verdict is positive, and stops the runs started
    /// that way for every other process (a verdict cleared, a process gone). A run that ended
    /// (its session dropped) is started again, a minute after it started, while the process still
    /// leaks.
    pub fn update_leaking(&self, leaking: &[ProcessKey]) {
        let mut slots = self.slots.lock().expect("profiler lock");
        for (key, slot) in slots.iter() {
            if slot.trigger == Trigger::Leak && !leaking.contains(key) {
                let _ = slot.stop.send(true);
            }
        }
        for key in leaking {
            // A run that failed (no inspector, a session lost) is tried again after a pause.
            let busy = slots.get(key).is_some_and(|s| !s.task.is_finished() || s.started.elapsed() < RETRY);
            if !busy {
                let slot = self.spawn(*key, Trigger::Leak, None);
                slots.insert(*key, slot);
            }
        }
    }

    /// The watched process with this pid (the newest, should the pid have been reused).
    pub fn key_of(&self, pid: i32) -> Option<ProcessKey> {
        let watched = self.watched.lock().expect("watched lock");
        watched.iter().filter(|k| k.pid == pid).max_by_key(|k| k.start_ticks).copied()
    }

    /// The longest run on demand.
    pub fn max_duration(&self) -> Duration {
        self.settings.max_duration
    }

    /// Forgets processes that are no longer watched, stopping their runs.
    pub fn retain(&self, watched: &[ProcessKey]) {
        *self.watched.lock().expect("watched lock") = watched.to_vec();
        let mut slots = self.slots.lock().expect("profiler lock");
        slots.retain(|key, slot| {
            let keep = watched.contains(key);
            if !keep {
                let _ = slot.stop.send(true);
            }
            keep
        });
    }

    /// The state of `pid`'s run (the newest process with that pid).
    pub fn report(&self, pid: i32) -> Option<RunState> {
        let slots = self.slots.lock().expect("profiler lock");
        let (_, slot) = slots.iter().filter(|(k, _)| k.pid == pid).max_by_key(|(k, _)| k.start_ticks)?;
        let state = slot.state.lock().expect("run state lock").clone();
        Some(state)
    }

    /// `pid`'s newest profile in pprof's format.
    pub fn pprof(&self, pid: i32) -> Option<Vec<u8>> {
        let state = self.report(pid)?;
        let (t, profile, interval) = state.last?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Some(super::pprof::encode(&profile, interval, now.as_nanos() as i64, (t * 1e9) as i64))
    }

    /// The growing sites of every run, for the metric: at most `top` per process.
    pub fn growing(&self, top: usize) -> Vec<(ProcessKey, Vec<sites::Growth>)> {
        let slots = self.slots.lock().expect("profiler lock");
        let mut out: Vec<(ProcessKey, Vec<sites::Growth>)> = slots
            .iter()
            .filter_map(|(k, s)| {
                let state = s.state.lock().expect("run state lock");
                let mut g = state.report.as_ref()?.growing.clone();
                g.truncate(top);
                Some((*k, g))
            })
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }

    /// Stops every run and waits for them to stop sampling, at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) {
        self.runtime.block_on(self.shutdown_async(timeout));
    }

    /// As [`Manager::shutdown`], from inside the runtime.
    pub async fn shutdown_async(&self, timeout: Duration) {
        let runs = self.slots.lock().expect("profiler lock").drain().map(|(_, s)| (s.stop, s.task)).collect();
        crate::collect::inspector::stop_and_join(runs, timeout).await;
    }

    fn spawn(&self, key: ProcessKey, trigger: Trigger, duration: Option<Duration>) -> Slot {
        let (stop, stop_rx) = watch::channel(false);
        let state = Arc::new(Mutex::new(RunState { trigger, status: Status::Waiting, report: None, last: None }));
        let task = self.runtime.spawn(run(
            key,
            duration,
            state.clone(),
            stop_rx,
            self.connector.clone(),
            self.settings.clone(),
            self.permits.clone(),
        ));
        Slot { trigger, started: std::time::Instant::now(), stop, task, state }
    }
}

async fn run(
    key: ProcessKey,
    duration: Option<Duration>,
    state: Arc<Mutex<RunState>>,
    mut stop: watch::Receiver<bool>,
    connector: Arc<dyn Connector>,
    settings: Arc<ManagerSettings>,
    permits: Arc<Semaphore>,
) {
    let set_status = |s: Status| state.lock().expect("run state lock").status = s;
    let permit = tokio::select! {
        p = permits.acquire_owned() => p,
        _ = stop.changed() => return set_status(Status::Done),
    };
    let Ok(_permit) = permit else { return set_status(Status::Failed("the profiler is shutting down".into())) };
    let inspector = match locate::locate_inspector(
        &*connector,
        &settings.procfs,
        key.pid,
        &settings.ports,
        &settings.allowed_addresses,
        settings.connect_timeout,
    )
    .await
    .map_err(AttributionError::from)
    {
        Ok(i) => i,
        Err(e) => return set_status(Status::Failed(e.to_string())),
    };
    let run_settings = RunSettings {
        interval: settings.interval,
        call_timeout: settings.call_timeout,
        max_reply: settings.max_reply,
        limits: ProfileLimits::default(),
    };
    let mut run = match Run::start(&*connector, key.pid, &inspector, run_settings).await {
        Ok(r) => r,
        Err(e) => return set_status(Status::Failed(e.to_string())),
    };
    set_status(Status::Sampling);
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + settings.every, settings.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended: Result<(), String> = loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = run.take().await {
                    break Err(e.to_string());
                }
                publish(&state, &run, &settings, key.pid);
            }
            _ = until_deadline => break Ok(()),
            _ = stop.changed() => break Ok(()),
        }
    };
    // Stop sampling on every path; after an error the session may be gone, which stops it too.
    let stopped = run.finish().await;
    publish(&state, &run, &settings, key.pid);
    set_status(match (ended, stopped) {
        (Err(e), _) => Status::Failed(e),
        (Ok(()), Err(e)) if run.last.is_none() => Status::Failed(e.to_string()),
        (Ok(()), _) => Status::Done,
    });
}

fn publish(state: &Mutex<RunState>, run: &Run, settings: &ManagerSettings, pid: i32) {
    let Some((t, profile)) = &run.last else { return };
    let mut growing = run.history.growing(&settings.rule);
    growing.truncate(settings.top);
    let largest: Vec<SiteReport> = sites::sites(profile).iter().take(settings.top).map(SiteReport::from).collect();
    let report = Report {
        pid,
        interval_bytes: run.interval(),
        duration_seconds: *t,
        profiles: run.history.profiles(),
        live_bytes: profile.total_bytes(),
        growing,
        largest,
        interrupted: None,
    };
    let mut s = state.lock().expect("run state lock");
    s.report = Some(report);
    s.last = Some((*t, profile.clone(), run.interval()));
}
