//! One Chrome DevTools Protocol session over WebSocket: calls multiplexed by id, each with its own
//! timeout and reply-size cap, events delivered on a channel. Message size is capped at the
//! WebSocket layer too, so a hostile peer cannot make the exporter buffer a huge frame.

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

use crate::collect::Reason;
use crate::connector::Connector;

/// The largest message accepted from an inspector. Sample replies are a few KiB; larger payloads
/// (profiles, snapshot chunks) come in their own capped calls or as streamed events.
pub const MAX_MESSAGE: usize = 16 << 20;

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
        let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
        let handshake = tokio_tungstenite::client_async_with_config(url, stream, Some(config));
        let (ws, _) = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => return Err(CallError::new(Reason::Protocol, format!("WebSocket handshake: {e}"))),
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
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break CallError::new(Reason::Protocol, format!("WebSocket: {e}")),
                };
                dispatch(msg.as_bytes(), &reader_pending, &events_tx);
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

fn dispatch(msg: &[u8], pending: &Pending, events: &mpsc::Sender<Event>) {
    #[derive(serde::Deserialize)]
    struct Incoming {
        id: Option<u64>,
        result: Option<Value>,
        error: Option<ErrorBody>,
        method: Option<String>,
        params: Option<Value>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
    }
    let Ok(incoming) = serde_json::from_slice::<Incoming>(msg) else { return };
    if let Some(id) = incoming.id {
        let Some((max_reply, tx)) = pending.lock().expect("pending lock").remove(&id) else { return };
        let reply = if msg.len() > max_reply {
            Err(CallError::new(
                Reason::Protocol,
                format!("reply of {} bytes exceeds the {max_reply}-byte cap", msg.len()),
            ))
        } else if let Some(e) = incoming.error {
            Err(CallError::new(Reason::Protocol, e.message.unwrap_or_default().chars().take(200).collect::<String>()))
        } else {
            Ok(incoming.result.unwrap_or(Value::Null))
        };
        let _ = tx.send(reply);
    } else if let Some(method) = incoming.method {
        // A slow consumer loses events rather than making the exporter buffer without bound.
        let _ = events.try_send(Event { method, params: incoming.params.unwrap_or(Value::Null) });
    }
}
