//! Guest networks over HTTP: nova-network's `os-networks` (list, show),
//! a server's interfaces (`os-interface`) and its `addresses`, and the
//! faults of handing addresses out ([`crate::fixed_ips`]).

use super::{fault, internal, visible};
use crate::conductor::Compute;
use crate::fixed_ips::AllocError;
use crate::network::{Network, Nic};
use http::{Response, StatusCode};
use serde_json::{json, Map, Value};
use service_kit::auth::Identity;
use service_kit::http_util::{json_response, Body};

fn network_view(n: &Network) -> Value {
    json!({
        "id": n.id,
        "label": n.name,
        "cidr": n.cidr(),
        "netmask": n.netmask().to_string(),
        "gateway": n.gateway().to_string(),
        "cidr_v6": null,
        "gateway_v6": null,
    })
}

pub fn list(c: &Compute) -> Response<Body> {
    let nets: Vec<Value> = c.networks.iter().map(network_view).collect();
    json_response(StatusCode::OK, &json!({ "networks": nets }))
}

pub fn show(c: &Compute, id: &str) -> Response<Body> {
    match c.networks.iter().find(|n| n.id == id || n.name == id) {
        Some(n) => json_response(StatusCode::OK, &json!({ "network": network_view(n) })),
        None => fault(
            StatusCode::NOT_FOUND,
            format!("Network {id} could not be found."),
        ),
    }
}

/// A server's `addresses`: its fixed addresses by network label.
pub fn addresses(nics: &[Nic]) -> Value {
    let mut by_network: Map<String, Value> = Map::new();
    for nic in nics {
        let entry = by_network
            .entry(nic.network.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(json!({
                "addr": nic.address.to_string(),
                "version": 4,
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": nic.mac,
            }));
        }
    }
    Value::Object(by_network)
}

fn interface_view(server_id: &str, nic: &Nic) -> Value {
    json!({
        "port_state": "ACTIVE",
        "fixed_ips": [{"subnet_id": nic.network_id, "ip_address": nic.address.to_string()}],
        "port_id": nic.port_id(server_id),
        "net_id": nic.network_id,
        "mac_addr": nic.mac,
    })
}

/// `GET /servers/{id}/os-interface`.
pub fn interfaces(c: &Compute, who: &Identity, id: &str) -> Response<Body> {
    match visible(c, who, id) {
        Ok(s) => {
            let list: Vec<Value> = s
                .guest
                .nics
                .iter()
                .map(|n| interface_view(&s.id, n))
                .collect();
            json_response(StatusCode::OK, &json!({ "interfaceAttachments": list }))
        }
        Err(r) => r,
    }
}

/// `GET /servers/{id}/os-interface/{port_id}`.
pub fn interface(c: &Compute, who: &Identity, id: &str, port: &str) -> Response<Body> {
    let s = match visible(c, who, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match s.guest.nics.iter().find(|n| n.port_id(&s.id) == port) {
        Some(n) => json_response(
            StatusCode::OK,
            &json!({ "interfaceAttachment": interface_view(&s.id, n) }),
        ),
        None => fault(
            StatusCode::NOT_FOUND,
            format!("Port {port} could not be found."),
        ),
    }
}

/// The fault for addresses that could not be handed out: unknown
/// networks and addresses outside them are the request's fault (400), a
/// taken address or a full network a conflict (409).
pub fn alloc_fault(e: AllocError) -> Response<Body> {
    match e {
        AllocError::UnknownNetwork(_) | AllocError::NotInNetwork(..) => {
            fault(StatusCode::BAD_REQUEST, e.to_string())
        }
        AllocError::InUse(..) | AllocError::Exhausted => fault(StatusCode::CONFLICT, e.to_string()),
        AllocError::Store(e) => internal(e),
    }
}
