//! The identity service against a real cluster: the Keystone v3 API as
//! keystoneauth1 parses it, tokens every service checks locally (expired,
//! forged, revoked: refused everywhere), roles in Swift, the registry and
//! compute, boto3 with an EC2 credential, the `nubo identity` CLI, and the
//! stock `openstack` CLI and python-swiftclient with `OS_*` variables only.

mod common;
use common::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn password_auth(user: &str, password: &str, project: Option<&str>) -> Value {
    let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}}});
    if let Some(p) = project {
        auth["scope"] = json!({"project": {"name": p, "domain": {"id": "default"}}});
    }
    json!({"auth": auth})
}

/// (status, X-Subject-Token, body) of `POST /v3/auth/tokens`.
fn issue(c: &Cluster, body: &str) -> (u16, Option<String>, Value) {
    let r = ureq::post(&format!("{}/auth/tokens", c.identity_url()))
        .set("Content-Type", "application/json")
        .send_string(body);
    let resp = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = resp.status();
    let token = resp.header("x-subject-token").map(String::from);
    (status, token, resp.into_json().unwrap_or(Value::Null))
}

fn token_for(c: &Cluster, user: &str, password: &str, project: &str) -> String {
    let (st, token, body) = issue(c, &password_auth(user, password, Some(project)).to_string());
    assert_eq!(st, 201, "{body}");
    token.unwrap()
}

/// The status of a request with a token.
fn status_with(method: &str, url: &str, token: &str) -> u16 {
    let req = ureq::request(method, url).set("X-Auth-Token", token);
    let sent = match method {
        "PUT" | "POST" => req.send_bytes(b""),
        _ => req.call(),
    };
    match sent {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The value `nubo identity` printed after `name ` on a line of its own.
fn printed(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .to_string()
}

/// One call on each service that any valid token of project `test` passes.
fn every_service(c: &Cluster) -> Vec<String> {
    vec![
        format!("{}/v1/AUTH_test", c.url()),
        format!("{}/v2/images", c.registry_url()),
        format!("{}/v2.1/flavors", c.compute_url()),
        format!("{}/auth/tokens", c.identity_url()),
    ]
}

#[test]
fn keystone_tokens_follow_keystone_and_work_everywhere() {
    let c = Cluster::start(3);
    // Discovery, as keystoneauth does it.
    let v: Value = ureq::get(&c.identity_url())
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(v["version"]["id"], "v3.14");
    assert_eq!(v["version"]["status"], "stable");

    let (st, token, body) = issue(
        &c,
        &password_auth("tester", "testing", Some("test")).to_string(),
    );
    assert_eq!(st, 201, "{body}");
    let token = token.expect("X-Subject-Token");
    let t = &body["token"];
    for field in [
        "expires_at",
        "issued_at",
        "user",
        "project",
        "roles",
        "methods",
        "audit_ids",
        "catalog",
    ] {
        assert!(!t[field].is_null(), "token body lacks {field}: {t}");
    }
    assert_eq!(t["project"]["id"], "test");
    assert_eq!(t["user"]["domain"]["name"], "Default");
    assert!(t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "admin"));
    let types: Vec<&str> = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    for kind in ["identity", "object-store", "image", "compute"] {
        assert!(types.contains(&kind), "{types:?}");
    }
    let swift = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "object-store")
        .unwrap();
    let interfaces: Vec<&str> = swift["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["interface"].as_str().unwrap())
        .collect();
    assert_eq!(interfaces, ["public", "internal"]);
    assert_eq!(
        swift["endpoints"][0]["url"],
        format!("{}/v1/AUTH_test", c.url())
    );
    assert_eq!(swift["endpoints"][0]["region"], "RegionOne");

    // Every service takes it, checked locally.
    for url in every_service(&c) {
        let st = match url.ends_with("/auth/tokens") {
            true => ureq::get(&url)
                .set("X-Auth-Token", &token)
                .set("X-Subject-Token", &token)
                .call()
                .map(|r| r.status())
                .unwrap_or(0),
            false => status_with("GET", &url, &token),
        };
        assert!(st == 200 || st == 204, "{url}: {st}");
    }

    // Bad credentials: one 401, whether the user exists or not.
    let wrong = issue(
        &c,
        &password_auth("tester", "nope", Some("test")).to_string(),
    );
    let nobody = issue(
        &c,
        &password_auth("nobody", "nope", Some("test")).to_string(),
    );
    assert_eq!((wrong.0, nobody.0), (401, 401));
    assert_eq!(wrong.2["error"]["message"], nobody.2["error"]["message"]);
    assert_eq!(
        issue(
            &c,
            &password_auth("tester", "testing", Some("no-such-project")).to_string()
        )
        .0,
        401
    );
    // tester2 has no role on project test.
    assert_eq!(
        issue(
            &c,
            &password_auth("tester2", "testing2", Some("test")).to_string()
        )
        .0,
        401
    );
    let (st, _, fault) = issue(&c, "{not json");
    assert_eq!(st, 400);
    assert_eq!(fault["error"]["code"], 400);
    assert_eq!(
        issue(&c, r#"{"auth": {"identity": {"methods": ["password"]}}}"#).0,
        400
    );

    // Unscoped, then re-scoped with the token method (same audit chain).
    let (st, unscoped, body) = issue(&c, &password_auth("tester", "testing", None).to_string());
    assert_eq!(st, 201);
    assert_eq!(
        body["token"]["project"]["id"], "test",
        "the default project scopes a bare login"
    );
    let rescope = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped.clone().unwrap()}},
        "scope": {"project": {"id": "test"}}}});
    let (st, _, body) = issue(&c, &rescope.to_string());
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["token"]["methods"], json!(["password", "token"]));
    assert_eq!(body["token"]["audit_ids"].as_array().unwrap().len(), 2);

    // No token: refused by every service, in its own format.
    for url in every_service(&c) {
        let st = match ureq::get(&url).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{url}: {e}"),
        };
        assert_eq!(st, 401, "{url}");
    }

    // Forged and expired tokens: refused by every service.
    let keys = service_kit::token::KeyRing::load(&c.data_dir().join("token-keys")).unwrap();
    let mut claims = keys.open(&token).unwrap();
    claims.expires_at = claims.issued_at_us / 1_000_000 - 1;
    let expired = keys.issue(&claims);
    let forged =
        service_kit::token::KeyRing::from_keys(&[[9u8; 32]]).issue(&keys.open(&token).unwrap());
    for bad in [&expired, &forged] {
        for url in every_service(&c) {
            if url.ends_with("/auth/tokens") {
                continue;
            }
            assert_eq!(status_with("GET", &url, bad), 401, "{url}");
        }
    }

    // Revoked: refused everywhere within seconds.
    let r = ureq::delete(&format!("{}/auth/tokens", c.identity_url()))
        .set("X-Auth-Token", &token)
        .set("X-Subject-Token", &token)
        .call()
        .unwrap();
    assert_eq!(r.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    for url in every_service(&c) {
        if url.ends_with("/auth/tokens") {
            assert_eq!(
                status_with("GET", &url, &token),
                401,
                "the identity service itself"
            );
            continue;
        }
        while status_with("GET", &url, &token) != 401 {
            assert!(
                Instant::now() < deadline,
                "{url} still takes a revoked token"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn every_service_honours_roles_and_the_nubo_identity_cli_manages_them() {
    let c = Cluster::start(3);
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::nubo());
        cmd.arg("identity")
            .args([
                "--auth-url",
                &c.identity_url(),
                "--username",
                "admin",
                "--password",
                "admin",
                "--project",
                "admin",
            ])
            .args(args);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "nubo identity {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let project = cli(&["project", "create", "team"]).trim().to_string();
    assert_eq!(project.len(), 32, "a Keystone-style id: {project}");
    cli(&[
        "user",
        "create",
        "writer",
        "--password",
        "w-pass",
        "--project",
        "team",
    ]);
    cli(&[
        "user",
        "create",
        "viewer",
        "--password",
        "v-pass",
        "--project",
        "team",
    ]);
    cli(&[
        "role",
        "assign",
        "--user",
        "writer",
        "--project",
        "team",
        "member",
    ]);
    cli(&[
        "role",
        "assign",
        "--user",
        "viewer",
        "--project",
        "team",
        "reader",
    ]);
    assert!(cli(&["project", "list"]).contains("team"));
    assert!(cli(&["user", "list"]).contains("viewer"));
    let ec2 = cli(&[
        "credential",
        "create",
        "--user",
        "writer",
        "--project",
        "team",
    ]);
    let (access, secret) = (printed(&ec2, "access"), printed(&ec2, "secret"));
    let viewer_ec2 = cli(&[
        "credential",
        "create",
        "--user",
        "viewer",
        "--project",
        "team",
    ]);
    assert!(access.starts_with(&format!("{project}:")), "{access}");
    // boto3 signs with it: the project's account, nothing else.
    let python = common::venv_bin("python");
    let out = std::process::Command::new(&python)
        .arg(common::checkout().join("tests/clients/boto3_ec2.py"))
        .env("NUBO_S3_ENDPOINT", c.url())
        .env("NUBO_EC2_ACCESS", &access)
        .env("NUBO_EC2_SECRET", &secret)
        .env("NUBO_EC2_READER_ACCESS", printed(&viewer_ec2, "access"))
        .env("NUBO_EC2_READER_SECRET", printed(&viewer_ec2, "secret"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3_ec2.py:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What boto3 wrote is in the project's Swift account.
    let writer_token = token_for(&c, "writer", "w-pass", "team");
    let object = format!("{}/v1/AUTH_{project}/ec2-bucket/k", c.url());
    assert_eq!(status_with("GET", &object, &writer_token), 200);
    // The secret is for services only.
    let secrets = format!("{}/OS-EC2/secrets/{access}", c.identity_url());
    assert_eq!(status_with("GET", &secrets, &writer_token), 403);

    let account = format!("{}/v1/AUTH_{project}", c.url());
    let writer = token_for(&c, "writer", "w-pass", "team");
    let viewer = token_for(&c, "viewer", "v-pass", "team");
    let tester = token_for(&c, "tester", "testing", "test");
    // member writes; reader reads only; another project's admin and no
    // token get nothing.
    assert_eq!(status_with("PUT", &format!("{account}/box"), &writer), 201);
    assert_eq!(status_with("GET", &format!("{account}/box"), &viewer), 204);
    assert_eq!(status_with("PUT", &format!("{account}/box2"), &viewer), 403);
    assert_eq!(
        status_with("DELETE", &format!("{account}/box"), &viewer),
        403
    );
    assert_eq!(status_with("GET", &format!("{account}/box"), &tester), 403);
    assert_eq!(
        ureq::get(&format!("{account}/box"))
            .call()
            .map(|r| r.status())
            .unwrap_or_else(|e| match e {
                ureq::Error::Status(s, _) => s,
                e => panic!("{e}"),
            }),
        401
    );
    // The registry and compute: a reader reads and changes nothing.
    let post = |url: &str, token: &str, body: Value| match ureq::post(url)
        .set("X-Auth-Token", token)
        .send_json(body)
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{url}: {e}"),
    };
    let images = format!("{}/v2/images", c.registry_url());
    let image = json!({"name": "x", "disk_format": "raw", "container_format": "bare"});
    assert_eq!(status_with("GET", &images, &viewer), 200);
    assert_eq!(post(&images, &viewer, image.clone()), 403);
    assert_eq!(post(&images, &writer, image), 201);
    let servers = format!("{}/v2.1/servers", c.compute_url());
    assert_eq!(status_with("GET", &servers, &viewer), 200);
    let server = json!({"server": {"name": "s", "imageRef": "x", "flavorRef": "1"}});
    assert_eq!(post(&servers, &viewer, server), 403);
    // A reader may not act in the identity API either.
    assert_eq!(
        status_with("GET", &format!("{}/projects", c.identity_url()), &viewer),
        403
    );
    // Container ACLs grant users of other projects what they name.
    let shared = format!("{}/v1/AUTH_test/shared", c.url());
    let r = ureq::put(&shared)
        .set("X-Auth-Token", &tester)
        .set("X-Container-Read", &format!("{project}:writer"))
        .set("X-Container-Write", "team:writer")
        .call()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        status_with("PUT", &format!("{shared}/from-team"), &writer),
        201
    );
    assert_eq!(
        status_with("GET", &format!("{shared}/from-team"), &writer),
        200
    );
    assert_eq!(
        status_with("GET", &shared, &writer),
        200,
        "read ACL: listing"
    );
    assert_eq!(
        status_with("DELETE", &shared, &writer),
        403,
        "not the container"
    );
    assert_eq!(
        status_with("POST", &shared, &writer),
        403,
        "nor its metadata"
    );
    assert_eq!(
        status_with("GET", &format!("{}/v1/AUTH_test", c.url()), &writer),
        403
    );
    assert_eq!(status_with("GET", &shared, &viewer), 403, "not named");
    let tester2 = token_for(&c, "tester2", "testing2", "test2");
    assert_eq!(
        status_with("GET", &format!("{shared}/from-team"), &tester2),
        403
    );
    assert_eq!(
        status_with("DELETE", &format!("{shared}/from-team"), &writer),
        204
    );
    // Swift logins (TempAuth's /auth/v1.0) go through the identity
    // service: the same user, the same project.
    let (url, swift_token) = common::login_as(&c.url(), "team:writer", "w-pass");
    assert_eq!(url, account);
    assert_eq!(
        status_with("GET", &format!("{account}/box"), &swift_token),
        204
    );
    // Taking the role back revokes the user's tokens everywhere.
    cli(&[
        "role",
        "unassign",
        "--user",
        "writer",
        "--project",
        "team",
        "member",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_with("GET", &format!("{account}/box"), &writer) != 401 {
        assert!(
            Instant::now() < deadline,
            "a token outlived its user's role"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        issue(
            &c,
            &password_auth("writer", "w-pass", Some("team")).to_string()
        )
        .0,
        401
    );
    // Key rotation: tokens sealed by the previous primary still validate.
    let keys = c.data_dir().join("token-keys");
    cli(&["rotate-keys", "--key-dir", keys.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 3);
    assert_eq!(status_with("GET", &format!("{account}/box"), &viewer), 204);
    // A second rotation removes the key `viewer`'s token was sealed with.
    // Once the services and the identity service have reloaded the
    // repository (every 10 s), that token is refused and fresh ones,
    // sealed with the new primary, are taken.
    cli(&["rotate-keys", "--key-dir", keys.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fresh = token_for(&c, "viewer", "v-pass", "team");
        let old = status_with("GET", &format!("{account}/box"), &viewer);
        let new = status_with("GET", &format!("{account}/box"), &fresh);
        if (old, new) == (401, 204) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after two rotations: old token {old}, fresh token {new}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_openstack_cli_openstacksdk_and_swiftclient_work_with_keystone_only() {
    let c = Cluster::start(3);
    let python = common::venv_bin("python");
    let path = format!(
        "{}:{}",
        python.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(common::checkout().join("tests/clients/openstack.sh"))
        .env("NUBO_IDENTITY_URL", c.identity_url())
        .env("PATH", path);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "openstack.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&python)
        .arg(common::checkout().join("tests/clients/openstacksdk_basic.py"))
        .env("NUBO_IDENTITY_URL", c.identity_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openstacksdk_basic.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
