//! CORS: a bucket's rules (Put/Get/DeleteBucketCors, kept as container
//! system metadata in JSON), preflight `OPTIONS` answered without
//! credentials, and the CORS headers on answers to requests that carry an
//! `Origin`, matched as S3 matches them: the first rule whose origin (one
//! `*` wildcard allowed), method and every requested header fit.

use super::bucket;
use crate::proxy::objects::{ObjectError, Objects};
use http::{HeaderMap, Method, Response, StatusCode};
use s3s::dto::{CORSConfiguration, CORSRule};
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use service_kit::http_util::{header_str, set_header, Body};

/// The container system metadata header the rules live under.
pub const HEADER: &str = "x-container-sysmeta-s3-cors";

/// S3 takes at most this many rules per bucket.
const MAX_RULES: usize = 100;

/// One rule, as kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    id: Option<String>,
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: Option<i32>,
}

/// A configuration's rules, checked as S3 checks them.
pub fn from_config(c: &CORSConfiguration) -> S3Result<Vec<Rule>> {
    if c.cors_rules.is_empty() || c.cors_rules.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "A CORS configuration has 1 to 100 rules"
        ));
    }
    c.cors_rules
        .iter()
        .map(|r| {
            for m in &r.allowed_methods {
                if !["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&m.as_str()) {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ));
                }
            }
            for o in &r.allowed_origins {
                if o.matches('*').count() > 1 {
                    return Err(s3_error!(
                        InvalidRequest,
                        "AllowedOrigin \"{o}\" can not have more than one wildcard."
                    ));
                }
            }
            Ok(Rule {
                id: r.id.clone(),
                origins: r.allowed_origins.clone(),
                methods: r.allowed_methods.clone(),
                headers: r
                    .allowed_headers
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                expose: r.expose_headers.clone().unwrap_or_default(),
                max_age: r.max_age_seconds,
            })
        })
        .collect()
}

pub fn to_config(rules: Vec<Rule>) -> Vec<CORSRule> {
    rules
        .into_iter()
        .map(|r| CORSRule {
            id: r.id,
            allowed_origins: r.origins,
            allowed_methods: r.methods,
            allowed_headers: (!r.headers.is_empty()).then_some(r.headers),
            expose_headers: (!r.expose.is_empty()).then_some(r.expose),
            max_age_seconds: r.max_age,
        })
        .collect()
}

/// `pattern` with at most one `*` standing for any run of characters.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(value),
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value[..head.len()].eq_ignore_ascii_case(head)
                && value[value.len() - tail.len()..].eq_ignore_ascii_case(tail)
        }
    }
}

/// The first rule that allows `origin` to send `method` with `headers`.
pub fn rule_for<'a>(
    rules: &'a [Rule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a Rule> {
    rules.iter().find(|r| {
        r.origins.iter().any(|o| wildcard(o, origin))
            && r.methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.headers.iter().any(|p| wildcard(p, h)))
    })
}

/// The CORS headers a matched rule gives an answer.
fn allow(rule: &Rule, origin: &str, preflight: Option<&[String]>) -> HeaderMap {
    let mut h = HeaderMap::new();
    let any = rule.origins.iter().any(|o| o == "*");
    set_header(
        &mut h,
        "access-control-allow-origin",
        if any { "*" } else { origin },
    );
    if !any {
        set_header(&mut h, "access-control-allow-credentials", "true");
    }
    set_header(
        &mut h,
        "access-control-allow-methods",
        &rule.methods.join(", "),
    );
    if !rule.expose.is_empty() {
        set_header(
            &mut h,
            "access-control-expose-headers",
            &rule.expose.join(", "),
        );
    }
    if let Some(requested) = preflight {
        if !requested.is_empty() {
            set_header(
                &mut h,
                "access-control-allow-headers",
                &requested.join(", "),
            );
        }
        if let Some(age) = rule.max_age {
            set_header(&mut h, "access-control-max-age", &age.to_string());
        }
    }
    set_header(
        &mut h,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
    h
}

/// A bucket's rules; `None` when it has none (or is not known).
pub async fn rules(objects: &Objects, account: &str, bucket: &str) -> S3Result<Option<Vec<Rule>>> {
    let h = match objects.head_container(account, bucket).await {
        Ok(h) => h,
        Err(ObjectError::NoSuchContainer) => return Err(s3_error!(NoSuchBucket)),
        Err(e) => return Err(e.into()),
    };
    Ok(header_str(&h, HEADER)
        .filter(|v| !v.is_empty())
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// The bucket a request names: `<bucket>.<domain>` or the first path
/// segment.
pub fn bucket_of(host: Option<&str>, path: &str, domain: &str) -> Option<String> {
    let host_bucket = host
        .map(|h| h.rsplit_once(':').map_or(h, |(n, _)| n))
        .and_then(|h| h.strip_suffix(domain))
        .and_then(|b| b.strip_suffix('.'))
        .filter(|b| !b.is_empty());
    match host_bucket {
        Some(b) => Some(b.to_string()),
        None => path
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|b| !b.is_empty())
            .map(str::to_string),
    }
}

/// The requested headers of a preflight, lower case.
fn requested_headers(h: &HeaderMap) -> Vec<String> {
    header_str(h, "access-control-request-headers")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn forbidden(message: &str) -> Response<Body> {
    super::error_response(StatusCode::FORBIDDEN, "AccessForbidden", message)
}

/// Answers a preflight `OPTIONS` (no credentials needed, as in S3).
pub async fn preflight(objects: &Objects, bucket: Option<String>, h: &HeaderMap) -> Response<Body> {
    let (Some(origin), Some(method)) = (
        header_str(h, "origin"),
        header_str(h, "access-control-request-method"),
    ) else {
        return super::error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        );
    };
    let Some(bucket) = bucket else {
        return forbidden("CORSResponse: Bucket not found");
    };
    let found = match bucket::registered_owner(objects, &bucket).await {
        Ok(Some(account)) => rules(objects, &account, &bucket).await.ok().flatten(),
        _ => None,
    };
    let Some(rules) = found else {
        return forbidden("CORSResponse: CORS is not enabled for this bucket.");
    };
    let requested = requested_headers(h);
    match rule_for(&rules, &origin, &method, &requested) {
        Some(rule) => {
            let mut r = Response::new(service_kit::http_util::empty());
            *r.headers_mut() = allow(rule, &origin, Some(&requested));
            r
        }
        None => forbidden(
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
    }
}

/// The CORS headers for an answer to a request with an `Origin`, if the
/// bucket has a rule for it.
pub async fn for_answer(
    objects: &Objects,
    bucket: &str,
    origin: &str,
    method: &Method,
) -> Option<HeaderMap> {
    let account = bucket::registered_owner(objects, bucket).await.ok()??;
    let rules = rules(objects, &account, bucket).await.ok()??;
    let rule = rule_for(&rules, origin, method.as_str(), &[])?;
    Some(allow(rule, origin, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> Rule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Rule {
            id: None,
            origins: v(origins),
            methods: v(methods),
            headers: v(headers),
            expose: vec![],
            max_age: Some(60),
        }
    }

    #[test]
    fn rules_match_as_s3_matches_them() {
        let rules = vec![
            rule(&["https://*.example.com"], &["GET"], &["x-amz-*"]),
            rule(&["*"], &["HEAD"], &[]),
        ];
        let none: Vec<String> = vec![];
        let amz = vec!["x-amz-date".to_string()];
        assert!(rule_for(&rules, "https://app.example.com", "GET", &amz).is_some());
        assert!(rule_for(&rules, "https://example.com", "GET", &none).is_none());
        assert!(rule_for(&rules, "https://app.example.com", "PUT", &none).is_none());
        assert!(rule_for(
            &rules,
            "https://app.example.com",
            "GET",
            &["authorization".into()]
        )
        .is_none());
        assert_eq!(
            rule_for(&rules, "http://anything", "HEAD", &none),
            Some(&rules[1])
        );
        assert!(wildcard("*", ""));
        assert!(!wildcard("a*a", "a"));
    }

    #[test]
    fn the_bucket_comes_from_the_host_or_the_path() {
        let d = "s3.localhost";
        assert_eq!(
            bucket_of(Some("b1.s3.localhost:8080"), "/k", d).as_deref(),
            Some("b1")
        );
        assert_eq!(
            bucket_of(Some("127.0.0.1:8080"), "/b2/k", d).as_deref(),
            Some("b2")
        );
        assert_eq!(bucket_of(Some("127.0.0.1:8080"), "/", d), None);
    }
}
