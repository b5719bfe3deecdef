//! Identity tokens: self-contained, encrypted and authenticated like
//! Keystone's Fernet tokens, so that every service validates them locally
//! (no round trip to the identity service) with the shared key repository.
//!
//! A token is `base64url(key id ‖ nonce ‖ AES-256-GCM(claims))`. The key
//! repository is a directory of numbered key files, as Keystone's
//! `fernet-keys`: the highest number signs, every key validates, `0` is
//! the staged key that becomes primary at the next rotation (so services
//! that reload the directory know a key before it signs anything).
//! Revocations are a list of events (an audit id, or a user's tokens
//! issued before a time) that services fetch from the identity service
//! and apply at validation.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// How many keys a repository keeps at most (Keystone's
/// `max_active_keys` default is 3: staged, primary, one secondary).
pub const MAX_ACTIVE_KEYS: usize = 3;

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub user_name: String,
    /// The user's domain id.
    pub user_domain_id: String,
    /// What the token is scoped to.
    pub scope: Scope,
    /// Role names the user holds on the scope (empty when unscoped).
    pub roles: Vec<RoleRef>,
    /// Authentication methods used (`password`, `token`).
    pub methods: Vec<String>,
    /// Unix seconds (with microseconds) of issue.
    pub issued_at_us: u64,
    /// Unix seconds after which the token is invalid.
    pub expires_at: u64,
    /// This token's audit id first, then the one it was re-scoped from.
    pub audit_ids: Vec<String>,
}

/// A role as tokens carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRef {
    /// The role's id.
    pub id: String,
    /// The role's name (`admin`, `member`, `reader`...).
    pub name: String,
}

/// A token's scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Scope {
    /// No scope: the user may only list their projects and re-scope.
    Unscoped,
    /// A project.
    Project {
        /// Its id (the Swift account is `AUTH_<id>`).
        id: String,
        /// Its name.
        name: String,
        /// Its domain's id.
        domain_id: String,
    },
    /// A domain.
    Domain {
        /// Its id.
        id: String,
        /// Its name.
        name: String,
    },
    /// The whole deployment (`system: {all: true}`).
    System,
}

/// Why a key repository could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The directory or a key file could not be read or written.
    #[error("key repository {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A key file does not hold a 32-byte key in base64url.
    #[error("key file {0}: not a 32-byte base64url key")]
    Malformed(PathBuf),
    /// The repository has no key to sign with.
    #[error("key repository {0}: no keys (run `nubo identity rotate-keys` or `nubo up`)")]
    Empty(PathBuf),
}

struct Key {
    id: [u8; 4],
    cipher: Aes256Gcm,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Key {
        let digest = key_id_of(bytes);
        Key {
            id: digest,
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }
}

/// A key's id: the first 4 bytes of its SHA-256, so a token names the key
/// that sealed it without revealing it.
fn key_id_of(bytes: &[u8; 32]) -> [u8; 4] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    [d[0], d[1], d[2], d[3]]
}

/// The keys of a repository, primary first.
pub struct KeyRing {
    keys: Vec<Key>,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl KeyRing {
    /// A ring of raw keys, the first one primary (tests, benchmarks).
    pub fn from_keys(keys: &[[u8; 32]]) -> KeyRing {
        KeyRing {
            keys: keys.iter().map(Key::new).collect(),
        }
    }

    /// Loads a repository: numbered files, the highest primary.
    pub fn load(dir: &Path) -> Result<KeyRing, KeyError> {
        let mut numbered = numbered_keys(dir)?;
        numbered.sort_by_key(|k| std::cmp::Reverse(k.0));
        let mut keys = Vec::new();
        for (_, path) in numbered {
            let text = std::fs::read_to_string(&path).map_err(|e| KeyError::Io(path.clone(), e))?;
            let raw = B64
                .decode(text.trim())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| KeyError::Malformed(path.clone()))?;
            keys.push(Key::new(&raw));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(dir.to_path_buf()));
        }
        Ok(KeyRing { keys })
    }

    /// Seals claims with the primary key.
    pub fn issue(&self, claims: &Claims) -> String {
        let key = &self.keys[0];
        let nonce = crate::ids::rand_bytes::<12>();
        let plain = serde_json::to_vec(claims).expect("claims serialize");
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .expect("AES-GCM seals any length a token has");
        let mut out = Vec::with_capacity(4 + 12 + sealed.len());
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The claims of a genuine token sealed by a key of this ring,
    /// whatever its expiry (see [`TokenCheck`] for the full check).
    pub fn open(&self, token: &str) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let raw = B64.decode(token).ok()?;
        if raw.len() < 4 + 12 + 16 {
            return None;
        }
        let (id, rest) = raw.split_at(4);
        let (nonce, sealed) = rest.split_at(12);
        let key = self.keys.iter().find(|k| k.id == id)?;
        let plain = key.cipher.decrypt(Nonce::from_slice(nonce), sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

fn numbered_keys(dir: &Path) -> Result<Vec<(u64, PathBuf)>, KeyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| KeyError::Io(dir.to_path_buf(), e))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| KeyError::Io(dir.to_path_buf(), e))?;
        if let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            out.push((n, e.path()));
        }
    }
    Ok(out)
}

fn write_key(dir: &Path, n: u64) -> Result<(), KeyError> {
    let key = B64.encode(crate::ids::rand_bytes::<32>());
    let path = dir.join(n.to_string());
    crate::fs::write_atomic(&path, key.as_bytes()).map_err(|e| KeyError::Io(path, e))
}

/// Creates a repository with a staged key and a primary one, if `dir`
/// holds none (Keystone's `fernet_setup`).
pub fn setup_keys(dir: &Path) -> Result<(), KeyError> {
    std::fs::create_dir_all(dir).map_err(|e| KeyError::Io(dir.to_path_buf(), e))?;
    if numbered_keys(dir)?.is_empty() {
        write_key(dir, 0)?;
        write_key(dir, 1)?;
    }
    Ok(())
}

/// Keystone's `fernet_rotate`: the staged key `0` becomes the new primary
/// (highest number), a new staged key is written, and the oldest secondary
/// keys beyond `max_active` are removed. Tokens sealed by a removed key
/// stop validating; others keep working.
pub fn rotate_keys(dir: &Path, max_active: usize) -> Result<(), KeyError> {
    setup_keys(dir)?;
    let mut numbered = numbered_keys(dir)?;
    numbered.sort();
    let highest = numbered.last().map_or(0, |(n, _)| *n);
    let staged = dir.join("0");
    let promoted = dir.join((highest + 1).to_string());
    std::fs::rename(&staged, &promoted).map_err(|e| KeyError::Io(staged.clone(), e))?;
    write_key(dir, 0)?;
    let mut numbered = numbered_keys(dir)?;
    numbered.sort();
    // Staged (0) and primary always stay; the oldest secondaries go first.
    let excess = numbered.len().saturating_sub(max_active.max(2));
    for (_, path) in numbered.iter().filter(|(n, _)| *n != 0).take(excess) {
        std::fs::remove_file(path).map_err(|e| KeyError::Io(path.clone(), e))?;
    }
    Ok(())
}

/// One revocation: a token (by audit id), or every token of a user issued
/// before a time (a deleted user, a changed password, a removed role).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationEvent {
    /// A token's audit id: that token and the ones re-scoped from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// A user: their tokens issued at or before `issued_before_us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Unix microseconds.
    pub issued_before_us: u64,
    /// Unix seconds after which no token it matches can be valid anyway,
    /// so the event can be dropped.
    pub expires_at: u64,
}

impl RevocationEvent {
    /// Whether this event revokes the token with `claims`.
    pub fn matches(&self, claims: &Claims) -> bool {
        if claims.issued_at_us > self.issued_before_us {
            return false;
        }
        match (&self.audit_id, &self.user_id) {
            (Some(a), _) => claims.audit_ids.iter().any(|x| x == a),
            (None, Some(u)) => &claims.user_id == u,
            (None, None) => false,
        }
    }
}

/// Validates tokens: the key ring, the revocations known so far, the clock.
pub struct TokenCheck {
    ring: RwLock<KeyRing>,
    revoked: RwLock<Vec<RevocationEvent>>,
}

impl TokenCheck {
    /// A checker over `ring` with no revocations yet.
    pub fn new(ring: KeyRing) -> TokenCheck {
        TokenCheck {
            ring: RwLock::new(ring),
            revoked: RwLock::new(Vec::new()),
        }
    }

    /// The claims of a genuine, unexpired, unrevoked token.
    pub fn check(&self, token: &str, now_secs: u64) -> Option<Claims> {
        let claims = self.ring.read().ok()?.open(token)?;
        if claims.expires_at <= now_secs {
            return None;
        }
        let revoked = self.revoked.read().ok()?;
        if revoked.iter().any(|e| e.matches(&claims)) {
            return None;
        }
        Some(claims)
    }

    /// Replaces the key ring (after a rotation).
    pub fn set_ring(&self, ring: KeyRing) {
        if let Ok(mut r) = self.ring.write() {
            *r = ring;
        }
    }

    /// Replaces the revocation list with the identity service's.
    pub fn set_revocations(&self, events: Vec<RevocationEvent>) {
        if let Ok(mut r) = self.revoked.write() {
            *r = events;
        }
    }

    /// Seals claims with the primary key (the identity service).
    pub fn issue(&self, claims: &Claims) -> Option<String> {
        Some(self.ring.read().ok()?.issue(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_at: u64) -> Claims {
        Claims {
            user_id: "u1".into(),
            user_name: "tester".into(),
            user_domain_id: "default".into(),
            scope: Scope::Project {
                id: "test".into(),
                name: "test".into(),
                domain_id: "default".into(),
            },
            roles: vec![RoleRef {
                id: "r1".into(),
                name: "member".into(),
            }],
            methods: vec!["password".into()],
            issued_at_us: 1_000_000,
            expires_at,
            audit_ids: vec!["a1".into()],
        }
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let ring = KeyRing::from_keys(&[[7u8; 32]]);
        let t = ring.issue(&claims(100));
        let check = TokenCheck::new(ring);
        assert_eq!(check.check(&t, 50), Some(claims(100)));
        assert_eq!(check.check(&t, 100), None, "expired");
        let mut raw = B64.decode(&t).unwrap();
        for i in [0, 5, 20, raw.len() - 1] {
            raw[i] ^= 1;
            assert_eq!(check.check(&B64.encode(&raw), 50), None, "byte {i} flipped");
            raw[i] ^= 1;
        }
        assert_eq!(check.check("", 50), None);
        assert_eq!(check.check("AUTH_tk1234", 50), None);
        // Another deployment's key does not open it.
        let other = TokenCheck::new(KeyRing::from_keys(&[[8u8; 32]]));
        assert_eq!(other.check(&t, 50), None);
    }

    #[test]
    fn revocation_by_audit_id_and_by_user() {
        let ring = KeyRing::from_keys(&[[7u8; 32]]);
        let t = ring.issue(&claims(100));
        let check = TokenCheck::new(ring);
        check.set_revocations(vec![RevocationEvent {
            audit_id: Some("a1".into()),
            user_id: None,
            issued_before_us: 1_000_000,
            expires_at: 100,
        }]);
        assert_eq!(check.check(&t, 50), None);
        // A user's tokens issued before the event go; later ones stay.
        check.set_revocations(vec![RevocationEvent {
            audit_id: None,
            user_id: Some("u1".into()),
            issued_before_us: 999_999,
            expires_at: 100,
        }]);
        assert!(check.check(&t, 50).is_some());
    }

    #[test]
    fn rotation_keeps_tokens_of_active_keys_valid() {
        let dir = tempfile::tempdir().unwrap();
        setup_keys(dir.path()).unwrap();
        let first = KeyRing::load(dir.path()).unwrap().issue(&claims(100));
        rotate_keys(dir.path(), 3).unwrap();
        let ring = KeyRing::load(dir.path()).unwrap();
        assert!(
            ring.open(&first).is_some(),
            "a secondary key still validates"
        );
        let second = ring.issue(&claims(100));
        rotate_keys(dir.path(), 3).unwrap();
        let ring = KeyRing::load(dir.path()).unwrap();
        assert!(ring.open(&first).is_none(), "the oldest key was removed");
        assert!(ring.open(&second).is_some());
        assert_eq!(numbered_keys(dir.path()).unwrap().len(), 3);
    }
}
