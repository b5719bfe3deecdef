//! FormPost (Swift's `formpost` middleware): an HTML form POSTed as
//! `multipart/form-data` to `/v1/<account>/<container>[/<prefix>]` stores
//! each file it carries as `<prefix><filename>`, without a token. The form
//! is signed with a TempURL key over
//! `path\nredirect\nmax_file_size\nmax_file_count\nexpires`; fields after
//! the first file are not read (as in Swift, which streams the files).
//!
//! The answer is Swift's: `303 See Other` to `redirect?status=..&message=..`
//! when the form names a redirect, else the status with a short text body;
//! a bad signature or an expired form is 401, a file over `max_file_size`
//! or too many files 400. A refused file stores nothing.

use super::names::SwiftPath;
use crate::proxy::objects::{unix_now, ObjectError, ObjectMeta, ObjectPath, PutObject};
use crate::proxy::ProxyState;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use service_kit::http_util::{box_error, set_header, text, Body, BoxError};
use service_kit::server::RequestBody;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest value of a form field kept (Swift's `MAX_VALUE_LENGTH`).
const MAX_VALUE_LENGTH: usize = 4096;

/// Whether a request is a form upload.
pub fn is_form(req: &Request<RequestBody>) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// How a form upload ended.
struct Outcome {
    status: StatusCode,
    message: String,
}

impl Outcome {
    fn new(status: StatusCode, message: &str) -> Outcome {
        Outcome {
            status,
            message: message.to_string(),
        }
    }
}

/// Handles a form POST to `path` (`full_path`: the decoded `/v1/...`).
pub async fn handle(
    state: &ProxyState,
    req: Request<RequestBody>,
    path: &SwiftPath,
    full_path: &str,
    keys: Vec<String>,
) -> Response<Body> {
    let boundary = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| multer::parse_boundary(t).ok());
    let (Some(boundary), Some(container)) = (boundary, path.container.clone()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "FormPost: invalid starting boundary",
        );
    };
    let prefix = path.object.clone().unwrap_or_default();
    let stream = req
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(|e| Box::new(e) as BoxError));
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut files = 0u64;
    let mut outcome = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "FormPost: invalid starting boundary",
                )
            }
        };
        let Some(filename) = field.file_name().map(str::to_string) else {
            let name = field.name().unwrap_or_default().to_ascii_lowercase();
            let value = match field.bytes().await {
                Ok(b) => b,
                Err(_) => return text(StatusCode::BAD_REQUEST, "FormPost: invalid form"),
            };
            let kept = &value[..value.len().min(MAX_VALUE_LENGTH)];
            fields.insert(name, String::from_utf8_lossy(kept).into_owned());
            continue;
        };
        files += 1;
        let form = match Form::read(&fields) {
            Ok(f) => f,
            Err(why) => return text(StatusCode::BAD_REQUEST, format!("FormPost: {why}")),
        };
        if files > form.max_file_count {
            outcome = Some(Outcome::new(
                StatusCode::BAD_REQUEST,
                "max file count exceeded",
            ));
            break;
        }
        if form.expires < unix_now() {
            return text(StatusCode::UNAUTHORIZED, "FormPost: Form Expired");
        }
        let message = format!(
            "{full_path}\n{}\n{}\n{}\n{}",
            fields.get("redirect").map(String::as_str).unwrap_or(""),
            fields
                .get("max_file_size")
                .map(String::as_str)
                .unwrap_or("0"),
            fields
                .get("max_file_count")
                .map(String::as_str)
                .unwrap_or("0"),
            fields.get("expires").map(String::as_str).unwrap_or("0"),
        );
        let signature = fields.get("signature").map(String::as_str).unwrap_or("");
        if !super::tempurl::signature_matches(signature, &[message], &keys) {
            return text(StatusCode::UNAUTHORIZED, "FormPost: Invalid Signature");
        }
        let name = if filename.is_empty() {
            "filename".to_string()
        } else {
            filename
        };
        let content_type = fields
            .get("content-type")
            .cloned()
            .or_else(|| field.content_type().map(|m| m.to_string()));
        // The file's bytes go to the nodes as they arrive, cut off (and
        // the write abandoned) past `max_file_size`.
        let over = Arc::new(AtomicBool::new(false));
        let (limit, flag) = (form.max_file_size, over.clone());
        let mut seen = 0u64;
        let capped = field.map(move |chunk| {
            let chunk: Bytes = chunk.map_err(|e| Box::new(e) as BoxError)?;
            seen += chunk.len() as u64;
            if seen > limit {
                flag.store(true, Ordering::SeqCst);
                return Err(box_error("max_file_size exceeded"));
            }
            Ok(Frame::data(chunk))
        });
        let body: Body = StreamBody::new(capped).boxed_unsync();
        let put = state
            .objects
            .put(PutObject {
                path: ObjectPath::new(&path.account, &container, format!("{prefix}{name}")),
                length: None,
                meta: ObjectMeta {
                    content_type,
                    delete_at: form.delete_at,
                    ..Default::default()
                },
                checksum: None,
                expected_md5: None,
                condition: None,
                sealing: None,
                at: None,
                body,
            })
            .await;
        let done = match put {
            _ if over.load(Ordering::SeqCst) => {
                Outcome::new(StatusCode::BAD_REQUEST, "max_file_size exceeded")
            }
            Ok(_) => Outcome::new(StatusCode::CREATED, ""),
            Err(ObjectError::NoSuchContainer) => Outcome::new(StatusCode::NOT_FOUND, ""),
            Err(e) => {
                let status = super::error::SwiftError::from(e);
                let code = service_kit::api_error::ApiError::status(&status);
                Outcome::new(code, &status.to_string())
            }
        };
        let failed = !done.status.is_success();
        outcome = Some(done);
        if failed {
            break;
        }
    }
    let outcome =
        outcome.unwrap_or_else(|| Outcome::new(StatusCode::BAD_REQUEST, "no files to process"));
    respond(outcome, fields.get("redirect").map(String::as_str))
}

/// The signed limits of a form.
struct Form {
    max_file_size: u64,
    max_file_count: u64,
    expires: u64,
    delete_at: Option<u64>,
}

impl Form {
    fn read(fields: &HashMap<String, String>) -> Result<Form, String> {
        let num = |name: &str, why: &str| -> Result<Option<u64>, String> {
            match fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| why.to_string()),
            }
        };
        let after = num(
            "x_delete_after",
            "x_delete_after not an integer: Number of seconds required.",
        )?;
        let at = num(
            "x_delete_at",
            "x_delete_at not an integer: Unix timestamp required.",
        )?;
        Ok(Form {
            max_file_size: num("max_file_size", "max_file_size not an integer")?.unwrap_or(0),
            max_file_count: num("max_file_count", "max_file_count not an integer")?.unwrap_or(0),
            expires: num("expires", "expired not an integer")?.unwrap_or(0),
            delete_at: after.map(|s| unix_now() + s).or(at),
        })
    }
}

/// Swift's answer: a redirect carrying the outcome, or the outcome as text.
fn respond(outcome: Outcome, redirect: Option<&str>) -> Response<Body> {
    let status_line = format!(
        "{} {}",
        outcome.status.as_u16(),
        outcome.status.canonical_reason().unwrap_or("")
    );
    let Some(redirect) = redirect.filter(|r| !r.is_empty()) else {
        let mut body = status_line;
        if !outcome.message.is_empty() {
            body.push_str(&format!("\r\nFormPost: {}", title_case(&outcome.message)));
        }
        return text(outcome.status, &body);
    };
    let location = format!(
        "{redirect}{}status={}&message={}",
        if redirect.contains('?') { '&' } else { '?' },
        outcome.status.as_u16(),
        service_kit::http_util::encode(&outcome.message)
    );
    let body = format!(
        "<html><body><p><a href=\"{}\">Click to continue...</a></p></body></html>",
        service_kit::http_util::xml_escape(&location)
    );
    let mut r = text(StatusCode::SEE_OTHER, &body);
    set_header(r.headers_mut(), "content-type", "text/html");
    set_header(r.headers_mut(), "location", &location);
    r
}

/// Python's `str.title()`, which Swift applies to its messages.
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_alphabetic() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            start = false;
        } else {
            out.push(c);
            start = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_limits_read_as_swift_reads_them() {
        assert_eq!(
            title_case("max_file_size exceeded"),
            "Max_File_Size Exceeded"
        );
        let mut f = HashMap::new();
        f.insert("max_file_size".to_string(), "10".to_string());
        f.insert("max_file_count".to_string(), "2".to_string());
        f.insert("expires".to_string(), "99".to_string());
        let form = Form::read(&f).expect("valid");
        assert_eq!(
            (form.max_file_size, form.max_file_count, form.expires),
            (10, 2, 99)
        );
        f.insert("max_file_size".to_string(), "ten".to_string());
        assert_eq!(
            Form::read(&f).err().as_deref(),
            Some("max_file_size not an integer")
        );
        let redirected = respond(
            Outcome::new(StatusCode::CREATED, ""),
            Some("https://example.com/done?x=1"),
        );
        assert_eq!(redirected.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            redirected.headers()["location"],
            "https://example.com/done?x=1&status=201&message="
        );
    }
}
