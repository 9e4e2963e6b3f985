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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use self::cdp::{Cdp, CdpError};
use self::profile::{Profile, ProfileError, ProfileLimits};
use crate::collect::inspector::locate::{Inspector, LocateError};
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

impl From<LocateError> for AttributionError {
    fn from(e: LocateError) -> Self {
        match e {
            LocateError::NoProcess { pid, procfs } => AttributionError::NoProcess { pid, procfs },
            LocateError::NoInspector { pid, why } => AttributionError::NoInspector { pid, why },
        }
    }
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
