//! The accept loop every service runs, the request body its handlers
//! read, its shutdown signal, and the helper that runs blocking work from
//! async code.

use crate::http_util::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;

/// The client's address, in every request's extensions (TempURL address
/// ranges are checked against it).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Small request bodies (a JSON document, an XML configuration) are read
/// whole before the handler runs, up to this size.
///
/// Why: hyper closes a kept-alive connection when a handler drops a body
/// whose bytes have not arrived yet (it only drains what is already
/// buffered), and a client that sent its next request on that connection
/// gets an unexpected EOF (clients retry only idempotent requests). A
/// handler that answers without the body (a refusal, a route that takes
/// none) therefore loses the connection by a race. Go's server drains up
/// to 256 KiB after the handler for the same reason; reading small bodies
/// first gives every handler a body it may ignore.
pub const BUFFERED_BODY_MAX: u64 = 64 * 1024;

/// The body of a request as handlers see it: read whole already when small
/// (see [`BUFFERED_BODY_MAX`]), streamed from the connection otherwise.
#[derive(Debug)]
pub struct RequestBody(BodyState);

#[derive(Debug)]
enum BodyState {
    Streaming(Incoming),
    Buffered(Option<Bytes>),
}

impl RequestBody {
    /// A body already read (tests and internal re-dispatch).
    pub fn buffered(bytes: Bytes) -> RequestBody {
        RequestBody(BodyState::Buffered(Some(bytes)))
    }

    /// Reads small bodies whole, leaves the others streaming: only bodies
    /// with a declared small length and no `Expect: 100-continue` (a client
    /// that waits for the go-ahead must not be made to wait on us).
    async fn of(req: Request<Incoming>) -> Result<Request<RequestBody>, hyper::Error> {
        let (parts, body) = req.into_parts();
        let small = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0 && n <= BUFFERED_BODY_MAX);
        let expects = parts.headers.contains_key(http::header::EXPECT);
        let body = if small && !expects {
            RequestBody::buffered(body.collect().await?.to_bytes())
        } else {
            RequestBody(BodyState::Streaming(body))
        };
        Ok(Request::from_parts(parts, body))
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.0 {
            BodyState::Streaming(body) => Pin::new(body).poll_frame(cx),
            BodyState::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyState::Streaming(body) => body.is_end_stream(),
            BodyState::Buffered(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyState::Streaming(body) => body.size_hint(),
            BodyState::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Serves HTTP/1.1 with keep-alive until `shutdown` resolves.
pub async fn serve<S, F, Fut>(
    listener: TcpListener,
    state: Arc<S>,
    handler: F,
    shutdown: impl Future<Output = ()>,
) where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<RequestBody>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                let state = state.clone();
                async move {
                    // A client gone while sending a small body: the
                    // connection is over, so the answer goes nowhere.
                    let response = match RequestBody::of(req).await {
                        Ok(req) => handler(state, req).await,
                        Err(_) => crate::http_util::status(http::StatusCode::BAD_REQUEST),
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            // Upgrades allowed: a handler may take the connection over
            // (`hyper::upgrade::on`, a console's WebSocket).
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs blocking work (synced RocksDB writes, file system calls, qemu-img,
/// libvirt) from async code without stalling the other tasks of a
/// multi-threaded runtime; directly where there is nothing to stall (a
/// single-threaded runtime in tests, a blocking-pool thread, no runtime).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A handler that answers without reading the body.
    async fn ignores_the_body(_: Arc<()>, req: Request<RequestBody>) -> Response<Body> {
        crate::http_util::text(http::StatusCode::OK, req.uri().path().to_string())
    }

    /// Reads one response whose body is `expect`, or fails on EOF.
    async fn read_answer(conn: &mut tokio::net::TcpStream, expect: &str) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).ends_with(expect) {
            let n = conn.read(&mut buf).await.expect("reading the answer");
            assert!(
                n > 0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }

    /// The race hyper leaves open: the handler answers before a small body
    /// arrives. The connection must stay usable for the next request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_the_handler_ignores_keeps_the_connection_alive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(()), ignores_the_body, async {
            let _ = stopped.await;
        }));
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.set_nodelay(true).unwrap();
        conn.write_all(b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        conn.write_all(b"null").await.unwrap();
        read_answer(&mut conn, "/first").await;
        conn.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_answer(&mut conn, "/second").await;
        let _ = stop.send(());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_buffered_body_reads_once_with_its_exact_size() {
        let mut body = RequestBody::buffered(Bytes::from_static(b"abc"));
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(3));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"abc"));
        assert!(hyper::body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }
}
