//! Static and Dynamic Large Objects: objects assembled from segments.
//!
//! - SLO: `PUT ?multipart-manifest=put` with a JSON list of
//!   `{path, etag, size_bytes}`; each segment is checked, and the manifest
//!   is stored as the object with `X-Static-Large-Object: True`.
//! - DLO: an object with `X-Object-Manifest: container/prefix`; its content is
//!   every object under the prefix, in name order, at read time.

use super::{channel_body, conditional, delete_object, filtered_headers, store_object};
use crate::proxy::backend::{Path, MAX_OBJECT_SIZE};
use crate::proxy::ProxyState;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use service_kit::http_util::{full, header_str, set_header, status, text, Body};
use service_kit::range::{self, Ranges};

const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

pub fn is_large(h: &HeaderMap) -> bool {
    header_str(h, "x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || h.contains_key("x-object-manifest")
}

#[derive(Deserialize)]
struct ManifestEntryIn {
    path: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    size_bytes: Option<u64>,
}

/// What is stored: Swift's manifest format.
#[derive(Clone, Serialize, Deserialize)]
pub struct Segment {
    /// `/container/object`
    pub name: String,
    pub hash: String,
    pub bytes: u64,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub last_modified: String,
}

fn split_segment_path(p: &str) -> Option<(String, String)> {
    let (c, o) = p.trim_start_matches('/').split_once('/')?;
    if c.is_empty() || o.is_empty() {
        return None;
    }
    Some((c.to_string(), o.to_string()))
}

/// The ETag of a large object: MD5 of its segments' ETags, quoted (Swift).
fn combined_etag<'a>(etags: impl Iterator<Item = &'a str>) -> String {
    let mut md5 = Md5::new();
    for e in etags {
        md5.update(e.trim_matches('"').as_bytes());
    }
    hex::encode(md5.finalize())
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response<Body>> {
    service_kit::http_util::collect_limited(body, limit)
        .await
        .ok_or_else(|| text(StatusCode::PAYLOAD_TOO_LARGE, "Manifest too large"))
}

pub async fn put_manifest(
    state: &ProxyState,
    h: HeaderMap,
    body: Body,
    a: &str,
    c: &str,
    o: &str,
) -> Response<Body> {
    let raw = match read_body(body, MAX_MANIFEST_BYTES).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let entries: Vec<ManifestEntryIn> = match serde_json::from_slice(&raw) {
        Ok(e) => e,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Manifest must be valid JSON: {e}"),
            )
        }
    };
    if entries.is_empty() || entries.len() > super::info::MAX_MANIFEST_SEGMENTS {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "Manifest must list 1 to {} segments",
                super::info::MAX_MANIFEST_SEGMENTS
            ),
        );
    }
    let mut segments = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for e in &entries {
        let Some((sc, so)) = split_segment_path(&e.path) else {
            problems.push(format!("{}: invalid path", e.path));
            continue;
        };
        let head = state
            .backend
            .head_newest(
                &Path::Object(a.into(), sc.clone(), so.clone()),
                HeaderMap::new(),
            )
            .await;
        if !head.status().is_success() {
            problems.push(format!("{}: {}", e.path, head.status()));
            continue;
        }
        let hh = head.headers();
        let etag = header_str(hh, "etag").unwrap_or_default().into_owned();
        let size: u64 = header_str(hh, "x-nubo-size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if e.etag
            .as_deref()
            .is_some_and(|want| want.trim_matches('"') != etag)
        {
            problems.push(format!("{}: Etag Mismatch", e.path));
        }
        if e.size_bytes.is_some_and(|want| want != size) {
            problems.push(format!("{}: Size Mismatch", e.path));
        }
        segments.push(Segment {
            name: format!("/{sc}/{so}"),
            hash: etag,
            bytes: size,
            content_type: header_str(hh, "content-type")
                .unwrap_or_default()
                .into_owned(),
            last_modified: header_str(hh, "last-modified")
                .unwrap_or_default()
                .into_owned(),
        });
    }
    if !problems.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Errors:\n{}", problems.join("\n")),
        );
    }
    match store_manifest(state, h, &segments, a, c, o).await {
        Ok(slo_etag) => {
            let mut r = status(StatusCode::CREATED);
            set_header(r.headers_mut(), "etag", &format!("\"{slo_etag}\""));
            set_header(r.headers_mut(), "content-length", "0");
            r
        }
        Err(st) => status(st),
    }
}

/// Stores checked segments as a Static Large Object (no data is copied);
/// returns the SLO ETag. S3's multipart completion uses it too.
pub async fn store_manifest(
    state: &ProxyState,
    mut h: HeaderMap,
    segments: &[Segment],
    a: &str,
    c: &str,
    o: &str,
) -> Result<String, StatusCode> {
    let total: u64 = segments.iter().map(|s| s.bytes).sum();
    let slo_etag = combined_etag(segments.iter().map(|s| s.hash.as_str()));
    let manifest = serde_json::to_vec(segments).expect("json");
    h.remove("etag");
    h.remove("transfer-encoding");
    set_header(&mut h, "content-length", &manifest.len().to_string());
    set_header(&mut h, "x-static-large-object", "True");
    set_header(&mut h, "x-object-sysmeta-slo-etag", &slo_etag);
    set_header(&mut h, "x-object-sysmeta-slo-size", &total.to_string());
    let out = store_object(state, h, full(manifest), a, c, o).await;
    if out.status.is_success() {
        Ok(slo_etag)
    } else {
        Err(out.status)
    }
}

/// The segments of a large object, in order.
async fn segments(
    state: &ProxyState,
    path: &Path,
    headers: &HeaderMap,
) -> Result<Vec<(String, String, Segment)>, StatusCode> {
    let Path::Object(a, _, _) = path else {
        return Err(StatusCode::BAD_REQUEST);
    };
    if let Some(prefix) = header_str(headers, "x-object-manifest") {
        // DLO: list the segment container under the prefix, page by page.
        let Some((sc, pfx)) = prefix.split_once('/') else {
            return Err(StatusCode::BAD_REQUEST);
        };
        let sc = percent_encoding::percent_decode_str(sc)
            .decode_utf8_lossy()
            .into_owned();
        let pfx = percent_encoding::percent_decode_str(pfx)
            .decode_utf8_lossy()
            .into_owned();
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let q = format!(
                "prefix={}&marker={}",
                service_kit::http_util::encode(&pfx),
                service_kit::http_util::encode(&marker)
            );
            let resp = state
                .backend
                .read(
                    Method::GET,
                    &Path::Container(a.clone(), sc.clone()),
                    HeaderMap::new(),
                    Some(&q),
                )
                .await;
            if !resp.status().is_success() {
                return if resp.status() == StatusCode::NOT_FOUND {
                    Ok(out)
                } else {
                    Err(StatusCode::SERVICE_UNAVAILABLE)
                };
            }
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
                .to_bytes();
            let page: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap_or_default();
            if page.is_empty() {
                return Ok(out);
            }
            for e in &page {
                let name = e["name"].as_str().unwrap_or_default().to_string();
                marker = name.clone();
                out.push((
                    sc.clone(),
                    name.clone(),
                    Segment {
                        name,
                        hash: e["hash"].as_str().unwrap_or_default().into(),
                        bytes: e["bytes"].as_u64().unwrap_or(0),
                        content_type: String::new(),
                        last_modified: String::new(),
                    },
                ));
            }
            if out.len() > 10_000 {
                return Err(StatusCode::CONFLICT);
            }
        }
    }
    let resp = state
        .backend
        .read(Method::GET, path, HeaderMap::new(), None)
        .await;
    if !resp.status().is_success() {
        return Err(resp.status());
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .to_bytes();
    let list: Vec<Segment> =
        serde_json::from_slice(&bytes).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(list
        .into_iter()
        .filter_map(|s| split_segment_path(&s.name).map(|(c, o)| (c, o, s)))
        .collect())
}

/// GET/HEAD of a large object: headers of the whole, then the segments'
/// bytes (or the requested range of them) streamed in order.
pub async fn get(
    state: &ProxyState,
    method: &Method,
    request_headers: &HeaderMap,
    path: &Path,
    headers: HeaderMap,
) -> Response<Body> {
    let segs = match segments(state, path, &headers).await {
        Ok(s) => s,
        Err(st) => return status(st),
    };
    let is_slo = !headers.contains_key("x-object-manifest");
    let total: u64 = segs.iter().map(|s| s.2.bytes).sum();
    let etag = if is_slo {
        header_str(&headers, "x-object-sysmeta-slo-etag")
            .map(|e| e.into_owned())
            .unwrap_or_else(|| combined_etag(segs.iter().map(|s| s.2.hash.as_str())))
    } else {
        combined_etag(segs.iter().map(|s| s.2.hash.as_str()))
    };
    let modified = header_str(&headers, "x-timestamp")
        .and_then(|t| t.parse::<service_kit::timestamp::Timestamp>().ok())
        .map(|t| t.secs())
        .unwrap_or(0);
    // An object completed through S3 multipart is compared by its S3 ETag
    // (`md5-of-md5s-N`), which is what S3 clients send back.
    let condition_etag = header_str(&headers, "x-object-sysmeta-s3-etag")
        .map(|e| e.into_owned())
        .unwrap_or_else(|| etag.clone());
    if let Some(st) = conditional::check(method, request_headers, &condition_etag, modified) {
        return status(st);
    }
    let mut out_headers = filtered_headers(&headers, true);
    set_header(&mut out_headers, "etag", &format!("\"{etag}\""));
    out_headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    let (first, last, partial) =
        match range::resolve(header_str(request_headers, "range").as_deref(), total) {
            Ranges::Whole => (0, total.saturating_sub(1), false),
            Ranges::Parts(p) if p.len() == 1 => (p[0].0, p[0].1, true),
            // Several ranges of a large object: served whole, which RFC 9110 allows.
            Ranges::Parts(_) => (0, total.saturating_sub(1), false),
            Ranges::Unsatisfiable => {
                let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE);
                set_header(
                    r.headers_mut(),
                    "content-range",
                    &format!("bytes */{total}"),
                );
                return r;
            }
        };
    let len = if total == 0 { 0 } else { last - first + 1 };
    set_header(&mut out_headers, "content-length", &len.to_string());
    if partial {
        set_header(
            &mut out_headers,
            "content-range",
            &format!("bytes {first}-{last}/{total}"),
        );
    }
    if total > MAX_OBJECT_SIZE * 1000 {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let body = if *method == Method::HEAD || len == 0 {
        service_kit::http_util::empty()
    } else {
        stream_segments(state, path, segs, first, last)
    };
    let mut r = Response::new(body);
    *r.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    *r.headers_mut() = out_headers;
    r
}

fn stream_segments(
    state: &ProxyState,
    path: &Path,
    segs: Vec<(String, String, Segment)>,
    first: u64,
    last: u64,
) -> Body {
    let (tx, body) = channel_body();
    let backend = state.backend_handle();
    let Path::Object(account, _, _) = path.clone() else {
        return service_kit::http_util::empty();
    };
    tokio::spawn(async move {
        let mut offset = 0u64;
        for (c, o, seg) in segs {
            let (seg_start, seg_end) = (offset, offset + seg.bytes);
            offset = seg_end;
            if seg.bytes == 0 || seg_end <= first || seg_start > last {
                continue;
            }
            let from = first.saturating_sub(seg_start);
            let to = (last - seg_start).min(seg.bytes - 1);
            let mut h = HeaderMap::new();
            if from > 0 || to < seg.bytes - 1 {
                set_header(&mut h, "range", &format!("bytes={from}-{to}"));
            }
            let resp = backend
                .read(Method::GET, &Path::Object(account.clone(), c, o), h, None)
                .await;
            if !resp.status().is_success() {
                let _ = tx
                    .send(Err(service_kit::http_util::box_error(
                        "segment unavailable",
                    )))
                    .await;
                return;
            }
            let mut b = resp.into_body();
            while let Some(f) = b.frame().await {
                let failed = f.is_err();
                if tx.send(f).await.is_err() || failed {
                    return;
                }
            }
        }
        drop(tx);
    });
    body
}

/// `DELETE ?multipart-manifest=delete`: the segments, then the manifest.
pub async fn delete_manifest(
    state: &ProxyState,
    req: &Request<Incoming>,
    a: &str,
    c: &str,
    o: &str,
) -> Response<Body> {
    let path = Path::Object(a.into(), c.into(), o.into());
    let head = state.backend.head_newest(&path, HeaderMap::new()).await;
    if !head.status().is_success() {
        return status(head.status());
    }
    let mut deleted = 0;
    let mut not_found = 0;
    let mut errors: Vec<(String, String)> = Vec::new();
    if header_str(head.headers(), "x-static-large-object").is_some() {
        match segments(state, &path, head.headers()).await {
            Ok(segs) => {
                for (sc, so, _) in segs {
                    match delete_object(state, a, &sc, &so).await {
                        s if s.is_success() => deleted += 1,
                        StatusCode::NOT_FOUND => not_found += 1,
                        s => errors.push((format!("/{sc}/{so}"), s.to_string())),
                    }
                }
            }
            Err(s) => errors.push((format!("/{c}/{o}"), s.to_string())),
        }
    }
    match delete_object(state, a, c, o).await {
        s if s.is_success() => deleted += 1,
        StatusCode::NOT_FOUND => not_found += 1,
        s => errors.push((format!("/{c}/{o}"), s.to_string())),
    }
    super::bulk::report(req.headers(), deleted, not_found, &errors)
}
