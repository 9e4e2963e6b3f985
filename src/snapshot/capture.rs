//! Taking a heap snapshot of a process over its inspector, straight to disk.
//!
//! The inspector is found with the collector's rules (`collect::inspector::locate`: the address
//! its `--inspect*` flags name, its listening sockets, configured ports; loopback only unless
//! allowed; the `process.pid` check before anything else). The snapshot is taken on a session of
//! its own (Node.js serves several at once, so the exporter's session stays attached): V8 sends
//! it as `HeapProfiler.addHeapSnapshotChunk` events, each written to the file as it arrives and
//! never gathered in memory. The file is created new (`O_EXCL`) with mode `0600` — a snapshot
//! holds every string of the app, its secrets too — and removed when anything goes wrong: the
//! size cap, the deadline, a lost session, Ctrl-C or SIGTERM.
//!
//! A snapshot stops the app's world: V8 runs a full GC and walks the whole heap on the app's main
//! thread, from a fraction of a second for a small heap to tens of seconds for gigabytes.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::collect::inspector::locate::{Inspector, LocateError};
use crate::connector::Connector;

/// The largest protocol message accepted: V8 sends the snapshot in chunks of about 100 KiB of
/// JSON, escaped once more inside the event.
pub const MAX_MESSAGE: usize = 4 << 20;
/// The largest reply to the small calls (enable, the pid check, collectGarbage, the snapshot's
/// own reply once every chunk is in).
const SMALL_REPLY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error("the inspector at {addr} belongs to another process (it says pid {other})")]
    NotOurs { addr: SocketAddr, other: String },
    #[error("cannot connect to the inspector at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("inspector: {0}")]
    Protocol(String),
    #[error("{what} got no answer within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("the snapshot exceeds the {max} byte cap (--max-size); the partial file was removed")]
    TooLarge { max: u64 },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("interrupted")]
    Interrupted,
}

#[derive(Debug, Clone, Copy)]
pub struct CaptureSettings {
    /// `HeapProfiler.collectGarbage` before each snapshot, as the manual workflow does with
    /// `--expose-gc`.
    pub gc: bool,
    /// The largest snapshot written; a larger one is abandoned and its file removed.
    pub max_bytes: u64,
    /// Each snapshot's deadline.
    pub timeout: Duration,
    /// Each small call's.
    pub call_timeout: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Captured {
    pub path: PathBuf,
    pub bytes: u64,
    pub chunks: u64,
    pub seconds: f64,
}

/// Takes one snapshot of `pid` per file of `outs`, the first at once and each next `every`
/// after the previous one started, all on one session: V8 forgets its object ids when an
/// inspector session that could have used them closes, so only snapshots taken on one session
/// can be compared. Each file is created new, mode 0600, when its snapshot starts. On an error,
/// the snapshots already written stay and the one being written is removed.
pub async fn capture(
    connector: &dyn Connector,
    pid: i32,
    inspector: &Inspector,
    outs: &[PathBuf],
    every: Duration,
    settings: CaptureSettings,
    mut done: impl FnMut(&Captured),
) -> Result<Vec<Captured>, CaptureError> {
    let work = async {
        let mut session = Cdp::open(connector, pid, inspector, settings.call_timeout).await?;
        let mut captured = Vec::new();
        for (i, out) in outs.iter().enumerate() {
            let started = Instant::now();
            let c = session.snapshot(out, settings).await?;
            done(&c);
            captured.push(c);
            if i + 1 < outs.len() {
                tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
            }
        }
        session.close().await;
        Ok(captured)
    };
    tokio::select! {
        r = work => r,
        _ = interrupted() => Err(CaptureError::Interrupted),
    }
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A file being written, removed unless finished (an error, a deadline, a signal dropping the
/// future that writes it).
struct Partial {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Partial {
    fn create(path: &Path) -> Result<Partial, CaptureError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| CaptureError::Create { path: path.to_path_buf(), source })?;
        Ok(Partial { path: path.to_path_buf(), file: Some(std::io::BufWriter::with_capacity(1 << 20, file)) })
    }

    fn write(&mut self, chunk: &str) -> Result<(), CaptureError> {
        let f = self.file.as_mut().expect("open until finished");
        f.write_all(chunk.as_bytes()).map_err(|source| CaptureError::Write { path: self.path.clone(), source })
    }

    fn finish(mut self) -> Result<(), CaptureError> {
        let f = self.file.take().expect("open until finished");
        let wrap = |source| CaptureError::Write { path: self.path.clone(), source };
        let f = f.into_inner().map_err(|e| wrap(e.into_error()))?;
        f.sync_all().map_err(wrap)?;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The snapshot's own session.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next_id: u64,
    /// Where the snapshot's chunks go while one is taken.
    sink: Option<(Partial, u64, u64, u64)>,
}

impl Cdp {
    /// Opens the session and checks, before anything else, that the inspector is `pid`'s.
    async fn open(
        connector: &dyn Connector,
        pid: i32,
        inspector: &Inspector,
        t: Duration,
    ) -> Result<Cdp, CaptureError> {
        let addr = inspector.addr;
        let stream = connector.connect(pid, addr, t).await.map_err(|source| CaptureError::Connect { addr, source })?;
        let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
        let url = format!("ws://{addr}{}", inspector.path);
        let (ws, _) = tokio::time::timeout(t, tokio_tungstenite::client_async_with_config(url, stream, Some(config)))
            .await
            .map_err(|_| CaptureError::Timeout { what: "the WebSocket handshake".into(), timeout: t })?
            .map_err(|e| CaptureError::Protocol(format!("WebSocket handshake: {e}")))?;
        let mut cdp = Cdp { ws, next_id: 0, sink: None };
        let whose = cdp
            .call("Runtime.evaluate", json!({"expression": "process.pid", "returnByValue": true, "silent": true}), t)
            .await?;
        if whose["result"]["value"].as_i64() != Some(inspector.ns_pid as i64) {
            cdp.close().await;
            return Err(CaptureError::NotOurs {
                addr,
                other: whose["result"]["value"].to_string().chars().take(20).collect(),
            });
        }
        Ok(cdp)
    }

    async fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, CaptureError> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        let work = async {
            self.ws
                .send(Message::text(request))
                .await
                .map_err(|e| CaptureError::Protocol(format!("send {method}: {e}")))?;
            loop {
                let text = match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(CaptureError::Protocol("the inspector closed the session".into()))
                    }
                    Some(Ok(Message::Binary(_))) => return Err(CaptureError::Protocol("a binary frame".into())),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(CaptureError::Protocol(format!("WebSocket: {e}"))),
                };
                match classify(text.as_str(), id)? {
                    Incoming::Chunk(chunk) => {
                        // Chunks come only while a snapshot is asked for; others are not ours.
                        let Some((file, bytes, chunks, max)) = self.sink.as_mut() else { continue };
                        *bytes += chunk.len() as u64;
                        *chunks += 1;
                        if *bytes > *max {
                            return Err(CaptureError::TooLarge { max: *max });
                        }
                        file.write(&chunk)?;
                    }
                    Incoming::Reply(v) => return Ok(v),
                    Incoming::Other => {}
                }
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| CaptureError::Timeout { what: method.to_string(), timeout })?
    }

    /// One snapshot into a new file at `out`.
    async fn snapshot(&mut self, out: &Path, settings: CaptureSettings) -> Result<Captured, CaptureError> {
        let started = Instant::now();
        let partial = Partial::create(out)?;
        if settings.gc {
            // A full GC of a large heap takes seconds.
            self.call("HeapProfiler.collectGarbage", json!({}), settings.call_timeout.max(Duration::from_secs(60)))
                .await?;
        }
        self.sink = Some((partial, 0, 0, settings.max_bytes));
        let params = json!({"reportProgress": false, "captureNumericValue": false});
        let result = self.call("HeapProfiler.takeHeapSnapshot", params, settings.timeout).await;
        let (partial, bytes, chunks, _) = self.sink.take().expect("set above");
        result?;
        if bytes == 0 {
            return Err(CaptureError::Protocol("the snapshot arrived empty".into()));
        }
        partial.finish()?;
        Ok(Captured { path: out.to_path_buf(), bytes, chunks, seconds: started.elapsed().as_secs_f64() })
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.ws.close(None)).await;
    }
}

enum Incoming {
    Chunk(String),
    Reply(serde_json::Value),
    Other,
}

/// What a message is: a chunk of the snapshot, the reply to call `id`, or something else.
fn classify(msg: &str, id: u64) -> Result<Incoming, CaptureError> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        id: Option<u64>,
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct ChunkEvent {
        params: ChunkParams,
    }
    #[derive(serde::Deserialize)]
    struct ChunkParams {
        chunk: String,
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        result: Option<serde_json::Value>,
        error: Option<serde_json::Value>,
    }
    let bad = |e: serde_json::Error| CaptureError::Protocol(format!("not a protocol message: {e}"));
    let head: Head = serde_json::from_str(msg).map_err(bad)?;
    match (head.id, head.method.as_deref()) {
        (None, Some("HeapProfiler.addHeapSnapshotChunk")) => {
            let e: ChunkEvent = serde_json::from_str(msg).map_err(bad)?;
            Ok(Incoming::Chunk(e.params.chunk))
        }
        (Some(i), _) if i == id => {
            if msg.len() > SMALL_REPLY {
                return Err(CaptureError::Protocol(format!("a reply of {} bytes", msg.len())));
            }
            let r: Reply = serde_json::from_str(msg).map_err(bad)?;
            if let Some(e) = r.error {
                let m = e["message"].as_str().unwrap_or("error").chars().take(200).collect();
                return Err(CaptureError::Protocol(m));
            }
            Ok(Incoming::Reply(r.result.unwrap_or_default()))
        }
        (None, None) => Err(CaptureError::Protocol("a message with neither id nor method".into())),
        _ => Ok(Incoming::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_told_apart() {
        let chunk = r#"{"method":"HeapProfiler.addHeapSnapshotChunk","params":{"chunk":"{\"snapshot\":"}}"#;
        assert!(matches!(classify(chunk, 1).unwrap(), Incoming::Chunk(c) if c == "{\"snapshot\":"));
        assert!(matches!(classify(r#"{"id":3,"result":{}}"#, 3).unwrap(), Incoming::Reply(_)));
        assert!(matches!(classify(r#"{"id":2,"result":{}}"#, 3).unwrap(), Incoming::Other));
        assert!(matches!(
            classify(r#"{"method":"Runtime.consoleAPICalled","params":{}}"#, 3).unwrap(),
            Incoming::Other
        ));
        let e = classify(r#"{"id":3,"error":{"message":"nope"}}"#, 3).err().unwrap();
        assert_eq!(e.to_string(), "inspector: nope");
        assert!(classify("garbage", 1).is_err());
        assert!(classify("{}", 1).is_err());
        assert!(classify(r#"{"method":"HeapProfiler.addHeapSnapshotChunk","params":{}}"#, 1).is_err());
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.heapsnapshot");
        std::fs::write(&out, "mine").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let inspector = Inspector { addr: "127.0.0.1:9".parse().unwrap(), path: "/x".into(), ns_pid: 1 };
        let settings = CaptureSettings {
            gc: false,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(1),
        };
        let e = rt.block_on(async {
            let mut partial = Partial::create(&out);
            assert!(matches!(partial, Err(CaptureError::Create { .. })));
            partial = Partial::create(&dir.path().join("y.heapsnapshot"));
            drop(partial);
            assert!(!dir.path().join("y.heapsnapshot").exists(), "an unfinished file is removed");
            let outs = [out.clone()];
            capture(&crate::connector::DirectConnector, 1, &inspector, &outs, Duration::ZERO, settings, |_| {})
                .await
                .unwrap_err()
        });
        assert!(matches!(e, CaptureError::Connect { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
    }

    #[test]
    fn a_failed_capture_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.heapsnapshot");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Nothing listens on the discard port.
        let inspector = Inspector { addr: "127.0.0.1:9".parse().unwrap(), path: "/x".into(), ns_pid: 1 };
        let settings = CaptureSettings {
            gc: false,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(1),
        };
        let outs = [out.clone()];
        let r = rt.block_on(capture(
            &crate::connector::DirectConnector,
            1,
            &inspector,
            &outs,
            Duration::ZERO,
            settings,
            |_| {},
        ));
        assert!(r.is_err());
        assert!(!out.exists());
    }
}
