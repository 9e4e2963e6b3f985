//! The cgroup collector: the memory limit that will actually stop a process (a container is
//! usually killed by its cgroup before V8 runs out of heap), the cgroup's usage, and its OOM kills.
//!
//! Works on cgroup v2 (`memory.max`, `memory.current`, `memory.events`) and v1
//! (`memory.limit_in_bytes`, `memory.usage_in_bytes`, `memory.oom_control`), including hybrid
//! hosts where memory is still a v1 controller. The effective limit is the smallest along the path
//! to the root, since a parent's limit binds its children. The cgroup path is kept when the
//! process exits, so the OOM kill that ended it can still be counted during the exit retention.
//!
//! In a Kubernetes DaemonSet on cgroup v2 the exporter has its own cgroup namespace, so other
//! pods' paths read relative to its own cgroup (`/../../kubepods-burstable-pod<uid>.slice/...`).
//! With the host's `/sys` mounted, `<sysfs>/fs/cgroup` is the host's whole hierarchy: such a path
//! is found there by what follows its `..` components, never by following them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Collector, Gap, Outcome, Reason};
use crate::exposition::{Families, MEMORY_LIMIT, MEMORY_LIMIT_HELP};
use crate::target::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupReadings {
    /// Where the memory cgroup is; kept after exit to read the final OOM kill count.
    pub location: CgroupLocation,
    pub limit_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Where one process's memory cgroup lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLocation {
    pub version: CgroupVersion,
    /// The path in the host's hierarchy: from `/proc/PID/cgroup`, or where a path outside the
    /// exporter's cgroup namespace was found.
    pub path: String,
    /// The directory under the cgroup mount, and the hierarchy's root directory.
    pub dir: PathBuf,
    pub root: PathBuf,
}

pub struct CgroupCollector {
    root: PathBuf,
    /// Per-sample cache: many processes share one cgroup (PM2 cluster, a pod).
    cache: HashMap<PathBuf, (CgroupReadings, Vec<Gap>)>,
    /// Where paths from outside the exporter's cgroup namespace are.
    resolver: Resolver,
}

impl CgroupCollector {
    pub fn new(cgroup_root: &Path) -> Self {
        CgroupCollector { root: cgroup_root.to_path_buf(), cache: HashMap::new(), resolver: Resolver::default() }
    }

    fn read_location(&mut self, loc: &CgroupLocation) -> (CgroupReadings, Vec<Gap>) {
        if let Some(cached) = self.cache.get(&loc.dir) {
            return cached.clone();
        }
        let read = read_cgroup(loc);
        self.cache.insert(loc.dir.clone(), read.clone());
        read
    }
}

/// Parses `/proc/PID/cgroup` and finds the memory cgroup's directory: a v1 `memory` line wins
/// (hybrid hosts), else the v2 `0::` line.
pub fn locate(cgroup_file: &str, root: &Path) -> Option<CgroupLocation> {
    locate_with(cgroup_file, root, &mut Resolver::default())
}

/// As [`locate`], with a resolver that remembers where paths from outside the exporter's cgroup
/// namespace were found.
pub fn locate_with(cgroup_file: &str, root: &Path, resolver: &mut Resolver) -> Option<CgroupLocation> {
    let mut v2 = None;
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if controllers.split(',').any(|c| c == "memory") {
            let hierarchy = root.join("memory");
            let (dir, path) = resolver.join(&hierarchy, path)?;
            return Some(CgroupLocation { version: CgroupVersion::V1, path, dir, root: hierarchy });
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let path = v2?;
    // Pure v2 mounts the hierarchy at the root; hybrid mounts it at `unified`.
    let hierarchy = if root.join("cgroup.controllers").exists() { root.to_path_buf() } else { root.join("unified") };
    let (dir, path) = resolver.join(&hierarchy, &path)?;
    Some(CgroupLocation { version: CgroupVersion::V2, dir, root: hierarchy, path })
}

/// Deepest level at which the first component after a path's `..` is looked for.
const MAX_SEARCH_DEPTH: usize = 4;
/// Most directories listed by one search.
const MAX_SEARCH_DIRS: usize = 20_000;
/// How long a path that was not found (or found twice) is not looked for again.
const RETRY_UNRESOLVED: Duration = Duration::from_secs(60);
/// Most paths remembered.
const MAX_RESOLVED: usize = 4096;

/// How long one listing of a hierarchy serves the searches: every path of one sample (a node's
/// pods all appear in the first) shares one walk instead of walking once per path.
const INDEX_LIFETIME: Duration = Duration::from_secs(1);

/// Finds, under the mounted hierarchy, the directories of cgroup paths that lie outside the
/// exporter's cgroup namespace, and remembers them.
#[derive(Debug, Default)]
pub struct Resolver {
    found: HashMap<(PathBuf, String), (Option<PathBuf>, Instant)>,
    /// Per hierarchy: when it was listed, and its directories by name (see [`Index`]).
    indexes: HashMap<PathBuf, (Instant, Index)>,
}

/// The directories of a hierarchy down to `MAX_SEARCH_DEPTH`, by name: where a name is, is
/// where a path starting with it may continue. One walk, bounded by `MAX_SEARCH_DIRS` listings;
/// `None` when the hierarchy is too large to walk.
#[derive(Debug, Default)]
struct Index {
    by_name: Option<HashMap<std::ffi::OsString, Vec<PathBuf>>>,
}

impl Index {
    fn build(root: &Path) -> Index {
        let mut by_name: HashMap<std::ffi::OsString, Vec<PathBuf>> = HashMap::new();
        let mut level = vec![root.to_path_buf()];
        let mut listed = 0;
        for _ in 0..MAX_SEARCH_DEPTH {
            let mut next = Vec::new();
            for dir in &level {
                listed += 1;
                if listed > MAX_SEARCH_DIRS {
                    return Index { by_name: None };
                }
                let Ok(entries) = std::fs::read_dir(dir) else { continue };
                // Directories only: symlinks are not followed, so nothing outside `root` is reached.
                for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                    let path = entry.path();
                    by_name.entry(entry.file_name()).or_default().push(path.clone());
                    next.push(path);
                }
            }
            level = next;
        }
        Index { by_name: Some(by_name) }
    }

    /// The one directory whose path ends with `names`, the first of them found in the walk; none
    /// when there is none, more than one, or the walk was cut short.
    fn find(&self, names: &[&OsStr]) -> Option<PathBuf> {
        let (first, rest) = names.split_first()?;
        let mut found = None;
        for start in self.by_name.as_ref()?.get(*first)? {
            // Checked again: the directory may have gone since the walk.
            if let Some(candidate) = dir_chain(start, rest).filter(|_| start.is_dir()) {
                if found.is_some() {
                    return None;
                }
                found = Some(candidate);
            }
        }
        found
    }
}

impl Resolver {
    /// The directory of a cgroup path under a hierarchy, and the path in that hierarchy.
    /// Absolute paths are joined; paths that start with `..` are looked for; others (`..`
    /// elsewhere, `.`) are refused.
    pub fn join(&mut self, hierarchy: &Path, path: &str) -> Option<(PathBuf, String)> {
        let rel = Path::new(path.trim_start_matches('/'));
        let components: Vec<Component> = rel.components().collect();
        let ups = components.iter().take_while(|c| matches!(c, Component::ParentDir)).count();
        let rest = &components[ups..];
        if !rest.iter().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        if ups == 0 {
            return Some((hierarchy.join(rel), path.to_string()));
        }
        let key = (hierarchy.to_path_buf(), path.to_string());
        let dir = match self.found.get(&key) {
            // Found before, through directories only; a cgroup that went is looked for again.
            Some((Some(dir), _)) if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) => Some(dir.clone()),
            Some((None, at)) if at.elapsed() < RETRY_UNRESOLVED => None,
            _ => {
                let names: Vec<&OsStr> = rest.iter().map(|c| c.as_os_str()).collect();
                let dir = find_slice(hierarchy, &names).or_else(|| {
                    let (at, index) = self
                        .indexes
                        .entry(hierarchy.to_path_buf())
                        .or_insert_with(|| (Instant::now(), Index::build(hierarchy)));
                    if at.elapsed() >= INDEX_LIFETIME {
                        *at = Instant::now();
                        *index = Index::build(hierarchy);
                    }
                    index.find(&names)
                });
                if dir.is_none() {
                    tracing::debug!(path, hierarchy = %hierarchy.display(), "cgroup path outside the namespace not found, or found more than once");
                }
                if self.found.len() >= MAX_RESOLVED {
                    self.found.clear();
                }
                self.found.insert(key, (dir.clone(), Instant::now()));
                dir
            }
        }?;
        let inside = dir.strip_prefix(hierarchy).ok()?;
        Some((dir.clone(), format!("/{}", inside.display())))
    }
}

/// `dir` joined with `names`, when each step is a directory (not a symlink), so nothing outside
/// `dir` is reached.
fn dir_chain(dir: &Path, names: &[&OsStr]) -> Option<PathBuf> {
    let mut at = dir.to_path_buf();
    for name in names {
        at.push(name);
        if !std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
            return None;
        }
    }
    Some(at)
}

/// Where systemd's naming puts a slice: `kubepods-burstable-pod<uid>.slice` lives in
/// `kubepods.slice/kubepods-burstable.slice`, so a path starting with a slice is looked for there
/// first, without a search.
fn find_slice(root: &Path, names: &[&OsStr]) -> Option<PathBuf> {
    let slice = names.first()?.to_str()?.strip_suffix(".slice")?;
    let parents: Vec<String> = slice.match_indices('-').map(|(dash, _)| format!("{}.slice", &slice[..dash])).collect();
    let parents: Vec<&OsStr> = parents.iter().map(OsStr::new).collect();
    dir_chain(root, &parents).and_then(|parent| dir_chain(&parent, names))
}

/// The one directory under `root` whose path ends with `names` (the first of them at most
/// `MAX_SEARCH_DEPTH` deep); none when there is none or more than one. A slice is looked for
/// where its name puts it; otherwise, and for the cgroupfs driver's plain names, the hierarchy
/// is walked (a [`Resolver`] keeps that walk for every path of a sample).
pub fn find_below(root: &Path, names: &[&OsStr]) -> Option<PathBuf> {
    find_slice(root, names).or_else(|| Index::build(root).find(names))
}

/// Reads limit, usage and OOM kills of one cgroup.
pub fn read_cgroup(loc: &CgroupLocation) -> (CgroupReadings, Vec<Gap>) {
    let mut gaps = Vec::new();
    let (limit_file, usage_file) = match loc.version {
        CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
        CgroupVersion::V2 => ("memory.max", "memory.current"),
    };
    // The binding limit is the smallest on the way up to the hierarchy's root.
    let mut limit: Option<u64> = None;
    let mut dir = loc.dir.as_path();
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join(limit_file)) {
            if let Some(v) = parse_limit(&text) {
                limit = Some(limit.map_or(v, |l| l.min(v)));
            }
        }
        if dir == loc.root {
            break;
        }
        match dir.parent() {
            Some(parent) if parent.starts_with(&loc.root) => dir = parent,
            _ => break,
        }
    }
    let usage = match std::fs::read_to_string(loc.dir.join(usage_file)) {
        Ok(text) => text.trim().parse().ok(),
        Err(e) => {
            gaps.push(Gap::new("memory usage", Reason::from_io_error(&e)));
            None
        }
    };
    let events_file = match loc.version {
        CgroupVersion::V1 => "memory.oom_control",
        CgroupVersion::V2 => "memory.events",
    };
    let oom_kills = match std::fs::read_to_string(loc.dir.join(events_file)) {
        Ok(text) => parse_flat_key(&text, "oom_kill"),
        Err(e) => {
            gaps.push(Gap::new("oom kills", Reason::from_io_error(&e)));
            None
        }
    };
    let readings = CgroupReadings { location: loc.clone(), limit_bytes: limit, usage_bytes: usage, oom_kills };
    (readings, gaps)
}

/// `max` and v1's "unlimited" (a page-rounded i64::MAX) mean no limit.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// Reads `key N` from a flat-keyed file such as `memory.events`.
pub fn parse_flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Collector for CgroupCollector {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn begin_sample(&mut self) {
        self.cache.clear();
    }

    fn collect(&mut self, target: &mut Target) -> Outcome {
        let Some(handle) = target.handle.as_ref() else { return Outcome::Vanished };
        let text = match handle.open_relative("cgroup").and_then(|mut f| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s).map_err(procfs::ProcError::from)?;
            Ok(s)
        }) {
            Ok(text) => text,
            Err(_) if !handle.is_alive() => return Outcome::Vanished,
            Err(e) => return Outcome::Read(vec![Gap::new("cgroup membership", Reason::from_proc_error(&e))].into()),
        };
        let Some(mut loc) = locate_with(&text, &self.root, &mut self.resolver) else {
            return Outcome::Read(vec![Gap::new("memory cgroup", Reason::Unsupported)].into());
        };
        // An exiting process is moved to the root cgroup before it becomes a zombie: keep the
        // cgroup it lived in, whose OOM kill count is the one that matters now.
        if let Some(previous) = target.readings.cgroup.as_ref() {
            if loc.path == "/" && previous.location.path != "/" {
                loc = previous.location.clone();
            }
        }
        let (readings, gaps) = self.read_location(&loc);
        // A container's cgroup is removed as its last process exits.
        if !gaps.is_empty() && !handle.is_alive() {
            return Outcome::Vanished;
        }
        target.readings.cgroup = Some(readings);
        Outcome::Read(gaps.into())
    }

    fn collect_exited(&mut self, target: &mut Target) {
        // The cgroup may outlive the process by a moment: read the OOM kill that ended it.
        let Some(loc) = target.readings.cgroup.as_ref().map(|r| r.location.clone()) else { return };
        if !loc.dir.exists() {
            return;
        }
        let (fresh, _) = self.read_location(&loc);
        if let Some(r) = target.readings.cgroup.as_mut() {
            r.oom_kills = fresh.oom_kills.or(r.oom_kills);
        }
    }

    fn render(&self, targets: &[&Target], out: &mut Families) {
        for t in targets {
            let Some(r) = &t.readings.cgroup else { continue };
            if let Some(v) = r.limit_bytes {
                out.target_gauge(t, MEMORY_LIMIT, MEMORY_LIMIT_HELP, &[("source", "cgroup")], v as f64);
            }
            if let Some(v) = r.usage_bytes {
                out.target_gauge(
                    t,
                    "nodejs_cgroup_memory_usage_bytes",
                    "Memory charged to the process's cgroup (all its processes and page cache), which the cgroup limit applies to.",
                    &[],
                    v as f64,
                );
            }
            if let Some(v) = r.oom_kills {
                out.target_counter(
                    t,
                    "nodejs_cgroup_oom_kills_total",
                    "Processes of the process's cgroup killed by the OOM killer.",
                    &[],
                    v as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_line_wins_on_hybrid_hosts() {
        let file = "12:pids:/a\n4:memory:/process_api/abc\n0::/\n";
        let loc = locate(file, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(loc.version, CgroupVersion::V1);
        assert_eq!(loc.dir, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
    }

    #[test]
    fn cgroup_paths_outside_the_namespace_that_are_not_there_are_refused() {
        assert_eq!(locate("0::/../../kubepods/x\n", Path::new("/nonexistent")), None);
        // `..` anywhere but at the start is never resolved.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "memory\n").unwrap();
        for path in ["/a/../a/b", "/../a/../a/b", "/..", "/../.."] {
            assert_eq!(locate(&format!("0::{path}\n"), root.path()), None, "{path}");
        }
    }

    const UID: &str = "8f3c6f0e_1b2a_4c5d_9e8f_0a1b2c3d4e5f";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A cgroup v2 host: the exporter's own pod and another pod, systemd driver.
    fn v2_host() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let burstable = r.join("kubepods.slice/kubepods-burstable.slice");
        let own = burstable.join("kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice");
        std::fs::create_dir_all(own.join(format!("cri-containerd-{}.scope", "e".repeat(64)))).unwrap();
        let pod = burstable.join(format!("kubepods-burstable-pod{UID}.slice"));
        let container = pod.join(format!("cri-containerd-{CID}.scope"));
        std::fs::create_dir_all(&container).unwrap();
        std::fs::write(pod.join("memory.max"), "268435456\n").unwrap();
        std::fs::write(container.join("memory.max"), "max\n").unwrap();
        std::fs::write(container.join("memory.current"), "1048576\n").unwrap();
        std::fs::write(container.join("memory.events"), "oom_kill 1\n").unwrap();
        root
    }

    #[test]
    fn a_pod_seen_from_a_private_cgroup_namespace_is_found_on_the_host() {
        let root = v2_host();
        let file = format!("0::/../../kubepods-burstable-pod{UID}.slice/cri-containerd-{CID}.scope\n");
        let mut resolver = Resolver::default();
        let loc = locate_with(&file, root.path(), &mut resolver).expect("resolved");
        let host_path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice/cri-containerd-{CID}.scope"
        );
        assert_eq!(loc.path, host_path);
        assert_eq!(loc.dir, root.path().join(host_path.trim_start_matches('/')));
        assert_eq!(loc.root, root.path());
        // The pod's limit binds the container.
        let (r, gaps) = read_cgroup(&loc);
        assert!(gaps.is_empty(), "{gaps:?}");
        assert_eq!((r.limit_bytes, r.usage_bytes, r.oom_kills), (Some(256 << 20), Some(1 << 20), Some(1)));
        // Remembered.
        assert_eq!(resolver.found.len(), 1);
        assert_eq!(locate_with(&file, root.path(), &mut resolver), Some(loc));
        // Another QoS class is further up.
        let besteffort = root.path().join(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID}.slice/crio-{CID}.scope"
        ));
        std::fs::create_dir_all(&besteffort).unwrap();
        let file =
            format!("0::/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID}.slice/crio-{CID}.scope\n");
        assert_eq!(locate_with(&file, root.path(), &mut resolver).map(|l| l.dir), Some(besteffort));
    }

    #[test]
    fn plain_names_are_searched_a_few_levels_deep_and_ambiguity_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // cgroup v1, cgroupfs driver: /kubepods/burstable/pod<uid>/<id> under `memory`.
        let uid = UID.replace('_', "-");
        let dir = r.join(format!("memory/kubepods/burstable/pod{uid}/{CID}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = format!("12:pids:/../../pod{uid}/{CID}\n4:memory:/../../pod{uid}/{CID}\n0::/\n");
        let loc = locate(&file, r).expect("found by searching");
        assert_eq!((loc.version, loc.dir.clone()), (CgroupVersion::V1, dir));
        assert_eq!(loc.path, format!("/kubepods/burstable/pod{uid}/{CID}"));
        // The same remainder in two places: refused.
        std::fs::create_dir_all(r.join(format!("memory/elsewhere/pod{uid}/{CID}"))).unwrap();
        assert_eq!(locate(&file, r), None);
    }

    #[test]
    fn the_search_is_bounded_in_depth_and_never_follows_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cgroup.controllers"), "memory\n").unwrap();
        // Depth 4 is found, depth 5 is not.
        std::fs::create_dir_all(r.join("a/b/c/target4/x")).unwrap();
        std::fs::create_dir_all(r.join("a/b/c/d/target5/x")).unwrap();
        assert_eq!(locate("0::/../target4/x\n", r).map(|l| l.path), Some("/a/b/c/target4/x".into()));
        assert_eq!(locate("0::/../target5/x\n", r), None);
        // A symlink out of the hierarchy is not followed, at any step.
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("secret/x")).unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), r.join("a/secret")).unwrap();
        assert_eq!(locate("0::/../secret/x\n", r), None);
    }

    #[test]
    fn an_unresolved_path_is_not_searched_again_at_once() {
        let root = v2_host();
        let mut resolver = Resolver::default();
        let path = format!("/../../kubepods-besteffort-pod{UID}.slice/cri-containerd-{CID}.scope");
        assert_eq!(resolver.join(root.path(), &path), None);
        // It appears, but the miss is remembered for a while.
        std::fs::create_dir_all(root.path().join(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID}.slice/cri-containerd-{CID}.scope"
        )))
        .unwrap();
        assert_eq!(resolver.join(root.path(), &path), None);
        resolver.found.clear();
        assert!(resolver.join(root.path(), &path).is_some());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("67108864\n"), Some(64 << 20));
        assert_eq!(parse_limit("garbage"), None);
    }

    #[test]
    fn events() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_flat_key(v2, "oom_kill"), Some(2));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(parse_flat_key(v1, "oom_kill"), Some(7));
        assert_eq!(parse_flat_key("oom 1\n", "oom_kill"), None);
    }
}
