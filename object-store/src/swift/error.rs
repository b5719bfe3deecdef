//! Swift's errors: every failure of the Swift API, from the object layer
//! or from parsing a request, written as Swift writes it (status, a short
//! plain-text body, and the headers a client needs).

use crate::proxy::objects::ObjectError;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use service_kit::api_error::ApiError;
use service_kit::http_util::set_header;

#[derive(Debug, thiserror::Error)]
pub enum SwiftError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{0}")]
    BadRequest(String),
    /// 412 for a request that cannot be served as asked (bad listing
    /// parameters, a malformed copy source).
    #[error("{0}")]
    Precondition(String),
    #[error("Missing Content-Length or Transfer-Encoding: chunked")]
    LengthRequired,
    #[error("Manifest too large")]
    ManifestTooLarge,
    #[error("{0}")]
    NotImplemented(String),
    #[error("Forbidden")]
    Forbidden,
}

impl ApiError for SwiftError {
    fn status(&self) -> StatusCode {
        match self {
            SwiftError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SwiftError::Precondition(_) => StatusCode::PRECONDITION_FAILED,
            SwiftError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            SwiftError::ManifestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SwiftError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            SwiftError::Forbidden => StatusCode::FORBIDDEN,
            SwiftError::Object(e) => match e {
                ObjectError::NoSuchContainer
                | ObjectError::NoSuchObject
                | ObjectError::NoSuchVersion
                | ObjectError::DeleteMarker { .. } => StatusCode::NOT_FOUND,
                ObjectError::TooLarge | ObjectError::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
                ObjectError::OutOfScope(_) | ObjectError::Retained(_) => StatusCode::FORBIDDEN,
                ObjectError::InvalidState(_) => StatusCode::CONFLICT,
                ObjectError::BadDigest => StatusCode::UNPROCESSABLE_ENTITY,
                ObjectError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
                ObjectError::NotModified { .. } => StatusCode::NOT_MODIFIED,
                ObjectError::RangeNotSatisfiable { .. } | ObjectError::NoSuchPart { .. } => {
                    StatusCode::RANGE_NOT_SATISFIABLE
                }
                ObjectError::MetadataInvalid(_)
                | ObjectError::InvalidArgument(_)
                | ObjectError::ManifestInvalid(_) => StatusCode::BAD_REQUEST,
                ObjectError::ContainerNotEmpty
                | ObjectError::ConditionalConflict
                | ObjectError::Broken(_) => StatusCode::CONFLICT,
                // Swift accepts a write older than what is stored, and
                // keeps the newer one.
                ObjectError::Superseded { .. } => StatusCode::ACCEPTED,
                ObjectError::Unavailable(s) => *s,
                // An SSE-C object (S3 only) cannot be read without its key.
                ObjectError::Sealed(crate::proxy::encryption::OpenError::NoMasterKey) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                ObjectError::Sealed(_) => StatusCode::FORBIDDEN,
                ObjectError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            },
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        match self {
            SwiftError::Object(ObjectError::NotModified { etag }) => {
                set_header(&mut h, "etag", etag);
                set_header(&mut h, "accept-ranges", "bytes");
            }
            SwiftError::Object(ObjectError::PreconditionFailed { etag: Some(etag) }) => {
                set_header(&mut h, "etag", etag);
            }
            SwiftError::Object(ObjectError::RangeNotSatisfiable { size: Some(size) }) => {
                set_header(&mut h, "content-range", &format!("bytes */{size}"));
            }
            _ => {}
        }
        h
    }

    fn body(&self) -> (&'static str, Bytes) {
        let text = match self {
            SwiftError::Object(ObjectError::NoSuchContainer) => "Container not found".into(),
            SwiftError::Object(ObjectError::BadDigest) => {
                "Unprocessable Entity: the ETag does not match the body".into()
            }
            SwiftError::Object(
                ObjectError::NoSuchObject
                | ObjectError::NoSuchVersion
                | ObjectError::DeleteMarker { .. }
                | ObjectError::NotModified { .. }
                | ObjectError::PreconditionFailed { .. }
                | ObjectError::RangeNotSatisfiable { .. }
                | ObjectError::Superseded { .. }
                | ObjectError::Unavailable(_),
            ) => return ("", Bytes::new()),
            e => e.to_string(),
        };
        ("text/plain; charset=utf-8", Bytes::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_errors_map_to_swift_statuses() {
        let cases = [
            (ObjectError::NoSuchObject, 404),
            (ObjectError::TooLarge, 413),
            (ObjectError::BadDigest, 422),
            (ObjectError::ContainerNotEmpty, 409),
            (ObjectError::Superseded { etag: None }, 202),
            (ObjectError::MetadataInvalid("x".into()), 400),
            (
                ObjectError::Unavailable(StatusCode::INSUFFICIENT_STORAGE),
                507,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(SwiftError::from(e).status().as_u16(), want);
        }
        let r = SwiftError::from(ObjectError::RangeNotSatisfiable { size: Some(9) }).response();
        assert_eq!(r.headers()["content-range"], "bytes */9");
    }
}
