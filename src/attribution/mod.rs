//! Leak attribution: which code allocated the memory that stays alive. V8's sampling heap
//! profiler, started over the inspector (`HeapProfiler.startSampling`), keeps a sample of the
//! allocations still alive with their stacks; successive `HeapProfiler.getSamplingProfile`
//! results of one process show which allocation sites keep growing ([`sites`]).
//!
//! This module owns reading profiles ([`profile`], bounded: a process can be hostile), sites and
//! their growth ([`sites`]), the pprof encoding ([`pprof`]), and a profiling run over its own
//! inspector session ([`cdp`], [`Run`]); `nodejs-leak-exporter profile` ([`cli`]) drives one run.
//! It finds inspectors with the collector's rules (`collect::inspector::locate`: flags, listening
//! sockets, configured ports, loopback only unless allowed, and the `process.pid` check) and must
//! never leave sampling running: it stops at the end of a run, on its errors, on `SIGINT` and
//! `SIGTERM`, and V8 stops it when the session's socket closes whatever happened to the caller.

pub mod cdp;
pub mod cli;
pub mod collector;
pub mod json;
pub mod manager;
pub mod pprof;
pub mod profile;
pub mod sites;
pub mod web;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use self::cdp::{Cdp, CdpError};
use self::profile::{Profile, ProfileError, ProfileLimits};
use crate::collect::inspector::locate::{self, InspectFlags};
use crate::connector::Connector;

/// Bytes between two samples, on average, unless asked otherwise: four times V8's default
/// (32 KiB), so a server allocating 100 MiB/s takes about 800 samples a second.
pub const DEFAULT_INTERVAL: u64 = 128 << 10;
/// The smallest interval accepted: below it sampling slows the app down noticeably.
pub const MIN_INTERVAL: u64 = 1 << 10;
/// The largest interval accepted.
pub const MAX_INTERVAL: u64 = 64 << 20;
/// The largest profile reply accepted unless asked otherwise. A profile is about 200 bytes per
/// node of the tree (100,000 nodes at most, [`ProfileLimits`]) and 50 per live sample.
pub const DEFAULT_MAX_REPLY: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error("process {pid} not found under {procfs}")]
    NoProcess { pid: i32, procfs: PathBuf },
    #[error("process {pid} has no inspector the profiler may use: {why}")]
    NoInspector { pid: i32, why: String },
    #[error("the inspector at {addr} belongs to another process (pid {other} in its namespace)")]
    NotOurs { addr: SocketAddr, other: String },
    #[error(transparent)]
    Cdp(#[from] CdpError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Where a process's inspector listens and its WebSocket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspector {
    pub addr: SocketAddr,
    pub path: String,
    /// The pid as the process sees itself.
    pub ns_pid: i32,
}

/// Finds `pid`'s inspector as the collector does: the address its `--inspect*` flags name, its
/// listening sockets (when its flags say an inspector is open), then `ports`; only loopback
/// addresses unless `allowed` names them.
pub async fn locate_inspector(
    connector: &dyn Connector,
    procfs: &Path,
    pid: i32,
    ports: &[u16],
    allowed: &[IpAddr],
    timeout: Duration,
) -> Result<Inspector, AttributionError> {
    let process = procfs::process::Process::new_with_root(procfs.join(pid.to_string()))
        .map_err(|_| AttributionError::NoProcess { pid, procfs: procfs.to_path_buf() })?;
    let argv = std::fs::read(procfs.join(pid.to_string()).join("cmdline"))
        .map(|b| crate::discovery::split_cmdline(&b))
        .map_err(|_| AttributionError::NoProcess { pid, procfs: procfs.to_path_buf() })?;
    let environ = read_limited(&procfs.join(pid.to_string()).join("environ"), 4 << 20);
    let node_options = crate::discovery::parse_environ(&environ).node_options;
    let flags = InspectFlags::parse(&argv, node_options.as_deref());
    let ns_pid = process.status().ok().and_then(|s| s.nspid).and_then(|ns| ns.last().copied()).unwrap_or(pid);
    let mut candidates: Vec<SocketAddr> = Vec::new();
    candidates.extend(flags.address());
    if let Ok(sockets) = locate::listening_sockets(procfs, pid) {
        candidates.extend(sockets);
    }
    candidates.extend(ports.iter().map(|p| SocketAddr::from(([127, 0, 0, 1], *p))));
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|a| seen.insert(*a));
    let mut why = String::from("no --inspect flag, listening inspector or --inspector.port");
    for addr in candidates {
        if !locate::address_allowed(addr.ip(), allowed) {
            why = format!("{addr} is not on loopback (allow it with --inspector.allow-address)");
            continue;
        }
        match locate::probe(connector, pid, addr, timeout).await {
            Ok(path) => return Ok(Inspector { addr, path, ns_pid }),
            Err(e) if flags.address() == Some(addr) || ports.iter().any(|p| addr.port() == *p) => {
                why = format!("{addr}: {}", e.message)
            }
            Err(_) => {}
        }
    }
    Err(AttributionError::NoInspector { pid, why })
}

fn read_limited(path: &Path, max: u64) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max).read_to_end(&mut buf);
    }
    buf
}

/// Settings of one profiling run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Sampling interval in bytes, within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
    pub interval: u64,
    pub call_timeout: Duration,
    /// Cap of a profile's reply in bytes.
    pub max_reply: usize,
    pub limits: ProfileLimits,
}

/// One profiling run on one process: sampling started over its own session, profiles taken on
/// demand, sampling stopped by [`Run::finish`] (or by V8, when the session's socket closes).
pub struct Run {
    cdp: Option<Cdp>,
    settings: RunSettings,
    started: Instant,
    pub history: sites::History,
    /// The newest profile and when it was taken, in seconds after sampling started.
    pub last: Option<(f64, Profile)>,
}

impl Run {
    /// Opens a session, checks that the inspector is the process's own, and starts sampling.
    pub async fn start(
        connector: &dyn Connector,
        pid: i32,
        inspector: &Inspector,
        settings: RunSettings,
    ) -> Result<Run, AttributionError> {
        let timeout = settings.call_timeout;
        let max_message = settings.max_reply.max(cdp::SMALL_REPLY);
        let mut session = Cdp::open(connector, pid, inspector.addr, &inspector.path, timeout, max_message).await?;
        let whose = session
            .call(
                "Runtime.evaluate",
                json!({"expression": "process.pid", "returnByValue": true, "silent": true}),
                timeout,
                cdp::SMALL_REPLY,
            )
            .await?;
        if whose["result"]["value"].as_i64() != Some(inspector.ns_pid as i64) {
            session.close().await;
            return Err(AttributionError::NotOurs {
                addr: inspector.addr,
                other: whose["result"]["value"].to_string().chars().take(20).collect(),
            });
        }
        let interval = settings.interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
        session
            .call("HeapProfiler.startSampling", json!({"samplingInterval": interval}), timeout, cdp::SMALL_REPLY)
            .await?;
        Ok(Run {
            cdp: Some(session),
            settings: RunSettings { interval, ..settings },
            started: Instant::now(),
            history: sites::History::new(interval),
            last: None,
        })
    }

    pub fn interval(&self) -> u64 {
        self.settings.interval
    }

    /// Seconds since sampling started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Takes a profile and adds its sites to the history.
    pub async fn take(&mut self) -> Result<&Profile, AttributionError> {
        let cdp = self.cdp.as_mut().ok_or(CdpError::Closed)?;
        let reply = cdp
            .call("HeapProfiler.getSamplingProfile", json!({}), self.settings.call_timeout, self.settings.max_reply)
            .await?;
        let t = self.elapsed();
        self.record(t, &reply)
    }

    fn record(&mut self, t: f64, reply: &serde_json::Value) -> Result<&Profile, AttributionError> {
        let profile = profile::parse_value(reply, self.settings.interval, self.settings.limits)?;
        self.history.add(t, &sites::sites(&profile));
        self.last = Some((t, profile));
        Ok(&self.last.as_ref().expect("just set").1)
    }

    /// Stops sampling, adds the final profile V8 returns, and closes the session. Idempotent.
    pub async fn finish(&mut self) -> Result<(), AttributionError> {
        let Some(mut cdp) = self.cdp.take() else { return Ok(()) };
        let result =
            cdp.call("HeapProfiler.stopSampling", json!({}), self.settings.call_timeout, self.settings.max_reply).await;
        cdp.close().await;
        let reply = result?;
        let t = self.elapsed();
        self.record(t, &reply)?;
        Ok(())
    }
}
