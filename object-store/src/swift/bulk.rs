//! Bulk delete (`POST /v1/{account}?bulk-delete`): a newline-separated list
//! of URL-encoded `/container/object` or `/container` paths in the body.

use super::error::SwiftError;
use super::listing;
use crate::proxy::objects::ObjectPath;
use crate::proxy::ProxyState;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use service_kit::api_error::ApiError;
use service_kit::http_util::{full, set_header, text, Body};

const MAX_BODY: usize = 10_000 * 1100;

pub async fn handle(state: &ProxyState, req: Request<Incoming>, account: &str) -> Response<Body> {
    let headers = req.headers().clone();
    let Some(body) = service_kit::http_util::collect_limited(req.into_body(), MAX_BODY).await
    else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "Too many deletes requested");
    };
    let text_body = String::from_utf8_lossy(&body);
    let paths: Vec<String> = text_body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            percent_encoding::percent_decode_str(l)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if paths.len() > super::info::MAX_BULK_DELETES {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Max delete failures exceeded",
        );
    }
    let (mut deleted, mut not_found, mut errors) = (0, 0, Vec::new());
    // Objects first, so that the containers listed with them are empty.
    let (containers, objects): (Vec<_>, Vec<_>) = paths
        .iter()
        .partition(|p| !p.trim_start_matches('/').contains('/'));
    for p in objects.iter().chain(containers.iter()) {
        let trimmed = p.trim_start_matches('/');
        let result = match trimmed.split_once('/') {
            Some((c, o)) if !c.is_empty() && !o.is_empty() => state
                .objects
                .delete(&ObjectPath::new(account, c, o))
                .await
                .map_err(SwiftError::from),
            None if !trimmed.is_empty() => state
                .objects
                .delete_container(account, trimmed)
                .await
                .map_err(SwiftError::from),
            _ => Err(SwiftError::BadRequest("Invalid path".into())),
        };
        match result.map_err(|e| e.status()) {
            Ok(()) => deleted += 1,
            Err(StatusCode::NOT_FOUND) => not_found += 1,
            Err(s) => errors.push((
                p.to_string(),
                format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or("")),
            )),
        }
    }
    report(&headers, deleted, not_found, &errors)
}

/// The bulk middleware's report, in the format the client accepts.
pub fn report(
    headers: &HeaderMap,
    deleted: usize,
    not_found: usize,
    errors: &[(String, String)],
) -> Response<Body> {
    let response_status = if errors.is_empty() {
        "200 OK"
    } else {
        "400 Bad Request"
    };
    let fmt = listing::format(None, headers);
    let (body, ct) = match fmt {
        listing::Format::Json => (
            serde_json::to_vec(&json!({
                "Number Deleted": deleted,
                "Number Not Found": not_found,
                "Response Body": "",
                "Response Status": response_status,
                "Errors": errors.iter().map(|(p, s)| json!([p, s])).collect::<Vec<_>>(),
            }))
            .expect("json"),
            "application/json; charset=utf-8",
        ),
        listing::Format::Xml => {
            let errs: String = errors
                .iter()
                .map(|(p, s)| format!("<object><name>{p}</name><status>{s}</status></object>"))
                .collect();
            (
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<delete><number_deleted>{deleted}</number_deleted><number_not_found>{not_found}</number_not_found><response_body></response_body><response_status>{response_status}</response_status><errors>{errs}</errors></delete>").into_bytes(),
                "application/xml; charset=utf-8",
            )
        }
        listing::Format::Plain => {
            let errs: String = errors.iter().map(|(p, s)| format!("{p}, {s}\n")).collect();
            (
                format!("Number Deleted: {deleted}\nNumber Not Found: {not_found}\nResponse Body: \nResponse Status: {response_status}\nErrors: \n{errs}").into_bytes(),
                "text/plain; charset=utf-8",
            )
        }
    };
    let mut r = Response::new(full(body));
    set_header(r.headers_mut(), "content-type", ct);
    r
}
