//! `os-keypairs` over HTTP (microversion 2.1): a user's key pairs, listed,
//! shown, imported, generated and deleted; the rules are
//! [`crate::keypairs`]'.

use super::{accepted, fault, internal, invalid_field, read_json};
use crate::conductor::Compute;
use crate::db::Kind;
use crate::keypairs::{self, KeyPair};
use http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use service_kit::auth::Identity;
use service_kit::http_util::{json_response, Body};
use service_kit::ids::now_iso8601;
use service_kit::server::RequestBody;

/// The store id of a user's key pair: the user's own prefix (hex, so that
/// no user id can reach into another's), then the name.
fn key_id(user_id: &str, name: &str) -> String {
    format!("{}{name}", user_prefix(user_id))
}

fn user_prefix(user_id: &str) -> String {
    format!("{}/", hex::encode(user_id))
}

fn not_found(who: &Identity, name: &str) -> Response<Body> {
    fault(
        StatusCode::NOT_FOUND,
        format!("Keypair {name} not found for user {}", who.user_id),
    )
}

/// A user's key pair by name.
pub fn find(c: &Compute, user_id: &str, name: &str) -> Result<Option<KeyPair>, Response<Body>> {
    c.db.get(Kind::KeyPair, &key_id(user_id, name))
        .map_err(internal)
}

pub fn list(c: &Compute, who: &Identity) -> Response<Body> {
    let pairs: Vec<KeyPair> = match c.db.all_under(Kind::KeyPair, &user_prefix(&who.user_id)) {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let listed: Vec<Value> = pairs
        .iter()
        .map(|p| {
            json!({"keypair": {
                "name": p.name,
                "public_key": p.public_key,
                "fingerprint": p.fingerprint,
            }})
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "keypairs": listed }))
}

pub fn show(c: &Compute, who: &Identity, name: &str) -> Response<Body> {
    match find(c, &who.user_id, name) {
        Ok(Some(p)) => json_response(
            StatusCode::OK,
            &json!({"keypair": {
                "name": p.name,
                "public_key": p.public_key,
                "fingerprint": p.fingerprint,
                "user_id": p.user_id,
                "created_at": p.created_at,
                "updated_at": null,
                "deleted_at": null,
                "deleted": false,
            }}),
        ),
        Ok(None) => not_found(who, name),
        Err(r) => r,
    }
}

/// Imports `public_key`, or generates a key pair when there is none (the
/// private key is in this answer only). 200, as Nova answers at 2.1.
pub async fn create(c: &Compute, who: &Identity, req: Request<RequestBody>) -> Response<Body> {
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let k = &body["keypair"];
    let Some(name) = k["name"].as_str() else {
        return fault(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute keypair. 'name' is a required property",
        );
    };
    let key_type = match &k["type"] {
        Value::Null => None,
        Value::String(t) => Some(t.as_str()),
        _ => return invalid_field("type"),
    };
    let now = now_iso8601();
    let made = match &k["public_key"] {
        Value::Null => keypairs::generate(name, &who.user_id, key_type, &now)
            .map(|(pair, private)| (pair, Some(private))),
        Value::String(public) => {
            keypairs::import(name, &who.user_id, public, key_type, &now).map(|p| (p, None))
        }
        _ => return invalid_field("public_key"),
    };
    let (pair, private) = match made {
        Ok(m) => m,
        Err(e @ keypairs::KeyPairError::Generation(_)) => return internal(e),
        Err(e) => return fault(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // One of two racing creators of a name wins; the other gets 409.
    match c
        .db
        .insert(Kind::KeyPair, &key_id(&who.user_id, name), &pair)
    {
        Ok(true) => {}
        Ok(false) => {
            return fault(
                StatusCode::CONFLICT,
                format!("Key pair '{name}' already exists."),
            )
        }
        Err(e) => return internal(e),
    }
    let mut view = json!({
        "name": pair.name,
        "public_key": pair.public_key,
        "fingerprint": pair.fingerprint,
        "user_id": pair.user_id,
    });
    if let Some(private) = private {
        view["private_key"] = Value::String(private);
    }
    json_response(StatusCode::OK, &json!({ "keypair": view }))
}

/// 202, as Nova answers at 2.1. Instances launched with the key keep
/// their copy of it.
pub fn delete(c: &Compute, who: &Identity, name: &str) -> Response<Body> {
    match find(c, &who.user_id, name) {
        Ok(Some(_)) => match c.db.delete(Kind::KeyPair, &key_id(&who.user_id, name)) {
            Ok(()) => accepted(),
            Err(e) => internal(e),
        },
        Ok(None) => not_found(who, name),
        Err(r) => r,
    }
}
