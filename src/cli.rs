//! Command-line flags, in the Prometheus exporters' dotted style. Flags override the
//! configuration file; `--[no-]collector.NAME` flags come from the collector table.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser};

use crate::collect::COLLECTORS;
use crate::config::{parse_duration, AppTemplate, Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "nodejs-leak-exporter",
    version,
    args_override_self = true,
    args_conflicts_with_subcommands = true,
    about = "Finds memory leaks in running Node.js processes from the outside and serves them to Prometheus.",
    long_about = "Finds memory leaks in running Node.js processes from the outside and serves them to Prometheus.\n\n\
        With no arguments it watches every Node.js process on the host and serves their memory at \
        http://0.0.0.0:19229/metrics, with a status page at /."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands; with none, the exporter runs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replay a trace (CSV of time,value or a Prometheus query_range answer) through the leak
    /// analysis and print the verdict over time.
    Analyze(crate::analyze::AnalyzeArgs),
    /// Start a bundled app with the three classic leaks and its fixed twin, drive traffic at
    /// both, and show which one leaks, on which signal and why (about two minutes).
    Demo(crate::demo::DemoArgs),
    /// Sample one process's live allocations for a while (V8's sampling heap profiler, over its
    /// inspector) and show which allocation sites keep growing, or write a pprof profile.
    Profile(crate::attribution::cli::ProfileArgs),
    /// Take a heap snapshot of a process over its inspector, streamed to a new 0600 file (stops
    /// the app's world while V8 walks its heap).
    Snapshot(crate::snapshot::cli::SnapshotArgs),
    /// Compare two or three heap snapshots of one process as DevTools' Comparison view does, per
    /// constructor; with three, the objects still alive in the third (memlab's leaks).
    Diff(crate::snapshot::cli::DiffArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML configuration file; flags given on the command line override it.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for metrics and the status page (host:port or :port).
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,

    /// Serve no metrics at the telemetry path, when they are pushed over OTLP instead (the status
    /// page and the health endpoints stay).
    #[arg(long = "web.disable-metrics", action = ArgAction::SetTrue)]
    pub disable_metrics: bool,

    /// Web configuration file of the Prometheus exporter-toolkit: TLS (with client certificates)
    /// and basic auth. Re-read when it or a certificate changes, and on SIGHUP.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Serve POST /-/reload, which reloads the configuration as SIGHUP does.
    #[arg(long = "web.enable-lifecycle", action = ArgAction::SetTrue)]
    pub enable_lifecycle: bool,

    /// Take heap snapshots on request (POST /api/v1/snapshot, an Alertmanager webhook at
    /// /api/v1/alertmanager) into this directory, created 0700. Off without it: a snapshot stops
    /// the app's world while V8 walks its heap, and holds the app's secrets.
    #[arg(long = "snapshot.dir", value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,

    /// Forward a firing heap alert for another node to the exporter that scraped it (the alert's
    /// instance label), passing on the request's credentials: for a DaemonSet behind one Service
    /// URL, where Alertmanager's webhook reaches a random pod.
    #[arg(long = "snapshot.forward", action = ArgAction::SetTrue)]
    pub snapshot_forward: bool,

    /// Push metrics over OTLP to this receiver: a base URL, http://collector:4318 for
    /// http/protobuf (/v1/metrics is appended), http://collector:4317 for grpc; https:// for TLS
    /// [default: OTEL_EXPORTER_OTLP_ENDPOINT; unset: no push].
    #[arg(long = "otlp.endpoint", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP protocol: grpc or http/protobuf [default: OTEL_EXPORTER_OTLP_PROTOCOL, else
    /// http/protobuf].
    #[arg(long = "otlp.protocol", value_name = "PROTOCOL", value_parser = crate::otlp::Protocol::parse)]
    pub otlp_protocol: Option<crate::otlp::Protocol>,

    /// Time between two OTLP pushes [default: OTEL_METRIC_EXPORT_INTERVAL, else 60s].
    #[arg(long = "otlp.interval", value_name = "DURATION", value_parser = parse_duration)]
    pub otlp_interval: Option<std::time::Duration>,

    /// Time one OTLP push may take [default: OTEL_EXPORTER_OTLP_TIMEOUT, else 10s].
    #[arg(long = "otlp.timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub otlp_timeout: Option<std::time::Duration>,

    /// Header sent with every OTLP push (repeatable). A command line is visible to every user of
    /// the host: put credentials in the configuration file or OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long = "otlp.header", value_name = "NAME=VALUE", value_parser = crate::otlp::settings::parse_header_flag)]
    pub otlp_headers: Vec<(String, String)>,

    /// PEM file of the CA that signs the OTLP receiver's certificate [default: the system's roots].
    #[arg(long = "otlp.ca-file", value_name = "FILE")]
    pub otlp_ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS with the OTLP receiver (with --otlp.key-file).
    #[arg(long = "otlp.cert-file", value_name = "FILE")]
    pub otlp_cert_file: Option<PathBuf>,

    /// PEM private key of --otlp.cert-file.
    #[arg(long = "otlp.key-file", value_name = "FILE")]
    pub otlp_key_file: Option<PathBuf>,

    /// procfs mount point (e.g. /host/proc in a container watching its host).
    #[arg(long = "path.procfs", value_name = "DIR")]
    pub procfs: Option<PathBuf>,

    /// sysfs mount point; cgroups are read under <sysfs>/fs/cgroup.
    #[arg(long = "path.sysfs", value_name = "DIR")]
    pub sysfs: Option<PathBuf>,

    /// Root filesystem of the host, for user names from <rootfs>/etc/passwd.
    #[arg(long = "path.rootfs", value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Time between two samples of every target [default: 5s].
    #[arg(long = "sample.interval", value_name = "DURATION", value_parser = parse_duration)]
    pub sample_interval: Option<std::time::Duration>,

    /// Watch this process whatever it looks like and whatever its age (repeatable).
    #[arg(long = "discovery.pid", value_name = "PID")]
    pub pids: Vec<i32>,

    /// Processes younger than this are not exported [default: 5s].
    #[arg(long = "discovery.min-age", value_name = "DURATION", value_parser = parse_duration)]
    pub min_age: Option<std::time::Duration>,

    /// How long the series of an exited process stay exported [default: 1m].
    #[arg(long = "discovery.exit-retention", value_name = "DURATION", value_parser = parse_duration)]
    pub exit_retention: Option<std::time::Duration>,

    /// App name template for processes not under PM2, e.g. "{script_dir}-{script}"
    /// (variables: comm, exe, script, script_dir, user) [default: the main script's base name].
    #[arg(long = "discovery.app-template", value_name = "TEMPLATE", value_parser = AppTemplate::parse)]
    pub app_template: Option<AppTemplate>,

    /// Read PSS from smaps_rollup (can stall a process with a large heap while the kernel walks it).
    #[arg(long = "collector.procfs.pss", action = ArgAction::SetTrue)]
    pub pss: bool,

    /// Send SIGUSR1 to Node.js processes without an inspector so they open one on loopback
    /// (off by default: see the README for the risks).
    #[arg(long = "inspector.activate", action = ArgAction::SetTrue)]
    pub inspector_activate: bool,

    /// Loopback port to probe for inspectors (repeatable), e.g. in a sidecar that sees no sockets.
    #[arg(long = "inspector.port", value_name = "PORT")]
    pub inspector_ports: Vec<u16>,

    /// Connect to inspectors inside each process's own network namespace (a pod's loopback);
    /// needs CAP_SYS_ADMIN, and CAP_SYS_PTRACE for other users' processes.
    #[arg(long = "inspector.enter-netns", action = ArgAction::SetTrue)]
    pub inspector_enter_netns: bool,

    /// Address besides loopback the exporter may connect to for inspectors (repeatable).
    #[arg(long = "inspector.allow-address", value_name = "IP")]
    pub inspector_allowed: Vec<std::net::IpAddr>,

    /// Time for one inspector protocol call to answer [default: 2s].
    #[arg(long = "inspector.call-timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub inspector_call_timeout: Option<std::time::Duration>,

    /// Log file glob to follow for warnings and heap-OOM crashes (repeatable); `APP=GLOB` names
    /// the app, else it comes from the file name.
    #[arg(long = "log.path", value_name = "GLOB")]
    pub log_paths: Vec<String>,

    /// Where to start in log files already there at start: end or beginning [default: end].
    #[arg(long = "log.start-at", value_name = "WHERE", value_parser = ["end", "beginning"])]
    pub log_start_at: Option<String>,

    /// Time between two reads of every followed log file [default: 1s].
    #[arg(long = "log.poll-interval", value_name = "DURATION", value_parser = parse_duration)]
    pub log_poll_interval: Option<std::time::Duration>,

    /// Window over which leak growth is estimated (repeatable) [default: 15m, 1h, 6h].
    #[arg(long = "leak.window", value_name = "DURATION", value_parser = parse_duration)]
    pub leak_windows: Vec<std::time::Duration>,

    /// Warm-up after a process starts (and after an inspector first opens on it) that raises no
    /// leak verdict [default: 10m].
    #[arg(long = "leak.grace-period", value_name = "DURATION", value_parser = parse_duration)]
    pub leak_grace_period: Option<std::time::Duration>,

    /// Log level: error, warn, info, debug, trace.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    /// Log format: text (human-readable; `logfmt` is accepted as a synonym) or json.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "text", value_parser = ["text", "logfmt", "json"], global = true)]
    pub log_format: String,
}

/// Parsed flags plus the collector switches given on the command line.
pub struct Parsed {
    pub cli: Cli,
    pub collector_switches: Vec<(&'static str, bool)>,
}

/// Builds the full command, with one `--collector.NAME` / `--no-collector.NAME` pair per
/// collector in the table.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for spec in COLLECTORS {
        let default = if spec.default_enabled { "enabled" } else { "disabled" };
        cmd = cmd
            .arg(
                Arg::new(format!("collector.{}", spec.name))
                    .long(format!("collector.{}", spec.name))
                    .action(ArgAction::SetTrue)
                    .help(format!("Enable the {} collector: {} [default: {default}]", spec.name, spec.help)),
            )
            .arg(
                Arg::new(format!("no-collector.{}", spec.name))
                    .long(format!("no-collector.{}", spec.name))
                    .action(ArgAction::SetTrue)
                    .overrides_with(format!("collector.{}", spec.name))
                    .help(format!("Disable the {} collector", spec.name)),
            );
    }
    cmd
}

pub fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    from_matches(&matches)
}

fn from_matches(matches: &ArgMatches) -> Result<Parsed, clap::Error> {
    let cli = Cli::from_arg_matches(matches)?;
    let mut collector_switches = Vec::new();
    for spec in COLLECTORS {
        if matches.get_flag(&format!("collector.{}", spec.name)) {
            collector_switches.push((spec.name, true));
        }
        if matches.get_flag(&format!("no-collector.{}", spec.name)) {
            collector_switches.push((spec.name, false));
        }
    }
    Ok(Parsed { cli, collector_switches })
}

impl Parsed {
    /// Loads the configuration file (if any), lays the flags over it and validates the result.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let a = &self.cli.run;
        let mut c = match &a.config_file {
            Some(path) => {
                let mut c = Config::from_file(path)?;
                // As the exporter-toolkit resolves the paths in a web config file.
                if let (Some(web), Some(dir)) = (&c.web.config_file, path.parent()) {
                    if web.is_relative() {
                        c.web.config_file = Some(dir.join(web));
                    }
                }
                c
            }
            None => Config::default(),
        };
        if let Some(v) = &a.listen_address {
            c.web.listen_address = v.clone();
        }
        if let Some(v) = &a.telemetry_path {
            c.web.telemetry_path = v.clone();
        }
        if a.disable_metrics {
            c.web.disable_metrics = true;
        }
        if let Some(v) = &a.web_config_file {
            c.web.config_file = Some(v.clone());
        }
        if a.enable_lifecycle {
            c.web.enable_lifecycle = true;
        }
        if let Some(v) = &a.snapshot_dir {
            c.snapshots.dir = Some(v.clone());
        }
        if a.snapshot_forward {
            c.snapshots.forward = true;
        }
        self.lay_otlp_flags(&mut c);
        if let Some(v) = &a.procfs {
            c.paths.procfs = v.clone();
        }
        if let Some(v) = &a.sysfs {
            c.paths.sysfs = v.clone();
        }
        if let Some(v) = &a.rootfs {
            c.paths.rootfs = v.clone();
        }
        if let Some(v) = a.sample_interval {
            c.sample.interval = v;
        }
        if !a.pids.is_empty() {
            c.discovery.pids = a.pids.clone();
        }
        if let Some(v) = a.min_age {
            c.discovery.min_age = v;
        }
        if let Some(v) = a.exit_retention {
            c.discovery.exit_retention = v;
        }
        if let Some(v) = &a.app_template {
            c.discovery.app_template = Some(v.clone());
        }
        if a.pss {
            c.collectors.procfs.pss = true;
        }
        if a.inspector_activate {
            c.collectors.inspector.activate = true;
        }
        if !a.inspector_ports.is_empty() {
            c.collectors.inspector.ports = a.inspector_ports.clone();
        }
        if a.inspector_enter_netns {
            c.collectors.inspector.enter_netns = true;
        }
        if !a.inspector_allowed.is_empty() {
            c.collectors.inspector.allowed_addresses = a.inspector_allowed.clone();
        }
        if let Some(v) = a.inspector_call_timeout {
            c.collectors.inspector.call_timeout = v;
        }
        for p in &a.log_paths {
            let (app, path) = match p.split_once('=') {
                Some((app, path)) if !app.contains('/') && !app.contains('*') => {
                    (Some(app.to_string()), path.to_string())
                }
                _ => (None, p.clone()),
            };
            c.collectors.logs.paths.push(crate::config::LogPath { path, app });
        }
        if !a.leak_windows.is_empty() {
            c.leak.windows = a.leak_windows.clone();
        }
        if let Some(v) = a.leak_grace_period {
            c.leak.grace_period = v;
        }
        if let Some(v) = a.log_poll_interval {
            c.collectors.logs.poll_interval = v;
        }
        match a.log_start_at.as_deref() {
            Some("beginning") => c.collectors.logs.start_at = crate::config::StartAt::Beginning,
            Some(_) => c.collectors.logs.start_at = crate::config::StartAt::End,
            None => {}
        }
        for (name, enabled) in &self.collector_switches {
            if let Some(spec) = COLLECTORS.iter().find(|s| s.name == *name) {
                spec.set_enabled(&mut c, *enabled);
            }
        }
        c.validate()?;
        Ok(c)
    }

    fn lay_otlp_flags(&self, c: &mut Config) {
        let a = &self.cli.run;
        let o = &mut c.otlp;
        if let Some(v) = &a.otlp_endpoint {
            o.endpoint = Some(v.clone());
        }
        if let Some(v) = a.otlp_protocol {
            o.protocol = Some(v);
        }
        if let Some(v) = a.otlp_interval {
            o.interval = Some(v);
        }
        if let Some(v) = a.otlp_timeout {
            o.timeout = Some(v);
        }
        for (k, v) in &a.otlp_headers {
            o.headers.insert(k.clone(), v.clone());
        }
        for (flag, field) in [
            (&a.otlp_ca_file, &mut o.ca_file),
            (&a.otlp_cert_file, &mut o.cert_file),
            (&a.otlp_key_file, &mut o.key_file),
        ] {
            if let Some(v) = flag {
                *field = Some(v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn flags_override_the_file_and_collectors_toggle() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(&file, "sample:\n  interval: 10s\ncollectors:\n  cgroup:\n    enabled: false\n").unwrap();
        let p = parse_from([
            "x",
            "--config.file",
            file.to_str().unwrap(),
            "--sample.interval=1s",
            "--collector.cgroup",
            "--no-collector.procfs",
            "--discovery.pid=42",
        ])
        .unwrap();
        let c = p.config().unwrap();
        assert_eq!(c.sample.interval, std::time::Duration::from_secs(1));
        assert!(c.collectors.cgroup.enabled);
        assert!(!c.collectors.procfs.enabled);
        assert_eq!(c.discovery.pids, vec![42]);
    }

    #[test]
    fn entering_network_namespaces_is_opt_in() {
        assert!(!parse_from(["x"]).unwrap().config().unwrap().collectors.inspector.enter_netns);
        let p = parse_from(["x", "--inspector.enter-netns"]).unwrap();
        assert!(p.config().unwrap().collectors.inspector.enter_netns);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(&file, "collectors:\n  inspector:\n    enter_netns: true\n").unwrap();
        let p = parse_from(["x", "--config.file", file.to_str().unwrap()]).unwrap();
        assert!(p.config().unwrap().collectors.inspector.enter_netns);
    }

    #[test]
    fn otlp_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(&file, "otlp:\n  endpoint: http://file:4318\n  interval: 30s\n  headers:\n    x-a: file\n")
            .unwrap();
        let p = parse_from([
            "x",
            "--config.file",
            file.to_str().unwrap(),
            "--otlp.endpoint=http://flag:4317",
            "--otlp.protocol=grpc",
            "--otlp.header=x-a=flag",
            "--otlp.header=x-b=b",
            "--web.disable-metrics",
        ])
        .unwrap();
        let c = p.config().unwrap();
        assert_eq!(c.otlp.endpoint.as_deref(), Some("http://flag:4317"));
        assert_eq!(c.otlp.protocol, Some(crate::otlp::Protocol::Grpc));
        assert_eq!(c.otlp.interval, Some(std::time::Duration::from_secs(30)));
        assert_eq!(c.otlp.headers.get("x-a").map(String::as_str), Some("flag"));
        assert_eq!(c.otlp.headers.len(), 2);
        assert!(c.web.disable_metrics);
        assert!(parse_from(["x", "--otlp.protocol=http/json"]).is_err());
        assert!(parse_from(["x", "--otlp.header=nonsense"]).is_err());
        let p = parse_from(["x", "--otlp.endpoint=collector:4317"]).unwrap();
        assert!(p.config().unwrap_err().to_string().starts_with("otlp.endpoint"));
    }

    #[test]
    fn forwarding_alerts_is_opt_in_from_the_file_or_the_flag() {
        assert!(!parse_from(["x"]).unwrap().config().unwrap().snapshots.forward);
        let p = parse_from(["x", "--snapshot.dir=/tmp/s", "--snapshot.forward"]).unwrap();
        assert!(p.config().unwrap().snapshots.forward);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(&file, "snapshots:\n  forward: true\n  forward_timeout: 3s\n").unwrap();
        let c = parse_from(["x", "--config.file", file.to_str().unwrap()]).unwrap().config().unwrap();
        assert!(c.snapshots.forward);
        assert_eq!(c.snapshots.forward_timeout, std::time::Duration::from_secs(3));
    }

    #[test]
    fn bad_flag_values_are_rejected() {
        assert!(parse_from(["x", "--sample.interval=soon"]).is_err());
        assert!(parse_from(["x", "--discovery.app-template={bogus}"]).is_err());
        let p = parse_from(["x", "--web.listen-address=nowhere"]).unwrap();
        assert!(p.config().unwrap_err().to_string().starts_with("web.listen_address"));
    }
}
