//! CORS for the Swift API, as Swift's proxy does it from container
//! metadata (`X-Container-Meta-Access-Control-Allow-Origin`, `-Max-Age`,
//! `-Expose-Headers`): a preflight `OPTIONS` is answered without a token
//! (401 when the origin or method is not allowed), and an answer to a
//! request with an allowed `Origin` carries the CORS headers (strict mode:
//! none for an origin not allowed).

use http::{HeaderMap, Response, StatusCode};
use service_kit::http_util::{header_str, set_header, status, Body};

const ALLOW_ORIGIN: &str = "x-container-meta-access-control-allow-origin";
const MAX_AGE: &str = "x-container-meta-access-control-max-age";
const EXPOSE: &str = "x-container-meta-access-control-expose-headers";

/// The methods a preflight may ask for (Swift's object controller's).
const METHODS: &str = "COPY, DELETE, GET, HEAD, OPTIONS, POST, PUT";

/// Headers every CORS answer exposes (Swift's list).
const EXPOSED: [&str; 10] = [
    "cache-control",
    "content-language",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
    "etag",
    "x-timestamp",
    "x-trans-id",
    "x-openstack-request-id",
];

/// A container's CORS settings, from its headers.
pub struct Cors<'a> {
    container: &'a HeaderMap,
}

impl<'a> Cors<'a> {
    pub fn of(container: &'a HeaderMap) -> Cors<'a> {
        Cors { container }
    }

    fn allow_origin(&self) -> String {
        header_str(self.container, ALLOW_ORIGIN)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }

    /// Whether `origin` is one the container allows (a space-separated
    /// list, or `*`).
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origin()
            .split(' ')
            .any(|o| !o.is_empty() && (o == "*" || o == origin))
    }

    fn origin_header(&self, origin: &str) -> String {
        if self.allow_origin() == "*" {
            "*".into()
        } else {
            origin.into()
        }
    }

    /// The answer to a preflight from `origin` asking for `method`.
    pub fn preflight(
        &self,
        origin: &str,
        method: Option<&str>,
        headers: Option<&str>,
    ) -> Response<Body> {
        let method_ok = method.is_some_and(|m| METHODS.split(", ").any(|a| a == m));
        if !self.allows(origin) || !method_ok {
            return status(StatusCode::UNAUTHORIZED);
        }
        let mut r = status(StatusCode::OK);
        let h = r.headers_mut();
        set_header(
            h,
            "access-control-allow-origin",
            &self.origin_header(origin),
        );
        set_header(h, "access-control-allow-methods", METHODS);
        let mut vary = "Origin".to_string();
        if let Some(age) = header_str(self.container, MAX_AGE) {
            set_header(h, "access-control-max-age", &age);
        }
        // Swift allows whatever headers the preflight names.
        if let Some(requested) = headers.filter(|v| !v.trim().is_empty()) {
            set_header(h, "access-control-allow-headers", requested);
            vary.push_str(", Access-Control-Request-Headers");
        }
        set_header(h, "vary", &vary);
        r
    }

    /// Adds the CORS headers to an answer for an allowed `origin`.
    pub fn decorate(&self, origin: &str, answer: &mut HeaderMap) {
        if !self.allows(origin) {
            return;
        }
        if !answer.contains_key("access-control-expose-headers") {
            let mut exposed: Vec<String> = EXPOSED.iter().map(|s| s.to_string()).collect();
            for name in answer.keys() {
                let n = name.as_str();
                if n.starts_with("x-container-meta-") || n.starts_with("x-object-meta-") {
                    exposed.push(n.to_string());
                }
            }
            if let Some(extra) = header_str(self.container, EXPOSE) {
                exposed.extend(extra.split(' ').filter(|h| !h.is_empty()).map(String::from));
            }
            set_header(answer, "access-control-expose-headers", &exposed.join(", "));
        }
        if !answer.contains_key("access-control-allow-origin") {
            let value = self.origin_header(origin);
            set_header(answer, "access-control-allow-origin", &value);
            if value != "*" {
                set_header(answer, "vary", "Origin");
            }
        }
    }
}

/// `OPTIONS` with no `Origin`: the methods a path takes.
pub fn options() -> Response<Body> {
    let mut r = status(StatusCode::OK);
    set_header(r.headers_mut(), "allow", METHODS);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_methods_and_exposed_headers() {
        let mut c = HeaderMap::new();
        set_header(&mut c, ALLOW_ORIGIN, "http://a.example http://b.example");
        set_header(&mut c, MAX_AGE, "60");
        set_header(&mut c, EXPOSE, "x-custom");
        let cors = Cors::of(&c);
        assert!(cors.allows("http://b.example"));
        assert!(!cors.allows("http://evil.example"));
        let ok = cors.preflight("http://a.example", Some("PUT"), Some("x-foo"));
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()["access-control-allow-origin"],
            "http://a.example"
        );
        assert_eq!(ok.headers()["access-control-max-age"], "60");
        assert_eq!(ok.headers()["access-control-allow-headers"], "x-foo");
        for (origin, method) in [
            ("http://evil.example", "GET"),
            ("http://a.example", "PATCH"),
        ] {
            let no = cors.preflight(origin, Some(method), None);
            assert_eq!(no.status(), StatusCode::UNAUTHORIZED, "{origin} {method}");
        }
        let mut answer = HeaderMap::new();
        set_header(&mut answer, "x-object-meta-colour", "blue");
        cors.decorate("http://a.example", &mut answer);
        let exposed = answer["access-control-expose-headers"].to_str().unwrap();
        assert!(exposed.contains("etag") && exposed.contains("x-object-meta-colour"));
        assert!(exposed.contains("x-custom"));
        let mut strict = HeaderMap::new();
        cors.decorate("http://evil.example", &mut strict);
        assert!(strict.is_empty());
        let mut any = HeaderMap::new();
        set_header(&mut any, ALLOW_ORIGIN, "*");
        let mut answer = HeaderMap::new();
        Cors::of(&any).decorate("http://x.example", &mut answer);
        assert_eq!(answer["access-control-allow-origin"], "*");
    }
}
