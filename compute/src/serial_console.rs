//! The interactive serial console (Nova's `remote-consoles` with protocol
//! `serial`). Each guest's first serial port is a Unix socket QEMU listens
//! on (and logs to the console log). The compute API hands out a
//! WebSocket URL of the guest's agent with a token it signs with the agent
//! key ([`token`]); the agent checks the token and joins the WebSocket to
//! the socket ([`serve`]): bytes typed go to the guest, the guest's output
//! comes back as binary messages. Nova puts a proxy
//! (`nova-serialproxy`) in between; here the agent is the proxy, so no
//! extra service is needed and the token never leaves the pair that
//! shares the key.

use crate::agent::{error, Agent};
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use service_kit::http_util::{header_str, query_pairs, Body};
use service_kit::server::RequestBody;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a console URL may be opened after the API gave it out (Nova's
/// console tokens last 10 minutes by default, `[consoleauth]
/// token_ttl`). An open console stays open past it.
pub const TOKEN_TTL_SECS: u64 = 600;

fn subject(instance_id: &str) -> String {
    format!("serial-console:{instance_id}")
}

/// A token for the console of `instance_id`, valid [`TOKEN_TTL_SECS`] from
/// `now` (Unix seconds).
pub fn token(agent_key: &str, instance_id: &str, now: u64) -> String {
    service_kit::auth::sign_expiring(
        agent_key.as_bytes(),
        &subject(instance_id),
        now + TOKEN_TTL_SECS,
    )
}

/// The URL a client opens: the agent's address as the API knows it
/// (`http://host:port`), as a WebSocket URL.
pub fn url(agent_url: &str, instance_id: &str, token: &str) -> String {
    let base = agent_url.trim_end_matches('/');
    let ws = match base.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("ws://{}", base.trim_start_matches("http://")),
    };
    format!("{ws}/instances/{instance_id}/serial?token={token}")
}

/// Answers `GET /instances/{id}/serial?token=`: 401 without a valid token
/// for this instance, 409 when the guest's console is not listening
/// (stopped) or has a client already, 400 when the request is no
/// WebSocket handshake; otherwise 101 and the console until either side
/// closes.
pub async fn serve(agent: Arc<Agent>, id: &str, req: Request<RequestBody>) -> Response<Body> {
    let token = query_pairs(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .unwrap_or_default();
    if !service_kit::auth::verify_expiring(
        agent.config.agent_key.as_bytes(),
        &subject(id),
        &token,
        service_kit::timestamp::Timestamp::now().secs(),
    ) {
        return error(
            StatusCode::UNAUTHORIZED,
            "a valid console token is required",
        );
    }
    let headers = req.headers();
    let upgrade = header_str(headers, "upgrade").unwrap_or_default();
    let version = header_str(headers, "sec-websocket-version").unwrap_or_default();
    let Some(key) = header_str(headers, "sec-websocket-key") else {
        return error(StatusCode::BAD_REQUEST, "a WebSocket handshake is required");
    };
    if !upgrade.eq_ignore_ascii_case("websocket") || version != "13" {
        return error(
            StatusCode::BAD_REQUEST,
            "a WebSocket (version 13) handshake is required",
        );
    }
    // Nova's proxy speaks the `binary` subprotocol; echo it when asked.
    let binary = header_str(headers, "sec-websocket-protocol")
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "binary"));
    let Some(socket) = service_kit::server::blocking(|| agent.console_socket(id)) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no instance {id} on this host"),
        );
    };
    // One client at a time, as the guest's serial port has one: a second
    // would wait unseen behind the first.
    let Some(session) = Session::begin(&agent, id) else {
        return error(
            StatusCode::CONFLICT,
            format!("the console of {id} is in use by another client"),
        );
    };
    // Connected before answering 101, so that a stopped guest is an error
    // the client can read, not a WebSocket that closes at once.
    let guest = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                format!("the console of {id} is not available (is it running?): {e}"),
            )
        }
    };
    let accept = derive_accept_key(key.as_bytes());
    let id = id.to_string();
    let mut req = req;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                join(ws, guest).await;
                drop(session);
                tracing::info!(instance = %id, "serial console closed");
            }
            Err(e) => tracing::warn!(instance = %id, error = %e, "console upgrade failed"),
        }
    });
    let mut r = Response::new(service_kit::http_util::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if binary {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static("binary"),
        );
    }
    r
}

/// An instance's console in use, until dropped.
struct Session {
    agent: Arc<Agent>,
    id: String,
}

impl Session {
    fn begin(agent: &Arc<Agent>, id: &str) -> Option<Session> {
        let mut open = agent
            .console_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.insert(id.to_string()).then(|| Session {
            agent: agent.clone(),
            id: id.to_string(),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.agent
            .console_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Copies both ways until the client closes, the guest's socket ends (the
/// guest stopped) or either side fails.
async fn join<S>(ws: WebSocketStream<S>, guest: tokio::net::UnixStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = ws.split();
    let (mut from_guest, mut to_guest) = guest.into_split();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from_guest.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let out = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if to_client.send(out).await.is_err() {
                        return;
                    }
                }
            },
            message = from_client.next() => {
                let typed = match message {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                };
                if to_guest.write_all(&typed).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_client.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_the_agent_and_tokens_name_the_instance() {
        assert_eq!(
            url("http://10.0.0.5:8776", "abc", "1.ff"),
            "ws://10.0.0.5:8776/instances/abc/serial?token=1.ff"
        );
        assert_eq!(
            url("https://h:1/", "abc", "t"),
            "wss://h:1/instances/abc/serial?token=t"
        );
        let t = token("key", "abc", 1000);
        let check =
            |id: &str, at: u64| service_kit::auth::verify_expiring(b"key", &subject(id), &t, at);
        assert!(check("abc", 1000 + TOKEN_TTL_SECS - 1));
        assert!(!check("abc", 1000 + TOKEN_TTL_SECS), "expired");
        assert!(!check("abd", 1001), "another instance's console");
    }
}
