//! Password hashing with argon2id (the `argon2` crate's defaults: OWASP's
//! recommended 19 MiB, 2 passes), stored as PHC strings.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(&service_kit::ids::rand_bytes::<16>())
        .expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password with default parameters")
        .to_string()
}

/// Whether `password` matches the stored hash (constant time inside
/// argon2's verifier).
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Costs about as much as [`verify`], so that a login for a user that does
/// not exist takes as long as one with a wrong password.
pub fn verify_nobody(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("not a password anyone has"));
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("testing");
        let b = hash("testing");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("testing", &a));
        assert!(!verify("Testing", &a));
        assert!(!verify("testing", "not a phc string"));
    }
}
