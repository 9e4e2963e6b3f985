//! Configuration: the YAML file (`--config.file`) parsed into typed structs, then command-line
//! flags laid over it, then validated once at start.
//!
//! Everything that can be checked while deserializing (regexes, durations, templates, user names)
//! is checked there, so the error carries the field path and the line of the file. This module does
//! no I/O besides reading the file it is given.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};

/// The default `--web.listen-address`. 19229 lies outside the Prometheus default-port block
/// (9100-9999, full since 2023, and its 10000+ continuation) and below the Linux ephemeral port
/// range; its tail recalls the inspector's 9229.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":19229";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// The whole configuration file. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP endpoint that serves metrics and the status page.
    pub web: WebConfig,
    /// Where the host's pseudo-filesystems are mounted.
    pub paths: PathsConfig,
    /// How often targets are read.
    pub sample: SampleConfig,
    /// Which processes are watched and how they are named.
    pub discovery: DiscoveryConfig,
    /// Per-collector switches and options.
    pub collectors: CollectorsConfig,
    /// The leak analysis: growth windows and the warm-up grace period.
    pub leak: LeakConfig,
    /// Pushing the same readings over OTLP (see `crate::otlp::OtlpConfig`).
    pub otlp: crate::otlp::OtlpConfig,
    /// Heap snapshots on request, over HTTP or from an Alertmanager webhook (off unless `dir`).
    pub snapshots: SnapshotsConfig,
}

/// The heap leak alerts a webhook takes a snapshot for, by default.
pub const DEFAULT_SNAPSHOT_ALERTS: [&str; 3] =
    ["NodejsHeapLeak", "NodejsHeapExhaustionSoon", "NodejsHeapExhaustionAhead"];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsConfig {
    /// Where snapshots are written (created `0700` if missing); unset, the feature is off
    /// (`--snapshot.dir`). A snapshot stops the app's world while V8 walks its heap, and holds
    /// every string of the app, its secrets too.
    pub dir: Option<PathBuf>,
    /// Snapshots kept in `dir`; the oldest are removed to make room for a new one.
    pub max_files: usize,
    /// Bytes all snapshots in `dir` may take together; the oldest are removed to make room, and a
    /// snapshot that would pass it is abandoned.
    pub max_bytes: u64,
    /// Run a full garbage collection before each snapshot.
    pub gc: bool,
    /// Time one snapshot may take.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// This exporter's node, matched against an alert's `node` label (or its `instance`'s host)
    /// so that in a DaemonSet only the pod on the alert's node acts. Default: the `NODE_NAME`
    /// environment variable if set, else the host name.
    pub node_name: Option<String>,
    /// Alert names a webhook takes a snapshot for (other alerts are ignored).
    pub alerts: Vec<String>,
    /// Forward a firing heap alert for another node to the exporter that scraped it (the alert's
    /// `instance`), for a DaemonSet behind one Service URL where Alertmanager's webhook reaches a
    /// random pod (`--snapshot.forward`). Off: such alerts are only counted as `other_node`.
    pub forward: bool,
    /// Time one forward may take, connecting included; the webhook's answer waits for the
    /// forwards, which run side by side.
    #[serde(deserialize_with = "de_duration")]
    pub forward_timeout: Duration,
    /// PEM file of a CA trusted for the other exporters' certificates when the listener speaks
    /// TLS, on top of the system's roots. The certificate must still name the address forwarded to
    /// (the alert's `instance`: a pod IP, or the node IP with `hostNetwork`).
    pub forward_ca_file: Option<PathBuf>,
    /// The name the other exporters' certificates are checked against (and sent as SNI) instead
    /// of the address forwarded to: the Service's DNS name when every pod serves one certificate
    /// for it, as cert-manager issues them. The connection still goes to the alert's `instance`.
    pub forward_server_name: Option<String>,
    /// Accept any certificate from the other exporters: the forward (with the request's
    /// credentials) is still encrypted but not authenticated, so anyone who can take over a pod IP
    /// on the path receives them. An explicit opt-in for certificates that cannot name pod IPs.
    pub forward_insecure_skip_verify: bool,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        SnapshotsConfig {
            dir: None,
            max_files: 10,
            max_bytes: 4 << 30,
            gc: false,
            timeout: Duration::from_secs(600),
            node_name: None,
            alerts: DEFAULT_SNAPSHOT_ALERTS.iter().map(|s| s.to_string()).collect(),
            forward: false,
            forward_timeout: Duration::from_secs(10),
            forward_ca_file: None,
            forward_server_name: None,
            forward_insecure_skip_verify: false,
        }
    }
}

impl SnapshotsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(invalid("snapshots.dir", "must not be empty (leave it out to turn snapshots off)"));
        }
        if !(1..=1000).contains(&self.max_files) {
            return Err(invalid("snapshots.max_files", "must be between 1 and 1000"));
        }
        if self.max_bytes < 1 << 20 {
            return Err(invalid("snapshots.max_bytes", "must be at least 1 MiB (1048576)"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(6 * 3600)).contains(&self.timeout) {
            return Err(invalid("snapshots.timeout", "must be between 1s and 6h"));
        }
        if self.node_name.as_ref().is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid(
                "snapshots.node_name",
                "must not be empty (leave it out for NODE_NAME or the host name)",
            ));
        }
        if let Some(i) = self.alerts.iter().position(|a| a.trim().is_empty()) {
            return Err(invalid(format!("snapshots.alerts[{i}]"), "an empty alert name"));
        }
        // Alertmanager waits for the answer, which waits for the forwards.
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.forward_timeout) {
            return Err(invalid("snapshots.forward_timeout", "must be between 100ms and 1m"));
        }
        if self.forward_ca_file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            return Err(invalid(
                "snapshots.forward_ca_file",
                "must not be empty (leave it out for the system's roots)",
            ));
        }
        if let Some(name) = &self.forward_server_name {
            if !crate::snapshot::forward::is_dns_name(name) {
                return Err(invalid("snapshots.forward_server_name", "must be a DNS name, such as the Service's"));
            }
            if self.forward_insecure_skip_verify {
                return Err(invalid(
                    "snapshots.forward_server_name",
                    "set together with forward_insecure_skip_verify, which would not check it",
                ));
            }
        }
        if self.forward_ca_file.is_some() && self.forward_insecure_skip_verify {
            return Err(invalid(
                "snapshots.forward_ca_file",
                "set together with forward_insecure_skip_verify, which would ignore it",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeakConfig {
    /// Windows over which growth is estimated, each a metric `window` label (`15m`, `1h`, `6h`).
    /// Short windows flag fast leaks early; long ones see slow leaks and ride out long GC cycles.
    #[serde(deserialize_with = "de_durations")]
    pub windows: Vec<Duration>,
    /// Warm-up after a process starts, and after an inspector is first opened on it (for the
    /// heap), during which no verdict is raised: caches fill and code is compiled.
    #[serde(deserialize_with = "de_duration")]
    pub grace_period: Duration,
}

impl Default for LeakConfig {
    fn default() -> Self {
        LeakConfig {
            windows: vec![Duration::from_secs(15 * 60), Duration::from_secs(3600), Duration::from_secs(6 * 3600)],
            grace_period: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address to listen on, `host:port` or `:port` for all interfaces.
    pub listen_address: String,
    /// Path under which metrics are served.
    pub telemetry_path: String,
    /// Serve no metrics at the telemetry path (when they are pushed over OTLP instead); the
    /// status page, `/api/v1/targets` and the health endpoints stay.
    pub disable_metrics: bool,
    /// The exporter-toolkit web configuration file: TLS and basic auth (`crate::web`). A
    /// relative path is taken from this file's directory.
    pub config_file: Option<PathBuf>,
    /// Serve `POST /-/reload`, which reloads the configuration as SIGHUP does.
    pub enable_lifecycle: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: DEFAULT_LISTEN_ADDRESS.into(),
            telemetry_path: "/metrics".into(),
            disable_metrics: false,
            config_file: None,
            enable_lifecycle: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// procfs mount point (`/host/proc` in a container watching its host).
    pub procfs: PathBuf,
    /// sysfs mount point; cgroups are read under `<sysfs>/fs/cgroup`.
    pub sysfs: PathBuf,
    /// Root filesystem of the host; user names are read from `<rootfs>/etc/passwd`.
    pub rootfs: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig { procfs: "/proc".into(), sysfs: "/sys".into(), rootfs: "/".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// Time between two samples of every target. Scrapes serve the latest sample.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig { interval: Duration::from_secs(5) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Processes watched whatever they look like (no matcher, no minimum age).
    pub pids: Vec<i32>,
    /// A process is a candidate when any of these matches. Default: a node executable.
    pub include: Vec<Matcher>,
    /// ... and is left out when any of these matches. Default: the PM2 daemon and package-manager
    /// or file-watcher wrappers (npm, npx, yarn, pnpm, nodemon, pm2's CLI, corepack).
    pub exclude: Vec<Matcher>,
    /// Processes younger than this are not exported, so short-lived scripts do not flood Prometheus.
    #[serde(deserialize_with = "de_duration")]
    pub min_age: Duration,
    /// How long the last series of an exited process stay exported.
    #[serde(deserialize_with = "de_duration")]
    pub exit_retention: Duration,
    /// How to name a process that does not run under PM2, e.g. `"{script_dir}/{script}"`.
    /// Default: the main script's base name.
    pub app_template: Option<AppTemplate>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            pids: Vec::new(),
            include: default_include(),
            exclude: default_exclude(),
            min_age: Duration::from_secs(5),
            exit_retention: Duration::from_secs(60),
            app_template: None,
        }
    }
}

/// Matches `node`, `nodejs` and versioned binaries such as `node20` or `node-20`.
pub const NODE_NAME_PATTERN: &str = r"^node(js)?(-?[0-9]+)?$";

fn default_include() -> Vec<Matcher> {
    vec![Matcher { name: Some(Pattern::new(NODE_NAME_PATTERN).expect("valid")), ..Matcher::default() }]
}

fn default_exclude() -> Vec<Matcher> {
    let pattern = |re: &str| Some(Pattern::new(re).expect("valid"));
    vec![
        // PM2 renames its daemon "PM2 vX.Y.Z: God Daemon (/home/u/.pm2)".
        Matcher { cmdline: pattern(r"^PM2 v\S+: God Daemon"), ..Matcher::default() },
        // Wrappers set process.title to their own name or run a well-known entry script.
        Matcher { comm: pattern(r"^(npm|npx|yarn|pnpm|nodemon|pm2|corepack)( .*)?$"), ..Matcher::default() },
        Matcher {
            script: pattern(
                r"^(npm-cli\.js|npx-cli\.js|yarn\.c?js|pnpm\.c?js|nodemon(\.js)?|pm2|corepack(\.c?js)?|npm|npx|yarn|pnpm)$",
            ),
            ..Matcher::default()
        },
    ]
}

/// One process matcher: every field given must match (fields left out match anything).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Regex on the executable's base name, `comm` or `argv[0]`'s base name: any of the three.
    pub name: Option<Pattern>,
    /// Regex on `comm` (the 15-character thread name, which `process.title` changes).
    pub comm: Option<Pattern>,
    /// Regex on the executable's full path (readable for the same user or with CAP_SYS_PTRACE).
    pub exe: Option<Pattern>,
    /// Regex on the command line, arguments joined by spaces. Named groups are available to
    /// `app` as `{match.NAME}`. The command line itself is never exported.
    pub cmdline: Option<Pattern>,
    /// Regex on the main script's base name (`server.js`).
    pub script: Option<Pattern>,
    /// The owning user, by name or numeric uid.
    pub user: Option<UserSpec>,
    /// App name template for processes this matcher includes (overrides `app_template`).
    pub app: Option<AppTemplate>,
}

impl Matcher {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.comm.is_none()
            && self.exe.is_none()
            && self.cmdline.is_none()
            && self.script.is_none()
            && self.user.is_none()
    }
}

/// A compiled regex that deserializes from a string and reports a bad pattern with its position.
#[derive(Clone)]
pub struct Pattern(pub Regex);

impl Pattern {
    pub fn new(re: &str) -> Result<Self, regex::Error> {
        Regex::new(re).map(Pattern)
    }
    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(|e| {
            // The regex crate's message spans lines (pattern, caret, error); keep the error line.
            let text = e.to_string();
            let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim_start_matches("error: ");
            serde::de::Error::custom(format!("invalid regex {s:?}: {reason}"))
        })
    }
}

/// A user given by name or uid; names are resolved against the passwd file when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    Uid(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for UserSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Uid(u32),
            Name(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Uid(uid) => UserSpec::Uid(uid),
            Raw::Name(name) => match name.parse::<u32>() {
                Ok(uid) => UserSpec::Uid(uid),
                Err(_) if name.is_empty() => return Err(serde::de::Error::custom("empty user name")),
                Err(_) => UserSpec::Name(name),
            },
        })
    }
}

/// An app name template such as `"{script_dir}-{script}"`. Variables: `comm`, `exe` (base name),
/// `script` (base name), `script_dir` (base name of the script's directory), `user`, and
/// `match.NAME` for a named group of the matcher's `cmdline` regex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Var(TemplateVar),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateVar {
    Comm,
    Exe,
    Script,
    ScriptDir,
    User,
    Match(String),
}

impl AppTemplate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' in template {s:?}"))? + open;
            let name = &rest[open + 1..close];
            let var = match name {
                "comm" => TemplateVar::Comm,
                "exe" => TemplateVar::Exe,
                "script" => TemplateVar::Script,
                "script_dir" => TemplateVar::ScriptDir,
                "user" => TemplateVar::User,
                _ => match name.strip_prefix("match.") {
                    Some(group) if !group.is_empty() => TemplateVar::Match(group.to_string()),
                    _ => {
                        return Err(format!(
                        "unknown template variable {{{name}}}; known: comm, exe, script, script_dir, user, match.NAME"
                    ))
                    }
                },
            };
            parts.push(TemplatePart::Var(var));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in template {s:?}"));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        if parts.is_empty() {
            return Err("empty template".into());
        }
        Ok(AppTemplate { parts })
    }

    /// Renders the template; `lookup` answers each variable (empty when unknown).
    pub fn render(&self, lookup: impl Fn(&TemplateVar) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Var(v) => out.push_str(&lookup(v)),
            }
        }
        out
    }

    pub fn match_groups(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Var(TemplateVar::Match(g)) => Some(g.as_str()),
            _ => None,
        })
    }
}

impl<'de> Deserialize<'de> for AppTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AppTemplate::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorsConfig {
    /// Process memory, CPU, fds, sockets and threads from /proc.
    pub procfs: ProcfsCollectorConfig,
    /// Memory limit, usage and OOM kills of each process's cgroup.
    pub cgroup: ToggleConfig,
    /// Namespace, pod and container of each process in a Kubernetes container, from its cgroup
    /// and the kubelet's log file names.
    pub kubernetes: ToggleConfig,
    /// V8 heap, GC and warnings through the Node.js inspector.
    pub inspector: InspectorConfig,
    /// Warnings and heap-OOM crashes from log files.
    pub logs: LogsConfig,
    /// Which code allocated the memory that stays alive, while a process's heap leaks.
    pub attribution: crate::attribution::collector::AttributionConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// Log files to follow: path globs, each with an optional app name.
    pub paths: Vec<LogPath>,
    /// Follow PM2's logs where PM2 keeps them (`~/.pm2/logs/*.log` of root and of /home/*).
    pub pm2: bool,
    /// Follow Kubernetes container logs (`/var/log/containers/*.log`).
    pub kubernetes: bool,
    /// Where to start in files already there at start: `end` (only what is new) or `beginning`.
    /// Files that appear later are always read from their start.
    pub start_at: StartAt,
    /// Longest line kept; a longer line keeps its head (where Node.js's messages are).
    pub max_line_bytes: usize,
    /// Time between two reads of every file.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            paths: Vec::new(),
            pm2: true,
            kubernetes: true,
            start_at: StartAt::End,
            max_line_bytes: 64 * 1024,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// One log path glob.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPath {
    /// A glob such as `/var/log/myapp/*.log`.
    pub path: String,
    /// The app the lines belong to; default: from the file name.
    pub app: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    End,
    Beginning,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectorConfig {
    /// Whether the collector runs. It only reads processes whose inspector is open.
    pub enabled: bool,
    /// Send SIGUSR1 to Node.js processes without an inspector so they open one on loopback.
    /// Off by default: see the README for the risks (port 9229 collisions, apps that handle
    /// SIGUSR1, the memory an open inspector costs).
    pub activate: bool,
    /// Loopback ports to probe for inspectors besides those found from flags and sockets (a
    /// sidecar without ptrace rights sees no sockets of the app).
    pub ports: Vec<u16>,
    /// Open inspector connections inside the process's own network namespace when it is not the
    /// exporter's (a pod's inspector listens on the pod's loopback). Needs `CAP_SYS_ADMIN` to
    /// enter the namespace, and `CAP_SYS_PTRACE` to open another user's `/proc/PID/ns/net`.
    pub enter_netns: bool,
    /// Addresses besides loopback the exporter may connect to. The inspector runs code in the
    /// process: keep this empty unless the network path is private.
    pub allowed_addresses: Vec<IpAddr>,
    /// Time to connect and to open the WebSocket.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Time for one protocol call to answer.
    #[serde(deserialize_with = "de_duration")]
    pub call_timeout: Duration,
    /// Longest pause between reconnection attempts (the pause doubles from 1s).
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// Distinct values per label taken from an app (warning names, events, emitter and resource
    /// types); further values count under `other`.
    pub label_limit: usize,
}

impl Default for InspectorConfig {
    fn default() -> Self {
        InspectorConfig {
            enabled: true,
            activate: false,
            ports: Vec::new(),
            enter_netns: false,
            allowed_addresses: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            label_limit: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToggleConfig {
    /// Whether the collector runs.
    pub enabled: bool,
}

impl Default for ToggleConfig {
    fn default() -> Self {
        ToggleConfig { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcfsCollectorConfig {
    /// Whether the collector runs.
    pub enabled: bool,
    /// Read PSS from `smaps_rollup`. Off by default: the kernel walks every page table of the
    /// process under its mm lock, which can stall a process with a large heap for seconds.
    pub pss: bool,
}

impl Default for ProcfsCollectorConfig {
    fn default() -> Self {
        ProcfsCollectorConfig { enabled: true, pss: false }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter().map(|s| parse_duration(s).map_err(serde::de::Error::custom)).collect()
}

/// Parses a duration the way Prometheus writes them: `500ms`, `5s`, `1m`, `6h`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 500ms, 5s, 1m, 6h)"))
}

impl Config {
    /// Reads and parses a YAML file. Errors name the field path and the line.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_yaml(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        yaml_serde::from_str::<Config>(text).map_err(|e| e.to_string())
    }

    /// Checks what deserialization cannot: cross-field rules and values out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_listen_address(&self.web.listen_address).map_err(|m| invalid("web.listen_address", m))?;
        if !self.web.telemetry_path.starts_with('/') || self.web.telemetry_path.len() < 2 {
            return Err(invalid("web.telemetry_path", "must start with '/' and not be '/' (the status page)"));
        }
        if ["/-/healthy", "/-/ready", "/-/reload", "/api/v1/targets"].contains(&self.web.telemetry_path.as_str()) {
            return Err(invalid("web.telemetry_path", "collides with a built-in endpoint"));
        }
        if self.sample.interval < Duration::from_millis(100) || self.sample.interval > Duration::from_secs(3600) {
            return Err(invalid("sample.interval", "must be between 100ms and 1h"));
        }
        let i = &self.collectors.inspector;
        for (field, d) in
            [("connect_timeout", i.connect_timeout), ("call_timeout", i.call_timeout), ("max_backoff", i.max_backoff)]
        {
            if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
                return Err(invalid(format!("collectors.inspector.{field}"), "must be between 10ms and 1h"));
            }
        }
        if !(1..=1000).contains(&i.label_limit) {
            return Err(invalid("collectors.inspector.label_limit", "must be between 1 and 1000"));
        }
        if let Some(p) = i.ports.iter().find(|p| **p == 0) {
            return Err(invalid("collectors.inspector.ports", format!("{p} is not a port")));
        }
        self.collectors.attribution.validate().map_err(|(field, message)| invalid(field, message))?;
        let l = &self.collectors.logs;
        for (i, p) in l.paths.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(&p.path) {
                return Err(invalid(format!("collectors.logs.paths[{i}].path"), format!("invalid glob: {e}")));
            }
        }
        if !(1024..=16 << 20).contains(&l.max_line_bytes) {
            return Err(invalid("collectors.logs.max_line_bytes", "must be between 1 KiB and 16 MiB"));
        }
        if l.poll_interval < Duration::from_millis(50) || l.poll_interval > Duration::from_secs(600) {
            return Err(invalid("collectors.logs.poll_interval", "must be between 50ms and 10m"));
        }
        self.leak.validate(self.sample.interval)?;
        self.otlp.validate()?;
        self.snapshots.validate()?;
        if self.discovery.exit_retention > Duration::from_secs(24 * 3600) {
            return Err(invalid("discovery.exit_retention", "must be at most 24h"));
        }
        let mut seen = BTreeSet::new();
        for (i, pid) in self.discovery.pids.iter().enumerate() {
            if *pid <= 0 {
                return Err(invalid(format!("discovery.pids[{i}]"), format!("{pid} is not a process id")));
            }
            if !seen.insert(pid) {
                return Err(invalid(format!("discovery.pids[{i}]"), format!("pid {pid} is listed twice")));
            }
        }
        for (list, matchers) in [("include", &self.discovery.include), ("exclude", &self.discovery.exclude)] {
            for (i, m) in matchers.iter().enumerate() {
                let field = format!("discovery.{list}[{i}]");
                if m.is_empty() {
                    return Err(invalid(
                        field,
                        "a matcher needs at least one of name, comm, exe, cmdline, script, user",
                    ));
                }
                if list == "exclude" && m.app.is_some() {
                    return Err(invalid(format!("{field}.app"), "an exclude matcher names nothing"));
                }
                if let Some(app) = &m.app {
                    for group in app.match_groups() {
                        let has_group =
                            m.cmdline.as_ref().is_some_and(|re| re.0.capture_names().flatten().any(|n| n == group));
                        if !has_group {
                            return Err(invalid(
                                format!("{field}.app"),
                                format!("{{match.{group}}} needs a named group (?P<{group}>...) in this matcher's cmdline regex"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(t) = &self.discovery.app_template {
            if let Some(group) = t.match_groups().next() {
                return Err(invalid(
                    "discovery.app_template",
                    format!("{{match.{group}}} is only available in a matcher's app template"),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The settings a running exporter cannot change in place, by field, that differ between
    /// `self` (running) and `new`: the listener, the mount points, the OTLP pipeline, how
    /// inspector connections are opened, and the leak windows (each process's history is kept
    /// per window).
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (self, new);
        let differs = |x: &dyn fmt::Debug, y: &dyn fmt::Debug| format!("{x:?}") != format!("{y:?}");
        let mut out = Vec::new();
        for (field, changed) in [
            ("web.listen_address", a.web.listen_address != b.web.listen_address),
            ("web.telemetry_path", a.web.telemetry_path != b.web.telemetry_path),
            ("web.disable_metrics", a.web.disable_metrics != b.web.disable_metrics),
            ("web.config_file", a.web.config_file != b.web.config_file),
            ("web.enable_lifecycle", a.web.enable_lifecycle != b.web.enable_lifecycle),
            ("paths", differs(&a.paths, &b.paths)),
            ("otlp", differs(&a.otlp, &b.otlp)),
            (
                "collectors.inspector.enter_netns",
                a.collectors.inspector.enter_netns != b.collectors.inspector.enter_netns,
            ),
            ("leak.windows", a.leak.sorted_windows() != b.leak.sorted_windows()),
            ("snapshots", a.snapshots != b.snapshots),
        ] {
            if changed {
                out.push(field);
            }
        }
        out
    }

    /// `new` with the running values of everything [`Config::restart_only_changes`] covers.
    pub fn keeping_restart_only(mut new: Config, running: &Config) -> Config {
        new.web = running.web.clone();
        new.paths = running.paths.clone();
        new.otlp = running.otlp.clone();
        new.collectors.inspector.enter_netns = running.collectors.inspector.enter_netns;
        new.leak.windows = running.leak.windows.clone();
        new.snapshots = running.snapshots.clone();
        new
    }
}

impl LeakConfig {
    /// Windows must hold enough samples to estimate anything and fit in the bounded history.
    pub fn validate(&self, interval: Duration) -> Result<(), ConfigError> {
        if self.windows.is_empty() {
            return Err(invalid("leak.windows", "at least one window is needed"));
        }
        if self.windows.len() > 8 {
            return Err(invalid("leak.windows", "at most 8 windows"));
        }
        let mut seen = BTreeSet::new();
        for (i, w) in self.windows.iter().enumerate() {
            let field = format!("leak.windows[{i}]");
            if *w < interval * 12 {
                return Err(invalid(field, format!("{w:?} holds fewer than 12 samples at the {interval:?} interval")));
            }
            if *w > Duration::from_secs(7 * 24 * 3600) {
                return Err(invalid(field, "must be at most 7 days"));
            }
            if w.subsec_nanos() != 0 {
                return Err(invalid(field, "must be whole seconds (it becomes a label: 15m, 1h)"));
            }
            if !seen.insert(*w) {
                return Err(invalid(field, "listed twice"));
            }
        }
        if self.grace_period > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid("leak.grace_period", "must be at most 7 days"));
        }
        Ok(())
    }

    /// The windows shortest first: the verdict reads them in that order.
    pub fn sorted_windows(&self) -> Vec<Duration> {
        let mut w = self.windows.clone();
        w.sort();
        w
    }
}

/// Parses `host:port`, `:port` (all interfaces) or `[v6]:port`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_string() };
    if let Ok(addr) = full.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some((host, port)) = full.rsplit_once(':') {
        if host == "localhost" {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
            }
        }
    }
    Err(format!("{s:?} is not an address; use host:port, :port or [::1]:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_valid() {
        let c = Config::from_yaml(include_str!("../examples/config.yml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.discovery.include.len(), 2);
        assert_eq!(c.discovery.exclude.len(), 4);
    }

    #[test]
    fn empty_file_is_default() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.web.listen_address, DEFAULT_LISTEN_ADDRESS);
        assert_eq!(c.discovery.include.len(), 1);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let err = Config::from_yaml("web:\n  listen_address: ':9'\ndiscovery:\n  min_agee: 5s\n").unwrap_err();
        assert!(err.contains("min_agee"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn bad_regex_is_named_with_its_line() {
        let err = Config::from_yaml("discovery:\n  include:\n    - cmdline: '(unclosed'\n").unwrap_err();
        assert!(err.contains("invalid regex"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("discovery.include[0]"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn bad_duration_and_template_are_rejected() {
        let err = Config::from_yaml("sample:\n  interval: fast\n").unwrap_err();
        assert!(err.contains("invalid duration"), "{err}");
        let err = Config::from_yaml("discovery:\n  app_template: '{nope}'\n").unwrap_err();
        assert!(err.contains("unknown template variable"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let c = Config::from_yaml("discovery:\n  include:\n    - app: '{match.svc}'\n      comm: node\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.starts_with("discovery.include[0].app:"), "{err}");
        let c = Config::from_yaml("discovery:\n  pids: [5, 5]\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().starts_with("discovery.pids[1]"));
        let c = Config::from_yaml("sample:\n  interval: 1ms\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().starts_with("sample.interval"));
    }

    #[test]
    fn snapshots_are_off_by_default_and_validated_by_field() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.snapshots.dir, None);
        assert_eq!(c.snapshots.max_files, 10);
        assert_eq!(c.snapshots.max_bytes, 4 << 30);
        assert_eq!(c.snapshots.alerts, DEFAULT_SNAPSHOT_ALERTS);
        assert!(!c.snapshots.forward && !c.snapshots.forward_insecure_skip_verify);
        assert_eq!(c.snapshots.forward_timeout, Duration::from_secs(10));
        let err = Config::from_yaml("snapshots:\n  dirr: /x\n").unwrap_err();
        assert!(err.contains("dirr"), "{err}");
        for (yaml, field) in [
            ("snapshots:\n  max_files: 0\n", "snapshots.max_files"),
            ("snapshots:\n  max_bytes: 10\n", "snapshots.max_bytes"),
            ("snapshots:\n  timeout: 0s\n", "snapshots.timeout"),
            ("snapshots:\n  node_name: ''\n", "snapshots.node_name"),
            ("snapshots:\n  alerts: [NodejsHeapLeak, '']\n", "snapshots.alerts[1]"),
            ("snapshots:\n  forward_timeout: 0s\n", "snapshots.forward_timeout"),
            ("snapshots:\n  forward_timeout: 5m\n", "snapshots.forward_timeout"),
            ("snapshots:\n  forward_ca_file: ''\n", "snapshots.forward_ca_file"),
            ("snapshots:\n  forward_server_name: 'http://x'\n", "snapshots.forward_server_name"),
            (
                "snapshots:\n  forward_server_name: exporter.monitoring.svc\n  forward_insecure_skip_verify: true\n",
                "snapshots.forward_server_name",
            ),
            (
                "snapshots:\n  forward_ca_file: /ca.pem\n  forward_insecure_skip_verify: true\n",
                "snapshots.forward_ca_file",
            ),
        ] {
            let err = Config::from_yaml(yaml).unwrap().validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{yaml}: {err}");
        }
        let c = Config::from_yaml("snapshots:\n  dir: /var/lib/x\n  timeout: 2m\n  gc: true\n").unwrap();
        c.validate().unwrap();
        assert_eq!(Config::default().restart_only_changes(&c), vec!["snapshots"]);
    }

    #[test]
    fn user_by_name_or_uid() {
        let c = Config::from_yaml("discovery:\n  include:\n    - user: 1000\n    - user: '0'\n    - user: alice\n")
            .unwrap();
        let users: Vec<_> = c.discovery.include.iter().map(|m| m.user.clone().unwrap()).collect();
        assert_eq!(users, vec![UserSpec::Uid(1000), UserSpec::Uid(0), UserSpec::Name("alice".into())]);
    }

    #[test]
    fn templates_render() {
        let t = AppTemplate::parse("{user}-{script}").unwrap();
        let s = t.render(|v| match v {
            TemplateVar::User => "alice".into(),
            TemplateVar::Script => "server.js".into(),
            _ => String::new(),
        });
        assert_eq!(s, "alice-server.js");
        assert!(AppTemplate::parse("{script").is_err());
        assert!(AppTemplate::parse("a}").is_err());
    }

    #[test]
    fn restart_only_settings_are_named_and_kept() {
        let running = Config::default();
        let mut new =
            Config::from_yaml("web:\n  listen_address: ':1'\nleak:\n  windows: [1h]\n  grace_period: 1m\n").unwrap();
        new.discovery.min_age = Duration::from_secs(1);
        assert_eq!(running.restart_only_changes(&new), vec!["web.listen_address", "leak.windows"]);
        let kept = Config::keeping_restart_only(new, &running);
        assert_eq!(kept.web.listen_address, DEFAULT_LISTEN_ADDRESS);
        assert_eq!(kept.leak.windows, running.leak.windows);
        assert_eq!(kept.leak.grace_period, Duration::from_secs(60));
        assert_eq!(kept.discovery.min_age, Duration::from_secs(1));
        assert!(running.restart_only_changes(&kept).is_empty());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_address(":19229").unwrap().port(), 19229);
        assert!(parse_listen_address("127.0.0.1:0").is_ok());
        assert!(parse_listen_address("[::1]:80").is_ok());
        assert!(parse_listen_address("localhost:80").is_ok());
        assert!(parse_listen_address("nope").is_err());
    }

    #[test]
    fn default_node_pattern() {
        let re = Regex::new(NODE_NAME_PATTERN).unwrap();
        for ok in ["node", "nodejs", "node20", "node-22"] {
            assert!(re.is_match(ok), "{ok}");
        }
        for no in ["nodemon", "node_exporter", "npm", "inode"] {
            assert!(!re.is_match(no), "{no}");
        }
    }
}
