//! TempURL: a signed, expiring URL that grants one method on one object
//! (or on every object under a prefix) without a token, as Swift's
//! `tempurl` middleware defines it:
//!
//! - the signature is an HMAC (SHA-1, SHA-256 or SHA-512) of
//!   `METHOD\nexpires\npath`, `path` being `prefix:/v1/a/c/<prefix>` for a
//!   prefix URL, and `ip=<range>\n` leading for one bound to addresses;
//! - it is given as hex, or as `<digest>:<base64>`;
//! - `temp_url_expires` is Unix seconds or ISO 8601 (`2030-01-01T00:00:00Z`);
//! - the keys are the account's and the container's `Temp-URL-Key(-2)`.

use hmac::{Hmac, Mac};
use service_kit::auth::constant_time_eq;
use service_kit::timestamp::Timestamp;
use std::net::IpAddr;

/// What a query string signs.
#[derive(Debug, PartialEq)]
pub struct Signed {
    pub signature: String,
    pub expires: u64,
    /// `temp_url_prefix`: the URL covers every object under it.
    pub prefix: Option<String>,
    /// `temp_url_ip_range`: one address or a CIDR block.
    pub ip_range: Option<String>,
}

/// The download name a response gives (`filename`, `inline`).
#[derive(Debug, Default, PartialEq)]
pub struct Disposition {
    pub filename: Option<String>,
    pub inline: bool,
}

/// The signed parts of a query string; `None` if it has no signature or
/// an expiry that is not a time.
pub fn from_query(pairs: &[(String, String)]) -> Option<Signed> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let signature = get("temp_url_sig")?;
    let expires = parse_expires(&get("temp_url_expires")?)?;
    Some(Signed {
        signature,
        expires,
        prefix: get("temp_url_prefix"),
        ip_range: get("temp_url_ip_range"),
    })
}

/// The `filename` and `inline` parameters.
pub fn disposition(pairs: &[(String, String)]) -> Disposition {
    Disposition {
        filename: pairs
            .iter()
            .find(|(k, _)| k == "filename")
            .map(|(_, v)| v.clone()),
        inline: pairs.iter().any(|(k, _)| k == "inline"),
    }
}

/// The `Content-Disposition` of a GET through a temporary URL: Swift's
/// rule (inline when asked, else an attachment named by `filename` or by
/// the object's last path element; a stored disposition is kept when
/// neither parameter is given).
pub fn content_disposition(d: &Disposition, object: &str, stored: Option<&str>) -> String {
    let named = |name: &str| {
        let quoted = name.replace('"', "\\\"");
        let encoded =
            percent_encoding::utf8_percent_encode(name, service_kit::http_util::PATH_SEGMENT);
        format!("filename=\"{quoted}\"; filename*=UTF-8''{encoded}")
    };
    match (&d.filename, d.inline, stored) {
        (Some(f), true, _) => format!("inline; {}", named(f)),
        (None, true, _) => "inline".into(),
        (Some(f), false, _) => format!("attachment; {}", named(f)),
        (None, false, Some(s)) => s.to_string(),
        (None, false, None) => {
            let base = object
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("");
            format!("attachment; {}", named(base))
        }
    }
}

/// Unix seconds, or ISO 8601 in UTC with seconds (`%Y-%m-%dT%H:%M:%SZ`).
fn parse_expires(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let iso = v.strip_suffix('Z').filter(|s| s.len() == 19)?;
    Timestamp::from_iso8601(iso).map(Timestamp::secs)
}

fn hmac_bytes<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

#[derive(Clone, Copy)]
enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

/// The digest and raw signature bytes of a `temp_url_sig`.
fn decode_signature(sig: &str) -> Option<(Digest, Vec<u8>)> {
    use base64::Engine;
    if let Some((name, b64)) = sig.split_once(':') {
        let digest = match name {
            "sha1" => Digest::Sha1,
            "sha256" => Digest::Sha256,
            "sha512" => Digest::Sha512,
            _ => return None,
        };
        // Swift accepts standard and URL-safe alphabets, padded or not.
        let b64 = b64
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .ok()?;
        return Some((digest, raw));
    }
    let raw = hex::decode(sig.to_ascii_lowercase()).ok()?;
    let digest = match raw.len() {
        20 => Digest::Sha1,
        32 => Digest::Sha256,
        64 => Digest::Sha512,
        _ => return None,
    };
    Some((digest, raw))
}

/// Whether `addr` is within `range` (an address or a CIDR block).
fn ip_allowed(range: &str, addr: Option<IpAddr>) -> bool {
    let Some(addr) = addr else { return false };
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    if let Ok(net) = range.parse::<ipnet::IpNet>() {
        return net.contains(&addr);
    }
    range.parse::<IpAddr>().is_ok_and(|a| a == addr)
}

/// Whether `signed` grants `method` on `path` (the full, decoded `/v1/...`
/// path) at time `now`, from `client`, under any of `keys`. HEAD is allowed
/// by a GET, HEAD or PUT signature, as in Swift.
pub fn valid(
    signed: &Signed,
    method: &str,
    path: &str,
    client: Option<IpAddr>,
    keys: &[String],
    now: u64,
) -> bool {
    if signed.expires < now {
        return false;
    }
    let signed_path = match &signed.prefix {
        Some(prefix) => {
            // `/v1/<account>/<container>/` then the prefix.
            let mut parts = path.splitn(5, '/');
            let (Some(""), Some(v1), Some(a), Some(c), Some(object)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return false;
            };
            if !object.starts_with(prefix.as_str()) {
                return false;
            }
            format!("prefix:/{v1}/{a}/{c}/{prefix}")
        }
        None => path.to_string(),
    };
    if let Some(range) = &signed.ip_range {
        if !ip_allowed(range, client) {
            return false;
        }
    }
    let methods: &[&str] = if method == "HEAD" {
        &["HEAD", "GET", "PUT"]
    } else {
        &[method]
    };
    let messages: Vec<String> = methods
        .iter()
        .map(|m| {
            let msg = format!("{m}\n{}\n{signed_path}", signed.expires);
            match &signed.ip_range {
                Some(range) => format!("ip={range}\n{msg}"),
                None => msg,
            }
        })
        .collect();
    signature_matches(&signed.signature, &messages, keys)
}

/// Whether `signature` (hex, or `<digest>:<base64>`) is the HMAC of any
/// of `messages` under any of `keys`, compared in constant time. FormPost
/// signs with the same keys and forms.
pub fn signature_matches(signature: &str, messages: &[String], keys: &[String]) -> bool {
    let Some((digest, sig)) = decode_signature(signature) else {
        return false;
    };
    for key in keys.iter().filter(|k| !k.is_empty()) {
        for msg in messages {
            let expected = match digest {
                Digest::Sha1 => hmac_bytes::<Hmac<sha1::Sha1>>(key.as_bytes(), msg.as_bytes()),
                Digest::Sha256 => hmac_bytes::<Hmac<sha2::Sha256>>(key.as_bytes(), msg.as_bytes()),
                Digest::Sha512 => hmac_bytes::<Hmac<sha2::Sha512>>(key.as_bytes(), msg.as_bytes()),
            };
            if constant_time_eq(&expected, &sig) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const KEY: &str = "mykey";
    const PATH: &str = "/v1/AUTH_test/c/o";

    fn sign<M: Mac + hmac::digest::KeyInit>(msg: &str) -> Vec<u8> {
        hmac_bytes::<M>(KEY.as_bytes(), msg.as_bytes())
    }

    fn signed(signature: String) -> Signed {
        Signed {
            signature,
            expires: 2_000_000_000,
            prefix: None,
            ip_range: None,
        }
    }

    fn ok(s: &Signed, method: &str, path: &str, client: Option<IpAddr>) -> bool {
        valid(s, method, path, client, &[KEY.to_string()], 1_000)
    }

    #[test]
    fn signatures_in_every_form() {
        let msg = format!("GET\n2000000000\n{PATH}");
        let s = signed(hex::encode(sign::<Hmac<sha1::Sha1>>(&msg)));
        assert!(ok(&s, "GET", PATH, None));
        assert!(ok(&s, "HEAD", PATH, None));
        assert!(!ok(&s, "PUT", PATH, None));
        assert!(!ok(&s, "GET", "/v1/AUTH_test/c/other", None));
        assert!(!valid(&s, "GET", PATH, None, &["other".into()], 1_000));
        assert!(!valid(&s, "GET", PATH, None, &[KEY.into()], 2_000_000_001));
        let s256 = signed(hex::encode(sign::<Hmac<sha2::Sha256>>(&msg)));
        assert!(ok(&s256, "GET", PATH, None));
        let raw512 = sign::<Hmac<sha2::Sha512>>(&msg);
        for b64 in [
            base64::engine::general_purpose::STANDARD.encode(&raw512),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw512),
        ] {
            assert!(ok(&signed(format!("sha512:{b64}")), "GET", PATH, None));
        }
        assert!(!ok(&signed("md5:AAAA".into()), "GET", PATH, None));
        assert!(!ok(&signed("zz".into()), "GET", PATH, None));
    }

    #[test]
    fn prefixes_and_address_ranges_are_signed_too() {
        let msg = "GET\n2000000000\nprefix:/v1/AUTH_test/c/pre";
        let mut s = signed(hex::encode(sign::<Hmac<sha2::Sha256>>(msg)));
        s.prefix = Some("pre".into());
        assert!(ok(&s, "GET", "/v1/AUTH_test/c/pre/x", None));
        assert!(ok(&s, "GET", "/v1/AUTH_test/c/prefix", None));
        assert!(!ok(&s, "GET", "/v1/AUTH_test/c/other", None));
        assert!(!ok(&s, "GET", "/v1/AUTH_test/d/pre/x", None));

        let msg = format!("ip=127.0.0.0/8\nGET\n2000000000\n{PATH}");
        let mut s = signed(hex::encode(sign::<Hmac<sha1::Sha1>>(&msg)));
        s.ip_range = Some("127.0.0.0/8".into());
        assert!(ok(&s, "GET", PATH, "127.0.0.1".parse().ok()));
        assert!(ok(&s, "GET", PATH, "::ffff:127.0.0.9".parse().ok()));
        assert!(!ok(&s, "GET", PATH, "10.0.0.1".parse().ok()));
        assert!(!ok(&s, "GET", PATH, None));
        // The range is part of what is signed.
        s.ip_range = Some("10.0.0.0/8".into());
        assert!(!ok(&s, "GET", PATH, "10.0.0.1".parse().ok()));
    }

    #[test]
    fn expiry_in_either_form() {
        let q = |e: &str| {
            vec![
                ("temp_url_sig".to_string(), "x".to_string()),
                ("temp_url_expires".to_string(), e.to_string()),
            ]
        };
        assert_eq!(
            from_query(&q("1700000000")).map(|s| s.expires),
            Some(1_700_000_000)
        );
        assert_eq!(
            from_query(&q("2033-05-18T03:33:20Z")).map(|s| s.expires),
            Some(2_000_000_000)
        );
        assert_eq!(from_query(&q("2033-05-18T03:33:20")), None);
        assert_eq!(from_query(&q("soon")), None);
    }

    #[test]
    fn download_names() {
        let d = |filename: Option<&str>, inline| Disposition {
            filename: filename.map(String::from),
            inline,
        };
        assert_eq!(
            content_disposition(&d(None, false), "dir/a b.txt", None),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(content_disposition(&d(None, true), "o", None), "inline");
        assert!(content_disposition(&d(Some("x.bin"), true), "o", None).starts_with("inline; "));
        assert_eq!(
            content_disposition(&d(None, false), "o", Some("inline")),
            "inline"
        );
    }
}
