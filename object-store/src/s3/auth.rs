//! Who may sign S3 requests, and how a Host header names a bucket.

use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::{s3_error, S3Result};
use service_kit::auth::{AuthConfig, TempAuth};
use std::collections::HashMap;
use std::sync::Arc;

/// Access keys are the config's users' `account:user`, secrets their keys
/// (the dev credentials: `test:tester` / `testing`), or the identity
/// service's EC2 credentials (`<project id>:<32 hex>`, their secret
/// fetched from it). Either way the access key starts with the account.
pub struct Keys {
    secrets: HashMap<String, String>,
    identity: Arc<TempAuth>,
}

impl Keys {
    pub fn new(auth: &AuthConfig, identity: Arc<TempAuth>) -> Keys {
        Keys {
            secrets: auth
                .users
                .iter()
                .map(|u| (format!("{}:{}", u.account, u.user), u.key.clone()))
                .collect(),
            identity,
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let access = access_key_of(access_key);
        if let Some(s) = self.secrets.get(&access) {
            return Ok(SecretKey::from(s.as_str()));
        }
        match self.identity.ec2_secret(&access).await {
            Some(s) => Ok(SecretKey::from(s)),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// `<bucket>.<domain>` is virtual-host style; any other host is path style.
pub struct VirtualHosts {
    domain: String,
}

impl VirtualHosts {
    pub fn new(domain: &str) -> VirtualHosts {
        VirtualHosts {
            domain: domain.to_ascii_lowercase(),
        }
    }
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = host
            .rsplit_once(':')
            .filter(|(_, p)| p.parse::<u16>().is_ok())
            .map_or(host, |(h, _)| h);
        if let Some(bucket) = name
            .strip_suffix(self.domain.as_str())
            .and_then(|b| b.strip_suffix('.'))
        {
            if !bucket.is_empty() {
                return Ok(VirtualHost::new(self.domain.as_str()).with_bucket(bucket.to_string()));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

/// An access key as it arrived, back in its `account:user` form (a SigV2
/// header carries it with its `:` escaped; see [`settle`]).
pub fn access_key_of(raw: &str) -> String {
    raw.replace("%3A", ":")
}

/// The longest a presigned URL may live: a week, as in S3.
const MAX_PRESIGNED_SECS: i64 = 7 * 24 * 3600;

/// Request details S3 settles before it checks a signature, which s3s
/// leaves open: a presigned URL's `X-Amz-Expires` must be 0 to a week
/// (else 403 `AuthorizationQueryParametersError`), and a SigV4 request may
/// carry its time in `Date` rather than `X-Amz-Date` (its string to sign
/// then uses that time, so it is passed on as `x-amz-date`). A SigV2
/// header, `AWS <key>:<signature>`, is split at its last `:` as Swift's
/// s3api does (keys are `account:user`; s3s splits at the first): the
/// key's own `:` is escaped on the way in. `Err` is (code, message) of a
/// 403.
pub fn settle<B>(req: &mut http::Request<B>) -> Result<(), (&'static str, String)> {
    for (k, v) in service_kit::http_util::query_pairs(req.uri().query()) {
        if k == "X-Amz-Expires" {
            match v.parse::<i64>() {
                Ok(n) if n < 0 => {
                    return Err((
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires must be non-negative".into(),
                    ))
                }
                Ok(n) if n > MAX_PRESIGNED_SECS => {
                    return Err((
                        "AuthorizationQueryParametersError",
                        format!(
                            "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_SECS}"
                        ),
                    ))
                }
                Ok(_) => {}
                Err(_) => {
                    return Err((
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires should be a number".into(),
                    ))
                }
            }
        }
    }
    let v2 = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("AWS "))
        .and_then(|rest| rest.rsplit_once(':'))
        .filter(|(key, _)| key.contains(':'))
        .map(|(key, sig)| format!("AWS {}:{sig}", key.replace(':', "%3A")));
    if let Some(v) = v2.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
    let h = req.headers();
    let sigv4 = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256"));
    if sigv4 && !h.contains_key("x-amz-date") {
        let date = h
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|d| {
                s3s::dto::Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, d.trim()).ok()
            });
        if let Some(t) = date {
            let t = time::OffsetDateTime::from(t);
            let amz = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            if let Ok(v) = http::HeaderValue::from_str(&amz) {
                req.headers_mut().insert("x-amz-date", v);
            }
        }
    }
    Ok(())
}
