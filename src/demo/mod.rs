//! `nodejs-leak-exporter demo`: a bundled app with the three leaks of the typical incident and
//! its fixed twin, driven with the same traffic and watched by the full exporter, with a running
//! account of which one leaks, on which signal, and why.
//!
//! It owns the demo's world — the two Node.js processes (killed on exit, and by the kernel if the
//! demo dies: `PR_SET_PDEATHSIG`), their temporary directory, the loopback "database" and the
//! traffic — and the display. The exporter itself runs unchanged through [`crate::app::run_until`]
//! with settings shortened for a demo; nothing here judges a leak, it only shows what the
//! exporter's analysis says.

mod db;
mod traffic;
mod view;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::config::{parse_duration, AppTemplate, Config, LogPath, StartAt, DEFAULT_LISTEN_ADDRESS};
use crate::sampler::Snapshot;

/// The app, written out at run time as `<tmp>/leaky/app.js` and `<tmp>/fixed/app.js`: the
/// directory names the app (`--discovery.app-template={script_dir}`).
const APP_JS: &str = include_str!("app.js");
const APPS: [&str; 2] = ["leaky", "fixed"];

/// Sampling every second (5s in production) gives the short windows enough points.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Windows of one and three minutes instead of 15m, 1h and 6h: the demo's traffic makes in
/// minutes the full GCs a production server makes in hours.
const WINDOWS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(180)];
/// Warm-up with no verdict (10m in production): it covers the traffic's warm-up burst
/// ([`traffic::WARMUP`]), during which caches fill and V8 compiles the hot code.
const GRACE: Duration = Duration::from_secs(20);
/// The apps' heap limit, as production apps set one (`--max-old-space-size`). With the default
/// limit (several GiB) V8 lets the heap grow to about four times what it keeps between full GCs,
/// and how far depends on how fast it judges itself: on a busy machine full GCs came every 5 to 10
/// seconds, too few for a one-minute window. With 512 MiB they come about every second whatever
/// the load, and the leaky app's heap has a limit to reach: the crash every few hours.
const HEAP_LIMIT_MIB: u32 = 512;
/// How long the apps and their inspectors may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to serve metrics and the status page on while the demo runs (host:port or :port).
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = DEFAULT_LISTEN_ADDRESS)]
    pub listen_address: String,

    /// Stop after this long (e.g. 150s) [default: run until Ctrl-C].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// The Node.js binary to run the apps with.
    #[arg(long, value_name = "PATH", default_value = "node")]
    pub node: PathBuf,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot run {node:?}: the demo needs Node.js 18 or later on PATH, or --node PATH")]
    NodeMissing { node: PathBuf, source: std::io::Error },
    #[error("{node:?} --version failed: {message}")]
    NodeBroken { node: PathBuf, message: String },
    #[error("the {app} app did not start within {START_TIMEOUT:?}; its output:\n{log}")]
    AppDidNotStart { app: &'static str, log: String },
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let node_version = node_version(&args.node)?;
    let dir = WorkDir::create()?;
    // Bound here so the apps can be given its port; served once the runtime runs.
    let db = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the demo database")?;
    db.set_nonblocking(true)?;
    let db_port = db.local_addr()?.port();
    let apps = Arc::new(Mutex::new(Apps::default()));
    for name in APPS {
        let app = App::start(&args.node, &dir.path, name, db_port)?;
        apps.lock().expect("not poisoned").0.push(app);
    }
    let _kill_on_exit = KillOnDrop(apps.clone());
    let config = config(args, &apps.lock().expect("not poisoned"), &dir.path)?;
    let settings = Settings {
        node_version,
        listen_address: args.listen_address.clone(),
        duration: args.duration,
        terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    crate::app::run_until(config, move |snapshots| drive(snapshots, db, apps, settings))
}

fn node_version(node: &Path) -> Result<String, DemoError> {
    let out = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DemoError::NodeMissing { node: node.to_path_buf(), source })?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(DemoError::NodeBroken { node: node.to_path_buf(), message });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The exporter's configuration for the demo: only the two apps, sampled every second, short
/// windows, and their stderr followed for warnings.
fn config(args: &DemoArgs, apps: &Apps, dir: &Path) -> anyhow::Result<Config> {
    let mut c = Config::default();
    c.web.listen_address = args.listen_address.clone();
    c.sample.interval = SAMPLE_INTERVAL;
    c.discovery.include = Vec::new();
    c.discovery.pids = apps.0.iter().map(|a| a.pid).collect();
    c.discovery.min_age = Duration::ZERO;
    c.discovery.app_template = Some(AppTemplate::parse("{script_dir}").map_err(anyhow::Error::msg)?);
    c.leak.windows = WINDOWS.to_vec();
    c.leak.grace_period = GRACE;
    c.collectors.logs.pm2 = false;
    c.collectors.logs.kubernetes = false;
    c.collectors.logs.start_at = StartAt::Beginning;
    c.collectors.logs.paths = APPS
        .iter()
        .map(|name| LogPath {
            path: dir.join(name).join("node.log").display().to_string(),
            app: Some(name.to_string()),
        })
        .collect();
    c.validate()?;
    Ok(c)
}

/// A temporary directory for the app's files, removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> anyhow::Result<WorkDir> {
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let path = base.join(format!("nodejs-leak-exporter-demo-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let dir = WorkDir { path };
                    for name in APPS {
                        std::fs::create_dir(dir.path.join(name))?;
                        std::fs::write(dir.path.join(name).join("app.js"), APP_JS)?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        anyhow::bail!("cannot create a temporary directory under {}", base.display())
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One running app.
struct App {
    name: &'static str,
    pid: i32,
    port: u16,
    child: Child,
    /// Kept open: the app's stdout is a pipe it may still write to.
    _stdout: ChildStdout,
}

impl App {
    /// Starts `node --inspect=127.0.0.1:0 --max-old-space-size=512 <dir>/<name>/app.js <name>
    /// <db_port>` and waits for it to serve. Its stderr (warnings, the inspector's messages) goes to `<dir>/<name>/node.log`.
    fn start(node: &Path, dir: &Path, name: &'static str, db_port: u16) -> anyhow::Result<App> {
        let log_path = dir.join(name).join("node.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(node);
        cmd.arg("--inspect=127.0.0.1:0")
            .arg(format!("--max-old-space-size={HEAP_LIMIT_MIB}"))
            .arg(dir.join(name).join("app.js"))
            .arg(name)
            .arg(db_port.to_string())
            .current_dir(dir.join(name))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                // The app dies with the demo, even if the demo is killed without a chance to clean up.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", node.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let port = match reader.read_line(&mut line) {
                Ok(_) => line.trim().strip_prefix("ready ").and_then(|p| p.parse::<u16>().ok()),
                Err(_) => None,
            };
            let _ = tx.send(port);
            reader.into_inner()
        });
        let port = rx.recv_timeout(START_TIMEOUT).ok().flatten();
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(DemoError::AppDidNotStart { app: name, log }.into());
        };
        let stdout = reader.join().expect("reader thread");
        Ok(App { name, pid: child.id() as i32, port, child, _stdout: stdout })
    }
}

#[derive(Default)]
struct Apps(Vec<App>);

impl Apps {
    /// The first app that exited on its own, with its status.
    fn exited(&mut self) -> Option<(&'static str, std::process::ExitStatus)> {
        self.0.iter_mut().find_map(|a| a.child.try_wait().ok().flatten().map(|s| (a.name, s)))
    }

    fn kill(&mut self) {
        for app in &mut self.0 {
            let _ = app.child.kill();
            let _ = app.child.wait();
        }
    }
}

struct KillOnDrop(Arc<Mutex<Apps>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(mut apps) = self.0.lock() {
            apps.kill();
        }
    }
}

struct Settings {
    node_version: String,
    listen_address: String,
    duration: Option<Duration>,
    terminal: bool,
}

/// The demo proper, on the exporter's runtime: serve the database, wait until the exporter sees
/// both apps, drive traffic, and show what the exporter concludes until Ctrl-C or `--duration`.
async fn drive(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    db: std::net::TcpListener,
    apps: Arc<Mutex<Apps>>,
    settings: Settings,
) {
    let mut out = view::Output::new(settings.terminal);
    let db = match tokio::net::TcpListener::from_std(db) {
        Ok(l) => tokio::spawn(db::serve(l)),
        Err(e) => {
            out.line(&format!("cannot serve the demo database: {e}"));
            return;
        }
    };
    let targets: Vec<(&'static str, i32, u16)> =
        apps.lock().expect("not poisoned").0.iter().map(|a| (a.name, a.pid, a.port)).collect();
    out.header(&view::Header {
        node_version: &settings.node_version,
        listen_address: &settings.listen_address,
        apps: &targets,
        windows: &WINDOWS,
        grace: GRACE,
        rate: traffic::RATE,
        warmup_rate: traffic::WARMUP_RATE,
        warmup: traffic::WARMUP,
        heap_limit_mib: HEAP_LIMIT_MIB,
        connections: traffic::CONNECTIONS,
        fail_every: db::FAIL_EVERY,
        duration: settings.duration,
    });

    // Traffic starts once the exporter holds both inspectors, so it sees every warning.
    let waited = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            if targets.iter().all(|(_, pid, _)| view::inspector_connected(&snapshots.borrow(), *pid)) {
                return;
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if waited.is_err() {
        out.line("the exporter has not connected to both inspectors yet; starting the traffic anyway");
    }
    let stats: Vec<Arc<traffic::Stats>> = targets.iter().map(|_| Arc::new(traffic::Stats::default())).collect();
    let start = tokio::time::Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<()>> =
        targets.iter().zip(&stats).flat_map(|((_, _, port), s)| traffic::drive(*port, start, s.clone())).collect();
    tasks.push(db);
    let started = Instant::now();
    out.line("");
    out.line(&format!("[{}] the exporter reads both inspectors: traffic started.", view::clock(Duration::ZERO)));

    let mut tracker = view::Tracker::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let deadline = settings.duration.map(|d| tokio::time::Instant::now() + d);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {}
            reason = &mut stop => break reason,
            () = sleep_until(deadline) => break "duration reached",
        }
        if let Some((name, status)) = apps.lock().expect("not poisoned").exited() {
            out.line(&format!("the {name} app exited on its own ({status}); stopping"));
            break "an app exited";
        }
        let snapshot = snapshots.borrow().clone();
        let readings: Vec<view::Reading> = targets
            .iter()
            .zip(&stats)
            .map(|((name, pid, _), s)| view::Reading::from_snapshot(&snapshot, name, *pid, s))
            .collect();
        let at = started.elapsed();
        for event in tracker.update(at, &readings) {
            out.event(&event);
        }
        out.refresh(at, &readings, &tracker);
    };
    for task in &tasks {
        task.abort();
    }
    let snapshot = snapshots.borrow().clone();
    let readings: Vec<view::Reading> = targets
        .iter()
        .zip(&stats)
        .map(|((name, pid, _), s)| view::Reading::from_snapshot(&snapshot, name, *pid, s))
        .collect();
    out.summary(started.elapsed(), reason, &readings, &tracker);
    let _ = std::io::stdout().flush();
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = term.recv() => "terminated",
        _ = tokio::signal::ctrl_c() => "interrupted",
    }
}
