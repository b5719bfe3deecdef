//! Browser POST uploads: s3s checks the signed policy and stores the form's
//! file through `put_object`, but leaves `${filename}` alone. S3 replaces
//! it, in every form field, with the name of the uploaded file. The file
//! must be the form's last part, so the fields before it are read here, up
//! to [`MAX_FIELDS`] bytes, and rewritten before s3s parses the form (and
//! checks the policy's conditions against the rewritten key, as S3 does).
//! The file's bytes stream on untouched.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use service_kit::server::RequestBody;

/// The most form bytes read before the file's part starts.
const MAX_FIELDS: usize = 64 << 10;

const VARIABLE: &[u8] = b"${filename}";

/// The request as s3s gets it, `${filename}` replaced in a POST form.
pub async fn substituted(req: Request<RequestBody>) -> Request<s3s::Body> {
    let form = req.method() == http::Method::POST
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !form {
        return req.map(s3s::Body::http_body);
    }
    let (mut parts, mut body) = req.into_parts();
    let mut head = BytesMut::new();
    let mut file = None;
    while head.len() <= MAX_FIELDS {
        if let Some(found) = file_part(&head) {
            file = Some(found);
            break;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            // A broken or short body: s3s refuses what it gets.
            _ => break,
        }
    }
    let head = match file {
        Some((fields_end, name)) => {
            let mut out = replace(&head[..fields_end], name.as_bytes());
            out.extend_from_slice(&head[fields_end..]);
            let grown = out.len() as i64 - head.len() as i64;
            let length = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok());
            if let Some(n) = length {
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, (n + grown).into());
            }
            Bytes::from(out)
        }
        None => head.freeze(),
    };
    let rest = body.into_data_stream();
    let stream = futures_util::stream::once(async move { Ok(head) })
        .chain(rest)
        .map(|r: Result<Bytes, hyper::Error>| r.map(Frame::data));
    Request::from_parts(parts, s3s::Body::http_body_unsync(StreamBody::new(stream)))
}

/// Where the file's part header starts, and the file's name, once the
/// header line naming it is complete.
fn file_part(head: &[u8]) -> Option<(usize, String)> {
    let marker = b"; filename=\"";
    let at = find(head, marker)?;
    let name_start = at + marker.len();
    let name_len = find(&head[name_start..], b"\"")?;
    // The header line must be whole.
    find(&head[name_start + name_len..], b"\r\n")?;
    let line_start = head[..at]
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |p| p + 2);
    let name = String::from_utf8_lossy(&head[name_start..name_start + name_len]);
    // A browser may send a path; S3 keeps the last component.
    let name = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_string();
    Some((line_start, name))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace(fields: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() + name.len());
    let mut rest = fields;
    while let Some(i) = find(rest, VARIABLE) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(name);
        rest = &rest[i + VARIABLE.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_replaces_the_variable_in_fields_only() {
        let form = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuser/${filename}\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\x\\\\cat.jpg\"\r\n\r\n${filename} stays";
        let (end, name) = file_part(form).unwrap();
        assert_eq!(name, "cat.jpg");
        let mut out = replace(&form[..end], name.as_bytes());
        out.extend_from_slice(&form[end..]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("user/cat.jpg\r\n"));
        assert!(text.ends_with("${filename} stays"));
        // Not yet whole: no answer.
        assert!(file_part(b"name=\"file\"; filename=\"ca").is_none());
    }
}
