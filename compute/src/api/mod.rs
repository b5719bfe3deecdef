//! The Nova compute API (`/v2.1`) over HTTP: a thin adapter from requests
//! to the instance rules ([`crate::instance`]) and the conductor. Faults
//! have Nova's shape, `{"badRequest": {"code": 400, "message": "..."}}`.

mod consoles;
mod keypairs;
mod networks;
mod security_groups;

use crate::agent::{HostReport, AGENT_KEY_HEADER};
use crate::conductor::{Compute, ComputeError, HostRecord};
use crate::db::Kind;
use crate::fixed_ips;
use crate::instance::{self, Action, Flavor, GuestData, Server, TaskState, VmState};
use crate::network;
use crate::rest::call;
use crate::template_cache::ImageRef;
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use service_kit::auth::{constant_time_eq, Identity};
use service_kit::http_util::json_response;
use service_kit::http_util::{collect_limited, decode, header_str, query_pairs, Body};
use service_kit::ids::{new_id, now_iso8601};
use service_kit::server::RequestBody;
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A Nova fault: every error of the compute API, written once.
pub struct NovaFault {
    pub status: StatusCode,
    pub message: String,
}

impl service_kit::api_error::ApiError for NovaFault {
    fn status(&self) -> StatusCode {
        self.status
    }

    /// `{"<kind>": {"code", "message"}}`: the body names the kind of fault.
    fn body(&self) -> (&'static str, bytes::Bytes) {
        let kind = match self.status {
            StatusCode::BAD_REQUEST => "badRequest",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "itemNotFound",
            StatusCode::CONFLICT => "conflictingRequest",
            StatusCode::SERVICE_UNAVAILABLE => "serviceUnavailable",
            _ => "computeFault",
        };
        let body = json!({ kind: {"code": self.status.as_u16(), "message": self.message} });
        let bytes = serde_json::to_vec(&body).expect("json");
        ("application/json; charset=utf-8", bytes.into())
    }
}

/// A Nova fault as the response.
pub fn fault(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    service_kit::api_error::ApiError::response(&NovaFault { status, message })
}

/// Nova's fault for a field of the wrong type or value.
fn invalid_field(field: &str) -> Response<Body> {
    fault(
        StatusCode::BAD_REQUEST,
        format!("Invalid input for field/attribute {field}."),
    )
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(service_kit::http_util::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn internal(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "compute API error");
    fault(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn compute_error(e: ComputeError) -> Response<Body> {
    match e {
        ComputeError::Conflict(m) => fault(StatusCode::CONFLICT, m),
        ComputeError::NotFound(m) => fault(StatusCode::NOT_FOUND, m),
        ComputeError::Unavailable(m) => fault(StatusCode::SERVICE_UNAVAILABLE, m),
        ComputeError::Db(e) => internal(e),
    }
}

fn not_found(id: &str) -> Response<Body> {
    fault(
        StatusCode::NOT_FOUND,
        format!("Instance {id} could not be found."),
    )
}

const VERSION: &str = "2.1";

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": VERSION,
        "min_version": VERSION,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

/// `http://host:port` as the client addressed us, for links.
fn base_url(req: &Request<RequestBody>) -> String {
    let host = header_str(req.headers(), "host").unwrap_or_default();
    format!("http://{host}")
}

/// The last path segment of a reference that may be a URL (`imageRef`,
/// `flavorRef`).
fn ref_id(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let id = s.trim_end_matches('/').rsplit('/').next()?.to_string();
    (!id.is_empty()).then_some(id)
}

async fn read_json(req: Request<RequestBody>) -> Result<Value, Response<Body>> {
    let Some(body) = collect_limited(req.into_body(), 1 << 20).await else {
        return Err(fault(
            StatusCode::BAD_REQUEST,
            "The request body is too large.",
        ));
    };
    serde_json::from_slice(&body).map_err(|e| {
        fault(
            StatusCode::BAD_REQUEST,
            format!("Malformed request body: {e}"),
        )
    })
}

pub async fn handle(c: Arc<Compute>, req: Request<RequestBody>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let base = base_url(&req);
    match parts.as_slice() {
        [] => return json_response(StatusCode::OK, &json!({"versions": [version_doc(&base)]})),
        ["v2.1"] => return json_response(StatusCode::OK, &json!({"version": version_doc(&base)})),
        ["healthcheck"] => return service_kit::http_util::text(StatusCode::OK, "OK"),
        ["metrics"] => return service_kit::http_util::text(StatusCode::OK, metrics(&c)),
        ["internal", "heartbeat"] => return heartbeat(&c, req).await,
        ["v2.1", ..] => {}
        _ => return fault(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
    let Some(who) = header_str(req.headers(), "x-auth-token").and_then(|t| c.auth.check(&t)) else {
        return fault(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        );
    };
    // Nova's default policy: `reader` lists and shows, and acts on nothing.
    if who.read_only() && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return fault(
            StatusCode::FORBIDDEN,
            format!(
                "Policy doesn't allow {} {} to be performed by a reader.",
                req.method(),
                req.uri().path()
            ),
        );
    }
    let token = header_str(req.headers(), "x-auth-token")
        .unwrap_or_default()
        .into_owned();
    // `/v2.1/<project>/servers` and `/v2.1/servers` both work.
    const COLLECTIONS: [&str; 9] = [
        "servers",
        "os-networks",
        "os-security-groups",
        "os-security-group-rules",
        "flavors",
        "os-hypervisors",
        "os-availability-zone",
        "os-keypairs",
        "limits",
    ];
    let mut rest = &parts[1..];
    if rest.len() > 1 && !COLLECTIONS.contains(&rest[0]) {
        rest = &rest[1..];
    }
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    match (method, rest) {
        (Method::GET, ["flavors"]) => list_flavors(&c, &base, false),
        (Method::GET, ["flavors", "detail"]) => list_flavors(&c, &base, true),
        (Method::GET, ["flavors", id]) => show_flavor(&c, &base, id),
        (Method::POST, ["flavors"]) => create_flavor(&c, &who, &base, req).await,
        (Method::DELETE, ["flavors", id]) => delete_flavor(&c, &who, id),
        (Method::POST, ["servers"]) => create_server(&c, &who, &token, &base, req).await,
        (Method::GET, ["servers"]) => list_servers(&c, &who, &base, query.as_deref(), false),
        (Method::GET, ["servers", "detail"]) => {
            list_servers(&c, &who, &base, query.as_deref(), true)
        }
        (Method::GET, ["servers", id]) => match visible(&c, &who, id) {
            Ok(s) => json_response(StatusCode::OK, &json!({"server": server_view(&s, &base)})),
            Err(r) => r,
        },
        (Method::DELETE, ["servers", id]) => delete_server(&c, &who, id),
        (Method::POST, ["servers", id, "action"]) => action(&c, &who, id, req).await,
        (Method::GET, ["servers", id, "diagnostics"]) => diagnostics(&c, &who, id).await,
        (Method::POST, ["servers", id, "remote-consoles"]) => {
            consoles::remote(&c, &who, id, req).await
        }
        (Method::GET, ["servers", id, "os-interface"]) => networks::interfaces(&c, &who, id),
        (Method::GET, ["servers", id, "os-interface", port]) => {
            networks::interface(&c, &who, id, port)
        }
        (Method::GET, ["servers", id, "os-security-groups"]) => {
            security_groups::of_server(&c, &who, id)
        }
        (Method::GET, ["os-security-groups"]) => security_groups::list(&c, &who),
        (Method::POST, ["os-security-groups"]) => security_groups::create(&c, &who, req).await,
        (Method::GET, ["os-security-groups", id]) => security_groups::show(&c, &who, id),
        (Method::DELETE, ["os-security-groups", id]) => security_groups::delete(&c, &who, id),
        (Method::POST, ["os-security-group-rules"]) => {
            security_groups::create_rule(&c, &who, req).await
        }
        (Method::DELETE, ["os-security-group-rules", id]) => {
            security_groups::delete_rule(&c, &who, id)
        }
        (Method::GET, ["os-networks"]) => networks::list(&c),
        (Method::GET, ["os-networks", id]) => networks::show(&c, &decode(id)),
        (Method::GET, ["os-hypervisors"]) => hypervisors(&c, &who, false, None),
        (Method::GET, ["os-hypervisors", "detail"]) => hypervisors(&c, &who, true, None),
        (Method::GET, ["os-hypervisors", id]) => hypervisors(&c, &who, true, Some(id)),
        (Method::GET, ["os-availability-zone"]) => zones(&c, false),
        (Method::GET, ["os-availability-zone", "detail"]) => zones(&c, true),
        (Method::GET, ["limits"]) => limits(&c, &who),
        (Method::GET, ["os-keypairs"]) => keypairs::list(&c, &who),
        (Method::POST, ["os-keypairs"]) => keypairs::create(&c, &who, req).await,
        (Method::GET, ["os-keypairs", name]) => keypairs::show(&c, &who, &decode(name)),
        (Method::DELETE, ["os-keypairs", name]) => keypairs::delete(&c, &who, &decode(name)),
        _ => fault(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

fn flavor_view(f: &Flavor, base: &str, detail: bool) -> Value {
    let mut v = json!({
        "id": f.id,
        "name": f.name,
        "links": [{"rel": "self", "href": format!("{base}/v2.1/flavors/{}", f.id)}],
    });
    if detail {
        let m = v.as_object_mut().expect("object");
        m.insert("vcpus".into(), json!(f.vcpus));
        m.insert("ram".into(), json!(f.ram));
        m.insert("disk".into(), json!(f.disk));
        m.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(0));
        m.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
        m.insert("swap".into(), json!(""));
        m.insert("rxtx_factor".into(), json!(1.0));
        m.insert("os-flavor-access:is_public".into(), json!(true));
    }
    v
}

fn flavors_sorted(c: &Compute) -> Result<Vec<Flavor>, Response<Body>> {
    let mut all: Vec<Flavor> = c.db.all(Kind::Flavor).map_err(internal)?;
    // Nova lists flavors by id, numerically where the ids are numbers.
    all.sort_by(|a, b| match (a.id.parse::<u64>(), b.id.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.id.cmp(&b.id),
    });
    Ok(all)
}

fn list_flavors(c: &Compute, base: &str, detail: bool) -> Response<Body> {
    match flavors_sorted(c) {
        Ok(all) => json_response(
            StatusCode::OK,
            &json!({"flavors": all.iter().map(|f| flavor_view(f, base, detail)).collect::<Vec<_>>()}),
        ),
        Err(r) => r,
    }
}

fn find_flavor(c: &Compute, id: &str) -> Result<Option<Flavor>, Response<Body>> {
    c.db.get(Kind::Flavor, id).map_err(internal)
}

fn show_flavor(c: &Compute, base: &str, id: &str) -> Response<Body> {
    match find_flavor(c, id) {
        Ok(Some(f)) => json_response(
            StatusCode::OK,
            &json!({"flavor": flavor_view(&f, base, true)}),
        ),
        Ok(None) => fault(
            StatusCode::NOT_FOUND,
            format!("Flavor {id} could not be found."),
        ),
        Err(r) => r,
    }
}

/// The `name` of a flavor or server: 1 to 255 characters, not all blank.
fn name_field(v: &Value) -> Result<&str, Response<Body>> {
    v["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty() && n.len() <= 255)
        .ok_or_else(|| invalid_field("name"))
}

/// A positive integer field of a request body.
fn positive(v: &Value, field: &str, allow_zero: bool) -> Result<u64, Response<Body>> {
    let n = match &v[field] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 || allow_zero => Ok(n),
        _ => Err(fault(
            StatusCode::BAD_REQUEST,
            format!("Invalid input for field/attribute {field}: must be a positive integer."),
        )),
    }
}

async fn create_flavor(
    c: &Compute,
    who: &Identity,
    base: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    if !who.admin {
        return fault(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.",
        );
    }
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let f = &body["flavor"];
    let name = match name_field(f) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let (vcpus, ram, disk) = match (
        positive(f, "vcpus", false),
        positive(f, "ram", false),
        positive(f, "disk", true),
    ) {
        (Ok(v), Ok(r), Ok(d)) => (v, r, d),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    let Ok(vcpus) = u32::try_from(vcpus) else {
        return invalid_field("vcpus");
    };
    let id = match &f["id"] {
        Value::Null => new_id(),
        v => match ref_id(v).filter(|id| id.len() <= 255 && !id.contains('/')) {
            Some(id) => id,
            None => return invalid_field("id"),
        },
    };
    let all = match flavors_sorted(c) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if all.iter().any(|x| x.id == id) {
        return fault(
            StatusCode::CONFLICT,
            format!("Flavor with ID {id} already exists."),
        );
    }
    if all.iter().any(|x| x.name == name) {
        return fault(
            StatusCode::CONFLICT,
            format!("Flavor with name {name} already exists."),
        );
    }
    let flavor = Flavor {
        id,
        name: name.to_string(),
        vcpus,
        ram,
        disk,
    };
    if let Err(e) = c.db.put(Kind::Flavor, &flavor.id, &flavor) {
        return internal(e);
    }
    json_response(
        StatusCode::OK,
        &json!({"flavor": flavor_view(&flavor, base, true)}),
    )
}

fn delete_flavor(c: &Compute, who: &Identity, id: &str) -> Response<Body> {
    if !who.admin {
        return fault(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:os-flavor-manage:delete to be performed.",
        );
    }
    match find_flavor(c, id) {
        Ok(Some(_)) => match c.db.delete(Kind::Flavor, id) {
            Ok(()) => accepted(),
            Err(e) => internal(e),
        },
        Ok(None) => fault(
            StatusCode::NOT_FOUND,
            format!("Flavor {id} could not be found."),
        ),
        Err(r) => r,
    }
}

/// The server if the caller may see it: its owner's account, or an admin.
fn visible(c: &Compute, who: &Identity, id: &str) -> Result<Server, Response<Body>> {
    match c.server(id) {
        Ok(Some(s))
            if s.vm_state != VmState::Deleted && (s.account == who.account || who.admin) =>
        {
            Ok(s)
        }
        Ok(_) => Err(not_found(id)),
        Err(e) => Err(internal(e)),
    }
}

fn server_view(s: &Server, base: &str) -> Value {
    let host_id = s
        .host
        .as_ref()
        .map(|h| hex::encode(Sha224::digest(format!("{}{h}", s.account))))
        .unwrap_or_default();
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "status": s.status(),
        "tenant_id": s.account,
        "user_id": s.user,
        "metadata": s.metadata,
        "hostId": host_id,
        "image": {"id": s.image_id, "links": [{"rel": "bookmark", "href": format!("{base}/images/{}", s.image_id)}]},
        "flavor": {
            "id": s.flavor.id,
            "original_name": s.flavor.name,
            "vcpus": s.flavor.vcpus,
            "ram": s.flavor.ram,
            "disk": s.flavor.disk,
            "ephemeral": 0,
            "swap": 0,
            "links": [{"rel": "bookmark", "href": format!("{base}/flavors/{}", s.flavor.id)}],
        },
        "created": s.created,
        "updated": s.updated,
        "addresses": networks::addresses(&s.guest.nics),
        "accessIPv4": "",
        "accessIPv6": "",
        "links": [
            {"rel": "self", "href": format!("{base}/v2.1/servers/{}", s.id)},
            {"rel": "bookmark", "href": format!("{base}/servers/{}", s.id)},
        ],
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "key_name": s.guest.key_name,
        "config_drive": if s.guest.config_drive { "True" } else { "" },
        "security_groups": s.security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "os-extended-volumes:volumes_attached": [],
        "OS-EXT-STS:vm_state": s.vm_state.name(),
        "OS-EXT-STS:task_state": s.task_state.map(TaskState::name),
        "OS-EXT-STS:power_state": instance::power_state_code(s.power_state),
        "OS-EXT-SRV-ATTR:host": s.host,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": s.host,
        "OS-EXT-SRV-ATTR:instance_name": s.host.as_ref().map(|h| crate::agent::domain_name(h, &s.id)),
        "OS-EXT-AZ:availability_zone": s.availability_zone.clone().unwrap_or_default(),
        "OS-SRV-USG:launched_at": s.launched_at,
        "OS-SRV-USG:terminated_at": null,
    });
    if let Some(f) = &s.fault {
        v["fault"] = json!({"code": f.code, "message": f.message, "details": f.details, "created": f.created});
    }
    v
}

fn list_servers(
    c: &Compute,
    who: &Identity,
    base: &str,
    query: Option<&str>,
    detail: bool,
) -> Response<Body> {
    let q: BTreeMap<String, String> = query_pairs(query).into_iter().collect();
    let all_tenants = who.admin
        && q.get("all_tenants")
            .is_some_and(|v| v != "0" && v != "false");
    let servers = match c.servers() {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let mut shown: Vec<&Server> = servers
        .iter()
        .filter(|s| s.vm_state != VmState::Deleted)
        .filter(|s| all_tenants || s.account == who.account)
        .filter(|s| {
            q.get("status")
                .is_none_or(|st| st.eq_ignore_ascii_case(s.status()))
        })
        .filter(|s| q.get("name").is_none_or(|n| s.name.contains(n.as_str())))
        .filter(|s| {
            q.get("host")
                .is_none_or(|h| s.host.as_deref() == Some(h.as_str()))
        })
        .collect();
    // Newest first, as Nova lists them.
    shown.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    let views: Vec<Value> = shown
        .iter()
        .map(|s| {
            if detail {
                server_view(s, base)
            } else {
                json!({"id": s.id, "name": s.name, "links": [{"rel": "self", "href": format!("{base}/v2.1/servers/{}", s.id)}]})
            }
        })
        .collect();
    json_response(StatusCode::OK, &json!({"servers": views}))
}

/// The image as the registry shows it to the caller: 400 if it does not
/// exist (for this caller), 409 if it is not active yet.
async fn image_for_launch(
    c: &Compute,
    token: &str,
    id: &str,
) -> Result<(ImageRef, BTreeMap<String, String>), Response<Body>> {
    let (status, img) = call(
        &c.client,
        &c.config.registry_url,
        Method::GET,
        &format!("/v2/images/{}", service_kit::http_util::encode(id)),
        &[("x-auth-token", token)],
        None,
    )
    .await
    .map_err(|e| {
        fault(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The image service is unavailable: {e}"),
        )
    })?;
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
            return Err(fault(
                StatusCode::BAD_REQUEST,
                format!("Image {id} could not be found."),
            ))
        }
        s => {
            return Err(fault(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("The image service answered {s}."),
            ))
        }
    }
    let status = img["status"].as_str().unwrap_or_default();
    if status != "active" {
        return Err(fault(
            StatusCode::CONFLICT,
            format!("Image {id} is not active (its status is {status})."),
        ));
    }
    let text = |k: &str| img[k].as_str().map(str::to_string);
    let image = ImageRef {
        id: id.to_string(),
        disk_format: text("disk_format").unwrap_or_default(),
        os_hash_value: text("os_hash_value"),
        checksum: text("checksum"),
        blake3: text("nubo_blake3"),
        size: img["size"].as_u64(),
    };
    let properties = img
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok((image, properties))
}

async fn create_server(
    c: &Arc<Compute>,
    who: &Identity,
    token: &str,
    base: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let s = &body["server"];
    if !s.is_object() {
        return fault(
            StatusCode::BAD_REQUEST,
            "The request body needs a \"server\" object.",
        );
    }
    let name = match name_field(s) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let Some(flavor_id) = ref_id(&s["flavorRef"]) else {
        return fault(StatusCode::BAD_REQUEST, "Missing or invalid flavorRef.");
    };
    let Some(image_id) = ref_id(&s["imageRef"]) else {
        return fault(StatusCode::BAD_REQUEST, "Missing or invalid imageRef.");
    };
    let metadata: BTreeMap<String, String> = match &s["metadata"] {
        Value::Null => BTreeMap::new(),
        Value::Object(m) if m.len() <= 128 => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v.as_str() {
                    Some(v) if k.len() <= 255 && v.len() <= 255 => {
                        out.insert(k.clone(), v.to_string());
                    }
                    _ => return invalid_field("metadata"),
                }
            }
            out
        }
        _ => return invalid_field("metadata"),
    };
    let zone = match &s["availability_zone"] {
        Value::Null => None,
        Value::String(z) if !z.is_empty() => Some(z.clone()),
        _ => return invalid_field("availability_zone"),
    };
    let mut guest = match guest_data(c, who, s) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let requested = match network::parse_requested(&s["networks"]) {
        Ok(r) => r,
        Err(m) => return fault(StatusCode::BAD_REQUEST, m),
    };
    let groups = match security_groups::requested(c, who, &s["security_groups"]) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let group = body["os:scheduler_hints"]["group"]
        .as_str()
        .map(str::to_string);
    let flavor = match find_flavor(c, &flavor_id) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return fault(
                StatusCode::BAD_REQUEST,
                format!("Flavor {flavor_id} could not be found."),
            )
        }
        Err(r) => return r,
    };
    if let Some(z) = &zone {
        let known = match c.hosts() {
            Ok(h) => h.iter().any(|h| &h.report.availability_zone == z),
            Err(e) => return internal(e),
        };
        if !known {
            return fault(
                StatusCode::BAD_REQUEST,
                format!("The requested availability zone {z} is not available"),
            );
        }
    }
    let (image, properties) = match image_for_launch(c, token, &image_id).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    // Addresses last, once nothing else can refuse the request; the
    // server's record (written next) names them, and its delete frees them.
    let id = new_id();
    guest.nics = match fixed_ips::allocate(&c.db, &c.networks, &id, &requested) {
        Ok(nics) => nics,
        Err(e) => return networks::alloc_fault(e),
    };
    let created = now_iso8601();
    let server = Server {
        id,
        name: name.to_string(),
        account: who.account.clone(),
        user: who.user.clone(),
        image_id: image_id.clone(),
        flavor,
        requested_zone: zone,
        group,
        host: None,
        availability_zone: None,
        vm_state: VmState::Building,
        task_state: Some(TaskState::Scheduling),
        power_state: None,
        fault: None,
        metadata,
        created: created.clone(),
        updated: created,
        launched_at: None,
        guest,
        security_groups: groups,
    };
    if let Err(e) = c.put_server(&server) {
        fixed_ips::release(&c.db, &server.id, &server.guest.nics);
        return internal(e);
    }
    tokio::spawn(
        c.clone()
            .build(server.id.clone(), image, properties, token.to_string()),
    );
    let mut pass = [0u8; 9];
    getrandom::fill(&mut pass).expect("the OS random source works");
    json_response(
        StatusCode::ACCEPTED,
        &json!({"server": {
            "id": server.id,
            "links": [
                {"rel": "self", "href": format!("{base}/v2.1/servers/{}", server.id)},
                {"rel": "bookmark", "href": format!("{base}/servers/{}", server.id)},
            ],
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": server.security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
            "adminPass": hex::encode(pass),
        }}),
    )
}

/// The key, user data and config drive a new server's guest is given
/// (`key_name`, `user_data`, `config_drive`), checked as Nova checks them:
/// 400 for an unknown key.
fn guest_data(c: &Compute, who: &Identity, s: &Value) -> Result<GuestData, Response<Body>> {
    let (key_name, public_key) = match &s["key_name"] {
        Value::Null => (None, None),
        Value::String(name) => match keypairs::find(c, &who.user_id, name)? {
            Some(pair) => (Some(pair.name), Some(pair.public_key)),
            None => return Err(fault(StatusCode::BAD_REQUEST, "Invalid key_name provided.")),
        },
        _ => return Err(invalid_field("key_name")),
    };
    let user_data = match &s["user_data"] {
        Value::Null => None,
        Value::String(encoded) => {
            instance::decode_user_data(encoded).map_err(|m| fault(StatusCode::BAD_REQUEST, m))?;
            Some(encoded.clone())
        }
        _ => return Err(invalid_field("user_data")),
    };
    // Nova takes a boolean, or a string of one. Every guest gets a drive:
    // the metadata service is served only by hosts with a guest bridge,
    // and a guest without either finds nothing.
    match &s["config_drive"] {
        Value::Null | Value::Bool(_) => {}
        Value::String(v)
            if ["true", "false", "1", "0", ""].contains(&v.to_ascii_lowercase().as_str()) => {}
        _ => return Err(invalid_field("config_drive")),
    }
    Ok(GuestData {
        key_name,
        public_key,
        user_data,
        config_drive: true,
        nics: Vec::new(),
    })
}

fn delete_server(c: &Arc<Compute>, who: &Identity, id: &str) -> Response<Body> {
    if let Err(r) = visible(c, who, id) {
        return r;
    }
    match c.begin(id, Action::Delete) {
        // A build in flight sees the task and deletes the server itself.
        Ok(s) if s.vm_state == VmState::Building => {}
        Ok(_) => {
            tokio::spawn(c.clone().delete(id.to_string()));
        }
        Err(e) => return compute_error(e),
    }
    let mut r = Response::new(service_kit::http_util::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

async fn action(
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
    let Some((name, args)) = body
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        return fault(
            StatusCode::BAD_REQUEST,
            "The body must name exactly one action.",
        );
    };
    let action = match name.as_str() {
        "reboot" => match args["type"]
            .as_str()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("SOFT") => Action::Reboot { hard: false },
            Some("HARD") => Action::Reboot { hard: true },
            _ => {
                return fault(
                    StatusCode::BAD_REQUEST,
                    "Invalid input for field/attribute type: must be SOFT or HARD.",
                )
            }
        },
        "os-stop" => Action::Stop,
        "os-start" => Action::Start,
        "os-getConsoleOutput" => return consoles::output(c, &server, args).await,
        "os-getSerialConsole" => return consoles::serial_action(c, &server, args),
        "addSecurityGroup" => return security_groups::change_server(c, &server, args, true),
        "removeSecurityGroup" => return security_groups::change_server(c, &server, args, false),
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getRDPConsole" => {
            return consoles::unavailable(args["type"].as_str().unwrap_or("?"))
        }
        other => {
            return fault(
                StatusCode::BAD_REQUEST,
                format!("Unsupported action {other}."),
            )
        }
    };
    match c.begin(id, action) {
        Ok(_) => {
            tokio::spawn(c.clone().run_action(id.to_string(), action));
            accepted()
        }
        Err(e) => compute_error(e),
    }
}

/// The server's host, if it has one and is not busy being built.
fn placed_host(server: &Server, what: &str) -> Result<String, Response<Body>> {
    match (&server.host, server.vm_state) {
        (Some(h), VmState::Active | VmState::Stopped | VmState::Error) => Ok(h.clone()),
        _ => Err(fault(
            StatusCode::CONFLICT,
            format!(
                "Cannot '{what}' instance {} while it is in vm_state {}",
                server.id,
                server.vm_state.name()
            ),
        )),
    }
}

async fn diagnostics(c: &Arc<Compute>, who: &Identity, id: &str) -> Response<Body> {
    if !who.admin {
        return fault(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:os-server-diagnostics to be performed.",
        );
    }
    let server = match visible(c, who, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let host = match placed_host(&server, "get diagnostics") {
        Ok(h) => h,
        Err(r) => return r,
    };
    match c
        .agent_call(
            &host,
            Method::GET,
            &format!("/instances/{id}/diagnostics"),
            None,
        )
        .await
    {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => compute_error(e),
    }
}

fn hypervisor_view(c: &Compute, h: &HostRecord, detail: bool) -> Value {
    let r = &h.report;
    let up = c.is_up(&r.name);
    let mut v = json!({
        "id": h.id,
        "hypervisor_hostname": r.name,
        "state": if up { "up" } else { "down" },
        "status": "enabled",
    });
    if detail {
        let m: &mut Map<String, Value> = v.as_object_mut().expect("object");
        let extra = json!({
            "hypervisor_type": "QEMU",
            "hypervisor_version": 7002000,
            "host_ip": r.url.trim_start_matches("http://").split(':').next().unwrap_or_default(),
            "vcpus": r.vcpus,
            "vcpus_used": r.vcpus_used,
            "memory_mb": r.ram_mb,
            "memory_mb_used": r.ram_used_mb,
            "free_ram_mb": r.ram_mb as i64 - r.ram_used_mb as i64,
            "local_gb": r.disk_gb,
            "local_gb_used": r.disk_used_gb,
            "free_disk_gb": r.disk_gb as i64 - r.disk_used_gb as i64,
            "running_vms": r.instances.len(),
            "current_workload": 0,
            "disk_available_least": r.disk_gb as i64 - r.disk_used_gb as i64,
            "cpu_info": json!({"arch": r.architecture}).to_string(),
            "service": {"host": r.name, "id": h.id, "disabled_reason": null},
            "OS-EXT-AZ:availability_zone": r.availability_zone,
            "nubo:driver": r.driver,
            "nubo:cached_images": r.cached_images,
            "nubo:last_heartbeat": h.updated,
        });
        m.extend(extra.as_object().expect("object").clone());
    }
    v
}

fn hypervisors(c: &Compute, who: &Identity, detail: bool, id: Option<&str>) -> Response<Body> {
    if !who.admin {
        return fault(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:os-hypervisors to be performed.",
        );
    }
    let hosts = match c.hosts() {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    match id {
        Some(id) => match hosts.iter().find(|h| h.id.to_string() == id) {
            Some(h) => json_response(
                StatusCode::OK,
                &json!({"hypervisor": hypervisor_view(c, h, true)}),
            ),
            None => fault(
                StatusCode::NOT_FOUND,
                format!("Hypervisor with ID {id} could not be found."),
            ),
        },
        None => {
            let mut hosts = hosts;
            hosts.sort_by_key(|h| h.id);
            let views: Vec<Value> = hosts
                .iter()
                .map(|h| hypervisor_view(c, h, detail))
                .collect();
            json_response(StatusCode::OK, &json!({"hypervisors": views}))
        }
    }
}

fn zones(c: &Compute, detail: bool) -> Response<Body> {
    let hosts = match c.hosts() {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    let mut by_zone: BTreeMap<String, Vec<&HostRecord>> = BTreeMap::new();
    for h in &hosts {
        by_zone
            .entry(h.report.availability_zone.clone())
            .or_default()
            .push(h);
    }
    let info: Vec<Value> = by_zone
        .iter()
        .map(|(zone, hs)| {
            let available = hs.iter().any(|h| c.is_up(&h.report.name));
            let hosts_v = if detail {
                let m: Map<String, Value> = hs
                    .iter()
                    .map(|h| {
                        let up = c.is_up(&h.report.name);
                        (
                            h.report.name.clone(),
                            json!({"nova-compute": {"available": up, "active": true, "updated_at": h.updated}}),
                        )
                    })
                    .collect();
                Value::Object(m)
            } else {
                Value::Null
            };
            json!({"zoneName": zone, "zoneState": {"available": available}, "hosts": hosts_v})
        })
        .collect();
    json_response(StatusCode::OK, &json!({"availabilityZoneInfo": info}))
}

fn limits(c: &Compute, who: &Identity) -> Response<Body> {
    let servers = match c.servers() {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let mine: Vec<&Server> = servers
        .iter()
        .filter(|s| s.account == who.account && s.vm_state != VmState::Deleted)
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"limits": {"rate": [], "absolute": {
            "maxTotalInstances": -1, "maxTotalCores": -1, "maxTotalRAMSize": -1,
            "totalInstancesUsed": mine.len(),
            "totalCoresUsed": mine.iter().map(|s| s.flavor.vcpus).sum::<u32>(),
            "totalRAMUsed": mine.iter().map(|s| s.flavor.ram).sum::<u64>(),
        }}}),
    )
}

async fn heartbeat(c: &Arc<Compute>, req: Request<RequestBody>) -> Response<Body> {
    let key = header_str(req.headers(), AGENT_KEY_HEADER)
        .unwrap_or_default()
        .into_owned();
    if !constant_time_eq(key.as_bytes(), c.config.agent_key.as_bytes()) {
        return fault(StatusCode::UNAUTHORIZED, "A valid agent key is required.");
    }
    let Some(body) = collect_limited(req.into_body(), 16 << 20).await else {
        return fault(StatusCode::BAD_REQUEST, "The heartbeat is too large.");
    };
    let report: HostReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return fault(StatusCode::BAD_REQUEST, format!("Malformed heartbeat: {e}")),
    };
    match service_kit::server::blocking(|| c.heartbeat(report)) {
        Ok(a) => json_response(StatusCode::OK, &serde_json::to_value(a).expect("json")),
        Err(e) => internal(e),
    }
}

fn metrics(c: &Compute) -> String {
    let mut out = String::new();
    let servers = c.servers().unwrap_or_default();
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for s in servers.iter().filter(|s| s.vm_state != VmState::Deleted) {
        *by_status.entry(s.status()).or_default() += 1;
    }
    for (status, n) in by_status {
        out.push_str(&format!("nubo_servers{{status=\"{status}\"}} {n}\n"));
    }
    let hosts = c.hosts().unwrap_or_default();
    let up = hosts.iter().filter(|h| c.is_up(&h.report.name)).count();
    out.push_str(&format!("nubo_compute_hosts{{state=\"up\"}} {up}\n"));
    out.push_str(&format!(
        "nubo_compute_hosts{{state=\"down\"}} {}\n",
        hosts.len() - up
    ));
    let m = &c.metrics;
    for (name, v) in [
        ("nubo_launches_total", &m.launches_ok),
        (
            "nubo_launch_attempts_failed_total",
            &m.launch_attempts_failed,
        ),
        ("nubo_no_valid_host_total", &m.no_valid_host),
        ("nubo_heartbeats_total", &m.heartbeats),
        ("nubo_reconciled_total", &m.reconciled),
    ] {
        out.push_str(&format!("{name} {}\n", v.load(Ordering::Relaxed)));
    }
    out
}

/// Serves the compute API until Ctrl-C or SIGTERM.
pub async fn run(config: crate::config::ApiConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let c = Arc::new(Compute::open(config).context("opening the compute database")?);
    c.auth.spawn_refresh();
    c.recover_interrupted()
        .context("recovering interrupted work")?;
    tracing::info!(%addr, "compute API listening");
    service_kit::server::serve(listener, c, handle, service_kit::server::shutdown_signal()).await;
    Ok(())
}
