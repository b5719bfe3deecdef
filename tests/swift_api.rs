//! The Swift API against a real 3-node cluster on loopback: every verb,
//! listing option, metadata rule, range, condition, copy, expiry, large
//! object, bulk delete and TempURL, and the bad inputs that must be refused
//! without storing anything.

mod common;
use common::{raw, Cluster, Swift};
use std::sync::OnceLock;
use std::time::Duration;

fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| Cluster::start_shared("swift_api-cluster", 3))
}

fn swift() -> Swift {
    Swift::new(cluster())
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

/// Listings are updated asynchronously; wait until `check` holds.
#[track_caller]
fn eventually(mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not reached within 5 s");
}

#[test]
fn auth_tokens_and_permissions() {
    let c = cluster();
    let bad = raw(c.proxy_port, "GET /auth/v1.0 HTTP/1.1\r\nHost: x\r\nX-Auth-User: test:tester\r\nX-Auth-Key: nope\r\nConnection: close\r\n\r\n", b"");
    assert_eq!(bad.status, 401);
    let s = swift();
    assert!(s.url.ends_with("/v1/AUTH_test"));
    assert_eq!(s.req("HEAD", "", &[], b"").status, 204);
    let anon = s.send("GET", &s.url, &[], b"", false);
    assert_eq!(anon.status, 401);
    let forged = s.send(
        "GET",
        &s.url,
        &[("X-Auth-Token", "AUTH_tk1.2.3")],
        b"",
        false,
    );
    assert_eq!(forged.status, 401);
    let other = s.send(
        "GET",
        &s.url.replace("AUTH_test", "AUTH_other"),
        &[("X-Auth-Token", &s.token)],
        b"",
        false,
    );
    assert_eq!(other.status, 403);
}

#[test]
fn containers_objects_and_metadata() {
    let s = swift();
    assert_eq!(
        s.req("PUT", "/meta", &[("X-Container-Meta-Color", "red")], b"")
            .status,
        201
    );
    assert_eq!(s.req("PUT", "/meta", &[], b"").status, 202);
    let h = s.req("HEAD", "/meta", &[], b"");
    assert_eq!(h.header("x-container-meta-color"), Some("red"));
    assert_eq!(
        s.req(
            "POST",
            "/meta",
            &[
                ("X-Remove-Container-Meta-Color", "x"),
                ("X-Container-Meta-Size", "big")
            ],
            b""
        )
        .status,
        204
    );
    let h = s.req("HEAD", "/meta", &[], b"");
    assert_eq!(h.header("x-container-meta-color"), None);
    assert_eq!(h.header("x-container-meta-size"), Some("big"));

    let body = b"hello world";
    let put = s.req(
        "PUT",
        "/meta/greeting.txt",
        &[("Content-Type", "text/plain"), ("X-Object-Meta-Lang", "en")],
        body,
    );
    assert_eq!(put.status, 201);
    assert_eq!(put.header("etag"), Some(md5_hex(body).as_str()));
    let get = s.req("GET", "/meta/greeting.txt", &[], b"");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, body);
    assert_eq!(get.header("content-type"), Some("text/plain"));
    assert_eq!(get.header("x-object-meta-lang"), Some("en"));
    assert!(get.header("x-timestamp").is_some());
    // POST replaces user metadata.
    assert_eq!(
        s.req(
            "POST",
            "/meta/greeting.txt",
            &[("X-Object-Meta-Mood", "happy")],
            b""
        )
        .status,
        202
    );
    let head = s.req("HEAD", "/meta/greeting.txt", &[], b"");
    assert_eq!(head.header("x-object-meta-mood"), Some("happy"));
    assert_eq!(head.header("x-object-meta-lang"), None);
    assert_eq!(head.header("content-length"), Some("11"));
    // If-None-Match: * refuses to overwrite; types are guessed from extensions.
    assert_eq!(
        s.req("PUT", "/meta/greeting.txt", &[("If-None-Match", "*")], body)
            .status,
        412
    );
    assert_eq!(
        s.req("PUT", "/meta/page.html", &[("If-None-Match", "*")], b"<p>")
            .status,
        201
    );
    assert_eq!(
        s.req("HEAD", "/meta/page.html", &[], b"")
            .header("content-type"),
        Some("text/html")
    );
    assert_eq!(s.req("DELETE", "/meta/page.html", &[], b"").status, 204);
    // A client ETag that does not match: 422, nothing stored.
    let wrong = s.req(
        "PUT",
        "/meta/bad-etag",
        &[("ETag", "00000000000000000000000000000000")],
        body,
    );
    assert_eq!(wrong.status, 422);
    assert_eq!(s.req("GET", "/meta/bad-etag", &[], b"").status, 404);
    // Account metadata and counts.
    assert_eq!(
        s.req("POST", "", &[("X-Account-Meta-Owner", "qa")], b"")
            .status,
        204
    );
    assert_eq!(
        s.req("HEAD", "", &[], b"").header("x-account-meta-owner"),
        Some("qa")
    );
    eventually(|| {
        let ok = s
            .req("HEAD", "/meta", &[], b"")
            .header("x-container-object-count")
            == Some("1");
        if !ok {
            eprintln!(
                "replicas: {:?}",
                cluster().container_replicas("AUTH_test", "meta")
            );
        }
        ok
    });
    // Not empty: 409; empty: 204; gone: 404.
    assert_eq!(s.req("DELETE", "/meta", &[], b"").status, 409);
    assert_eq!(s.req("DELETE", "/meta/greeting.txt", &[], b"").status, 204);
    assert_eq!(s.req("DELETE", "/meta/greeting.txt", &[], b"").status, 404);
    eventually(|| s.req("DELETE", "/meta", &[], b"").status == 204);
    assert_eq!(s.req("HEAD", "/meta", &[], b"").status, 404);
    assert_eq!(s.req("PUT", "/meta/orphan", &[], b"x").status, 404);
}

#[test]
fn metadata_limits() {
    let s = swift();
    s.req("PUT", "/limits", &[], b"");
    let long_value = "v".repeat(257);
    assert_eq!(
        s.req(
            "PUT",
            "/limits/o",
            &[("X-Object-Meta-Big", &long_value)],
            b"x"
        )
        .status,
        400
    );
    let long_name = format!("X-Object-Meta-{}", "n".repeat(129));
    assert_eq!(
        s.req("PUT", "/limits/o", &[(&long_name, "v")], b"x").status,
        400
    );
    assert_eq!(
        s.req(
            "POST",
            "/limits",
            &[("X-Container-Meta-Big", &long_value)],
            b""
        )
        .status,
        400
    );
    assert_eq!(s.req("GET", "/limits/o", &[], b"").status, 404);
}

#[test]
fn listings_in_every_format_with_every_parameter() {
    let s = swift();
    s.req("PUT", "/list", &[], b"");
    let names = ["a/1", "a/2", "b", "c/x/1", "d"];
    for n in names {
        assert_eq!(
            s.req("PUT", &format!("/list/{n}"), &[], n.as_bytes())
                .status,
            201
        );
    }
    eventually(|| s.req("GET", "/list", &[], b"").text().lines().count() == 5);
    let plain = |q: &str| s.req("GET", &format!("/list?{q}"), &[], b"").text();
    assert_eq!(plain(""), "a/1\na/2\nb\nc/x/1\nd\n");
    assert_eq!(plain("prefix=a/"), "a/1\na/2\n");
    assert_eq!(plain("delimiter=/"), "a/\nb\nc/\nd\n");
    assert_eq!(plain("prefix=c/&delimiter=/"), "c/x/\n");
    assert_eq!(plain("marker=b"), "c/x/1\nd\n");
    assert_eq!(plain("end_marker=b"), "a/1\na/2\n");
    assert_eq!(plain("limit=2"), "a/1\na/2\n");
    assert_eq!(plain("reverse=true"), "d\nc/x/1\nb\na/2\na/1\n");
    assert_eq!(plain("reverse=true&marker=b"), "a/2\na/1\n");
    assert_eq!(plain("reverse=true&delimiter=/"), "d\nc/\nb\na/\n");
    assert_eq!(s.req("GET", "/list?limit=10001", &[], b"").status, 412);
    let json = s.req("GET", "/list?format=json&prefix=b", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v[0]["name"], "b");
    assert_eq!(v[0]["bytes"], 1);
    assert_eq!(v[0]["hash"], md5_hex(b"b"));
    let xml = s.req("GET", "/list?format=xml&prefix=d", &[], b"").text();
    assert!(
        xml.contains("<container name=\"list\"><object>") && xml.contains("<name>d</name>"),
        "{xml}"
    );
    let accept = s.req(
        "GET",
        "/list?prefix=d",
        &[("Accept", "application/json")],
        b"",
    );
    assert!(accept
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let empty = s.req("GET", "/list?prefix=zzz", &[], b"");
    assert_eq!(empty.status, 204);
    eventually(|| {
        let account = s.req("GET", "?format=json", &[], b"");
        let v: serde_json::Value = serde_json::from_slice(&account.body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "list" && c["count"] == 5)
    });
}

#[test]
fn ranges_and_conditions() {
    let s = swift();
    s.req("PUT", "/ranges", &[], b"");
    let body: Vec<u8> = (0..100u8).collect();
    let etag = s
        .req(
            "PUT",
            "/ranges/o",
            &[("Content-Type", "application/x-test")],
            &body,
        )
        .header("etag")
        .unwrap()
        .to_string();
    let r = s.req("GET", "/ranges/o", &[("Range", "bytes=10-19")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(
        s.req("GET", "/ranges/o", &[("Range", "bytes=-5")], b"")
            .body,
        &body[95..]
    );
    assert_eq!(
        s.req("GET", "/ranges/o", &[("Range", "bytes=90-")], b"")
            .body,
        &body[90..]
    );
    assert_eq!(
        s.req("GET", "/ranges/o", &[("Range", "bytes=200-300")], b"")
            .status,
        416
    );
    let multi = s.req("GET", "/ranges/o", &[("Range", "bytes=0-1,50-51")], b"");
    assert_eq!(multi.status, 206);
    let ct = multi.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/byteranges"), "{ct}");
    // The object's ETag stays on the multipart answer (as swob keeps it).
    assert_eq!(multi.header("etag"), Some(etag.as_str()));
    let text = multi.body.clone();
    assert_eq!(
        multi
            .header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        text.len()
    );
    assert!(text.windows(2).any(|w| w == [50, 51]));
    assert!(String::from_utf8_lossy(&text).contains("Content-Range: bytes 0-1/100"));
    assert_eq!(
        s.req("GET", "/ranges/o", &[("If-None-Match", &etag)], b"")
            .status,
        304
    );
    assert_eq!(
        s.req("GET", "/ranges/o", &[("If-Match", "\"nope\"")], b"")
            .status,
        412
    );
    assert_eq!(
        s.req("GET", "/ranges/o", &[("If-Match", &etag)], b"")
            .status,
        200
    );
    assert_eq!(
        s.req(
            "GET",
            "/ranges/o",
            &[("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
            b""
        )
        .status,
        304
    );
    assert_eq!(
        s.req(
            "GET",
            "/ranges/o",
            &[("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
            b""
        )
        .status,
        412
    );
}

#[test]
fn copies_keep_content_and_metadata() {
    let s = swift();
    s.req("PUT", "/src", &[], b"");
    s.req("PUT", "/dst", &[], b"");
    s.req(
        "PUT",
        "/src/o",
        &[("X-Object-Meta-K", "v"), ("Content-Type", "text/x")],
        b"copy me",
    );
    let c = s.req("COPY", "/src/o", &[("Destination", "/dst/o2")], b"");
    assert_eq!(c.status, 201, "{}", c.text());
    let g = s.req("GET", "/dst/o2", &[], b"");
    assert_eq!(g.body, b"copy me");
    assert_eq!(g.header("x-object-meta-k"), Some("v"));
    assert_eq!(g.header("content-type"), Some("text/x"));
    let p = s.req(
        "PUT",
        "/dst/o3",
        &[("X-Copy-From", "/src/o"), ("X-Object-Meta-New", "n")],
        b"",
    );
    assert_eq!(p.status, 201);
    let g = s.req("GET", "/dst/o3", &[], b"");
    assert_eq!(g.body, b"copy me");
    assert_eq!(g.header("x-object-meta-new"), Some("n"));
    assert_eq!(
        s.req("PUT", "/dst/o4", &[("X-Copy-From", "/src/missing")], b"")
            .status,
        404
    );
}

#[test]
fn expiring_objects_vanish() {
    let s = swift();
    s.req("PUT", "/exp", &[], b"");
    assert_eq!(
        s.req("PUT", "/exp/soon", &[("X-Delete-After", "1")], b"bye")
            .status,
        201
    );
    assert_eq!(s.req("GET", "/exp/soon", &[], b"").status, 200);
    assert!(s
        .req("HEAD", "/exp/soon", &[], b"")
        .header("x-delete-at")
        .is_some());
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(s.req("GET", "/exp/soon", &[], b"").status, 404);
    // Gone from GET at once; from the listing when the expirer runs.
    assert_eq!(s.req("GET", "/exp", &[], b"").text(), "soon\n");
    let expired: u64 = (0..3)
        .map(|n| cluster().expire(n)["expired"].as_u64().unwrap())
        .sum();
    assert!(expired >= 3, "each replica expires its copy ({expired})");
    eventually(|| s.req("GET", "/exp", &[], b"").status == 204);
    assert_eq!(
        s.req("PUT", "/exp/past", &[("X-Delete-At", "1000")], b"x")
            .status,
        400
    );
}

#[test]
fn static_and_dynamic_large_objects() {
    let s = swift();
    s.req("PUT", "/segs", &[], b"");
    s.req("PUT", "/big", &[], b"");
    let parts: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![b'a' + i; 1000 + i as usize])
        .collect();
    let mut manifest = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let e = s
            .req("PUT", &format!("/segs/part{i}"), &[], p)
            .header("etag")
            .unwrap()
            .to_string();
        manifest.push(
            serde_json::json!({"path": format!("/segs/part{i}"), "etag": e, "size_bytes": p.len()}),
        );
    }
    let whole: Vec<u8> = parts.concat();
    let put = s.req(
        "PUT",
        "/big/slo?multipart-manifest=put",
        &[],
        serde_json::to_string(&manifest).unwrap().as_bytes(),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let g = s.req("GET", "/big/slo", &[], b"");
    assert_eq!(g.status, 200);
    assert_eq!(g.body, whole);
    let h = s.req("HEAD", "/big/slo", &[], b"");
    assert_eq!(
        h.header("content-length"),
        Some(whole.len().to_string().as_str())
    );
    assert_eq!(h.header("x-static-large-object"), Some("True"));
    let r = s.req("GET", "/big/slo", &[("Range", "bytes=990-1010")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &whole[990..1011]);
    let raw_manifest = s.req("GET", "/big/slo?multipart-manifest=get", &[], b"");
    assert!(raw_manifest.text().contains("/segs/part0"));
    // A manifest naming a segment with the wrong etag is refused.
    let bad = serde_json::json!([{"path": "/segs/part0", "etag": "0123", "size_bytes": 1000}]);
    assert_eq!(
        s.req(
            "PUT",
            "/big/bad?multipart-manifest=put",
            &[],
            bad.to_string().as_bytes()
        )
        .status,
        400
    );
    // DLO: everything under a prefix, in name order.
    assert_eq!(
        s.req(
            "PUT",
            "/big/dlo",
            &[("X-Object-Manifest", "segs/part")],
            b""
        )
        .status,
        201
    );
    eventually(|| s.req("GET", "/big/dlo", &[], b"").body == whole);
    // A copy of a large object is its content, not its manifest: both ways
    // of copying, and it outlives the segments.
    let copied = s.req("COPY", "/big/slo", &[("Destination", "/big/slo-copy")], b"");
    assert_eq!(copied.status, 201, "{}", copied.text());
    let put_copy = s.req("PUT", "/big/slo-copy2", &[("X-Copy-From", "/big/slo")], b"");
    assert_eq!(put_copy.status, 201, "{}", put_copy.text());
    for name in ["/big/slo-copy", "/big/slo-copy2"] {
        let h = s.req("HEAD", name, &[], b"");
        assert_eq!(h.header("x-static-large-object"), None, "{name}");
        assert_eq!(h.header("etag"), Some(md5_hex(&whole).as_str()), "{name}");
    }
    // Deleting the SLO with its segments.
    let d = s.req(
        "DELETE",
        "/big/slo?multipart-manifest=delete",
        &[("Accept", "application/json")],
        b"",
    );
    let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(v["Number Deleted"], 4, "{v}");
    assert_eq!(s.req("GET", "/segs/part1", &[], b"").status, 404);
    assert_eq!(s.req("GET", "/big/slo-copy", &[], b"").body, whole);
}

#[test]
fn bulk_delete() {
    let s = swift();
    s.req("PUT", "/bulk", &[], b"");
    for i in 0..5 {
        s.req("PUT", &format!("/bulk/o{i}"), &[], b"x");
    }
    eventually(|| s.req("GET", "/bulk", &[], b"").text().lines().count() == 5);
    let body = "/bulk/o0\n/bulk/o1\n/bulk/o2\n/bulk/o3\n/bulk/o4\n/bulk/missing\n/bulk\n";
    let r = s.req(
        "POST",
        "?bulk-delete",
        &[
            ("Accept", "application/json"),
            ("Content-Type", "text/plain"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["Number Not Found"], 1, "{v}");
    assert!(v["Number Deleted"].as_u64().unwrap() >= 5, "{v}");
    // Swift's bulk middleware takes the same request as a DELETE.
    s.req("PUT", "/bulk2", &[], b"");
    s.req("PUT", "/bulk2/o", &[], b"x");
    let r = s.req(
        "DELETE",
        "?bulk-delete",
        &[
            ("Accept", "application/json"),
            ("Content-Type", "text/plain"),
        ],
        b"/bulk2/o\n/bulk2\n",
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["Number Deleted"], 2, "{v}");
    assert_eq!(s.req("HEAD", "/bulk2", &[], b"").status, 404);
}

#[test]
fn temp_urls() {
    use hmac::Mac;
    let s = swift();
    s.req("PUT", "/tmpurl", &[], b"");
    s.req("PUT", "/tmpurl/o", &[], b"secret bytes");
    assert_eq!(
        s.req("POST", "", &[("X-Account-Meta-Temp-URL-Key", "k3y")], b"")
            .status,
        204
    );
    let path = format!(
        "{}/tmpurl/o",
        s.url
            .split_once("/v1/")
            .map(|(_, a)| format!("/v1/{a}"))
            .unwrap()
    );
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"k3y").unwrap();
    mac.update(format!("GET\n{expires}\n{path}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let url = format!(
        "{}/tmpurl/o?temp_url_sig={sig}&temp_url_expires={expires}",
        s.url
    );
    let ok = s.send("GET", &url, &[], b"", false);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"secret bytes");
    assert_eq!(s.send("PUT", &url, &[], b"overwrite", false).status, 401);
    let tampered = url.replace("temp_url_expires=", "temp_url_expires=1");
    assert_eq!(s.send("GET", &tampered, &[], b"", false).status, 401);
}

/// A temporary URL reaches its container only: a PUT through it cannot
/// name another container's data as a DLO manifest, SLO segments or a copy
/// source (each 400, nothing stored), so a GET through it cannot read
/// another container. The same writes with a token are the account's.
#[test]
fn temp_url_writes_stay_in_their_container() {
    use hmac::Mac;
    let s = swift();
    s.req(
        "PUT",
        "/scoped",
        &[("X-Container-Meta-Temp-URL-Key", "sc0pe")],
        b"",
    );
    s.req("PUT", "/private", &[], b"");
    s.req("PUT", "/private/secret", &[], b"not for temp URLs");
    s.req("PUT", "/scoped/seg-1", &[], b"own data");
    let account_path = s
        .url
        .split_once("/v1/")
        .map(|(_, a)| format!("/v1/{a}"))
        .unwrap();
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let signed = |method: &str, object: &str| {
        let path = format!("{account_path}/scoped/{object}");
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"sc0pe").unwrap();
        mac.update(format!("{method}\n{expires}\n{path}").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        format!(
            "{}/scoped/{object}?temp_url_sig={sig}&temp_url_expires={expires}",
            s.url
        )
    };
    let put = signed("PUT", "evil");
    for (headers, query, body) in [
        (vec![("X-Object-Manifest", "private/sec")], "", &b""[..]),
        (vec![("X-Object-Manifest", "%70rivate/sec")], "", &b""[..]),
        (vec![("X-Copy-From", "private/secret")], "", &b""[..]),
        (
            vec![],
            "&multipart-manifest=put",
            &br#"[{"path": "/private/secret"}]"#[..],
        ),
    ] {
        let r = s.send("PUT", &format!("{put}{query}"), &headers, body, false);
        assert_eq!(r.status, 400, "{headers:?} {query}");
        assert_eq!(s.req("HEAD", "/scoped/evil", &[], b"").status, 404);
    }
    let get = signed("GET", "evil");
    assert_eq!(s.send("GET", &get, &[], b"", false).status, 404);
    // Within the container, a temporary URL may write a manifest.
    let r = s.send(
        "PUT",
        &put,
        &[("X-Object-Manifest", "scoped/seg-")],
        b"",
        false,
    );
    assert_eq!(r.status, 201);
    let g = s.send("GET", &get, &[], b"", false);
    assert_eq!((g.status, g.body.as_slice()), (200, &b"own data"[..]));
    // With a token, the account's containers are all in reach.
    let r = s.req(
        "PUT",
        "/scoped/mine",
        &[("X-Object-Manifest", "private/sec")],
        b"",
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        s.req("GET", "/scoped/mine", &[], b"").body,
        b"not for temp URLs"
    );
}

#[test]
fn info_lists_capabilities() {
    let c = cluster();
    let r = raw(
        c.proxy_port,
        "GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["slo"]["max_manifest_segments"].as_u64().unwrap() >= 1000);
    assert!(v["bulk_delete"].is_object());
    assert!(v["tempurl"].is_object());
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let c = cluster();
    let s = swift();
    s.req("PUT", "/bad", &[], b"");
    let t = s.token.clone();
    let p = c.proxy_port;
    let req = |method: &str, path: &str, extra: &str| {
        format!("{method} /v1/AUTH_test{path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {t}\r\nConnection: close\r\n{extra}\r\n")
    };
    let long_object = format!("/bad/{}", "o".repeat(1025));
    assert_eq!(
        raw(p, &req("PUT", &long_object, "Content-Length: 1\r\n"), b"x").status,
        400
    );
    let long_container = format!("/{}", "c".repeat(257));
    assert_eq!(
        raw(
            p,
            &req("PUT", &long_container, "Content-Length: 0\r\n"),
            b""
        )
        .status,
        400
    );
    assert_eq!(
        raw(p, &req("PUT", "/bad/%FF%FE", "Content-Length: 1\r\n"), b"x").status,
        412
    );
    assert_eq!(
        raw(p, &req("PUT", "/bad/a%00b", "Content-Length: 1\r\n"), b"x").status,
        412
    );
    assert_eq!(
        raw(
            p,
            &req("PUT", "/bad/../../etc/passwd", "Content-Length: 1\r\n"),
            b"x"
        )
        .status,
        400
    );
    assert_eq!(
        raw(
            p,
            &req("PUT", "/bad/x/%2e%2e/y", "Content-Length: 1\r\n"),
            b"x"
        )
        .status,
        400
    );
    assert_eq!(raw(p, &req("PUT", "/bad/nolength", ""), b"").status, 411);
    assert_eq!(
        raw(
            p,
            &req("PUT", "/bad/huge", "Content-Length: 5368709121\r\n"),
            b""
        )
        .status,
        413
    );
    assert_eq!(
        raw(
            p,
            &req("PUT", "/bad/badlen", "Content-Length: abc\r\n"),
            b""
        )
        .status,
        400
    );
    let chunked = raw(
        p,
        &req("PUT", "/bad/chunked", "Transfer-Encoding: chunked\r\n"),
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 201);
    // Only the chunked upload was stored, and nothing escaped the data directory.
    eventually(|| s.req("GET", "/bad", &[], b"").text() == "chunked\n");
    assert!(!c.data_dir().parent().unwrap().join("etc").exists());
}

/// The digests a proxy sends nodes (`x-nubo-etag`, `x-nubo-blake3`) are not
/// the client's to set: a client that sends them gets the body's real
/// ETag, through the small (buffered) and the streaming (trailers) path.
/// A node refuses a body that does not match the blake3 it was sent, and
/// one whose promised ETag never came, storing nothing.
#[test]
fn internal_digests_cannot_be_forged() {
    let s = swift();
    assert_eq!(s.req("PUT", "/forge", &[], b"").status, 201);
    let forged_etag = "0".repeat(32);
    let forged_b3 = "0".repeat(64);
    for (name, len) in [("small", 1000usize), ("streamed", 200 << 10)] {
        let body: Vec<u8> = (0..len).map(|i| (i % 199) as u8).collect();
        let put = s.req(
            "PUT",
            &format!("/forge/{name}"),
            &[
                ("x-nubo-etag", &forged_etag),
                ("x-nubo-blake3", &forged_b3),
                ("trailer", "x-nubo-etag"),
            ],
            &body,
        );
        assert_eq!(put.status, 201, "{name}: {}", put.text());
        assert_eq!(
            put.header("etag").unwrap().trim_matches('"'),
            md5_hex(&body)
        );
        let got = s.req("GET", &format!("/forge/{name}"), &[], b"");
        assert_eq!(got.status, 200);
        assert!(got.body == body, "{name}");
        assert_eq!(
            got.header("etag").unwrap().trim_matches('"'),
            md5_hex(&body)
        );
    }

    // Straight to a node, as the proxy or the replicator would talk to it.
    let c = cluster();
    let (port, device, holds) = c.placement("AUTH_test", "forge", "direct").remove(0);
    let put = |extra: &str, body: &[u8]| {
        let head = format!(
            "PUT /obj/{device}/{}/AUTH_test/forge/direct HTTP/1.1\r\nHost: x\r\nX-Timestamp: 1700000000.00000\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            holds.partition,
            body.len()
        );
        raw(port, &head, body).status
    };
    let body = b"bytes the sender hashed differently";
    assert_eq!(
        put(
            &format!(
                "X-Nubo-Etag: {}\r\nX-Nubo-Blake3: {forged_b3}\r\n",
                md5_hex(body)
            ),
            body
        ),
        422
    );
    assert_eq!(
        put("Trailer: x-nubo-etag\r\n", body),
        400,
        "the ETag never came"
    );
    let stored = c.internal_head(
        port,
        &device,
        holds.partition,
        "AUTH_test",
        "forge",
        "direct",
    );
    assert_eq!(stored, 404, "nothing was stored");
}
