//! S3's checksum headers: which checksum a write asks for and where its
//! value comes from (a header, or an aws-chunked trailer read once the
//! body has ended), and the stored checksum as output fields. The
//! computing and checking is the object layer's
//! ([`crate::proxy::checksums`]).

use crate::proxy::checksums::{Algorithm, ChecksumCheck, Expected, MultipartKind};
use crate::proxy::objects::ObjectMeta;
use http::HeaderMap;
use s3s::{s3_error, S3Result, TrailingHeaders};
use service_kit::http_util::header_str;

/// System metadata keys for a multipart upload's (and object's) algorithm
/// and kind.
pub const ALGORITHM_KEY: &str = "s3-checksum-algorithm";
pub const TYPE_KEY: &str = "s3-checksum-type";

/// The algorithm a request names in `x-amz-sdk-checksum-algorithm` or
/// `x-amz-checksum-algorithm`.
pub fn named_algorithm(headers: &HeaderMap) -> S3Result<Option<Algorithm>> {
    for name in ["x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm"] {
        if let Some(v) = header_str(headers, name) {
            return Algorithm::parse(&v).map(Some).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "Value for x-amz-checksum-algorithm header is invalid."
                )
            });
        }
    }
    Ok(None)
}

/// The checksum a write computes and checks. The algorithm comes from a
/// value header, the `x-amz-trailer` header or an algorithm header; with
/// none, `default` (CRC64NVME, as S3 computes for every upload since 2025,
/// or a multipart upload's algorithm).
pub fn requested(
    headers: &HeaderMap,
    trailers: Option<&TrailingHeaders>,
    default: Algorithm,
) -> S3Result<ChecksumCheck> {
    let values: Vec<(Algorithm, String)> = Algorithm::ALL
        .into_iter()
        .filter_map(|a| header_str(headers, &a.header()).map(|v| (a, v.into_owned())))
        .collect();
    if values.len() > 1 {
        return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        ));
    }
    let named = named_algorithm(headers)?;
    let trailer = match header_str(headers, "x-amz-trailer") {
        Some(t) => Some(
            Algorithm::ALL
                .into_iter()
                .find(|a| a.header().eq_ignore_ascii_case(t.trim()))
                .ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "The value specified in the x-amz-trailer header is not supported"
                    )
                })?,
        ),
        None => None,
    };
    let check = if let Some((algorithm, value)) = values.into_iter().next() {
        if algorithm.decode(&value).is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "Value for {} header is invalid.",
                algorithm.header()
            ));
        }
        ChecksumCheck {
            algorithm,
            expected: Expected::Value(value),
        }
    } else if let Some(algorithm) = trailer {
        let Some(trailers) = trailers.cloned() else {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-trailer needs an aws-chunked body with trailers"
            ));
        };
        let name = algorithm.header();
        ChecksumCheck {
            algorithm,
            expected: Expected::Trailer(Box::new(move || {
                trailers
                    .read(|h| header_str(h, &name).map(|v| v.into_owned()))
                    .flatten()
            })),
        }
    } else {
        ChecksumCheck {
            algorithm: named.unwrap_or(default),
            expected: Expected::Nothing,
        }
    };
    if named.is_some_and(|n| n != check.algorithm) {
        return Err(s3_error!(
            InvalidRequest,
            "Value for x-amz-sdk-checksum-algorithm header is invalid."
        ));
    }
    Ok(check)
}

/// A stored checksum: algorithm, value (a composite one ends `-N`), kind.
pub fn stored(meta: &ObjectMeta) -> Option<(Algorithm, String, MultipartKind)> {
    let (algorithm, value) = Algorithm::ALL
        .into_iter()
        .find_map(|a| meta.system(&a.sysmeta_key()).map(|v| (a, v.to_string())))?;
    let kind = meta
        .system(TYPE_KEY)
        .and_then(MultipartKind::parse)
        .unwrap_or(MultipartKind::FullObject);
    Some((algorithm, value, kind))
}

/// One checksum as S3's output fields (one field set, the rest `None`).
#[derive(Default)]
pub struct Fields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub kind: Option<s3s::dto::ChecksumType>,
}

impl Fields {
    pub fn of(checksum: Option<(Algorithm, String, MultipartKind)>) -> Fields {
        let Some((algorithm, value, kind)) = checksum else {
            return Fields::default();
        };
        let mut f = Fields {
            kind: Some(s3s::dto::ChecksumType::from(kind.name().to_string())),
            ..Default::default()
        };
        let slot = match algorithm {
            Algorithm::Crc32 => &mut f.crc32,
            Algorithm::Crc32c => &mut f.crc32c,
            Algorithm::Crc64Nvme => &mut f.crc64nvme,
            Algorithm::Sha1 => &mut f.sha1,
            Algorithm::Sha256 => &mut f.sha256,
        };
        *slot = Some(value);
        f
    }

    /// The value a completed part names for `algorithm`.
    pub fn of_part(part: &s3s::dto::CompletedPart, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Crc32 => part.checksum_crc32.as_deref(),
            Algorithm::Crc32c => part.checksum_crc32c.as_deref(),
            Algorithm::Crc64Nvme => part.checksum_crc64nvme.as_deref(),
            Algorithm::Sha1 => part.checksum_sha1.as_deref(),
            Algorithm::Sha256 => part.checksum_sha256.as_deref(),
        }
    }
}

/// Sets an S3 output's checksum fields from [`Fields`] (`typed`: its
/// `checksum_type` too, for the outputs that have one), so each output is
/// filled the same way.
macro_rules! fill_checksums {
    (typed $out:expr, $sums:expr) => {{
        let sums: $crate::s3::checksum::Fields = $sums;
        $out.checksum_type = sums.kind.clone();
        $crate::s3::checksum::fill_checksums!($out, sums);
    }};
    ($out:expr, $sums:expr) => {{
        let sums: $crate::s3::checksum::Fields = $sums;
        $out.checksum_crc32 = sums.crc32;
        $out.checksum_crc32c = sums.crc32c;
        $out.checksum_crc64nvme = sums.crc64nvme;
        $out.checksum_sha1 = sums.sha1;
        $out.checksum_sha256 = sums.sha256;
    }};
}
pub(crate) use fill_checksums;
