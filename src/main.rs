use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let mut parsed = match nodejs_leak_exporter::cli::parse_from(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => e.exit(),
    };
    let args = &parsed.cli.run;
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    use nodejs_leak_exporter::cli::Command;
    let result = match parsed.cli.command.take() {
        None => nodejs_leak_exporter::app::run(parsed),
        Some(Command::Analyze(a)) => nodejs_leak_exporter::analyze::run(&a),
        Some(Command::Demo(d)) => nodejs_leak_exporter::demo::run(&d),
        Some(Command::Profile(p)) => nodejs_leak_exporter::attribution::cli::run(&p),
        Some(Command::Snapshot(s)) => nodejs_leak_exporter::snapshot::cli::run_snapshot(&s),
        Some(Command::Diff(d)) => nodejs_leak_exporter::snapshot::cli::run_diff(&d),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodejs-leak-exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}
