//! The target registry: every watched process from discovery to removal.
//!
//! A target is `warming` while younger than the minimum age (read, not exported), `active` while
//! exported, and `exited` once gone: its last series stay exported for the exit retention, then the
//! target is dropped with everything it held, so memory follows the live process count.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use procfs::process::Process;

use crate::collect::{Gap, Readings};
use crate::discovery::{Found, Identity, ProcessKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Warming,
    Active,
    Exited { at: Instant },
}

impl TargetState {
    pub fn as_label(self) -> &'static str {
        match self {
            TargetState::Warming => "warming",
            TargetState::Active => "active",
            TargetState::Exited { .. } => "exited",
        }
    }
}

pub struct Target {
    pub key: ProcessKey,
    pub identity: Identity,
    /// An open handle on `/proc/PID`: reads through it fail once the process is gone, so a reused
    /// pid is never read as this target. None once exited.
    pub handle: Option<Process>,
    pub state: TargetState,
    /// Process age at discovery plus time since, from the kernel's start time.
    pub started_at: Instant,
    pub readings: Readings,
    /// What each collector could not read at the last sample.
    pub gaps: BTreeMap<&'static str, Vec<Gap>>,
    /// Whether the target was ever exported: one that exits while warming is dropped at once.
    pub exported_once: bool,
    /// This sample's `stat`, read by discovery and reused by collectors.
    pub stat: Option<crate::procstat::ProcStat>,
    /// Growth history and verdicts; created at the first sample, dropped with the target.
    pub leak: Option<crate::leak::LeakState>,
}

impl Target {
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started_at)
    }

    pub fn is_exported(&self) -> bool {
        match self.state {
            TargetState::Warming => false,
            TargetState::Active => true,
            TargetState::Exited { .. } => self.exported_once,
        }
    }
}

/// Counts of what one update changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpdateStats {
    pub added: usize,
    pub exited: usize,
    pub removed: usize,
}

pub struct Registry {
    targets: BTreeMap<ProcessKey, Target>,
    min_age: Duration,
    exit_retention: Duration,
    /// The last process of each PM2 instance (name, pm_id): a new one is a restart.
    pm2_instances: std::collections::HashMap<(String, String), ProcessKey>,
    restarts: BTreeMap<String, u64>,
}

impl Registry {
    pub fn new(min_age: Duration, exit_retention: Duration) -> Self {
        Registry {
            targets: BTreeMap::new(),
            min_age,
            exit_retention,
            pm2_instances: Default::default(),
            restarts: BTreeMap::new(),
        }
    }

    /// New minimum age and exit retention (a configuration reload); targets are kept.
    pub fn set_ages(&mut self, min_age: Duration, exit_retention: Duration) {
        self.min_age = min_age;
        self.exit_retention = exit_retention;
    }

    pub fn contains(&self, key: &ProcessKey) -> bool {
        self.targets.get(key).is_some_and(|t| !matches!(t.state, TargetState::Exited { .. }))
    }

    /// Applies a scan: new processes become targets, missing ones exit, expired ones go.
    /// `age_of` gives a process's age from its start ticks.
    pub fn update(&mut self, found: Vec<Found>, now: Instant, age_of: impl Fn(u64) -> Duration) -> UpdateStats {
        let mut stats = UpdateStats::default();
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        for f in found {
            if f.zombie {
                // Exited, waiting to be reaped: treat as gone.
                continue;
            }
            seen.insert(f.key);
            match self.targets.get_mut(&f.key) {
                Some(t) => {
                    if let Some(identity) = f.identity {
                        t.identity = identity;
                    }
                    if matches!(t.state, TargetState::Exited { .. }) {
                        // Matched again after exec-ing back: a fresh life.
                        t.state = TargetState::Warming;
                    }
                    if f.handle.is_some() {
                        t.handle = f.handle;
                    }
                    t.stat = f.stat;
                }
                None => {
                    let Some(identity) = f.identity else { continue };
                    let age = age_of(f.key.start_ticks);
                    stats.added += 1;
                    // PM2 cluster workers are instances (their own pm_id), not restarts.
                    if let Some(pm2) = &identity.pm2 {
                        let instance = (pm2.name.clone(), pm2.id.clone().unwrap_or_default());
                        if self.pm2_instances.insert(instance, f.key).is_some_and(|k| k != f.key) {
                            *self.restarts.entry(pm2.name.clone()).or_default() += 1;
                        }
                        // Bounded: apps renamed or deleted leave stale entries; keep the newest.
                        if self.pm2_instances.len() > 4096 {
                            let live: std::collections::HashSet<ProcessKey> = self.targets.keys().copied().collect();
                            self.pm2_instances.retain(|_, k| live.contains(k) || *k == f.key);
                        }
                    }
                    self.targets.insert(
                        f.key,
                        Target {
                            key: f.key,
                            identity,
                            handle: f.handle,
                            state: TargetState::Warming,
                            started_at: now.checked_sub(age).unwrap_or(now),
                            readings: Readings::default(),
                            gaps: BTreeMap::new(),
                            exported_once: false,
                            stat: f.stat,
                            leak: None,
                        },
                    );
                }
            }
        }
        for t in self.targets.values_mut() {
            if !seen.contains(&t.key) && !matches!(t.state, TargetState::Exited { .. }) {
                t.state = TargetState::Exited { at: now };
                t.handle = None;
                stats.exited += 1;
            }
        }
        let before = self.targets.len();
        let retention = self.exit_retention;
        self.targets.retain(|_, t| match t.state {
            // A process that exited while warming was never exported: drop it at once.
            TargetState::Exited { at } => t.exported_once && now.saturating_duration_since(at) < retention,
            _ => true,
        });
        stats.removed = before - self.targets.len();
        self.promote(now);
        stats
    }

    /// Warming targets old enough (or named explicitly) become active.
    fn promote(&mut self, now: Instant) {
        for t in self.targets.values_mut() {
            if t.state == TargetState::Warming && (t.identity.explicit || t.age(now) >= self.min_age) {
                t.state = TargetState::Active;
                t.exported_once = true;
            }
        }
    }

    /// Marks a target exited now (a collector saw it vanish mid-sample).
    pub fn mark_exited(&mut self, key: &ProcessKey, now: Instant) {
        if let Some(t) = self.targets.get_mut(key) {
            if !matches!(t.state, TargetState::Exited { .. }) {
                t.state = TargetState::Exited { at: now };
                t.handle = None;
            }
        }
    }

    /// Restarts of PM2 app instances seen since start, by app.
    pub fn restarts(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.restarts.iter()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.targets.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Target> {
        self.targets.values_mut()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Identity;

    fn identity(explicit: bool) -> Identity {
        Identity {
            app: "a.js".into(),
            comm: "node".into(),
            exe_name: None,
            script: Some("a.js".into()),
            uid: 0,
            user: "root".into(),
            pm2: None,
            inspect: Default::default(),
            ns_pid: None,
            explicit,
            node_version: None,
        }
    }

    fn found(dir: &std::path::Path, key: ProcessKey, new: bool) -> Found {
        let path = dir.join(key.pid.to_string());
        std::fs::create_dir_all(&path).unwrap();
        Found {
            key,
            handle: Some(Process::new_with_root(path).unwrap()),
            stat: None,
            identity: new.then(|| identity(false)),
            zombie: false,
        }
    }

    const MIN_AGE: Duration = Duration::from_secs(5);
    const RETENTION: Duration = Duration::from_secs(60);

    #[test]
    fn a_new_process_warms_up_then_is_exported() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new(MIN_AGE, RETENTION);
        let key = ProcessKey { pid: 10, start_ticks: 1 };
        let t0 = Instant::now();
        r.update(vec![found(dir.path(), key, true)], t0, |_| Duration::from_secs(1));
        assert_eq!(r.iter().next().unwrap().state, TargetState::Warming);
        assert!(!r.iter().next().unwrap().is_exported());
        r.update(vec![found(dir.path(), key, false)], t0 + Duration::from_secs(4), |_| unreachable!());
        assert_eq!(r.iter().next().unwrap().state, TargetState::Active);
    }

    #[test]
    fn an_exited_process_is_kept_for_the_retention_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new(MIN_AGE, RETENTION);
        let key = ProcessKey { pid: 10, start_ticks: 1 };
        let t0 = Instant::now();
        r.update(vec![found(dir.path(), key, true)], t0, |_| Duration::from_secs(60));
        let s = r.update(vec![], t0 + Duration::from_secs(5), |_| unreachable!());
        assert_eq!(s, UpdateStats { added: 0, exited: 1, removed: 0 });
        let t = r.iter().next().unwrap();
        assert!(matches!(t.state, TargetState::Exited { .. }) && t.is_exported() && t.handle.is_none());
        let s = r.update(vec![], t0 + Duration::from_secs(66), |_| unreachable!());
        assert_eq!(s.removed, 1);
        assert!(r.is_empty());
    }

    #[test]
    fn a_process_that_exits_while_warming_is_dropped_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new(MIN_AGE, RETENTION);
        let t0 = Instant::now();
        r.update(vec![found(dir.path(), ProcessKey { pid: 10, start_ticks: 1 }, true)], t0, |_| Duration::ZERO);
        let s = r.update(vec![], t0 + Duration::from_secs(1), |_| unreachable!());
        assert_eq!((s.exited, s.removed), (1, 1));
        assert!(r.is_empty());
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new(Duration::ZERO, RETENTION);
        let old = ProcessKey { pid: 10, start_ticks: 1 };
        let new = ProcessKey { pid: 10, start_ticks: 999 };
        let t0 = Instant::now();
        r.update(vec![found(dir.path(), old, true)], t0, |_| Duration::ZERO);
        let s = r.update(vec![found(dir.path(), new, true)], t0 + Duration::from_secs(1), |_| Duration::ZERO);
        assert_eq!((s.added, s.exited), (1, 1));
        let states: Vec<_> = r.iter().map(|t| (t.key.start_ticks, t.state.as_label())).collect();
        assert_eq!(states, vec![(1, "exited"), (999, "active")]);
    }

    #[test]
    fn memory_follows_the_live_process_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new(Duration::ZERO, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..1000u64 {
            let now = t0 + Duration::from_secs(i);
            let key = ProcessKey { pid: 100 + (i % 7) as i32, start_ticks: i };
            r.update(vec![found(dir.path(), key, true)], now, |_| Duration::ZERO);
            assert!(r.len() <= 3, "churn must not accumulate targets: {}", r.len());
        }
    }
}
