//! A server's consoles over HTTP: the console log (`os-getConsoleOutput`)
//! and the interactive serial console, by Nova's `remote-consoles`
//! (`{"remote_console": {"protocol": "serial", "type": "serial"}}`) and by
//! the older `os-getSerialConsole` action. The URL points at the guest's
//! agent with a signed token ([`crate::serial_console`]). VNC, SPICE and
//! RDP are not offered: asked for, they are Nova's 400 for a console type
//! the deployment does not have.

use super::{compute_error, fault, invalid_field, placed_host, read_json, visible};
use crate::conductor::Compute;
use crate::instance::{Server, VmState};
use crate::serial_console;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use service_kit::auth::Identity;
use service_kit::http_util::{json_response, Body};
use service_kit::server::RequestBody;
use std::sync::Arc;

/// The tail of the console log (`length` lines, or Nova's last 100 KiB).
pub async fn output(c: &Arc<Compute>, server: &Server, args: &Value) -> Response<Body> {
    let host = match placed_host(server, "os-getConsoleOutput") {
        Ok(h) => h,
        Err(r) => return r,
    };
    let length = match &args["length"] {
        Value::Null => None,
        v => match v.as_i64().or_else(|| v.as_str()?.parse().ok()) {
            Some(-1) => None,
            Some(n) if n >= 0 => Some(n),
            _ => return invalid_field("length"),
        },
    };
    let path = match length {
        Some(n) => format!("/instances/{}/console?length={n}", server.id),
        None => format!("/instances/{}/console", server.id),
    };
    match c.agent_call(&host, Method::GET, &path, None).await {
        Ok(v) => json_response(StatusCode::OK, &json!({"output": v["output"]})),
        Err(e) => compute_error(e),
    }
}

/// Nova's answer for a console type this deployment does not offer.
pub fn unavailable(console_type: &str) -> Response<Body> {
    fault(
        StatusCode::BAD_REQUEST,
        format!("Unavailable console type {console_type}."),
    )
}

/// `POST /servers/{id}/remote-consoles`.
pub async fn remote(
    c: &Arc<Compute>,
    who: &Identity,
    id: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    let server = match visible(c, who, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let console = &body["remote_console"];
    let (Some(protocol), Some(console_type)) =
        (console["protocol"].as_str(), console["type"].as_str())
    else {
        return invalid_field("remote_console");
    };
    if !["vnc", "spice", "rdp", "serial", "mks"].contains(&protocol) {
        return invalid_field("remote_console/protocol");
    }
    if protocol != "serial" {
        return unavailable(console_type);
    }
    if console_type != "serial" {
        return invalid_field("remote_console/type");
    }
    match serial_url(c, &server) {
        Ok(url) => json_response(
            StatusCode::OK,
            &json!({"remote_console": {"protocol": "serial", "type": "serial", "url": url}}),
        ),
        Err(r) => r,
    }
}

/// The `os-getSerialConsole` action: `{"type": "serial"}`.
pub fn serial_action(c: &Arc<Compute>, server: &Server, args: &Value) -> Response<Body> {
    match args["type"].as_str() {
        Some("serial") => {}
        Some(other) => return unavailable(other),
        None => return invalid_field("type"),
    }
    match serial_url(c, server) {
        Ok(url) => json_response(
            StatusCode::OK,
            &json!({"console": {"type": "serial", "url": url}}),
        ),
        Err(r) => r,
    }
}

/// A fresh console URL for a running server; Nova's 409 (InstanceNotReady)
/// for any other.
fn serial_url(c: &Compute, server: &Server) -> Result<String, Response<Body>> {
    let host = match (&server.host, server.vm_state) {
        (Some(host), VmState::Active) => host,
        _ => {
            return Err(fault(
                StatusCode::CONFLICT,
                format!("Instance {} is not ready", server.id),
            ))
        }
    };
    let agent_url = c.host_url(host).map_err(compute_error)?;
    let now = service_kit::timestamp::Timestamp::now().secs();
    let token = serial_console::token(&c.config.agent_key, &server.id, now);
    Ok(serial_console::url(&agent_url, &server.id, &token))
}
