//! S3 Object Lock on the object layer's retention
//! ([`crate::proxy::retention`]): a bucket created with Object Lock (or a
//! versioned bucket given a configuration) keeps every version; a version
//! may carry a retention (mode and retain-until date) and a legal hold,
//! from its write, from the bucket's default, or set later. Deleting a
//! retained version is refused on every path (the object layer checks).

use super::bucket;
use crate::proxy::object_versions::State;
use crate::proxy::objects::{ObjectMeta, ObjectPath, Objects};
use crate::proxy::retention::{
    LockConfig, Mode, Retention, HOLD_KEY, LOCK_HEADER, MODE_KEY, UNTIL_KEY,
};
use http::HeaderMap;
use s3s::dto::*;
use s3s::{s3_error, S3Result};
use service_kit::timestamp::Timestamp;

const DAY: u64 = 86_400;

const BOTH_NEEDED: &str =
    "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied";

fn missing_configuration() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

async fn config_of(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
) -> S3Result<Option<LockConfig>> {
    let headers = objects.container_meta(account, bucket_name).await?;
    Ok(LockConfig::of(&headers))
}

async fn store_config(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    c: &LockConfig,
) -> S3Result<()> {
    bucket::set_config(objects, account, bucket_name, LOCK_HEADER, &c.encode()).await
}

/// CreateBucket with `x-amz-bucket-object-lock-enabled: true`: versioning
/// on, and Object Lock with no default retention.
pub async fn enable_on_create(objects: &Objects, account: &str, bucket_name: &str) -> S3Result<()> {
    objects.set_versioning(account, bucket_name, true).await?;
    store_config(objects, account, bucket_name, &LockConfig::default()).await
}

/// PutObjectLockConfiguration: on a bucket with versioning enabled; a
/// default retention has a mode and either days or years.
pub async fn put_configuration(
    objects: &Objects,
    account: &str,
    input: PutObjectLockConfigurationInput,
) -> S3Result<()> {
    bucket::require(objects, account, &input.bucket).await?;
    let headers = objects.head_container(account, &input.bucket).await?;
    if State::of(&headers) != State::Enabled {
        return Err(s3_error!(
            InvalidBucketState,
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
        ));
    }
    let Some(c) = input.object_lock_configuration else {
        return Err(s3_error!(MalformedXML));
    };
    if c.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
        return Err(s3_error!(MalformedXML, "ObjectLockEnabled must be Enabled"));
    }
    let mut config = LockConfig::default();
    if let Some(d) = c.rule.and_then(|r| r.default_retention) {
        let mode = d
            .mode
            .as_ref()
            .and_then(|m| Mode::parse(m.as_str()))
            .ok_or_else(|| s3_error!(MalformedXML, "A default retention needs a Mode"))?;
        let (secs, years) = match (d.days, d.years) {
            (Some(days), None) if days > 0 => (days as u64 * DAY, false),
            (None, Some(years)) if years > 0 => (years as u64 * 365 * DAY, true),
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Default retention period must be a positive integer of Days or Years, not both"
                ))
            }
        };
        config.default = Some((mode, secs));
        config.in_years = years;
    }
    store_config(objects, account, &input.bucket, &config).await
}

pub async fn get_configuration(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
) -> S3Result<GetObjectLockConfigurationOutput> {
    bucket::require(objects, account, bucket_name).await?;
    let Some(c) = config_of(objects, account, bucket_name).await? else {
        return Err(s3_error!(
            ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket"
        ));
    };
    let rule = c.default.map(|(mode, secs)| ObjectLockRule {
        default_retention: Some(DefaultRetention {
            mode: Some(ObjectLockRetentionMode::from(mode.name().to_string())),
            days: (!c.in_years).then_some((secs / DAY) as i32),
            years: c.in_years.then_some((secs / (365 * DAY)) as i32),
        }),
    });
    Ok(GetObjectLockConfigurationOutput {
        object_lock_configuration: Some(ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
            rule,
        }),
    })
}

fn secs_of(t: &s3s::dto::Timestamp) -> u64 {
    super::object::unix_secs(t).unwrap_or(0)
}

fn timestamp(secs: u64) -> s3s::dto::Timestamp {
    (std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).into()
}

/// The lock a write names (`x-amz-object-lock-*`); [`requested!`] reads
/// it from any input that has the fields (PutObject,
/// CreateMultipartUpload, CopyObject).
pub struct Requested<'a> {
    pub mode: Option<&'a ObjectLockMode>,
    pub until: Option<&'a s3s::dto::Timestamp>,
    pub hold: Option<&'a ObjectLockLegalHoldStatus>,
}

/// The [`Requested`] lock of an S3 input.
macro_rules! requested {
    ($input:expr) => {
        $crate::s3::object_lock::Requested {
            mode: $input.object_lock_mode.as_ref(),
            until: $input.object_lock_retain_until_date.as_ref(),
            hold: $input.object_lock_legal_hold_status.as_ref(),
        }
    };
}
pub(crate) use requested;

/// The lock a write names, as metadata items; the bucket's default
/// applies in the object layer when it names none.
pub async fn on_write(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    lock: Requested<'_>,
    meta: &mut ObjectMeta,
) -> S3Result<()> {
    let Requested { mode, until, hold } = lock;
    if mode.is_none() && until.is_none() && hold.is_none() {
        return Ok(());
    }
    if config_of(objects, account, bucket_name).await?.is_none() {
        return Err(missing_configuration());
    }
    match (mode, until) {
        (Some(m), Some(u)) => {
            let mode = Mode::parse(m.as_str())
                .ok_or_else(|| s3_error!(InvalidArgument, "Unknown wormMode directive."))?;
            let until = secs_of(u);
            if until <= Timestamp::now().secs() {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            let r = Retention {
                mode: Some(mode),
                until: Some(until),
                legal_hold: false,
            };
            meta.system.extend(r.system_meta());
        }
        (None, None) => {}
        _ => return Err(s3_error!(InvalidArgument, "{BOTH_NEEDED}")),
    }
    if let Some(h) = hold {
        meta.system.push((HOLD_KEY.into(), h.as_str().to_string()));
    }
    Ok(())
}

/// The lock fields of a read's output.
pub struct Shown {
    pub mode: Option<ObjectLockMode>,
    pub until: Option<s3s::dto::Timestamp>,
    pub hold: Option<ObjectLockLegalHoldStatus>,
}

pub fn shown(meta: &ObjectMeta) -> Shown {
    let r = Retention::of_meta(meta);
    Shown {
        mode: r.mode.map(|m| ObjectLockMode::from(m.name().to_string())),
        until: r.mode.and(r.until).map(timestamp),
        hold: meta
            .system(HOLD_KEY)
            .map(|h| ObjectLockLegalHoldStatus::from(h.to_string())),
    }
}

/// The version a retention or legal-hold request names (its current one
/// without a `versionId`), in a bucket with Object Lock, with its headers.
async fn stored(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    key: &str,
    version: Option<&str>,
) -> S3Result<(ObjectPath, HeaderMap)> {
    bucket::require(objects, account, bucket_name).await?;
    if config_of(objects, account, bucket_name).await?.is_none() {
        return Err(missing_configuration());
    }
    let path = objects
        .stored_version(&ObjectPath::new(account, bucket_name, key), version)
        .await?;
    let headers = objects.head_newest(&path).await?;
    Ok((path, headers))
}

/// [`stored`] for an input with `bucket`, `key` and `version_id`.
macro_rules! stored_of {
    ($objects:expr, $account:expr, $input:expr) => {
        stored(
            $objects,
            $account,
            &$input.bucket,
            &$input.key,
            $input.version_id.as_deref(),
        )
    };
}

/// PutObjectRetention: extends freely; shortens or removes a GOVERNANCE
/// retention only with the bypass header, a COMPLIANCE one never.
pub async fn put_retention(
    objects: &Objects,
    account: &str,
    input: PutObjectRetentionInput,
) -> S3Result<()> {
    let (path, headers) = stored_of!(objects, account, input).await?;
    let new = match &input.retention {
        Some(ObjectLockRetention {
            mode: Some(m),
            retain_until_date: Some(u),
        }) => Retention {
            mode: Some(
                Mode::parse(m.as_str())
                    .ok_or_else(|| s3_error!(MalformedXML, "Unknown retention mode"))?,
            ),
            until: Some(secs_of(u)),
            legal_hold: false,
        },
        Some(ObjectLockRetention {
            mode: None,
            retain_until_date: None,
        })
        | None => Retention::default(),
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "A retention needs Mode and RetainUntilDate"
            ))
        }
    };
    let now = Timestamp::now().secs();
    if new.until.is_some_and(|u| u <= now) {
        return Err(s3_error!(
            InvalidArgument,
            "The retain until date must be in the future!"
        ));
    }
    let bypass = input.bypass_governance_retention.unwrap_or(false);
    if let Some(why) = Retention::of(&headers).refuses_change(&new, now, bypass) {
        return Err(s3_error!(AccessDenied, "Access Denied because {why}"));
    }
    let items = match (new.mode, new.until) {
        (Some(m), Some(u)) => vec![
            (MODE_KEY.to_string(), m.name().to_string()),
            (UNTIL_KEY.to_string(), u.to_string()),
        ],
        _ => vec![
            (MODE_KEY.to_string(), String::new()),
            (UNTIL_KEY.to_string(), String::new()),
        ],
    };
    objects.update_system_meta(&path, &items).await?;
    Ok(())
}

pub async fn get_retention(
    objects: &Objects,
    account: &str,
    input: GetObjectRetentionInput,
) -> S3Result<GetObjectRetentionOutput> {
    let (_, headers) = stored_of!(objects, account, input).await?;
    let r = Retention::of(&headers);
    let (Some(mode), Some(until)) = (r.mode, r.until) else {
        return Err(s3_error!(
            NoSuchObjectLockConfiguration,
            "The specified object does not have a ObjectLock configuration"
        ));
    };
    Ok(GetObjectRetentionOutput {
        retention: Some(ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from(mode.name().to_string())),
            retain_until_date: Some(timestamp(until)),
        }),
    })
}

pub async fn put_legal_hold(
    objects: &Objects,
    account: &str,
    input: PutObjectLegalHoldInput,
) -> S3Result<()> {
    let (path, _) = stored_of!(objects, account, input).await?;
    let status = input
        .legal_hold
        .and_then(|h| h.status)
        .ok_or_else(|| s3_error!(MalformedXML))?;
    let value = match status.as_str() {
        ObjectLockLegalHoldStatus::ON | ObjectLockLegalHoldStatus::OFF => {
            status.as_str().to_string()
        }
        _ => return Err(s3_error!(MalformedXML, "Status must be ON or OFF")),
    };
    objects
        .update_system_meta(&path, &[(HOLD_KEY.to_string(), value)])
        .await?;
    Ok(())
}

pub async fn get_legal_hold(
    objects: &Objects,
    account: &str,
    input: GetObjectLegalHoldInput,
) -> S3Result<GetObjectLegalHoldOutput> {
    let (_, headers) = stored_of!(objects, account, input).await?;
    let hold =
        service_kit::http_util::header_str(&headers, &format!("x-object-sysmeta-{HOLD_KEY}"));
    let Some(hold) = hold else {
        return Err(s3_error!(
            NoSuchObjectLockConfiguration,
            "The specified object does not have a ObjectLock configuration"
        ));
    };
    Ok(GetObjectLegalHoldOutput {
        legal_hold: Some(ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from(hold.into_owned())),
        }),
    })
}
