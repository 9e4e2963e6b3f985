//! Cheap reads of per-process `/proc` files through a process handle: one `openat`, one or two
//! `read`s into a reused buffer, one `close` — no size probing, no map of every field. The sampler
//! reads `stat` and `status` of every watched process at every sample, so this is the hot path.

use std::io::Read;

use procfs::process::Process;

/// The fields of `/proc/PID/stat` the exporter uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    pub state: char,
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Start time in clock ticks since boot: with the pid, the process's identity.
    pub starttime: u64,
    pub vsize: u64,
    /// Resident pages.
    pub rss: u64,
}

/// Parses `/proc/PID/stat`. `comm` may hold spaces and parentheses: it ends at the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5): field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        comm,
        state: fields.first()?.chars().next()?,
        utime: field(14)?,
        stime: field(15)?,
        num_threads: fields.get(20 - 3)?.parse::<i64>().ok()?.max(0) as u64,
        starttime: field(22)?,
        vsize: field(23)?,
        rss: fields.get(24 - 3)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// Reads a small `/proc/PID/<name>` file into `buf` (cleared first).
pub fn read_into(handle: &Process, name: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut file = handle.open_relative(name).map_err(to_io)?;
    buf.clear();
    if buf.capacity() < 4096 {
        buf.reserve(4096);
    }
    loop {
        let len = buf.len();
        if buf.capacity() - len < 1024 {
            buf.reserve(buf.capacity());
        }
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        let n = file.read(&mut buf[len..])?;
        buf.truncate(len + n);
        // A procfs single-record file arrives in one read; a short read ending in a newline is
        // the end, which saves the read that would return 0.
        if n == 0 || (n < spare && buf.last() == Some(&b'\n')) {
            return Ok(());
        }
    }
}

/// Reads and parses `stat` through the handle.
pub fn read_stat(handle: &Process, buf: &mut Vec<u8>) -> std::io::Result<ProcStat> {
    read_into(handle, "stat", buf)?;
    std::str::from_utf8(buf)
        .ok()
        .and_then(parse_stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable stat"))
}

pub fn to_io(e: procfs::ProcError) -> std::io::Error {
    use std::io::{Error, ErrorKind};
    match e {
        procfs::ProcError::PermissionDenied(_) => Error::new(ErrorKind::PermissionDenied, "permission denied"),
        procfs::ProcError::NotFound(_) => Error::new(ErrorKind::NotFound, "not found"),
        procfs::ProcError::Io(e, _) => e,
        other => Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_tricky_comm() {
        let line = "4242 (my (weird) app) S 1 4242 4242 0 -1 4194304 1000 0 0 0 150 25 0 0 20 0 11 0 123456 1090519040 12000 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "my (weird) app");
        assert_eq!(
            (s.state, s.utime, s.stime, s.num_threads, s.starttime, s.vsize, s.rss),
            ('S', 150, 25, 11, 123456, 1090519040, 12000)
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn reads_our_own_stat() {
        let me = Process::myself().unwrap();
        let mut buf = Vec::new();
        let s = read_stat(&me, &mut buf).unwrap();
        assert!(s.starttime > 0 && s.num_threads >= 1);
        let pf = me.stat().unwrap();
        assert_eq!((s.comm.as_str(), s.starttime, s.vsize > 0), (pf.comm.as_str(), pf.starttime, true));
    }
}
