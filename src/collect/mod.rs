//! Collectors: one module per data source, each behind the small [`Collector`] trait, all listed
//! in [`COLLECTORS`], the one table that also yields the `--[no-]collector.NAME` flags.
//!
//! A collector reads; it does not expose. It writes its readings into the target's [`Readings`]
//! and renders them into [`Families`] when the sampler builds a snapshot. Collectors run on the
//! sampler thread and must never block on one target for long.

pub mod cgroup;
pub mod inspector;
pub mod kubernetes;
pub mod logs;
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
    /// A peer (an inspector) did not answer in time.
    Timeout,
    /// A peer answered with something that is not the expected protocol or shape.
    Protocol,
    /// A peer could not be reached or closed the connection.
    Unreachable,
    /// Nothing to read and nothing wrong: no inspector is open on the process. Shown on the
    /// status page, never counted as an error.
    NotAvailable,
}

impl Reason {
    pub fn as_label(self) -> &'static str {
        match self {
            Reason::PermissionDenied => "permission_denied",
            Reason::Unsupported => "unsupported",
            Reason::Io => "io",
            Reason::Parse => "parse",
            Reason::Timeout => "timeout",
            Reason::Protocol => "protocol",
            Reason::Unreachable => "unreachable",
            Reason::NotAvailable => "not_available",
        }
    }

    /// Whether this counts in `nodejs_leak_exporter_collector_errors_total`.
    pub fn is_error(self) -> bool {
        self != Reason::NotAvailable
    }

    pub fn from_proc_error(e: &::procfs::ProcError) -> Reason {
        match e {
            ::procfs::ProcError::PermissionDenied(_) => Reason::PermissionDenied,
            ::procfs::ProcError::NotFound(_) => Reason::Unsupported,
            ::procfs::ProcError::Incomplete(_)
            | ::procfs::ProcError::Other(_)
            | ::procfs::ProcError::InternalError(_) => Reason::Parse,
            ::procfs::ProcError::Io(..) => Reason::Io,
        }
    }

    pub fn from_io_error(e: &std::io::Error) -> Reason {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Reason::PermissionDenied,
            std::io::ErrorKind::NotFound => Reason::Unsupported,
            std::io::ErrorKind::InvalidData => Reason::Parse,
            std::io::ErrorKind::TimedOut => Reason::Timeout,
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe => Reason::Unreachable,
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
    Read(Report),
    /// The process is gone. Not an error.
    Vanished,
}

/// What a collector could not read now (shown on the status page) and the failures that happened
/// since the last sample (counted). For a file read they are the same; for an inspector session
/// the state and the failed calls differ.
#[derive(Debug, Default)]
pub struct Report {
    pub gaps: Vec<Gap>,
    pub errors: Vec<Reason>,
}

impl From<Vec<Gap>> for Report {
    /// Each gap of a synchronous read is also one failed read.
    fn from(gaps: Vec<Gap>) -> Report {
        let errors = gaps.iter().map(|g| g.reason).filter(|r| r.is_error()).collect();
        Report { gaps, errors }
    }
}

/// Everything collectors know about one target; each collector owns one field.
#[derive(Debug, Default, Clone)]
pub struct Readings {
    pub procfs: Option<procfs::ProcReadings>,
    pub cgroup: Option<cgroup::CgroupReadings>,
    /// The Kubernetes container and its names, which label every series of the target.
    pub kubernetes: Option<kubernetes::KubernetesReadings>,
    pub inspector: Option<inspector::InspectorReadings>,
    /// Warnings of this process read from logs.
    pub logs: Option<logs::WarningCounts>,
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

    /// Undoes what the collector changed in watched processes; called once at shutdown.
    fn shutdown(&mut self) {}
}

/// What collectors may need besides the configuration.
#[derive(Clone)]
pub struct Context {
    /// The async runtime that runs inspector sessions.
    pub runtime: tokio::runtime::Handle,
    /// How inspector connections are opened.
    pub connector: std::sync::Arc<dyn crate::connector::Connector>,
    /// This exporter instance, as owner of code injected into processes.
    pub instance: String,
}

/// How a collector is registered: its name, whether it runs by default, and how it is built.
pub struct CollectorSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub default_enabled: bool,
    /// The configuration switch that turns it on or off.
    pub switch: fn(&mut CollectorsConfig) -> &mut bool,
    pub build: fn(&Config, &Context) -> Box<dyn Collector>,
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
        build: |c, _| Box::new(procfs::ProcfsCollector::new(&c.paths.procfs, c.collectors.procfs.pss)),
    },
    CollectorSpec {
        name: "cgroup",
        help: "memory limit, usage and OOM kills of each process's cgroup",
        default_enabled: true,
        switch: |c| &mut c.cgroup.enabled,
        build: |c, _| Box::new(cgroup::CgroupCollector::new(&c.paths.sysfs.join("fs/cgroup"))),
    },
    CollectorSpec {
        name: "kubernetes",
        help: "namespace, pod and container labels from each process's cgroup and the kubelet's log file names",
        default_enabled: true,
        switch: |c| &mut c.kubernetes.enabled,
        build: |c, _| Box::new(kubernetes::KubernetesCollector::new(&c.paths.rootfs)),
    },
    CollectorSpec {
        name: "inspector",
        help: "V8 heap, GC and process warnings through the Node.js inspector, where one is open",
        default_enabled: true,
        switch: |c| &mut c.inspector.enabled,
        build: |c, ctx| {
            let settings = inspector::Settings::new(
                &c.collectors.inspector,
                c.paths.procfs.clone(),
                c.sample.interval,
                ctx.instance.clone(),
            );
            Box::new(inspector::InspectorCollector::new(ctx.runtime.clone(), ctx.connector.clone(), settings))
        },
    },
    CollectorSpec {
        name: "logs",
        help: "warnings and heap-OOM crashes from PM2, Kubernetes container and configured log files",
        default_enabled: true,
        switch: |c| &mut c.logs.enabled,
        build: |c, _| {
            Box::new(logs::LogsCollector::new(
                &c.collectors.logs,
                c.paths.rootfs.clone(),
                c.collectors.inspector.label_limit,
            ))
        },
    },
    CollectorSpec {
        name: "attribution",
        help: "while a process's heap leaks, which code allocated what stays alive (V8's sampling heap profiler)",
        default_enabled: false,
        switch: |c| &mut c.attribution.enabled,
        build: |c, ctx| Box::new(crate::attribution::collector::AttributionCollector::new(c, ctx)),
    },
];

/// Builds the enabled collectors in table order.
pub fn build_enabled(config: &Config, context: &Context) -> Vec<Box<dyn Collector>> {
    COLLECTORS.iter().filter(|spec| spec.enabled_in(config)).map(|spec| (spec.build)(config, context)).collect()
}
