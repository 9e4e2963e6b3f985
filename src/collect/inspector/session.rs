//! One Chrome DevTools Protocol session over WebSocket: calls multiplexed by id, each with its own
//! timeout and reply-size cap, events delivered on a channel. Frames are capped at the WebSocket
//! layer too ([`limits::MAX_FRAME`], checked from a frame's header before its payload is read), so
//! a hostile peer cannot make the exporter buffer a huge frame. A message is parsed in full only
//! once its size is known to be within its call's or event's cap; anything else the peer sends
//! (not JSON, an oversized reply or event, a binary frame) ends the session as a protocol error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use tokio_tungstenite::tungstenite::error::ProtocolError;

use super::limits;
use crate::collect::Reason;
use crate::connector::Connector;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub reason: Reason,
    pub message: String,
}

impl CallError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        CallError { reason, message: message.into() }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// A protocol event (a message without an id).
#[derive(Debug, Clone)]
pub struct Event {
    pub method: String,
    pub params: Value,
}

type Pending = Arc<Mutex<HashMap<u64, (usize, oneshot::Sender<Result<Value, CallError>>)>>>;

pub struct Session {
    sink: tokio::sync::Mutex<SplitSink<WebSocketStream<TcpStream>, Message>>,
    pending: Pending,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Connects to `addr` (through the connector) and opens the WebSocket at `path`.
    pub async fn open(
        connector: &dyn Connector,
        pid: i32,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(Session, mpsc::Receiver<Event>), CallError> {
        let stream = connector
            .connect(pid, addr, timeout)
            .await
            .map_err(|e| CallError::new(Reason::from_io_error(&e), e.to_string()))?;
        let url = format!("ws://{addr}{path}");
        let config = WebSocketConfig::default()
            .max_message_size(Some(limits::MAX_FRAME))
            .max_frame_size(Some(limits::MAX_FRAME));
        let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(config));
        let (ws, _) = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => {
                let e = websocket_error(e);
                return Err(CallError::new(e.reason, format!("WebSocket handshake: {}", e.message)));
            }
            Err(_) => return Err(CallError::new(Reason::Timeout, "WebSocket handshake timed out")),
        };
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let (events_tx, events_rx) = mpsc::channel(256);
        let reader_pending = pending.clone();
        let reader = tokio::spawn(async move {
            let close_reason = loop {
                let msg = match stream.next().await {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => {
                        break CallError::new(Reason::Unreachable, "inspector closed the session")
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break CallError::new(Reason::Protocol, "a binary frame (the protocol is text)")
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break websocket_error(e),
                };
                if let Err(e) = dispatch(msg.as_str(), &reader_pending, &events_tx) {
                    break e;
                }
            };
            // Fail every call still waiting.
            let waiting: Vec<_> = reader_pending.lock().expect("pending lock").drain().collect();
            for (_, (_, tx)) in waiting {
                let _ = tx.send(Err(close_reason.clone()));
            }
        });
        Ok((Session { sink: tokio::sync::Mutex::new(sink), pending, next_id: AtomicU64::new(1), reader }, events_rx))
    }

    /// Calls `method`, waiting at most `timeout` for a reply of at most `max_reply` bytes.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        max_reply: usize,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, (max_reply, tx));
        let request = serde_json::json!({ "id": id, "method": method, "params": params }).to_string();
        let sent = async {
            let mut sink = self.sink.lock().await;
            sink.send(Message::text(request)).await
        };
        let result = tokio::time::timeout(timeout, async {
            sent.await.map_err(|e| CallError::new(Reason::Unreachable, format!("send {method}: {e}")))?;
            rx.await.map_err(|_| CallError::new(Reason::Unreachable, "session closed"))?
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => {
                self.pending.lock().expect("pending lock").remove(&id);
                Err(CallError::new(Reason::Timeout, format!("{method} got no answer within {timeout:?}")))
            }
        }
    }

    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }

    /// Closes the WebSocket politely, without waiting long.
    pub async fn close(&self) {
        let mut sink = self.sink.lock().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A connection lost is `unreachable`; anything else the peer did wrong is `protocol`.
fn websocket_error(e: tokio_tungstenite::tungstenite::Error) -> CallError {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::ConnectionClosed
        | Error::AlreadyClosed
        | Error::Io(_)
        | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CallError::new(Reason::Unreachable, format!("inspector connection lost: {e}"))
        }
        e => CallError::new(Reason::Protocol, format!("WebSocket: {e}")),
    }
}

/// Hands one message to its waiting call or to the events channel. An error ends the session.
fn dispatch(msg: &str, pending: &Pending, events: &mpsc::Sender<Event>) -> Result<(), CallError> {
    /// What decides which cap applies; every other field is skipped unread.
    #[derive(serde::Deserialize)]
    struct Head {
        id: Option<u64>,
        method: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        result: Option<Value>,
        error: Option<ErrorBody>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct EventBody {
        params: Option<Value>,
    }
    let not_protocol = |e: serde_json::Error| CallError::new(Reason::Protocol, format!("not a protocol message: {e}"));
    let head: Head = serde_json::from_str(msg).map_err(not_protocol)?;
    if let Some(id) = head.id {
        // A reply to a call that timed out is no longer awaited.
        let Some((max_reply, tx)) = pending.lock().expect("pending lock").remove(&id) else { return Ok(()) };
        if msg.len() > max_reply {
            let e = CallError::new(
                Reason::Protocol,
                format!("reply of {} bytes exceeds the {max_reply}-byte cap of its call", msg.len()),
            );
            let _ = tx.send(Err(e.clone()));
            return Err(e);
        }
        match serde_json::from_str::<Reply>(msg) {
            Ok(Reply { error: Some(e), .. }) => {
                let message = e.message.unwrap_or_default().chars().take(200).collect::<String>();
                let _ = tx.send(Err(CallError::new(Reason::Protocol, message)));
            }
            Ok(Reply { result, .. }) => {
                let _ = tx.send(Ok(result.unwrap_or(Value::Null)));
            }
            Err(e) => {
                let e = not_protocol(e);
                let _ = tx.send(Err(e.clone()));
                return Err(e);
            }
        }
        return Ok(());
    }
    let Some(method) = head.method else {
        return Err(CallError::new(Reason::Protocol, "a message with neither id nor method"));
    };
    let Some(cap) = limits::event_cap(&method) else { return Ok(()) };
    if msg.len() > cap {
        return Err(CallError::new(
            Reason::Protocol,
            format!("{} event of {} bytes exceeds its {cap}-byte cap", truncate(&method), msg.len()),
        ));
    }
    let body: EventBody = serde_json::from_str(msg).map_err(not_protocol)?;
    // A slow consumer loses events rather than making the exporter buffer without bound.
    let _ = events.try_send(Event { method, params: body.params.unwrap_or(Value::Null) });
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_call(pending: &Pending, id: u64, cap: usize) -> oneshot::Receiver<Result<Value, CallError>> {
        let (tx, rx) = oneshot::channel();
        pending.lock().unwrap().insert(id, (cap, tx));
        rx
    }

    fn setup() -> (Pending, mpsc::Sender<Event>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(4);
        (Arc::new(Mutex::new(HashMap::new())), tx, rx)
    }

    #[test]
    fn a_reply_within_its_cap_reaches_its_call() {
        let (pending, events, _rx) = setup();
        let mut rx = pending_call(&pending, 1, 100);
        dispatch(r#"{"id":1,"result":{"result":{"type":"number","value":42}}}"#, &pending, &events).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap()["result"]["value"], 42);
    }

    #[test]
    fn a_reply_over_its_call_s_cap_fails_the_call_and_ends_the_session() {
        let (pending, events, _rx) = setup();
        let mut rx = pending_call(&pending, 7, 64);
        let big = format!(r#"{{"id":7,"result":{{"value":"{}"}}}}"#, "x".repeat(100));
        let e = dispatch(&big, &pending, &events).unwrap_err();
        assert_eq!(e.reason, Reason::Protocol);
        assert!(e.message.contains("exceeds the 64-byte cap"), "{e}");
        assert_eq!(rx.try_recv().unwrap().unwrap_err().reason, Reason::Protocol);
    }

    #[test]
    fn garbage_ends_the_session() {
        let (pending, events, _rx) = setup();
        for bad in ["garbage", "", "[1,2]", r#"{"id":-1}"#, r#"{"id":"x"}"#, "{}", &"[".repeat(100_000)] {
            assert_eq!(dispatch(bad, &pending, &events).unwrap_err().reason, Reason::Protocol, "{bad:.40}");
        }
        // A reply whose body is not what a reply is, to a call that waits: the call fails too.
        let mut rx = pending_call(&pending, 3, 1000);
        assert!(dispatch(r#"{"id":3,"error":"not an object"}"#, &pending, &events).is_err());
        assert_eq!(rx.try_recv().unwrap().unwrap_err().reason, Reason::Protocol);
    }

    #[test]
    fn a_late_reply_and_events_not_read_are_ignored() {
        let (pending, events, mut rx) = setup();
        dispatch(r#"{"id":99,"result":{}}"#, &pending, &events).unwrap();
        let huge = format!(r#"{{"method":"Runtime.consoleAPICalled","params":{{"x":"{}"}}}}"#, "y".repeat(1 << 20));
        dispatch(&huge, &pending, &events).unwrap();
        assert!(rx.try_recv().is_err());
        dispatch(r#"{"method":"NodeRuntime.waitingForDisconnect","params":{}}"#, &pending, &events).unwrap();
        assert_eq!(rx.try_recv().unwrap().method, "NodeRuntime.waitingForDisconnect");
    }

    #[test]
    fn an_event_over_its_cap_ends_the_session() {
        let (pending, events, _rx) = setup();
        let big = format!(r#"{{"method":"Runtime.bindingCalled","params":{{"payload":"{}"}}}}"#, "z".repeat(20_000));
        assert_eq!(dispatch(&big, &pending, &events).unwrap_err().reason, Reason::Protocol);
    }

    #[test]
    fn an_error_reply_is_a_protocol_error_of_its_call_only() {
        let (pending, events, _rx) = setup();
        let mut rx = pending_call(&pending, 2, 1000);
        dispatch(r#"{"id":2,"error":{"code":-32000,"message":"nope"}}"#, &pending, &events).unwrap();
        let e = rx.try_recv().unwrap().unwrap_err();
        assert_eq!((e.reason, e.message.as_str()), (Reason::Protocol, "nope"));
    }
}
