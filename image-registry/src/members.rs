//! Image members (Glance's `/v2/images/{id}/members`): the owner of a
//! `shared` image shares it with other projects, each of which accepts or
//! rejects it; a member sees the image at once and finds it in its
//! listing once it has accepted.

use crate::api::{change_image, fault, json_body, load, load_owned, no_content, Registry};
use crate::image::{project_of, Member, MEMBER_STATUSES};
use http::{Request, Response, StatusCode};
use serde_json::json;
use service_kit::auth::Identity;
use service_kit::http_util::{json_response, Body};
use service_kit::server::RequestBody;

fn no_member(image: &str, member: &str) -> Response<Body> {
    fault(
        StatusCode::NOT_FOUND,
        format!("{member} is not a member of image {image}."),
    )
}

/// `GET /v2/images/{id}/members`: every member for the owner, only itself
/// for a member.
pub fn list(reg: &Registry, who: &Identity, id: &str) -> Response<Body> {
    let img = match load(reg, who, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let owner = img.owned_by(&who.account, who.admin);
    let me = project_of(&who.account);
    let members: Vec<_> = img
        .members
        .iter()
        .filter(|m| owner || m.member_id == me)
        .map(|m| m.to_json(id))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"members": members, "schema": "/v2/schemas/members"}),
    )
}

/// `POST /v2/images/{id}/members` with `{"member": "<project id>"}`: the
/// owner shares a `shared` image.
pub async fn add(
    reg: &Registry,
    who: &Identity,
    id: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    if let Err(r) = load_owned(reg, who, id) {
        return r;
    }
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(member) = body["member"].as_str().filter(|m| !m.is_empty()) else {
        return fault(StatusCode::BAD_REQUEST, "Member to be added not specified");
    };
    let member = member.to_string();
    let now = service_kit::ids::now_iso8601();
    let result = change_image(reg, id, |img| {
        if img.visibility != "shared" {
            return Err(fault(
                StatusCode::FORBIDDEN,
                format!(
                    "Image members can only be added to shared images; image {id} is {}.",
                    img.visibility
                ),
            ));
        }
        if img.members.iter().any(|m| m.member_id == member) {
            return Err(fault(
                StatusCode::CONFLICT,
                format!("Member {member} already exists for image {id}."),
            ));
        }
        img.members.push(Member {
            member_id: member.clone(),
            status: "pending".into(),
            created_at: now.clone(),
            updated_at: now,
        });
        Ok(())
    });
    match result {
        Ok(img) => {
            let m = img.members.iter().find(|m| m.member_id == member);
            match m {
                Some(m) => json_response(StatusCode::OK, &m.to_json(id)),
                None => no_member(id, &member),
            }
        }
        Err(r) => r,
    }
}

/// `GET /v2/images/{id}/members/{member}`: the owner, or that member.
pub fn show(reg: &Registry, who: &Identity, id: &str, member: &str) -> Response<Body> {
    let img = match load(reg, who, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let may = img.owned_by(&who.account, who.admin) || project_of(&who.account) == member;
    match img.members.iter().find(|m| m.member_id == member) {
        Some(m) if may => json_response(StatusCode::OK, &m.to_json(id)),
        _ => no_member(id, member),
    }
}

/// `PUT /v2/images/{id}/members/{member}` with `{"status": ...}`: only
/// the member answers (Glance refuses the owner too).
pub async fn answer(
    reg: &Registry,
    who: &Identity,
    id: &str,
    member: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    if let Err(r) = load(reg, who, id) {
        return r;
    }
    if project_of(&who.account) != member {
        return fault(
            StatusCode::FORBIDDEN,
            "You are not permitted to modify 'status' on this image member.",
        );
    }
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(status) = body["status"]
        .as_str()
        .filter(|s| MEMBER_STATUSES.contains(s))
    else {
        return fault(
            StatusCode::BAD_REQUEST,
            "Status must be one of pending, accepted, rejected.",
        );
    };
    let now = service_kit::ids::now_iso8601();
    let result = change_image(reg, id, |img| {
        let Some(m) = img.members.iter_mut().find(|m| m.member_id == member) else {
            return Err(no_member(id, member));
        };
        m.status = status.to_string();
        m.updated_at = now;
        Ok(())
    });
    match result {
        Ok(img) => match img.members.iter().find(|m| m.member_id == member) {
            Some(m) => json_response(StatusCode::OK, &m.to_json(id)),
            None => no_member(id, member),
        },
        Err(r) => r,
    }
}

/// `DELETE /v2/images/{id}/members/{member}`: the owner stops sharing.
pub fn remove(reg: &Registry, who: &Identity, id: &str, member: &str) -> Response<Body> {
    if let Err(r) = load_owned(reg, who, id) {
        return r;
    }
    let result = change_image(reg, id, |img| {
        let before = img.members.len();
        img.members.retain(|m| m.member_id != member);
        if img.members.len() == before {
            return Err(no_member(id, member));
        }
        Ok(())
    });
    match result {
        Ok(_) => no_content(),
        Err(r) => r,
    }
}
