//! Put/Get/DeleteBucketLifecycleConfiguration: S3's lifecycle XML checked
//! as S3 checks it and kept as the object store's rules
//! ([`crate::lifecycle::Rules`], container system metadata), which the
//! storage nodes' lifecycle worker applies.
//!
//! This store has one storage class, so transitions are refused
//! (`InvalidStorageClass`), as a store without the class named would.

use super::{bucket, tagging};
use crate::lifecycle::{Expiration, Filter, Noncurrent, Rule, Rules, HEADER};
use crate::proxy::objects::Objects;
use s3s::dto::*;
use s3s::{s3_error, S3Result};

const MAX_RULES: usize = 1000;
const MAX_ID: usize = 255;

fn malformed() -> s3s::S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

/// A configuration's rules, checked.
pub fn from_config(c: &BucketLifecycleConfiguration) -> S3Result<Rules> {
    if c.rules.is_empty() || c.rules.len() > MAX_RULES {
        return Err(malformed());
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(c.rules.len());
    for r in &c.rules {
        let rule = rule_of(r)?;
        if rules.iter().any(|seen| seen.id == rule.id) {
            return Err(s3_error!(
                InvalidArgument,
                "Rule ID must be unique. Found same ID for more than one rule"
            ));
        }
        rules.push(rule);
    }
    Ok(Rules { rules })
}

fn rule_of(r: &LifecycleRule) -> S3Result<Rule> {
    let id = match r.id.as_deref() {
        None | Some("") => hex::encode(service_kit::ids::rand_bytes::<10>()),
        Some(id) if id.chars().count() > MAX_ID => {
            return Err(s3_error!(
                InvalidArgument,
                "ID length should not exceed allowed limit of 255"
            ))
        }
        Some(id) => id.to_string(),
    };
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        _ => return Err(malformed()),
    };
    let (filter, legacy_prefix) = match (&r.filter, &r.prefix) {
        (Some(f), None) => (filter_of(f)?, false),
        (None, Some(p)) => (
            Filter {
                prefix: p.clone(),
                ..Default::default()
            },
            true,
        ),
        // Neither (S3 needs one of them) or both.
        _ => return Err(malformed()),
    };
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid: this store has only STANDARD"
        ));
    }
    let expiration = match &r.expiration {
        None => None,
        Some(e) => expiration_of(e, &filter)?,
    };
    let noncurrent = match &r.noncurrent_version_expiration {
        None => None,
        Some(n) => {
            let days = positive(n.noncurrent_days, "NoncurrentDays")?;
            let keep_newer = match n.newer_noncurrent_versions {
                None => None,
                Some(k) if (1..=100).contains(&k) => Some(k as u32),
                Some(_) => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "NewerNoncurrentVersions must be between 1 and 100"
                    ))
                }
            };
            Some(Noncurrent { days, keep_newer })
        }
    };
    let abort_after_days = match &r.abort_incomplete_multipart_upload {
        None => None,
        Some(a) => {
            if !filter.tags.is_empty() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Tag-based filter cannot be used with AbortIncompleteMultipartUpload action"
                ));
            }
            Some(positive(a.days_after_initiation, "DaysAfterInitiation")?)
        }
    };
    if expiration.is_none() && noncurrent.is_none() && abort_after_days.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "At least one action needs to be specified in a rule"
        ));
    }
    Ok(Rule {
        id,
        enabled,
        filter,
        legacy_prefix,
        expiration,
        noncurrent,
        abort_after_days,
    })
}

fn positive(days: Option<i32>, what: &str) -> S3Result<u32> {
    match days {
        Some(d) if d > 0 => Ok(d as u32),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "'{what}' in the lifecycle rule must be a positive integer"
        )),
        None => Err(malformed()),
    }
}

fn expiration_of(e: &LifecycleExpiration, filter: &Filter) -> S3Result<Option<Expiration>> {
    let marker = e.expired_object_delete_marker;
    let given = [e.days.is_some(), e.date.is_some(), marker.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(malformed());
    }
    match (e.days, &e.date, marker) {
        (Some(d), None, None) => {
            if d <= 0 {
                return Err(s3_error!(
                    InvalidArgument,
                    "'Days' for Expiration action must be a positive integer"
                ));
            }
            Ok(Some(Expiration::Days(d as u32)))
        }
        (None, Some(date), None) => {
            let at = time::OffsetDateTime::from(date.clone()).unix_timestamp();
            if at % crate::lifecycle::DAY as i64 != 0 || at < 0 {
                return Err(s3_error!(InvalidArgument, "'Date' must be at midnight GMT"));
            }
            Ok(Some(Expiration::Date(at as u64)))
        }
        (None, None, Some(true)) => {
            if !filter.tags.is_empty() {
                return Err(s3_error!(
                    InvalidArgument,
                    "ExpiredObjectDeleteMarker cannot be specified with tags"
                ));
            }
            Ok(Some(Expiration::ExpiredDeleteMarker))
        }
        (None, None, Some(false)) => Ok(None),
        _ => Err(malformed()),
    }
}

fn filter_of(f: &LifecycleRuleFilter) -> S3Result<Filter> {
    let given = [
        f.prefix.is_some(),
        f.tag.is_some(),
        f.and.is_some(),
        f.object_size_greater_than.is_some(),
        f.object_size_less_than.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(malformed());
    }
    let tag_pair = |t: &Tag| -> S3Result<(String, String)> {
        match (&t.key, &t.value) {
            (Some(k), v) => Ok((k.clone(), v.clone().unwrap_or_default())),
            _ => Err(malformed()),
        }
    };
    let mut filter = Filter {
        prefix: f.prefix.clone().unwrap_or_default(),
        size_greater_than: size(f.object_size_greater_than)?,
        size_less_than: size(f.object_size_less_than)?,
        ..Default::default()
    };
    if let Some(t) = &f.tag {
        filter.tags = vec![tag_pair(t)?];
    }
    if let Some(and) = &f.and {
        filter.and = true;
        filter.prefix = and.prefix.clone().unwrap_or_default();
        filter.size_greater_than = size(and.object_size_greater_than)?;
        filter.size_less_than = size(and.object_size_less_than)?;
        filter.tags = and
            .tags
            .iter()
            .flatten()
            .map(tag_pair)
            .collect::<S3Result<_>>()?;
        let encoded: Vec<(String, String)> = filter.tags.clone();
        tagging::encode_tags(&encoded)?;
    }
    if let (Some(gt), Some(lt)) = (filter.size_greater_than, filter.size_less_than) {
        if gt >= lt {
            return Err(s3_error!(
                InvalidArgument,
                "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
            ));
        }
    }
    Ok(filter)
}

fn size(n: Option<i64>) -> S3Result<Option<u64>> {
    match n {
        None => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Object size in a lifecycle filter must not be negative"
        )),
    }
}

/// The rules as S3 shows them.
pub fn to_config(rules: &Rules) -> LifecycleRules {
    rules.rules.iter().map(rule_to_dto).collect()
}

fn rule_to_dto(r: &Rule) -> LifecycleRule {
    let tag = |(k, v): &(String, String)| Tag {
        key: Some(k.clone()),
        value: Some(v.clone()),
    };
    let f = &r.filter;
    let (filter, prefix) = if r.legacy_prefix {
        (None, Some(f.prefix.clone()))
    } else if f.and {
        let and = LifecycleRuleAndOperator {
            prefix: Some(f.prefix.clone()),
            tags: Some(f.tags.iter().map(tag).collect()),
            object_size_greater_than: f.size_greater_than.map(|n| n as i64),
            object_size_less_than: f.size_less_than.map(|n| n as i64),
        };
        (
            Some(LifecycleRuleFilter {
                and: Some(and),
                ..Default::default()
            }),
            None,
        )
    } else {
        let filter = LifecycleRuleFilter {
            tag: f.tags.first().map(tag),
            prefix: (f.tags.is_empty()
                && f.size_greater_than.is_none()
                && f.size_less_than.is_none())
            .then(|| f.prefix.clone()),
            object_size_greater_than: f.size_greater_than.map(|n| n as i64),
            object_size_less_than: f.size_less_than.map(|n| n as i64),
            ..Default::default()
        };
        (Some(filter), None)
    };
    let expiration = r.expiration.as_ref().map(|e| match e {
        Expiration::Days(d) => LifecycleExpiration {
            days: Some(*d as i32),
            date: None,
            expired_object_delete_marker: None,
        },
        Expiration::Date(at) => LifecycleExpiration {
            days: None,
            date: Some(
                service_kit::timestamp::Timestamp::from_secs(*at)
                    .to_system_time()
                    .into(),
            ),
            expired_object_delete_marker: None,
        },
        Expiration::ExpiredDeleteMarker => LifecycleExpiration {
            days: None,
            date: None,
            expired_object_delete_marker: Some(true),
        },
    });
    LifecycleRule {
        id: Some(r.id.clone()),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter,
        prefix,
        expiration,
        noncurrent_version_expiration: r.noncurrent.as_ref().map(|n| NoncurrentVersionExpiration {
            noncurrent_days: Some(n.days as i32),
            newer_noncurrent_versions: n.keep_newer.map(|k| k as i32),
        }),
        abort_incomplete_multipart_upload: r.abort_after_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }
        }),
        transitions: None,
        noncurrent_version_transitions: None,
    }
}

/// S3's `x-amz-expiration` for a current object (on PUT, GET and HEAD):
/// when the bucket's rules expire it and by which rule; `None` if no rule
/// does (or the bucket's rules cannot be read now).
pub async fn expiration(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    facts: &crate::lifecycle::Facts<'_>,
    created: u64,
) -> Option<String> {
    let headers = objects.container_meta(account, bucket_name).await.ok()?;
    let rules = Rules::of(&headers)?;
    let (at, rule) = rules.current_expiry(facts, created)?;
    let date = service_kit::timestamp::Timestamp::from_secs(at).http_date();
    Some(format!(
        "expiry-date=\"{date}\", rule-id=\"{}\"",
        rule.id.replace('"', "")
    ))
}

/// PutBucketLifecycleConfiguration.
pub async fn put(
    objects: &Objects,
    account: &str,
    bucket_name: &str,
    config: Option<&BucketLifecycleConfiguration>,
) -> S3Result<()> {
    bucket::require(objects, account, bucket_name).await?;
    let rules = from_config(config.ok_or_else(malformed)?)?;
    bucket::set_config(objects, account, bucket_name, HEADER, &rules.encode()).await
}

/// GetBucketLifecycleConfiguration.
pub async fn get(objects: &Objects, account: &str, bucket_name: &str) -> S3Result<LifecycleRules> {
    let headers = objects.container_meta(account, bucket_name).await?;
    match Rules::of(&headers) {
        Some(rules) => Ok(to_config(&rules)),
        None => Err(s3_error!(
            NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist"
        )),
    }
}

/// DeleteBucketLifecycle.
pub async fn delete(objects: &Objects, account: &str, bucket_name: &str) -> S3Result<()> {
    bucket::require(objects, account, bucket_name).await?;
    bucket::set_config(objects, account, bucket_name, HEADER, "").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(expiration: Option<LifecycleExpiration>) -> LifecycleRule {
        LifecycleRule {
            id: Some("r".into()),
            status: ExpirationStatus::from_static(ExpirationStatus::ENABLED),
            filter: Some(LifecycleRuleFilter {
                prefix: Some("logs/".into()),
                ..Default::default()
            }),
            prefix: None,
            expiration,
            noncurrent_version_expiration: None,
            abort_incomplete_multipart_upload: None,
            transitions: None,
            noncurrent_version_transitions: None,
        }
    }

    fn days(d: i32) -> Option<LifecycleExpiration> {
        Some(LifecycleExpiration {
            days: Some(d),
            date: None,
            expired_object_delete_marker: None,
        })
    }

    fn config(rules: Vec<LifecycleRule>) -> BucketLifecycleConfiguration {
        BucketLifecycleConfiguration { rules }
    }

    fn code(r: S3Result<Rules>) -> String {
        r.unwrap_err().code().as_str().to_string()
    }

    #[test]
    fn a_rule_round_trips() {
        let c = config(vec![rule(days(3))]);
        let rules = from_config(&c).unwrap();
        assert_eq!(rules.rules[0].expiration, Some(Expiration::Days(3)));
        assert_eq!(to_config(&rules), c.rules);
    }

    #[test]
    fn bad_rules_are_refused_as_s3_refuses_them() {
        assert_eq!(code(from_config(&config(vec![]))), "MalformedXML");
        assert_eq!(
            code(from_config(&config(vec![rule(days(0))]))),
            "InvalidArgument"
        );
        assert_eq!(
            code(from_config(&config(vec![rule(None)]))),
            "InvalidRequest"
        );
        let mut no_filter = rule(days(1));
        no_filter.filter = None;
        assert_eq!(code(from_config(&config(vec![no_filter]))), "MalformedXML");
        let mut long = rule(days(1));
        long.id = Some("x".repeat(256));
        assert_eq!(code(from_config(&config(vec![long]))), "InvalidArgument");
        let twice = config(vec![rule(days(1)), rule(days(2))]);
        assert_eq!(code(from_config(&twice)), "InvalidArgument");
        let mut status = rule(days(1));
        status.status = ExpirationStatus::from("enabled".to_string());
        assert_eq!(code(from_config(&config(vec![status]))), "MalformedXML");
        let both = LifecycleExpiration {
            days: Some(1),
            date: None,
            expired_object_delete_marker: Some(true),
        };
        assert_eq!(
            code(from_config(&config(vec![rule(Some(both))]))),
            "MalformedXML"
        );
        let noon = LifecycleExpiration {
            days: None,
            date: Some(
                service_kit::timestamp::Timestamp::from_secs(86_400 * 20_000 + 43_200)
                    .to_system_time()
                    .into(),
            ),
            expired_object_delete_marker: None,
        };
        assert_eq!(
            code(from_config(&config(vec![rule(Some(noon))]))),
            "InvalidArgument"
        );
        let mut abort_by_tag = rule(None);
        abort_by_tag.filter = Some(LifecycleRuleFilter {
            tag: Some(Tag {
                key: Some("k".into()),
                value: Some("v".into()),
            }),
            ..Default::default()
        });
        abort_by_tag.abort_incomplete_multipart_upload = Some(AbortIncompleteMultipartUpload {
            days_after_initiation: Some(1),
        });
        assert_eq!(
            code(from_config(&config(vec![abort_by_tag]))),
            "InvalidRequest"
        );
    }

    #[test]
    fn a_missing_id_is_made() {
        let mut r = rule(days(1));
        r.id = None;
        let rules = from_config(&config(vec![r])).unwrap();
        assert_eq!(rules.rules[0].id.len(), 20);
    }
}
