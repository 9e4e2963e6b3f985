//! `nodejs-leak-exporter snapshot` (take one, to a file) and `nodejs-leak-exporter diff`
//! (compare two or three, as a table or JSON).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::capture::{self, CaptureSettings};
use super::diff::{self, DiffOptions};
use crate::collect::inspector::locate;
use crate::config::parse_duration;
use crate::connector::DirectConnector;

/// Arguments of `snapshot`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: nodejs-leak-exporter snapshot --pid 1234 --every 30m --out 0m.heapsnapshot --out 30m.heapsnapshot --out 60m.heapsnapshot\n\
    A snapshot stops the app's world while V8 walks its heap (seconds for a large heap) and holds \
    every string of the app, its secrets too: the file is created new with mode 0600. The process \
    needs an open inspector (node --inspect=127.0.0.1:0, or SIGUSR1)."
)]
pub struct SnapshotArgs {
    /// The Node.js process.
    #[arg(long, value_name = "PID")]
    pub pid: i32,

    /// The file to write; it must not exist. Repeat it for a series on one session, --every
    /// apart: only snapshots taken on one inspector session can be compared (V8 forgets its
    /// object ids when a session closes).
    #[arg(long, value_name = "FILE", required = true)]
    pub out: Vec<PathBuf>,

    /// Time from one snapshot's start to the next one's, with several --out.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30m")]
    pub every: Duration,

    /// Run a full garbage collection before each snapshot (HeapProfiler.collectGarbage).
    #[arg(long)]
    pub gc: bool,

    /// Largest snapshot written, in bytes; a larger one is abandoned and its file removed.
    #[arg(long = "max-size", value_name = "BYTES", default_value_t = 4 << 30)]
    pub max_size: u64,

    /// Time the whole snapshot may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,

    /// Time each small inspector call may take.
    #[arg(long = "inspector.call-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub call_timeout: Duration,

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  nodejs-leak-exporter diff start.heapsnapshot 30m.heapsnapshot\n  \
    nodejs-leak-exporter diff --retained start.heapsnapshot 30m.heapsnapshot 60m.heapsnapshot\n\
    Snapshots must be of one process (V8's object ids are per process). With three, objects \
    allocated after the first, alive in the second and still alive in the third are leaks.")]
pub struct DiffArgs {
    /// Two or three snapshots of one process, in the order taken.
    #[arg(value_name = "SNAPSHOT", num_args = 2..=3, required = true)]
    pub snapshots: Vec<PathBuf>,

    /// table or json.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Output::Table)]
    pub output: Output,

    /// Classes shown in the table (and given retainer paths).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Retained sizes from the dominator tree, and the retainer paths of sample new objects
    /// (needs about 1-1.3 times one snapshot file's size in memory; without it, under a quarter).
    #[arg(long)]
    pub retained: bool,

    /// Retainer paths per class, for the top classes (with --retained).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub samples: usize,
}

pub fn run_snapshot(args: &SnapshotArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let captured = runtime.block_on(async {
        let connector = DirectConnector;
        let inspector = locate::locate_inspector(
            &connector,
            &args.procfs,
            args.pid,
            &args.ports,
            &args.allowed_addresses,
            args.call_timeout.min(Duration::from_secs(5)),
        )
        .await?;
        tracing::info!(pid = args.pid, addr = %inspector.addr, "taking a heap snapshot (the app stops while V8 walks its heap)");
        let settings = CaptureSettings {
            gc: args.gc,
            max_bytes: args.max_size,
            timeout: args.timeout,
            call_timeout: args.call_timeout,
        };
        capture::capture(&connector, args.pid, &inspector, &args.out, args.every, settings, |c| {
            tracing::info!(
                path = %c.path.display(),
                bytes = c.bytes,
                chunks = c.chunks,
                seconds = format!("{:.2}", c.seconds),
                "heap snapshot written"
            );
        })
        .await
    })?;
    let _ = captured;
    Ok(())
}

pub fn run_diff(args: &DiffArgs) -> anyhow::Result<()> {
    let opts = DiffOptions { retained: args.retained, samples: args.samples, top: args.top };
    let report = diff::diff(&args.snapshots, opts)?;
    let text = match args.output {
        Output::Table => diff::render_text(&report, args.top),
        Output::Json => serde_json::to_string_pretty(&report).expect("a report serializes") + "\n",
    };
    std::io::stdout().write_all(text.as_bytes()).context("writing to standard output")?;
    Ok(())
}
