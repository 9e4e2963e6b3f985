//! End-to-end over a fixture /proc tree (`tests/fixtures/proc`), a cgroup v1 memory hierarchy
//! (`tests/fixtures/sys`) and a passwd file (`tests/fixtures/rootfs`): the real Sampler runs
//! against them and the per-process metrics are compared with `tests/fixtures/golden/metrics.prom`.
//!
//! `UPDATE_GOLDEN=1 cargo test --test it fixture_proc` rewrites the golden file (as root, see
//! `stage`). `tests/fixtures/proc/README.md` says what each fixture process stands for.
//!
//! The exporter's own series (`nodejs_leak_exporter_*`) come from the real /proc/self and vary
//! from run to run, so the golden comparison leaves them out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nodejs_leak_exporter::collect::cgroup::CgroupCollector;
use nodejs_leak_exporter::collect::procfs::ProcfsCollector;
use nodejs_leak_exporter::collect::{Collector, Outcome, Readings};
use nodejs_leak_exporter::config::{Config, DiscoveryConfig};
use nodejs_leak_exporter::discovery::Discovery;
use nodejs_leak_exporter::sampler::{Sampler, Snapshot};
use nodejs_leak_exporter::target::{Target, TargetState};
use tokio::sync::watch;

/// Secrets and command lines planted in the fixture's environments and argv: none may leave.
const MUST_NOT_LEAK: &[&str] = &[
    "hunter2-fixture",
    "sk-fixture-secret",
    "fixture-session-secret",
    "DB_PASSWORD",
    "API_KEY",
    "max-old-space-size",
    "/srv/api/server.js",
    "/srv/orders/index.js",
    "/srv/billing/app.js",
    "/srv/",
    "God Daemon",
    "/root/.pm2",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn golden_path() -> PathBuf {
    fixtures().join("golden/metrics.prom")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A private copy of the fixture tree.
struct Staged {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Whether the pid directories are owned by the uids their `status` names. The exporter takes
    /// a process's owner from the owner of `/proc/PID` (as the kernel sets it), which git cannot
    /// store: only root can stage it.
    owners: bool,
}

impl Staged {
    fn proc(&self) -> PathBuf {
        self.root.join("proc")
    }
}

/// Copies `proc`, `sys` and `rootfs` to a temporary directory (symlinks stay symlinks; the
/// relative `exe` links keep pointing into `rootfs`) and, as root, gives each pid directory the
/// owner its `status` says, as the kernel does.
fn stage() -> Staged {
    let dir = tempfile::Builder::new().prefix("nle-fixture-").tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    for part in ["proc", "sys", "rootfs"] {
        copy_tree(&fixtures().join(part), &root.join(part));
    }
    let owners = is_root();
    if owners {
        for (pid, path) in pid_dirs(&root.join("proc")) {
            let status = std::fs::read_to_string(path.join("status")).expect("status");
            let id = |key: &str| -> u32 {
                let line =
                    status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {pid}/status"));
                // Real, effective, saved, filesystem: /proc/PID belongs to the effective id.
                line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key} of {pid}"))
            };
            std::os::unix::fs::chown(&path, Some(id("Uid:")), Some(id("Gid:"))).expect("chown pid dir");
        }
    } else {
        eprintln!(
            "NOTE: not root: fixture pid directories keep the test runner as owner, so user labels are not checked"
        );
    }
    Staged { _dir: dir, root, owners }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).expect("readlink"), &dst).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

fn pid_dirs(proc: &Path) -> Vec<(i32, PathBuf)> {
    let mut out: Vec<(i32, PathBuf)> = std::fs::read_dir(proc)
        .expect("read proc")
        .filter_map(|e| {
            let e = e.ok()?;
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((pid, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn config_for(staged: &Staged) -> Config {
    let mut config = Config::default();
    config.paths.procfs = staged.proc();
    config.paths.sysfs = staged.root.join("sys");
    config.paths.rootfs = staged.root.join("rootfs");
    // A fixture tree has no live processes to open inspectors on.
    config.collectors.inspector.enabled = false;
    // Nor log files.
    config.collectors.logs.enabled = false;
    config
}

struct Run {
    sampler: Sampler,
    rx: watch::Receiver<Arc<Snapshot>>,
    _runtime: tokio::runtime::Runtime,
}

impl Run {
    fn new(config: &Config) -> Run {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let context = nodejs_leak_exporter::collect::Context {
            runtime: runtime.handle().clone(),
            connector: Arc::new(nodejs_leak_exporter::connector::DirectConnector),
            instance: "fixture".into(),
        };
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let sampler = Sampler::new(config, &context, tx).expect("sampler");
        Run { sampler, rx, _runtime: runtime }
    }

    fn sample(&mut self) -> Arc<Snapshot> {
        self.sampler.sample_once();
        let snapshot = self.rx.borrow_and_update().clone();
        assert!(snapshot.ready, "a sample was published");
        snapshot
    }
}

/// The metrics text without the exporter's own families.
fn target_lines(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let name = l.strip_prefix("# HELP ").or_else(|| l.strip_prefix("# TYPE ")).unwrap_or(l);
            !name.starts_with("nodejs_leak_exporter_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// One sample line of the text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}")))),
                None => (series, Vec::new()),
            };
            Sample { name: name.to_string(), labels, value }
        })
        .collect()
}

/// `a="x",b="y\"z"` → pairs, unescaping `\\`, `\"` and `\n`.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels: {s}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape: {s}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {s}"),
            }
        };
        out.push((key.trim_start_matches(',').to_string(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

/// The value of the one series of `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> =
        samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v))).collect();
    assert!(found.len() <= 1, "{name}{labels:?} matches {} series: {found:?}", found.len());
    found.first().map(|s| s.value)
}

fn expect_value(samples: &[Sample], name: &str, labels: &[(&str, &str)], want: f64) {
    let got = value(samples, name, labels);
    assert_eq!(got, Some(want), "{name}{labels:?}");
}

/// A line diff (longest common subsequence), `-` for the golden file, `+` for this run.
fn line_diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// Replaces every `user="..."` value, for runs that cannot stage the owners.
fn mask_users(text: &str) -> String {
    let re = regex::Regex::new(r#"user="[^"]*""#).expect("regex");
    re.replace_all(text, r#"user="<owner>""#).into_owned()
}

#[test]
fn fixture_tree_parses_with_procfs() {
    // Keeps the fixture honest: every file the exporter reads parses with the procfs crate.
    for (pid, path) in pid_dirs(&fixtures().join("proc")) {
        let p = procfs::process::Process::new_with_root(path.clone()).expect("open pid dir");
        assert_eq!(p.pid, pid);
        let stat = p.stat().unwrap_or_else(|e| panic!("{pid}/stat: {e}"));
        assert_eq!(stat.pid, pid);
        let status = p.status().unwrap_or_else(|e| panic!("{pid}/status: {e}"));
        // procfs cuts `Name:` at a second colon ("PM2 v5.3.0: God" reads "PM2 v5.3.0"); the
        // exporter takes comm from stat.
        assert!(stat.comm.starts_with(&status.name), "{pid}: status Name and stat comm");
        assert_eq!(status.threads as i64, stat.num_threads, "{pid}: thread counts");
        if let Some(rss) = status.vmrss {
            let parts = status.rssanon.unwrap() + status.rssfile.unwrap() + status.rssshmem.unwrap();
            assert_eq!(rss, parts, "{pid}: VmRSS is RssAnon + RssFile + RssShmem");
            assert_eq!(stat.vsize, status.vmsize.unwrap() * 1024, "{pid}: vsize and VmSize");
        }
        p.limits().unwrap_or_else(|e| panic!("{pid}/limits: {e}"));
        let kernel_thread = stat.flags & 0x0020_0000 != 0;
        if kernel_thread {
            assert!(p.exe().is_err(), "{pid}: a kernel thread has no exe");
            continue;
        }
        p.exe().unwrap_or_else(|e| panic!("{pid}/exe: {e}"));
        let listed = std::fs::read_dir(path.join("fd")).expect("fd dir").count();
        let parsed: Vec<_> = p.fd().expect("fd").collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{pid}/fd: {e}"));
        assert_eq!(parsed.len(), listed, "{pid}: every fd link parses");
        // Every socket the process holds is in its namespace's tables (except 201's netlink one).
        let net = |f: &str| std::fs::read_to_string(path.join("net").join(f)).expect("net table");
        let tables = ["tcp", "tcp6", "udp", "udp6", "unix"].map(net).join("\n");
        for fd in parsed {
            if let procfs::process::FDTarget::Socket(inode) = fd.target {
                let listed = tables.lines().any(|l| l.split_whitespace().any(|w| w == inode.to_string()));
                assert!(listed || (pid, inode) == (201, 2099), "{pid}: socket {inode} in no table");
            }
        }
    }
}

#[test]
fn golden_metrics() {
    let staged = stage();
    let mut run = Run::new(&config_for(&staged));
    let snapshot = run.sample();
    let got = target_lines(&snapshot.metrics);
    let path = golden_path();

    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        assert!(staged.owners, "UPDATE_GOLDEN=1 needs root: the golden file holds user labels only root can stage");
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir golden");
        std::fs::write(&path, &got).expect("write golden");
        eprintln!("wrote {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1 (as root)", path.display()));
    let (want, got) = if staged.owners { (want, got) } else { (mask_users(&want), mask_users(&got)) };
    if want != got {
        panic!(
            "metrics differ from {} (- golden, + this run; UPDATE_GOLDEN=1 rewrites it):\n{}",
            path.display(),
            line_diff(&want, &got)
        );
    }
}

#[test]
fn targets_names_limits_and_users() {
    let staged = stage();
    let mut run = Run::new(&config_for(&staged));
    let snapshot = run.sample();
    let samples = parse_samples(&snapshot.metrics);

    // Which processes are targets: node (100), PM2 fork (200) and cluster (201), a renamed
    // process.title (600). Not npm (300), the PM2 daemon (301), nginx (400), a kernel thread (500).
    let pids: BTreeSet<i32> = snapshot.targets.iter().map(|t| t.pid).collect();
    assert_eq!(pids, BTreeSet::from([100, 200, 201, 600]), "targets: {:#?}", snapshot.targets);
    for t in &snapshot.targets {
        assert_eq!(t.state, "active", "{t:?}");
        for c in &t.collectors {
            assert!(
                c.complete,
                "pid {}: the fixture lacks something collector {} reads: {:?}",
                t.pid, c.collector, c.missing
            );
        }
        assert_eq!(t.collectors.len(), 3, "procfs, cgroup and kubernetes ran on {}", t.pid);
    }
    let exported: BTreeSet<&str> = samples.iter().filter_map(|s| s.label("pid")).collect();
    assert_eq!(exported, BTreeSet::from(["100", "200", "201", "600"]));

    // App names: script base name, PM2 fork-mode name, PM2 cluster-mode name, comm.
    let app_of = |pid: i32| snapshot.targets.iter().find(|t| t.pid == pid).map(|t| t.app.clone()).unwrap();
    for (pid, app) in [(100, "server.js"), (200, "orders"), (201, "billing"), (600, "api-worker-7")] {
        assert_eq!(app_of(pid), app, "app of {pid}");
        let p = pid.to_string();
        expect_value(&samples, "nodejs_process_info", &[("pid", &p), ("app", app)], 1.0);
    }
    let pm2_id = |pid: i32| snapshot.targets.iter().find(|t| t.pid == pid).and_then(|t| t.pm2_id.clone());
    assert_eq!(pm2_id(200).as_deref(), Some("3"));
    assert_eq!(pm2_id(201).as_deref(), Some("5"));
    assert_eq!(pm2_id(100), None);

    // Memory limits: PM2's max_memory_restart, and the cgroup's (the parent /app binds /app/api).
    let limit = "nodejs_memory_limit_bytes";
    expect_value(&samples, limit, &[("pid", "200"), ("app", "orders"), ("source", "pm2")], 209715200.0);
    expect_value(&samples, limit, &[("pid", "201"), ("app", "billing"), ("source", "pm2")], 314572800.0);
    expect_value(&samples, limit, &[("pid", "100"), ("app", "server.js"), ("source", "cgroup")], 536870912.0);
    expect_value(&samples, limit, &[("pid", "600"), ("source", "cgroup")], 268435456.0);
    for (pid, source) in [("100", "pm2"), ("600", "pm2"), ("200", "cgroup"), ("201", "cgroup")] {
        assert_eq!(value(&samples, limit, &[("pid", pid), ("source", source)]), None, "no {source} limit for {pid}");
    }
    expect_value(&samples, "nodejs_cgroup_oom_kills_total", &[("pid", "100")], 2.0);
    expect_value(&samples, "nodejs_cgroup_oom_kills_total", &[("pid", "200")], 0.0);
    expect_value(&samples, "nodejs_cgroup_memory_usage_bytes", &[("pid", "100")], 318767104.0);

    // Identity labels.
    let info = |pid: &str, label: &str| -> String {
        let s = samples.iter().find(|s| s.name == "nodejs_process_info" && s.label("pid") == Some(pid)).unwrap();
        s.label(label).unwrap_or_else(|| panic!("{label} on {s:?}")).to_string()
    };
    assert_eq!(info("100", "cgroup"), "/app/api");
    assert_eq!(info("200", "cgroup"), "/system.slice/pm2-root.service");
    assert_eq!(info("600", "cgroup"), "/docker/3f4e5d6c7b8a");
    assert_eq!(info("100", "node_version"), "v20.11.1");
    assert_eq!(info("600", "node_version"), "v18.19.1");
    assert_eq!(info("201", "pm2_id"), "5");
    assert_eq!(info("100", "pm2_id"), "");
    if staged.owners {
        assert_eq!(info("100", "user"), "alice");
        assert_eq!(info("200", "user"), "deploy");
        assert_eq!(info("201", "user"), "deploy");
        // A container user absent from the host's passwd stays numeric.
        assert_eq!(info("600", "user"), "2000");
    }

    // Process readings, in bytes and seconds.
    expect_value(&samples, "process_resident_memory_bytes", &[("pid", "100")], 120000.0 * 1024.0);
    expect_value(&samples, "process_virtual_memory_bytes", &[("pid", "100")], 1233920.0 * 1024.0);
    expect_value(&samples, "process_heap_bytes", &[("pid", "100")], 196608.0 * 1024.0);
    expect_value(
        &samples,
        "nodejs_process_resident_memory_breakdown_bytes",
        &[("pid", "100"), ("type", "anon")],
        88000.0 * 1024.0,
    );
    expect_value(&samples, "nodejs_process_swap_bytes", &[("pid", "100")], 2048.0 * 1024.0);
    expect_value(&samples, "process_cpu_user_seconds_total", &[("pid", "100")], 123.5);
    expect_value(&samples, "process_cpu_seconds_total", &[("pid", "100")], 146.75);
    expect_value(&samples, "process_start_time_seconds", &[("pid", "100")], 1700090000.0);
    expect_value(&samples, "nodejs_process_threads", &[("pid", "201")], 7.0);
    expect_value(&samples, "process_max_fds", &[("pid", "100")], 65536.0);
    expect_value(&samples, "process_open_fds", &[("pid", "100")], 9.0);

    // Sockets by protocol, from the tables of each process's network namespace.
    let sockets = |pid: &str| -> [f64; 4] {
        ["tcp", "udp", "unix", "other"].map(|p| {
            value(&samples, "nodejs_process_open_sockets", &[("pid", pid), ("protocol", p)])
                .unwrap_or_else(|| panic!("sockets {p} of {pid}"))
        })
    };
    assert_eq!(sockets("100"), [2.0, 0.0, 1.0, 0.0], "pid 100: tcp (one IPv6), udp, unix, other");
    assert_eq!(sockets("200"), [1.0, 0.0, 1.0, 0.0], "pid 200");
    assert_eq!(sockets("201"), [1.0, 1.0, 0.0, 1.0], "pid 201: a socket in no table counts as other");
    assert_eq!(sockets("600"), [1.0, 0.0, 1.0, 0.0], "pid 600, in its own network namespace");

    // The exporter's view of the scan.
    expect_value(&samples, "nodejs_leak_exporter_scanned_processes", &[], 8.0);
    expect_value(&samples, "nodejs_leak_exporter_discovered_processes_total", &[], 4.0);
    expect_value(&samples, "nodejs_leak_exporter_targets", &[("state", "active")], 4.0);
    let errors: f64 =
        samples.iter().filter(|s| s.name == "nodejs_leak_exporter_collector_errors_total").map(|s| s.value).sum();
    assert_eq!(errors, 0.0, "no read fails on the complete fixture");
}

#[test]
fn secrets_and_command_lines_stay_inside() {
    let staged = stage();
    let mut run = Run::new(&config_for(&staged));
    let snapshot = run.sample();
    assert_eq!(snapshot.targets.len(), 4);
    let json = serde_json::to_string(&snapshot.targets).expect("targets serialize");
    for needle in MUST_NOT_LEAK {
        assert!(!snapshot.metrics.contains(needle), "{needle:?} leaked into the metrics");
        assert!(!json.contains(needle), "{needle:?} leaked into the targets JSON: {json}");
    }
    // What is shown instead: base names only.
    let script = |pid: i32| snapshot.targets.iter().find(|t| t.pid == pid).and_then(|t| t.script.clone());
    assert_eq!(script(100).as_deref(), Some("server.js"));
    assert_eq!(script(200).as_deref(), Some("index.js"));
    assert_eq!(script(600), None);
    let exe = snapshot.targets.iter().find(|t| t.pid == 100).and_then(|t| t.exe.clone());
    assert_eq!(exe.as_deref(), Some("node"));
}

#[test]
fn a_process_gone_between_samples_is_exited_not_an_error() {
    let staged = stage();
    let mut run = Run::new(&config_for(&staged));
    let first = run.sample();
    assert!(first.targets.iter().any(|t| t.pid == 100 && t.state == "active"));

    std::fs::remove_dir_all(staged.proc().join("100")).expect("remove pid dir");
    let second = run.sample();
    let state = |pid: i32| second.targets.iter().find(|t| t.pid == pid).map(|t| t.state);
    assert_eq!(state(100), Some("exited"), "{:#?}", second.targets);
    for pid in [200, 201, 600] {
        assert_eq!(state(pid), Some("active"));
    }
    let samples = parse_samples(&second.metrics);
    let errors: Vec<&Sample> =
        samples.iter().filter(|s| s.name == "nodejs_leak_exporter_collector_errors_total" && s.value != 0.0).collect();
    assert!(errors.is_empty(), "a vanished process is not an error: {errors:?}");
    expect_value(&samples, "nodejs_leak_exporter_targets", &[("state", "exited")], 1.0);
    expect_value(&samples, "nodejs_leak_exporter_targets", &[("state", "active")], 3.0);
    // Its last series stay for the exit retention, with the OOM kill count its cgroup still has.
    expect_value(&samples, "process_resident_memory_bytes", &[("pid", "100")], 120000.0 * 1024.0);
    expect_value(&samples, "nodejs_cgroup_oom_kills_total", &[("pid", "100")], 2.0);
}

#[test]
fn a_process_gone_mid_read_is_vanished_not_a_gap() {
    let staged = stage();
    let config = config_for(&staged);
    let mut discovery =
        Discovery::new(&config.paths.procfs, &config.paths.rootfs.join("etc/passwd"), DiscoveryConfig::default())
            .expect("discovery");
    let (found, stats) = discovery.scan(&Default::default()).expect("scan");
    assert_eq!(stats.processes_seen, 8);
    let found = found.into_iter().find(|f| f.key.pid == 201).expect("201 found");

    // Discovery has the process open; it exits before the collectors read it.
    std::fs::remove_dir_all(staged.proc().join("201")).expect("remove pid dir");
    let mut target = Target {
        key: found.key,
        identity: found.identity.expect("new process has an identity"),
        handle: found.handle,
        state: TargetState::Active,
        started_at: std::time::Instant::now(),
        readings: Readings::default(),
        gaps: Default::default(),
        exported_once: true,
        stat: None,
        leak: None,
    };
    let mut procfs = ProcfsCollector::new(&config.paths.procfs, false);
    assert!(procfs.read(target.handle.as_ref().unwrap(), None, None).is_err(), "read of a gone process");
    assert!(matches!(procfs.collect(&mut target), Outcome::Vanished), "procfs collector");
    let mut cgroup = CgroupCollector::new(&config.paths.sysfs.join("fs/cgroup"));
    assert!(matches!(cgroup.collect(&mut target), Outcome::Vanished), "cgroup collector");
    assert!(target.readings.procfs.is_none() && target.readings.cgroup.is_none());
}
