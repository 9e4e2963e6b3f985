//! Finding a process's inspector: from its `--inspect*` flags (command line and `NODE_OPTIONS`),
//! from its listening TCP sockets, and from configured ports; then `GET /json/list` for the
//! WebSocket path. Only loopback addresses unless the operator allowed others.
//! [`locate_inspector`] is the whole lookup for one given pid, shared by the commands and
//! collectors that open a session of their own (profiling, heap snapshots).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::collect::Reason;
use crate::connector::Connector;

/// Node's default inspector port.
pub const DEFAULT_PORT: u16 = 9229;

/// What a process's flags say about its inspector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectFlags {
    /// `--inspect`, `--inspect-brk` or `--inspect-wait` given: the inspector opened at start.
    pub enabled: bool,
    /// Host from the flags (`--inspect=host:port`, `--inspect-port=...`).
    pub host: Option<String>,
    /// Port from the flags; 0 means a random port, found through the process's sockets.
    pub port: Option<u16>,
}

impl InspectFlags {
    /// Reads flags from `NODE_OPTIONS` first, then the command line, which wins.
    pub fn parse(argv: &[String], node_options: Option<&str>) -> InspectFlags {
        let mut flags = InspectFlags::default();
        if let Some(opts) = node_options {
            let words: Vec<String> = opts.split_whitespace().map(str::to_string).collect();
            flags.apply(&words);
        }
        // Only node's own options, before the script: the app's arguments are not node's.
        let end = crate::discovery::node_options_end(argv).max(1.min(argv.len()));
        flags.apply(&argv[1.min(argv.len())..end]);
        flags
    }

    fn apply(&mut self, args: &[String]) {
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg, None),
            };
            match name {
                "--inspect" | "--inspect-brk" | "--inspect-wait" => {
                    self.enabled = true;
                    if let Some(v) = value {
                        self.set_address(&v);
                    }
                }
                "--inspect-port" | "--debug-port" => {
                    let v = value.or_else(|| {
                        i += 1;
                        args.get(i).cloned()
                    });
                    if let Some(v) = v {
                        self.set_address(&v);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// `[host:]port`, `[::1]:port`, or a bare host.
    fn set_address(&mut self, v: &str) {
        if let Ok(port) = v.parse::<u16>() {
            self.port = Some(port);
            return;
        }
        let (host, port) = match v.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => (h, p.parse::<u16>().ok()),
            _ => (v, None),
        };
        self.host = Some(host.trim_start_matches('[').trim_end_matches(']').to_string());
        if port.is_some() {
            self.port = port;
        }
    }

    /// The address the flags point at, when they name a port.
    pub fn address(&self) -> Option<SocketAddr> {
        let port = self.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return None;
        }
        Some(SocketAddr::new(connectable(resolve_host(self.host.as_deref())?), port))
    }
}

fn resolve_host(host: Option<&str>) -> Option<IpAddr> {
    match host {
        None | Some("localhost") => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(h) => h.parse().ok(),
    }
}

/// A socket bound to every interface is reached on loopback.
fn connectable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Whether the exporter may connect to `ip`: loopback always, others only when allowed.
pub fn address_allowed(ip: IpAddr, allowed: &[IpAddr]) -> bool {
    ip.is_loopback() || allowed.contains(&ip)
}

/// The TCP sockets the process listens on: its socket inodes (needs the same user or
/// CAP_SYS_PTRACE) matched against its network namespace's tables.
pub fn listening_sockets(procfs: &Path, pid: i32) -> std::io::Result<Vec<SocketAddr>> {
    let base = procfs.join(pid.to_string());
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(base.join("fd"))? {
        let Ok(entry) = entry else { continue };
        if let Ok(link) = std::fs::read_link(entry.path()) {
            if let Some(inode) =
                link.to_str().and_then(|s| s.strip_prefix("socket:[")).and_then(|s| s.strip_suffix(']'))
            {
                if let Ok(inode) = inode.parse::<u64>() {
                    inodes.insert(inode);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(base.join(file)) else { continue };
        for line in text.lines().skip(1) {
            if let Some((addr, inode)) = parse_listen_line(line, v6) {
                if inodes.contains(&inode) {
                    out.push(SocketAddr::new(connectable(addr.ip()), addr.port()));
                }
            }
        }
    }
    Ok(out)
}

/// Parses one `/proc/net/tcp{,6}` line in state LISTEN (0A) into (address, inode).
pub fn parse_listen_line(line: &str, v6: bool) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 || fields[3] != "0A" {
        return None;
    }
    let (addr_hex, port_hex) = fields[1].split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip = if v6 {
        if addr_hex.len() != 32 {
            return None;
        }
        // Four 32-bit words, each in host (little-endian) byte order.
        let mut bytes = [0u8; 16];
        for w in 0..4 {
            let word = u32::from_str_radix(&addr_hex[w * 8..w * 8 + 8], 16).ok()?;
            bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        let word = u32::from_str_radix(addr_hex, 16).ok()?;
        IpAddr::V4(Ipv4Addr::from(word.to_le_bytes()))
    };
    Some((SocketAddr::new(ip, port), fields[9].parse().ok()?))
}

/// Why a candidate address is not (or not this process's) inspector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub reason: Reason,
    pub message: String,
    /// The capability the exporter lacks to reach the address (to enter the process's network
    /// namespace), when that is why.
    pub missing_capability: Option<&'static str>,
}

impl ProbeError {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        ProbeError { reason, message: message.into(), missing_capability: None }
    }

    fn connect(e: &std::io::Error) -> Self {
        ProbeError {
            reason: Reason::from_io_error(e),
            message: e.to_string(),
            missing_capability: crate::connector::missing_capability(e),
        }
    }
}

/// The most `/json/list` may return: one or a few targets is a few hundred bytes.
const LIST_LIMIT: usize = 64 * 1024;

/// Asks `addr` for its inspector targets and returns the WebSocket path of the node target.
pub async fn probe(
    connector: &dyn Connector,
    pid: i32,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<String, ProbeError> {
    let work = async {
        let stream = connector.connect(pid, addr, timeout).await.map_err(|e| ProbeError::connect(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| ProbeError::new(Reason::Protocol, e.to_string()))?;
        let conn = tokio::spawn(conn);
        let request = http::Request::get("/json/list")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::new())
            .expect("valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ProbeError::new(Reason::Protocol, format!("not an HTTP server: {e}")))?;
        if response.status() != http::StatusCode::OK {
            return Err(ProbeError::new(Reason::Protocol, format!("GET /json/list answered {}", response.status())));
        }
        let body = Limited::new(response.into_body(), LIST_LIMIT)
            .collect()
            .await
            .map_err(|e| ProbeError::new(Reason::Protocol, format!("/json/list body: {e}")))?
            .to_bytes();
        conn.abort();
        websocket_path(&body)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::new(Reason::Timeout, format!("no answer from {addr} within {timeout:?}"))),
    }
}

/// Picks the node target's WebSocket path out of a `/json/list` answer.
pub fn websocket_path(body: &[u8]) -> Result<String, ProbeError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "type")]
        kind: Option<String>,
        #[serde(rename = "webSocketDebuggerUrl")]
        url: Option<String>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(body)
        .map_err(|e| ProbeError::new(Reason::Protocol, format!("not an inspector target list: {e}")))?;
    let url =
        entries.into_iter().filter(|e| e.kind.as_deref().is_none_or(|k| k == "node")).find_map(|e| e.url).ok_or_else(
            || ProbeError::new(Reason::Protocol, "no node target in /json/list (a debugger may hold it)"),
        )?;
    // Keep only the path: we connect to the address we probed, never to a host the peer names.
    let rest = url.strip_prefix("ws://").ok_or_else(|| ProbeError::new(Reason::Protocol, "not a ws:// URL"))?;
    let path = &rest[rest.find('/').ok_or_else(|| ProbeError::new(Reason::Protocol, "URL without a path"))?..];
    if path.len() > 200 || !path.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c)) {
        return Err(ProbeError::new(Reason::Protocol, "unexpected WebSocket path"));
    }
    Ok(path.to_string())
}

/// Where a process's inspector listens and its WebSocket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspector {
    pub addr: SocketAddr,
    pub path: String,
    /// The pid as the process sees itself.
    pub ns_pid: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("process {pid} not found under {procfs}")]
    NoProcess { pid: i32, procfs: PathBuf },
    #[error("process {pid} has no inspector to use: {why}")]
    NoInspector { pid: i32, why: String },
}

/// Finds `pid`'s inspector as the collector does: the address its `--inspect*` flags name, its
/// listening sockets, then `ports`; only loopback addresses unless `allowed` names them.
pub async fn locate_inspector(
    connector: &dyn Connector,
    procfs: &Path,
    pid: i32,
    ports: &[u16],
    allowed: &[IpAddr],
    timeout: Duration,
) -> Result<Inspector, LocateError> {
    let dir = procfs.join(pid.to_string());
    let no_process = || LocateError::NoProcess { pid, procfs: procfs.to_path_buf() };
    let argv =
        std::fs::read(dir.join("cmdline")).map(|b| crate::discovery::split_cmdline(&b)).map_err(|_| no_process())?;
    let environ = read_limited(&dir.join("environ"), 4 << 20);
    let node_options = crate::discovery::parse_environ(&environ).node_options;
    let flags = InspectFlags::parse(&argv, node_options.as_deref());
    let status = std::fs::read_to_string(dir.join("status")).map_err(|_| no_process())?;
    let ns_pid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|p| p.parse().ok())
        .unwrap_or(pid);
    let mut candidates: Vec<SocketAddr> = Vec::new();
    // Node's default port only when its flags opened an inspector or named a port.
    if flags.enabled || flags.port.is_some() {
        candidates.extend(flags.address());
    }
    if let Ok(sockets) = listening_sockets(procfs, pid) {
        candidates.extend(sockets);
    }
    candidates.extend(ports.iter().map(|p| SocketAddr::from(([127, 0, 0, 1], *p))));
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|a| seen.insert(*a));
    let mut why = String::from("no --inspect flag, listening inspector or --inspector.port");
    for addr in candidates {
        if !address_allowed(addr.ip(), allowed) {
            why = format!("{addr} is not on loopback (allow it with --inspector.allow-address)");
            continue;
        }
        match probe(connector, pid, addr, timeout).await {
            Ok(path) => return Ok(Inspector { addr, path, ns_pid }),
            Err(e) if flags.address() == Some(addr) || ports.contains(&addr.port()) => {
                why = format!("{addr}: {}", e.message)
            }
            Err(_) => {}
        }
    }
    Err(LocateError::NoInspector { pid, why })
}

fn read_limited(path: &Path, max: u64) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max).read_to_end(&mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn flags_from_the_command_line() {
        let f = InspectFlags::parse(&args("node --inspect=127.0.0.1:0 app.js"), None);
        assert_eq!(f, InspectFlags { enabled: true, host: Some("127.0.0.1".into()), port: Some(0) });
        assert_eq!(f.address(), None, "port 0 is random");
        let f = InspectFlags::parse(&args("node --inspect app.js"), None);
        assert_eq!(f.address(), Some("127.0.0.1:9229".parse().unwrap()));
        let f = InspectFlags::parse(&args("node --inspect-brk=9333 app.js"), None);
        assert_eq!(f.address(), Some("127.0.0.1:9333".parse().unwrap()));
        let f = InspectFlags::parse(&args("node --inspect=[::1]:9444 app.js"), None);
        assert_eq!(f.address(), Some("[::1]:9444".parse().unwrap()));
        let f = InspectFlags::parse(&args("node --inspect=0.0.0.0:9555 app.js"), None);
        assert_eq!(f.address(), Some("127.0.0.1:9555".parse().unwrap()));
        let f = InspectFlags::parse(&args("node --inspect-port 9666 app.js"), None);
        assert!(!f.enabled);
        assert_eq!(f.address(), Some("127.0.0.1:9666".parse().unwrap()));
    }

    #[test]
    fn node_options_then_command_line() {
        let f = InspectFlags::parse(&args("node app.js"), Some("--max-old-space-size=100 --inspect-port=0"));
        assert_eq!(f, InspectFlags { enabled: false, host: None, port: Some(0) });
        let f = InspectFlags::parse(&args("node --inspect=9777 app.js"), Some("--inspect=9888"));
        assert_eq!(f.port, Some(9777));
    }

    #[test]
    fn app_arguments_are_not_node_flags() {
        let f = InspectFlags::parse(&args("node app.js --inspect=9999"), None);
        assert_eq!(f, InspectFlags::default());
    }

    #[test]
    fn listen_lines() {
        let v4 = "   0: 0100007F:2405 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listen_line(v4, false), Some(("127.0.0.1:9221".parse().unwrap(), 5555)));
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_listen_line(&established, false), None);
        let v6 = "   0: 00000000000000000000000001000000:2405 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6666 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listen_line(v6, true), Some(("[::1]:9221".parse().unwrap(), 6666)));
        assert_eq!(parse_listen_line("garbage", false), None);
    }

    #[test]
    fn target_lists() {
        let body =
            br#"[{"type":"node","webSocketDebuggerUrl":"ws://127.0.0.1:9229/0f2c1d2e-aaaa-bbbb-cccc-123456789abc"}]"#;
        assert_eq!(websocket_path(body).unwrap(), "/0f2c1d2e-aaaa-bbbb-cccc-123456789abc");
        assert_eq!(websocket_path(b"[]").unwrap_err().reason, Reason::Protocol);
        assert_eq!(websocket_path(b"<html>").unwrap_err().reason, Reason::Protocol);
        let evil = br#"[{"type":"node","webSocketDebuggerUrl":"ws://evil.example/../../x?y"}]"#;
        assert_eq!(websocket_path(evil).unwrap_err().reason, Reason::Protocol);
    }

    #[test]
    fn only_loopback_unless_allowed() {
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(address_allowed("127.0.0.1".parse().unwrap(), &[]));
        assert!(address_allowed("::1".parse().unwrap(), &[]));
        assert!(!address_allowed(other, &[]));
        assert!(address_allowed(other, &[other]));
    }
}
