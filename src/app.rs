//! Running the exporter: the sampler thread, the HTTP server and signal handling, wired together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use tokio::signal::unix::SignalKind;

use crate::cli::Parsed;
use crate::collect::Context as CollectContext;
use crate::config::{parse_listen_address, Config};
use crate::connector::{self, Connector, DirectConnector, NetnsConnector};
use crate::http::{self, AppState, ServerMetrics};
use crate::sampler::{Control, Sampler, Snapshot};
use crate::web::WebConfig;

/// Runs until SIGTERM or SIGINT; SIGHUP (and `POST /-/reload` with `--web.enable-lifecycle`)
/// reloads the configuration file and the web configuration file, with the flags laid over the
/// file again as at start.
pub fn run(parsed: Parsed) -> anyhow::Result<()> {
    let config = parsed.config()?;
    run_with(config, Some(parsed), |_| shutdown_signal())
}

/// Runs until the future `until` makes completes. It is given the stream of snapshots, so an
/// embedder (the demo) can watch what the exporter sees, and runs on the exporter's runtime.
/// There is nothing to reload from: SIGHUP keeps its default action.
pub fn run_until<F, Fut>(config: Config, until: F) -> anyhow::Result<()>
where
    F: FnOnce(watch::Receiver<Arc<Snapshot>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_with(config, None, until)
}

/// Threads of the runtime's blocking pool, at most.
const BLOCKING_THREADS: usize = 4;

/// Keeps glibc's malloc from holding on to memory the exporter freed.
///
/// - Arenas: glibc gives every thread that allocates while the others hold theirs an arena of
///   its own, up to 8 per core, and returns little of them. The exporter allocates on a handful of
///   threads and is not allocation-bound: two are enough. (Without a cap, a burst of short-lived
///   threads left 14 arenas and +6 MiB of RSS in the soak benchmark.)
/// - The mmap threshold: by default it rises to the size of the largest block freed (up to
///   32 MiB), after which the large buffers of every sample and scrape (the rendered exposition,
///   a response body: megabytes at a thousand targets) come from the heap and fragment it; half
///   of the soak's heap was free but kept. Fixed at 256 KiB, they are mapped and unmapped again.
///
/// `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` in the environment still win.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a tunable of the allocator, under glibc's own lock; arenas
        // that exist already stay, so it is called before the runtime starts its threads.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
        }
    }
}

fn run_with<F, Fut>(config: Config, reload_from: Option<Parsed>, until: F) -> anyhow::Result<()>
where
    F: FnOnce(watch::Receiver<Arc<Snapshot>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    raise_fd_limit();
    tune_malloc();
    let addr = parse_listen_address(&config.web.listen_address).map_err(anyhow::Error::msg)?;
    let web = Arc::new(match &config.web.config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::disabled(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking work here is short (reading /proc/net/tcp* of a process, a bcrypt check, a
        // chunk of a snapshot file being served). Tokio's default of up to 512 threads let a burst
        // of new processes start a dozen threads at once, each leaving a malloc arena behind.
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .thread_name("async")
        .build()
        .context("cannot start the async runtime")?;
    let context = CollectContext {
        runtime: runtime.handle().clone(),
        connector: choose_connector(&config),
        instance: instance_id(),
    };
    crate::snapshot::store::install(&config, context.connector.clone()).context("heap snapshots")?;
    let (publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let mut sampler = Sampler::new(&config, &context, publish).context("invalid configuration")?;
    let otlp = crate::otlp::Settings::resolve(&config.otlp, |k| std::env::var(k).ok()).context("OTLP export")?;
    match &otlp {
        Some(settings) => sampler.set_otlp(crate::otlp::start(settings, runtime.handle()).context("OTLP export")?),
        None if config.web.disable_metrics => anyhow::bail!(
            "--web.disable-metrics and no OTLP endpoint (--otlp.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT): nothing would be exported"
        ),
        None => {}
    }
    let server_metrics = Arc::new(ServerMetrics::new());
    // Installed before the listener is up, so a SIGHUP never meets its default action (exit).
    let hangups = match &reload_from {
        Some(_) => {
            let _entered = runtime.enter();
            Some(tokio::signal::unix::signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?)
        }
        None => None,
    };
    let (control, control_rx) = std::sync::mpsc::channel::<Control>();
    let sampler_thread = std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || sampler.run(control_rx))
        .context("cannot start the sampler thread")?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    if let (Some(parsed), Some(hangups)) = (reload_from, hangups) {
        let reloader = Reloader {
            parsed,
            running: config.clone(),
            web: web.clone(),
            sampler: control.clone(),
            metrics: server_metrics.clone(),
        };
        runtime.spawn(reloader.run(hangups, reload_rx));
    }
    let until = until(snapshots.clone());
    let result = runtime.block_on(async {
        let listener = http::bind(addr).await?;
        tracing::info!(
            address = %listener.local_addr()?,
            telemetry_path = %config.web.telemetry_path,
            tls = web.tls_enabled(),
            basic_auth = web.current().auth.is_some(),
            lifecycle = config.web.enable_lifecycle,
            "listening"
        );
        let state = AppState {
            snapshot: snapshots,
            telemetry_path: config.web.telemetry_path.as_str().into(),
            metrics_enabled: !config.web.disable_metrics,
            web,
            server_metrics,
            reload: config.web.enable_lifecycle.then_some(reload_tx),
            listen_address: listener.local_addr().ok(),
        };
        http::serve(listener, state, until).await?;
        anyhow::Ok(())
    });
    let _ = control.send(Control::Stop);
    drop(control);
    // The sampler finishes its sample and removes what it injected, each bounded in time; don't
    // hang shutdown on a stuck read.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while !sampler_thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    tracing::info!("stopped");
    result
}

/// Reloads on SIGHUP and on `POST /-/reload`, one at a time.
struct Reloader {
    /// The command line, laid over the file again at each reload.
    parsed: Parsed,
    running: Config,
    web: Arc<WebConfig>,
    sampler: std::sync::mpsc::Sender<Control>,
    metrics: Arc<ServerMetrics>,
}

impl Reloader {
    async fn run(
        mut self,
        mut hangups: tokio::signal::unix::Signal,
        mut requests: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<Result<(), String>>>,
    ) {
        loop {
            let reply = tokio::select! {
                Some(()) = hangups.recv() => {
                    tracing::info!("SIGHUP received, reloading the configuration");
                    None
                }
                Some(reply) = requests.recv() => {
                    tracing::info!("POST /-/reload received, reloading the configuration");
                    Some(reply)
                }
                else => return,
            };
            let result = self.reload().await;
            match &result {
                Ok(()) => tracing::info!("configuration reloaded"),
                Err(e) => tracing::error!(error = %e, "configuration reload failed: the running configuration stays"),
            }
            self.metrics.reloaded(result.is_ok());
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
    }

    /// Reads and validates everything before changing anything; on error nothing changed.
    async fn reload(&mut self) -> Result<(), String> {
        let new = self.parsed.config().map_err(|e| e.to_string())?;
        for field in self.running.restart_only_changes(&new) {
            tracing::warn!(field, "changed in the configuration, but needs a restart: keeping the running value");
        }
        let new = Config::keeping_restart_only(new, &self.running);
        let web = self.web.prepare().map_err(|e| e.to_string())?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sampler
            .send(Control::Apply(Box::new(new.clone()), reply))
            .map_err(|_| "the sampler has stopped".to_string())?;
        // Applied between two samples: at worst after one sample, each bounded in time.
        match tokio::time::timeout(Duration::from_secs(60), answer).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err("the sampler has stopped".into()),
            Err(_) => return Err("the sampler did not take the configuration within 60s".into()),
        }
        if let Some(web) = web {
            self.web.install(web);
        }
        self.running = new;
        Ok(())
    }
}

/// Inspector connections open inside each process's network namespace when the operator opted
/// in (`--inspector.enter-netns`), from the exporter's own otherwise.
fn choose_connector(config: &Config) -> Arc<dyn Connector> {
    let inspector = &config.collectors.inspector;
    if !(inspector.enabled && inspector.enter_netns) {
        return Arc::new(DirectConnector);
    }
    // A warning, not an error: processes in the exporter's own namespace are still read.
    match connector::effective_capabilities() {
        Some(caps) if !connector::has_capability(caps, connector::cap::SYS_ADMIN) => tracing::warn!(
            "--inspector.enter-netns is on but the exporter lacks CAP_SYS_ADMIN in its effective set: inspectors in other network namespaces will be unreachable (permission_denied)"
        ),
        Some(_) => {}
        None => tracing::warn!("--inspector.enter-netns is on but the exporter's capabilities cannot be read"),
    }
    tracing::info!("inspector connections enter the process's network namespace when it is not the exporter's");
    Arc::new(NetnsConnector::new(config.paths.procfs.clone()))
}

/// Names this exporter instance among the owners of code injected into processes.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

async fn shutdown_signal() {
    use tokio::signal::unix::signal;
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}

/// Each target holds an open handle on its /proc directory; raise the soft fd limit to the hard
/// one, as the Go runtime does for Prometheus' exporters.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
