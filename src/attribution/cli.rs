//! `nodejs-leak-exporter profile`: samples one process's live allocations for a while and prints
//! the allocation sites whose live bytes grow (text or JSON), or writes the last profile in pprof
//! format.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::profile::ProfileLimits;
use super::sites::{Growth, GrowthRule, Site};
use super::{AttributionError, Run, RunSettings};
use crate::collect::inspector::locate;
use crate::config::parse_duration;
use crate::connector::DirectConnector;

/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Shortest time between two profiles.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people: the growing sites, then the largest.
    Text,
    /// For machines: the same as one JSON document.
    Json,
    /// The last profile in pprof's format (gzipped profile.proto), for pprof, Pyroscope, speedscope.
    Pprof,
}

/// Arguments of `profile`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: nodejs-leak-exporter profile --pid 1234 --duration 1m\n\
    The process needs an open inspector (node --inspect=127.0.0.1:0, or SIGUSR1). Sampling is \
    stopped when the run ends, on Ctrl-C and SIGTERM, and by Node.js when the session drops.")]
pub struct ProfileArgs {
    /// The Node.js process to profile.
    #[arg(long, value_name = "PID")]
    pub pid: i32,

    /// How long to sample (at most 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,

    /// Time between two profiles (at least 1s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub every: Duration,

    /// Average bytes allocated between two samples (1024 to 67108864). Smaller sees slower
    /// leaks sooner and costs the app more.
    #[arg(long, value_name = "BYTES", default_value_t = super::DEFAULT_INTERVAL)]
    pub interval: u64,

    /// What to print.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Text)]
    pub output: Output,

    /// Write the output to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Slowest growth reported, in bytes per second [default: 546, half the heap verdict's 64 KiB/min].
    #[arg(long = "min-growth", value_name = "BYTES_PER_SECOND")]
    pub min_growth: Option<f64>,

    /// Sites listed, growing and largest each.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub top: u16,

    /// procfs mount point.
    #[arg(long = "path.procfs", value_name = "DIR", default_value = "/proc")]
    pub procfs: PathBuf,

    /// Also look for the inspector on this loopback port (repeatable).
    #[arg(long = "inspector.port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Also connect to an inspector on this address (repeatable). The inspector is remote code
    /// execution: never expose it on a network.
    #[arg(long = "inspector.allow-address", value_name = "IP")]
    pub allowed_addresses: Vec<IpAddr>,

    /// Time a call (a profile included) may take.
    #[arg(long = "inspector.call-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub call_timeout: Duration,

    /// Largest profile accepted, in bytes.
    #[arg(long = "max-reply", value_name = "BYTES", default_value_t = super::DEFAULT_MAX_REPLY)]
    pub max_reply: usize,
}

/// What a run found, as `--output json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub pid: i32,
    pub interval_bytes: u64,
    pub duration_seconds: f64,
    pub profiles: usize,
    /// Live sampled bytes at the last profile.
    pub live_bytes: u64,
    /// Sites whose live bytes grow, fastest first.
    pub growing: Vec<Growth>,
    /// The largest sites at the last profile.
    pub largest: Vec<SiteReport>,
    /// Why the run ended early, if it did.
    pub interrupted: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SiteReport {
    pub function: String,
    pub location: String,
    pub stack: Vec<String>,
    pub live_bytes: u64,
    pub live_objects: f64,
}

impl From<&Site> for SiteReport {
    fn from(s: &Site) -> Self {
        SiteReport {
            function: s.frame.function.clone(),
            location: s.frame.location(),
            stack: s.stack.iter().map(|f| format!("{} ({})", f.function, f.location())).collect(),
            live_bytes: s.live_bytes,
            live_objects: s.live_objects,
        }
    }
}

pub fn run(args: &ProfileArgs) -> anyhow::Result<()> {
    validate(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let (report, pprof) = runtime.block_on(profile(args))?;
    let bytes = match args.output {
        Output::Text => render_text(&report).into_bytes(),
        Output::Json => {
            let mut v = serde_json::to_vec_pretty(&report).expect("a report serializes");
            v.push(b'\n');
            v
        }
        Output::Pprof => pprof,
    };
    match &args.out {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(&bytes).context("writing to standard output")?,
    }
    if let Some(why) = &report.interrupted {
        tracing::warn!(pid = args.pid, "profiling ended early: {why}");
    }
    Ok(())
}

fn validate(args: &ProfileArgs) -> anyhow::Result<()> {
    if !(super::MIN_INTERVAL..=super::MAX_INTERVAL).contains(&args.interval) {
        anyhow::bail!("--interval must be between {} and {} bytes", super::MIN_INTERVAL, super::MAX_INTERVAL);
    }
    if args.duration > MAX_DURATION || args.duration.is_zero() {
        anyhow::bail!("--duration must be more than 0 and at most {}", humantime::format_duration(MAX_DURATION));
    }
    if args.every < MIN_EVERY {
        anyhow::bail!("--every must be at least {}", humantime::format_duration(MIN_EVERY));
    }
    if args.output == Output::Pprof && args.out.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!("--output pprof is binary: give --out FILE or redirect standard output");
    }
    Ok(())
}

/// Runs the profile the arguments ask for; returns the report and the last profile in pprof.
pub async fn profile(args: &ProfileArgs) -> anyhow::Result<(Report, Vec<u8>)> {
    let connector = DirectConnector;
    let inspector = locate::locate_inspector(
        &connector,
        &args.procfs,
        args.pid,
        &args.ports,
        &args.allowed_addresses,
        args.call_timeout.min(Duration::from_secs(5)),
    )
    .await
    .map_err(AttributionError::from)?;
    let settings = RunSettings {
        interval: args.interval,
        call_timeout: args.call_timeout,
        max_reply: args.max_reply,
        limits: ProfileLimits::default(),
    };
    let mut run = Run::start(&connector, args.pid, &inspector, settings).await?;
    tracing::info!(pid = args.pid, addr = %inspector.addr, interval = run.interval(), "sampling live allocations");
    let interrupted = sample(&mut run, args).await;
    // Stop on every path: at the end, after a failed profile, after a signal.
    let stopped = run.finish().await;
    let interrupted = match (interrupted, stopped) {
        (Err(e), _) => Some(format!("{e:#}")),
        (Ok(why), Err(e)) if run.last.is_none() => return Err(anyhow::Error::from(e).context(why.unwrap_or_default())),
        (Ok(why), Err(e)) => Some(why.map_or_else(|| format!("stopping: {e}"), |w| format!("{w}; stopping: {e}"))),
        (Ok(why), Ok(())) => why,
    };
    let rule =
        GrowthRule { min_rate: args.min_growth.unwrap_or(GrowthRule::default().min_rate), ..GrowthRule::default() };
    let top = args.top as usize;
    let (duration, live_bytes, largest, pprof) = match &run.last {
        Some((t, p)) => {
            let largest: Vec<SiteReport> = super::sites::sites(p).iter().take(top).map(SiteReport::from).collect();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let pprof = super::pprof::encode(p, run.interval(), now.as_nanos() as i64, (*t * 1e9) as i64);
            (*t, p.total_bytes(), largest, pprof)
        }
        None => (run.elapsed(), 0, Vec::new(), Vec::new()),
    };
    let mut growing = run.history.growing(&rule);
    growing.truncate(top);
    let report = Report {
        pid: args.pid,
        interval_bytes: run.interval(),
        duration_seconds: duration,
        profiles: run.history.profiles(),
        live_bytes,
        growing,
        largest,
        interrupted,
    };
    Ok((report, pprof))
}

/// Takes a profile every `args.every` until the duration is over; `Ok(Some(why))` when a signal
/// ended it early.
async fn sample(run: &mut Run, args: &ProfileArgs) -> anyhow::Result<Option<String>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut next = tokio::time::Instant::now() + args.every;
    loop {
        // The last profile is the one stopSampling returns, at the deadline.
        let wake = next.min(deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = term.recv() => return Ok(Some("SIGTERM".into())),
            _ = int.recv() => return Ok(Some("SIGINT".into())),
        }
        if wake >= deadline {
            return Ok(None);
        }
        let profile = run.take().await?;
        tracing::debug!(pid = args.pid, nodes = profile.nodes.len(), live_bytes = profile.total_bytes(), "profile");
        next += args.every;
    }
}

pub(crate) fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pid {}: {} profiles over {:.0}s at one sample per {} bytes; {} live sampled",
        r.pid,
        r.profiles,
        r.duration_seconds,
        r.interval_bytes,
        bytes(r.live_bytes as f64)
    );
    if let Some(why) = &r.interrupted {
        let _ = writeln!(s, "ended early: {why}");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "A site is the innermost function of the app's code on the allocation's stack, at the line \
         where it is defined (V8 records functions, not statements; an inlined function counts as \
         its caller)."
    );
    let _ = writeln!(s);
    if r.growing.is_empty() {
        let _ = writeln!(s, "No allocation site grows.");
    }
    for (user, title) in [
        (true, "Growing allocation sites in the app's code (growth, live bytes allocated there and still alive):"),
        (false, "Growing allocation sites with no app frame on the stack (Node.js internals, native code):"),
    ] {
        let mut sites = r.growing.iter().filter(|g| g.user == user).peekable();
        if sites.peek().is_none() {
            continue;
        }
        let _ = writeln!(s, "{title}");
        for g in sites {
            let _ = writeln!(
                s,
                "  {:>10}/s  {:>10} live  {} ({})",
                bytes(g.growth_bytes_per_second),
                bytes(g.live_bytes as f64),
                g.function,
                g.location
            );
            for frame in g.stack.iter().skip(1) {
                let _ = writeln!(s, "{:38}called from {frame}", "");
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "Largest sites:");
    for site in &r.largest {
        let _ = writeln!(s, "  {:>10} live  {} ({})", bytes(site.live_bytes as f64), site.function, site.location);
    }
    s
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_growing_sites_with_their_callers() {
        let r = Report {
            pid: 7,
            interval_bytes: 131072,
            duration_seconds: 20.0,
            profiles: 5,
            live_bytes: 3 << 20,
            growing: vec![Growth {
                function: "remember".into(),
                url: "/srv/app.js".into(),
                line: 12,
                column: 1,
                location: "/srv/app.js:12".into(),
                user: true,
                stack: vec!["remember (/srv/app.js:12)".into(), "handle (/srv/app.js:30)".into()],
                live_bytes: 2 << 20,
                live_objects: 100.0,
                growth_bytes_per_second: 102400.0,
                profiles: 5,
            }],
            largest: vec![],
            interrupted: None,
        };
        let t = render_text(&r);
        assert!(t.contains("100.0 KiB/s"), "{t}");
        assert!(t.contains("remember (/srv/app.js:12)"), "{t}");
        assert!(t.contains("called from handle (/srv/app.js:30)"), "{t}");
        assert!(render_text(&Report { growing: vec![], ..r }).contains("No allocation site grows."));
    }
}
