//! `nodejs-leak-exporter demo`: a bundled leaky app and its fixed twin, driven and watched.

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub fn run(_args: &DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("demo: not implemented yet")
}
