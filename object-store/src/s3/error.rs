//! The object layer's errors as S3 errors: the one place S3 decides which
//! error code a failure is (s3s writes the XML).

use crate::proxy::objects::ObjectError;
use s3s::{s3_error, S3Error};

impl From<ObjectError> for S3Error {
    fn from(e: ObjectError) -> S3Error {
        match e {
            ObjectError::NoSuchContainer => s3_error!(NoSuchBucket),
            ObjectError::NoSuchObject => s3_error!(NoSuchKey),
            ObjectError::NoSuchVersion => s3_error!(NoSuchVersion),
            ObjectError::DeleteMarker { .. } => s3_error!(MethodNotAllowed),
            ObjectError::TooLarge => s3_error!(EntityTooLarge),
            ObjectError::QuotaExceeded => s3_error!(EntityTooLarge, "{e}"),
            ObjectError::BadDigest => s3_error!(BadDigest),
            ObjectError::PreconditionFailed { .. } => s3_error!(PreconditionFailed),
            ObjectError::NotModified { .. } => s3_error!(NotModified),
            ObjectError::RangeNotSatisfiable { .. } => s3_error!(InvalidRange),
            // S3's code for it, which s3s does not name.
            ObjectError::NoSuchPart { .. } => {
                let mut err = S3Error::with_message(
                    s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
                    e.to_string(),
                );
                err.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                err
            }
            ObjectError::MetadataInvalid(m) => s3_error!(MetadataTooLarge, "{m}"),
            ObjectError::InvalidArgument(m) => s3_error!(InvalidArgument, "{m}"),
            ObjectError::ManifestInvalid(m) => s3_error!(InvalidPart, "{m}"),
            ObjectError::Broken(m) => s3_error!(InternalError, "{m}"),
            ObjectError::OutOfScope(m) => s3_error!(AccessDenied, "{m}"),
            ObjectError::Retained(why) => s3_error!(AccessDenied, "Access Denied because {why}"),
            ObjectError::InvalidState(m) => s3_error!(InvalidBucketState, "{m}"),
            ObjectError::ContainerNotEmpty => s3_error!(BucketNotEmpty),
            ObjectError::ConditionalConflict => s3_error!(ConditionalRequestConflict, "{e}"),
            ObjectError::Superseded { .. } | ObjectError::Unavailable(_) => {
                s3_error!(ServiceUnavailable)
            }
            ObjectError::Sealed(e) => super::encryption::open_error(e),
            ObjectError::LengthRequired => s3_error!(MissingContentLength, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    #[test]
    fn object_errors_map_to_s3_codes() {
        let cases = [
            (ObjectError::NoSuchContainer, S3ErrorCode::NoSuchBucket),
            (ObjectError::NoSuchObject, S3ErrorCode::NoSuchKey),
            (ObjectError::BadDigest, S3ErrorCode::BadDigest),
            (ObjectError::ContainerNotEmpty, S3ErrorCode::BucketNotEmpty),
            (
                ObjectError::ConditionalConflict,
                S3ErrorCode::ConditionalRequestConflict,
            ),
            (
                ObjectError::RangeNotSatisfiable { size: None },
                S3ErrorCode::InvalidRange,
            ),
            (
                ObjectError::Unavailable(http::StatusCode::INSUFFICIENT_STORAGE),
                S3ErrorCode::ServiceUnavailable,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(*S3Error::from(e).code(), code);
        }
    }
}
