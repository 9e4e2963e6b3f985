//! Container log formats, and what a log file's name says about whose it is.
//!
//! - CRI (containerd, CRI-O): `<RFC3339 time> <stdout|stderr> <P|F> <text>`, where `P` lines are
//!   pieces of one long line that the following `F` line ends;
//! - Docker's json-file: `{"log":"text\n","stream":"stderr","time":"..."}`, where a `log` without
//!   its final newline is a piece of a longer line.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Cri,
    Docker,
}

/// Who a file belongs to, from its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileLabels {
    pub app: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The container id (not exported): maps `(node:PID)` inside a container to a host process.
    pub container_id: String,
}

/// Joins pieces of long container log lines. Bounded by `max_line`.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: Vec<u8>,
}

impl Joiner {
    /// Feeds one raw line of `format`; returns the complete text line when there is one.
    pub fn feed<'a>(
        &'a mut self,
        format: Format,
        raw: &'a [u8],
        max_line: usize,
    ) -> Option<std::borrow::Cow<'a, [u8]>> {
        use std::borrow::Cow;
        match format {
            Format::Plain => Some(Cow::Borrowed(raw)),
            Format::Cri => {
                let (tag, text) = cri_fields(raw)?;
                self.join(tag == b"F", text, max_line)
            }
            Format::Docker => {
                // The JSON is decoded only for pieces and for lines that may hold an event.
                let complete = memchr::memmem::find(raw, b"\\n\",\"stream\"").is_some()
                    || memchr::memmem::find(raw, b"\\n\", \"stream\"").is_some();
                if complete && self.pending.is_empty() && !crate::collect::logs::parse::may_matter(raw) {
                    return None;
                }
                #[derive(serde::Deserialize)]
                struct Entry {
                    log: String,
                }
                let entry: Entry = serde_json::from_slice(raw).ok()?;
                let (text, last) = match entry.log.strip_suffix('\n') {
                    Some(t) => (t.as_bytes().to_vec(), true),
                    None => (entry.log.into_bytes(), false),
                };
                self.join(last, &text, max_line).map(|c| Cow::Owned(c.into_owned()))
            }
        }
    }

    fn join<'a>(&'a mut self, last: bool, text: &'a [u8], max_line: usize) -> Option<std::borrow::Cow<'a, [u8]>> {
        use std::borrow::Cow;
        if last && self.pending.is_empty() {
            return Some(Cow::Borrowed(text));
        }
        let room = max_line.saturating_sub(self.pending.len());
        self.pending.extend_from_slice(&text[..text.len().min(room)]);
        if !last {
            return None;
        }
        let line = std::mem::take(&mut self.pending);
        Some(Cow::Owned(line))
    }
}

/// Splits a CRI line into its tag (`P`/`F`) and text.
fn cri_fields(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = raw.splitn(4, |b| *b == b' ');
    let _time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    // Newer runtimes may add tag attributes after a colon ("F:x").
    let tag = tag.split(|b| *b == b':').next()?;
    Some((tag, text))
}

/// Reads the format and the owner of a file from its path:
/// - `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` (CRI or Docker);
/// - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log` (CRI);
/// - PM2's `<app>-out.log`, `<app>-error.log`, `<app>-out-<n>.log`, `<app>-error-<n>.log`;
/// - anything else: plain, named by `app` when configured, else by the file's stem.
pub fn identify(path: &Path, configured_app: Option<&str>) -> (Format, FileLabels) {
    let text = path.to_string_lossy();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".log").unwrap_or(&name).to_string();
    let mut labels = FileLabels::default();
    let mut format = Format::Plain;
    if text.contains("/var/log/containers/") {
        // <pod>_<namespace>_<container>-<64 hex id>
        let parts: Vec<&str> = stem.splitn(3, '_').collect();
        if let [pod, namespace, rest] = parts[..] {
            if let Some((container, id)) = rest.rsplit_once('-') {
                labels.pod = pod.to_string();
                labels.namespace = namespace.to_string();
                labels.container = container.to_string();
                labels.container_id = id.to_string();
                format = Format::Cri;
            }
        }
    } else if let Some(after) = text.split("/var/log/pods/").nth(1) {
        let parts: Vec<&str> = after.split('/').collect();
        if let [pod_dir, container, _file] = parts[..] {
            let p: Vec<&str> = pod_dir.splitn(3, '_').collect();
            if let [namespace, pod, _uid] = p[..] {
                labels.namespace = namespace.to_string();
                labels.pod = pod.to_string();
                labels.container = container.to_string();
                format = Format::Cri;
            }
        }
    }
    labels.app = match configured_app {
        Some(app) => app.to_string(),
        None if !labels.container.is_empty() => labels.container.clone(),
        None => pm2_app(&stem).unwrap_or(stem),
    };
    (format, labels)
}

/// PM2's log names: `<app>-out`, `<app>-error`, with `-<instance>` in cluster mode.
pub fn pm2_app(stem: &str) -> Option<String> {
    let base = match stem.rsplit_once('-') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => stem,
    };
    base.strip_suffix("-out").or_else(|| base.strip_suffix("-error")).filter(|a| !a.is_empty()).map(str::to_string)
}

/// Whether a file in a directory that is being globbed is a rotated copy, not a live log
/// (`app.log.1`, `app.log.2.gz`, pm2-logrotate's `app-out__2025-01-01_00-00-00.log`).
pub fn is_rotated_copy(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    name.contains("__") || !name.ends_with(".log") || name.ends_with(".gz")
}

/// Sniffs the format of a file under `/var/log/containers` from one line: Docker's json-file
/// starts with `{"log":`.
pub fn sniff(line: &[u8]) -> Option<Format> {
    let t = line.trim_ascii_start();
    if t.starts_with(b"{\"log\":") || t.starts_with(b"{\"log\" :") {
        Some(Format::Docker)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_pieces_are_joined() {
        let mut j = Joiner::default();
        assert_eq!(j.feed(Format::Cri, b"2025-01-01T00:00:00.1Z stderr P (node:1) MaxListeners", 1024), None);
        let line = j.feed(Format::Cri, b"2025-01-01T00:00:00.2Z stderr F ExceededWarning: rest", 1024).unwrap();
        assert_eq!(&*line, b"(node:1) MaxListenersExceededWarning: rest");
        let line = j.feed(Format::Cri, b"2025-01-01T00:00:00.3Z stdout F plain", 1024).unwrap();
        assert_eq!(&*line, b"plain");
        assert_eq!(j.feed(Format::Cri, b"garbage", 1024), None);
    }

    #[test]
    fn docker_pieces_are_joined() {
        let mut j = Joiner::default();
        assert_eq!(j.feed(Format::Docker, br#"{"log":"(node:7) Warn","stream":"stderr","time":"t"}"#, 1024), None);
        let line = j.feed(Format::Docker, br#"{"log":"ing: hello\n","stream":"stderr","time":"t"}"#, 1024).unwrap();
        assert_eq!(&*line, b"(node:7) Warning: hello");
        // Complete lines without an event are skipped without decoding.
        assert_eq!(j.feed(Format::Docker, br#"{"log":"GET / 200\n","stream":"stdout","time":"t"}"#, 1024), None);
        assert_eq!(j.feed(Format::Docker, b"not json", 1024), None);
    }

    #[test]
    fn names_say_whose_a_file_is() {
        let (f, l) = identify(Path::new("/var/log/containers/api-7d9f_shop_node-0123abcd.log"), None);
        assert_eq!(f, Format::Cri);
        assert_eq!(
            (l.pod.as_str(), l.namespace.as_str(), l.container.as_str(), l.container_id.as_str(), l.app.as_str()),
            ("api-7d9f", "shop", "node", "0123abcd", "node")
        );
        let (f, l) = identify(Path::new("/var/log/pods/shop_api-7d9f_1111-2222/node/3.log"), None);
        assert_eq!(f, Format::Cri);
        assert_eq!((l.namespace.as_str(), l.pod.as_str(), l.container.as_str()), ("shop", "api-7d9f", "node"));
        let (f, l) = identify(Path::new("/root/.pm2/logs/orders-api-error-3.log"), None);
        assert_eq!((f, l.app.as_str()), (Format::Plain, "orders-api"));
        assert_eq!(identify(Path::new("/root/.pm2/logs/web-out.log"), None).1.app, "web");
        assert_eq!(identify(Path::new("/srv/x/server.log"), Some("billing")).1.app, "billing");
        assert_eq!(identify(Path::new("/srv/x/server.log"), None).1.app, "server");
    }

    #[test]
    fn rotated_copies() {
        assert!(is_rotated_copy(Path::new("/l/app-out__2025-01-01_00-00-00.log")));
        assert!(is_rotated_copy(Path::new("/l/app.log.1")));
        assert!(is_rotated_copy(Path::new("/l/app.log.2.gz")));
        assert!(!is_rotated_copy(Path::new("/l/app-out.log")));
    }
}
