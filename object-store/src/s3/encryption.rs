//! Server-side encryption through S3: the SSE headers of writes and reads
//! as the object layer's sealing ([`crate::proxy::encryption`]), what S3
//! shows back, and a bucket's default encryption
//! (Put/Get/DeleteBucketEncryption, container system metadata).
//!
//! - SSE-S3 is `x-amz-server-side-encryption: AES256`.
//! - SSE-C is the three `x-amz-server-side-encryption-customer-*` headers
//!   (and the `x-amz-copy-source-…` ones for a copy's source).
//! - KMS is not offered: `aws:kms` is refused.
//! - Unlike AWS, SSE-C is taken over plain HTTP: the proxy has no TLS of
//!   its own and is meant to sit behind a TLS terminator.

use super::bucket;
use crate::proxy::encryption::{self, CustomerKey, KeyError, Mode, OpenError, Sealing};
use crate::proxy::objects::{ObjectMeta, Objects};

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};
use service_kit::http_util::header_str;

/// The container system metadata header of a bucket's default encryption
/// (the object layer applies it to every write, Swift's too).
pub const BUCKET_HEADER: &str = encryption::DEFAULT_HEADER;

impl From<KeyError> for S3Error {
    fn from(e: KeyError) -> S3Error {
        match e {
            KeyError::Algorithm => s3_error!(InvalidEncryptionAlgorithmError, "{e}"),
            KeyError::Key | KeyError::Md5 | KeyError::Incomplete => {
                s3_error!(InvalidArgument, "{e}")
            }
        }
    }
}

/// How a sealed body that cannot be opened is refused.
pub fn open_error(e: OpenError) -> S3Error {
    match e {
        OpenError::KeyNeeded => s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        ),
        OpenError::WrongKey => s3_error!(
            AccessDenied,
            "The provided customer key does not match the one the object was encrypted with."
        ),
        OpenError::NotApplicable => s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        ),
        OpenError::NoMasterKey => s3_error!(
            InternalError,
            "Server-side encryption is not configured on this server."
        ),
    }
}

/// The customer key SSE-C headers give, checked.
pub fn customer_key(
    algorithm: Option<&str>,
    key: Option<&str>,
    md5: Option<&str>,
) -> S3Result<Option<CustomerKey>> {
    Ok(CustomerKey::parse(algorithm, key, md5)?)
}

/// The sealing a write's headers ask for.
pub fn requested(
    sse: Option<&ServerSideEncryption>,
    algorithm: Option<&str>,
    key: Option<&str>,
    md5: Option<&str>,
) -> S3Result<Option<Sealing>> {
    let customer = customer_key(algorithm, key, md5)?;
    match (sse.map(|s| s.as_str()), customer) {
        (None, None) => Ok(None),
        (None, Some(c)) => Ok(Some(Sealing::Customer(c))),
        (Some(ServerSideEncryption::AES256), None) => Ok(Some(Sealing::Cluster)),
        (Some(ServerSideEncryption::AES256), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        )),
        (Some(_), _) => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with KMS managed keys is not supported; use AES256"
        )),
    }
}

/// The sealing a write's SSE headers ask for (`$input` has S3's four SSE
/// fields).
macro_rules! sealing_of {
    ($input:expr) => {
        $crate::s3::encryption::requested(
            $input.server_side_encryption.as_ref(),
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
}
pub(crate) use sealing_of;

/// The customer key a request's SSE-C headers give.
macro_rules! customer_key_of {
    ($input:expr) => {
        $crate::s3::encryption::customer_key(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
}
pub(crate) use customer_key_of;

/// A write's sealing: what it asks for, else the bucket's default.
pub async fn or_bucket_default(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    asked: Option<Sealing>,
) -> S3Result<Option<Sealing>> {
    if asked.is_some() {
        return Ok(asked);
    }
    let container = objects.container_meta(account, bucket_name).await?;
    Ok(encryption::container_default(&container))
}

/// What S3 shows of an object's sealing (on its writes and reads).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shown {
    pub sse: Option<ServerSideEncryption>,
    pub algorithm: Option<String>,
    pub key_md5: Option<String>,
}

impl Shown {
    pub fn of_sealing(s: Option<&Sealing>) -> Shown {
        match s {
            None => Shown::default(),
            Some(s) => Shown::of_parts(&encryption::SealedParts::of_sealing(s)),
        }
    }

    fn of_parts(p: &encryption::SealedParts) -> Shown {
        match p.mode {
            Mode::Cluster => Shown {
                sse: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AES256,
                )),
                ..Default::default()
            },
            Mode::Customer => Shown {
                sse: None,
                algorithm: Some("AES256".into()),
                key_md5: p.customer_md5.clone(),
            },
        }
    }

    /// As an object's stored metadata says (a sealed body, or a large
    /// object over sealed parts).
    pub fn of_meta(meta: &ObjectMeta) -> Shown {
        let sealed = meta.system(encryption::SEAL_KEY);
        let parts = meta.system(encryption::UPLOAD_KEY);
        encryption::shown(sealed, parts)
            .map(|p| Shown::of_parts(&p))
            .unwrap_or_default()
    }
}

/// Sets an S3 output's SSE fields.
macro_rules! fill_shown {
    ($out:expr, $shown:expr) => {{
        let shown = $shown;
        $out.server_side_encryption = shown.sse;
        $out.sse_customer_algorithm = shown.algorithm;
        $out.sse_customer_key_md5 = shown.key_md5;
    }};
}
pub(crate) use fill_shown;

/// PutBucketEncryption: one rule, SSE-S3 by default.
pub async fn put_bucket(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    config: &ServerSideEncryptionConfiguration,
) -> S3Result<()> {
    bucket::require(objects, account, bucket_name).await?;
    let [rule] = config.rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    };
    let Some(default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "ApplyServerSideEncryptionByDefault is required"
        ));
    };
    if default.sse_algorithm.as_str() != ServerSideEncryption::AES256 {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with KMS managed keys is not supported; use AES256"
        ));
    }
    bucket::set_config(
        objects,
        account,
        bucket_name,
        BUCKET_HEADER,
        ServerSideEncryption::AES256,
    )
    .await
}

/// GetBucketEncryption.
pub async fn get_bucket(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
) -> S3Result<ServerSideEncryptionConfiguration> {
    let container = objects.container_meta(account, bucket_name).await?;
    match header_str(&container, BUCKET_HEADER) {
        Some(alg) if !alg.is_empty() => Ok(ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    sse_algorithm: ServerSideEncryption::from(alg.into_owned()),
                    kms_master_key_id: None,
                }),
                bucket_key_enabled: Some(false),
            }],
        }),
        _ => Err(s3_error!(
            ServerSideEncryptionConfigurationNotFoundError,
            "The server side encryption configuration was not found"
        )),
    }
}

/// DeleteBucketEncryption.
pub async fn delete_bucket(objects: &Objects, account: &str, bucket_name: &str) -> S3Result<()> {
    bucket::require(objects, account, bucket_name).await?;
    bucket::set_config(objects, account, bucket_name, BUCKET_HEADER, "").await
}
