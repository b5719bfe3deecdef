//! Security groups over HTTP, as nova-network served them:
//! `os-security-groups` (list, show, create, delete),
//! `os-security-group-rules` (create, delete), a server's groups
//! (`GET /servers/{id}/os-security-groups`, the `addSecurityGroup` and
//! `removeSecurityGroup` actions, `security_groups` on create). The rules
//! and what they let in are [`crate::security_groups`]; the hosts enforce
//! them ([`crate::host_firewall`]), told at once and again with every
//! heartbeat.
//!
//! Groups are stored by project and name (`<hex account>/<hex name>`), so
//! that a name is taken once however many create it at once; names are
//! never changed, and servers name their groups.

use super::{accepted, fault, internal, invalid_field, read_json, visible};
use crate::conductor::Compute;
use crate::db::Kind;
use crate::instance::Server;
use crate::security_groups::{
    self, is_member, parse_rule, same_traffic, Rule, RuleRequest, SecurityGroup, Source,
    DEFAULT_GROUP,
};
use http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use service_kit::auth::Identity;
use service_kit::http_util::{json_response, Body};
use service_kit::ids::new_id;
use service_kit::json_store::{StoreError, Updated};
use service_kit::server::RequestBody;
use std::sync::Arc;

fn key(account: &str, name: &str) -> String {
    format!("{}/{}", hex::encode(account), hex::encode(name))
}

/// The project's groups, by name; its `default` group made if missing.
pub fn groups_of(c: &Compute, account: &str) -> Result<Vec<SecurityGroup>, StoreError> {
    let default = security_groups::default_group(account);
    c.db.insert(Kind::SecurityGroup, &key(account, DEFAULT_GROUP), &default)?;
    c.db.all_under(Kind::SecurityGroup, &format!("{}/", hex::encode(account)))
}

/// A group of the project by id or name.
fn find(c: &Compute, account: &str, id_or_name: &str) -> Result<Option<SecurityGroup>, StoreError> {
    let groups = groups_of(c, account)?;
    let by_id = groups.iter().position(|g| g.id == id_or_name);
    let by_name = groups.iter().position(|g| g.name == id_or_name);
    Ok(by_id.or(by_name).map(|i| groups[i].clone()))
}

fn not_found(id: &str) -> Response<Body> {
    fault(
        StatusCode::NOT_FOUND,
        format!("Security group {id} not found."),
    )
}

fn rule_view(group: &SecurityGroup, rule: &Rule, all: &[SecurityGroup]) -> Value {
    let (ip_range, source) = match &rule.source {
        Source::Cidr(cidr) => (json!({"cidr": cidr}), json!({})),
        Source::Group(id) => {
            let name = all.iter().find(|g| &g.id == id).map(|g| g.name.as_str());
            (json!({}), json!({"name": name, "tenant_id": group.account}))
        }
    };
    json!({
        "id": rule.id,
        "parent_group_id": group.id,
        "ip_protocol": rule.protocol.map(|p| p.name()),
        "from_port": rule.ports.map(|p| p.0),
        "to_port": rule.ports.map(|p| p.1),
        "ip_range": ip_range,
        "group": source,
    })
}

fn group_view(g: &SecurityGroup, all: &[SecurityGroup]) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "tenant_id": g.account,
        "rules": g.rules.iter().map(|r| rule_view(g, r, all)).collect::<Vec<_>>(),
    })
}

pub fn list(c: &Compute, who: &Identity) -> Response<Body> {
    match groups_of(c, &who.account) {
        Ok(all) => {
            let views: Vec<Value> = all.iter().map(|g| group_view(g, &all)).collect();
            json_response(StatusCode::OK, &json!({ "security_groups": views }))
        }
        Err(e) => internal(e),
    }
}

pub fn show(c: &Compute, who: &Identity, id: &str) -> Response<Body> {
    let all = match groups_of(c, &who.account) {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    match all.iter().find(|g| g.id == id) {
        Some(g) => json_response(
            StatusCode::OK,
            &json!({ "security_group": group_view(g, &all) }),
        ),
        None => not_found(id),
    }
}

/// A `name` or `description`: a string of at most 255 characters (Nova's
/// schema); the name not empty.
fn text_field(v: &Value, field: &str, may_be_empty: bool) -> Result<String, Response<Body>> {
    match v.as_str() {
        Some(s) if s.chars().count() <= 255 && (may_be_empty || !s.trim().is_empty()) => {
            Ok(s.to_string())
        }
        _ => Err(invalid_field(field)),
    }
}

pub async fn create(c: &Arc<Compute>, who: &Identity, req: Request<RequestBody>) -> Response<Body> {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let g = &body["security_group"];
    let name = match text_field(&g["name"], "name", false) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let description = match &g["description"] {
        Value::Null => String::new(),
        v => match text_field(v, "description", true) {
            Ok(d) => d,
            Err(r) => return r,
        },
    };
    let group = SecurityGroup {
        id: new_id(),
        name: name.clone(),
        description,
        account: who.account.clone(),
        rules: Vec::new(),
    };
    // The default group first, so that a group named `default` is it.
    if let Err(e) = groups_of(c, &who.account) {
        return internal(e);
    }
    match c
        .db
        .insert(Kind::SecurityGroup, &key(&who.account, &name), &group)
    {
        Ok(true) => json_response(
            StatusCode::OK,
            &json!({ "security_group": group_view(&group, &[]) }),
        ),
        Ok(false) => fault(
            StatusCode::BAD_REQUEST,
            format!("Security group {name} already exists"),
        ),
        Err(e) => internal(e),
    }
}

pub fn delete(c: &Compute, who: &Identity, id: &str) -> Response<Body> {
    let group = match find(c, &who.account, id) {
        Ok(Some(g)) if g.id == id => g,
        Ok(_) => return not_found(id),
        Err(e) => return internal(e),
    };
    if group.name == DEFAULT_GROUP {
        return fault(
            StatusCode::BAD_REQUEST,
            "Removing default security group not allowed.",
        );
    }
    let servers = match c.servers() {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    if servers.iter().any(|s| is_member(s, &group)) {
        return fault(StatusCode::BAD_REQUEST, "Security group is still in use");
    }
    match c
        .db
        .delete(Kind::SecurityGroup, &key(&who.account, &group.name))
    {
        Ok(()) => accepted(),
        Err(e) => internal(e),
    }
}

/// A port, type or code as JSON gives it: a number or a string of one.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub async fn create_rule(
    c: &Arc<Compute>,
    who: &Identity,
    req: Request<RequestBody>,
) -> Response<Body> {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = &body["security_group_rule"];
    let Some(parent_id) = text_of(&r["parent_group_id"]) else {
        return invalid_field("parent_group_id");
    };
    let request = RuleRequest {
        ip_protocol: text_of(&r["ip_protocol"]),
        from_port: text_of(&r["from_port"]),
        to_port: text_of(&r["to_port"]),
        cidr: text_of(&r["cidr"]).filter(|c| !c.is_empty()),
        group_id: text_of(&r["group_id"]).filter(|g| !g.is_empty()),
    };
    let all = match groups_of(c, &who.account) {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let Some(parent) = all.iter().find(|g| g.id == parent_id) else {
        return not_found(&parent_id);
    };
    if let Some(source) = &request.group_id {
        if !all.iter().any(|g| &g.id == source) {
            return not_found(source);
        }
    }
    let rule = match parse_rule(new_id(), &request) {
        Ok(rule) => rule,
        Err(e) => return fault(StatusCode::BAD_REQUEST, e.0),
    };
    let updated = c.db.update(
        Kind::SecurityGroup,
        &key(&who.account, &parent.name),
        |g: &mut SecurityGroup| {
            if g.rules.iter().any(|r| same_traffic(r, &rule)) {
                return Err(format!("This rule already exists in group {}", g.id));
            }
            g.rules.push(rule.clone());
            Ok(())
        },
    );
    match updated {
        Ok(Updated::Done(g)) => {
            c.push_firewalls();
            json_response(
                StatusCode::OK,
                &json!({ "security_group_rule": rule_view(&g, &rule, &all) }),
            )
        }
        Ok(Updated::Refused(message)) => fault(StatusCode::BAD_REQUEST, message),
        Ok(Updated::Missing) => not_found(&parent_id),
        Err(e) => internal(e),
    }
}

pub fn delete_rule(c: &Arc<Compute>, who: &Identity, id: &str) -> Response<Body> {
    let all = match groups_of(c, &who.account) {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let gone = || fault(StatusCode::NOT_FOUND, format!("Rule ({id}) not found"));
    let Some(group) = all.iter().find(|g| g.rules.iter().any(|r| r.id == id)) else {
        return gone();
    };
    let updated = c.db.update(
        Kind::SecurityGroup,
        &key(&who.account, &group.name),
        |g: &mut SecurityGroup| {
            let before = g.rules.len();
            g.rules.retain(|r| r.id != id);
            if g.rules.len() == before {
                return Err(());
            }
            Ok(())
        },
    );
    match updated {
        Ok(Updated::Done(_)) => {
            c.push_firewalls();
            accepted()
        }
        Ok(_) => gone(),
        Err(e) => internal(e),
    }
}

/// `GET /servers/{id}/os-security-groups`.
pub fn of_server(c: &Compute, who: &Identity, id: &str) -> Response<Body> {
    let server = match visible(c, who, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let all = match groups_of(c, &server.account) {
        Ok(a) => a,
        Err(e) => return internal(e),
    };
    let views: Vec<Value> = all
        .iter()
        .filter(|g| server.security_groups.contains(&g.name))
        .map(|g| group_view(g, &all))
        .collect();
    json_response(StatusCode::OK, &json!({ "security_groups": views }))
}

/// The groups a new server asks for (`security_groups: [{"name": ...}]`,
/// names or ids), by name; `default` when it names none. Nova's 400 for a
/// group the project does not have.
pub fn requested(c: &Compute, who: &Identity, v: &Value) -> Result<Vec<String>, Response<Body>> {
    let asked: Vec<String> = match v {
        Value::Null => vec![DEFAULT_GROUP.to_string()],
        Value::Array(items) => {
            let mut names = Vec::new();
            for item in items {
                match item["name"].as_str() {
                    Some(n) if !n.is_empty() => names.push(n.to_string()),
                    _ => return Err(invalid_field("security_groups")),
                }
            }
            if names.is_empty() {
                vec![DEFAULT_GROUP.to_string()]
            } else {
                names
            }
        }
        _ => return Err(invalid_field("security_groups")),
    };
    let mut out: Vec<String> = Vec::new();
    for name in asked {
        match find(c, &who.account, &name).map_err(internal)? {
            Some(g) if !out.contains(&g.name) => out.push(g.name),
            Some(_) => {}
            None => {
                return Err(fault(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Security group {name} not found for project {}.",
                        who.account
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// `addSecurityGroup` (`add`) and `removeSecurityGroup`: `{"name": ...}`.
pub fn change_server(c: &Arc<Compute>, server: &Server, args: &Value, add: bool) -> Response<Body> {
    let Some(name) = args["name"].as_str().filter(|n| !n.is_empty()) else {
        return invalid_field("name");
    };
    let group = match find(c, &server.account, name) {
        Ok(Some(g)) => g,
        Ok(None) => {
            return fault(
                StatusCode::NOT_FOUND,
                format!(
                    "Security group {name} not found for project {}.",
                    server.account
                ),
            )
        }
        Err(e) => return internal(e),
    };
    let mut refusal = None;
    let changed = c.update(&server.id, |s| {
        let member = s.security_groups.contains(&group.name);
        if add && member {
            refusal = Some(format!(
                "Security group {name} is already associated with the instance {}",
                s.id
            ));
        } else if !add && !member {
            refusal = Some(format!(
                "Security group {name} not associated with the instance {}",
                s.id
            ));
        } else if add {
            s.security_groups.push(group.name.clone());
        } else {
            s.security_groups.retain(|g| g != &group.name);
        }
    });
    match (changed, refusal) {
        (Ok(Some(_)), None) => {
            c.push_firewalls();
            accepted()
        }
        (Ok(Some(_)), Some(message)) => fault(StatusCode::BAD_REQUEST, message),
        (Ok(None), _) => super::not_found(&server.id),
        (Err(e), _) => internal(e),
    }
}
