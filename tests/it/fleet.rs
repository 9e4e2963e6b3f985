//! A small fleet for end-to-end tests: a leaking Node.js app and its fixed twin
//! (tests/fixtures/apps/service.js under real keep-alive traffic), the exporter watching every
//! Node.js process whose command line names the fleet's directory (so other processes a test
//! starts there, restarts included, are watched too, and other tests' processes are not), with
//! short leak windows, and a real Prometheus scraping it every second with the shipped rules.
//!
//! It owns starting and stopping these; what a test checks stays in the test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::prom::Server;
use crate::util::{self, Cgroup, Exporter, NodeApp};

/// Windows of 30 s and 90 s after a 90 s warm-up at a 250 ms interval: a heap leak of the
/// fixture is judged within about two minutes, after most of its twin's warm-up (its heap floor
/// rises for about 50 s, its RSS for about two minutes, slower and slower).
/// (In production: 15m/1h/6h after 10 minutes.)
pub const LEAK_ARGS: &[&str] =
    &["--sample.interval=250ms", "--leak.window=30s", "--leak.window=90s", "--leak.grace-period=90s"];

/// The node flags of the two apps: an inspector on a random loopback port, and `gc()` so the
/// apps collect every 500 ms (`gc_every`) and short windows see many full GCs.
pub const NODE_ARGS: &[&str] = &["--expose-gc", "--inspect=127.0.0.1:0"];

pub struct Options<'a> {
    /// Name (the `app` label) of the leaking app; its twin is the same with `-fixed` for `-leaky`.
    pub leaky_name: &'a str,
    pub fixed_name: &'a str,
    /// Run the leaking app in a memory cgroup of this limit (root only), so it has a limit and a
    /// time to it.
    pub leaky_cgroup_limit: Option<u64>,
    /// Exporter flags after [`LEAK_ARGS`].
    pub exporter_args: Vec<String>,
    /// Extra `discovery`-less sections of the exporter's configuration file (YAML, top level).
    pub exporter_config: String,
    /// Rule parameter overrides (`alerts::render_rules`), e.g. shorter `for:`.
    pub rule_overrides: Vec<(&'a str, &'a str)>,
    /// Extra scrape jobs: (job name, `host:port`).
    pub extra_scrapes: Vec<(String, String)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            leaky_name: "orders-leaky.js",
            fixed_name: "orders-fixed.js",
            leaky_cgroup_limit: None,
            exporter_args: vec!["--no-collector.logs".into()],
            exporter_config: String::new(),
            rule_overrides: Vec::new(),
            extra_scrapes: Vec::new(),
        }
    }
}

pub struct Fleet {
    // Field order is drop order: Prometheus and the exporter go before the apps they watch.
    pub prometheus: Server,
    pub exporter: Exporter,
    pub leaky: NodeApp,
    pub fixed: NodeApp,
    /// When the fleet started (unix seconds), for range queries over its whole life.
    pub started_unix: f64,
    pub started: Instant,
    cgroup: Option<Cgroup>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts the fleet; None when a tool is missing outside CI (a failure under CI=true).
    pub fn start(options: Options) -> Option<Fleet> {
        let node = util::node()?;
        util::require_tool("prometheus")?;
        let started = Instant::now();
        let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let dir = tempfile::tempdir().unwrap();
        let mut cgroup = None;
        let leaky_script = link_fixture(dir.path(), "service.js", options.leaky_name);
        let leaky_args = ["leak=map", "leak_bytes=2000", "gc_every=500"];
        let leaky = match options.leaky_cgroup_limit {
            Some(limit) => {
                if !util::require_root("a memory cgroup for the leaking app") {
                    return None;
                }
                let name = format!("nle-fleet-{}", std::process::id());
                let cg = Cgroup::create(&name, limit);
                let mut args: Vec<&Path> = NODE_ARGS.iter().map(Path::new).collect();
                args.push(&leaky_script);
                args.extend(leaky_args.iter().map(Path::new));
                let app = NodeApp::start(cg.command(&node, &args));
                cgroup = Some(cg);
                app
            }
            None => {
                let mut cmd = Command::new(&node);
                cmd.args(NODE_ARGS).arg(&leaky_script).args(leaky_args);
                NodeApp::start(cmd)
            }
        };
        let fixed_script = link_fixture(dir.path(), "service.js", options.fixed_name);
        let mut cmd = Command::new(&node);
        cmd.args(NODE_ARGS).arg(&fixed_script).args(["leak=none", "cache_max=500", "gc_every=500"]);
        let fixed = NodeApp::start(cmd);

        let config = dir.path().join("exporter.yml");
        std::fs::write(
            &config,
            format!(
                "discovery:\n  include:\n    - cmdline: '{}/'\n{}",
                regex::escape(&dir.path().display().to_string()),
                options.exporter_config
            ),
        )
        .unwrap();
        let mut args = vec![format!("--config.file={}", config.display())];
        args.extend(LEAK_ARGS.iter().map(|s| s.to_string()));
        args.extend(options.exporter_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let exporter = Exporter::start_with(Command::new(util::exporter_bin()), &args);

        let rules = crate::alerts::render_rules(&options.rule_overrides);
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  \
             - job_name: nodejs-leak-exporter\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr
        );
        for (job, target) in &options.extra_scrapes {
            config.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"));
        }
        let prometheus = crate::prom::prometheus(&config, &[("rules.yml", &rules)])?;
        Some(Fleet { prometheus, exporter, leaky, fixed, started_unix, started, cgroup, dir })
    }

    /// The fleet's directory: a script linked here (see [`link_fixture`]) is watched.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Links fixture app `fixture` into the fleet's directory as `name` (its `app` label).
    pub fn link(&self, fixture: &str, name: &str) -> PathBuf {
        link_fixture(self.dir.path(), fixture, name)
    }
}

/// A symlink to a fixture app under another name, so apps of one fixture have their own `app`.
pub fn link_fixture(dir: &Path, fixture: &str, name: &str) -> PathBuf {
    let path = dir.join(name);
    if !path.exists() {
        std::os::unix::fs::symlink(util::fixture_app(fixture), &path).unwrap();
    }
    path
}
