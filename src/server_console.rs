//! `nubo server console <id>`: the interactive serial console of a running
//! server. Asks the compute API for a console URL (Nova's
//! `remote-consoles`, protocol `serial`), opens the WebSocket and joins it
//! to the terminal: keys go to the guest, its output to stdout. On a
//! terminal, the terminal is put in raw mode (so the guest sees every key,
//! Ctrl-C included) and Ctrl-] leaves, as with telnet and `virsh console`.
//! With piped input (a script), what is piped is sent and the command
//! ends once the input is over and the guest has been quiet for `quiet`
//! (`--quiet-secs`).

use crate::service_client::ServiceClient;
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use http::Method;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Ctrl-]: leaves an interactive console.
const ESCAPE: u8 = 0x1d;

pub async fn attach(c: &ServiceClient, id: &str, quiet: Duration) -> Result<()> {
    let v = c
        .json(
            Method::POST,
            &format!("/servers/{id}/remote-consoles"),
            Some(json!({"remote_console": {"protocol": "serial", "type": "serial"}})),
        )
        .await?;
    let Some(url) = v["remote_console"]["url"].as_str() else {
        bail!("the compute API gave no console URL: {v}");
    };
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("opening the console of {id}"))?;
    // SAFETY: isatty only inspects file descriptor 0.
    let interactive = unsafe { libc::isatty(0) } == 1;
    let _raw = if interactive {
        eprintln!("Connected to the serial console of {id}. Press Ctrl-] to leave.");
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let (mut to_guest, mut from_guest) = ws.split();
    let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let mut buf = [0u8; 4096];
    let mut input_open = true;
    loop {
        tokio::select! {
            message = from_guest.next() => match message {
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Message::Text(t))) => {
                    stdout.write_all(t.as_bytes()).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("the console connection failed"),
            },
            read = stdin.read(&mut buf), if input_open => match read? {
                0 => input_open = false,
                n => {
                    let typed = &buf[..n];
                    let (send, leave) = match typed.iter().position(|&b| b == ESCAPE) {
                        Some(at) if interactive => (&typed[..at], true),
                        _ => (typed, false),
                    };
                    if !send.is_empty() {
                        to_guest
                            .send(Message::Binary(bytes::Bytes::copy_from_slice(send)))
                            .await?;
                    }
                    if leave {
                        break;
                    }
                }
            },
            // Restarted by every message: fires once the guest is quiet.
            _ = tokio::time::sleep(quiet), if !input_open => break,
        }
    }
    let _ = to_guest.send(Message::Close(None)).await;
    Ok(())
}

/// The terminal in raw mode until dropped (then as it was).
struct RawTerminal(libc::termios);

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0 or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 with a valid pointer to a termios.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("reading the terminal's mode");
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: fd 0 with a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setting the terminal raw");
        }
        Ok(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: fd 0 with the termios read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
        eprintln!();
    }
}
