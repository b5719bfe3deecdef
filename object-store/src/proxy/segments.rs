//! Large objects: objects assembled from segments, for both APIs.
//!
//! - Static (SLO): a manifest listing `{name, hash, bytes}` of each segment
//!   is stored as the object with `X-Static-Large-Object: True` (Swift's
//!   `multipart-manifest=put`, S3's CompleteMultipartUpload).
//! - Dynamic (DLO): an object with `X-Object-Manifest: container/prefix`;
//!   its content is every object under the prefix, in name order, at read
//!   time.
//!
//! Reads assemble the content (ranges included); a manifest's own bytes
//! are read only when asked for (`ReadObject::manifest`).

use super::backend::BodyDigests;
use super::backend::Path;
use super::containers::{ListQuery, ListTarget};
use super::limits::{MAX_MANIFEST_SEGMENTS, MAX_OBJECT_SIZE};
use super::objects::{
    client_headers, guess_content_type, ObjectError, ObjectMeta, ObjectPath, ObjectRead,
    ObjectResult, Objects, ReadObject, Written,
};
use crate::records::ListingEntry;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use service_kit::http_util::{channel_body, empty, full, header_str, set_header, Body};
use service_kit::range::{self, Ranges};
use service_kit::timestamp::Timestamp;

/// Whether stored headers make an object a large one.
pub fn is_large(h: &HeaderMap) -> bool {
    header_str(h, "x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || h.contains_key("x-object-manifest")
}

/// One segment as a manifest stores it (Swift's format).
#[derive(Clone, Debug, Serialize, Deserialize)]
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

/// A segment as a client names it in a manifest: checked before storing.
#[derive(Clone, Debug, Deserialize)]
pub struct SegmentRef {
    pub path: String,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// What deleting a large object with its segments did.
#[derive(Debug, Default)]
pub struct DeleteReport {
    pub deleted: usize,
    pub not_found: usize,
    /// `(path, why)` of each failure.
    pub errors: Vec<(String, String)>,
}

fn split_segment_path(p: &str) -> Option<(String, String)> {
    let (c, o) = p.trim_start_matches('/').split_once('/')?;
    if c.is_empty() || o.is_empty() {
        return None;
    }
    Some((c.to_string(), o.to_string()))
}

/// The ETag of a large object: MD5 of its segments' ETags (Swift).
fn combined_etag<'a>(etags: impl Iterator<Item = &'a str>) -> String {
    let mut md5 = Md5::new();
    for e in etags {
        md5.update(e.trim_matches('"').as_bytes());
    }
    hex::encode(md5.finalize())
}

impl Objects {
    /// Stores a static large object over segments a client named, each
    /// checked against what is stored (ETag, size).
    pub async fn put_static_large(
        &self,
        path: &ObjectPath,
        meta: ObjectMeta,
        refs: &[SegmentRef],
    ) -> ObjectResult<Written> {
        if refs.is_empty() || refs.len() > MAX_MANIFEST_SEGMENTS {
            return Err(ObjectError::ManifestInvalid(format!(
                "Manifest must list 1 to {MAX_MANIFEST_SEGMENTS} segments"
            )));
        }
        let mut segments = Vec::with_capacity(refs.len());
        let mut problems = Vec::new();
        for r in refs {
            let Some((sc, so)) = split_segment_path(&r.path) else {
                problems.push(format!("{}: invalid path", r.path));
                continue;
            };
            let head = match self
                .head_newest(&ObjectPath::new(&path.account, &sc, &so))
                .await
            {
                Ok(h) => h,
                Err(ObjectError::NoSuchObject) => {
                    problems.push(format!("{}: 404 Not Found", r.path));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{}: {e}", r.path));
                    continue;
                }
            };
            let etag = header_str(&head, "etag").unwrap_or_default().into_owned();
            let size: u64 = header_str(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if r.etag
                .as_deref()
                .is_some_and(|want| want.trim_matches('"') != etag)
            {
                problems.push(format!("{}: Etag Mismatch", r.path));
            }
            if r.size_bytes.is_some_and(|want| want != size) {
                problems.push(format!("{}: Size Mismatch", r.path));
            }
            segments.push(Segment {
                name: format!("/{sc}/{so}"),
                hash: etag,
                bytes: size,
                content_type: header_str(&head, "content-type")
                    .unwrap_or_default()
                    .into_owned(),
                last_modified: header_str(&head, "last-modified")
                    .unwrap_or_default()
                    .into_owned(),
            });
        }
        if !problems.is_empty() {
            return Err(ObjectError::ManifestInvalid(format!(
                "Errors:\n{}",
                problems.join("\n")
            )));
        }
        self.put_segments(path, meta, &segments).await
    }

    /// Stores checked segments as a static large object (no data is
    /// copied); the ETag is the SLO's. S3's multipart completion calls it
    /// with the parts it checked.
    pub async fn put_segments(
        &self,
        path: &ObjectPath,
        meta: ObjectMeta,
        segments: &[Segment],
    ) -> ObjectResult<Written> {
        if !self.container_exists(&path.account, &path.container).await {
            return Err(ObjectError::NoSuchContainer);
        }
        let total: u64 = segments.iter().map(|s| s.bytes).sum();
        let slo_etag = combined_etag(segments.iter().map(|s| s.hash.as_str()));
        let manifest = serde_json::to_vec(segments).expect("json");
        let mut meta = meta;
        // The listing shows the whole object: its size, and the ETags each
        // API gives it (Swift's container update override).
        let mut listed = hex::encode(Md5::digest(&manifest));
        if let Some(s3) = meta.system("s3-etag") {
            listed.push_str(&format!("; s3_etag={s3}"));
        }
        listed.push_str(&format!("; slo_etag={slo_etag}"));
        meta.system.push(("slo-etag".into(), slo_etag.clone()));
        meta.system.push(("slo-size".into(), total.to_string()));
        meta.system
            .push(("container-update-override-etag".into(), listed));
        meta.system
            .push(("container-update-override-size".into(), total.to_string()));
        if meta.content_type.is_none() {
            meta.content_type = Some(guess_content_type(&path.object).to_string());
        }
        let mut h = meta.node_headers();
        set_header(&mut h, "content-length", &manifest.len().to_string());
        set_header(&mut h, "x-static-large-object", "True");
        let written = self
            .store(path, h, full(manifest), BodyDigests::default())
            .await?;
        Ok(Written {
            etag: slo_etag,
            last_modified: written.last_modified,
            checksum: None,
        })
    }

    /// The segments of a large object, in order, with their containers.
    async fn segments_of(
        &self,
        path: &ObjectPath,
        headers: &HeaderMap,
    ) -> ObjectResult<Vec<(String, String, Segment)>> {
        if let Some(prefix) = header_str(headers, "x-object-manifest") {
            // DLO: every object under the prefix of the segment container.
            let Some((sc, pfx)) = prefix.split_once('/') else {
                return Err(ObjectError::ManifestInvalid(
                    "X-Object-Manifest must be <container>/<prefix>".into(),
                ));
            };
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (sc, pfx) = (decode(sc), decode(pfx));
            let query = ListQuery {
                prefix: pfx,
                ..Default::default()
            };
            let target = ListTarget::Container(path.account.clone(), sc.clone());
            let entries = match self.list_all(&target, query, 10_000).await {
                Ok(e) => e,
                Err(ObjectError::NoSuchContainer) => Vec::new(),
                Err(ObjectError::InvalidArgument(_)) => {
                    return Err(ObjectError::ManifestInvalid("too many segments".into()))
                }
                Err(e) => return Err(e),
            };
            return Ok(entries
                .into_iter()
                .filter_map(|e| match e {
                    ListingEntry::Object {
                        name, hash, bytes, ..
                    } => Some((
                        sc.clone(),
                        name.clone(),
                        Segment {
                            name,
                            hash,
                            bytes,
                            content_type: String::new(),
                            last_modified: String::new(),
                        },
                    )),
                    _ => None,
                })
                .collect());
        }
        let manifest = self
            .backend()
            .read(Method::GET, &path.node(), HeaderMap::new(), None)
            .await;
        if !manifest.status().is_success() {
            return Err(ObjectError::Unavailable(manifest.status()));
        }
        let bytes = manifest
            .into_body()
            .collect()
            .await
            .map_err(|_| ObjectError::Unavailable(http::StatusCode::SERVICE_UNAVAILABLE))?
            .to_bytes();
        let list: Vec<Segment> = serde_json::from_slice(&bytes)
            .map_err(|e| ObjectError::ManifestInvalid(format!("stored manifest: {e}")))?;
        Ok(list
            .into_iter()
            .filter_map(|s| split_segment_path(&s.name).map(|(c, o)| (c, o, s)))
            .collect())
    }

    /// GET/HEAD of a large object: headers of the whole, then the
    /// segments' bytes (or the requested range of them) streamed in order.
    pub(super) async fn get_large(
        &self,
        req: &ReadObject,
        headers: HeaderMap,
    ) -> ObjectResult<ObjectRead> {
        let segs = self.segments_of(&req.path, &headers).await?;
        let is_slo = !headers.contains_key("x-object-manifest");
        let total: u64 = segs.iter().map(|s| s.2.bytes).sum();
        let etag = match header_str(&headers, "x-object-sysmeta-slo-etag") {
            Some(e) if is_slo => e.into_owned(),
            _ => combined_etag(segs.iter().map(|s| s.2.hash.as_str())),
        };
        let modified = header_str(&headers, "x-timestamp")
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.secs())
            .unwrap_or(0);
        // An object completed through S3 multipart is compared by its S3
        // ETag (`md5-of-md5s-N`), which is what S3 clients send back.
        let condition_etag = header_str(&headers, "x-object-sysmeta-s3-etag")
            .map(|e| e.into_owned())
            .unwrap_or_else(|| etag.clone());
        req.conditions
            .check(true, &condition_etag, modified)
            .map_err(|f| match f {
                super::conditions::Failed::NotModified => ObjectError::NotModified {
                    etag: condition_etag.clone(),
                },
                super::conditions::Failed::PreconditionFailed => ObjectError::PreconditionFailed {
                    etag: Some(condition_etag.clone()),
                },
            })?;
        let mut out = client_headers(&headers);
        set_header(&mut out, "etag", &format!("\"{etag}\""));
        out.insert("accept-ranges", HeaderValue::from_static("bytes"));
        let (first, last, partial) = match range::resolve(req.range.as_deref(), total) {
            Ranges::Whole => (0, total.saturating_sub(1), false),
            Ranges::Parts(p) if p.len() == 1 => (p[0].0, p[0].1, true),
            // Several ranges of a large object: served whole, which RFC 9110 allows.
            Ranges::Parts(_) => (0, total.saturating_sub(1), false),
            Ranges::Unsatisfiable => {
                return Err(ObjectError::RangeNotSatisfiable { size: Some(total) })
            }
        };
        let len = if total == 0 { 0 } else { last - first + 1 };
        set_header(&mut out, "content-length", &len.to_string());
        if partial {
            set_header(
                &mut out,
                "content-range",
                &format!("bytes {first}-{last}/{total}"),
            );
        }
        if total > MAX_OBJECT_SIZE * 1000 {
            return Err(ObjectError::ManifestInvalid(
                "the segments add up to more than a large object may hold".into(),
            ));
        }
        let body = if req.head || len == 0 {
            empty()
        } else {
            self.stream_segments(&req.path.account, segs, first, last)
        };
        Ok(ObjectRead {
            partial,
            headers: out,
            body,
        })
    }

    fn stream_segments(
        &self,
        account: &str,
        segs: Vec<(String, String, Segment)>,
        first: u64,
        last: u64,
    ) -> Body {
        let (tx, body) = channel_body();
        let backend = self.backend().clone();
        let account = account.to_string();
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
        });
        body
    }

    /// Deletes a static large object's segments, then the object itself.
    pub async fn delete_with_segments(&self, path: &ObjectPath) -> ObjectResult<DeleteReport> {
        let head = self.head_newest(path).await?;
        let mut report = DeleteReport::default();
        let mut tally = |name: String, result: ObjectResult<()>| match result {
            Ok(()) => report.deleted += 1,
            Err(ObjectError::NoSuchObject) => report.not_found += 1,
            Err(e) => report.errors.push((name, e.to_string())),
        };
        if header_str(&head, "x-static-large-object").is_some() {
            match self.segments_of(path, &head).await {
                Ok(segs) => {
                    for (sc, so, _) in segs {
                        let r = self.delete(&ObjectPath::new(&path.account, &sc, &so)).await;
                        tally(format!("/{sc}/{so}"), r);
                    }
                }
                Err(e) => tally(format!("/{}/{}", path.container, path.object), Err(e)),
            }
        }
        let r = self.delete(path).await;
        tally(format!("/{}/{}", path.container, path.object), r);
        Ok(report)
    }
}
