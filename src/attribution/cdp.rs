//! The profiler's own inspector session: one WebSocket, one call at a time, each with a timeout
//! and a reply cap of its own. Kept apart from the collector's session (`collect::inspector`),
//! whose frames are capped at the size of its small calls: a sampling profile is megabytes.
//! Node.js serves several sessions at once, so profiling runs beside the exporter's own session.
//!
//! Replies are returned as text and read by [`super::json`], since a profile nests deeper than
//! `serde_json` allows. Events (none are enabled) are skipped.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::json::{self, JsonLimits};
use crate::connector::Connector;

#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("cannot connect to the inspector at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("{method} got no answer within {timeout:?}")]
    Timeout { method: String, timeout: Duration },
    #[error("the inspector closed the session")]
    Closed,
    #[error("{method} failed: {message}")]
    Remote { method: String, message: String },
    #[error("not a protocol message: {0}")]
    Protocol(String),
}

/// Small messages: everything but a profile.
pub const SMALL_REPLY: usize = 64 << 10;

pub struct Cdp {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// The largest message the WebSocket accepts: the largest reply cap.
    max_message: usize,
}

impl Cdp {
    /// Opens the WebSocket at `path` on `addr`, accepting messages up to `max_message` bytes.
    pub async fn open(
        connector: &dyn Connector,
        pid: i32,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
        max_message: usize,
    ) -> Result<Cdp, CdpError> {
        let stream =
            connector.connect(pid, addr, timeout).await.map_err(|source| CdpError::Connect { addr, source })?;
        let config = WebSocketConfig::default().max_message_size(Some(max_message)).max_frame_size(Some(max_message));
        let handshake = tokio_tungstenite::client_async_with_config(format!("ws://{addr}{path}"), stream, Some(config));
        let (ws, _) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| CdpError::Timeout { method: "WebSocket handshake".into(), timeout })?
            .map_err(|e| CdpError::WebSocket(e.to_string()))?;
        Ok(Cdp { ws, next_id: 1, max_message })
    }

    /// Calls `method` and returns its `result`, waiting at most `timeout` for a reply of at most
    /// `max_reply` bytes (never more than the session's message cap).
    pub async fn call(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
        max_reply: usize,
    ) -> Result<Value, CdpError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
        let max_reply = max_reply.min(self.max_message);
        let work = async {
            self.ws.send(Message::text(request)).await.map_err(|e| CdpError::WebSocket(e.to_string()))?;
            loop {
                let text = match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => return Err(CdpError::Closed),
                    Some(Ok(Message::Binary(_))) => return Err(CdpError::Protocol("a binary frame".into())),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(CdpError::WebSocket(e.to_string())),
                };
                if let Some(v) = reply_to(text.as_str(), id, max_reply)? {
                    return reply_result(method, v);
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(CdpError::Timeout { method: method.to_string(), timeout }),
        }
    }

    /// Closes the WebSocket politely, without waiting long. Closing it also ends what the session
    /// started in V8 (the inspector disables a session's agents when it goes).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.ws.close(None)).await;
    }
}

/// The reply to call `id` in `msg`, or `None` for another message (an event, a late reply).
fn reply_to(msg: &str, id: u64, max_reply: usize) -> Result<Option<Value>, CdpError> {
    let limits = JsonLimits { max_depth: 600, max_values: max_reply / 2 + 64 };
    // The id is read before the size is judged: an event over the cap is skipped, not parsed.
    let head = msg.get(..64).unwrap_or(msg);
    let small = msg.len() <= SMALL_REPLY;
    if !small && !head.contains(&format!("\"id\":{id},")) && !head.contains(&format!("\"id\":{id}}}")) {
        // V8 writes the id first in replies; a large message without our id up front is not ours.
        return Ok(None);
    }
    if msg.len() > max_reply {
        return Err(CdpError::Protocol(format!(
            "reply of {} bytes exceeds the {max_reply}-byte cap of its call",
            msg.len()
        )));
    }
    let v = json::parse(msg, limits).map_err(|e| CdpError::Protocol(e.to_string()))?;
    if v.get("id").and_then(Value::as_u64) == Some(id) {
        Ok(Some(v))
    } else {
        Ok(None)
    }
}

fn reply_result(method: &str, mut v: Value) -> Result<Value, CdpError> {
    if let Some(e) = v.get("error") {
        let message = e.get("message").and_then(Value::as_str).unwrap_or("error").chars().take(200).collect();
        return Err(CdpError::Remote { method: method.to_string(), message });
    }
    Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_matched_by_id_and_capped() {
        assert!(reply_to(r#"{"method":"X.y","params":{}}"#, 1, 1000).unwrap().is_none());
        assert!(reply_to(r#"{"id":2,"result":{}}"#, 1, 1000).unwrap().is_none());
        let v = reply_to(r#"{"id":1,"result":{"a":1}}"#, 1, 1000).unwrap().unwrap();
        assert_eq!(reply_result("m", v).unwrap()["a"], 1);
        let e = reply_to(r#"{"id":1,"error":{"code":-32000,"message":"not started"}}"#, 1, 1000).unwrap().unwrap();
        assert!(matches!(reply_result("m", e), Err(CdpError::Remote { message, .. }) if message == "not started"));
        let big = format!(r#"{{"id":1,"result":{{"x":"{}"}}}}"#, "y".repeat(SMALL_REPLY));
        assert!(matches!(reply_to(&big, 1, SMALL_REPLY), Err(CdpError::Protocol(_))));
        // A large event is skipped unread.
        let event =
            format!(r#"{{"method":"Runtime.consoleAPICalled","params":{{"x":"{}"}}}}"#, "y".repeat(SMALL_REPLY));
        assert!(reply_to(&event, 1, SMALL_REPLY).unwrap().is_none());
        assert!(reply_to("garbage", 1, 1000).is_err());
    }
}
