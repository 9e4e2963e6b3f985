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
}

impl Registry {
    pub fn new(min_age: Duration, exit_retention: Duration) -> Self {
        Registry { targets: BTreeMap::new(), min_age, exit_retention }
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
                    t.handle = Some(f.handle);
                }
                None => {
                    let Some(identity) = f.identity else { continue };
                    let age = age_of(f.key.start_ticks);
                    stats.added += 1;
                    self.targets.insert(
                        f.key,
                        Target {
                            key: f.key,
                            identity,
                            handle: Some(f.handle),
                            state: TargetState::Warming,
                            started_at: now.checked_sub(age).unwrap_or(now),
                            readings: Readings::default(),
                            gaps: BTreeMap::new(),
                            exported_once: false,
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
