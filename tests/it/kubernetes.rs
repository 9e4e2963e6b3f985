//! Pod, namespace and container labels without the API server (`src/collect/kubernetes.rs`):
//! the cgroup files of every runtime and driver (`tests/fixtures/kubernetes/cgroup/`), a fixture
//! node (a `/proc` tree made of them, the kubelet's log directories, a cgroup hierarchy with a pod
//! seen from a private cgroup namespace) run through the real sampler, and a real Node.js process
//! in a real cgroup named like a pod's container, watched by the real exporter with a fake rootfs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodejs_leak_exporter::collect::kubernetes::{container_from_cgroup_file, Runtime};
use nodejs_leak_exporter::config::Config;
use nodejs_leak_exporter::sampler::{Sampler, Snapshot};
use tokio::sync::watch;

use crate::util::{self, metric_value, series, Exporter, NodeApp};

fn fixtures() -> PathBuf {
    util::repo().join("tests/fixtures")
}

fn cgroup_fixture(case: &str) -> String {
    let path = fixtures().join("kubernetes/cgroup").join(case);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const API: (&str, &str) =
    ("4462ebfc-5f91-4ef0-9cfb-ac6e7687a66e", "450ae2a1c5ed5571342c3967d286c8a160d1cf407d30366a02402f6d2c624511");
const CART_UID: &str = "07319acb-2c5d-41ba-bf73-3b03f994290a";
const CART_ID: &str = "16a94a9c12c7ee1a546c4c1c49df53f88bb061e93606e3899705d8bba5046216";

/// Each fixture case: the pod UID, container id and runtime its file names, and the names the
/// kubelet's log directories give it (the README's table).
#[allow(clippy::type_complexity)]
const CASES: &[(&str, Option<(&str, &str, Runtime)>, Option<(&str, &str, &str)>)] = &[
    (
        "containerd-v2-systemd-burstable",
        Some((API.0, API.1, Runtime::Containerd)),
        Some(("shop", "api-7d9f8b6c5-x2x9q", "node")),
    ),
    (
        "containerd-v1-cgroupfs-besteffort",
        Some((
            "9b3bc5ef-aee7-4516-8e18-7590451e5c33",
            "4813c751b2b3be6c60ca0d367e8a299310cdfb72d73cbb49580158534011e6c9",
            Runtime::Unknown,
        )),
        Some(("shop", "worker-0", "worker")),
    ),
    (
        "crio-v2-systemd-guaranteed",
        Some((
            "cc76b117-f768-4c1e-83c9-88cd9c8e744c",
            "b94f842932de4c58fb31845257065fec25f820d92927433fe1f10b7e7bf7121d",
            Runtime::CriO,
        )),
        Some(("payments", "billing-6c8d7f9b4-kq7zt", "billing")),
    ),
    (
        "crio-v1-systemd-burstable",
        Some((
            "14ab3659-11a7-4c5b-96ab-a45d681bf318",
            "615220bff02a2a0ee4cf43b7e467331322b30e6b270860e803d18fa7184915bc",
            Runtime::CriO,
        )),
        Some(("payments", "ledger-5f6d4c8b7-m2p4w", "ledger")),
    ),
    ("crio-v1-systemd-conmon", None, None),
    (
        "crio-v2-systemd-crun-subcgroup",
        Some((
            "fa37fe7a-e067-4fcb-81db-5b7fee4119c8",
            "930ae7dafbcd6289eeeec5ac1a25a066b42aec6a20df7a3e096270a124a53ccc",
            Runtime::CriO,
        )),
        Some(("web", "front-84f9c7d6b5-7xk2p", "ssr")),
    ),
    (
        "dockershim-v1-systemd-burstable",
        Some((
            "de4e69a0-8196-4dfc-9628-2981e3709a07",
            "4bb86ac5550908fd2894ef75a4b18b053e4a64d66d01bfb1bced6352b87f50a7",
            Runtime::Docker,
        )),
        Some(("legacy", "reports-1", "reports")),
    ),
    (
        "containerd-v2-private-cgroupns",
        Some((CART_UID, CART_ID, Runtime::Containerd)),
        Some(("shop", "cart-6b7c8d9e0f-abcde", "cart")),
    ),
    (
        "containerd-v2-systemd-besteffort-no-log-link",
        Some((
            "e20a9dfa-d71b-477d-8223-9bc604f53b23",
            "ebb23dd5174db6bd15a8e99dd31b7d8beb2d523adf09d2c86f50790306e3c852",
            Runtime::Containerd,
        )),
        Some(("batch", "nightly-28391", "job")),
    ),
    (
        "containerd-v1-cgroupfs-guaranteed-no-log-link",
        Some((
            "4eda7b83-a9b8-4a28-8640-7d4386de41b7",
            "4d569f9fae1f22da2f54fdf309e28580aeba55aaaf2a93891cf29d7e9ce16532",
            Runtime::Unknown,
        )),
        Some(("batch", "etl-1", "")),
    ),
    ("user-slice", None, None),
    ("docker-not-kubernetes", None, None),
    (
        "garbage-around-containerd-v2",
        Some((API.0, API.1, Runtime::Containerd)),
        Some(("shop", "api-7d9f8b6c5-x2x9q", "node")),
    ),
    ("garbage-only", None, None),
];

#[test]
fn cgroup_files_of_every_runtime_and_driver() {
    let mut listed: Vec<String> = std::fs::read_dir(fixtures().join("kubernetes/cgroup"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut known: Vec<String> = CASES.iter().map(|(case, _, _)| case.to_string()).collect();
    known.sort();
    assert_eq!(listed, known, "every fixture has its expectation");
    for (case, want, _) in CASES {
        let got = container_from_cgroup_file(&cgroup_fixture(case)).map(|c| (c.pod_uid, c.container_id, c.runtime));
        let want = want.map(|(uid, id, runtime)| (uid.to_string(), id.to_string(), runtime));
        assert_eq!(got, want, "{case}");
    }
}

/// Creates the entries of `var-log.txt` under `rootfs`, links rooted in it.
fn kubelet_log_dirs(rootfs: &Path) {
    let listing = std::fs::read_to_string(fixtures().join("kubernetes/var-log.txt")).unwrap();
    for line in listing.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (kind, rest) = line.split_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        match kind {
            "dir" => std::fs::create_dir_all(rootfs.join(rest)).unwrap(),
            "file" => {
                let path = rootfs.join(rest);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, "").unwrap();
            }
            "link" => {
                let (link, target) = rest.split_once(" -> ").unwrap_or_else(|| panic!("bad link {line:?}"));
                let link = rootfs.join(link);
                std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(rootfs.join(target.trim_start_matches('/')), link).unwrap();
            }
            _ => panic!("bad line {line:?}"),
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The cgroup v1 path of the memory hierarchy, or the v2 path, of a fixture cgroup file.
fn memory_path(file: &str) -> Option<(bool, String)> {
    let mut v2 = None;
    for line in file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if controllers.split(',').any(|c| c == "memory") {
            return Some((true, path.to_string()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((false, path.to_string()));
        }
    }
    v2
}

const POD_LIMIT: u64 = 256 << 20;

/// A node made of the fixtures: pid 1000 + i runs in case i's cgroup (a copy of the fixture
/// node process 100 of `tests/fixtures/proc`), a hybrid cgroup hierarchy holds every cgroup
/// (the private-namespace one where the host has it, under a pod with a limit), and the rootfs
/// holds the kubelet's log directories.
struct Node {
    _dir: tempfile::TempDir,
    config: Config,
    rootfs: PathBuf,
}

fn fixture_node() -> Node {
    let dir = tempfile::Builder::new().prefix("nle-k8s-").tempdir().unwrap();
    let root = dir.path();
    let (proc, sys, rootfs) = (root.join("proc"), root.join("sys/fs/cgroup"), root.join("rootfs"));
    copy_tree(&fixtures().join("rootfs"), &rootfs);
    kubelet_log_dirs(&rootfs);
    std::fs::create_dir_all(&proc).unwrap();
    for file in ["stat", "uptime"] {
        std::fs::copy(fixtures().join("proc").join(file), proc.join(file)).unwrap();
    }
    for (i, (case, _, _)) in CASES.iter().enumerate() {
        let pid = 1000 + i;
        let pid_dir = proc.join(pid.to_string());
        copy_tree(&fixtures().join("proc/100"), &pid_dir);
        let stat = std::fs::read_to_string(pid_dir.join("stat")).unwrap();
        std::fs::write(pid_dir.join("stat"), stat.replacen("100 (node)", &format!("{pid} (node)"), 1)).unwrap();
        let status = std::fs::read_to_string(pid_dir.join("status")).unwrap();
        let status: String = status
            .lines()
            .map(|l| match l.split_once(':') {
                Some(("Tgid" | "Pid", _)) => format!("{}\t{pid}\n", &l[..l.find(':').unwrap() + 1]),
                // Inside its pod's pid namespace, the app is pid 1.
                Some(("NSpid", _)) => format!("NSpid:\t{pid}\t1\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        std::fs::write(pid_dir.join("status"), status).unwrap();
        let cgroup = cgroup_fixture(case);
        std::fs::write(pid_dir.join("cgroup"), &cgroup).unwrap();
        // Its memory cgroup, in the hybrid hierarchy: v1 under memory/, v2 under unified/.
        let Some((v1, path)) = memory_path(&cgroup) else { continue };
        let path = if path.starts_with("/..") {
            // Where the host has it: the exporter's own pod is a sibling of this one.
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CART_ID}.scope", CART_UID.replace('-', "_"))
        } else {
            path
        };
        let hierarchy = sys.join(if v1 { "memory" } else { "unified" });
        let cg = hierarchy.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&cg).unwrap();
        let files: &[(&str, &str)] = if v1 {
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "73400320\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
            ]
        } else {
            &[("memory.max", "max\n"), ("memory.current", "73400320\n"), ("memory.events", "oom 0\noom_kill 0\n")]
        };
        for (name, text) in files {
            std::fs::write(cg.join(name), text).unwrap();
        }
        if path.contains(CART_ID) {
            std::fs::write(cg.parent().unwrap().join("memory.max"), format!("{POD_LIMIT}\n")).unwrap();
        }
    }
    // The exporter's own pod, from whose cgroup the private namespace's paths start.
    let burstable = sys.join("unified/kubepods.slice/kubepods-burstable.slice");
    let own = "kubepods-burstable-poda9e29bfa_c5ed_4541_97f2_5335146c9508.slice/cri-containerd-90f91e55283358b8766f6d8e7c288450c4ef33cca47a7b2320beb7e0e8a5b296.scope";
    std::fs::create_dir_all(burstable.join(own)).unwrap();
    let mut config = Config::default();
    config.paths.procfs = proc;
    config.paths.sysfs = root.join("sys");
    config.paths.rootfs = rootfs.clone();
    config.collectors.inspector.enabled = false;
    config.collectors.logs.enabled = false;
    Node { _dir: dir, config, rootfs }
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
            instance: "kubernetes-fixture".into(),
        };
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let sampler = Sampler::new(config, &context, tx).expect("sampler");
        Run { sampler, rx, _runtime: runtime }
    }

    fn sample(&mut self) -> String {
        self.sampler.sample_once();
        let snapshot = self.rx.borrow_and_update().clone();
        snapshot.metrics.clone()
    }
}

/// The value of `label` on every series of `name` for `pid`; `None` where it is absent.
fn label_of(text: &str, name: &str, pid: &str, label: &str) -> Vec<Option<String>> {
    series(text, name)
        .into_iter()
        .filter(|(l, _)| l.iter().any(|(k, v)| k == "pid" && v == pid))
        .map(|(l, _)| l.into_iter().find(|(k, _)| k == label).map(|(_, v)| v))
        .collect()
}

fn assert_names(text: &str, case: &str, pid: &str, want: Option<(&str, &str, &str)>) {
    for name in ["process_resident_memory_bytes", "nodejs_process_info", "nodejs_leak_suspected"] {
        for (label, want) in
            [("namespace", want.map(|w| w.0)), ("pod", want.map(|w| w.1)), ("container", want.map(|w| w.2))]
        {
            let got = label_of(text, name, pid, label);
            assert!(!got.is_empty(), "{case}: no {name} for pid {pid}");
            for g in got {
                assert_eq!(g.as_deref(), want, "{case}: {label} of {name} for pid {pid}");
            }
        }
    }
}

#[test]
fn a_fixture_node_labels_each_process_with_its_pod() {
    let node = fixture_node();
    let mut run = Run::new(&node.config);
    let text = run.sample();
    for (i, (case, _, names)) in CASES.iter().enumerate() {
        assert_names(&text, case, &(1000 + i).to_string(), *names);
    }
    // Seen from a private cgroup namespace, the cart's cgroup is found in the host hierarchy:
    // its pod's limit applies, and the info metric shows the host's path.
    let cart = (1000 + CASES.iter().position(|c| c.0 == "containerd-v2-private-cgroupns").unwrap()).to_string();
    let limit = metric_value(&text, "nodejs_memory_limit_bytes", &[("pid", &cart), ("source", "cgroup")]);
    assert_eq!(limit, Some(POD_LIMIT as f64), "{text}");
    let info =
        series(&text, "nodejs_process_info").into_iter().find(|(l, _)| l.iter().any(|(k, v)| k == "pid" && *v == cart));
    let cgroup = info.unwrap().0.into_iter().find(|(k, _)| k == "cgroup").unwrap().1;
    assert!(
        cgroup.starts_with("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod07319acb_")
            && !cgroup.contains(".."),
        "{cgroup}"
    );
    // The two entries that are not Kubernetes names, counted once each.
    let errors = metric_value(
        &text,
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "kubernetes"), ("reason", "parse")],
    );
    assert_eq!(errors, Some(2.0));

    // Names are kept per process: with the log directories gone they stay, and nothing is
    // counted again.
    std::fs::remove_dir_all(node.rootfs.join("var/log")).unwrap();
    let text = run.sample();
    for (i, (case, _, names)) in CASES.iter().enumerate() {
        assert_names(&text, case, &(1000 + i).to_string(), *names);
    }
    let errors = metric_value(
        &text,
        "nodejs_leak_exporter_collector_errors_total",
        &[("collector", "kubernetes"), ("reason", "parse")],
    );
    assert_eq!(errors, Some(2.0));
}

#[test]
fn without_the_collector_nothing_is_labelled() {
    let mut node = fixture_node();
    node.config.collectors.kubernetes.enabled = false;
    let text = Run::new(&node.config).sample();
    for (i, (case, _, _)) in CASES.iter().enumerate() {
        assert_names(&text, case, &(1000 + i).to_string(), None);
    }
}

/// A cgroup named like a pod's container (v1: under the test's own memory cgroup, cgroupfs
/// driver layout; v2: systemd driver layout), with a memory limit on the pod, and a sibling for
/// the exporter's own pod; removed on drop.
struct PodCgroup {
    /// Created directories, outermost first.
    created: Vec<PathBuf>,
    leaf: PathBuf,
    /// Where the exporter goes to see the pod from its own cgroup namespace, as in a DaemonSet.
    exporter: PathBuf,
}

impl PodCgroup {
    fn create(uid: &str, id: &str, limit: u64) -> PodCgroup {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let v1 = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            c.split(',').any(|c| c == "memory").then(|| path.to_string())
        });
        let unique = format!("nle-k8s-test-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let (base, parts, limit_file) = match &v1 {
            Some(path) => (
                Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')).join(unique),
                vec!["kubepods".to_string(), "burstable".into(), format!("pod{uid}"), id.to_string()],
                "memory.limit_in_bytes",
            ),
            None => (
                Path::new("/sys/fs/cgroup").join(unique),
                vec![
                    "kubepods.slice".to_string(),
                    "kubepods-burstable.slice".into(),
                    format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_")),
                    format!("cri-containerd-{id}.scope"),
                ],
                "memory.max",
            ),
        };
        let mut created = Vec::new();
        let mut dir = base.clone();
        for (i, part) in std::iter::once(None).chain(parts.iter().map(Some)).enumerate() {
            if let Some(part) = part {
                dir = dir.join(part);
            }
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
            created.push(dir.clone());
            // v2: the memory controller must be handed down to every level below.
            if v1.is_none() && i < parts.len() {
                std::fs::write(dir.join("cgroup.subtree_control"), "+memory")
                    .unwrap_or_else(|e| panic!("enable memory in {}: {e}", dir.display()));
            }
        }
        let pod = &created[created.len() - 2];
        std::fs::write(pod.join(limit_file), limit.to_string())
            .unwrap_or_else(|e| panic!("set {limit_file} in {}: {e}", pod.display()));
        let exporter = base.join("exporter");
        std::fs::create_dir(&exporter).unwrap_or_else(|e| panic!("create cgroup {}: {e}", exporter.display()));
        created.push(exporter.clone());
        PodCgroup { leaf: dir, created, exporter }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        // Its processes must be gone before a cgroup can go; the kernel takes a moment.
        for dir in self.created.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A pod UID and a container id no other run uses (the search for a cgroup seen from another
/// namespace refuses a path found twice).
fn unique_ids() -> (String, String) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seed = nanos ^ (u64::from(std::process::id()) << 32);
    let uid = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        seed >> 32,
        (seed >> 16) & 0xffff,
        seed & 0xfff,
        (seed >> 4) & 0xfff,
        seed & 0xffff_ffff_ffff
    );
    let id = format!("{seed:016x}{:016x}{:016x}{:016x}", seed.rotate_left(13), seed.rotate_left(29), !seed);
    (uid, id)
}

#[test]
fn a_real_node_process_in_a_pod_container_cgroup() {
    real_pod(false);
}

/// As in a DaemonSet on cgroup v2: the exporter has its own cgroup namespace, so the pod's path
/// reads `/../kubepods/...`; its cgroup is found in the mounted hierarchy all the same.
#[test]
fn a_real_pod_seen_from_the_exporters_own_cgroup_namespace() {
    real_pod(true);
}

fn real_pod(private_cgroupns: bool) {
    if !util::require_root("a pod's cgroup") {
        return;
    }
    let Some(node) = util::node() else { return };
    let unshare = if private_cgroupns {
        match util::require_tool("unshare") {
            Some(u) => Some(u),
            None => return,
        }
    } else {
        None
    };
    let (uid, id) = unique_ids();
    let (namespace, pod, container) = ("shop", "api-5d8c7b9f6-q4z8k", "node");
    let cgroup = PodCgroup::create(&uid, &id, POD_LIMIT);

    // The kubelet's log directories in a fake rootfs.
    let rootfs = tempfile::tempdir().unwrap();
    let pod_dir = rootfs.path().join(format!("var/log/pods/{namespace}_{pod}_{uid}/{container}"));
    std::fs::create_dir_all(&pod_dir).unwrap();
    let log = pod_dir.join("0.log");
    std::fs::write(&log, "2025-05-24T03:00:00.000000000Z stdout F listening on :8080\n").unwrap();
    let links = rootfs.path().join("var/log/containers");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink(&log, links.join(format!("{pod}_{namespace}_{container}-{id}.log"))).unwrap();

    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "echo $$ > '{}/cgroup.procs' && exec '{}' '{}'",
        cgroup.leaf.display(),
        node.display(),
        util::fixture_app("idle.js").display()
    ));
    let mut app = NodeApp::start(cmd);
    let pid = app.pid_label();
    let flag = format!("--path.rootfs={}", rootfs.path().display());
    let config = rootfs.path().join("only.yml");
    std::fs::write(&config, format!("discovery:\n  include: []\n  pids: [{pid}]\n")).unwrap();
    let config = format!("--config.file={}", config.display());
    let args = ["--no-collector.inspector", "--log.poll-interval=100ms", "--log.start-at=beginning", &flag, &config];
    let exporter = match &unshare {
        None => Exporter::start_with(std::process::Command::new(util::exporter_bin()), &args),
        Some(unshare) => {
            // The exporter joins its own cgroup, then takes it as its namespace's root.
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c")
                .arg(format!(
                    "echo $$ > '{}/cgroup.procs' && exec '{}' --cgroup \"$0\" \"$@\"",
                    cgroup.exporter.display(),
                    unshare.display()
                ))
                .arg(util::exporter_bin());
            Exporter::start_with(cmd, &args)
        }
    };
    if private_cgroupns {
        // The kernel writes cgroup paths relative to the reader's namespace: read as the exporter.
        let Some(nsenter) = util::require_tool("nsenter") else { return };
        let target = exporter.pid().to_string();
        let out = std::process::Command::new(nsenter)
            .args(["--cgroup", "--target", &target, "cat", &format!("/proc/{pid}/cgroup")])
            .output()
            .unwrap();
        let seen = String::from_utf8_lossy(&out.stdout);
        assert!(seen.contains(":/../"), "the exporter sees the pod outside its cgroup namespace: {seen}");
    }
    let names = [("pid", pid.as_str()), ("namespace", namespace), ("pod", pod), ("container", container)];
    exporter.wait_metric("process_resident_memory_bytes", &names);
    exporter.wait_metric("nodejs_process_info", &names);
    exporter.wait_metric("nodejs_leak_suspected", &[names.as_slice(), &[("signal", "rss")]].concat());
    // The pod's limit binds its container.
    let limit =
        exporter.wait_metric("nodejs_memory_limit_bytes", &[names.as_slice(), &[("source", "cgroup")]].concat());
    assert_eq!(limit, POD_LIMIT as f64);
    // The host's path, never one with `..`.
    let info = series(&exporter.metrics(), "nodejs_process_info");
    let cgroup_label = info
        .into_iter()
        .find(|(l, _)| l.iter().any(|(k, v)| k == "pid" && *v == pid))
        .and_then(|(l, _)| l.into_iter().find(|(k, _)| k == "cgroup"))
        .map(|(_, v)| v)
        .unwrap();
    assert!(cgroup_label.ends_with(&id) || cgroup_label.ends_with(&format!("{id}.scope")), "{cgroup_label}");
    assert!(!cgroup_label.contains(".."), "{cgroup_label}");
    // The status page's JSON names the pod too.
    let status = exporter.target(app.pid).expect("the app on /api/v1/targets");
    assert_eq!(status["kubernetes"]["namespace"], namespace, "{status}");
    assert_eq!(status["kubernetes"]["pod"], pod, "{status}");
    assert_eq!(status["kubernetes"]["container"], container, "{status}");

    // A warning the runtime wrote into the container's log is the process's, under the same names.
    let warning = format!(
        "2025-05-24T03:00:01.000000000Z stderr F (node:{pid}) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 close listeners added to [IncomingMessage]. MaxListeners is 10. Use emitter.setMaxListeners() to increase limit\n"
    );
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(warning.as_bytes()).unwrap();
    let listeners = exporter.wait_metric(
        "nodejs_max_listeners_exceeded_warnings_total",
        &[names.as_slice(), &[("event", "close"), ("emitter", "IncomingMessage")]].concat(),
    );
    assert_eq!(listeners, 1.0);
    exporter
        .wait_metric("nodejs_warnings_total", &[names.as_slice(), &[("name", "MaxListenersExceededWarning")]].concat());

    // The container restarts (a new id for the same pod container): its restart carries the names.
    let restarted = "d".repeat(64);
    let next_log = pod_dir.join("1.log");
    std::fs::write(&next_log, "2025-05-24T03:05:00.000000000Z stdout F listening on :8080\n").unwrap();
    std::os::unix::fs::symlink(&next_log, links.join(format!("{pod}_{namespace}_{container}-{restarted}.log")))
        .unwrap();
    let restarts = exporter.wait_metric(
        "nodejs_process_restarts_total",
        &[("app", container), ("namespace", namespace), ("pod", pod), ("container", container)],
    );
    assert_eq!(restarts, 1.0);

    // Every series of the process carries the same names, and no warning went unattributed.
    let text = exporter.metrics();
    let own: Vec<&str> = text.lines().filter(|l| l.contains(&format!("pid=\"{pid}\""))).collect();
    assert!(own.len() > 10, "{text}");
    for line in own {
        for (k, v) in &names[1..] {
            assert!(line.contains(&format!("{k}=\"{v}\"")), "{line} lacks {k}={v}");
        }
    }
    assert!(
        !text.lines().any(|l| l.starts_with("nodejs_max_listeners_exceeded_warnings_total") && l.contains("pid=\"\"")),
        "{text}"
    );
    if let Some(promtool) = util::require_tool("promtool") {
        util::promtool_check(&promtool, &text);
    }
    drop(exporter);
    app.kill();
}
