//! The metadata service for a host's own guests, as Nova's: HTTP on
//! 169.254.169.254 port 80 (an address the agent puts on each guest
//! bridge, which guests reach through their gateway), each request
//! answered for the instance whose address sent it
//! ([`crate::metadata::GuestView::answer`]); an address that is no guest's
//! gets 404. Read only: GET and HEAD.

use crate::agent::Agent;
use crate::metadata::GuestView;
use http::{Method, Request, Response, StatusCode};
use service_kit::http_util::{full, set_header, status, Body};
use service_kit::server::{PeerAddr, RequestBody};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// Where guests find the metadata service.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Serves until the agent stops. The address exists once the first
/// guest's bridge is made ([`crate::host_network`]): until then binding is
/// tried again every second.
pub async fn run(agent: Arc<Agent>) {
    let listener = loop {
        match tokio::net::TcpListener::bind((ADDRESS, 80)).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    tracing::info!(address = %ADDRESS, "metadata service listening");
    service_kit::server::serve(
        listener,
        agent,
        handle,
        service_kit::server::shutdown_signal(),
    )
    .await;
}

async fn handle(agent: Arc<Agent>, req: Request<RequestBody>) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(PeerAddr(peer)) = req.extensions().get::<PeerAddr>().copied() else {
        return status(StatusCode::NOT_FOUND);
    };
    let path = req.uri().path().to_string();
    // Reads every instance record of the host: blocking file I/O.
    let answer = tokio::task::spawn_blocking(move || {
        let placed = agent.placed();
        let instance = placed.iter().find(|p| {
            p.guest
                .nics
                .iter()
                .any(|n| IpAddr::V4(n.address) == peer.ip())
        })?;
        let mut random_seed = [0u8; 512];
        getrandom::fill(&mut random_seed).expect("the OS random source works");
        let view = GuestView {
            instance,
            availability_zone: &agent.config.availability_zone,
            random_seed: &random_seed,
        };
        view.answer(&path)
            .map(|body| (path.ends_with(".json"), body))
    })
    .await
    .ok()
    .flatten();
    match answer {
        Some((json, body)) => {
            let mut r = Response::new(full(body));
            set_header(
                r.headers_mut(),
                "content-type",
                if json {
                    "application/json"
                } else {
                    "text/plain; charset=UTF-8"
                },
            );
            r
        }
        None => status(StatusCode::NOT_FOUND),
    }
}
