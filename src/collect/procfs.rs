//! The `/proc` collector: memory, CPU, file descriptors, sockets and threads of each process.
//!
//! Names follow prom-client where the quantity is the same (`process_resident_memory_bytes`, ...),
//! so rules and dashboards written for apps that export prom-client's defaults keep working.
//! Socket protocols come from the process's network namespace tables, read once per namespace
//! per sample. PSS (`smaps_rollup`) is read only when enabled: the kernel walks every page table
//! under the process's mm lock to produce it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use procfs::process::Process;

use crate::procstat::{read_into, read_stat, ProcStat};

use super::{Collector, Gap, Outcome, Reason};
use crate::exposition::Families;
use crate::target::Target;

/// Sockets by protocol family.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SocketCounts {
    pub tcp: u64,
    pub udp: u64,
    pub unix: u64,
    pub other: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcReadings {
    pub start_time_seconds: f64,
    pub cpu_user_seconds: f64,
    pub cpu_system_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub data_bytes: Option<u64>,
    pub rss_anon_bytes: Option<u64>,
    pub rss_file_bytes: Option<u64>,
    pub rss_shmem_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub sockets: Option<SocketCounts>,
    pub pss_bytes: Option<u64>,
    /// When `limits` was last read (it is reused for a minute).
    pub limits_read_at: Option<Instant>,
    /// When the fds were last classified (reused while their count is unchanged, for a minute).
    pub fds_read_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Unix,
    Other,
}

/// Machine constants needed to turn ticks and pages into seconds and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub ticks_per_second: u64,
    pub page_size: u64,
    pub boot_time_seconds: f64,
}

impl Clock {
    pub fn read(procfs: &Path) -> Clock {
        Clock {
            ticks_per_second: procfs::ticks_per_second().max(1),
            page_size: procfs::page_size(),
            boot_time_seconds: read_boot_time(procfs).unwrap_or(0.0),
        }
    }
}

fn read_boot_time(procfs: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(procfs.join("stat")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// How long a reading of `limits` is reused.
const LIMITS_REFRESH: Duration = Duration::from_secs(60);
/// How long socket counts are reused while the fd count does not change.
const SOCKETS_REFRESH: Duration = Duration::from_secs(60);

pub struct ProcfsCollector {
    procfs: PathBuf,
    clock: Clock,
    pss: bool,
    /// Reused read buffer.
    buf: Vec<u8>,
    /// Socket inode → protocol, per network namespace inode; rebuilt each sample.
    net_tables: HashMap<u64, HashMap<u64, Proto>>,
}

impl ProcfsCollector {
    pub fn new(procfs: &Path, pss: bool) -> Self {
        ProcfsCollector {
            procfs: procfs.to_path_buf(),
            clock: Clock::read(procfs),
            pss,
            buf: Vec::with_capacity(4096),
            net_tables: HashMap::new(),
        }
    }

    /// Reads one process. Used for targets and for the exporter itself. `stat` is this sample's
    /// `stat` when discovery already read it; `previous` lets slow-changing parts be reused.
    pub fn read(
        &mut self,
        handle: &Process,
        stat: Option<&ProcStat>,
        previous: Option<&ProcReadings>,
    ) -> Result<(ProcReadings, Vec<Gap>), Vanished> {
        let mut gaps = Vec::new();
        let fresh;
        let stat = match stat {
            Some(s) => s,
            None => {
                fresh = read_stat(handle, &mut self.buf).map_err(|_| Vanished)?;
                &fresh
            }
        };
        let tps = self.clock.ticks_per_second as f64;
        let mut r = ProcReadings {
            start_time_seconds: self.clock.boot_time_seconds + stat.starttime as f64 / tps,
            cpu_user_seconds: stat.utime as f64 / tps,
            cpu_system_seconds: stat.stime as f64 / tps,
            resident_bytes: stat.rss * self.clock.page_size,
            virtual_bytes: stat.vsize,
            threads: stat.num_threads,
            ..ProcReadings::default()
        };
        match self.read_status(handle) {
            Ok(s) => {
                r.data_bytes = s.data;
                r.rss_anon_bytes = s.anon;
                r.rss_file_bytes = s.file;
                r.rss_shmem_bytes = s.shmem;
                r.swap_bytes = s.swap;
                if let Some(rss) = s.rss {
                    r.resident_bytes = rss;
                }
            }
            Err(reason) => gaps.push(Gap::new("memory breakdown", reason)),
        }
        // Limits change rarely (prlimit): read them once a minute.
        match previous.filter(|p| p.limits_read_at.is_some_and(|at| at.elapsed() < LIMITS_REFRESH)) {
            Some(p) => {
                r.max_fds = p.max_fds;
                r.limits_read_at = p.limits_read_at;
            }
            None => match handle.limits() {
                Ok(l) => {
                    r.max_fds = limit_value(&l.max_open_files.soft_limit);
                    r.limits_read_at = Some(Instant::now());
                }
                Err(e) => gaps.push(Gap::new("fd limit", Reason::from_proc_error(&e))),
            },
        }
        // Since Linux 6.2 the size of /proc/PID/fd is the number of open fds: one stat instead of
        // a readlink per fd. Sockets are classified again when that number changes (a pool
        // that hoards connections changes it) and at least once a minute.
        let count = self.fd_count(handle.pid);
        let reuse = previous.filter(|p| {
            count.is_some()
                && p.open_fds == count
                && p.sockets.is_some()
                && p.fds_read_at.is_some_and(|at| at.elapsed() < SOCKETS_REFRESH)
        });
        match reuse {
            Some(p) => {
                r.open_fds = p.open_fds;
                r.sockets = p.sockets;
                r.fds_read_at = p.fds_read_at;
            }
            None => match self.read_fds(handle) {
                Ok((open, sockets)) => {
                    r.open_fds = Some(open);
                    r.sockets = Some(sockets);
                    r.fds_read_at = Some(Instant::now());
                }
                Err(reason) => gaps.push(Gap::new("fds and sockets", reason)),
            },
        }
        if self.pss {
            match read_pss(handle) {
                Ok(pss) => r.pss_bytes = Some(pss),
                Err(reason) => gaps.push(Gap::new("pss", reason)),
            }
        }
        // A process that exits between two reads fails the later ones: that is an exit, not an
        // error to count.
        if !gaps.is_empty() && !handle.is_alive() {
            return Err(Vanished);
        }
        Ok((r, gaps))
    }

    /// The open fd count from the size of `/proc/PID/fd` (Linux 6.2+), or none where the kernel
    /// reports no size.
    fn fd_count(&self, pid: i32) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let size = std::fs::metadata(self.procfs.join(pid.to_string()).join("fd")).ok()?.size();
        (size > 0).then_some(size)
    }

    /// Reads the fields of `status` the metrics use, without building a map of every line.
    fn read_status(&mut self, handle: &Process) -> Result<StatusFields, Reason> {
        read_into(handle, "status", &mut self.buf).map_err(|e| Reason::from_io_error(&e))?;
        Ok(parse_status(&String::from_utf8_lossy(&self.buf)))
    }

    /// Counts fds and collects socket inodes: one `readlinkat` per fd on a directory opened
    /// through the process handle (the procfs crate's iterator makes four syscalls per fd).
    fn read_fds(&mut self, handle: &Process) -> Result<(u64, SocketCounts), Reason> {
        let dir = handle
            .open_relative_flags(
                "fd",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            )
            .map_err(|e| Reason::from_proc_error(&e))?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
        // The Dir takes the fd over (no second open of "."); `raw` stays valid while it lives.
        let entries =
            rustix::fs::Dir::new(std::os::fd::OwnedFd::from(dir)).map_err(|e| Reason::from_io_error(&e.into()))?;
        let mut open = 0;
        let mut inodes = Vec::new();
        let mut link = [0u8; 64];
        for entry in entries {
            let Ok(entry) = entry else { break };
            let name = entry.file_name();
            if name.to_bytes().first().is_none_or(|b| !b.is_ascii_digit()) {
                continue;
            }
            // SAFETY: readlinkat writes at most link.len() bytes into our buffer; name is a
            // NUL-terminated string and dir an open directory fd.
            let n = unsafe { libc::readlinkat(raw, name.as_ptr(), link.as_mut_ptr().cast(), link.len()) };
            if n < 0 {
                // Listing the directory needs only CAP_DAC_READ_SEARCH, reading its links ptrace
                // access: without that, every link is refused, and a count of 0 would be a lie.
                let errno = std::io::Error::last_os_error().raw_os_error();
                if matches!(errno, Some(libc::EACCES) | Some(libc::EPERM)) {
                    return Err(Reason::PermissionDenied);
                }
                // An fd closed between readdir and readlink is simply gone.
                continue;
            }
            open += 1;
            if let Some(inode) = socket_inode(&link[..n as usize]) {
                inodes.push(inode);
            }
        }
        let mut counts = SocketCounts::default();
        if inodes.is_empty() {
            return Ok((open, counts));
        }
        let table = self.net_table(handle);
        for inode in inodes {
            match table.and_then(|t| t.get(&inode)) {
                Some(Proto::Tcp) => counts.tcp += 1,
                Some(Proto::Udp) => counts.udp += 1,
                Some(Proto::Unix) => counts.unix += 1,
                Some(Proto::Other) | None => counts.other += 1,
            }
        }
        Ok((open, counts))
    }

    fn net_table(&mut self, handle: &Process) -> Option<&HashMap<u64, Proto>> {
        let base = self.procfs.join(handle.pid.to_string());
        let ns = std::fs::read_link(base.join("ns/net")).ok()?;
        let ns_inode = bracketed_inode(&ns.to_string_lossy())?;
        Some(self.net_tables.entry(ns_inode).or_insert_with(|| read_net_table(&base.join("net"))))
    }
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &[u8]) -> Option<u64> {
    std::str::from_utf8(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?).ok()?.parse().ok()
}

/// The `status` fields the metrics use, in bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatusFields {
    pub rss: Option<u64>,
    pub data: Option<u64>,
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub shmem: Option<u64>,
    pub swap: Option<u64>,
}

pub fn parse_status(text: &str) -> StatusFields {
    let mut s = StatusFields::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let slot = match key {
            "VmRSS" => &mut s.rss,
            "VmData" => &mut s.data,
            "RssAnon" => &mut s.anon,
            "RssFile" => &mut s.file,
            "RssShmem" => &mut s.shmem,
            "VmSwap" => &mut s.swap,
            _ => continue,
        };
        *slot = kib(value);
    }
    s
}

/// `   2048 kB` in bytes. The unit is required: a line cut short (a file read as its process
/// vanished) is missing, never a smaller number.
fn kib(value: &str) -> Option<u64> {
    value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok().map(|kib| kib * 1024)
}

/// The process went away while being read.
#[derive(Debug)]
pub struct Vanished;

fn limit_value(v: &procfs::process::LimitValue) -> Option<u64> {
    match v {
        procfs::process::LimitValue::Value(n) => Some(*n),
        procfs::process::LimitValue::Unlimited => None,
    }
}

/// `net:[4026531840]` → 4026531840.
fn bracketed_inode(link: &str) -> Option<u64> {
    link.split_once('[')?.1.strip_suffix(']')?.parse().ok()
}

/// Builds socket inode → protocol from a `/proc/PID/net` directory.
fn read_net_table(net: &Path) -> HashMap<u64, Proto> {
    let mut table = HashMap::new();
    for (file, proto, column) in [
        ("tcp", Proto::Tcp, 9),
        ("tcp6", Proto::Tcp, 9),
        ("udp", Proto::Udp, 9),
        ("udp6", Proto::Udp, 9),
        ("udplite", Proto::Udp, 9),
        ("udplite6", Proto::Udp, 9),
        ("unix", Proto::Unix, 6),
        ("raw", Proto::Other, 9),
        ("raw6", Proto::Other, 9),
    ] {
        if let Ok(text) = std::fs::read_to_string(net.join(file)) {
            for (inode, _) in parse_inodes(&text, column) {
                table.insert(inode, proto);
            }
        }
    }
    table
}

/// Yields (inode, line) from a `/proc/net` table whose inode is in `column`, skipping the header.
fn parse_inodes(text: &str, column: usize) -> impl Iterator<Item = (u64, &str)> {
    text.lines().skip(1).filter_map(move |line| {
        let inode = line.split_whitespace().nth(column)?.parse().ok()?;
        Some((inode, line))
    })
}

/// Sums `Pss:` from `smaps_rollup` without building a map of every field.
fn read_pss(handle: &Process) -> Result<u64, Reason> {
    let mut file = handle.open_relative("smaps_rollup").map_err(|e| Reason::from_proc_error(&e))?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| Reason::from_io_error(&e))?;
    parse_pss(&text).ok_or(Reason::Parse)
}

pub fn parse_pss(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(kib)
}

impl Collector for ProcfsCollector {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn begin_sample(&mut self) {
        self.net_tables.clear();
    }

    fn collect(&mut self, target: &mut Target) -> Outcome {
        let Some(handle) = target.handle.as_ref() else { return Outcome::Vanished };
        match self.read(handle, target.stat.as_ref(), target.readings.procfs.as_ref()) {
            Ok((readings, gaps)) => {
                target.readings.procfs = Some(readings);
                Outcome::Read(gaps.into())
            }
            Err(Vanished) => Outcome::Vanished,
        }
    }

    fn render(&self, targets: &[&Target], out: &mut Families) {
        for t in targets {
            let Some(r) = &t.readings.procfs else { continue };
            render_process(out, t, r);
        }
    }
}

fn render_process(out: &mut Families, t: &Target, r: &ProcReadings) {
    out.target_counter(t, "process_cpu_user_seconds_total", "User CPU time spent in seconds.", &[], r.cpu_user_seconds);
    out.target_counter(
        t,
        "process_cpu_system_seconds_total",
        "System CPU time spent in seconds.",
        &[],
        r.cpu_system_seconds,
    );
    out.target_counter(
        t,
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        &[],
        r.cpu_user_seconds + r.cpu_system_seconds,
    );
    out.target_gauge(
        t,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &[],
        r.start_time_seconds,
    );
    out.target_gauge(
        t,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &[],
        r.resident_bytes as f64,
    );
    out.target_gauge(t, "process_virtual_memory_bytes", "Virtual memory size in bytes.", &[], r.virtual_bytes as f64);
    if let Some(v) = r.data_bytes {
        out.target_gauge(
            t,
            "process_heap_bytes",
            "Process data segment size (VmData) in bytes, as prom-client names it.",
            &[],
            v as f64,
        );
    }
    for (kind, v) in [("anon", r.rss_anon_bytes), ("file", r.rss_file_bytes), ("shmem", r.rss_shmem_bytes)] {
        if let Some(v) = v {
            out.target_gauge(
                t,
                "nodejs_process_resident_memory_breakdown_bytes",
                "Resident memory by kind: anon (heap, stacks, native allocations), file (mapped files, the node binary), shmem (shared memory).",
                &[("type", kind)],
                v as f64,
            );
        }
    }
    if let Some(v) = r.swap_bytes {
        out.target_gauge(t, "nodejs_process_swap_bytes", "Memory of the process swapped out, in bytes.", &[], v as f64);
    }
    if let Some(v) = r.pss_bytes {
        out.target_gauge(
            t,
            "nodejs_process_pss_bytes",
            "Proportional set size from smaps_rollup: resident memory with shared pages divided among their users.",
            &[],
            v as f64,
        );
    }
    out.target_gauge(t, "nodejs_process_threads", "Number of OS threads of the process.", &[], r.threads as f64);
    if let Some(v) = r.open_fds {
        out.target_gauge(t, "process_open_fds", "Number of open file descriptors.", &[], v as f64);
    }
    if let Some(v) = r.max_fds {
        out.target_gauge(t, "process_max_fds", "Maximum number of open file descriptors.", &[], v as f64);
    }
    if let Some(s) = &r.sockets {
        for (proto, v) in [("tcp", s.tcp), ("udp", s.udp), ("unix", s.unix), ("other", s.other)] {
            out.target_gauge(
                t,
                "nodejs_process_open_sockets",
                "Open sockets of the process by protocol (tcp and udp include IPv6).",
                &[("protocol", proto)],
                v as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_table_inodes() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2405 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n";
        let inodes: Vec<u64> = parse_inodes(tcp, 9).map(|(i, _)| i).collect();
        assert_eq!(inodes, vec![12345]);
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/x.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 23457\n";
        let inodes: Vec<u64> = parse_inodes(unix, 6).map(|(i, _)| i).collect();
        assert_eq!(inodes, vec![23456, 23457]);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert_eq!(parse_inodes("header\n\ngarbage\n1 2 3\n", 9).count(), 0);
    }

    #[test]
    fn pss_from_rollup() {
        let text = "00400000-7ffd [rollup]\nRss:              123 kB\nPss:               99 kB\nPss_Anon:  50 kB\n";
        assert_eq!(parse_pss(text), Some(99 * 1024));
        assert_eq!(parse_pss("nothing"), None);
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tnode\nVmSize:\t 1000 kB\nVmRSS:\t   2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t 1000 kB\nRssShmem:\t 24 kB\nVmData:\t 5000 kB\nVmSwap:\t 0 kB\nThreads:\t7\n";
        let s = parse_status(text);
        assert_eq!(s.rss, Some(2048 * 1024));
        assert_eq!((s.anon, s.file, s.shmem, s.swap), (Some(1 << 20), Some(1000 * 1024), Some(24 * 1024), Some(0)));
        assert_eq!(parse_status("garbage\nVmRSS: lots\n"), StatusFields::default());
    }

    #[test]
    fn empty_and_truncated_files_read_as_missing() {
        assert_eq!(parse_status(""), StatusFields::default());
        let full = "Name:\tnode\nVmRSS:\t   2048 kB\nRssAnon:\t 1024 kB\n";
        for cut in 0..full.len() {
            let s = parse_status(&full[..cut]);
            assert!(s.rss.is_none() || s.rss == Some(2048 * 1024), "{:?} from {:?}", s.rss, &full[..cut]);
            assert!(s.anon.is_none() || s.anon == Some(1024 * 1024), "{:?} from {:?}", s.anon, &full[..cut]);
        }
        assert_eq!(parse_pss(""), None);
        assert_eq!(parse_pss("Rss: 123 kB\nPss:   9"), None, "cut before its unit");
        // A table cut after its header, or before a line's inode column, has no sockets.
        assert_eq!(parse_inodes("  sl  local_address rem_address   st\n", 9).count(), 0);
        assert_eq!(parse_inodes("  sl  local_address\n   0: 0100007F:2405 00000000:0000 0A", 9).count(), 0);
        assert_eq!(parse_inodes("", 9).count(), 0);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[4242]"), Some(4242));
        assert_eq!(socket_inode(b"pipe:[4242]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn ns_links() {
        assert_eq!(bracketed_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(bracketed_inode("garbage"), None);
    }
}
