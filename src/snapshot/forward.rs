//! Forwarding Alertmanager's webhook to the exporter on the alert's node (`snapshots.forward`).
//!
//! In a DaemonSet, Alertmanager posts to one Service URL and reaches a random exporter pod; the
//! alert's process is on the node whose exporter scraped it, and that exporter's `host:port` is
//! the alert's `instance` label (Prometheus's scrape address). This module owns what makes
//! forwarding there safe: which `instance` values are addresses at all ([`Instance::parse`]),
//! grouping alerts per instance under a cap ([`group`]), recognising our own listener
//! ([`is_own_listener`]), and the HTTP client, built once, that posts with a timeout, without
//! proxies or redirects. It never decides which alerts to forward; `super::web` does.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;

/// Marks a forwarded webhook, with the forwarding exporter's node as its value. A request that
/// carries it is never forwarded again, so two exporters that disagree about nodes cannot bounce
/// an alert between them.
pub const FORWARDED_HEADER: &str = "x-nodejs-leak-exporter-forwarded";

/// Distinct instances one webhook is forwarded to; alerts for more are counted, not sent. A
/// DaemonSet's alert group rarely names more than a few nodes, and the cap bounds what one
/// request can make this exporter send.
pub const MAX_INSTANCES: usize = 16;

/// The part of another exporter's answer kept in ours (its JSON result is small).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// How the forwards are sent, from `snapshots.forward_*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardSettings {
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// Checked in the other exporters' certificates instead of their address (TLS only).
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardClientError {
    #[error("snapshots.forward_ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("cannot build the HTTP client that forwards alerts: {0}")]
    Client(#[source] reqwest::Error),
}

/// An `instance` label that is a plain `host:port`: an IPv4 literal, a bracketed IPv6 literal or a
/// DNS name, and a port. Never a URL, a path or userinfo: the label comes from whoever can post a
/// webhook, and only ever selects which exporter's fixed path is posted to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    /// As written in a URL: an IPv6 literal keeps its brackets.
    host: String,
    port: u16,
}

impl Instance {
    pub fn parse(label: &str) -> Option<Instance> {
        let (host, port) = label.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))?;
        if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // No zone (`%eth0`): it names an interface of the sender, not an address.
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            return Some(Instance { host: host.to_string(), port });
        }
        if host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host) {
            return Some(Instance { host: host.to_ascii_lowercase(), port });
        }
        None
    }

    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The other exporter's webhook, in our own listener's scheme (every pod shares the web
    /// configuration).
    pub fn webhook_url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}:{}/api/v1/alertmanager", self.host, self.port)
    }

    /// Where to connect: the literal, or the name looked up.
    async fn socket_address(&self) -> std::io::Result<SocketAddr> {
        if let Some(ip) = self.ip() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} has no address", self.host)))
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Letters, digits and `-` in dot-separated labels of at most 63 bytes, 253 in all; a pod or
/// Service name is one, and so is a node name.
pub fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `items` grouped by instance, in the order each instance first appears, at most `max`
/// instances; the second value counts the items left out.
pub fn group<T>(items: impl IntoIterator<Item = (Instance, T)>, max: usize) -> (Vec<(Instance, Vec<T>)>, usize) {
    let mut groups: Vec<(Instance, Vec<T>)> = Vec::new();
    let mut left_out = 0;
    for (instance, item) in items {
        if let Some((_, members)) = groups.iter_mut().find(|(i, _)| *i == instance) {
            members.push(item);
        } else if groups.len() < max {
            groups.push((instance, vec![item]));
        } else {
            left_out += 1;
        }
    }
    (groups, left_out)
}

/// Whether `instance` is this exporter's own listener (`listen`, the bound address): its port,
/// and a loopback address, the listener's address, an address of this host's interfaces, or one
/// of `own_names`. Forwarding there would only come back as another node's alert.
pub fn is_own_listener(instance: &Instance, listen: SocketAddr, local: &BTreeSet<IpAddr>, own_names: &[&str]) -> bool {
    if instance.port() != listen.port() {
        return false;
    }
    match instance.ip() {
        Some(ip) => ip.is_loopback() || ip.is_unspecified() || ip == listen.ip() || local.contains(&ip),
        None => instance.host == "localhost" || own_names.iter().any(|n| n.eq_ignore_ascii_case(&instance.host)),
    }
}

/// The addresses of this host's interfaces (in its network namespace). Empty when they cannot be
/// read: the port and the loopback check still apply, and a forward to ourselves is harmless
/// (it comes back marked and is counted as another node's alert).
pub fn local_addresses() -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list and sets `list`; it is freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is an element of the list getifaddrs returned, not freed yet.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
            let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let a = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
                out.insert(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let a = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in6>() };
                out.insert(IpAddr::from(a.sin6_addr.s6_addr));
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// How one forward ended: the other exporter's status and answer, or why there was none.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Forwarded {
    /// The other exporter, `host:port`.
    pub instance: String,
    /// Alerts sent to it.
    pub alerts: usize,
    /// Its HTTP status.
    pub status: Option<u16>,
    /// Why the forward failed (no answer, or an answer other than 2xx).
    pub error: Option<String>,
    /// Its answer, when JSON: what it did with the alerts.
    pub answer: Option<serde_json::Value>,
}

impl Forwarded {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Sends forwards; one client for the exporter's life, so connections and TLS settings are
/// reused.
pub struct Forwarder {
    client: reqwest::Client,
    timeout: Duration,
    /// With `snapshots.forward_server_name`, the settings a client per forward is built from.
    named: Option<(String, ForwardSettings, Vec<reqwest::Certificate>)>,
}

impl Forwarder {
    pub fn new(settings: &ForwardSettings) -> Result<Forwarder, ForwardClientError> {
        let roots = match &settings.ca_file {
            Some(path) => {
                let fail = |message: String| ForwardClientError::CaFile { path: path.clone(), message };
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
                if certs.is_empty() {
                    return Err(fail("no PEM certificate in it".into()));
                }
                certs
            }
            None => Vec::new(),
        };
        let client = Self::client(settings, &roots, None)?;
        let named = settings.server_name.clone().map(|name| (name, settings.clone(), roots));
        Ok(Forwarder { client, timeout: settings.timeout, named })
    }

    /// A client with these settings; with `resolve`, one that connects to that address for that
    /// name (reqwest checks the certificate against the URL's host, so the URL names the server
    /// and the address comes from here).
    fn client(
        settings: &ForwardSettings,
        roots: &[reqwest::Certificate],
        resolve: Option<(&str, SocketAddr)>,
    ) -> Result<reqwest::Client, ForwardClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // Pod to pod: a proxy from the environment would see the credentials, and a redirect
            // could take them elsewhere.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nodejs-leak-exporter/", env!("CARGO_PKG_VERSION")));
        for cert in roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        if settings.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some((name, addr)) = resolve {
            builder = builder.resolve(name, addr);
        }
        builder.build().map_err(ForwardClientError::Client)
    }

    /// The client and URL for one forward: the shared client and the instance's URL, or, over
    /// TLS with a server name, a client of its own that takes the name to the instance's address.
    /// Webhooks are rare, so building a client per forward costs nothing that matters.
    async fn route(&self, instance: &Instance, tls: bool) -> Result<(reqwest::Client, String), String> {
        match &self.named {
            Some((name, settings, roots)) if tls => {
                let addr = instance.socket_address().await.map_err(|e| format!("cannot resolve {instance}: {e}"))?;
                let client = Self::client(settings, roots, Some((name, addr))).map_err(|e| e.to_string())?;
                Ok((client, format!("https://{name}:{}/api/v1/alertmanager", instance.port())))
            }
            _ => Ok((self.client.clone(), instance.webhook_url(tls))),
        }
    }

    /// Posts `body` (a webhook payload) to `instance`, marked as forwarded by `from_node` and
    /// with the `Authorization` the webhook came with. Returns within the timeout.
    pub async fn send(
        &self,
        instance: &Instance,
        tls: bool,
        authorization: Option<&HeaderValue>,
        from_node: &str,
        alerts: usize,
        body: Vec<u8>,
    ) -> Forwarded {
        let mut outcome = Forwarded { instance: instance.to_string(), alerts, status: None, error: None, answer: None };
        // A name lookup counts against the same timeout (the resolver's own can be long).
        let route = tokio::time::timeout(self.timeout, self.route(instance, tls)).await;
        let (client, url) = match route.unwrap_or_else(|_| Err(format!("cannot resolve {instance} in time"))) {
            Ok(route) => route,
            Err(error) => {
                outcome.error = Some(error);
                return outcome;
            }
        };
        let mut request = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_HEADER, HeaderValue::from_str(from_node).unwrap_or(HeaderValue::from_static("unknown")))
            .body(body);
        if let Some(auth) = authorization {
            request = request.header(http::header::AUTHORIZATION, auth.clone());
        }
        // The client's timeout covers the request; this one also covers reading the answer.
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status();
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                answer.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES - answer.len())]);
                if answer.len() >= MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, answer))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((status, answer))) => {
                outcome.status = Some(status.as_u16());
                outcome.answer = serde_json::from_slice(&answer).ok();
                if !status.is_success() {
                    let text = String::from_utf8_lossy(&answer);
                    outcome.error =
                        Some(format!("answered {status}: {}", text.trim().chars().take(200).collect::<String>()));
                }
            }
            Ok(Err(e)) if !e.is_timeout() => outcome.error = Some(error_chain(&e)),
            // The client's timeout or this one, whichever noticed first.
            Ok(Err(_)) | Err(_) => {
                outcome.error = Some(format!("no answer within {}", humantime::format_duration(self.timeout)))
            }
        }
        outcome
    }
}

/// reqwest's top error says only "error sending request"; the cause (refused, timed out, a
/// certificate) is further down.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_host_and_port_instances_are_forwarded_to() {
        for ok in ["10.0.0.7:19229", "[fd00::7]:19229", "node-1.example:19229", "Exporter-abc:1"] {
            assert!(Instance::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            ":19229",
            "10.0.0.7",
            "10.0.0.7:",
            "10.0.0.7:0",
            "10.0.0.7:65536",
            "10.0.0.7:+80",
            "http://x",
            "http://x:80",
            "a/b:80",
            "a/b",
            "user@h:1",
            "h:1/path",
            "h:1?x=1",
            "h h:1",
            "fd00::7:19229",
            "[fd00::7%eth0]:1",
            "[nothost]:1",
            "-h:1",
            "a..b:1",
        ] {
            assert_eq!(Instance::parse(bad), None, "{bad}");
        }
        let v6 = Instance::parse("[fd00::7]:19229").unwrap();
        assert_eq!(v6.webhook_url(true), "https://[fd00::7]:19229/api/v1/alertmanager");
        assert_eq!(v6.ip(), Some("fd00::7".parse().unwrap()));
        let name = Instance::parse("Node-1:80").unwrap();
        assert_eq!((name.to_string(), name.ip()), ("node-1:80".to_string(), None));
        assert_eq!(name.webhook_url(false), "http://node-1:80/api/v1/alertmanager");
    }

    #[test]
    fn alerts_are_grouped_per_instance_under_a_cap() {
        let i = |s: &str| Instance::parse(s).unwrap();
        let items = [(i("a:1"), 1), (i("b:1"), 2), (i("a:1"), 3), (i("c:1"), 4), (i("b:1"), 5), (i("c:1"), 6)];
        let (groups, left_out) = group(items.clone(), 16);
        assert_eq!(groups, vec![(i("a:1"), vec![1, 3]), (i("b:1"), vec![2, 5]), (i("c:1"), vec![4, 6])]);
        assert_eq!(left_out, 0);
        // With room for two instances the third's alerts are counted, the first two's all sent.
        let (groups, left_out) = group(items, 2);
        assert_eq!(groups, vec![(i("a:1"), vec![1, 3]), (i("b:1"), vec![2, 5])]);
        assert_eq!(left_out, 2);
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_stops_the_start_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        for path in [dir.path().join("missing.pem"), not_pem] {
            let settings = ForwardSettings {
                timeout: Duration::from_secs(1),
                ca_file: Some(path),
                server_name: None,
                insecure_skip_verify: false,
            };
            let err = Forwarder::new(&settings).err().expect("refused").to_string();
            assert!(err.starts_with("snapshots.forward_ca_file"), "{err}");
        }
        let plain = ForwardSettings {
            timeout: Duration::from_secs(1),
            ca_file: None,
            server_name: Some("exporter.monitoring.svc".into()),
            insecure_skip_verify: false,
        };
        assert!(Forwarder::new(&plain).is_ok());
    }

    #[test]
    fn our_own_listener_is_recognised() {
        let listen: SocketAddr = "0.0.0.0:19229".parse().unwrap();
        let local: BTreeSet<IpAddr> = ["10.1.2.3".parse().unwrap()].into();
        let own = |s: &str| is_own_listener(&Instance::parse(s).unwrap(), listen, &local, &["node-a"]);
        for yes in ["127.0.0.1:19229", "[::1]:19229", "10.1.2.3:19229", "localhost:19229", "NODE-A:19229"] {
            assert!(own(yes), "{yes}");
        }
        for no in ["10.1.2.3:19230", "10.1.2.4:19229", "node-b:19229"] {
            assert!(!own(no), "{no}");
        }
        assert!(local_addresses().iter().any(IpAddr::is_loopback), "this host's interfaces include loopback");
    }
}
