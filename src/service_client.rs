//! The CLIs' client of Nubo's HTTP+JSON services (`nubo image`, `nubo
//! server`): logs in with TempAuth (the Swift credentials), then sends
//! requests with the token to one service, turning a refusal into an error
//! that carries the service's own message (Glance's or Nova's fault).

use anyhow::{bail, Context, Result};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::{empty, full, header_str, Body};
use std::time::Duration;

/// Where and as whom the CLIs log in.
#[derive(Debug, clap::Args)]
pub struct Login {
    /// Where to log in (TempAuth).
    #[arg(
        long,
        env = "NUBO_AUTH_URL",
        default_value = "http://127.0.0.1:8080/auth/v1.0"
    )]
    auth_url: String,
    #[arg(long, env = "NUBO_USER", default_value = "test:tester")]
    user: String,
    #[arg(long, env = "NUBO_KEY", default_value = "testing")]
    key: String,
}

/// host:port and path of an http:// URL.
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((host.to_string(), format!("/{path}")))
}

pub struct ServiceClient {
    http: HttpClient,
    /// host:port of the service.
    service: String,
    /// The path the service's URL names (`/v2.1` for compute), which
    /// request paths are relative to.
    base: String,
    token: String,
    /// What the service is called in errors.
    name: &'static str,
}

impl ServiceClient {
    /// Logs in, for calls to the service at `service_url`.
    pub async fn login(login: &Login, service_url: &str, name: &'static str) -> Result<Self> {
        let http = HttpClient::new(Timeouts {
            connect: Duration::from_secs(5),
            node: Duration::from_secs(600),
        });
        let (host, path) = split_url(&login.auth_url)?;
        let req = Request::builder()
            .uri(path)
            .header("host", &host)
            .header("x-auth-user", &login.user)
            .header("x-auth-key", &login.key)
            .body(empty())?;
        let resp = http.send(&host, req).await.context("logging in")?;
        let token = header_str(resp.headers(), "x-auth-token")
            .map(|t| t.into_owned())
            .with_context(|| format!("login refused ({})", resp.status()))?;
        let (service, base) = split_url(service_url)?;
        Ok(ServiceClient {
            http,
            service,
            base: base.trim_end_matches('/').to_string(),
            token,
            name,
        })
    }

    /// One request; `streaming` for a body of unknown length.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        ct: Option<&str>,
        body: Body,
        streaming: bool,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("host", &self.service)
            .header("x-auth-token", &self.token);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let conn = self
            .http
            .connect(&self.service)
            .await
            .with_context(|| format!("reaching the {}", self.name))?;
        let req = b.body(body)?;
        Ok(if streaming {
            conn.send_streaming(req).await?
        } else {
            conn.send(req).await?
        })
    }

    /// A JSON call; a refusal becomes an error with the service's message.
    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (ct, b) = match body {
            Some(v) => (Some("application/json"), full(v.to_string())),
            None => (None, empty()),
        };
        let resp = self.send(method, path, ct, b, false).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        self.check(status, &bytes)?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The service's one-line reason for a refusal: Glance's
    /// `{"error": {"message"}}` or Nova's `{"<kind>": {"message"}}`.
    pub fn check(&self, status: StatusCode, body: &[u8]) -> Result<()> {
        if status.is_success() {
            return Ok(());
        }
        match fault_message(&serde_json::from_slice(body).unwrap_or(Value::Null)) {
            Some(m) => bail!("{m}"),
            None => bail!("the {} answered {status}", self.name),
        }
    }
}

fn fault_message(v: &Value) -> Option<&str> {
    v.as_object()?
        .values()
        .find_map(|inner| inner["message"].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_of_either_shape_give_their_message() {
        let glance = serde_json::json!({"error": {"code": 404, "message": "No image"}});
        let nova = serde_json::json!({"badRequest": {"code": 400, "message": "Invalid key_name provided."}});
        assert_eq!(fault_message(&glance), Some("No image"));
        assert_eq!(fault_message(&nova), Some("Invalid key_name provided."));
        assert_eq!(fault_message(&Value::Null), None);
        assert_eq!(
            split_url("http://h:1/v2.1").unwrap(),
            ("h:1".into(), "/v2.1".into())
        );
        assert!(split_url("https://h").is_err());
    }
}
