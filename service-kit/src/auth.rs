//! Who a request speaks for. Two kinds of token are accepted: TempAuth's
//! (users and keys from a service's config, HMAC-signed tokens with
//! expiry, issued by the proxy) and the identity service's sealed tokens
//! (see [`crate::token`]), checked locally against the shared key
//! repository and the revocations polled from the identity service.

use crate::token::{Claims, KeyError, KeyRing, RevocationEvent, Scope, TokenCheck};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;
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
    /// The identity service's key repository: when set, its tokens are
    /// accepted too.
    #[serde(default)]
    pub token_key_dir: Option<std::path::PathBuf>,
    /// The identity service (`http://host:port`), polled for revocations
    /// and asked to log TempAuth users in; the config's `users` are then
    /// not consulted for Swift logins.
    #[serde(default)]
    pub identity_url: Option<String>,
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
    /// The storage account, with its reseller prefix (`AUTH_test`, or
    /// `AUTH_<project id>`); empty for a token not scoped to a project.
    pub account: String,
    /// The user's name within the account.
    pub user: String,
    /// Whether the user administers the project (TempAuth's `.admin`, the
    /// identity service's `admin` role).
    pub admin: bool,
    /// Whether the user is an operator (`.reseller_admin`, the
    /// `ResellerAdmin` role, or `admin` on the system scope).
    pub reseller_admin: bool,
    /// The identity service's role names on the project (empty for
    /// TempAuth users).
    pub roles: Vec<String>,
    /// The user's id (TempAuth: the user's name).
    pub user_id: String,
    /// The project's name (TempAuth: the account's name).
    pub project_name: String,
}

impl Identity {
    fn has_role(&self, name: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(name))
    }

    /// Whether the user may change anything in their account: Swift's
    /// `operator_roles` (`admin`, `member`, `swiftoperator`).
    pub fn owns_account(&self) -> bool {
        self.admin || OPERATOR_ROLES.iter().any(|r| self.has_role(r))
    }

    /// Whether the user may read their account: its owners and `reader`.
    pub fn reads_account(&self) -> bool {
        self.owns_account() || self.has_role("reader")
    }

    /// Whether the user may only read (the `reader` role and no role that
    /// writes): every service refuses such a user anything but reads.
    pub fn read_only(&self) -> bool {
        !self.admin && roles_read_only(&self.roles)
    }

    /// The identity of a checked identity-service token.
    fn of_claims(c: Claims) -> Identity {
        let roles: Vec<String> = c.roles.into_iter().map(|r| r.name).collect();
        let has = |n: &str| roles.iter().any(|r| r.eq_ignore_ascii_case(n));
        let (account, project_name, system) = match &c.scope {
            Scope::Project { id, name, .. } => {
                (format!("{RESELLER_PREFIX}{id}"), name.clone(), false)
            }
            Scope::System => (String::new(), String::new(), true),
            Scope::Domain { .. } | Scope::Unscoped => (String::new(), String::new(), false),
        };
        Identity {
            account,
            user: c.user_name,
            admin: has("admin"),
            reseller_admin: has("ResellerAdmin") || (system && has("admin")),
            roles,
            user_id: c.user_id,
            project_name,
        }
    }
}

/// The roles that own a Swift account (Swift's `operator_roles`).
const OPERATOR_ROLES: [&str; 3] = ["admin", "member", "swiftoperator"];

/// Whether holding `roles` means reading only: `reader` and no operator
/// role.
fn roles_read_only(roles: &[String]) -> bool {
    let has = |n: &str| roles.iter().any(|r| r.eq_ignore_ascii_case(n));
    has("reader") && !OPERATOR_ROLES.iter().any(|r| has(r))
}

/// Logs users in and checks tokens, from the users of a config and the
/// identity service's key repository.
pub struct TempAuth {
    config: AuthConfig,
    sealed: Option<Arc<TokenCheck>>,
    /// Calls the identity service (logins, revocations, EC2 secrets).
    client: Arc<crate::client::HttpClient>,
    /// EC2 credentials fetched lately, by access key.
    ec2_secrets: std::sync::Mutex<std::collections::HashMap<String, Ec2Entry>>,
}

/// An EC2 credential as the identity service described it.
struct Ec2Entry {
    secret: String,
    /// Its user may only read (the `reader` role, no operator role).
    read_only: bool,
    fetched: std::time::Instant,
}

/// How long a fetched EC2 secret is used before it is asked for again
/// (so a deleted credential, or a user removed from the project, stops
/// signing S3 requests within this time; Swift's s3token caches too).
pub const EC2_SECRET_TTL: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// TempAuth over `config`'s users and secret, and the identity
    /// service's keys if the config names them.
    pub fn new(config: AuthConfig) -> Result<TempAuth, KeyError> {
        let sealed = match &config.token_key_dir {
            Some(dir) => Some(Arc::new(TokenCheck::new(KeyRing::load(dir)?))),
            None => None,
        };
        let client = Arc::new(crate::client::HttpClient::new(
            crate::client::Timeouts::default(),
        ));
        Ok(TempAuth {
            config,
            sealed,
            client,
            ec2_secrets: Default::default(),
        })
    }

    /// The identity service's URL, if configured.
    pub fn identity_url(&self) -> Option<&str> {
        self.config.identity_url.as_deref()
    }

    /// Keeps the identity service's keys and revocations current: reloads
    /// the key repository every 10 s and polls revocations every second
    /// (a revoked token stops working everywhere within about a second).
    /// Needs a tokio runtime; does nothing without a key repository.
    pub fn spawn_refresh(&self) {
        let (Some(check), Some(dir)) = (self.sealed.clone(), self.config.token_key_dir.clone())
        else {
            return;
        };
        let url = self.config.identity_url.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut tick = 0u64;
            loop {
                if tick % 10 == 9 {
                    match crate::server::blocking(|| KeyRing::load(&dir)) {
                        Ok(ring) => check.set_ring(ring),
                        Err(e) => tracing::warn!(error = %e, "reloading token keys"),
                    }
                }
                if let Some(url) = &url {
                    match fetch_revocations(&client, url).await {
                        Ok(events) => check.set_revocations(events),
                        Err(e) => tracing::debug!(error = %e, "polling revocations"),
                    }
                }
                tick += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
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
            roles: Vec::new(),
            user_id: u.user.clone(),
            project_name: u.account.clone(),
        }
    }

    /// A Swift login (`account:user` and key): by the identity service
    /// when one is configured (the user of that name in the project of
    /// that name, in the default domain), else by the config's users.
    /// `None` for wrong credentials or an identity service that cannot be
    /// reached.
    pub async fn login_swift(&self, auth_user: &str, key: &str) -> Option<Token> {
        let Some(url) = &self.config.identity_url else {
            return self.login(auth_user, key);
        };
        let (project, user) = auth_user.split_once(':')?;
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": key}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let answer = identity_call(
            &self.client,
            url,
            http::Method::POST,
            "/v3/auth/tokens",
            Some(body),
            None,
        );
        let (status, token, _) = match answer.await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "the identity service did not answer a login");
                return None;
            }
        };
        let token = token.filter(|_| status == http::StatusCode::CREATED)?;
        let now = unix_now();
        let claims = self.sealed.as_ref()?.check(&token, now)?;
        Some(Token {
            expires_in: claims.expires_at.saturating_sub(now),
            identity: Identity::of_claims(claims),
            token,
        })
    }

    /// The secret of an EC2 credential, from the identity service (cached
    /// for [`EC2_SECRET_TTL`]); `None` if there is no such usable
    /// credential or no identity service.
    pub async fn ec2_secret(&self, access: &str) -> Option<String> {
        {
            let cache = self.ec2_secrets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = cache.get(access) {
                if e.fetched.elapsed() < EC2_SECRET_TTL {
                    return Some(e.secret.clone());
                }
            }
        }
        let url = self.config.identity_url.as_ref()?;
        let token = self.service_token()?;
        let path = format!("/v3/OS-EC2/secrets/{}", crate::http_util::encode(access));
        let answer = identity_call(
            &self.client,
            url,
            http::Method::GET,
            &path,
            None,
            Some(&token),
        );
        let (status, _, body) = answer.await.ok()?;
        if status != http::StatusCode::OK {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let secret = v["credential"]["secret"].as_str()?.to_string();
        let roles: Vec<String> = v["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(String::from))
            .collect();
        let mut cache = self.ec2_secrets.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, e| e.fetched.elapsed() < EC2_SECRET_TTL);
        cache.insert(
            access.to_string(),
            Ec2Entry {
                secret: secret.clone(),
                read_only: roles_read_only(&roles),
                fetched: std::time::Instant::now(),
            },
        );
        Some(secret)
    }

    /// Whether an EC2 credential's user may only read (known once its
    /// secret was fetched; the config's S3 keys are never read-only).
    pub fn ec2_read_only(&self, access: &str) -> bool {
        let cache = self.ec2_secrets.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(access).is_some_and(|e| e.read_only)
    }

    /// A minute-long token this service seals for itself with the shared
    /// keys, with the `service` role: what the identity service asks of
    /// the callers of its service-only calls.
    fn service_token(&self) -> Option<String> {
        let now = unix_now();
        self.sealed.as_ref()?.issue(&Claims {
            user_id: "nubo-service".into(),
            user_name: "nubo-service".into(),
            user_domain_id: "default".into(),
            scope: Scope::System,
            roles: vec![crate::token::RoleRef {
                id: "service".into(),
                name: "service".into(),
            }],
            methods: vec!["service".into()],
            issued_at_us: now * 1_000_000,
            expires_at: now + 60,
            audit_ids: vec![hex::encode(crate::ids::rand_bytes::<16>())],
        })
    }

    /// The identity behind a token, if it is genuine, unexpired, not
    /// revoked, and (for TempAuth) its user still exists.
    pub fn check(&self, token: &str) -> Option<Identity> {
        let Some(rest) = token.strip_prefix("AUTH_tk") else {
            let claims = self.sealed.as_ref()?.check(token, unix_now())?;
            return Some(Identity::of_claims(claims));
        };
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

/// One JSON call to the identity service, with an `X-Auth-Token` if
/// given: the status, the `X-Subject-Token` header, and the body.
async fn identity_call(
    client: &crate::client::HttpClient,
    base: &str,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> Result<(http::StatusCode, Option<String>, bytes::Bytes), String> {
    let uri: http::Uri = format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("{e}"))?;
    let addr = uri
        .authority()
        .map(|a| a.to_string())
        .ok_or("no host in identity_url")?;
    let body = match body {
        Some(v) => crate::http_util::full(v.to_string()),
        None => crate::http_util::empty(),
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.path())
        .header("host", &addr)
        .header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("x-auth-token", token);
    }
    let req = req.body(body).map_err(|e| e.to_string())?;
    let resp = client.send(&addr, req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let subject = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, subject, body))
}

/// The identity service's revocation list (`GET /v3/OS-REVOKE/events`).
async fn fetch_revocations(
    client: &crate::client::HttpClient,
    base: &str,
) -> Result<Vec<RevocationEvent>, String> {
    #[derive(Deserialize)]
    struct Events {
        events: Vec<RevocationEvent>,
    }
    let (status, _, body) = identity_call(
        client,
        base,
        http::Method::GET,
        "/v3/OS-REVOKE/events",
        None,
        None,
    )
    .await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let events: Events = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(events.events)
}

/// A capability for `subject` until `expires` (Unix seconds), signed with
/// a key both ends share: `<expires>.<hex HMAC-SHA256>`. Handed to a
/// client by one service and checked by another (a console URL the API
/// gives out and a compute agent accepts) without a call between them.
pub fn sign_expiring(key: &[u8], subject: &str, expires: u64) -> String {
    format!(
        "{expires}.{}",
        hex::encode(expiring_mac(key, subject, expires))
    )
}

/// Whether `token` is [`sign_expiring`]'s for `subject` and unexpired at
/// `now` (Unix seconds). The signature is compared in constant time.
pub fn verify_expiring(key: &[u8], subject: &str, token: &str, now: u64) -> bool {
    let Some((expires, mac)) = token.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(mac)) = (expires.parse::<u64>(), hex::decode(mac)) else {
        return false;
    };
    now < expires && constant_time_eq(&expiring_mac(key, subject, expires), &mac)
}

fn expiring_mac(key: &[u8], subject: &str, expires: u64) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    // The length first: no subject can be shifted into the expiry.
    mac.update(format!("{}:{subject}:{expires}", subject.len()).as_bytes());
    mac.finalize().into_bytes().to_vec()
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
            token_key_dir: None,
            identity_url: None,
        })
        .unwrap()
    }

    #[test]
    fn expiring_capabilities_name_their_subject_and_end() {
        let t = sign_expiring(b"k", "serial:abc", 1000);
        assert!(verify_expiring(b"k", "serial:abc", &t, 999));
        assert!(!verify_expiring(b"k", "serial:abc", &t, 1000), "expired");
        assert!(
            !verify_expiring(b"k", "serial:abd", &t, 999),
            "other subject"
        );
        assert!(
            !verify_expiring(b"other", "serial:abc", &t, 999),
            "other key"
        );
        let later = t.replacen("1000.", "2000.", 1);
        assert!(
            !verify_expiring(b"k", "serial:abc", &later, 999),
            "moved expiry"
        );
        for bad in ["", "1000", "x.y", "1000.zz", "1000."] {
            assert!(!verify_expiring(b"k", "serial:abc", bad, 0), "{bad:?}");
        }
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
