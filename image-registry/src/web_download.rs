//! Glance's `web-download` import method: the registry fetches the image
//! from an http(s) URL, then imports it like staged data (the same verdict,
//! conversion and storage as `glance-direct`).
//!
//! The URL is a request to make connections from inside the cloud, so it
//! is filtered as Glance's `[import_filtering_opts]` filter it: allowed or
//! disallowed schemes, hosts and ports (an allow list, when set, wins over
//! the deny list; ports default to 80 and 443). Beyond Glance, every
//! address the host name resolves to is checked too, and the connection is
//! made only to the checked addresses (no second lookup an attacker's DNS
//! could answer differently): loopback, link-local, unspecified and
//! multicast targets are refused unless configured. Redirects are followed
//! by hand, at most [`MAX_REDIRECTS`], each hop filtered like the first.
//! The body is capped at the registry's `max_image_size`.
//!
//! [`check_url`] and [`check_addr`] are the pure core; [`fetch`] is the
//! blocking I/O shell (run it off the async workers).

#![cfg(feature = "service")]

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

pub const MAX_REDIRECTS: usize = 5;

fn http_ports() -> Vec<u16> {
    vec![80, 443]
}
fn http_schemes() -> Vec<String> {
    vec!["http".into(), "https".into()]
}

/// What `web-download` may reach (Glance's `[import_filtering_opts]`, plus
/// address classes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebDownloadConfig {
    #[serde(default = "http_schemes")]
    pub allowed_schemes: Vec<String>,
    #[serde(default)]
    pub disallowed_schemes: Vec<String>,
    /// Host names or addresses as written in the URL.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub disallowed_hosts: Vec<String>,
    #[serde(default = "http_ports")]
    pub allowed_ports: Vec<u16>,
    #[serde(default)]
    pub disallowed_ports: Vec<u16>,
    /// Let URLs reach 127.0.0.0/8 and ::1 (tests; never in production).
    #[serde(default)]
    pub allow_loopback: bool,
    /// Let URLs reach 169.254.0.0/16 and fe80::/10 (where cloud metadata
    /// services live).
    #[serde(default)]
    pub allow_link_local: bool,
    /// Give up on a server that sends nothing for this long.
    #[serde(default = "thirty")]
    pub read_timeout_secs: u64,
}

fn thirty() -> u64 {
    30
}

impl Default for WebDownloadConfig {
    fn default() -> Self {
        WebDownloadConfig {
            allowed_schemes: http_schemes(),
            disallowed_schemes: Vec::new(),
            allowed_hosts: Vec::new(),
            disallowed_hosts: Vec::new(),
            allowed_ports: http_ports(),
            disallowed_ports: Vec::new(),
            allow_loopback: false,
            allow_link_local: false,
            read_timeout_secs: thirty(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WebError {
    #[error("URI for web-download does not pass filtering: {0}")]
    Filtered(String),
    #[error("web-download of {0} failed: {1}")]
    Fetch(String, String),
    #[error("web-download: the image is larger than {0} bytes")]
    TooLarge(u64),
    #[error("web-download: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

fn filtered(why: impl Into<String>) -> WebError {
    WebError::Filtered(why.into())
}

/// Allowed by a (allow list, deny list) pair: a non-empty allow list is
/// the whole story, else anything not denied.
fn passes<T: PartialEq>(value: &T, allowed: &[T], disallowed: &[T]) -> bool {
    if allowed.is_empty() {
        !disallowed.contains(value)
    } else {
        allowed.contains(value)
    }
}

/// The URL's scheme, host and port against the filters; the parsed URL.
pub fn check_url(raw: &str, cfg: &WebDownloadConfig) -> Result<url::Url, WebError> {
    let url = url::Url::parse(raw).map_err(|e| filtered(format!("{raw:?} is not a URL ({e})")))?;
    let scheme = url.scheme().to_string();
    if !passes(&scheme, &cfg.allowed_schemes, &cfg.disallowed_schemes) {
        return Err(filtered(format!("scheme {scheme:?} is not allowed")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(filtered("credentials in the URL are not allowed"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| filtered("the URL has no host"))?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    if !passes(&host, &cfg.allowed_hosts, &cfg.disallowed_hosts) {
        return Err(filtered(format!("host {host:?} is not allowed")));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| filtered("the URL has no port"))?;
    if !passes(&port, &cfg.allowed_ports, &cfg.disallowed_ports) {
        return Err(filtered(format!("port {port} is not allowed")));
    }
    Ok(url)
}

/// An address a host name resolved to, against the address classes.
pub fn check_addr(ip: IpAddr, cfg: &WebDownloadConfig) -> Result<(), WebError> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let (loopback, link_local) = match ip {
        IpAddr::V4(v4) => (v4.is_loopback(), v4.is_link_local()),
        IpAddr::V6(v6) => (v6.is_loopback(), (v6.segments()[0] & 0xffc0) == 0xfe80),
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(filtered(format!("address {ip} is not allowed")));
    }
    if loopback && !cfg.allow_loopback {
        return Err(filtered(format!("loopback address {ip} is not allowed")));
    }
    if link_local && !cfg.allow_link_local {
        return Err(filtered(format!("link-local address {ip} is not allowed")));
    }
    Ok(())
}

/// Resolves `host:port` and keeps the result only if every address passes
/// [`check_addr`]; ureq connects to exactly these.
struct CheckedResolver(WebDownloadConfig);

impl ureq::Resolver for CheckedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        for a in &addrs {
            check_addr(a.ip(), &self.0)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
        }
        Ok(addrs)
    }
}

/// Downloads `raw_url` into a new file at `dest` (at most `max` bytes),
/// calling `progress(bytes so far, total if known)` as it goes. Blocking.
pub fn fetch(
    raw_url: &str,
    cfg: &WebDownloadConfig,
    dest: &Path,
    max: u64,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, WebError> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(cfg.read_timeout_secs))
        .resolver(CheckedResolver(cfg.clone()))
        .build();
    let mut url = check_url(raw_url, cfg)?;
    let mut hops = 0;
    let response = loop {
        let fail = |e: String| WebError::Fetch(url.to_string(), e);
        let resp = match agent.request_url("GET", &url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => return Err(fail(format!("HTTP {code}"))),
            Err(ureq::Error::Transport(t)) => {
                // A refused address surfaces as a transport error: say why.
                let why = t.to_string();
                if why.contains("does not pass filtering") {
                    return Err(filtered(why));
                }
                return Err(fail(why));
            }
        };
        if (300..400).contains(&resp.status()) {
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(WebError::TooManyRedirects);
            }
            let location = resp
                .header("location")
                .ok_or_else(|| fail("a redirect without a Location".into()))?;
            let next = url
                .join(location)
                .map_err(|e| fail(format!("a bad redirect ({e})")))?;
            url = check_url(next.as_str(), cfg)?;
            continue;
        }
        break resp;
    };
    let total: Option<u64> = response
        .header("content-length")
        .and_then(|v| v.parse().ok());
    if total.is_some_and(|n| n > max) {
        return Err(WebError::TooLarge(max));
    }
    let io = |e: std::io::Error| WebError::Fetch(raw_url.to_string(), e.to_string());
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io)?;
    let mut body = response.into_reader().take(max + 1);
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        got += n as u64;
        if got > max {
            return Err(WebError::TooLarge(max));
        }
        out.write_all(&buf[..n]).map_err(io)?;
        progress(got, total);
    }
    if total.is_some_and(|n| n != got) {
        return Err(WebError::Fetch(
            raw_url.to_string(),
            format!("received {got} bytes of {}", total.unwrap_or(0)),
        ));
    }
    out.sync_all().map_err(io)?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_filtered_like_glance() {
        let cfg = WebDownloadConfig::default();
        assert!(check_url("https://images.example.org/a.qcow2", &cfg).is_ok());
        assert!(check_url("http://images.example.org:80/a", &cfg).is_ok());
        for (bad, why) in [
            ("ftp://example.org/a", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("http://example.org:8080/a", "port 8080"),
            ("http://user:pw@example.org/a", "credentials"),
            ("not a url", "not a URL"),
        ] {
            let e = check_url(bad, &cfg).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let cfg = WebDownloadConfig {
            disallowed_hosts: vec!["evil.example.org".into()],
            allowed_ports: vec![],
            disallowed_ports: vec![22],
            ..WebDownloadConfig::default()
        };
        assert!(check_url("http://evil.example.org/a", &cfg).is_err());
        assert!(check_url("http://ok.example.org:8080/a", &cfg).is_ok());
        assert!(check_url("http://ok.example.org:22/a", &cfg).is_err());
        let only = WebDownloadConfig {
            allowed_hosts: vec!["mirror.example.org".into()],
            ..WebDownloadConfig::default()
        };
        assert!(check_url("http://mirror.example.org/a", &only).is_ok());
        assert!(check_url("http://other.example.org/a", &only).is_err());
    }

    /// A server on 127.0.0.1 answering every request with `body` (and a
    /// Content-Length when `length` says so); its port.
    fn serve(body: Vec<u8>, length: bool) -> u16 {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let head = if length {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                } else {
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        port
    }

    /// The address check is on what the name resolves to: `localhost`
    /// passes the host and port filters and is still refused, until
    /// loopback is allowed.
    #[test]
    fn a_name_that_resolves_to_loopback_is_refused() {
        let port = serve(b"image".to_vec(), true);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = WebDownloadConfig {
            allowed_ports: vec![port],
            ..WebDownloadConfig::default()
        };
        let url = format!("http://localhost:{port}/x");
        let e = fetch(&url, &cfg, &dir.path().join("a"), 1 << 20, |_, _| {}).unwrap_err();
        assert!(matches!(e, WebError::Filtered(_)), "{e}");
        assert!(!dir.path().join("a").exists());
        cfg.allow_loopback = true;
        let got = fetch(&url, &cfg, &dir.path().join("b"), 1 << 20, |_, _| {}).unwrap();
        assert_eq!(got, 5);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"image");
    }

    /// The size cap holds whether the server announces a length or not.
    #[test]
    fn bodies_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |port| WebDownloadConfig {
            allowed_ports: vec![port],
            allow_loopback: true,
            ..WebDownloadConfig::default()
        };
        for (n, length) in [(0, true), (1, false)] {
            let port = serve(vec![7u8; 100_000], length);
            let url = format!("http://127.0.0.1:{port}/x");
            let out = dir.path().join(n.to_string());
            let e = fetch(&url, &cfg(port), &out, 65_536, |_, _| {}).unwrap_err();
            assert_eq!(e, WebError::TooLarge(65_536), "length announced: {length}");
        }
    }

    #[test]
    fn loopback_and_link_local_need_configuring() {
        let cfg = WebDownloadConfig::default();
        for ip in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_addr(ip, &cfg).is_err(), "{ip}");
        }
        assert!(check_addr("192.0.2.10".parse().unwrap(), &cfg).is_ok());
        let tests = WebDownloadConfig {
            allow_loopback: true,
            ..WebDownloadConfig::default()
        };
        assert!(check_addr("127.0.0.1".parse().unwrap(), &tests).is_ok());
        assert!(check_addr("169.254.169.254".parse().unwrap(), &tests).is_err());
    }
}
