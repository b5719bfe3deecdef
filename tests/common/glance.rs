//! A small Glance client for the tests: the registry of a test cluster,
//! with the dev user's token.

use super::Cluster;
use serde_json::{json, Value};

pub struct Glance {
    pub url: String,
    pub token: String,
    pub agent: ureq::Agent,
}

/// (status, body) of a registry call.
pub type Answer = (u16, Vec<u8>);

impl Glance {
    pub fn new(c: &Cluster) -> Glance {
        Glance {
            url: c.registry_url(),
            token: c.login().1,
            agent: ureq::AgentBuilder::new().build(),
        }
    }

    pub fn call(&self, method: &str, path: &str, ct: Option<&str>, body: &[u8]) -> Answer {
        let mut r = self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .set("X-Auth-Token", &self.token);
        if let Some(ct) = ct {
            r = r.set("Content-Type", ct);
        }
        let result = if body.is_empty() && method != "PUT" {
            r.call()
        } else {
            r.send_bytes(body)
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut out).unwrap();
        (status, out)
    }

    pub fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let (st, b) = self.call(
            method,
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        );
        (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    pub fn create(&self, body: Value) -> String {
        let (st, v) = self.json("POST", "/v2/images", body);
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    pub fn show(&self, id: &str) -> Value {
        let (st, b) = self.call("GET", &format!("/v2/images/{id}"), None, b"");
        assert_eq!(st, 200);
        serde_json::from_slice(&b).unwrap()
    }

    pub fn upload(&self, id: &str, data: &[u8]) -> Answer {
        self.call(
            "PUT",
            &format!("/v2/images/{id}/file"),
            Some("application/octet-stream"),
            data,
        )
    }
}

/// Stages `data` into a new image and imports it (glance-direct), waiting
/// for the outcome: the image as it ends (active, or queued on failure).
pub fn import(
    g: &Glance,
    data: &[u8],
    disk_format: &str,
    container_format: &str,
    convert_to: Option<&str>,
) -> Value {
    let id = g.create(json!({"name": "imported", "disk_format": disk_format, "container_format": container_format}));
    let (st, b) = g.call(
        "PUT",
        &format!("/v2/images/{id}/stage"),
        Some("application/octet-stream"),
        data,
    );
    assert_eq!(st, 204, "{}", String::from_utf8_lossy(&b));
    assert_eq!(g.show(&id)["status"], "uploading");
    let mut body = json!({"method": {"name": "glance-direct"}});
    if let Some(t) = convert_to {
        body["convert_to"] = json!(t);
    }
    let (st, v) = g.json("POST", &format!("/v2/images/{id}/import"), body);
    assert_eq!(st, 202, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let img = g.show(&id);
        if img["status"] == "active" || img["status"] == "queued" {
            return img;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "import did not finish: {img}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
