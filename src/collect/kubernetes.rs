//! The kubernetes collector: the namespace, pod and container of each process that runs in a
//! Kubernetes container, without the API server.
//!
//! The pod UID and the container id are in the process's cgroup path (`/proc/PID/cgroup`), under
//! every cgroup driver and runtime; their names are in the file names the kubelet gives container
//! logs: `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` and
//! `/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/`. So the names come from directory
//! listings under `--path.rootfs`: no file is read, nothing goes over the network, and the labels
//! agree with those the logs collector gives the same container's log lines.
//!
//! It owns `Readings::kubernetes`; the exposition adds `namespace`, `pod` and `container` to
//! every series of a process whose names are known, and to no other. A process's names are
//! looked up once, and again only when its cgroup path changes. The listings are cached and
//! re-read only for an id not in the cache, at most once per sample, and each re-read replaces
//! the cache, so it holds only what the node still has. On a host without Kubernetes it parses
//! each process's cgroup path and lists nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Collector, Gap, Outcome, Reason, Report};
use crate::exposition::Families;
use crate::target::Target;

/// A process's Kubernetes names, as its series are labelled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodLabels {
    pub namespace: String,
    pub pod: String,
    /// Empty when only the pod is known (its containers' log files are gone and it has several).
    pub container: String,
}

/// The container runtime, from the name of the container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `cri-containerd-<id>.scope` (systemd driver).
    Containerd,
    /// `crio-<id>.scope` or `crio-<id>`.
    CriO,
    /// `docker-<id>.scope` (dockershim, systemd driver).
    Docker,
    /// A bare `<id>`: the cgroupfs driver of containerd or Docker.
    Unknown,
}

/// What a cgroup path says about a Kubernetes container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod UID as the API and `/var/log/pods` write it (dashes, not the slice's underscores).
    pub pod_uid: String,
    /// 64 lowercase hex digits.
    pub container_id: String,
    pub runtime: Runtime,
}

/// What the collector knows of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesReadings {
    /// The cgroup path it was read from: nothing is looked up again until it changes.
    pub cgroup_path: String,
    /// The Kubernetes container the path names, if any.
    pub container: Option<ContainerRef>,
    /// Its names, once known.
    pub labels: Option<PodLabels>,
    /// Whether the names are final: found from the container's own log file, or from a pod with
    /// one container. Partial names are looked up again (rarely) until they are.
    pub complete: bool,
}

impl KubernetesReadings {
    /// The `namespace`, `pod` and `container` labels of the process's series, when known.
    pub fn label_pairs(&self) -> Option<[(&'static str, &str); 3]> {
        let l = self.labels.as_ref()?;
        Some([("namespace", l.namespace.as_str()), ("pod", l.pod.as_str()), ("container", l.container.as_str())])
    }
}

/// The container id in a cgroup path (`.../cri-containerd-<64 hex>.scope`, `docker-<id>.scope`,
/// `crio-<id>.scope`, `/kubepods/.../<id>`): the last run of exactly 64 hex digits. Also finds
/// plain Docker containers; the logs collector maps `(node:PID)` in a container's log with it.
pub fn container_id_from_cgroup(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    let mut end = bytes.len();
    while end >= 64 {
        let start = end - 64;
        if bytes[start..end].iter().all(u8::is_ascii_hexdigit)
            && (start == 0 || !bytes[start - 1].is_ascii_hexdigit())
            && (end == bytes.len() || !bytes[end].is_ascii_hexdigit())
        {
            return path.get(start..end);
        }
        end -= 1;
    }
    None
}

/// The Kubernetes container of a `/proc/PID/cgroup` file: the v2 `0::` line first, then the v1
/// lines in order (every hierarchy's path names the same pod and container). Lines that do not
/// parse are skipped.
pub fn container_from_cgroup_file(text: &str) -> Option<ContainerRef> {
    read_cgroup_file_text(text).1
}

/// The path that says which container a process is in (the line that named one, else the v2
/// line, else the first), and that container.
fn read_cgroup_file_text(text: &str) -> (&str, Option<ContainerRef>) {
    fn path_of(line: &str) -> Option<(bool, &str)> {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        Some((id == "0" && controllers.is_empty(), path))
    }
    let paths: Vec<(bool, &str)> = text.lines().filter_map(path_of).collect();
    let unified = paths.iter().filter(|(v2, _)| *v2);
    let v1 = paths.iter().filter(|(v2, _)| !*v2);
    let mut in_order = unified.chain(v1);
    let first = in_order.clone().next().map(|(_, p)| *p).unwrap_or_default();
    match in_order.find_map(|(_, path)| Some((*path, container_from_cgroup_path(path)?))) {
        Some((path, container)) => (path, Some(container)),
        None => (first, None),
    }
}

/// The Kubernetes container a cgroup path names, under every layout the kubelet makes:
///
/// - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`,
///   `kubepods-besteffort-pod…`, `kubepods-pod<uid>.slice` (guaranteed), `crio-<id>.scope`,
///   `docker-<id>.scope`, under any parent (`/kubelet.slice/kubelet-kubepods.slice/…` in kind);
/// - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>`,
///   `…/pod<uid>/crio-<id>`;
/// - seen from a private cgroup namespace (cgroup v2 in a pod): the same relative to the reader's
///   own cgroup, `/../../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`.
///
/// A sub-cgroup of the container's (`crio-<id>.scope/container`, which crun makes) is the
/// container's. CRI-O's monitor (`crio-conmon-<id>.scope`) and anything else are not.
pub fn container_from_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let relative = components.first() == Some(&"..");
    let components: Vec<&str> = components.into_iter().filter(|c| *c != "..").collect();
    for (i, name) in components.iter().enumerate() {
        let under_kubepods = components[..i].iter().any(|c| c.contains("kubepods"));
        let uid = if let Some(stem) = name.strip_suffix(".slice") {
            // `kubepods-burstable-pod<uid>` and the like: the slice's own name says kubepods.
            stem.rsplit_once("-pod").filter(|(prefix, _)| prefix.contains("kubepods")).map(|(_, uid)| uid)
        } else if under_kubepods || relative {
            name.strip_prefix("pod")
        } else {
            None
        };
        let Some(uid) = uid.and_then(pod_uid) else { continue };
        let (runtime, container_id) = container_scope(components.get(i + 1)?)?;
        return Some(ContainerRef { pod_uid: uid, container_id: container_id.to_string(), runtime });
    }
    None
}

/// The runtime and container id of a container's cgroup name; none for a runtime's helper
/// (`crio-conmon-<id>`) or anything else.
fn container_scope(name: &str) -> Option<(Runtime, &str)> {
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    let (runtime, id) = if let Some(id) = stem.strip_prefix("cri-containerd-") {
        (Runtime::Containerd, id)
    } else if let Some(id) = stem.strip_prefix("crio-") {
        (Runtime::CriO, id)
    } else if let Some(id) = stem.strip_prefix("docker-") {
        (Runtime::Docker, id)
    } else if stem.len() == name.len() {
        (Runtime::Unknown, stem)
    } else {
        return None;
    };
    is_container_id(id).then_some((runtime, id))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A pod UID in dashed form: a UUID, or the 32 hex digits of a static pod's hash. Systemd slice
/// names write the UUID's dashes as underscores.
fn pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let bytes = uid.as_bytes();
    let uuid = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| if [8, 13, 18, 23].contains(&i) { *b == b'-' } else { hex(*b) });
    let static_pod = bytes.len() == 32 && bytes.iter().all(|b| hex(*b));
    (uuid || static_pod).then_some(uid)
}

/// A DNS-1123 label (namespace and container names): at most 63 of `a-z0-9-`, alphanumeric at
/// both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain (pod names): at most 253 characters, labels joined by dots.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|part| !part.is_empty() && is_dns_label_chars(part))
}

fn is_dns_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// What a `/var/log/containers` entry is.
#[derive(Debug, PartialEq, Eq)]
pub enum LogName {
    /// `<pod>_<namespace>_<container>-<id>.log`: the container id and its names.
    Container(String, PodLabels),
    /// A `.log` entry that does not follow that form or whose names are not Kubernetes names.
    Invalid,
    /// Anything else.
    Other,
}

/// Reads the name of a `/var/log/containers` entry.
pub fn parse_container_log_name(name: &str) -> LogName {
    let Some(stem) = name.strip_suffix(".log") else { return LogName::Other };
    let Some((head, id)) = stem.rsplit_once('-') else { return LogName::Invalid };
    let mut parts = head.splitn(3, '_');
    let (Some(pod), Some(namespace), Some(container)) = (parts.next(), parts.next(), parts.next()) else {
        return LogName::Invalid;
    };
    if !(is_container_id(id) && is_dns_subdomain(pod) && is_dns_label(namespace) && is_dns_label(container)) {
        return LogName::Invalid;
    }
    let labels = PodLabels { namespace: namespace.into(), pod: pod.into(), container: container.into() };
    LogName::Container(id.to_string(), labels)
}

/// What a `/var/log/pods` entry names: `<namespace>_<pod>_<uid>` → (uid, namespace, pod).
pub fn parse_pod_dir_name(name: &str) -> Option<(String, String, String)> {
    let mut parts = name.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if !(is_dns_label(namespace) && is_dns_subdomain(pod)) {
        return None;
    }
    // Dashes only here: an underscore would make the name ambiguous.
    let uid = pod_uid(uid).filter(|u| u == uid)?;
    Some((uid, namespace.to_string(), pod.to_string()))
}

/// Most entries taken from one listing: a node runs at most a few hundred containers.
const MAX_ENTRIES: usize = 16384;
/// How soon an id that was missing from the last listing may cause another one.
const RETRY_MISSING: Duration = Duration::from_secs(30);

/// The kubelet's log directories, listed on demand and cached.
struct Names {
    containers_dir: PathBuf,
    pods_dir: PathBuf,
    /// Container id → names, from `/var/log/containers`.
    by_container: HashMap<String, PodLabels>,
    /// Pod uid → (namespace, pod, directory), from `/var/log/pods`.
    by_pod: HashMap<String, (String, String, PathBuf)>,
    /// Container names of a pod's directory, listed when first asked for.
    pod_containers: HashMap<String, Vec<String>>,
    listed_at: Option<Instant>,
    listed_this_sample: bool,
    /// Ids the last listing did not hold.
    missing: HashSet<String>,
    /// Entries already counted as invalid, so each is counted once (bounded).
    invalid_seen: HashSet<String>,
    /// Failures since the last report, for the next target's report.
    errors: Vec<Reason>,
    /// Why the last listing failed, for the status page of targets without names.
    failure: Option<Reason>,
}

impl Names {
    fn new(rootfs: &Path) -> Self {
        Names {
            containers_dir: rootfs.join("var/log/containers"),
            pods_dir: rootfs.join("var/log/pods"),
            by_container: HashMap::new(),
            by_pod: HashMap::new(),
            pod_containers: HashMap::new(),
            listed_at: None,
            listed_this_sample: false,
            missing: HashSet::new(),
            invalid_seen: HashSet::new(),
            errors: Vec::new(),
            failure: None,
        }
    }

    /// The names of a container: (labels, complete). Lists the directories again when the
    /// container is not known, at most once per sample, and for an id the last listing did not
    /// hold, at most every `RETRY_MISSING`.
    fn resolve(&mut self, c: &ContainerRef) -> Option<(PodLabels, bool)> {
        let found = self.lookup(c);
        if found.as_ref().is_some_and(|(_, complete)| *complete) || !self.may_list(&c.container_id) {
            return found;
        }
        self.list();
        let found = self.lookup(c);
        if !found.as_ref().is_some_and(|(_, complete)| *complete) {
            self.missing.insert(c.container_id.clone());
        }
        found
    }

    fn may_list(&self, id: &str) -> bool {
        if self.listed_this_sample {
            return false;
        }
        match self.listed_at {
            None => true,
            Some(at) => !self.missing.contains(id) || at.elapsed() >= RETRY_MISSING,
        }
    }

    fn lookup(&mut self, c: &ContainerRef) -> Option<(PodLabels, bool)> {
        if let Some(labels) = self.by_container.get(&c.container_id) {
            return Some((labels.clone(), true));
        }
        let (namespace, pod, dir) = self.by_pod.get(&c.pod_uid)?.clone();
        let containers = self.pod_containers.entry(c.pod_uid.clone()).or_insert_with(|| list_container_dirs(&dir));
        let (container, complete) = match containers.as_slice() {
            [only] => (only.clone(), true),
            _ => (String::new(), false),
        };
        Some((PodLabels { namespace, pod, container }, complete))
    }

    /// Lists both directories into fresh maps: pods gone from the node leave the cache.
    fn list(&mut self) {
        self.listed_this_sample = true;
        self.listed_at = Some(Instant::now());
        self.missing.clear();
        self.pod_containers.clear();
        self.failure = None;
        let mut by_container = HashMap::new();
        for name in self.entries(&self.containers_dir.clone()) {
            match parse_container_log_name(&name) {
                LogName::Container(id, labels) => {
                    by_container.insert(id, labels);
                }
                LogName::Other => {}
                LogName::Invalid => self.invalid(&name),
            }
        }
        let mut by_pod = HashMap::new();
        for name in self.entries(&self.pods_dir.clone()) {
            match parse_pod_dir_name(&name) {
                Some((uid, namespace, pod)) => {
                    let dir = self.pods_dir.join(&name);
                    by_pod.insert(uid, (namespace, pod, dir));
                }
                None => self.invalid(&name),
            }
        }
        self.by_container = by_container;
        self.by_pod = by_pod;
    }

    /// The names in a directory (at most `MAX_ENTRIES`); none, and no error, when it does not
    /// exist (no Kubernetes, or its logs are not mounted).
    fn entries(&mut self, dir: &Path) -> Vec<String> {
        let read = match std::fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                let reason = Reason::from_io_error(&e);
                tracing::debug!(dir = %dir.display(), error = %e, "cannot list the kubelet's log directory");
                self.errors.push(reason);
                self.failure = Some(reason);
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for entry in read.flatten().take(MAX_ENTRIES) {
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(raw) => self.invalid(&raw.to_string_lossy()),
            }
        }
        names
    }

    /// Counts an entry that does not name a container or pod properly, once.
    fn invalid(&mut self, name: &str) {
        if self.invalid_seen.len() >= 4096 {
            self.invalid_seen.clear();
        }
        if self.invalid_seen.insert(name.to_string()) {
            tracing::debug!(name, "skipped a kubelet log entry whose name is not a valid pod, namespace or container");
            self.errors.push(Reason::Parse);
        }
    }
}

/// The container directories of a pod's log directory whose names are valid.
fn list_container_dirs(dir: &Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = read
        .flatten()
        .take(MAX_ENTRIES)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_dns_label(n))
        .collect();
    names.sort();
    names
}

pub struct KubernetesCollector {
    names: Names,
}

impl KubernetesCollector {
    pub fn new(rootfs: &Path) -> Self {
        KubernetesCollector { names: Names::new(rootfs) }
    }
}

/// Reads `/proc/PID/cgroup` through the target's handle. `None` when the process is gone.
fn read_cgroup_file(target: &Target) -> Option<Result<String, Reason>> {
    let handle = target.handle.as_ref()?;
    let read = handle.open_relative("cgroup").and_then(|mut f| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).map_err(procfs::ProcError::from)?;
        Ok(s)
    });
    match read {
        Ok(text) => Some(Ok(text)),
        Err(_) if !handle.is_alive() => None,
        Err(e) => Some(Err(Reason::from_proc_error(&e))),
    }
}

impl Collector for KubernetesCollector {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn begin_sample(&mut self) {
        self.names.listed_this_sample = false;
    }

    fn collect(&mut self, target: &mut Target) -> Outcome {
        // The cgroup collector's path when it ran (resolved to the host's hierarchy), else the
        // file's lines.
        let (path, container) = match target.readings.cgroup.as_ref() {
            Some(c) => (c.location.path.clone(), container_from_cgroup_path(&c.location.path)),
            None => match read_cgroup_file(target) {
                None => return Outcome::Vanished,
                Some(Err(reason)) => return Outcome::Read(vec![Gap::new("cgroup membership", reason)].into()),
                Some(Ok(text)) => {
                    let (path, container) = read_cgroup_file_text(&text);
                    (path.to_string(), container)
                }
            },
        };
        let previous = target.readings.kubernetes.take();
        let mut readings = match previous {
            // An exiting process is moved to the root cgroup: it keeps the names it had.
            Some(p) if p.cgroup_path == path || (container.is_none() && p.container.is_some() && path == "/") => p,
            _ => KubernetesReadings { cgroup_path: path, container, labels: None, complete: false },
        };
        let mut gaps = Vec::new();
        if let Some(c) = readings.container.clone() {
            if !readings.complete {
                if let Some((labels, complete)) = self.names.resolve(&c) {
                    readings.labels = Some(labels);
                    readings.complete = complete;
                }
            }
            if readings.labels.is_none() {
                gaps.push(Gap::new("pod names", self.names.failure.unwrap_or(Reason::NotAvailable)));
            } else if !readings.complete {
                gaps.push(Gap::new("container name", Reason::NotAvailable));
            }
        }
        target.readings.kubernetes = Some(readings);
        Outcome::Read(Report { gaps, errors: std::mem::take(&mut self.names.errors) })
    }

    fn render(&self, _targets: &[&Target], _out: &mut Families) {
        // Its readings are labels, which the exposition adds to every series of the target.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8f3c6f0e-1b2a-4c5d-9e8f-0a1b2c3d4e5f";
    const UID_: &str = "8f3c6f0e_1b2a_4c5d_9e8f_0a1b2c3d4e5f";

    fn parsed(path: &str) -> Option<(String, String, Runtime)> {
        container_from_cgroup_path(path).map(|c| (c.pod_uid, c.container_id, c.runtime))
    }

    #[test]
    fn every_kubelet_cgroup_layout() {
        let want = |runtime| Some((UID.to_string(), CID.to_string(), runtime));
        let cases = [
            // systemd driver: burstable, besteffort, guaranteed; containerd, CRI-O, dockershim.
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope"), Runtime::Containerd),
            (format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope"), Runtime::CriO),
            (format!("/kubepods.slice/kubepods-pod{UID_}.slice/docker-{CID}.scope"), Runtime::Docker),
            // crun's sub-cgroup of a CRI-O container.
            (format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope/container"), Runtime::CriO),
            // kind: the kubelet's slices under its own.
            (format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"), Runtime::Containerd),
            // cgroupfs driver.
            (format!("/kubepods/burstable/pod{UID}/{CID}"), Runtime::Unknown),
            (format!("/kubepods/pod{UID}/{CID}"), Runtime::Unknown),
            (format!("/kubepods/besteffort/pod{UID}/crio-{CID}"), Runtime::CriO),
            // Nested under another cgroup (a test's, a node in a container).
            (format!("/process_api/abc/kubepods/burstable/pod{UID}/{CID}"), Runtime::Unknown),
            // Seen from a private cgroup namespace.
            (format!("/../../kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope"), Runtime::Containerd),
            (format!("/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope"), Runtime::CriO),
            (format!("/../../pod{UID}/{CID}"), Runtime::Unknown),
        ];
        for (path, runtime) in cases {
            assert_eq!(parsed(&path), want(runtime), "{path}");
        }
        // A static pod's UID is a 32-digit hash.
        let hash = "5b4e2a1c1d0b8e3b6a3e1a9c7f3d2e1b";
        assert_eq!(
            parsed(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{CID}.scope")),
            Some((hash.to_string(), CID.to_string(), Runtime::Containerd))
        );
    }

    #[test]
    fn not_an_app_container() {
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{CID}.scope"
            ),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            format!("/system.slice/docker-{CID}.scope"),
            format!("/docker/{CID}"),
            "/user.slice/user-1000.slice/session-2.scope".to_string(),
            "/".to_string(),
            String::new(),
            // Not a pod slice: the prefix must say kubepods; the uid must be one.
            format!("/machine.slice/machine-pod{UID_}.slice/libpod-{CID}.scope"),
            format!("/kubepods.slice/kubepods-podnot-a-uid.slice/cri-containerd-{CID}.scope"),
            format!("/kubepods/burstable/pod{UID}/{}", &CID[1..]),
            format!("/kubepods/burstable/pod{UID}/{}", CID.to_uppercase()),
            // A bare pod<uid> outside kubepods is somebody else's naming.
            format!("/pods/pod{UID}/{CID}"),
        ] {
            assert_eq!(parsed(&path), None, "{path}");
        }
    }

    #[test]
    fn a_cgroup_file_prefers_v2_and_skips_garbage() {
        let v1 = format!(
            "garbage\n12:pids:/kubepods/burstable/pod{UID}/{CID}\n4:memory:/kubepods/burstable/pod{UID}/{CID}\n::\n1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n"
        );
        assert_eq!(container_from_cgroup_file(&v1).map(|c| c.container_id), Some(CID.to_string()));
        let other = "1111111111111111111111111111111111111111111111111111111111111111";
        let hybrid = format!(
            "4:memory:/kubepods/burstable/pod{UID}/{other}\n0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n"
        );
        assert_eq!(container_from_cgroup_file(&hybrid).map(|c| c.container_id), Some(CID.to_string()));
        assert_eq!(container_from_cgroup_file("0::/user.slice\nnonsense:\n"), None);
    }

    #[test]
    fn container_ids_in_cgroup_paths() {
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-{CID}.scope"
            ),
            format!("/kubepods/burstable/pod1a2b-3c4d/{CID}"),
            format!("/system.slice/docker-{CID}.scope"),
            format!("/kubepods.slice/kubepods-pod1.slice/crio-{CID}.scope"),
        ] {
            assert_eq!(container_id_from_cgroup(&path), Some(CID), "{path}");
        }
        assert_eq!(container_id_from_cgroup("/user.slice/session-2.scope"), None);
    }

    #[test]
    fn names_are_dns_labels_and_subdomains() {
        for ok in ["a", "shop", "kube-system", "a1", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        for ok in ["api-7d9f-x2x", "a.b.c", "coredns-5d78c9869d-abcde"] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "a_b", "a\"b", &"x".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn log_file_names() {
        let got = parse_container_log_name(&format!("api-7d9f-x2x_shop_node-{CID}.log"));
        let want = PodLabels { namespace: "shop".into(), pod: "api-7d9f-x2x".into(), container: "node".into() };
        assert_eq!(got, LogName::Container(CID.to_string(), want));
        // Not a container log: skipped quietly.
        assert_eq!(parse_container_log_name("README"), LogName::Other);
        // Container logs whose names are not Kubernetes names: skipped and counted.
        for bad in [
            format!("api_shop_node-{}.log", &CID[1..]),
            format!("api_shop-{CID}.log"),
            format!("Api_shop_node-{CID}.log"),
            format!("api_shop_no\"de-{CID}.log"),
            format!("api_shop_node_x-{CID}.log"),
            "x.log".to_string(),
        ] {
            assert_eq!(parse_container_log_name(&bad), LogName::Invalid, "{bad}");
        }
        assert_eq!(
            parse_pod_dir_name(&format!("shop_api-7d9f-x2x_{UID}")),
            Some((UID.into(), "shop".into(), "api-7d9f-x2x".into()))
        );
        assert_eq!(parse_pod_dir_name(&format!("shop_api_{UID_}")), None);
        assert_eq!(parse_pod_dir_name("shop_api_nope"), None);
        assert_eq!(parse_pod_dir_name(&format!("Shop_api_{UID}")), None);
    }

    fn kubelet_logs(root: &Path, entries: &[(&str, &str, &str, &str, &str)]) {
        // (namespace, pod, uid, container, container id), as the kubelet lays them out.
        for (ns, pod, uid, container, id) in entries {
            let dir = root.join(format!("var/log/pods/{ns}_{pod}_{uid}/{container}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("0.log"), "").unwrap();
            let links = root.join("var/log/containers");
            std::fs::create_dir_all(&links).unwrap();
            if !id.is_empty() {
                let link = links.join(format!("{pod}_{ns}_{container}-{id}.log"));
                std::os::unix::fs::symlink(dir.join("0.log"), link).unwrap();
            }
        }
    }

    fn cref(uid: &str, id: &str) -> ContainerRef {
        ContainerRef { pod_uid: uid.into(), container_id: id.into(), runtime: Runtime::Containerd }
    }

    #[test]
    fn names_from_listings_are_cached_and_listed_again_once_per_sample() {
        let root = tempfile::tempdir().unwrap();
        let other_uid = "11111111-2222-3333-4444-555555555555";
        let id2 = "2".repeat(64);
        kubelet_logs(root.path(), &[("shop", "api-1", UID, "node", CID), ("shop", "api-1", UID, "sidecar", &id2)]);
        let mut names = Names::new(root.path());
        let (labels, complete) = names.resolve(&cref(UID, CID)).unwrap();
        assert_eq!(
            (labels.namespace.as_str(), labels.pod.as_str(), labels.container.as_str()),
            ("shop", "api-1", "node")
        );
        assert!(complete);
        assert!(names.listed_this_sample);

        // A container that appears later is not found until the next sample lists again.
        let id3 = "3".repeat(64);
        kubelet_logs(root.path(), &[("web", "front", other_uid, "node", &id3)]);
        assert_eq!(names.resolve(&cref(other_uid, &id3)), None);
        names.listed_this_sample = false;
        assert_eq!(names.resolve(&cref(other_uid, &id3)).unwrap().0.pod, "front");

        // A pod gone from the node leaves the cache at the next listing.
        std::fs::remove_dir_all(root.path().join(format!("var/log/pods/shop_api-1_{UID}"))).unwrap();
        for entry in std::fs::read_dir(root.path().join("var/log/containers")).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains("api-1_") {
                std::fs::remove_file(path).unwrap();
            }
        }
        names.listed_this_sample = false;
        assert_eq!(names.resolve(&cref(UID, &"7".repeat(64))), None, "an unknown id lists again");
        assert_eq!(names.lookup(&cref(UID, CID)), None);
        assert_eq!(names.by_container.len(), 1);
        assert_eq!(names.by_pod.len(), 1);
        assert!(names.errors.is_empty());
    }

    #[test]
    fn a_missing_id_does_not_list_at_every_sample() {
        let root = tempfile::tempdir().unwrap();
        kubelet_logs(root.path(), &[("shop", "api-1", UID, "node", CID)]);
        let mut names = Names::new(root.path());
        let unknown = cref("11111111-2222-3333-4444-555555555555", &"9".repeat(64));
        assert_eq!(names.resolve(&unknown), None);
        let listed = names.listed_at;
        names.listed_this_sample = false;
        assert_eq!(names.resolve(&unknown), None);
        assert_eq!(names.listed_at, listed, "listed again within RETRY_MISSING for the same id");
        // A new id still lists.
        assert!(names.resolve(&cref(UID, CID)).is_some());
    }

    #[test]
    fn the_pod_directory_names_the_pod_when_the_container_has_no_file() {
        let root = tempfile::tempdir().unwrap();
        let other = "4".repeat(64);
        // One container without its /var/log/containers link: its pod has only it.
        kubelet_logs(root.path(), &[("shop", "solo", UID, "node", "")]);
        let mut names = Names::new(root.path());
        let (labels, complete) = names.resolve(&cref(UID, CID)).unwrap();
        assert_eq!((labels.pod.as_str(), labels.container.as_str(), complete), ("solo", "node", true));
        // Two containers (an init container and the app): the container is not known.
        let uid2 = "11111111-2222-3333-4444-555555555555";
        kubelet_logs(root.path(), &[("shop", "duo", uid2, "init", ""), ("shop", "duo", uid2, "node", "")]);
        names.listed_this_sample = false;
        let (labels, complete) = names.resolve(&cref(uid2, &other)).unwrap();
        assert_eq!((labels.namespace.as_str(), labels.pod.as_str(), labels.container.as_str()), ("shop", "duo", ""));
        assert!(!complete);
    }

    #[test]
    fn invalid_entries_are_skipped_and_counted_once() {
        let root = tempfile::tempdir().unwrap();
        kubelet_logs(root.path(), &[("shop", "api-1", UID, "node", CID)]);
        let links = root.path().join("var/log/containers");
        std::fs::write(links.join(format!("EVIL_shop_node-{}.log", "5".repeat(64))), "").unwrap();
        std::fs::create_dir_all(root.path().join("var/log/pods/not-a-pod-dir")).unwrap();
        let mut names = Names::new(root.path());
        assert!(names.resolve(&cref(UID, CID)).is_some());
        assert_eq!(names.errors, vec![Reason::Parse, Reason::Parse]);
        names.errors.clear();
        names.listed_this_sample = false;
        assert_eq!(names.resolve(&cref(UID, &"6".repeat(64))).map(|(l, _)| l.pod), Some("api-1".to_string()));
        assert!(names.errors.is_empty(), "counted once: {:?}", names.errors);
    }

    #[test]
    fn no_kubernetes_no_listing_errors() {
        let root = tempfile::tempdir().unwrap();
        let mut names = Names::new(root.path());
        assert_eq!(names.resolve(&cref(UID, CID)), None);
        assert!(names.errors.is_empty() && names.failure.is_none());
    }
}
