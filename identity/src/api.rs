//! The Keystone v3 API: version discovery, tokens (issue, validate,
//! revoke), the catalog, and the admin calls on projects, users, roles,
//! role assignments and EC2 credentials, in the JSON keystoneauth1,
//! openstacksdk and python-openstackclient parse.
//!
//! Policy (Keystone's defaults, simplified): the `admin` role (on any
//! project, or the system scope) may do everything; any user may read
//! themselves, their projects and their own credentials.

use crate::auth::{authenticate, AuthRequest};
use crate::error::IdentityError;
use crate::store::{Assignment, Domain, Project, Role, User, DEFAULT_DOMAIN_ID};
use crate::IdentityService;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use service_kit::api_error::ApiError;
use service_kit::http_util::{
    decode, header_str, json_response, query_pairs, set_header, status, Body,
};
use service_kit::server::RequestBody;
use service_kit::token::{Claims, Scope};
use std::sync::Arc;

/// Request bodies larger than this are refused (Keystone's
/// `max_request_body_size` is 112 KiB).
const MAX_BODY: usize = 112 * 1024;

type Answer = Result<Response<Body>, IdentityError>;

/// Every request of the identity service.
pub async fn handle(svc: Arc<IdentityService>, req: Request<RequestBody>) -> Response<Body> {
    // Logins change nothing a token depends on: no revocation scan on
    // the busiest call.
    let login = *req.method() == Method::POST
        && req.uri().path().trim_end_matches('/') == "/v3/auth/tokens";
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD) && !login;
    let answer = route(&svc, req).await;
    // A change may have revoked tokens (a deleted user, a removed role):
    // this service applies it at once, the others at their next poll.
    if changes && answer.is_ok() {
        if let Err(e) = svc.refresh_revocations() {
            return e.response();
        }
    }
    answer.unwrap_or_else(|e| e.response())
}

async fn route(svc: &IdentityService, req: Request<RequestBody>) -> Answer {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let method = req.method().clone();
    match (&method, parts.as_slice()) {
        (&Method::GET, []) => return Ok(versions(svc)),
        (&Method::GET, ["v3"]) => return Ok(version(svc)),
        (&Method::GET, ["healthcheck"]) => {
            return Ok(service_kit::http_util::text(StatusCode::OK, "OK"))
        }
        (&Method::POST, ["v3", "auth", "tokens"]) => {
            let body: AuthRequest = read_json(req).await?;
            return issue(svc, &body).await;
        }
        // Services poll this; audit ids and user ids only (no secrets).
        (&Method::GET, ["v3", "OS-REVOKE", "events"]) => {
            let now = crate::store::now_us() / 1_000_000;
            let events = svc.db.revocations(now)?;
            return Ok(json_response(StatusCode::OK, &json!({"events": events})));
        }
        (_, ["v3", ..]) => {}
        _ => return Err(IdentityError::NotFound("resource", path)),
    }
    let caller = caller(svc, req.headers())?;
    let query = query_pairs(req.uri().query());
    let parts: Vec<String> = parts.iter().map(|p| decode(p)).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, &parts[1..]) {
        (Method::GET | Method::HEAD, ["auth", "tokens"]) => validate(svc, &req, &caller),
        (Method::DELETE, ["auth", "tokens"]) => revoke(svc, &req, &caller),
        (Method::GET, ["auth", "catalog"]) => Ok(json_response(
            StatusCode::OK,
            &json!({"catalog": catalog(svc, &caller), "links": links(svc, "auth/catalog")}),
        )),
        (Method::GET, ["auth", "projects"]) => user_projects(svc, &caller.user_id, "auth/projects"),
        (Method::GET, ["auth", "domains"]) => {
            let domains: Vec<Value> = svc
                .db
                .domains()?
                .iter()
                .map(|d| domain_json(svc, d))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"domains": domains, "links": links(svc, "auth/domains")}),
            ))
        }
        (Method::GET, ["auth", "system"]) => {
            let system: Vec<Value> = if is_admin(&caller) {
                vec![json!({"all": true})]
            } else {
                vec![]
            };
            Ok(json_response(
                StatusCode::OK,
                &json!({"system": system, "links": links(svc, "auth/system")}),
            ))
        }
        (Method::GET, ["domains"]) => {
            let name = query_value(&query, "name");
            let domains: Vec<Value> = svc
                .db
                .domains()?
                .iter()
                .filter(|d| name.is_none_or(|n| d.name == n))
                .map(|d| domain_json(svc, d))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"domains": domains, "links": links(svc, "domains")}),
            ))
        }
        (Method::GET, ["domains", id]) => {
            let d = svc
                .db
                .domain(id)?
                .ok_or_else(|| IdentityError::NotFound("domain", id.to_string()))?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"domain": domain_json(svc, &d)}),
            ))
        }
        (Method::GET, ["projects"]) => {
            require_admin(&caller, "list_projects")?;
            let name = query_value(&query, "name");
            let domain = query_value(&query, "domain_id");
            let projects: Vec<Value> = svc
                .db
                .projects()?
                .iter()
                .filter(|p| {
                    name.is_none_or(|n| p.name == n) && domain.is_none_or(|d| p.domain_id == d)
                })
                .map(|p| project_json(svc, p))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"projects": projects, "links": links(svc, "projects")}),
            ))
        }
        (Method::POST, ["projects"]) => {
            require_admin(&caller, "create_project")?;
            let body: Value = read_json(req).await?;
            let p = &body["project"];
            let name = required_str(p, "name", "project")?;
            let project = svc.db.create_project(
                Project {
                    id: String::new(),
                    name: name.into(),
                    domain_id: p["domain_id"].as_str().unwrap_or(DEFAULT_DOMAIN_ID).into(),
                    description: p["description"].as_str().unwrap_or_default().into(),
                    enabled: p["enabled"].as_bool().unwrap_or(true),
                },
                None,
            )?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"project": project_json(svc, &project)}),
            ))
        }
        (Method::GET, ["projects", id]) => {
            let p = svc
                .db
                .project(id)?
                .ok_or_else(|| IdentityError::NotFound("project", id.to_string()))?;
            if !is_admin(&caller)
                && !svc
                    .db
                    .projects_of(&caller.user_id)?
                    .iter()
                    .any(|x| x.id == p.id)
            {
                return Err(IdentityError::Forbidden("get_project"));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"project": project_json(svc, &p)}),
            ))
        }
        (Method::PATCH, ["projects", id]) => {
            require_admin(&caller, "update_project")?;
            let body: Value = read_json(req).await?;
            let p = &body["project"];
            let project = svc.db.update_project(id, |x| {
                if let Some(d) = p["description"].as_str() {
                    x.description = d.into();
                }
                if let Some(e) = p["enabled"].as_bool() {
                    x.enabled = e;
                }
            })?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"project": project_json(svc, &project)}),
            ))
        }
        (Method::DELETE, ["projects", id]) => {
            require_admin(&caller, "delete_project")?;
            svc.db.delete_project(id)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (Method::GET, ["projects", p, "users", u, "roles"]) => {
            require_admin(&caller, "list_grants")?;
            let roles: Vec<Value> = svc
                .db
                .roles_on(u, p)?
                .iter()
                .map(|r| role_json(svc, r))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"roles": roles, "links": links(svc, "roles")}),
            ))
        }
        (method, ["projects", p, "users", u, "roles", r]) => {
            require_admin(&caller, "create_grant")?;
            let a = Assignment {
                project_id: p.to_string(),
                user_id: u.to_string(),
                role_id: r.to_string(),
            };
            match method {
                Method::PUT => svc.db.assign(&a)?,
                Method::DELETE => svc.db.unassign(&a)?,
                Method::GET | Method::HEAD => {
                    if !svc.db.has_assignment(&a)? {
                        return Err(IdentityError::NotFound("role assignment", r.to_string()));
                    }
                }
                _ => return Err(IdentityError::NotFound("resource", path)),
            }
            Ok(status(StatusCode::NO_CONTENT))
        }
        (Method::GET, ["role_assignments"]) => {
            require_admin(&caller, "list_role_assignments")?;
            role_assignments(svc, &query)
        }
        (Method::GET, ["users"]) => {
            require_admin(&caller, "list_users")?;
            let name = query_value(&query, "name");
            let domain = query_value(&query, "domain_id");
            let users: Vec<Value> = svc
                .db
                .users()?
                .iter()
                .filter(|u| {
                    name.is_none_or(|n| u.name == n) && domain.is_none_or(|d| u.domain_id == d)
                })
                .map(|u| user_json(svc, u))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"users": users, "links": links(svc, "users")}),
            ))
        }
        (Method::POST, ["users"]) => {
            require_admin(&caller, "create_user")?;
            let body: Value = read_json(req).await?;
            let u = &body["user"];
            let name = required_str(u, "name", "user")?;
            let password = u["password"].as_str().unwrap_or_default();
            if password.is_empty() {
                return Err(IdentityError::BadRequest(
                    "Expecting to find password in user.".into(),
                ));
            }
            let default_project = u["default_project_id"].as_str().map(String::from);
            if let Some(p) = &default_project {
                if svc.db.project(p)?.is_none() {
                    return Err(IdentityError::NotFound("project", p.clone()));
                }
            }
            let user = svc.db.create_user(
                name,
                u["domain_id"].as_str().unwrap_or(DEFAULT_DOMAIN_ID),
                password,
                default_project,
                u["enabled"].as_bool().unwrap_or(true),
            )?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"user": user_json(svc, &user)}),
            ))
        }
        (Method::GET, ["users", id]) => {
            if !is_admin(&caller) && caller.user_id != *id {
                return Err(IdentityError::Forbidden("get_user"));
            }
            let u = svc
                .db
                .user(id)?
                .ok_or_else(|| IdentityError::NotFound("user", id.to_string()))?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"user": user_json(svc, &u)}),
            ))
        }
        (Method::PATCH, ["users", id]) => {
            require_admin(&caller, "update_user")?;
            let body: Value = read_json(req).await?;
            let u = &body["user"];
            let default_project = match u.get("default_project_id") {
                Some(Value::String(p)) => Some(Some(p.clone())),
                Some(Value::Null) => Some(None),
                _ => None,
            };
            let user = svc.db.update_user(
                id,
                u["password"].as_str(),
                u["enabled"].as_bool(),
                default_project,
            )?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"user": user_json(svc, &user)}),
            ))
        }
        (Method::DELETE, ["users", id]) => {
            require_admin(&caller, "delete_user")?;
            svc.db.delete_user(id)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (Method::GET, ["users", id, "projects"]) => {
            if !is_admin(&caller) && caller.user_id != *id {
                return Err(IdentityError::Forbidden("list_user_projects"));
            }
            user_projects(svc, id, "users/projects")
        }
        (Method::GET, ["users", id, "credentials", "OS-EC2"]) => {
            own_or_admin(&caller, id, "ec2_list_credentials")?;
            let creds: Vec<Value> = svc
                .db
                .ec2_credentials(Some(id))?
                .iter()
                .map(ec2_json)
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"credentials": creds, "links": links(svc, "credentials")}),
            ))
        }
        (Method::POST, ["users", id, "credentials", "OS-EC2"]) => {
            own_or_admin(&caller, id, "ec2_create_credential")?;
            let body: Value = read_json(req).await?;
            let project = required_str(&body, "tenant_id", "credential")?;
            if svc.db.user(id)?.is_none() {
                return Err(IdentityError::NotFound("user", id.to_string()));
            }
            // Keystone refuses a credential on a project the user has no role on.
            if svc.db.roles_on(id, project)?.is_empty() {
                return Err(IdentityError::Forbidden("ec2_create_credential"));
            }
            let c = svc.db.create_ec2(id, project)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"credential": ec2_json(&c)}),
            ))
        }
        (Method::GET, ["users", id, "credentials", "OS-EC2", access]) => {
            own_or_admin(&caller, id, "ec2_get_credential")?;
            let c = svc
                .db
                .ec2(access)?
                .filter(|c| c.user_id == *id)
                .ok_or_else(|| IdentityError::NotFound("credential", access.to_string()))?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"credential": ec2_json(&c)}),
            ))
        }
        (Method::DELETE, ["users", id, "credentials", "OS-EC2", access]) => {
            own_or_admin(&caller, id, "ec2_delete_credential")?;
            if svc.db.ec2(access)?.is_none_or(|c| c.user_id != *id) {
                return Err(IdentityError::NotFound("credential", access.to_string()));
            }
            svc.db.delete_ec2(access)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        // The proxy verifies S3 signatures itself, so it needs the secret:
        // only to the `service` role (tokens services seal for themselves
        // with the shared keys), and only while the user may still use
        // the project.
        (Method::GET, ["OS-EC2", "secrets", access]) => {
            if !caller.roles.iter().any(|r| r.name == "service") {
                return Err(IdentityError::Forbidden("ec2_get_secret"));
            }
            let missing = || IdentityError::NotFound("credential", access.to_string());
            let c = svc.db.ec2(access)?.ok_or_else(missing)?;
            let roles: Vec<String> = svc
                .db
                .roles_on(&c.user_id, &c.project_id)?
                .into_iter()
                .map(|r| r.name)
                .collect();
            let usable = svc.db.user(&c.user_id)?.is_some_and(|u| u.enabled)
                && svc.db.project(&c.project_id)?.is_some_and(|p| p.enabled)
                && !roles.is_empty();
            if !usable {
                return Err(missing());
            }
            // The proxy enforces the user's roles on S3 requests too.
            Ok(json_response(
                StatusCode::OK,
                &json!({"credential": ec2_json(&c), "roles": roles}),
            ))
        }
        (Method::GET, ["roles"]) => {
            let name = query_value(&query, "name");
            let roles: Vec<Value> = svc
                .db
                .roles()?
                .iter()
                .filter(|r| name.is_none_or(|n| r.name == n))
                .map(|r| role_json(svc, r))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"roles": roles, "links": links(svc, "roles")}),
            ))
        }
        (Method::POST, ["roles"]) => {
            require_admin(&caller, "create_role")?;
            let body: Value = read_json(req).await?;
            let name = required_str(&body["role"], "name", "role")?;
            let role = svc.db.create_role(name)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"role": role_json(svc, &role)}),
            ))
        }
        (Method::GET, ["roles", id]) => {
            let r = svc
                .db
                .role(id)?
                .ok_or_else(|| IdentityError::NotFound("role", id.to_string()))?;
            Ok(json_response(
                StatusCode::OK,
                &json!({"role": role_json(svc, &r)}),
            ))
        }
        (Method::DELETE, ["roles", id]) => {
            require_admin(&caller, "delete_role")?;
            svc.db.delete_role(id)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        _ => Err(IdentityError::NotFound("resource", path)),
    }
}

fn query_value<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn required_str<'a>(v: &'a Value, field: &str, what: &str) -> Result<&'a str, IdentityError> {
    match v[field].as_str() {
        Some(s) if !s.is_empty() && s.len() <= 255 => Ok(s),
        Some(s) if s.len() > 255 => Err(IdentityError::BadRequest(format!(
            "Invalid input for field '{field}': longer than 255 characters."
        ))),
        _ => Err(IdentityError::BadRequest(format!(
            "Expecting to find {field} in {what}. The server could not comply with the request since it is either malformed or otherwise incorrect."
        ))),
    }
}

/// The JSON body of a request, or the 400 Keystone gives.
async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<RequestBody>,
) -> Result<T, IdentityError> {
    let body = service_kit::http_util::collect_limited(req.into_body(), MAX_BODY)
        .await
        .ok_or_else(|| IdentityError::BadRequest("Request body too large or unreadable.".into()))?;
    serde_json::from_slice(&body).map_err(|e| {
        IdentityError::BadRequest(format!(
            "The request you have made is malformed or incomplete: {e}."
        ))
    })
}

/// The caller's checked token (`X-Auth-Token`).
fn caller(svc: &IdentityService, h: &HeaderMap) -> Result<Claims, IdentityError> {
    let token = header_str(h, "x-auth-token").ok_or(IdentityError::Unauthorized)?;
    svc.check(&token).ok_or(IdentityError::Unauthorized)
}

fn is_admin(c: &Claims) -> bool {
    c.roles.iter().any(|r| r.name == "admin")
}

fn require_admin(c: &Claims, action: &'static str) -> Result<(), IdentityError> {
    if is_admin(c) {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(action))
    }
}

fn own_or_admin(c: &Claims, user_id: &str, action: &'static str) -> Result<(), IdentityError> {
    if is_admin(c) || c.user_id == user_id {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(action))
    }
}

async fn issue(svc: &IdentityService, body: &AuthRequest) -> Answer {
    // argon2 takes tens of milliseconds: off the async threads.
    let claims = {
        let db = &svc.db;
        let tokens = &svc.tokens;
        let ttl = svc.config.token_ttl_secs;
        service_kit::server::blocking(|| authenticate(db, tokens, body, ttl))?
    };
    let token = svc
        .tokens
        .issue(&claims)
        .ok_or_else(|| IdentityError::BadRequest("token keys unavailable".into()))?;
    let mut r = json_response(StatusCode::CREATED, &token_json(svc, &claims));
    set_header(r.headers_mut(), "x-subject-token", &token);
    Ok(r)
}

fn subject(
    svc: &IdentityService,
    req: &Request<RequestBody>,
) -> Result<(String, Claims), IdentityError> {
    let token = header_str(req.headers(), "x-subject-token")
        .ok_or_else(|| IdentityError::BadRequest("X-Subject-Token is required.".into()))?
        .into_owned();
    let claims = svc
        .check(&token)
        .ok_or_else(|| IdentityError::NotFound("token", "the subject token".into()))?;
    Ok((token, claims))
}

fn validate(svc: &IdentityService, req: &Request<RequestBody>, caller: &Claims) -> Answer {
    let (token, claims) = subject(svc, req)?;
    if !is_admin(caller) && caller.user_id != claims.user_id {
        return Err(IdentityError::Forbidden("validate_token"));
    }
    let mut r = json_response(StatusCode::OK, &token_json(svc, &claims));
    set_header(r.headers_mut(), "x-subject-token", &token);
    Ok(r)
}

fn revoke(svc: &IdentityService, req: &Request<RequestBody>, caller: &Claims) -> Answer {
    let (_, claims) = subject(svc, req)?;
    if !is_admin(caller) && caller.user_id != claims.user_id {
        return Err(IdentityError::Forbidden("revoke_token"));
    }
    let event = service_kit::token::RevocationEvent {
        audit_id: Some(claims.audit_ids[0].clone()),
        user_id: None,
        issued_before_us: crate::store::now_us(),
        expires_at: claims.expires_at,
    };
    svc.db.revoke(&event)?;
    Ok(status(StatusCode::NO_CONTENT))
}

fn user_projects(svc: &IdentityService, user_id: &str, what: &str) -> Answer {
    let projects: Vec<Value> = svc
        .db
        .projects_of(user_id)?
        .iter()
        .filter(|p| p.enabled)
        .map(|p| project_json(svc, p))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"projects": projects, "links": links(svc, what)}),
    ))
}

fn role_assignments(svc: &IdentityService, query: &[(String, String)]) -> Answer {
    let user = query_value(query, "user.id");
    let project = query_value(query, "scope.project.id");
    let role = query_value(query, "role.id");
    let names = query.iter().any(|(k, _)| k == "include_names");
    let mut out = Vec::new();
    for a in svc.db.assignments()? {
        if user.is_some_and(|u| u != a.user_id)
            || project.is_some_and(|p| p != a.project_id)
            || role.is_some_and(|r| r != a.role_id)
        {
            continue;
        }
        let mut role = json!({"id": a.role_id});
        let mut user = json!({"id": a.user_id});
        let mut project = json!({"id": a.project_id});
        if names {
            if let Some(r) = svc.db.role(&a.role_id)? {
                role["name"] = json!(r.name);
            }
            if let Some(u) = svc.db.user(&a.user_id)? {
                user["name"] = json!(u.name);
                user["domain"] = domain_ref(svc, &u.domain_id);
            }
            if let Some(p) = svc.db.project(&a.project_id)? {
                project["name"] = json!(p.name);
                project["domain"] = domain_ref(svc, &p.domain_id);
            }
        }
        out.push(json!({
            "role": role, "user": user, "scope": {"project": project},
            "links": {"assignment": format!("{}/v3/projects/{}/users/{}/roles/{}", base(svc), a.project_id, a.user_id, a.role_id)},
        }));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"role_assignments": out, "links": links(svc, "role_assignments")}),
    ))
}

/// `{"id", "name"}` of a domain, as token bodies and assignments name it.
fn domain_ref(svc: &IdentityService, id: &str) -> Value {
    let name = svc
        .db
        .domain(id)
        .ok()
        .flatten()
        .map(|d| d.name)
        .unwrap_or_default();
    json!({"id": id, "name": name})
}

fn base(svc: &IdentityService) -> &str {
    svc.config.catalog.identity.trim_end_matches('/')
}

fn links(svc: &IdentityService, what: &str) -> Value {
    json!({"self": format!("{}/v3/{what}", base(svc)), "previous": null, "next": null})
}

fn domain_json(svc: &IdentityService, d: &Domain) -> Value {
    json!({"id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
           "tags": [], "options": {}, "links": {"self": format!("{}/v3/domains/{}", base(svc), d.id)}})
}

fn project_json(svc: &IdentityService, p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "domain_id": p.domain_id, "description": p.description,
           "enabled": p.enabled, "is_domain": false, "parent_id": p.domain_id, "tags": [], "options": {},
           "links": {"self": format!("{}/v3/projects/{}", base(svc), p.id)}})
}

fn user_json(svc: &IdentityService, u: &User) -> Value {
    let mut v = json!({"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
           "password_expires_at": null, "options": {},
           "links": {"self": format!("{}/v3/users/{}", base(svc), u.id)}});
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    v
}

fn role_json(svc: &IdentityService, r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": null, "description": null, "options": {},
           "links": {"self": format!("{}/v3/roles/{}", base(svc), r.id)}})
}

fn ec2_json(c: &crate::store::Ec2Credential) -> Value {
    json!({"access": c.access, "secret": c.secret, "user_id": c.user_id,
           "tenant_id": c.project_id, "trust_id": null})
}

/// Keystone's time form: `2026-12-02T01:00:00.000000Z`.
fn iso(us: u64) -> String {
    format!("{}Z", service_kit::timestamp::Timestamp(us / 10).iso8601())
}

/// The token body of `POST`/`GET /v3/auth/tokens`.
fn token_json(svc: &IdentityService, c: &Claims) -> Value {
    let mut t = json!({
        "methods": c.methods,
        "user": {"id": c.user_id, "name": c.user_name, "password_expires_at": null,
                 "domain": domain_ref(svc, &c.user_domain_id)},
        "audit_ids": c.audit_ids,
        "issued_at": iso(c.issued_at_us),
        "expires_at": iso(c.expires_at * 1_000_000),
    });
    match &c.scope {
        Scope::Unscoped => return json!({"token": t}),
        Scope::Project {
            id,
            name,
            domain_id,
        } => {
            t["project"] = json!({"id": id, "name": name, "domain": domain_ref(svc, domain_id)});
            t["is_domain"] = json!(false);
        }
        Scope::Domain { id, name } => t["domain"] = json!({"id": id, "name": name}),
        Scope::System => t["system"] = json!({"all": true}),
    }
    t["roles"] = json!(c.roles);
    t["catalog"] = catalog(svc, c);
    json!({"token": t})
}

/// The service catalog: each service with a public and an internal
/// endpoint in the configured region. Swift's URL names the token's
/// project's account.
fn catalog(svc: &IdentityService, c: &Claims) -> Value {
    let urls = &svc.config.catalog;
    let region = &svc.config.region;
    let swift = match &c.scope {
        Scope::Project { id, .. } => {
            format!(
                "{}/v1/{}{id}",
                urls.object_store.trim_end_matches('/'),
                service_kit::auth::RESELLER_PREFIX
            )
        }
        _ => format!("{}/v1", urls.object_store.trim_end_matches('/')),
    };
    let services = [
        (
            "identity",
            "keystone",
            format!("{}/v3", urls.identity.trim_end_matches('/')),
        ),
        ("object-store", "swift", swift),
        (
            "image",
            "glance",
            urls.image.trim_end_matches('/').to_string(),
        ),
        (
            "compute",
            "nova",
            format!("{}/v2.1", urls.compute.trim_end_matches('/')),
        ),
    ];
    let entries: Vec<Value> = services
        .iter()
        .map(|(kind, name, url)| {
            let endpoints: Vec<Value> = ["public", "internal"]
                .iter()
                .map(|interface| {
                    json!({"id": stable_id(&format!("{kind}/{interface}")), "interface": interface,
                           "region": region, "region_id": region, "url": url})
                })
                .collect();
            json!({"id": stable_id(kind), "type": kind, "name": name, "endpoints": endpoints})
        })
        .collect();
    json!(entries)
}

/// An id that stays the same across restarts (endpoints are not records).
fn stable_id(what: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(what.as_bytes())[..16])
}

fn versions(svc: &IdentityService) -> Response<Body> {
    let mut r = json_response(
        StatusCode::MULTIPLE_CHOICES,
        &json!({"versions": {"values": [version_value(svc)]}}),
    );
    set_header(r.headers_mut(), "location", &format!("{}/v3/", base(svc)));
    r
}

fn version(svc: &IdentityService) -> Response<Body> {
    json_response(StatusCode::OK, &json!({"version": version_value(svc)}))
}

fn version_value(svc: &IdentityService) -> Value {
    json!({
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/v3/", base(svc))}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}
