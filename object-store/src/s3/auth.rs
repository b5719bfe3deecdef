//! Who may sign S3 requests, and how a Host header names a bucket.

use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::{s3_error, S3Result};
use service_kit::auth::AuthConfig;
use std::collections::HashMap;

/// Access keys are the Swift users' `account:user`, secrets their keys
/// (the dev credentials: `test:tester` / `testing`).
pub struct Keys {
    secrets: HashMap<String, String>,
}

impl Keys {
    pub fn from_config(auth: &AuthConfig) -> Keys {
        Keys {
            secrets: auth
                .users
                .iter()
                .map(|u| (format!("{}:{}", u.account, u.user), u.key.clone()))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.secrets.get(access_key) {
            Some(s) => Ok(SecretKey::from(s.as_str())),
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
