//! Opening TCP connections to inspectors, in one place: every inspector connection goes through a
//! [`Connector`], so a mode that must open the socket elsewhere (inside a pod's network namespace)
//! replaces only this.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;

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
        Box::pin(async move {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(result) => {
                    let stream = result?;
                    stream.set_nodelay(true)?;
                    Ok(stream)
                }
                Err(_) => {
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect to {addr} timed out")))
                }
            }
        })
    }
}
