//! TempAuth: users and keys from a service's config, tokens that any
//! service of the cluster can check without shared state (HMAC-signed,
//! with expiry). The proxy issues them; every service checks them.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// Users, keys and the token secret (the `[auth]` table of each config).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Signs tokens, so that any proxy of the cluster accepts any proxy's tokens.
    pub token_secret: String,
    /// How long a token is valid.
    #[serde(default = "day")]
    pub token_ttl_secs: u64,
    /// The URL clients are told to use (`X-Storage-Url` prefix); defaults to
    /// the address the request came in on.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Who may log in.
    #[serde(default)]
    pub users: Vec<User>,
}

fn day() -> u64 {
    86_400
}

impl AuthConfig {
    /// Names the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.token_secret.len() < 8 {
            return Err("auth.token_secret: at least 8 characters".into());
        }
        if self.token_ttl_secs == 0 {
            return Err("auth.token_ttl_secs: must be above 0".into());
        }
        for u in &self.users {
            if u.account.is_empty() || u.user.is_empty() || u.account.contains(':') {
                return Err(format!(
                    "auth.users: account {:?} user {:?}: both must be set, the account without ':'",
                    u.account, u.user
                ));
            }
        }
        Ok(())
    }
}

/// One user of an account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Swift account name without the reseller prefix (`test` for `AUTH_test`).
    pub account: String,
    /// The user's name within the account.
    pub user: String,
    /// The user's key (password).
    pub key: String,
    /// `.admin`: full control of the account.
    #[serde(default)]
    pub admin: bool,
    /// `.reseller_admin`: an operator, with control of every account and
    /// of what only operators set (account quotas).
    #[serde(default)]
    pub reseller_admin: bool,
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The storage account, with its reseller prefix (`AUTH_test`).
    pub account: String,
    /// The user's name within the account.
    pub user: String,
    /// Whether the user controls the whole account.
    pub admin: bool,
    /// Whether the user is an operator (`.reseller_admin`).
    pub reseller_admin: bool,
}

/// Logs users in and checks tokens, from the users of a config.
pub struct TempAuth {
    config: AuthConfig,
}

/// A token issued at login.
pub struct Token {
    /// What clients send as `X-Auth-Token`.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Whom it speaks for.
    pub identity: Identity,
}

/// The prefix of every storage account's name (Swift's reseller prefix).
pub const RESELLER_PREFIX: &str = "AUTH_";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TempAuth {
    /// TempAuth over `config`'s users and secret.
    pub fn new(config: AuthConfig) -> TempAuth {
        TempAuth { config }
    }

    /// The URL clients are told to use, if configured.
    pub fn public_url(&self) -> Option<&str> {
        self.config.public_url.as_deref()
    }

    fn find(&self, account: &str, user: &str) -> Option<&User> {
        self.config
            .users
            .iter()
            .find(|u| u.account == account && u.user == user)
    }

    fn mac(&self, expires: u64, account: &str, user: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.config.token_secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(format!("{expires}\n{account}\n{user}").as_bytes());
        mac
    }

    /// `X-Auth-User: account:user` and `X-Auth-Key`; `None` when they do not match.
    pub fn login(&self, auth_user: &str, key: &str) -> Option<Token> {
        let (account, user) = auth_user.split_once(':')?;
        let u = self.find(account, user)?;
        if !constant_time_eq(u.key.as_bytes(), key.as_bytes()) {
            return None;
        }
        let expires = unix_now() + self.config.token_ttl_secs;
        let sig = self.mac(expires, account, user).finalize().into_bytes();
        Some(Token {
            token: format!(
                "AUTH_tk{expires:x}.{}.{}",
                hex::encode(format!("{account}:{user}")),
                hex::encode(&sig[..20])
            ),
            expires_in: self.config.token_ttl_secs,
            identity: self.identity(u),
        })
    }

    fn identity(&self, u: &User) -> Identity {
        Identity {
            account: format!("{RESELLER_PREFIX}{}", u.account),
            user: u.user.clone(),
            admin: u.admin,
            reseller_admin: u.reseller_admin,
        }
    }

    /// The identity behind a token, if it is genuine, unexpired and its user
    /// still exists.
    pub fn check(&self, token: &str) -> Option<Identity> {
        let rest = token.strip_prefix("AUTH_tk")?;
        let mut parts = rest.split('.');
        let expires = u64::from_str_radix(parts.next()?, 16).ok()?;
        let who = String::from_utf8(hex::decode(parts.next()?).ok()?).ok()?;
        let sig = hex::decode(parts.next()?).ok()?;
        if parts.next().is_some() || expires < unix_now() {
            return None;
        }
        let (account, user) = who.split_once(':')?;
        self.mac(expires, account, user)
            .verify_truncated_left(&sig)
            .ok()?;
        Some(self.identity(self.find(account, user)?))
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ttl: u64) -> TempAuth {
        TempAuth::new(AuthConfig {
            token_secret: "s3cret".into(),
            token_ttl_secs: ttl,
            public_url: None,
            users: vec![User {
                account: "test".into(),
                user: "tester".into(),
                key: "testing".into(),
                admin: true,
                reseller_admin: false,
            }],
        })
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let a = auth(60);
        assert!(a.login("test:tester", "wrong").is_none());
        assert!(a.login("test:nobody", "testing").is_none());
        let t = a.login("test:tester", "testing").unwrap();
        let id = a.check(&t.token).unwrap();
        assert_eq!(id.account, "AUTH_test");
        assert!(id.admin);
        let mut forged = t.token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(a.check(&forged).is_none());
        assert!(a.check("AUTH_tkgarbage").is_none());
        // Another cluster's secret does not validate our tokens.
        let mut other = auth(60);
        other.config.token_secret = "different".into();
        assert!(other.check(&t.token).is_none());
    }

    #[test]
    fn tokens_expire() {
        let a = auth(0);
        let t = a.login("test:tester", "testing").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(a.check(&t.token).is_none());
    }
}
