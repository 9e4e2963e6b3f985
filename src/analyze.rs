//! `nodejs-leak-exporter analyze FILE`: replays a trace through the leak analysis and prints the
//! verdict over time.

use std::path::PathBuf;

/// Arguments of `analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Trace file: CSV (time,value or a header naming the columns) or a Prometheus query_range answer (JSON).
    pub file: PathBuf,
}

pub fn run(_args: &AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::bail!("analyze: not implemented yet")
}
