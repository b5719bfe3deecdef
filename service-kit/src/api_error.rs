//! One error-to-response mapping per API (as Garage's `ApiError`): each
//! API's error type says its status, extra headers and body once, and
//! handlers return the error rather than building responses by hand.

use crate::http_util::{full, set_header, Body};
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

/// An API's error, as the client sees it.
pub trait ApiError {
    /// The HTTP status the client sees.
    fn status(&self) -> StatusCode;

    /// Headers beyond the content type (a `Content-Range`, an `ETag`).
    fn headers(&self) -> HeaderMap {
        HeaderMap::new()
    }

    /// The content type and the body, in the API's own format.
    fn body(&self) -> (&'static str, Bytes);

    /// The whole response.
    fn response(&self) -> Response<Body> {
        let (content_type, body) = self.body();
        let len = body.len();
        let mut r = Response::new(full(body));
        *r.status_mut() = self.status();
        *r.headers_mut() = self.headers();
        // Said even where no body follows (a HEAD), as Swift does.
        if !r.headers().contains_key("content-length") {
            set_header(r.headers_mut(), "content-length", &len.to_string());
        }
        if !content_type.is_empty() {
            set_header(r.headers_mut(), "content-type", content_type);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Teapot;

    impl ApiError for Teapot {
        fn status(&self) -> StatusCode {
            StatusCode::IM_A_TEAPOT
        }
        fn headers(&self) -> HeaderMap {
            let mut h = HeaderMap::new();
            set_header(&mut h, "x-brew", "tea");
            h
        }
        fn body(&self) -> (&'static str, Bytes) {
            ("text/plain", Bytes::from_static(b"short and stout"))
        }
    }

    #[test]
    fn a_response_carries_status_headers_and_body() {
        let r = Teapot.response();
        assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(r.headers()["x-brew"], "tea");
        assert_eq!(r.headers()["content-type"], "text/plain");
    }
}
