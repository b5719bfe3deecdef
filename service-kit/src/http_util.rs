//! Bodies and small HTTP helpers every service uses: one body type,
//! plain-text, JSON and empty responses, header and query parsing.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;

/// Any error a body or a handler may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body: a fixed buffer or a stream, erased to one type.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body error from a message. A plain function, so that async blocks do
/// not have to prove `From` for every lifetime.
pub fn box_error(msg: &'static str) -> BoxError {
    msg.into()
}

/// Reads a whole body of at most `limit` bytes; `None` if it is larger or
/// breaks off.
pub async fn collect_limited<B>(mut body: B, limit: usize) -> Option<Bytes>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if out.len() + data.len() > limit {
                return None;
            }
            out.extend_from_slice(&data);
        }
    }
    Some(out.freeze())
}

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response with a plain-text body (Swift answers errors this way).
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body = body.into();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An empty response with this status.
pub fn status(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    // Said even where no body follows (a HEAD); HTTP drops it from 204s.
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("0"),
    );
    r
}

/// A header's value as text; invalid bytes are replaced rather than rejected,
/// because Swift clients send UTF-8 metadata as raw header bytes.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Sets a header from text, dropping it if the text cannot be a header value
/// (control characters); metadata was validated on the way in.
pub fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_bytes(value.as_bytes()),
    ) {
        headers.insert(n, v);
    }
}

/// Percent-encoding for path segments and query values.
pub const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encoding for a path with its slashes (Python's `quote`, which
/// Swift uses for names; AWS leaves the same characters unencoded in keys).
pub const PATH: &percent_encoding::AsciiSet = &PATH_SEGMENT.remove(b'/');

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// Whether a flag's value is true as Swift reads one (`config_true_value`):
/// `true`, `1`, `yes`, `on`, `t`, `y`, in any case.
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

/// Parses `a=b&c=d` with percent-decoding; keys without `=` map to "".
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_query(k), decode_query(v))
        })
        .collect()
}

/// Decodes a percent-encoded path segment (`+` stays `+`).
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn decode_query(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Streams `len` bytes of a file from its current position in 256 KiB
/// chunks: memory stays flat; a file shorter than `len` ends in an error.
pub fn file_body(file: tokio::fs::File, len: u64) -> Body {
    const CHUNK: u64 = 256 * 1024;
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK.min(left) as usize];
        match file.read_exact(&mut buf).await {
            Ok(_) => {
                let n = buf.len() as u64;
                Some((Ok(Frame::data(Bytes::from(buf))), (file, left - n)))
            }
            Err(e) => Some((Err(Box::new(e) as BoxError), (file, 0))),
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

/// A JSON body response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(value).expect("json")));
    *r.status_mut() = status;
    set_header(
        r.headers_mut(),
        "content-type",
        "application/json; charset=utf-8",
    );
    r
}

/// A body fed by a task: for responses assembled from several reads.
pub fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    (tx, BodyExt::boxed_unsync(StreamBody::new(Box::pin(stream))))
}

/// Text as XML character data or an attribute value.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
