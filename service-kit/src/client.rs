//! The HTTP client every service uses (proxy to storage nodes, registry to
//! proxy, API to agents): kept-alive connections per address, a connect
//! timeout, and a timeout for the response head. One client serves a whole
//! process.

use crate::http_util::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a request got no response. Each names the address asked.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are what the messages say
pub enum ClientError {
    /// No connection within the connect timeout, or refused.
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// No response head within the timeout.
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The connection broke.
    #[error("request to {addr} failed: {source}")]
    Http { addr: String, source: hyper::Error },
}

/// How long to wait for a connection and for answers.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a new connection.
    pub connect: Duration,
    /// For the response head, and for each chunk of a body read from a node.
    pub node: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(500),
            node: Duration::from_secs(10),
        }
    }
}

/// Idle connections kept per node.
const POOL_PER_NODE: usize = 64;

/// A pooled HTTP/1.1 client.
pub struct HttpClient {
    /// The timeouts every request gets.
    pub timeouts: Timeouts,
    idle: Mutex<HashMap<String, Vec<SendRequest<Body>>>>,
}

/// A connection to one node, ready for one request.
pub struct Conn<'c> {
    client: &'c HttpClient,
    addr: String,
    sender: SendRequest<Body>,
}

impl HttpClient {
    /// A client with an empty pool.
    pub fn new(timeouts: Timeouts) -> HttpClient {
        HttpClient {
            timeouts,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// A ready connection: an idle one, or a new one within the connect timeout.
    pub async fn connect(&self, addr: &str) -> Result<Conn<'_>, ClientError> {
        if let Some(sender) = self.take_idle(addr) {
            return Ok(Conn {
                client: self,
                addr: addr.to_string(),
                sender,
            });
        }
        let fail = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(self.timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| fail(format!("timed out after {:?}", self.timeouts.connect)))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            client: self,
            addr: addr.to_string(),
            sender,
        })
    }

    fn take_idle(&self, addr: &str) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        list.retain(|s| !s.is_closed());
        let i = list.iter().position(|s| s.is_ready())?;
        Some(list.swap_remove(i))
    }

    fn give_back(&self, addr: String, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < POOL_PER_NODE {
            list.push(sender);
        }
    }

    /// Connects and sends one request with a buffered body; GET/HEAD style.
    pub async fn send(
        &self,
        addr: &str,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.connect(addr).await?.send(req).await
    }
}

impl Conn<'_> {
    /// Sends the request and waits (within the node timeout) for the response
    /// head. The connection goes back to the pool; it is reused only once the
    /// response body has been read to the end.
    pub async fn send(self, req: Request<Body>) -> Result<Response<Incoming>, ClientError> {
        let timeout = self.client.timeouts.node;
        self.send_within(req, timeout).await
    }

    /// For a streamed upload the node answers only after the whole body, so
    /// the caller bounds each chunk instead of the response head.
    pub async fn send_streaming(
        self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.send_within(req, Duration::from_secs(7 * 24 * 3600))
            .await
    }

    async fn send_within(
        mut self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ClientError> {
        let result = tokio::time::timeout(timeout, self.sender.send_request(req)).await;
        match result {
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr,
                timeout,
            }),
            Ok(Err(source)) => Err(ClientError::Http {
                addr: self.addr,
                source,
            }),
            Ok(Ok(resp)) => {
                self.client.give_back(self.addr, self.sender);
                Ok(resp)
            }
        }
    }
}
