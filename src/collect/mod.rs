//! Collectors: one module per data source, each behind the small [`Collector`] trait, all listed
//! in [`COLLECTORS`], the one table that also yields the `--[no-]collector.NAME` flags.
//!
//! A collector reads; it does not expose. It writes its readings into the target's [`Readings`]
//! and renders them into [`Families`] when the sampler builds a snapshot. Collectors run on the
//! sampler thread and must never block on one target for long.

pub mod cgroup;
pub mod procfs;

use std::fmt;

use crate::config::{CollectorsConfig, Config};
use crate::exposition::Families;
use crate::target::Target;

/// Why a collector could not read some part of a target. Used as the bounded `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Another user's process without CAP_SYS_PTRACE.
    PermissionDenied,
    /// The kernel or the process does not offer it (no cgroup memory controller, old kernel).
    Unsupported,
    /// A read failed for another reason.
    Io,
    /// The file was read but did not parse.
    Parse,
}

impl Reason {
    pub fn as_label(self) -> &'static str {
        match self {
            Reason::PermissionDenied => "permission_denied",
            Reason::Unsupported => "unsupported",
            Reason::Io => "io",
            Reason::Parse => "parse",
        }
    }

    pub fn from_proc_error(e: &::procfs::ProcError) -> Reason {
        match e {
            ::procfs::ProcError::PermissionDenied(_) => Reason::PermissionDenied,
            ::procfs::ProcError::NotFound(_) => Reason::Unsupported,
            ::procfs::ProcError::Incomplete(_) | ::procfs::ProcError::Other(_) | ::procfs::ProcError::InternalError(_) => {
                Reason::Parse
            }
            ::procfs::ProcError::Io(..) => Reason::Io,
        }
    }

    pub fn from_io_error(e: &std::io::Error) -> Reason {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Reason::PermissionDenied,
            std::io::ErrorKind::NotFound => Reason::Unsupported,
            std::io::ErrorKind::InvalidData => Reason::Parse,
            _ => Reason::Io,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

/// One part of a target a collector could not read this sample, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// What could not be read, e.g. `fds` or `memory limit`.
    pub what: &'static str,
    pub reason: Reason,
}

impl Gap {
    pub fn new(what: &'static str, reason: Reason) -> Gap {
        Gap { what, reason }
    }
}

/// The result of collecting one target.
#[derive(Debug)]
pub enum Outcome {
    /// Read, possibly with parts missing.
    Read(Vec<Gap>),
    /// The process is gone. Not an error.
    Vanished,
}

/// Everything collectors know about one target; each collector owns one field.
#[derive(Debug, Default, Clone)]
pub struct Readings {
    pub procfs: Option<procfs::ProcReadings>,
    pub cgroup: Option<cgroup::CgroupReadings>,
}

/// A data source.
pub trait Collector: Send {
    /// The name used in flags, in the `collector` label and on the status page.
    fn name(&self) -> &'static str;

    /// Called once per sample before any target, e.g. to drop per-sample caches.
    fn begin_sample(&mut self) {}

    /// Reads one live target into `target.readings`.
    fn collect(&mut self, target: &mut Target) -> Outcome;

    /// Reads what can still be read of a target that has exited (kept for the exit retention).
    fn collect_exited(&mut self, _target: &mut Target) {}

    /// Adds this collector's metrics for the exported targets.
    fn render(&self, targets: &[&Target], out: &mut Families);
}

/// How a collector is registered: its name, whether it runs by default, and how it is built.
pub struct CollectorSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub default_enabled: bool,
    /// The configuration switch that turns it on or off.
    pub switch: fn(&mut CollectorsConfig) -> &mut bool,
    pub build: fn(&Config) -> Box<dyn Collector>,
}

impl CollectorSpec {
    pub fn enabled_in(&self, config: &Config) -> bool {
        *(self.switch)(&mut config.collectors.clone())
    }

    pub fn set_enabled(&self, config: &mut Config, enabled: bool) {
        *(self.switch)(&mut config.collectors) = enabled;
    }
}

/// Every collector. Order is the order of reading and of the output.
pub const COLLECTORS: &[CollectorSpec] = &[
    CollectorSpec {
        name: "procfs",
        help: "process memory, CPU, fds, sockets and threads from /proc",
        default_enabled: true,
        switch: |c| &mut c.procfs.enabled,
        build: |c| Box::new(procfs::ProcfsCollector::new(&c.paths.procfs, c.collectors.procfs.pss)),
    },
    CollectorSpec {
        name: "cgroup",
        help: "memory limit, usage and OOM kills of each process's cgroup",
        default_enabled: true,
        switch: |c| &mut c.cgroup.enabled,
        build: |c| Box::new(cgroup::CgroupCollector::new(&c.paths.sysfs.join("fs/cgroup"))),
    },
];

/// Builds the enabled collectors in table order.
pub fn build_enabled(config: &Config) -> Vec<Box<dyn Collector>> {
    COLLECTORS.iter().filter(|spec| spec.enabled_in(config)).map(|spec| (spec.build)(config)).collect()
}
