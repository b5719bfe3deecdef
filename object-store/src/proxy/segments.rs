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
use super::encryption::{open_body, Keys, OpenError, Sealed, SealedParts, Window};
use super::limits::{MAX_MANIFEST_SEGMENTS, MAX_OBJECT_SIZE};
use super::manifest::{
    self, leaf_piece, slice, slo_etag, split_segment_path, sub_range, Piece, Segment, SegmentRef,
    StoredSegment, MAX_DEPTH,
};
use super::objects::{
    client_headers, guess_content_type, read_sealed_range, ObjectError, ObjectMeta, ObjectPath,
    ObjectRead, ObjectResult, Objects, ReadObject, Written, PARTS_COUNT_HEADER,
};
use crate::records::ListingEntry;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;
use hyper::body::Frame;
use md5::{Digest, Md5};
use service_kit::http_util::{channel_body, empty, full, header_str, set_header, Body};
use service_kit::range::{self, Ranges};
use service_kit::timestamp::Timestamp;
use std::future::Future;
use std::pin::Pin;

/// Whether stored headers make an object a large one.
pub fn is_large(h: &HeaderMap) -> bool {
    is_static(h) || h.contains_key("x-object-manifest")
}

/// Whether stored headers make an object a static large one.
pub fn is_static(h: &HeaderMap) -> bool {
    header_str(h, "x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// What deleting a large object with its segments did.
#[derive(Debug, Default)]
pub struct DeleteReport {
    pub deleted: usize,
    pub not_found: usize,
    /// `(path, why)` of each failure.
    pub errors: Vec<(String, String)>,
}

/// The ETag of a dynamic large object: MD5 of its segments' ETags (Swift).
fn combined_etag<'a>(etags: impl Iterator<Item = &'a str>) -> String {
    let mut md5 = Md5::new();
    for e in etags {
        md5.update(e.trim_matches('"').as_bytes());
    }
    hex::encode(md5.finalize())
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Objects {
    /// Stores a static large object over segments a client named, each
    /// checked against what is stored (ETag, size; a segment that is a
    /// static large object is taken as its content, as its HEAD shows it).
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
        let mut stored = Vec::with_capacity(refs.len());
        let mut problems = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            match self.check_segment(&path.account, r).await {
                Ok(s) if s.is_empty() && i + 1 < refs.len() => problems.push(format!(
                    "Index {i}: too small; each segment must be at least 1 byte."
                )),
                Ok(s) => stored.push(s),
                Err(why) => problems.push(format!("Index {i}: {why}")),
            }
        }
        if !problems.is_empty() {
            return Err(ObjectError::ManifestInvalid(format!(
                "Errors:\n{}",
                problems.join("\n")
            )));
        }
        self.store_manifest(path, meta, stored).await
    }

    /// One entry of a client's manifest, checked against the segment it
    /// names: the entry to store, or why not.
    async fn check_segment(&self, account: &str, r: &SegmentRef) -> Result<StoredSegment, String> {
        let (p, want_etag, want_size, range) = match r {
            SegmentRef::Data(bytes) => return Ok(manifest::data_segment(bytes)),
            SegmentRef::Object {
                path,
                etag,
                size_bytes,
                range,
            } => (path, etag, size_bytes, range),
        };
        let (sc, so) = split_segment_path(p).ok_or("invalid path")?;
        let head = match self.head_newest(&ObjectPath::new(account, &sc, &so)).await {
            Ok(h) => h,
            Err(ObjectError::NoSuchObject) => return Err(format!("{p}: 404 Not Found")),
            Err(e) => return Err(format!("{p}: {e}")),
        };
        let sub_slo = is_static(&head);
        // A nested static large object counts as its content.
        let (etag_header, size_header) = if sub_slo {
            ("x-object-sysmeta-slo-etag", "x-object-sysmeta-slo-size")
        } else {
            ("etag", "content-length")
        };
        let etag = header_str(&head, etag_header)
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        let size: u64 = header_str(&head, size_header)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut why = Vec::new();
        if want_etag.as_deref().is_some_and(|w| w != etag) {
            why.push(format!("{p}: Etag Mismatch"));
        }
        if want_size.is_some_and(|w| w != size) {
            why.push(format!("{p}: Size Mismatch"));
        }
        let range = match range {
            Some(r) => Some(manifest::resolve_range(r, size).map_err(|e| format!("{p}: {e}"))?),
            None => None,
        };
        if !why.is_empty() {
            return Err(why.join(", "));
        }
        Ok(StoredSegment::Object(Segment {
            name: format!("/{sc}/{so}"),
            hash: etag,
            bytes: size,
            content_type: header_str(&head, "content-type")
                .unwrap_or_default()
                .into_owned(),
            last_modified: header_str(&head, "last-modified")
                .unwrap_or_default()
                .into_owned(),
            range,
            sub_slo,
        }))
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
        let stored = segments
            .iter()
            .cloned()
            .map(StoredSegment::Object)
            .collect();
        self.store_manifest(path, meta, stored).await
    }

    /// Stores a manifest as a static large object.
    pub(super) async fn store_manifest(
        &self,
        path: &ObjectPath,
        meta: ObjectMeta,
        segments: Vec<StoredSegment>,
    ) -> ObjectResult<Written> {
        let container = self
            .container_meta(&path.account, &path.container)
            .await
            .map_err(|_| ObjectError::NoSuchContainer)?;
        self.archive_current(path, &container).await?;
        let total: u64 = segments.iter().map(StoredSegment::len).sum();
        let slo_etag = slo_etag(&segments);
        let manifest = serde_json::to_vec(&segments).expect("json");
        let mut meta = meta;
        // The listing shows the whole object: its size, and the ETags each
        // API gives it (Swift's container update override).
        let mut listed = hex::encode(Md5::digest(&manifest));
        if let Some(s3) = meta.system("s3-etag") {
            listed.push_str(&format!("; s3_etag={s3}"));
        }
        listed.push_str(&format!("; slo_etag={slo_etag}"));
        for key in [
            "slo-etag",
            "slo-size",
            "container-update-override-etag",
            "container-update-override-size",
        ] {
            meta.system.retain(|(k, _)| k != key);
        }
        meta.system.push(("slo-etag".into(), slo_etag.clone()));
        meta.system.push(("slo-size".into(), total.to_string()));
        meta.system
            .push(("container-update-override-etag".into(), listed.clone()));
        meta.system
            .push(("container-update-override-size".into(), total.to_string()));
        if meta.content_type.is_none() {
            meta.content_type = Some(guess_content_type(&path.object).to_string());
        }
        meta.dlo_manifest = None;
        // In a container that keeps versions, the manifest is a version.
        let prepared = self.prepare_write(path, &container).await?;
        meta.add_missing_system(prepared.system());
        let content_type = meta.content_type.clone().unwrap_or_default();
        let mut h = meta.node_headers();
        set_header(&mut h, "content-length", &manifest.len().to_string());
        set_header(&mut h, "x-static-large-object", "True");
        let written = self
            .store(
                &prepared.target(path),
                h,
                full(manifest),
                BodyDigests::default(),
            )
            .await?;
        let written = Written {
            etag: slo_etag,
            last_modified: written.last_modified,
            checksum: None,
            version_id: None,
        };
        self.finish_write(
            path,
            prepared,
            written,
            None,
            &content_type,
            Some(total),
            Some(&listed),
        )
        .await
    }

    /// A static large object's stored manifest.
    pub(super) async fn manifest_of(&self, path: &ObjectPath) -> ObjectResult<Vec<StoredSegment>> {
        let resp = self
            .backend()
            .read(Method::GET, &path.node(), HeaderMap::new(), None)
            .await;
        if !resp.status().is_success() {
            return Err(if resp.status() == http::StatusCode::NOT_FOUND {
                ObjectError::NoSuchObject
            } else {
                ObjectError::Unavailable(resp.status())
            });
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| ObjectError::Unavailable(http::StatusCode::SERVICE_UNAVAILABLE))?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|e| ObjectError::Broken(format!("stored manifest: {e}")))
    }

    /// The pieces of a static large object's content: nested manifests
    /// read and cut to their ranges, at most [`MAX_DEPTH`] deep.
    fn pieces_of<'a>(
        &'a self,
        account: &'a str,
        segments: Vec<StoredSegment>,
        depth: usize,
        within: Option<&'a str>,
    ) -> Boxed<'a, ObjectResult<Vec<Piece>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for s in segments {
                if let (StoredSegment::Object(seg), Some(c)) = (&s, within) {
                    check_within(&seg.name, c)?;
                }
                if let Some(p) = leaf_piece(&s) {
                    out.push(p);
                    continue;
                }
                let StoredSegment::Object(seg) = s else {
                    continue;
                };
                if depth + 1 >= MAX_DEPTH {
                    return Err(ObjectError::Broken("Max recursion depth exceeded".into()));
                }
                let Some((c, o)) = split_segment_path(&seg.name) else {
                    return Err(ObjectError::Broken(format!(
                        "invalid segment path {}",
                        seg.name
                    )));
                };
                let inner = match self.manifest_of(&ObjectPath::new(account, c, o)).await {
                    Ok(m) => m,
                    Err(ObjectError::NoSuchObject) => {
                        return Err(ObjectError::Broken(format!(
                            "sub-manifest {} is gone",
                            seg.name
                        )))
                    }
                    Err(e) => return Err(e),
                };
                let pieces = self.pieces_of(account, inner, depth + 1, within).await?;
                match sub_range(&seg) {
                    Some((a, b)) => out.extend(slice(pieces, a, b)),
                    None => out.extend(pieces),
                }
            }
            Ok(out)
        })
    }

    /// The pieces of a large object's content, and its ETag (hex).
    async fn content_of(
        &self,
        path: &ObjectPath,
        headers: &HeaderMap,
        within: Option<&str>,
    ) -> ObjectResult<(Vec<Piece>, String)> {
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
            if let Some(c) = within {
                check_within(&format!("/{sc}/{pfx}"), c)?;
            }
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
            // Each object under the prefix is a segment; one that is a
            // static large object (listed with its SLO ETag) is read as its
            // content, as Swift's DLO reads segments with GETs.
            let segments: Vec<StoredSegment> = entries
                .into_iter()
                .filter_map(|e| match e {
                    ListingEntry::Object {
                        name,
                        hash,
                        bytes,
                        slo_etag,
                        ..
                    } => Some(StoredSegment::Object(Segment {
                        name: format!("/{sc}/{name}"),
                        hash,
                        bytes,
                        content_type: String::new(),
                        last_modified: String::new(),
                        range: None,
                        sub_slo: slo_etag.is_some(),
                    })),
                    _ => None,
                })
                .collect();
            let etag = combined_etag(segments.iter().filter_map(|s| match s {
                StoredSegment::Object(seg) => Some(seg.hash.as_str()),
                StoredSegment::Data { .. } => None,
            }));
            let pieces = self.pieces_of(&path.account, segments, 0, within).await?;
            return Ok((pieces, etag));
        }
        let segments = self.manifest_of(path).await?;
        let etag = match header_str(headers, "x-object-sysmeta-slo-etag") {
            Some(e) => e.into_owned(),
            None => slo_etag(&segments),
        };
        let pieces = self.pieces_of(&path.account, segments, 0, within).await?;
        Ok((pieces, etag))
    }

    /// GET/HEAD of a large object: headers of the whole, then the
    /// segments' bytes (or the requested range of them) streamed in order.
    pub(super) async fn get_large(
        &self,
        req: &ReadObject,
        headers: HeaderMap,
    ) -> ObjectResult<ObjectRead> {
        let within = req.segments_within.as_deref();
        let (pieces, etag) = self.content_of(&req.path, &headers, within).await?;
        let total: u64 = pieces.iter().map(Piece::len).sum();
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
        // Sealed parts (S3 multipart with SSE) need the key they were
        // sealed with; checked before any is read.
        match SealedParts::of(&headers) {
            Some(parts) => parts.check(req.customer_key.as_ref())?,
            None if req.customer_key.is_some() => return Err(OpenError::NotApplicable.into()),
            None => {}
        }
        let mut out = client_headers(&headers);
        set_header(&mut out, "etag", &format!("\"{etag}\""));
        out.insert("accept-ranges", HeaderValue::from_static("bytes"));
        // Where the answer starts, how long it is, whether it is partial.
        let (first, len, partial) = match (req.part, range::resolve(req.range.as_deref(), total)) {
            // A part: its segment (S3's parts are the segments of the
            // manifest its CompleteMultipartUpload wrote).
            (Some(n), _) => {
                let parts = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
                let Some(i) = n.checked_sub(1).filter(|i| *i < parts) else {
                    return Err(ObjectError::NoSuchPart { parts });
                };
                set_header(&mut out, PARTS_COUNT_HEADER, &parts.to_string());
                let i = i as usize;
                let first: u64 = pieces[..i].iter().map(Piece::len).sum();
                (first, pieces[i].len(), true)
            }
            (None, Ranges::Whole) => (0, total, false),
            (None, Ranges::Parts(p)) if p.len() == 1 => (p[0].0, p[0].1 - p[0].0 + 1, true),
            // Several ranges of a large object: served whole, which RFC 9110 allows.
            (None, Ranges::Parts(_)) => (0, total, false),
            (None, Ranges::Unsatisfiable) => {
                return Err(ObjectError::RangeNotSatisfiable { size: Some(total) })
            }
        };
        let last = (first + len).saturating_sub(1);
        set_header(&mut out, "content-length", &len.to_string());
        if partial && len > 0 {
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
            let keys = self.keys(req.customer_key.as_ref());
            self.stream_pieces(&req.path.account, slice(pieces, first, last), keys)
        };
        Ok(ObjectRead {
            partial,
            headers: out,
            body,
        })
    }

    fn stream_pieces(&self, account: &str, pieces: Vec<Piece>, keys: Keys) -> Body {
        let (tx, body) = channel_body();
        let backend = self.backend().clone();
        let account = account.to_string();
        tokio::spawn(async move {
            for piece in pieces {
                let (c, o, first, last, size) = match piece {
                    Piece::Data(b) => {
                        if tx.send(Ok(Frame::data(b))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Piece::Object {
                        container,
                        object,
                        first,
                        last,
                        size,
                    } => (container, object, first, last, size),
                };
                let mut h = HeaderMap::new();
                if first > 0 || last + 1 < size {
                    set_header(&mut h, "range", &format!("bytes={first}-{last}"));
                }
                let path = Path::Object(account.clone(), c, o);
                let resp = backend.read(Method::GET, &path, h, None).await;
                let unavailable = || service_kit::http_util::box_error("segment unavailable");
                if !resp.status().is_success() {
                    let _ = tx.send(Err(unavailable())).await;
                    return;
                }
                // A sealed segment: its chunks that hold the piece, opened.
                let mut b = match Sealed::of(resp.headers()) {
                    None => resp.into_body(),
                    Some(sealed) => {
                        let (stored, _) = resp.into_parts();
                        let window = if sealed.size == 0 {
                            Window::whole(0)
                        } else {
                            Window::of(sealed.size, first, last)
                        };
                        let opened = match sealed.open(&keys) {
                            Ok(o) => o,
                            Err(_) => {
                                let _ = tx.send(Err(unavailable())).await;
                                return;
                            }
                        };
                        match read_sealed_range(&backend, &path, &stored.headers, window).await {
                            Ok(body) => open_body(body, &opened, window),
                            Err(_) => {
                                let _ = tx.send(Err(unavailable())).await;
                                return;
                            }
                        }
                    }
                };
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

    /// Deletes a static large object's segments (those of nested ones
    /// too), then the object itself.
    pub async fn delete_with_segments(&self, path: &ObjectPath) -> ObjectResult<DeleteReport> {
        let mut report = DeleteReport::default();
        self.delete_tree(path, &mut report, 0).await?;
        Ok(report)
    }

    fn delete_tree<'a>(
        &'a self,
        path: &'a ObjectPath,
        report: &'a mut DeleteReport,
        depth: usize,
    ) -> Boxed<'a, ObjectResult<()>> {
        Box::pin(async move {
            let head = self.head_newest(path).await?;
            let name = format!("/{}/{}", path.container, path.object);
            if is_static(&head) && depth < MAX_DEPTH {
                match self.manifest_of(path).await {
                    Ok(segments) => {
                        for s in segments {
                            let StoredSegment::Object(seg) = s else {
                                continue;
                            };
                            let Some((sc, so)) = split_segment_path(&seg.name) else {
                                continue;
                            };
                            let seg_path = ObjectPath::new(&path.account, sc, so);
                            if seg.sub_slo {
                                if let Err(e) = self.delete_tree(&seg_path, report, depth + 1).await
                                {
                                    tally(report, seg.name.clone(), Err(e));
                                }
                            } else {
                                let r = self.delete(&seg_path).await;
                                tally(report, seg.name.clone(), r);
                            }
                        }
                    }
                    Err(e) => tally(report, name.clone(), Err(e)),
                }
            }
            let r = self.delete(path).await;
            tally(report, name, r);
            Ok(())
        })
    }
}

/// A segment path (`/container/...`) is in `container`.
fn check_within(segment: &str, container: &str) -> ObjectResult<()> {
    let c = segment
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if c == container {
        Ok(())
    } else {
        Err(ObjectError::OutOfScope(format!(
            "a segment in container {c} is outside the reach of this request (container {container})"
        )))
    }
}

fn tally(report: &mut DeleteReport, name: String, result: ObjectResult<()>) {
    match result {
        Ok(()) => report.deleted += 1,
        Err(ObjectError::NoSuchObject) => report.not_found += 1,
        Err(e) => report.errors.push((name, e.to_string())),
    }
}
