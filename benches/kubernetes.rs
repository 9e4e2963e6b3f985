//! Kubernetes costs (issue 9), side by side in one run, printed as markdown tables:
//!
//! 1. Opening an inspector connection inside a pod's network namespace: connect+close cycles to
//!    a Node.js listener in the bench's own namespace through `DirectConnector` and
//!    `NetnsConnector` (its same-namespace path), and to one in a namespace of its own
//!    (`unshare --net`) through `NetnsConnector` (a thread and `setns` per connection),
//!    interleaved. Needs root, `unshare`, `ip` and `node`; skipped otherwise.
//! 2. Pod labels: the real cgroup and kubernetes collectors over a fixture node (a `/proc` tree
//!    of 50, 200 and 1,000 Node.js processes, one per pod, the kubelet's log directories, a
//!    cgroup v2 hierarchy), found by the real discovery: the first sample (listings), later
//!    samples (cached), a sample where a new pod appears (one re-listing), and the bytes the
//!    collector keeps (a counting allocator).
//! 3. Cgroup paths seen from a private cgroup namespace (`/../../kubepods-...`): resolving those
//!    of 200 pods under a fixture hierarchy, with a fresh resolver and then cached; systemd and
//!    cgroupfs driver layouts, on fixture directories and, as root, on the real cgroupfs (made
//!    under the bench's own cgroup, removed after). `Resolver::join` is what `locate_with` calls
//!    once it has taken the path from a `/proc/PID/cgroup` line.
//!
//! `cargo bench --bench kubernetes` (`-- --quick` for fewer rounds). Asserts only that what is
//! timed gave the right answer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nodejs_leak_exporter::collect::cgroup::{CgroupCollector, Resolver};
use nodejs_leak_exporter::collect::kubernetes::{KubernetesCollector, PodLabels};
use nodejs_leak_exporter::collect::Collector;
use nodejs_leak_exporter::config::DiscoveryConfig;
use nodejs_leak_exporter::connector::{self, Connector, DirectConnector, NetnsConnector};
use nodejs_leak_exporter::discovery::Discovery;
use nodejs_leak_exporter::target::{Registry, TargetState};

/// Live heap bytes, to weigh what the collector keeps between samples.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

struct Rounds {
    connects: usize,
    warm_samples: usize,
    new_pods: usize,
    resolver_rounds: usize,
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: only `cargo bench`
    // (or `cargo run --release --bench ...` with `--bench`) measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("not measuring: run with `cargo bench --bench <name>`");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick {
        Rounds { connects: 300, warm_samples: 8, new_pods: 4, resolver_rounds: 3 }
    } else {
        Rounds { connects: 2000, warm_samples: 30, new_pods: 10, resolver_rounds: 7 }
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "{cpus} CPUs, Linux {}, {} build{}.",
        kernel.trim(),
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if quick { ", --quick" } else { "" }
    );
    println!();
    connect_costs(rounds.connects);
    println!();
    pod_label_costs(&rounds);
    println!();
    resolution_costs(&rounds);
}

// ---------------------------------------------------------------------------------------------
// 1. Connections inside another network namespace
// ---------------------------------------------------------------------------------------------

/// A Node.js TCP server on 127.0.0.1 that closes what it accepts; in a network namespace of its
/// own (loopback up) when `own_netns`. The spawned pid is the server's: every step execs.
struct Listener {
    child: Child,
    addr: SocketAddr,
}

impl Listener {
    fn start(own_netns: bool) -> Option<Listener> {
        const SERVER: &str = "const s = require('net').createServer((c) => c.destroy()); \
            s.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => console.log(s.address().port));";
        let mut cmd = if own_netns {
            let mut c = Command::new("unshare");
            c.args(["--net", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh", "node", "-e", SERVER]);
            c
        } else {
            let mut c = Command::new("node");
            c.args(["-e", SERVER]);
            c
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().ok()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        Some(Listener { child, addr: ([127, 0, 0, 1], port).into() })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn connect_costs(n: usize) {
    println!("### Connect cost: {n} connect+close cycles per path, interleaved");
    println!();
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| connector::parse_cap_eff(&s))
        .is_some_and(|caps| connector::has_capability(caps, connector::cap::SYS_ADMIN));
    let missing: Vec<&str> = ["unshare", "ip", "node"].into_iter().filter(|t| !tool(t)).collect();
    if !root || !missing.is_empty() {
        println!(
            "Not run: needs CAP_SYS_ADMIN (root) and unshare, ip, node{}.",
            if missing.is_empty() { String::new() } else { format!(" (missing: {})", missing.join(", ")) }
        );
        return;
    }
    let (Some(here), Some(pod)) = (Listener::start(false), Listener::start(true)) else {
        println!("Not run: a listener did not start.");
        return;
    };
    let own = connector::own_netns().expect("own network namespace");
    assert_eq!(connector::netns_of(Path::new("/proc"), here.pid()).ok(), Some(own));
    assert_ne!(connector::netns_of(Path::new("/proc"), pod.pid()).ok(), Some(own), "the pod has its own namespace");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let direct = DirectConnector;
    let netns = NetnsConnector::new(PathBuf::from("/proc"));
    let paths: [(&str, &str, &dyn Connector, &Listener); 3] = [
        ("`DirectConnector`", "own netns", &direct, &here),
        (
            "`NetnsConnector`, same namespace (open + fstat of `/proc/PID/ns/net`, then direct)",
            "own netns",
            &netns,
            &here,
        ),
        ("`NetnsConnector`, other namespace (a thread, `setns`, connect)", "`unshare --net`", &netns, &pod),
    ];
    let timeout = Duration::from_secs(2);
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(n); paths.len()];
    let warmup = (n / 10).max(50);
    for i in 0..warmup + n {
        for (k, (_, _, c, listener)) in paths.iter().enumerate() {
            let t0 = Instant::now();
            let stream = runtime.block_on(c.connect(listener.pid(), listener.addr, timeout)).expect("connect");
            drop(stream);
            let us = t0.elapsed().as_secs_f64() * 1e6;
            if i >= warmup {
                times[k].push(us);
            }
        }
    }
    let stats: Vec<(f64, f64, f64)> =
        times.iter_mut().map(|t| (percentile(t, 0.5), percentile(t, 0.99), mean(t))).collect();
    let base = stats[0].0;
    println!("| path | listener | p50 | p99 | mean | p50 / direct |");
    println!("|---|---|---:|---:|---:|---:|");
    for ((name, listener, _, _), (p50, p99, avg)) in paths.iter().zip(&stats) {
        println!("| {name} | {listener} | {p50:.1} µs | {p99:.1} µs | {avg:.1} µs | {:.2}× |", p50 / base);
    }
    let extra = stats[2].0 - stats[0].0;
    println!();
    println!(
        "Entering the namespace adds {extra:.1} µs per connection (p50, {:.1} µs at p99). A session is opened once per \
         process and kept (reconnect with backoff): 200 pods cost {:.1} ms of connects once; even a reconnect at every 5 s \
         sample would be {:.4}% of a core.",
        stats[2].1 - stats[0].1,
        200.0 * stats[2].0 / 1e3,
        stats[2].0 / 5e6 * 100.0
    );
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    percentile(&mut v, 0.5)
}

// ---------------------------------------------------------------------------------------------
// Fixture pods
// ---------------------------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Clone, Copy, PartialEq)]
enum Qos {
    Burstable,
    BestEffort,
    Guaranteed,
}

/// One pod: an app container `node` (the Node.js process) and a sidecar `envoy`.
struct Pod {
    namespace: String,
    name: String,
    uid: String,
    node_id: String,
    sidecar_id: String,
    qos: Qos,
}

impl Pod {
    fn new(i: usize) -> Pod {
        let h = |k: u64| splitmix((i as u64) << 8 | k);
        let id = |k: u64| format!("{:016x}{:016x}{:016x}{:016x}", h(k), h(k + 1), h(k + 2), h(k + 3));
        let (a, b) = (h(10), h(11));
        let uid = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        );
        let apps = ["api", "worker", "cart", "checkout", "search", "billing", "ledger", "front", "reports", "notify"];
        let namespaces = ["shop", "payments", "web", "batch", "platform"];
        Pod {
            namespace: namespaces[i % namespaces.len()].to_string(),
            name: format!("{}-{:09x}-{:05x}", apps[i % apps.len()], h(12) >> 28, i),
            uid,
            node_id: id(20),
            sidecar_id: id(30),
            qos: [Qos::Burstable, Qos::Burstable, Qos::BestEffort, Qos::Guaranteed][i % 4],
        }
    }

    /// The app container's cgroup, systemd driver, as the host sees it.
    fn systemd_path(&self) -> String {
        let uid = self.uid.replace('-', "_");
        let scope = format!("cri-containerd-{}.scope", self.node_id);
        match self.qos {
            Qos::Burstable => {
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/{scope}")
            }
            Qos::BestEffort => {
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/{scope}")
            }
            Qos::Guaranteed => format!("/kubepods.slice/kubepods-pod{uid}.slice/{scope}"),
        }
    }

    /// The same, as a process in the exporter's own (burstable) pod sees it from its cgroup
    /// namespace.
    fn systemd_path_from_a_pod(&self) -> String {
        let uid = self.uid.replace('-', "_");
        let scope = format!("cri-containerd-{}.scope", self.node_id);
        match self.qos {
            Qos::Burstable => format!("/../../kubepods-burstable-pod{uid}.slice/{scope}"),
            Qos::BestEffort => {
                format!("/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/{scope}")
            }
            Qos::Guaranteed => format!("/../../../kubepods-pod{uid}.slice/{scope}"),
        }
    }

    /// The app container's cgroup, cgroupfs driver, as the host sees it.
    fn cgroupfs_path(&self) -> String {
        match self.qos {
            Qos::Burstable => format!("/kubepods/burstable/pod{}/{}", self.uid, self.node_id),
            Qos::BestEffort => format!("/kubepods/besteffort/pod{}/{}", self.uid, self.node_id),
            Qos::Guaranteed => format!("/kubepods/pod{}/{}", self.uid, self.node_id),
        }
    }

    fn cgroupfs_path_from_a_pod(&self) -> String {
        match self.qos {
            Qos::Burstable => format!("/../../pod{}/{}", self.uid, self.node_id),
            Qos::BestEffort => format!("/../../../besteffort/pod{}/{}", self.uid, self.node_id),
            Qos::Guaranteed => format!("/../../../pod{}/{}", self.uid, self.node_id),
        }
    }

    /// The kubelet's log directories for both containers: `var/log/pods/<ns>_<pod>_<uid>/<c>/0.log`
    /// and the `var/log/containers/<pod>_<ns>_<c>-<id>.log` links to them.
    fn write_logs(&self, rootfs: &Path) {
        let pod_dir = rootfs.join(format!("var/log/pods/{}_{}_{}", self.namespace, self.name, self.uid));
        for (container, id) in [("node", &self.node_id), ("envoy", &self.sidecar_id)] {
            let dir = pod_dir.join(container);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("0.log"), "").unwrap();
            let link = rootfs.join(format!("var/log/containers/{}_{}_{container}-{id}.log", self.name, self.namespace));
            std::os::unix::fs::symlink(dir.join("0.log"), link).unwrap();
        }
    }
}

/// The exporter's own pod: where the private cgroup namespace's paths start.
fn exporter_pod() -> Pod {
    let mut pod = Pod::new(usize::MAX >> 8);
    pod.qos = Qos::Burstable;
    pod
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

// ---------------------------------------------------------------------------------------------
// 2. Pod labels through the real collectors
// ---------------------------------------------------------------------------------------------

/// A node: `proc/` (the fixture process 100 of `tests/fixtures/proc` copied per pod, with the
/// pod's cgroup), `rootfs/` (the fixture rootfs and the kubelet's log directories) and
/// `sys/fs/cgroup` (cgroup v2, each app container's cgroup with its memory files).
struct Node {
    dir: tempfile::TempDir,
    pods: Vec<Pod>,
}

const FIRST_PID: usize = 10_000;

impl Node {
    fn new(pods: usize) -> Node {
        let dir = tempfile::Builder::new().prefix("nle-k8s-").tempdir().unwrap();
        let root = dir.path();
        copy_tree(&repo().join("tests/fixtures/rootfs"), &root.join("rootfs"));
        std::fs::create_dir_all(root.join("rootfs/var/log/containers")).unwrap();
        std::fs::create_dir_all(root.join("rootfs/var/log/pods")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        for file in ["stat", "uptime"] {
            std::fs::copy(repo().join("tests/fixtures/proc").join(file), root.join("proc").join(file)).unwrap();
        }
        let cgroup = root.join("sys/fs/cgroup");
        std::fs::create_dir_all(&cgroup).unwrap();
        std::fs::write(cgroup.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let mut node = Node { dir, pods: Vec::new() };
        for _ in 0..pods {
            node.add_pod();
        }
        node
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A new pod with its Node.js process, as the kubelet and the runtime leave it.
    fn add_pod(&mut self) {
        let i = self.pods.len();
        let pod = Pod::new(i);
        let root = self.root();
        pod.write_logs(&root.join("rootfs"));
        let path = pod.systemd_path();
        let cg = root.join("sys/fs/cgroup").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&cg).unwrap();
        for (name, text) in
            [("memory.max", "max\n"), ("memory.current", "73400320\n"), ("memory.events", "oom 0\noom_kill 0\n")]
        {
            std::fs::write(cg.join(name), text).unwrap();
        }
        std::fs::write(cg.parent().unwrap().join("memory.max"), "268435456\n").unwrap();
        let pid = FIRST_PID + i;
        let pid_dir = root.join("proc").join(pid.to_string());
        copy_tree(&repo().join("tests/fixtures/proc/100"), &pid_dir);
        let stat = std::fs::read_to_string(pid_dir.join("stat")).unwrap();
        std::fs::write(pid_dir.join("stat"), stat.replacen("100 (node)", &format!("{pid} (node)"), 1)).unwrap();
        let status: String = std::fs::read_to_string(pid_dir.join("status"))
            .unwrap()
            .lines()
            .map(|l| match l.split_once(':') {
                Some((key @ ("Tgid" | "Pid"), _)) => format!("{key}:\t{pid}\n"),
                Some(("NSpid", _)) => format!("NSpid:\t{pid}\t1\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        std::fs::write(pid_dir.join("status"), status).unwrap();
        std::fs::write(pid_dir.join("cgroup"), format!("0::{path}\n")).unwrap();
        self.pods.push(pod);
    }
}

/// The sampler's discovery and collection steps for the cgroup and kubernetes collectors, timed
/// per collector as the sampler times them (`collector_duration_seconds`).
struct Sampling {
    discovery: Discovery,
    registry: Registry,
    cgroup: CgroupCollector,
    kubernetes: KubernetesCollector,
}

struct SampleCost {
    cgroup: Duration,
    kubernetes: Duration,
    /// Live heap bytes after the kubernetes collector minus before it.
    kubernetes_kept: isize,
}

impl Sampling {
    fn new(node: &Node) -> Sampling {
        let root = node.root();
        let config = DiscoveryConfig { min_age: Duration::ZERO, ..DiscoveryConfig::default() };
        Sampling {
            discovery: Discovery::new(&root.join("proc"), &root.join("rootfs/etc/passwd"), config).unwrap(),
            registry: Registry::new(Duration::ZERO, Duration::from_secs(60)),
            cgroup: CgroupCollector::new(&root.join("sys/fs/cgroup")),
            kubernetes: KubernetesCollector::new(&root.join("rootfs")),
        }
    }

    fn sample(&mut self) -> SampleCost {
        let known: HashMap<i32, (&procfs::process::Process, u64)> = self
            .registry
            .iter()
            .filter(|t| !matches!(t.state, TargetState::Exited { .. }))
            .filter_map(|t| t.handle.as_ref().map(|h| (t.key.pid, (h, t.key.start_ticks))))
            .collect();
        let (found, _) = self.discovery.scan(&known).expect("scan");
        drop(known);
        self.registry.update(found, Instant::now(), |_| Duration::from_secs(3600));
        let cgroup = run_collector(&mut self.cgroup, &mut self.registry);
        let before = live_bytes();
        let kubernetes = run_collector(&mut self.kubernetes, &mut self.registry);
        let kubernetes_kept = live_bytes() as isize - before as isize;
        SampleCost { cgroup, kubernetes, kubernetes_kept }
    }

    /// Every target has its pod's names, from its own log file.
    fn check_labels(&self, pods: &[Pod]) {
        let mut labelled = 0;
        for t in self.registry.iter() {
            let pod = &pods[t.key.pid as usize - FIRST_PID];
            let k = t.readings.kubernetes.as_ref().expect("kubernetes readings");
            let want = PodLabels { namespace: pod.namespace.clone(), pod: pod.name.clone(), container: "node".into() };
            assert_eq!(k.labels.as_ref(), Some(&want), "pid {}", t.key.pid);
            assert!(k.complete);
            labelled += 1;
        }
        assert_eq!(labelled, pods.len());
    }

    /// Heap bytes the targets' own kubernetes readings hold (their strings).
    fn readings_bytes(&self) -> usize {
        self.registry
            .iter()
            .filter_map(|t| t.readings.kubernetes.as_ref())
            .map(|k| {
                k.cgroup_path.capacity()
                    + k.container.as_ref().map_or(0, |c| c.pod_uid.capacity() + c.container_id.capacity())
                    + k.labels
                        .as_ref()
                        .map_or(0, |l| l.namespace.capacity() + l.pod.capacity() + l.container.capacity())
            })
            .sum()
    }
}

/// What the sampler's `collect_all` does for one collector.
fn run_collector(collector: &mut dyn Collector, registry: &mut Registry) -> Duration {
    let started = Instant::now();
    collector.begin_sample();
    for target in registry.iter_mut() {
        if matches!(target.state, TargetState::Exited { .. }) {
            collector.collect_exited(target);
            continue;
        }
        let outcome = collector.collect(target);
        std::hint::black_box(outcome);
    }
    started.elapsed()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pod_label_costs(rounds: &Rounds) {
    println!(
        "### Pod labels: the cgroup and kubernetes collectors over a fixture node, one Node.js process per pod \
         (2 containers each), {} warm samples, {} new pods",
        rounds.warm_samples, rounds.new_pods
    );
    println!();
    println!(
        "| pods | entries listed (`containers/` + `pods/`) | first sample (cold: both listings) | later samples (cached), per sample | \
         per process | sample with a new pod (one re-listing) | re-listing ≈ | cache kept | per pod | \
         cgroup collector per sample (context; fixture files) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pods in [50, 200, 1000] {
        let mut node = Node::new(pods);
        let mut sampling = Sampling::new(&node);
        let cold = sampling.sample();
        sampling.check_labels(&node.pods);
        let readings = sampling.readings_bytes();
        let cache = cold.kubernetes_kept - readings as isize;
        let mut warm = Vec::new();
        let mut warm_cgroup = Vec::new();
        for _ in 0..rounds.warm_samples {
            let cost = sampling.sample();
            warm.push(us(cost.kubernetes));
            warm_cgroup.push(us(cost.cgroup));
        }
        let mut new_pod = Vec::new();
        for _ in 0..rounds.new_pods {
            node.add_pod();
            new_pod.push(us(sampling.sample().kubernetes));
        }
        sampling.check_labels(&node.pods);
        let warm = median(warm);
        let new_pod = median(new_pod);
        println!(
            "| {pods} | {} + {pods} | {:.0} µs ({:.1} µs per process) | {warm:.0} µs | {:.2} µs | {new_pod:.0} µs | \
             {:.0} µs | {:.0} KiB (+{:.0} B of readings per process) | {:.0} B | {:.0} µs |",
            2 * pods,
            us(cold.kubernetes),
            us(cold.kubernetes) / pods as f64,
            warm / pods as f64,
            new_pod - warm,
            cache as f64 / 1024.0,
            readings as f64 / pods as f64,
            cache as f64 / pods as f64,
            median(warm_cgroup),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Cgroup paths from a private cgroup namespace
// ---------------------------------------------------------------------------------------------

const RESOLVE_PODS: usize = 200;

#[derive(Clone, Copy)]
enum Driver {
    Systemd,
    Cgroupfs,
}

/// A hierarchy of `RESOLVE_PODS` pods (and the exporter's) under `base`, with what else a node
/// has at the top (system services, a user session). Returns the directories made, outermost
/// first, and the pods' paths as the exporter's pod sees them.
fn build_hierarchy(base: &Path, driver: Driver) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let mut made = Vec::new();
    let mut mkdirs = |rel: &str| {
        let mut at = base.to_path_buf();
        for part in rel.trim_start_matches('/').split('/') {
            at.push(part);
            if !at.exists() {
                std::fs::create_dir(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
                made.push(at.clone());
            }
        }
    };
    for i in 0..40 {
        mkdirs(&format!("/system.slice/svc{i}.service"));
    }
    mkdirs("/user.slice/user-0.slice/session-1.scope");
    mkdirs("/init.scope");
    let pods: Vec<Pod> = (0..RESOLVE_PODS).map(Pod::new).chain(std::iter::once(exporter_pod())).collect();
    let mut paths = Vec::new();
    for pod in &pods {
        let (host, seen) = match driver {
            Driver::Systemd => (pod.systemd_path(), pod.systemd_path_from_a_pod()),
            Driver::Cgroupfs => (pod.cgroupfs_path(), pod.cgroupfs_path_from_a_pod()),
        };
        mkdirs(&host);
        paths.push((seen, host));
    }
    paths.pop();
    (made, paths)
}

/// Resolves every path with a fresh resolver (cold), then again with the same one (cached).
/// Returns µs for all paths cold (median of rounds) and µs per path cached.
fn time_resolution(base: &Path, paths: &[(String, String)], rounds: usize) -> (f64, f64) {
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..rounds {
        let mut resolver = Resolver::default();
        let t0 = Instant::now();
        for (seen, _) in paths {
            std::hint::black_box(resolver.join(base, seen));
        }
        cold.push(us(t0.elapsed()));
        for _ in 0..5 {
            let t0 = Instant::now();
            for (seen, _) in paths {
                std::hint::black_box(resolver.join(base, seen));
            }
            cached.push(us(t0.elapsed()) / paths.len() as f64);
        }
        for (seen, host) in paths {
            assert_eq!(resolver.join(base, seen).map(|(_, p)| p).as_deref(), Some(host.as_str()), "{seen}");
        }
    }
    (median(cold), median(cached))
}

/// Our own cgroup directory on the real cgroupfs, where cgroups can be made (root only).
fn own_cgroup_dir() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v2 = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        }
    }
    v2.filter(|p| p.join("cgroup.controllers").exists())
}

/// Cgroups made on the real cgroupfs, removed innermost first.
struct RealCgroups(Vec<PathBuf>);

impl Drop for RealCgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn resolution_costs(rounds: &Rounds) {
    println!(
        "### Private cgroup namespace: resolving the `..` paths of {RESOLVE_PODS} pods (fresh resolver, then cached), \
         median of {} rounds",
        rounds.resolver_rounds
    );
    println!();
    println!("| hierarchy | driver, how a path is found | all {RESOLVE_PODS} paths, cold | per path, cold | per path, cached |");
    println!("|---|---|---:|---:|---:|");
    let mut rows = Vec::new();
    let fixture = tempfile::Builder::new().prefix("nle-cgroupns-").tempdir().unwrap();
    let fs = fs_type(fixture.path());
    for (driver, name) in [
        (Driver::Systemd, "systemd: the slice's name says where its parents are"),
        (Driver::Cgroupfs, "cgroupfs: levels searched (4 deep)"),
    ] {
        let base = fixture.path().join(match driver {
            Driver::Systemd => "systemd",
            Driver::Cgroupfs => "cgroupfs",
        });
        std::fs::create_dir(&base).unwrap();
        let (_, paths) = build_hierarchy(&base, driver);
        rows.push((
            format!("fixture directories ({fs})"),
            name,
            time_resolution(&base, &paths, rounds.resolver_rounds),
        ));
    }
    let real = own_cgroup_dir().map(|own| own.join(format!("nle-bench-{}", std::process::id())));
    match real.as_ref().map(|dir| std::fs::create_dir(dir).map(|_| dir)) {
        Some(Ok(dir)) => {
            let mut made = RealCgroups(vec![dir.clone()]);
            let hierarchy = if dir.starts_with("/sys/fs/cgroup/memory") { "v1 memory" } else { "v2" };
            for (driver, name, sub) in [
                (Driver::Systemd, "systemd: the slice's name says where its parents are", "systemd"),
                (Driver::Cgroupfs, "cgroupfs: levels searched (4 deep)", "cgroupfs"),
            ] {
                let base = dir.join(sub);
                std::fs::create_dir(&base).unwrap();
                made.0.push(base.clone());
                let (dirs, paths) = build_hierarchy(&base, driver);
                made.0.extend(dirs);
                rows.push((
                    format!("real cgroupfs ({hierarchy}, control files in every directory)"),
                    name,
                    time_resolution(&base, &paths, rounds.resolver_rounds),
                ));
            }
        }
        Some(Err(e)) => eprintln!("real cgroupfs rows not run: {e}"),
        None => eprintln!("real cgroupfs rows not run: no cgroup directory of our own"),
    }
    for (hierarchy, driver, (cold, cached)) in rows {
        println!(
            "| {hierarchy} | {driver} | {:.2} ms | {:.1} µs | {cached:.2} µs |",
            cold / 1e3,
            cold / RESOLVE_PODS as f64
        );
    }
}

/// The file system type of `path`, from `/proc/self/mountinfo` (longest matching mount point).
fn fs_type(path: &Path) -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let mount = *fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fs_type = fields.get(dash + 1)?.to_string();
            path.starts_with(mount).then_some((mount.len(), fs_type))
        })
        .max()
        .map(|(_, t)| t)
        .unwrap_or_else(|| "?".into())
}
