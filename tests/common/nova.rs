//! A small Nova client for the tests and benchmarks: the compute API of a
//! test cluster, with the dev user's token.

use super::glance::Glance;
use super::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub struct Nova {
    pub url: String,
    pub token: String,
    pub agent: ureq::Agent,
}

impl Nova {
    pub fn new(c: &Cluster) -> Nova {
        Nova {
            url: format!("{}/v2.1", c.compute_url()),
            token: c.login().1,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
        }
    }

    /// (status, JSON body or Null).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .set("X-Auth-Token", &self.token);
        let result = match body {
            Some(b) => r
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => r.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a server (202 expected); its id.
    pub fn create(&self, name: &str, image: &str, flavor: &str, extra: Value) -> String {
        let mut server = json!({"name": name, "imageRef": image, "flavorRef": flavor});
        if let Value::Object(m) = extra {
            server.as_object_mut().unwrap().extend(m);
        }
        let (st, v) = self.call("POST", "/servers", Some(json!({ "server": server })));
        assert_eq!(st, 202, "{v}");
        v["server"]["id"].as_str().unwrap().to_string()
    }

    pub fn show(&self, id: &str) -> Value {
        let (st, v) = self.call("GET", &format!("/servers/{id}"), None);
        assert_eq!(st, 200, "{v}");
        v["server"].clone()
    }

    /// Waits until the server's status is one of `statuses`, with no task
    /// in flight; the server.
    pub fn wait_status(&self, id: &str, statuses: &[&str], limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.show(id);
            let status = s["status"].as_str().unwrap_or_default();
            if statuses.contains(&status) && s["OS-EXT-STS:task_state"].is_null() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server {id} did not reach {statuses:?}: {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes a server and waits until it is gone.
    pub fn delete(&self, id: &str) {
        let (st, v) = self.call("DELETE", &format!("/servers/{id}"), None);
        assert_eq!(st, 204, "{v}");
    }

    pub fn wait_gone(&self, id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let (st, v) = self.call("GET", &format!("/servers/{id}"), None);
            if st == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server {id} was not deleted: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn action(&self, id: &str, body: Value) -> (u16, Value) {
        self.call("POST", &format!("/servers/{id}/action"), Some(body))
    }

    pub fn console(&self, id: &str) -> String {
        let (st, v) = self.action(id, json!({"os-getConsoleOutput": {"length": -1}}));
        assert_eq!(st, 200, "{v}");
        v["output"].as_str().unwrap_or_default().to_string()
    }

    /// What follows `prefix` on the first console line that has it
    /// (trimmed); panics, showing the console, if none does.
    pub fn console_line(&self, id: &str, prefix: &str) -> String {
        let out = self.console(id);
        out.lines()
            .find_map(|l| {
                l.trim_end_matches('\r')
                    .split_once(prefix)
                    .map(|(_, r)| r.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {prefix:?} line on {id}'s console:\n{out}"))
    }

    /// Waits until the console shows `marker` at least `times` times.
    pub fn wait_console(&self, id: &str, marker: &str, times: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            // 409 until the server is placed and built.
            let (st, v) = self.action(id, json!({"os-getConsoleOutput": {"length": -1}}));
            assert!(st == 200 || st == 409, "{st} {v}");
            let out = v["output"].as_str().unwrap_or_default().to_string();
            if out.matches(marker).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "console of {id} never showed {marker} {times}x: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Uploads `data` as a new active image; its id.
pub fn upload_image(g: &Glance, name: &str, disk_format: &str, data: &[u8]) -> String {
    let id =
        g.create(json!({"name": name, "disk_format": disk_format, "container_format": "bare"}));
    let (st, b) = g.upload(&id, data);
    assert_eq!(st, 204, "{}", String::from_utf8_lossy(&b));
    assert_eq!(g.show(&id)["status"], "active");
    id
}
