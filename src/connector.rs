//! Opening TCP connections to inspectors, in one place: every inspector connection goes through a
//! [`Connector`], so a mode that must open the socket elsewhere (inside a pod's network namespace)
//! replaces only this.
//!
//! [`NetnsConnector`] opens the socket inside the target's network namespace when it is not the
//! exporter's own: a pod's inspector listens on the pod's loopback, which the host cannot reach.
//! `setns` changes the namespace of the calling thread only, so it runs on a dedicated OS thread
//! that ends after the one connection — never on an async worker, never reused. A socket keeps
//! the namespace it was created in, so the stream then lives on the async runtime like any other.
//! Entering another network namespace needs `CAP_SYS_ADMIN`; opening another user's
//! `/proc/PID/ns/net` needs ptrace read access (`CAP_SYS_PTRACE`).

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send + 'a>>;

pub trait Connector: Send + Sync + 'static {
    /// Connects to `addr` as seen by the target process `pid`, within `timeout`.
    fn connect(&self, pid: i32, addr: SocketAddr, timeout: Duration) -> ConnectFuture<'_>;
}

/// Connects from the exporter's own network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectConnector;

impl Connector for DirectConnector {
    fn connect(&self, _pid: i32, addr: SocketAddr, timeout: Duration) -> ConnectFuture<'_> {
        Box::pin(connect_direct(addr, timeout))
    }
}

async fn connect_direct(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(result) => {
            let stream = result?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }
        Err(_) => Err(timed_out(addr)),
    }
}

fn timed_out(addr: SocketAddr) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect to {addr} timed out"))
}

/// Identifies a namespace: the device and inode of its nsfs file.
pub type NsId = (u64, u64);

/// The network namespace a file of `/proc/PID/ns/net` (or the file itself) names.
fn ns_id_of(file: &std::fs::File) -> std::io::Result<NsId> {
    let st = rustix::fs::fstat(file)?;
    Ok((st.st_dev, st.st_ino))
}

/// The exporter's own network namespace.
pub fn own_netns() -> std::io::Result<NsId> {
    ns_id_of(&std::fs::File::open("/proc/self/ns/net")?)
}

/// The network namespace of `pid`, read under `procfs`. Needs ptrace read access to `pid`: the
/// same user, or `CAP_SYS_PTRACE`.
pub fn netns_of(procfs: &Path, pid: i32) -> std::io::Result<NsId> {
    ns_id_of(&std::fs::File::open(procfs.join(pid.to_string()).join("ns/net"))?)
}

/// Why a connection could not be opened inside a process's network namespace. Carried inside the
/// `std::io::Error` the connector returns, so callers can name the missing capability.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open the network namespace of pid {pid} ({path}): {source}")]
    Open { pid: i32, path: PathBuf, source: std::io::Error },
    #[error("cannot enter the network namespace of pid {pid}: {source}")]
    Enter { pid: i32, source: std::io::Error },
}

impl NetnsError {
    /// The capability whose absence explains this error, when it is a permission error.
    pub fn missing_capability(&self) -> Option<&'static str> {
        match self {
            NetnsError::Open { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("CAP_SYS_PTRACE")
            }
            NetnsError::Enter { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("CAP_SYS_ADMIN")
            }
            _ => None,
        }
    }

    fn into_io(self) -> std::io::Error {
        let kind = match &self {
            NetnsError::Open { source, .. } | NetnsError::Enter { source, .. } => source.kind(),
        };
        std::io::Error::new(kind, self)
    }
}

/// The capability whose absence made a connection fail, if a namespace entry failed for want of
/// one.
pub fn missing_capability(e: &std::io::Error) -> Option<&'static str> {
    e.get_ref()?.downcast_ref::<NetnsError>()?.missing_capability()
}

/// At most this many connections are being opened inside other namespaces at once, each on its
/// own thread: a storm of new pods waits for a turn instead of spawning threads without bound.
pub const MAX_NETNS_THREADS: usize = 16;

/// Connects inside the target's network namespace when it differs from the exporter's, directly
/// otherwise (`--inspector.enter-netns`).
#[derive(Debug, Clone)]
pub struct NetnsConnector {
    procfs: PathBuf,
    /// The exporter's own network namespace; unknown means every target's is entered.
    own: Option<NsId>,
    threads: Arc<Semaphore>,
}

impl NetnsConnector {
    /// Targets' namespaces are read under `procfs` (`/host/proc` in a DaemonSet with hostPID).
    pub fn new(procfs: PathBuf) -> NetnsConnector {
        let own = match own_netns() {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the exporter's own network namespace: every inspector connection will enter its process's namespace");
                None
            }
        };
        NetnsConnector { procfs, own, threads: Arc::new(Semaphore::new(MAX_NETNS_THREADS)) }
    }

    async fn connect_in_netns(&self, pid: i32, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
        let deadline = Instant::now() + timeout;
        let path = self.procfs.join(pid.to_string()).join("ns/net");
        // Opened once and used for both the comparison and setns: a pid reused meanwhile cannot
        // swap the namespace under us.
        let ns = std::fs::File::open(&path).map_err(|source| NetnsError::Open { pid, path, source }.into_io())?;
        if self.own.is_some() && self.own == ns_id_of(&ns).ok() {
            return connect_direct(addr, timeout).await;
        }
        let permit = match tokio::time::timeout_at(deadline.into(), self.threads.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(std::io::Error::other("the connector is closed")),
            Err(_) => return Err(timed_out(addr)),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("netns-connect".into())
            .spawn(move || {
                // The permit goes when this thread does, even if nobody waits for the result.
                let _permit = permit;
                let _ = tx.send(connect_inside(pid, &ns, addr, deadline));
            })
            .map_err(|e| std::io::Error::other(format!("cannot start a thread to enter a network namespace: {e}")))?;
        let stream =
            rx.await.map_err(|_| std::io::Error::other("the namespace-entry thread ended without a result"))??;
        TcpStream::from_std(stream)
    }
}

/// Runs on a dedicated thread, which ends right after: enters the namespace `ns` and connects.
fn connect_inside(
    pid: i32,
    ns: &std::fs::File,
    addr: SocketAddr,
    deadline: Instant,
) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: setns takes an fd we hold open and a namespace type; it affects only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(NetnsError::Enter { pid, source }.into_io());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out(addr));
    }
    let stream = std::net::TcpStream::connect_timeout(&addr, left).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            timed_out(addr)
        } else {
            e
        }
    })?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl Connector for NetnsConnector {
    fn connect(&self, pid: i32, addr: SocketAddr, timeout: Duration) -> ConnectFuture<'_> {
        Box::pin(async move {
            match tokio::time::timeout(timeout, self.connect_in_netns(pid, addr, timeout)).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(addr)),
            }
        })
    }
}

/// Linux capability numbers the exporter may need (`linux/capability.h`).
pub mod cap {
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const KILL: u32 = 5;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_ADMIN: u32 = 21;
}

/// The exporter's effective capabilities (`CapEff` of `/proc/self/status`).
pub fn effective_capabilities() -> Option<u64> {
    parse_cap_eff(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `CapEff:` of a `/proc/PID/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Whether `caps` (a capability mask) holds capability `n`.
pub fn has_capability(caps: u64, n: u32) -> bool {
    caps & (1 << n) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn own_namespace_is_connected_directly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connector = NetnsConnector::new(PathBuf::from("/proc"));
        let pid = std::process::id() as i32;
        let stream = runtime().block_on(connector.connect(pid, addr, Duration::from_secs(2))).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addr);
        assert_eq!(netns_of(Path::new("/proc"), pid).unwrap(), own_netns().unwrap());
    }

    #[test]
    fn a_vanished_process_is_not_found() {
        let connector = NetnsConnector::new(PathBuf::from("/proc"));
        // Beyond pid_max: no such process.
        let e = runtime()
            .block_on(connector.connect(i32::MAX, "127.0.0.1:9".parse().unwrap(), Duration::from_secs(1)))
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert_eq!(missing_capability(&e), None);
        assert!(e.to_string().contains("network namespace of pid"), "{e}");
    }

    #[test]
    fn permission_errors_name_the_capability() {
        let denied = || std::io::Error::from_raw_os_error(libc::EPERM);
        let e = NetnsError::Enter { pid: 1, source: denied() }.into_io();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(missing_capability(&e), Some("CAP_SYS_ADMIN"));
        let e = NetnsError::Open { pid: 1, path: "/proc/1/ns/net".into(), source: denied() }.into_io();
        assert_eq!(missing_capability(&e), Some("CAP_SYS_PTRACE"));
        assert_eq!(missing_capability(&std::io::Error::from_raw_os_error(libc::EPERM)), None);
    }

    #[test]
    fn effective_capabilities_from_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000280004\n";
        let caps = parse_cap_eff(status).unwrap();
        assert!(has_capability(caps, cap::SYS_ADMIN));
        assert!(has_capability(caps, cap::SYS_PTRACE));
        assert!(has_capability(caps, cap::DAC_READ_SEARCH));
        assert!(!has_capability(caps, cap::KILL));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
    }
}
