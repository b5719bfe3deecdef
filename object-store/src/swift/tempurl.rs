//! TempURL: a signed, expiring URL that grants one method on one object
//! without a token. The signature is an HMAC of `METHOD\nexpires\npath` with a
//! key from the account's (or container's) `Temp-URL-Key` metadata.

use hmac::{Hmac, Mac};
use service_kit::auth::constant_time_eq;

#[derive(Debug, PartialEq)]
pub struct Signed {
    pub signature: String,
    pub expires: u64,
}

/// The signature and expiry from a query string, if both are there.
pub fn from_query(pairs: &[(String, String)]) -> Option<Signed> {
    let sig = pairs.iter().find(|(k, _)| k == "temp_url_sig")?.1.clone();
    let expires = pairs
        .iter()
        .find(|(k, _)| k == "temp_url_expires")?
        .1
        .parse()
        .ok()?;
    Some(Signed {
        signature: sig,
        expires,
    })
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> String {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

/// Whether `signed` grants `method` on `path` (the full `/v1/...` path) at
/// time `now` under any of `keys`. HEAD is allowed by a GET, HEAD or PUT
/// signature, as in Swift.
pub fn valid(signed: &Signed, method: &str, path: &str, keys: &[String], now: u64) -> bool {
    if signed.expires < now {
        return false;
    }
    let methods: &[&str] = if method == "HEAD" {
        &["HEAD", "GET", "PUT"]
    } else {
        &[method]
    };
    let sig = signed.signature.to_ascii_lowercase();
    for key in keys.iter().filter(|k| !k.is_empty()) {
        for m in methods {
            let msg = format!("{m}\n{}\n{path}", signed.expires);
            let expected = match sig.len() {
                40 => hmac_hex::<Hmac<sha1::Sha1>>(key.as_bytes(), msg.as_bytes()),
                64 => hmac_hex::<Hmac<sha2::Sha256>>(key.as_bytes(), msg.as_bytes()),
                128 => hmac_hex::<Hmac<sha2::Sha512>>(key.as_bytes(), msg.as_bytes()),
                _ => return false,
            };
            if constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let key = "mykey".to_string();
        let path = "/v1/AUTH_test/c/o";
        let msg = format!("GET\n2000000000\n{path}");
        let sig = hmac_hex::<Hmac<sha1::Sha1>>(key.as_bytes(), msg.as_bytes());
        let s = Signed {
            signature: sig.clone(),
            expires: 2_000_000_000,
        };
        assert!(valid(&s, "GET", path, std::slice::from_ref(&key), 1_000));
        assert!(valid(&s, "HEAD", path, std::slice::from_ref(&key), 1_000));
        assert!(!valid(&s, "PUT", path, std::slice::from_ref(&key), 1_000));
        assert!(!valid(
            &s,
            "GET",
            "/v1/AUTH_test/c/other",
            std::slice::from_ref(&key),
            1_000
        ));
        assert!(!valid(&s, "GET", path, &["other".to_string()], 1_000));
        assert!(!valid(
            &s,
            "GET",
            path,
            std::slice::from_ref(&key),
            2_000_000_001
        ));
        let s256 = Signed {
            signature: hmac_hex::<Hmac<sha2::Sha256>>(key.as_bytes(), msg.as_bytes()),
            expires: 2_000_000_000,
        };
        assert!(valid(&s256, "GET", path, &[key], 1_000));
    }
}
