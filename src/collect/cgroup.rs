//! The cgroup collector: the memory limit that will actually stop a process (a container is
//! usually killed by its cgroup before V8 runs out of heap), the cgroup's usage, and its OOM kills.
//!
//! Works on cgroup v2 (`memory.max`, `memory.current`, `memory.events`) and v1
//! (`memory.limit_in_bytes`, `memory.usage_in_bytes`, `memory.oom_control`), including hybrid
//! hosts where memory is still a v1 controller. The effective limit is the smallest along the path
//! to the root, since a parent's limit binds its children. The cgroup path is kept when the
//! process exits, so the OOM kill that ended it can still be counted during the exit retention.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

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
    /// The path from `/proc/PID/cgroup`.
    pub path: String,
    /// The directory under the cgroup mount, and the hierarchy's root directory.
    pub dir: PathBuf,
    pub root: PathBuf,
}

pub struct CgroupCollector {
    root: PathBuf,
    /// Per-sample cache: many processes share one cgroup (PM2 cluster, a pod).
    cache: HashMap<PathBuf, (CgroupReadings, Vec<Gap>)>,
}

impl CgroupCollector {
    pub fn new(cgroup_root: &Path) -> Self {
        CgroupCollector { root: cgroup_root.to_path_buf(), cache: HashMap::new() }
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
    let mut v2 = None;
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if controllers.split(',').any(|c| c == "memory") {
            let hierarchy = root.join("memory");
            return Some(CgroupLocation {
                version: CgroupVersion::V1,
                path: path.to_string(),
                dir: join_inside(&hierarchy, path)?,
                root: hierarchy,
            });
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let path = v2?;
    // Pure v2 mounts the hierarchy at the root; hybrid mounts it at `unified`.
    let hierarchy = if root.join("cgroup.controllers").exists() { root.to_path_buf() } else { root.join("unified") };
    Some(CgroupLocation { version: CgroupVersion::V2, dir: join_inside(&hierarchy, &path)?, root: hierarchy, path })
}

/// Joins a cgroup path under a root, refusing `..` (a path outside our cgroup namespace).
fn join_inside(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
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
        let Some(mut loc) = locate(&text, &self.root) else {
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
    fn cgroup_paths_outside_the_namespace_are_refused() {
        assert_eq!(locate("0::/../../kubepods/x\n", Path::new("/nonexistent")), None);
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
