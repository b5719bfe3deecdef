//! Swift's `bulk` middleware: bulk delete (`POST` or `DELETE
//! /v1/{account}?bulk-delete`,
//! a newline-separated list of URL-encoded `/container/object` or
//! `/container` paths in the body) and extract-archive (`PUT` of a tar,
//! tar.gz or tar.bz2 archive whose files become objects), each answered
//! with the bulk report.

use super::error::SwiftError;
use super::listing;
use crate::proxy::objects::{ObjectMeta, ObjectPath, PutObject};
use crate::proxy::ProxyState;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::json;
use service_kit::api_error::ApiError;
use service_kit::http_util::{channel_body, full, set_header, text, xml_escape, Body};
use service_kit::server::RequestBody;
use std::io::Read;

const MAX_BODY: usize = 10_000 * 1100;

pub async fn handle(
    state: &ProxyState,
    req: Request<RequestBody>,
    account: &str,
) -> Response<Body> {
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

/// The bulk middleware's report of a delete, in the format the client
/// accepts.
pub fn report(
    headers: &HeaderMap,
    deleted: usize,
    not_found: usize,
    errors: &[(String, String)],
) -> Response<Body> {
    let status = if errors.is_empty() {
        "200 OK"
    } else {
        "400 Bad Request"
    };
    bulk_report(
        headers,
        "delete",
        &[("Number Deleted", deleted), ("Number Not Found", not_found)],
        status,
        "",
        errors,
    )
}

/// A bulk report (`kind`: `delete` or `extract`) as JSON, XML or text:
/// the counts, the outcome as a status line and a body, and each failed
/// path with its status. The HTTP status is 200 whatever the outcome, as
/// Swift streams the report.
fn bulk_report(
    headers: &HeaderMap,
    kind: &str,
    counts: &[(&str, usize)],
    status: &str,
    body: &str,
    errors: &[(String, String)],
) -> Response<Body> {
    let fmt = listing::format(None, headers);
    let (text, ct) = match fmt {
        listing::Format::Json => {
            let mut map = serde_json::Map::new();
            for (k, v) in counts {
                map.insert(k.to_string(), json!(v));
            }
            map.insert("Response Body".into(), json!(body));
            map.insert("Response Status".into(), json!(status));
            let errs: Vec<_> = errors.iter().map(|(p, s)| json!([p, s])).collect();
            map.insert("Errors".into(), json!(errs));
            (
                serde_json::to_vec(&map).expect("json"),
                "application/json; charset=utf-8",
            )
        }
        listing::Format::Xml => {
            let tag = |k: &str| k.to_ascii_lowercase().replace(' ', "_");
            let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{kind}>");
            for (k, v) in counts {
                out.push_str(&format!("<{0}>{v}</{0}>", tag(k)));
            }
            out.push_str(&format!(
                "<response_body>{}</response_body><response_status>{status}</response_status><errors>",
                xml_escape(body)
            ));
            for (p, s) in errors {
                out.push_str(&format!(
                    "<object><name>{}</name><status>{s}</status></object>",
                    xml_escape(p)
                ));
            }
            out.push_str(&format!("</errors></{kind}>"));
            (out.into_bytes(), "application/xml; charset=utf-8")
        }
        listing::Format::Plain => {
            let mut out = String::new();
            for (k, v) in counts {
                out.push_str(&format!("{k}: {v}\n"));
            }
            out.push_str(&format!(
                "Response Body: {body}\nResponse Status: {status}\nErrors: \n"
            ));
            for (p, s) in errors {
                out.push_str(&format!("{p}, {s}\n"));
            }
            (out.into_bytes(), "text/plain; charset=utf-8")
        }
    };
    let mut r = Response::new(full(text));
    set_header(r.headers_mut(), "content-type", ct);
    r
}

/// The most containers one archive may create (Swift's
/// `max_containers_per_extraction`).
const MAX_CONTAINERS: usize = 10_000;

/// The most failed files before an extraction stops (Swift's
/// `max_failed_extractions`).
const MAX_FAILED: usize = 1_000;

/// The compressions an archive may have (`extract-archive=tar.gz`...).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
}

impl Compression {
    pub fn parse(format: &str) -> Option<Compression> {
        match format.trim().to_ascii_lowercase().as_str() {
            "tar" => Some(Compression::None),
            "tar.gz" | "tgz" => Some(Compression::Gzip),
            "tar.bz2" | "tbz2" => Some(Compression::Bzip2),
            _ => None,
        }
    }
}

/// What an extraction did.
#[derive(Default)]
struct Extracted {
    created: usize,
    /// `(path, status)` of each file refused.
    errors: Vec<(String, String)>,
    /// Why the archive could not be read to its end, if it could not.
    broken: Option<String>,
}

/// A file of the archive on its way to the object layer.
enum Entry {
    /// A regular file's path within the archive, and its size.
    Start(String, u64),
    Data(Bytes),
    End,
}

/// `PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=<format>`:
/// each regular file of the archive becomes the object
/// `<container>/<prefix>/<path>` (or, at the account, the first element of
/// its path names the container, made if missing). Files stream to the
/// nodes as the archive is read; the report is the bulk middleware's.
pub async fn extract(
    state: &ProxyState,
    req: Request<RequestBody>,
    account: &str,
    base: &str,
    compression: Compression,
) -> Response<Body> {
    let headers = req.headers().clone();
    // The archive is read on a blocking thread, from the request body
    // forwarded chunk by chunk.
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let (entry_tx, mut entries) = tokio::sync::mpsc::channel::<Entry>(8);
    let reader = tokio::task::spawn_blocking(move || read_archive(body_rx, compression, entry_tx));
    let mut body = req.into_body();
    let forward = tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let chunk = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue,
                },
                Err(e) => Err(std::io::Error::other(e)),
            };
            let failed = chunk.is_err();
            if body_tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let mut done = Extracted::default();
    let mut containers = std::collections::HashSet::new();
    let base = base.trim_end_matches('/');
    while let Some(entry) = entries.recv().await {
        let Entry::Start(name, size) = entry else {
            continue;
        };
        let name = name.trim_start_matches("./").trim_start_matches('/');
        let full = if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        };
        let (file_tx, file_body) = channel_body();
        let file = async {
            let Some((container, object)) = full
                .split_once('/')
                .filter(|(c, o)| !c.is_empty() && !o.is_empty())
            else {
                // A file at the account's top level has no container: Swift skips it.
                return None;
            };
            if containers.insert(container.to_string()) {
                if containers.len() > MAX_CONTAINERS {
                    return Some(Err(SwiftError::BadRequest(
                        "More than 10000 containers".into(),
                    )));
                }
                if !state.objects.container_exists(account, container).await {
                    if let Err(e) = state
                        .objects
                        .put_container(account, container, HeaderMap::new())
                        .await
                    {
                        return Some(Err(e.into()));
                    }
                }
            }
            let put = state
                .objects
                .put(PutObject {
                    path: ObjectPath::new(account, container, object),
                    length: Some(size),
                    meta: ObjectMeta::default(),
                    checksum: None,
                    expected_md5: None,
                    condition: None,
                    sealing: None,
                    at: None,
                    body: file_body,
                })
                .await;
            Some(put.map(drop).map_err(SwiftError::from))
        };
        let feed = async {
            while let Some(e) = entries.recv().await {
                match e {
                    Entry::Data(d) => {
                        // A file the object layer stopped reading (refused)
                        // is still read to its end here.
                        let _ = file_tx.send(Ok(Frame::data(d))).await;
                    }
                    Entry::End | Entry::Start(..) => break,
                }
            }
            drop(file_tx);
        };
        let (result, ()) = tokio::join!(file, feed);
        match result {
            None => {}
            Some(Ok(())) => done.created += 1,
            Some(Err(e)) => {
                let s = e.status();
                done.errors.push((
                    format!("/{full}"),
                    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or("")),
                ));
                if done.errors.len() >= MAX_FAILED {
                    break;
                }
            }
        }
    }
    drop(entries);
    forward.abort();
    // The reader ends once its body is cut off (or its files refused).
    if let Ok(Err(why)) = reader.await {
        done.broken = Some(why);
    }
    let status = if done.broken.is_some() || !done.errors.is_empty() {
        "400 Bad Request"
    } else {
        "201 Created"
    };
    bulk_report(
        &headers,
        "extract",
        &[("Number Files Created", done.created)],
        status,
        done.broken.as_deref().unwrap_or(""),
        &done.errors,
    )
}

/// Reads the archive from `body`, sending each regular file's bytes.
fn read_archive(
    body: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    compression: Compression,
    out: tokio::sync::mpsc::Sender<Entry>,
) -> Result<(), String> {
    let raw = ChannelReader {
        rx: body,
        buf: Bytes::new(),
    };
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(raw)),
        Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(raw)),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format!("Invalid Tar File: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("Invalid Tar File: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.size();
        if out.blocking_send(Entry::Start(name, size)).is_err() {
            return Ok(());
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| format!("Invalid Tar File: {e}"))?;
            if n == 0 {
                break;
            }
            if out
                .blocking_send(Entry::Data(Bytes::copy_from_slice(&buf[..n])))
                .is_err()
            {
                return Ok(());
            }
        }
        if out.blocking_send(Entry::End).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A blocking `Read` over chunks sent from the async side.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}
