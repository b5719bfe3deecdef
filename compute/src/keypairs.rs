//! Key pairs (Nova's `os-keypairs`): a user's named SSH public keys, which
//! an instance launched with `key_name` receives through its metadata.
//!
//! The pure core: names checked as Nova checks them, public keys parsed
//! with the `ssh-key` crate (any OpenSSH public key: ed25519, ECDSA, RSA),
//! fingerprints as Nova computes them (MD5 over the key's wire encoding,
//! colon-separated), and ed25519 keys generated when the client sends no
//! public key (the private key is returned once and never stored).

use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// The longest key pair name Nova accepts.
const MAX_NAME: usize = 255;

/// A stored key pair: its public half only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyPair {
    pub name: String,
    /// The id of the user who owns it (key pairs are per user, as Nova's).
    pub user_id: String,
    /// One line, `<algorithm> <base64> [comment]`.
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: String,
}

/// Why a key pair cannot be made; each is a 400 with Nova's message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyPairError {
    #[error("Keypair data is invalid: Keypair name contains unsafe characters")]
    UnsafeName,
    #[error("Keypair data is invalid: Keypair name must be string and between 1 and 255 characters long")]
    NameLength,
    #[error("Keypair data is invalid: failed to generate fingerprint")]
    BadPublicKey,
    #[error("Keypair data is invalid: only ssh keys are supported")]
    UnsupportedType,
    /// Not the client's fault (the OS random source, an encoder): a 500.
    #[error("generating a key pair failed: {0}")]
    Generation(String),
}

/// Nova's rule: letters, digits, `_`, `-` and space, 1 to 255 of them.
pub fn check_name(name: &str) -> Result<(), KeyPairError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ');
    if !name.chars().all(safe) {
        return Err(KeyPairError::UnsafeName);
    }
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(KeyPairError::NameLength);
    }
    Ok(())
}

/// Nova's fingerprint of a public key: the MD5 of its wire encoding, as
/// colon-separated hex pairs.
pub fn fingerprint(key: &PublicKey) -> Result<String, KeyPairError> {
    use md5::{Digest, Md5};
    let wire = key.to_bytes().map_err(|_| KeyPairError::BadPublicKey)?;
    let digest = Md5::digest(&wire);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// A key pair of an imported public key (one OpenSSH public key line).
pub fn import(
    name: &str,
    user_id: &str,
    public_key: &str,
    key_type: Option<&str>,
    now: &str,
) -> Result<KeyPair, KeyPairError> {
    check_name(name)?;
    check_type(key_type)?;
    let line = public_key.trim();
    let key = PublicKey::from_openssh(line).map_err(|_| KeyPairError::BadPublicKey)?;
    Ok(KeyPair {
        name: name.to_string(),
        user_id: user_id.to_string(),
        public_key: line.to_string(),
        fingerprint: fingerprint(&key)?,
        created_at: now.to_string(),
    })
}

/// A new ed25519 key pair, and its private key in OpenSSH's format (the
/// only time it exists outside the client).
pub fn generate(
    name: &str,
    user_id: &str,
    key_type: Option<&str>,
    now: &str,
) -> Result<(KeyPair, String), KeyPairError> {
    check_name(name)?;
    check_type(key_type)?;
    let failed = |e: ssh_key::Error| KeyPairError::Generation(e.to_string());
    let private =
        PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).map_err(failed)?;
    let mut public = private.public_key().clone();
    public.set_comment(format!("Generated-by-Nubo {name}"));
    let public_line = public.to_openssh().map_err(failed)?;
    let pem = private.to_openssh(LineEnding::LF).map_err(failed)?;
    let pair = KeyPair {
        name: name.to_string(),
        user_id: user_id.to_string(),
        public_key: public_line,
        fingerprint: fingerprint(&public)?,
        created_at: now.to_string(),
    };
    Ok((pair, pem.to_string()))
}

/// Nova's key types are `ssh` and `x509`; only SSH keys are kept here.
fn check_type(key_type: Option<&str>) -> Result<(), KeyPairError> {
    match key_type {
        None | Some("ssh") => Ok(()),
        Some(_) => Err(KeyPairError::UnsupportedType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real keys, made by `ssh-keygen`, and their fingerprints as
    /// `ssh-keygen -l -E md5` prints them (Nova's are the same).
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICINK/2c0JcSLp7tKV4ijl53qqIFY6Vgjc2cqgmrAWMF me@host";
    const ED25519_FINGERPRINT: &str = "39:c7:5a:66:30:c4:68:e9:bd:c6:54:1f:c0:58:42:a8";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC5AhInHVr2Si33oeYHqKgbPoA76fiYEjBXFntg2HwcwymjqNGVRHo/Gj2pDlM1qhv53EZiZcoeQOmVTGWLAxcstheSvcFGD0WGag7q7yS79+/7SqVM9Si1ExIofgoYDYYlnfEhYSSyZ0PUDWXxhYgmMa8JLgvOGyGtpJE0n+3F32Rfz/o0sHr1tam1DHSj6ZPa2yUQfbOlB8q76BMR9DZsVm5hcSVmUwdc/9Tnl6ycbg4QPa55Aq7LaDOejVnhc63Wp6/vB/lOf5FUbGIzb4h+AAre0TvL2aipGTrs6GMA6YzeY8Bt3WsPtYMFXlEtYHz/XDP6LcoOoQNFEqKoYMSZ rsa@host";
    const RSA_FINGERPRINT: &str = "66:6a:57:40:04:f3:4a:5a:78:71:a9:0c:36:4c:14:8c";

    #[test]
    fn names_are_checked_as_nova_checks_them() {
        assert_eq!(check_name("my key_1-2"), Ok(()));
        assert_eq!(check_name(""), Err(KeyPairError::NameLength));
        assert_eq!(check_name(&"k".repeat(256)), Err(KeyPairError::NameLength));
        assert_eq!(check_name(&"k".repeat(255)), Ok(()));
        for bad in ["a/b", "a.b", "ключ", "a\nb", "a@b"] {
            assert_eq!(check_name(bad), Err(KeyPairError::UnsafeName), "{bad:?}");
        }
    }

    #[test]
    fn an_imported_key_keeps_its_line_and_gets_nova_s_fingerprint() {
        let pair = import("k", "u1", &format!("  {ED25519}\n"), None, "t").unwrap();
        assert_eq!(pair.public_key, ED25519);
        assert_eq!(pair.fingerprint, ED25519_FINGERPRINT);
        assert_eq!(pair.user_id, "u1");
        let rsa = import("k", "u1", RSA, Some("ssh"), "t").unwrap();
        assert_eq!(rsa.fingerprint, RSA_FINGERPRINT);
    }

    #[test]
    fn malformed_keys_and_other_types_are_refused() {
        for bad in [
            "",
            "not a key",
            "ssh-ed25519 AAAA",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICINK/2c0JcSLp7tKV4ijl53qqIFY6Vgjc2cqgmrAWMF",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICINK/2c0JcSLp7tKV4ijl53qqIFY6Vgjc2cqgmrAW",
            "-----BEGIN CERTIFICATE-----",
        ] {
            assert_eq!(
                import("k", "u", bad, None, "t"),
                Err(KeyPairError::BadPublicKey),
                "{bad:?}"
            );
        }
        assert_eq!(
            import("k", "u", ED25519, Some("x509"), "t"),
            Err(KeyPairError::UnsupportedType)
        );
    }

    #[test]
    fn a_generated_key_pair_holds_together() {
        let (pair, pem) = generate("k", "u", None, "t").unwrap();
        let private = PrivateKey::from_openssh(&pem).unwrap();
        let public = PublicKey::from_openssh(&pair.public_key).unwrap();
        assert_eq!(private.public_key().key_data(), public.key_data());
        assert_eq!(pair.fingerprint, fingerprint(&public).unwrap());
        let (other, _) = generate("k", "u", None, "t").unwrap();
        assert_ne!(other.public_key, pair.public_key);
    }
}
