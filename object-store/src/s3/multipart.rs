//! Multipart uploads, stored as Swift's s3api stores them: the parts are
//! ordinary objects in the bucket's `<bucket>+segments` container (so they
//! are replicated like any object), an upload is a marker object there
//! holding the future object's metadata, and completing an upload writes a
//! static large object over the parts ([`Objects::put_segments`]), copying
//! no data.

use super::encryption::{self as sse, Shown};
use super::{bucket, checksum, object, tagging};
use crate::proxy::checksums::{self, Algorithm, MultipartKind};
use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::encryption::{CustomerKey, Mode, SealedParts, Sealing, UPLOAD_KEY};
use crate::proxy::manifest::Segment;
use crate::proxy::objects::{
    CopyObject, KeepFromSource, ObjectError, ObjectMeta, ObjectPath, Objects, PutObject, ReadObject,
};
use crate::records::ListingEntry;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Result, TrailingHeaders};
use service_kit::http_util::header_str;
use service_kit::timestamp::Timestamp;

/// Every part but the last must be at least this big.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;

pub fn segments_container(bucket: &str) -> String {
    format!("{bucket}+segments")
}

fn marker_name(key: &str, upload_id: &str) -> String {
    format!("{key}/{upload_id}")
}

fn part_name(key: &str, upload_id: &str, part: i32) -> String {
    format!("{key}/{upload_id}/{part:05}")
}

/// One multipart upload: where its marker and parts are.
struct Upload<'a> {
    account: &'a str,
    bucket: &'a str,
    key: &'a str,
    id: &'a str,
}

impl Upload<'_> {
    fn marker(&self) -> ObjectPath {
        ObjectPath::new(
            self.account,
            segments_container(self.bucket),
            marker_name(self.key, self.id),
        )
    }

    fn part(&self, n: i32) -> ObjectPath {
        ObjectPath::new(
            self.account,
            segments_container(self.bucket),
            part_name(self.key, self.id, n),
        )
    }

    /// The marker's metadata (the final object's), or NoSuchUpload.
    async fn meta(&self, objects: &Objects) -> S3Result<ObjectMeta> {
        if self.id.len() != 32 || !self.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(s3_error!(NoSuchUpload));
        }
        match objects.head_newest(&self.marker()).await {
            Ok(h) => Ok(ObjectMeta::from_stored(&h)),
            Err(ObjectError::NoSuchObject) => {
                bucket::require(objects, self.account, self.bucket).await?;
                Err(s3_error!(NoSuchUpload))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `parts`, then the marker. A part left behind by a failed
    /// delete is only garbage: nothing refers to it.
    async fn end(&self, objects: &Objects, parts: impl IntoIterator<Item = StoredPart>) {
        for part in parts {
            let _ = objects.delete(&self.part(part.number)).await;
        }
        let _ = objects.delete(&self.marker()).await;
    }
}

/// The upload an input names.
macro_rules! upload {
    ($account:expr, $input:expr) => {
        Upload {
            account: $account,
            bucket: &$input.bucket,
            key: &$input.key,
            id: &$input.upload_id,
        }
    };
}

pub async fn create(
    objects: &Objects,
    account: &str,
    input: CreateMultipartUploadInput,
    request: &http::HeaderMap,
) -> S3Result<CreateMultipartUploadOutput> {
    object::check_storage_class(input.storage_class.as_ref())?;
    bucket::require(objects, account, &input.bucket).await?;
    bucket::ensure_container(objects, account, &segments_container(&input.bucket)).await?;
    let upload_id = hex::encode(service_kit::ids::rand_bytes::<16>());
    let mut meta = object::write_meta(
        input.content_type.as_deref(),
        input.metadata.as_ref(),
        request,
    );
    if let Some(t) = header_str(request, "x-amz-tagging") {
        let kept = tagging::encode_tags(&tagging::parse(&t))?;
        meta.system.push((tagging::KEY.into(), kept));
    }
    // How the parts are sealed, kept with the upload (and the object).
    let sealing = sse::sealing_of!(input)?;
    let sealing = sse::or_bucket_default(objects, account, &input.bucket, sealing).await?;
    if let Some(s) = &sealing {
        meta.system.push(SealedParts::of_sealing(s).item());
    }
    // The lock the object will have, kept with the upload.
    super::object_lock::on_write(
        objects,
        account,
        &input.bucket,
        super::object_lock::requested!(input),
        &mut meta,
    )
    .await?;
    // The parts' checksum algorithm and how the object's covers them.
    let algorithm = checksum::named_algorithm(request)?;
    let kind = match header_str(request, "x-amz-checksum-type") {
        Some(t) => Some(MultipartKind::parse(&t).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid."
            )
        })?),
        None => None,
    };
    if kind.is_some() && algorithm.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
        ));
    }
    // Named, the parts must use it; unnamed, each part is checked with
    // what its client sends (CRC64NVME computed if nothing).
    if let Some(algorithm) = algorithm {
        let kind = kind.unwrap_or_else(|| MultipartKind::default_for(algorithm));
        if !kind.allowed(algorithm) {
            return Err(s3_error!(
                InvalidRequest,
                "The {} checksum type is not supported for {}",
                kind.name(),
                algorithm.name().to_uppercase()
            ));
        }
        meta.system
            .push((checksum::ALGORITHM_KEY.into(), algorithm.name().into()));
        meta.system
            .push((checksum::TYPE_KEY.into(), kind.name().into()));
    }
    object::store(
        objects,
        PutObject::empty(
            Upload {
                account,
                bucket: &input.bucket,
                key: &input.key,
                id: &upload_id,
            }
            .marker(),
            meta,
        ),
        None,
    )
    .await?;
    let mut out = CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: algorithm.map(|a| ChecksumAlgorithm::from(a.name().to_uppercase())),
        checksum_type: algorithm.map(|a| {
            ChecksumType::from(
                kind.unwrap_or_else(|| MultipartKind::default_for(a))
                    .name()
                    .to_string(),
            )
        }),
        ..Default::default()
    };
    sse::fill_shown!(out, Shown::of_sealing(sealing.as_ref()));
    Ok(out)
}

/// How an upload's parts are sealed: as its creator asked. Every part of
/// an SSE-C upload needs the same customer key.
fn part_sealing(marker: &ObjectMeta, customer: Option<CustomerKey>) -> S3Result<Option<Sealing>> {
    let parts = marker.system(UPLOAD_KEY).and_then(SealedParts::parse);
    let Some(parts) = parts else {
        return match customer {
            None => Ok(None),
            Some(_) => Err(sse::open_error(
                crate::proxy::encryption::OpenError::NotApplicable,
            )),
        };
    };
    parts.check(customer.as_ref()).map_err(sse::open_error)?;
    Ok(Some(match (parts.mode, customer) {
        (Mode::Customer, Some(c)) => Sealing::Customer(c),
        _ => Sealing::Cluster,
    }))
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

/// The parts' checksum algorithm an upload's creator named, if any.
fn upload_algorithm(marker: &ObjectMeta) -> Option<Algorithm> {
    marker
        .system(checksum::ALGORITHM_KEY)
        .and_then(Algorithm::parse)
}

/// A part's metadata: the final object's comes from the marker.
fn part_meta() -> ObjectMeta {
    ObjectMeta {
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    }
}

pub async fn upload_part(
    objects: &Objects,
    account: &str,
    input: UploadPartInput,
    request: &http::HeaderMap,
    trailers: Option<&TrailingHeaders>,
) -> S3Result<UploadPartOutput> {
    check_part_number(input.part_number)?;
    let marker = upload!(account, input).meta(objects).await?;
    let named = upload_algorithm(&marker);
    let check = checksum::requested(request, trailers, named.unwrap_or(Algorithm::Crc64Nvme))?;
    if let Some(algorithm) = named.filter(|a| *a != check.algorithm) {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            algorithm.name(),
            check.algorithm.name()
        ));
    }
    let sealing = part_sealing(&marker, sse::customer_key_of!(input)?)?;
    let shown = Shown::of_sealing(sealing.as_ref());
    let (body, broke) = object::blob_body(input.body);
    let written = object::store(
        objects,
        PutObject {
            path: upload!(account, input).part(input.part_number),
            length: input.content_length.map(|n| n.max(0) as u64),
            meta: part_meta(),
            checksum: Some(check),
            expected_md5: object::content_md5(request)?,
            condition: None,
            sealing,
            at: None,
            body,
        },
        Some(&broke),
    )
    .await?;
    let sums = object::written_checksum(&written);
    let mut out = UploadPartOutput {
        e_tag: Some(ETag::Strong(written.etag)),
        ..Default::default()
    };
    sse::fill_shown!(out, shown);
    checksum::fill_checksums!(out, sums);
    Ok(out)
}

pub async fn upload_part_copy(
    objects: &Objects,
    account: &str,
    input: UploadPartCopyInput,
) -> S3Result<UploadPartCopyOutput> {
    check_part_number(input.part_number)?;
    let marker = upload!(account, input).meta(objects).await?;
    let sealing = part_sealing(&marker, sse::customer_key_of!(input)?)?;
    let shown = Shown::of_sealing(sealing.as_ref());
    let source_key = sse::customer_key(
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    if let Some(range) = &input.copy_source_range {
        check_copy_range(objects, account, &input.copy_source, range, &source_key).await?;
    }
    let written = object::copy_object(
        objects,
        CopyObject {
            from: object::copy_source(account, &input.copy_source)?,
            to: upload!(account, input).part(input.part_number),
            conditions: object::conditions(
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                None,
                None,
            ),
            range: input.copy_source_range.clone(),
            meta: part_meta(),
            keep: KeepFromSource::Nothing,
            checksum: Some(upload_algorithm(&marker).unwrap_or(Algorithm::Crc64Nvme)),
            carry_system: Vec::new(),
            manifest: false,
            segments_within: None,
            symlink: false,
            source_version: None,
            source_key,
            source_stored_at: None,
            sealing,
        },
    )
    .await?;
    let sums = object::written_checksum(&written);
    let mut result = CopyPartResult {
        e_tag: Some(ETag::Strong(written.etag)),
        last_modified: Some(written.last_modified.to_system_time().into()),
        ..Default::default()
    };
    checksum::fill_checksums!(result, sums);
    let mut out = UploadPartCopyOutput {
        copy_part_result: Some(result),
        ..Default::default()
    };
    sse::fill_shown!(out, shown);
    Ok(out)
}

/// `x-amz-copy-source-range` must be `bytes=first-last` inside the source
/// (a read would clamp a range that runs past the end; S3 refuses it).
async fn check_copy_range(
    objects: &Objects,
    account: &str,
    source: &CopySource,
    range: &str,
    source_key: &Option<CustomerKey>,
) -> S3Result<()> {
    let invalid = || s3_error!(InvalidRange, "The requested range is not satisfiable");
    let (first, last) = range
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
            )
        })?;
    let from = object::copy_source(account, source)?;
    let size = objects
        .get(ReadObject {
            head: true,
            customer_key: source_key.clone(),
            ..ReadObject::of(from)
        })
        .await?
        .info()
        .length;
    if first >= size || last >= size {
        return Err(invalid());
    }
    Ok(())
}

/// One part as its replicas describe it.
struct HeadedPart {
    etag: String,
    size: u64,
    meta: ObjectMeta,
}

/// One part, asked of its replicas.
async fn head_part(objects: &Objects, path: &ObjectPath) -> S3Result<Option<HeadedPart>> {
    match objects.head_newest(path).await {
        Ok(h) => {
            let etag = header_str(&h, "etag")
                .unwrap_or_default()
                .trim_matches('"')
                .to_string();
            let size = header_str(&h, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok(Some(HeadedPart {
                etag,
                size,
                meta: ObjectMeta::from_stored(&h),
            }))
        }
        Err(ObjectError::NoSuchObject) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A part as the listing shows it.
struct StoredPart {
    number: i32,
    etag: String,
    size: u64,
    modified: Timestamp,
}

/// The parts stored so far, in order.
async fn stored_parts(objects: &Objects, upload: &Upload<'_>) -> S3Result<Vec<StoredPart>> {
    let prefix = format!("{}/", marker_name(upload.key, upload.id));
    let query = ListQuery {
        prefix: prefix.clone(),
        ..Default::default()
    };
    let target = ListTarget::Container(upload.account.into(), segments_container(upload.bucket));
    let entries = match objects.list_all(&target, query, usize::MAX).await {
        Ok(e) => e,
        Err(ObjectError::NoSuchContainer) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(entries
        .into_iter()
        .filter_map(|e| match e {
            ListingEntry::Object {
                name,
                hash,
                bytes,
                last_modified,
                ..
            } => Some(StoredPart {
                number: name.strip_prefix(&prefix)?.parse().ok()?,
                etag: hash,
                size: bytes,
                modified: Timestamp::from_iso8601(&last_modified).unwrap_or_default(),
            }),
            _ => None,
        })
        .collect())
}

pub async fn list_parts(
    objects: &Objects,
    account: &str,
    input: ListPartsInput,
) -> S3Result<ListPartsOutput> {
    upload!(account, input).meta(objects).await?;
    let after = input.part_number_marker.unwrap_or(0);
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let all: Vec<StoredPart> = stored_parts(objects, &upload!(account, input))
        .await?
        .into_iter()
        .filter(|p| p.number > after)
        .collect();
    let truncated = all.len() > max;
    let parts: Vec<Part> = all
        .into_iter()
        .take(max)
        .map(|p| Part {
            part_number: Some(p.number),
            e_tag: Some(ETag::Strong(p.etag)),
            size: Some(p.size as i64),
            last_modified: Some(p.modified.to_system_time().into()),
            ..Default::default()
        })
        .collect();
    Ok(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: if truncated {
            parts.last().and_then(|p| p.part_number)
        } else {
            None
        },
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(parts),
        ..Default::default()
    })
}

pub async fn complete(
    objects: &Objects,
    account: &str,
    input: CompleteMultipartUploadInput,
) -> S3Result<CompleteMultipartUploadOutput> {
    let condition = object::write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let marker = match upload!(account, input).meta(objects).await {
        Ok(m) => m,
        // A retry of a completion that succeeded (its answer was lost):
        // success again while the object is the one it made, as S3 and
        // Swift's s3api answer.
        Err(e) => return completed_before(objects, account, &input).await.ok_or(e),
    };
    let requested = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if requested.is_empty() {
        return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
    }
    // The list is checked as a whole before any part is: parts out of
    // order are InvalidPartOrder whatever their sizes.
    let numbers: Vec<Option<i32>> = requested.iter().map(|p| p.part_number).collect();
    if numbers.iter().any(Option::is_none) {
        return Err(s3_error!(InvalidPart));
    }
    if numbers.windows(2).any(|w| w[1] <= w[0]) {
        return Err(s3_error!(InvalidPartOrder));
    }
    let stored = stored_parts(objects, &upload!(account, input)).await?;
    let named = upload_algorithm(&marker);
    let mut part_sums: Vec<(Option<(Algorithm, String)>, u64)> =
        Vec::with_capacity(requested.len());
    let mut segments = Vec::with_capacity(requested.len());
    let mut md5_of_md5s = Md5::new();
    for (i, p) in requested.iter().enumerate() {
        let n = p.part_number.ok_or_else(|| s3_error!(InvalidPart))?;
        // Each named part is read back from its replicas rather than from
        // the listing, which may lag behind the uploads.
        let path = upload!(account, input).part(n);
        let HeadedPart { etag, size, meta } = head_part(objects, &path)
            .await?
            .ok_or_else(|| s3_error!(InvalidPart))?;
        // A part's checksum as stored; one the client names must match.
        let sum = checksum::stored(&meta).map(|(a, v, _)| (a, v));
        for a in Algorithm::ALL {
            if let Some(given) = checksum::Fields::of_part(p, a) {
                if sum.as_ref().map(|(sa, v)| (*sa, v.as_str())) != Some((a, given.trim())) {
                    return Err(s3_error!(
                        InvalidPart,
                        "The {} of part {n} does not match the uploaded part's",
                        a.header()
                    ));
                }
            }
        }
        part_sums.push((sum, size));
        if p.e_tag
            .as_ref()
            .is_some_and(|e| e.value().trim_matches('"') != etag)
        {
            return Err(s3_error!(InvalidPart));
        }
        if size < MIN_PART_SIZE && i + 1 < requested.len() {
            return Err(s3_error!(EntityTooSmall));
        }
        md5_of_md5s.update(hex::decode(&etag).map_err(|_| s3_error!(InternalError))?);
        segments.push(Segment {
            name: format!("/{}/{}", path.container, path.object),
            hash: etag,
            bytes: size,
            content_type: "application/octet-stream".into(),
            last_modified: String::new(),
            range: None,
            sub_slo: false,
        });
    }
    let s3_etag = format!(
        "{}-{}",
        hex::encode(md5_of_md5s.finalize()),
        requested.len()
    );
    // The object's checksum from the parts'.
    let kind_named = marker
        .system(checksum::TYPE_KEY)
        .and_then(MultipartKind::parse);
    let object_sum = checksum_of_parts(named, kind_named, &part_sums);
    let shown_sse = Shown::of_meta(&marker).sse;
    let mut meta = marker;
    meta.system.retain(|(k, _)| !k.starts_with("s3-checksum"));
    if let Some((algorithm, kind, v)) = &object_sum {
        meta.system.push((algorithm.sysmeta_key(), v.clone()));
        meta.system
            .push((checksum::TYPE_KEY.into(), kind.name().into()));
    }
    meta.system.push(("s3-etag".into(), s3_etag.clone()));
    meta.system
        .push((UPLOAD_ID_KEY.into(), input.upload_id.clone()));
    let path = ObjectPath::new(account, &input.bucket, &input.key);
    let write = objects.put_segments(&path, meta, &segments);
    let written = match &condition {
        None => write.await?,
        Some(c) => objects.write_if(&path, c, write).await?,
    };
    // The upload is over; parts not named in the manifest are garbage.
    let used: std::collections::HashSet<i32> =
        requested.iter().filter_map(|p| p.part_number).collect();
    let unused = stored.into_iter().filter(|p| !used.contains(&p.number));
    upload!(account, input).end(objects, unused).await;
    let mut out = CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(s3_etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id: written.version_id,
        server_side_encryption: shown_sse,
        ..Default::default()
    };
    let sums = checksum::Fields::of(object_sum.map(|(a, k, v)| (a, v, k)));
    checksum::fill_checksums!(typed out, sums);
    Ok(out)
}

/// The object system metadata naming the upload that made an object.
const UPLOAD_ID_KEY: &str = "s3-upload-id";

/// The answer to a completion already made: the key's current object, if
/// the upload named made it.
async fn completed_before(
    objects: &Objects,
    account: &str,
    input: &CompleteMultipartUploadInput,
) -> Option<CompleteMultipartUploadOutput> {
    let path = ObjectPath::new(account, &input.bucket, &input.key);
    let head = ReadObject {
        head: true,
        ..ReadObject::of(path)
    };
    let info = objects.get(head).await.ok()?.info();
    if info.meta.system(UPLOAD_ID_KEY) != Some(input.upload_id.as_str()) {
        return None;
    }
    let mut out = CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(info.meta.system("s3-etag")?.to_string())),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id: info
            .meta
            .system(crate::proxy::object_versions::VERSION_ID_KEY)
            .map(str::to_string),
        ..Default::default()
    };
    let sums = checksum::Fields::of(checksum::stored(&info.meta));
    checksum::fill_checksums!(typed out, sums);
    Some(out)
}

/// The object's checksum from its parts' `(checksum, size)`: with the
/// upload's named algorithm and kind, or, where none was named, with the
/// one algorithm every part used (in its default kind). `None` when a part
/// has none (stored before checksums were kept) or parts differ.
fn checksum_of_parts(
    named: Option<Algorithm>,
    kind: Option<MultipartKind>,
    parts: &[(Option<(Algorithm, String)>, u64)],
) -> Option<(Algorithm, MultipartKind, String)> {
    let algorithm = match named {
        Some(a) => a,
        None => parts.first()?.0.as_ref()?.0,
    };
    let values: Vec<(String, u64)> = parts
        .iter()
        .map(|(sum, size)| match sum {
            Some((a, v)) if *a == algorithm => Some((v.clone(), *size)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let kind = kind.unwrap_or_else(|| MultipartKind::default_for(algorithm));
    let value = checksums::multipart(algorithm, kind, &values)?;
    Some((algorithm, kind, value))
}

pub async fn abort(
    objects: &Objects,
    account: &str,
    input: AbortMultipartUploadInput,
) -> S3Result<AbortMultipartUploadOutput> {
    abort_upload(
        objects,
        account,
        &input.bucket,
        &input.key,
        &input.upload_id,
    )
    .await?;
    Ok(AbortMultipartUploadOutput::default())
}

/// Removes an upload's parts and marker (AbortMultipartUpload, and the
/// lifecycle rules' `AbortIncompleteMultipartUpload`).
pub(crate) async fn abort_upload(
    objects: &Objects,
    account: &str,
    bucket: &str,
    key: &str,
    id: &str,
) -> S3Result<()> {
    let upload = Upload {
        account,
        bucket,
        key,
        id,
    };
    upload.meta(objects).await?;
    let parts = stored_parts(objects, &upload).await?;
    upload.end(objects, parts).await;
    Ok(())
}

/// A marker's name is `<key>/<32 hex upload id>`.
pub(crate) fn parse_marker(name: &str) -> Option<(&str, &str)> {
    let (key, id) = name.rsplit_once('/')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((key, id))
}

/// ListMultipartUploads: the uploads in progress by key (then id), after
/// `key-marker` (and, for that key, after `upload-id-marker`); with a
/// delimiter, keys past it are grouped into common prefixes, each counted
/// once and listed once.
pub async fn list_uploads(
    objects: &Objects,
    account: &str,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    bucket::require(objects, account, &input.bucket).await?;
    let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
    let prefix = input.prefix.clone().unwrap_or_default();
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input
        .upload_id_marker
        .clone()
        .filter(|m| !m.is_empty() && !key_marker.is_empty());
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let grouped = |key: &str| super::common_prefix(key, &prefix, delimiter.as_deref());
    // Whether an upload comes after the markers.
    let after_markers = |key: &str, id: &str| match key.cmp(key_marker.as_str()) {
        std::cmp::Ordering::Greater => grouped(key).is_none_or(|p| p != key_marker),
        std::cmp::Ordering::Equal => id_marker.as_deref().is_some_and(|m| id > m),
        std::cmp::Ordering::Less => false,
    };
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    // What was listed last: an upload's key and id, or a common prefix.
    let mut last: Option<(String, Option<String>)> = None;
    // Every entry of a key is named `<key>/...`, after the key itself.
    let mut query = ListQuery {
        prefix: prefix.clone(),
        marker: key_marker.clone(),
        ..Default::default()
    };
    let target = ListTarget::Container(account.into(), segments_container(&input.bucket));
    let mut truncated = false;
    'pages: loop {
        let page = match objects.list(&target, &query).await {
            Ok(p) => p.entries,
            Err(ObjectError::NoSuchContainer) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let Some(end) = page.last() else {
            break;
        };
        query.marker = end.name().to_string();
        for e in &page {
            let ListingEntry::Object {
                name,
                last_modified,
                ..
            } = e
            else {
                continue;
            };
            let Some((key, id)) = parse_marker(name) else {
                continue;
            };
            if !after_markers(key, id) {
                continue;
            }
            if let Some(p) = grouped(key) {
                if prefixes.last() == Some(&p) {
                    continue;
                }
                if uploads.len() + prefixes.len() == max {
                    truncated = true;
                    break 'pages;
                }
                last = Some((p.clone(), None));
                prefixes.push(p);
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break 'pages;
            }
            let initiated = Timestamp::from_iso8601(last_modified).unwrap_or_default();
            last = Some((key.to_string(), Some(id.to_string())));
            uploads.push(MultipartUpload {
                key: Some(key.to_string()),
                upload_id: Some(id.to_string()),
                initiated: Some(initiated.to_system_time().into()),
                ..Default::default()
            });
        }
    }
    let (next_key, next_id) = match (truncated, last) {
        (true, Some((key, id))) => (Some(key), id),
        _ => (None, None),
    };
    Ok(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        delimiter: input.delimiter,
        common_prefixes: Some(
            prefixes
                .into_iter()
                .map(|p| CommonPrefix { prefix: Some(p) })
                .collect(),
        ),
        uploads: Some(uploads),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_marker(&marker_name("a/b", id)), Some(("a/b", id)));
        assert_eq!(parse_marker(&part_name("a/b", id, 7)), None);
        assert_eq!(part_name("k", id, 7), format!("k/{id}/00007"));
    }
}
