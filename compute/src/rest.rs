//! The small HTTP+JSON client the compute services share: the API calls
//! the registry and the agents, the agents call the API.

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use service_kit::client::HttpClient;
use service_kit::http_util::full;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("{0} is not an http://host:port URL")]
    BadUrl(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("reading the answer of {0}: {1}")]
    Body(String, String),
}

/// `host:port` of an `http://host:port[/...]` URL.
pub fn addr_of(url: &str) -> Result<String, RestError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| RestError::BadUrl(url.into()))?;
    let addr = rest.split('/').next().unwrap_or_default();
    if addr.is_empty() || !addr.contains(':') {
        return Err(RestError::BadUrl(url.into()));
    }
    Ok(addr.to_string())
}

/// One request with an optional JSON body; the status and the body parsed
/// as JSON (`Null` when empty or not JSON).
pub async fn call(
    client: &HttpClient,
    base_url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<(StatusCode, Value), RestError> {
    let addr = addr_of(base_url)?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &addr);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            serde_json::to_vec(v).expect("json")
        }
        None => Vec::new(),
    };
    let req = req
        .body(full(payload))
        .map_err(|e| RestError::BadUrl(e.to_string()))?;
    let resp = client
        .send(&addr, req)
        .await
        .map_err(|e| RestError::Unreachable(e.to_string()))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| RestError::Body(addr.clone(), e.to_string()))?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_address() {
        assert_eq!(addr_of("http://127.0.0.1:9292").unwrap(), "127.0.0.1:9292");
        assert_eq!(addr_of("http://h:1/v2").unwrap(), "h:1");
        assert!(addr_of("https://h:1").is_err());
        assert!(addr_of("http://h").is_err());
        assert!(addr_of("http://").is_err());
    }
}
