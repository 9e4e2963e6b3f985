//! The demo's "database": a line protocol on loopback, served from the demo process so the demo
//! needs no database and no second Node.js process. `GET <id>` answers `OK <row>`, or, for one id
//! in [`FAIL_EVERY`], `ERR <message>`: the failing query whose error path the leaky app gets wrong.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One query in this many fails (by id, so both apps see the same failures).
pub const FAIL_EVERY: u64 = 50;

/// The longest query line read; the apps send a few bytes.
const MAX_LINE: usize = 1024;

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream));
            }
            Err(e) => {
                // EMFILE and the like: the connections we have go on.
                tracing::debug!(error = %e, "demo database: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut read).take(MAX_LINE as u64).read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if write.write_all(answer(line.trim_end()).as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The reply to one query line, newline included.
pub fn answer(query: &str) -> String {
    match query.strip_prefix("GET ").and_then(|id| id.trim().parse::<u64>().ok()) {
        Some(id) if id % FAIL_EVERY == FAIL_EVERY - 1 => "ERR lock wait timeout exceeded\n".to_string(),
        Some(id) => format!("OK {{\"id\":{id},\"stock\":{}}}\n", (id * 7) % 100),
        None => "ERR syntax error\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_in_fail_every_fails_by_id() {
        let failed = (0..1000).filter(|id| answer(&format!("GET {id}")).starts_with("ERR")).count();
        assert_eq!(failed as u64, 1000 / FAIL_EVERY);
        assert_eq!(answer("GET 3"), "OK {\"id\":3,\"stock\":21}\n");
        assert!(answer("DROP TABLE items").starts_with("ERR"));
    }
}
