//! The Swift API's finer rules, each where an outside conformance run
//! found Nubo differing from Swift, against a real 3-node cluster on
//! loopback: nested, ranged and data segments of static large objects;
//! copies of large objects; POST on expired objects and aggregate metadata
//! limits; container headers and the storage policy; listing parameters;
//! Range and status details; every form of TempURL, and what a TempURL
//! may read through a large object.

mod common;
use base64::Engine;
use common::{raw, Cluster, Swift};
use hmac::Mac;
use std::sync::OnceLock;

fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| Cluster::start_shared("swift_semantics-cluster", 3))
}

fn swift() -> Swift {
    Swift::new(cluster())
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn put_manifest(s: &Swift, path: &str, manifest: &serde_json::Value) -> common::Resp {
    s.req(
        "PUT",
        &format!("{path}?multipart-manifest=put"),
        &[],
        manifest.to_string().as_bytes(),
    )
}

/// A nested SLO is accepted with the ETag and size its HEAD shows; ranged
/// and data segments are assembled as Swift assembles them, whole and in
/// ranges; the ETag follows Swift's rule; nesting stops at ten levels.
#[test]
fn nested_ranged_and_data_segments() {
    let s = swift();
    s.req("PUT", "/nest", &[], b"");
    let a = vec![b'a'; 1000];
    let b = vec![b'b'; 2000];
    s.req("PUT", "/nest/a", &[], &a);
    s.req("PUT", "/nest/b", &[], &b);
    let inner = serde_json::json!([
        {"path": "/nest/a", "etag": md5_hex(&a), "size_bytes": 1000},
        {"path": "/nest/b", "etag": md5_hex(&b), "size_bytes": 2000},
    ]);
    assert_eq!(put_manifest(&s, "/nest/inner", &inner).status, 201);
    let head = s.req("HEAD", "/nest/inner", &[], b"");
    let inner_etag = head.header("etag").unwrap().trim_matches('"').to_string();
    assert_eq!(head.header("content-length"), Some("3000"));

    // The inner SLO as a segment, by the ETag and size its HEAD shows, then
    // part of it by range, part of `b` by range, and inline data.
    let outer = serde_json::json!([
        {"path": "/nest/inner", "etag": inner_etag, "size_bytes": 3000},
        {"path": "/nest/inner", "etag": null, "size_bytes": null, "range": "990-1009"},
        {"path": "/nest/b", "range": "-5"},
        {"data": base64::engine::general_purpose::STANDARD.encode(b"tail!")},
    ]);
    let put = put_manifest(&s, "/nest/outer", &outer);
    assert_eq!(put.status, 201, "{}", put.text());
    let mut want = [a.clone(), b.clone()].concat();
    want.extend_from_slice(&a[990..]);
    want.extend_from_slice(&b[..10]);
    want.extend_from_slice(&b[1995..]);
    want.extend_from_slice(b"tail!");
    let g = s.req("GET", "/nest/outer", &[], b"");
    assert_eq!(g.status, 200);
    assert_eq!(g.body.len(), want.len());
    assert!(g.body == want, "the nested content differs");
    let swift_etag = md5_hex(
        format!(
            "{inner_etag}{inner_etag}:990-1009;{}:1995-1999;{}",
            md5_hex(&b),
            md5_hex(b"tail!")
        )
        .as_bytes(),
    );
    assert_eq!(g.header("etag"), Some(format!("\"{swift_etag}\"").as_str()));
    assert_eq!(
        put.header("etag"),
        Some(format!("\"{swift_etag}\"").as_str())
    );
    for (first, last) in [
        (0, 0),
        (2990, 3012),
        (3015, 3029),
        (3020, 3029),
        (995, 2005),
    ] {
        let r = s.req(
            "GET",
            "/nest/outer",
            &[("Range", &format!("bytes={first}-{last}"))],
            b"",
        );
        assert_eq!(r.status, 206);
        assert!(r.body == want[first..=last], "range {first}-{last}");
    }

    // Checks of the manifest itself, entry by entry; nothing is stored.
    for (bad, why) in [
        (
            serde_json::json!([{"path": "/nest/inner", "etag": md5_hex(b"x")}]),
            "Etag Mismatch",
        ),
        (
            serde_json::json!([{"path": "/nest/a", "range": "5000-6000"}]),
            "Unsatisfiable",
        ),
        (
            serde_json::json!([{"path": "/nest/a", "colour": "red"}]),
            "extraneous",
        ),
        (serde_json::json!([{"data": "%%%"}]), "base64"),
        (serde_json::json!([{"path": "nowhere"}]), "Index 0"),
    ] {
        let r = put_manifest(&s, "/nest/bad", &bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains(why), "{bad}: {}", r.text());
    }
    assert_eq!(s.req("HEAD", "/nest/bad", &[], b"").status, 404);

    // Ten levels of manifests are read; an eleventh is 409.
    let mut below = "/nest/a".to_string();
    for level in 1..=11 {
        let head = s.req("HEAD", &below, &[], b"");
        let manifest = serde_json::json!([{
            "path": below,
            "etag": head.header("etag").unwrap().trim_matches('"'),
            "size_bytes": 1000,
        }]);
        let name = format!("/nest/level{level}");
        assert_eq!(put_manifest(&s, &name, &manifest).status, 201);
        below = name;
    }
    let ten = s.req("GET", "/nest/level10", &[], b"");
    assert_eq!((ten.status, ten.body.len()), (200, 1000));
    assert_eq!(s.req("GET", "/nest/level11", &[], b"").status, 409);

    // Deleting the outer SLO with its segments reaches the inner one's.
    let d = s.req(
        "DELETE",
        "/nest/outer?multipart-manifest=delete",
        &[("Accept", "application/json")],
        b"",
    );
    assert_eq!(d.status, 200, "{}", d.text());
    for gone in ["/nest/outer", "/nest/inner", "/nest/a", "/nest/b"] {
        assert_eq!(s.req("HEAD", gone, &[], b"").status, 404, "{gone}");
    }
}

/// COPY of a large object copies its content; with
/// `multipart-manifest=get`, its manifest (the copy is a large object over
/// the same segments). A Range on a COPY copies that part, and
/// `X-Fresh-Metadata` keeps nothing of the source but its content type.
#[test]
fn copies_of_large_objects() {
    let s = swift();
    s.req("PUT", "/cp", &[], b"");
    s.req("PUT", "/cp/seg1", &[], b"0123456789");
    s.req("PUT", "/cp/seg2", &[], b"abcdefghij");
    let manifest = serde_json::json!([{"path": "/cp/seg1"}, {"path": "/cp/seg2"}]);
    assert_eq!(put_manifest(&s, "/cp/slo", &manifest).status, 201);
    s.req("PUT", "/cp/dlo", &[("X-Object-Manifest", "cp/seg")], b"");
    let whole = b"0123456789abcdefghij";

    for (source, query, dest, large) in [
        ("/cp/slo", "", "/cp/c1", None),
        (
            "/cp/slo",
            "?multipart-manifest=get",
            "/cp/c2",
            Some("x-static-large-object"),
        ),
        ("/cp/dlo", "", "/cp/c3", None),
        (
            "/cp/dlo",
            "?multipart-manifest=get",
            "/cp/c4",
            Some("x-object-manifest"),
        ),
    ] {
        let r = s.req(
            "COPY",
            &format!("{source}{query}"),
            &[("Destination", dest)],
            b"",
        );
        assert_eq!(r.status, 201, "{source}{query}: {}", r.text());
        let got = s.req("GET", dest, &[], b"");
        assert_eq!(got.body, whole, "{source}{query}");
        let head = s.req("HEAD", dest, &[], b"");
        for h in ["x-static-large-object", "x-object-manifest"] {
            assert_eq!(
                head.header(h).is_some(),
                large == Some(h),
                "{source}{query}: {h}"
            );
        }
    }
    // The manifest copy reads the segments, so it follows them.
    s.req("PUT", "/cp/seg3", &[], b"KLMNOPQRST");
    assert!(s
        .req("GET", "/cp/c4", &[], b"")
        .body
        .ends_with(b"KLMNOPQRST"));
    // A DLO whose prefix holds an SLO reads it as its content, not its
    // manifest's JSON.
    s.req("PUT", "/cp/mix-a", &[], b"head-");
    let inner = serde_json::json!([{"path": "/cp/seg1"}, {"path": "/cp/seg2"}]);
    assert_eq!(put_manifest(&s, "/cp/mix-b", &inner).status, 201);
    s.req("PUT", "/cp/mixed", &[("X-Object-Manifest", "cp/mix-")], b"");
    let mixed = s.req("GET", "/cp/mixed", &[], b"");
    assert_eq!(mixed.body, b"head-0123456789abcdefghij", "{}", mixed.text());

    let ranged = s.req(
        "COPY",
        "/cp/slo",
        &[("Destination", "/cp/part"), ("Range", "bytes=5-14")],
        b"",
    );
    assert_eq!(ranged.status, 201);
    assert_eq!(s.req("GET", "/cp/part", &[], b"").body, b"56789abcde");

    s.req(
        "PUT",
        "/cp/meta",
        &[
            ("Content-Type", "text/x-kept"),
            ("Content-Disposition", "attachment"),
            ("X-Object-Meta-Colour", "blue"),
        ],
        b"m",
    );
    s.req(
        "COPY",
        "/cp/meta",
        &[("Destination", "/cp/fresh"), ("X-Fresh-Metadata", "true")],
        b"",
    );
    let fresh = s.req("HEAD", "/cp/fresh", &[], b"");
    assert_eq!(fresh.header("content-type"), Some("text/x-kept"));
    assert_eq!(fresh.header("content-disposition"), None);
    assert_eq!(fresh.header("x-object-meta-colour"), None);
    s.req("COPY", "/cp/meta", &[("Destination", "/cp/kept")], b"");
    let kept = s.req("HEAD", "/cp/kept", &[], b"");
    assert_eq!(kept.header("content-disposition"), Some("attachment"));
    assert_eq!(kept.header("x-object-meta-colour"), Some("blue"));
}

/// A POST to an expired object is 404 and does not bring it back; a POST
/// changes the content type; `X-If-Delete-At` is checked; far-future
/// expiry is accepted; metadata limits hold for what many POSTs add up to.
#[test]
fn posts_and_expiry() {
    let s = swift();
    s.req("PUT", "/post", &[], b"");
    let at = (now() + 2).to_string();
    assert_eq!(
        s.req("PUT", "/post/exp", &[("X-Delete-At", &at)], b"x")
            .status,
        201
    );
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(
        s.req("POST", "/post/exp", &[("X-Object-Meta-A", "1")], b"")
            .status,
        404
    );
    assert_eq!(s.req("GET", "/post/exp", &[], b"").status, 404);

    s.req(
        "PUT",
        "/post/typed",
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(
        s.req(
            "POST",
            "/post/typed",
            &[("Content-Type", "text/x-new")],
            b""
        )
        .status,
        202
    );
    let h = s.req("HEAD", "/post/typed", &[], b"");
    assert_eq!(h.header("content-type"), Some("text/x-new"));
    // A POST without a type keeps it.
    s.req("POST", "/post/typed", &[("X-Object-Meta-B", "2")], b"");
    let h = s.req("HEAD", "/post/typed", &[], b"");
    assert_eq!(h.header("content-type"), Some("text/x-new"));

    let far = "99999999999";
    let r = s.req("PUT", "/post/far", &[("X-Delete-At", far)], b"x");
    assert_eq!(r.status, 201);
    assert_eq!(
        s.req("HEAD", "/post/far", &[], b"").header("x-delete-at"),
        Some(far)
    );
    let bad = s.req("DELETE", "/post/far", &[("X-If-Delete-At", "soon")], b"");
    assert_eq!(bad.status, 400);
    let wrong = s.req("DELETE", "/post/far", &[("X-If-Delete-At", "12345")], b"");
    assert_eq!(wrong.status, 412);
    assert_eq!(s.req("HEAD", "/post/far", &[], b"").status, 200);
    let right = s.req("DELETE", "/post/far", &[("X-If-Delete-At", far)], b"");
    assert_eq!(right.status, 204);

    // 60 items, then 31 more in a second POST: 91 > 90 is refused.
    let first: Vec<(String, String)> = (0..60)
        .map(|i| (format!("X-Container-Meta-K{i}"), "v".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(s.req("POST", "/post", &refs, b"").status, 204);
    let more: Vec<(String, String)> = (60..91)
        .map(|i| (format!("X-Container-Meta-K{i}"), "v".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = more.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(s.req("POST", "/post", &refs, b"").status, 400);
    let h = s.req("HEAD", "/post", &[], b"");
    assert_eq!(
        h.header("x-container-meta-k60"),
        None,
        "nothing of it stored"
    );
    // Removing one while adding one stays within the limit.
    assert_eq!(
        s.req(
            "POST",
            "/post",
            &[
                ("X-Remove-Container-Meta-K0", "x"),
                ("X-Container-Meta-K60", "v")
            ],
            b""
        )
        .status,
        204
    );
}

/// Containers show `Last-Modified` and their storage policy; an unknown
/// policy is refused; XML account listings and `/info` carry what Swift's
/// do.
#[test]
fn container_headers_policy_and_info() {
    let s = swift();
    let put = s.req("PUT", "/pol", &[("X-Storage-Policy", "Policy-0")], b"");
    assert_eq!(put.status, 201);
    for method in ["HEAD", "GET"] {
        let h = s.req(method, "/pol", &[], b"");
        assert_eq!(h.header("x-storage-policy"), Some("Policy-0"), "{method}");
        let lm = h.header("last-modified").expect("Last-Modified");
        assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");
    }
    let bad = s.req("PUT", "/pol-bad", &[("X-Storage-Policy", "gold")], b"");
    assert_eq!(bad.status, 400);
    assert_eq!(s.req("HEAD", "/pol-bad", &[], b"").status, 404);
    let xml = s.req("GET", "?format=xml", &[], b"").text();
    assert!(
        xml.contains("<storage_policy>Policy-0</storage_policy>"),
        "{xml}"
    );
    let info = raw(
        cluster().proxy_port,
        "GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    );
    let v: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(v["s3api"]["max_multi_delete_objects"], 1000, "{v}");
    for m in ["slo", "dlo", "tempurl", "bulk_delete", "tempauth", "swift"] {
        assert!(v.get(m).is_some(), "{m} in {v}");
    }
}

/// `path=`, multi-character delimiters, every truthy `reverse`, and
/// `limit` as Swift takes it.
#[test]
fn listing_parameters() {
    let s = swift();
    s.req("PUT", "/lp", &[], b"");
    for name in ["d/", "d/a", "d/b/", "d/b/c", "x--1--a", "x--2", "y"] {
        assert_eq!(s.req("PUT", &format!("/lp/{name}"), &[], b"z").status, 201);
    }
    let list = |q: &str| s.req("GET", &format!("/lp?{q}"), &[], b"");
    assert_eq!(list("path=d").text(), "d/a\nd/b/\n");
    assert_eq!(list("path=d/").text(), "d/a\nd/b/\n");
    assert_eq!(
        list("delimiter=--").text(),
        "d/\nd/a\nd/b/\nd/b/c\nx--\ny\n"
    );
    assert_eq!(list("prefix=x--&delimiter=--").text(), "x--1--\nx--2\n");
    for v in ["true", "1", "yes", "on", "t", "y", "TRUE"] {
        let r = list(&format!("reverse={v}&limit=2"));
        assert_eq!(r.text(), "y\nx--2\n", "reverse={v}");
    }
    assert_eq!(list("reverse=no&limit=1").text(), "d/\n");
    assert_eq!(list("limit=abc").text().lines().count(), 7);
    assert_eq!(list("limit=10001").status, 412);
    assert_eq!(list("limit=10000").status, 200);
}

/// Range headers in any case and spacing, ETags on suffix ranges, and the
/// status details Swift clients rely on.
#[test]
fn ranges_and_status_details() {
    let s = swift();
    s.req("PUT", "/rs", &[], b"");
    let body = b"0123456789";
    s.req("PUT", "/rs/o", &[], body);
    let etag = md5_hex(body);
    for (range, want) in [
        ("BYTES=0-3", &b"0123"[..]),
        ("bytes = 2-4", b"234"),
        ("Bytes=-3", b"789"),
    ] {
        let r = s.req("GET", "/rs/o", &[("Range", range)], b"");
        assert_eq!((r.status, r.body.as_slice()), (206, want), "{range}");
        assert_eq!(r.header("etag"), Some(etag.as_str()), "{range}");
    }
    let nm = s.req("GET", "/rs/o", &[("If-None-Match", &etag)], b"");
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("accept-ranges"), Some("bytes"));
    // If-Match wins over If-Unmodified-Since (RFC 9110 13.2.2).
    let both = s.req(
        "GET",
        "/rs/o",
        &[
            ("If-Match", &etag),
            ("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
        b"",
    );
    assert_eq!(both.status, 200);
    // Empty answers say so (204 is the exception: HTTP forbids the header).
    let posted = s.req("POST", "/rs/o", &[("X-Object-Meta-A", "1")], b"");
    assert_eq!(posted.status, 202);
    assert_eq!(posted.header("content-length"), Some("0"));
    let missing = s.req("HEAD", "/rs/missing", &[], b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-length"), Some("0"));
    assert_eq!(s.req("DELETE", "/rs/o", &[], b"").status, 204);

    let port = cluster().proxy_port;
    let path = s.url.split_once("/v1/").unwrap().1;
    let te = raw(
        port,
        &format!(
            "PUT /v1/{path}/rs/te HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
            s.token
        ),
        b"1\r\nx\r\n0\r\n\r\n",
    );
    assert_eq!(te.status, 501);
    assert_eq!(s.req("HEAD", "/rs/te", &[], b"").status, 404);
    let many: Vec<(String, String)> = (0..91)
        .map(|i| (format!("X-Object-Meta-M{i}"), "v".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(s.req("PUT", "/rs/many", &refs, b"x").status, 400);
    let anonymous = s.send("GET", &format!("{}/rs", s.url), &[], b"", false);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Swift realm=")));
}

/// Signs a TempURL the way Swift's `swift-temp-url` does.
fn sign(key: &str, body: &str, form: &str) -> String {
    match form {
        "sha1" => {
            let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
            m.update(body.as_bytes());
            hex::encode(m.finalize().into_bytes())
        }
        "sha256" => {
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
            m.update(body.as_bytes());
            hex::encode(m.finalize().into_bytes())
        }
        _ => {
            let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(key.as_bytes()).unwrap();
            m.update(body.as_bytes());
            let b64 =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
            format!("sha512:{b64}")
        }
    }
}

/// Every TempURL form Swift signs (prefix, ISO 8601 expiry, SHA-256 and
/// base64 SHA-512, address ranges, container keys), the download names it
/// gives, the metadata it hides, and large objects whose segments lie
/// outside its container (403).
#[test]
fn temp_url_forms_and_reach() {
    let s = swift();
    s.req(
        "PUT",
        "/tu",
        &[("X-Container-Meta-Temp-URL-Key", "ckey")],
        b"",
    );
    s.req(
        "PUT",
        "/tu/docs/report.txt",
        &[
            ("X-Object-Meta-Secret", "s"),
            ("X-Object-Meta-Public-Tag", "p"),
        ],
        b"report",
    );
    let account = s
        .url
        .split_once("/v1/")
        .map(|(_, a)| format!("/v1/{a}"))
        .unwrap();
    let expires = now() + 120;
    let object = format!("{account}/tu/docs/report.txt");
    let get = |query: &str| {
        s.send(
            "GET",
            &format!("{}/tu/docs/report.txt?{query}", s.url),
            &[],
            b"",
            false,
        )
    };

    for form in ["sha1", "sha256", "sha512"] {
        let sig = sign("ckey", &format!("GET\n{expires}\n{object}"), form);
        let sig = sig.replace('+', "%2B").replace('/', "%2F");
        let r = get(&format!("temp_url_sig={sig}&temp_url_expires={expires}"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"report"[..]),
            "{form}"
        );
        assert_eq!(r.header("x-object-meta-secret"), None, "{form}");
        assert_eq!(r.header("x-object-meta-public-tag"), Some("p"), "{form}");
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"report.txt\"; filename*=UTF-8''report.txt")
        );
    }
    // ISO 8601 expiry: the signature is over the Unix time.
    let iso_expires = 4_102_444_800u64; // 2100-01-01T00:00:00Z
    let sig = sign("ckey", &format!("GET\n{iso_expires}\n{object}"), "sha256");
    let r = get(&format!(
        "temp_url_sig={sig}&temp_url_expires=2100-01-01T00:00:00Z&inline"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-disposition"), Some("inline"));
    let sig = sign("ckey", &format!("GET\n{expires}\n{object}"), "sha256");
    let r = get(&format!(
        "temp_url_sig={sig}&temp_url_expires={expires}&filename=my%20file.txt"
    ));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt")
    );
    // A prefix signature reaches what is under the prefix only.
    let sig = sign(
        "ckey",
        &format!("GET\n{expires}\nprefix:{account}/tu/docs/"),
        "sha256",
    );
    let r = get(&format!(
        "temp_url_sig={sig}&temp_url_expires={expires}&temp_url_prefix=docs/"
    ));
    assert_eq!(r.status, 200);
    s.req("PUT", "/tu/other", &[], b"other");
    let outside = s.send(
        "GET",
        &format!(
            "{}/tu/other?temp_url_sig={sig}&temp_url_expires={expires}&temp_url_prefix=docs/",
            s.url
        ),
        &[],
        b"",
        false,
    );
    assert_eq!(outside.status, 401);
    // Address ranges: loopback is in 127.0.0.0/8, not in 10.0.0.0/8.
    for (range, want) in [
        ("127.0.0.0/8", 200),
        ("127.0.0.1", 200),
        ("10.0.0.0/8", 401),
    ] {
        let sig = sign(
            "ckey",
            &format!("ip={range}\nGET\n{expires}\n{object}"),
            "sha256",
        );
        let r = get(&format!(
            "temp_url_sig={sig}&temp_url_expires={expires}&temp_url_ip_range={}",
            range.replace('/', "%2F")
        ));
        assert_eq!(r.status, want, "{range}");
    }

    // Large objects: segments in the URL's container are read; segments in
    // another container are not (403), whoever made the manifest.
    s.req("PUT", "/tu-private", &[], b"");
    s.req("PUT", "/tu-private/secret", &[], b"private bytes");
    s.req("PUT", "/tu/own", &[], b"own bytes");
    let inside = serde_json::json!([{"path": "/tu/own"}]);
    let outside = serde_json::json!([{"path": "/tu-private/secret"}]);
    assert_eq!(put_manifest(&s, "/tu/slo-in", &inside).status, 201);
    assert_eq!(put_manifest(&s, "/tu/slo-out", &outside).status, 201);
    s.req(
        "PUT",
        "/tu/dlo-out",
        &[("X-Object-Manifest", "tu-private/sec")],
        b"",
    );
    let nested = serde_json::json!([{"path": "/tu/slo-out"}]);
    assert_eq!(put_manifest(&s, "/tu/slo-nested", &nested).status, 201);
    for (name, want, body) in [
        ("slo-in", 200, &b"own bytes"[..]),
        ("slo-out", 403, b""),
        ("dlo-out", 403, b""),
        ("slo-nested", 403, b""),
    ] {
        let path = format!("{account}/tu/{name}");
        let sig = sign("ckey", &format!("GET\n{expires}\n{path}"), "sha1");
        let r = s.send(
            "GET",
            &format!(
                "{}/tu/{name}?temp_url_sig={sig}&temp_url_expires={expires}",
                s.url
            ),
            &[],
            b"",
            false,
        );
        assert_eq!(r.status, want, "{name}");
        if want == 200 {
            assert_eq!(r.body, body, "{name}");
        } else {
            assert!(!r.text().contains("private bytes"), "{name}");
        }
        // With a token, the account reads them all.
        assert_eq!(s.req("GET", &format!("/tu/{name}"), &[], b"").status, 200);
    }
    // A TempURL PUT may not copy such an object into its container either.
    let path = format!("{account}/tu/copied");
    let sig = sign("ckey", &format!("PUT\n{expires}\n{path}"), "sha1");
    let r = s.send(
        "PUT",
        &format!(
            "{}/tu/copied?temp_url_sig={sig}&temp_url_expires={expires}",
            s.url
        ),
        &[("X-Copy-From", "tu/slo-out")],
        b"",
        false,
    );
    assert_eq!(r.status, 403);
    assert_eq!(s.req("HEAD", "/tu/copied", &[], b"").status, 404);
}

/// A tar archive of `files`, compressed as `format` says.
fn archive(files: &[(&str, &[u8])], format: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    let raw = builder.into_inner().unwrap();
    match format {
        "tar.gz" => {
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&raw).unwrap();
            z.finish().unwrap()
        }
        "tar.bz2" => {
            use std::io::Write;
            let mut z = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            z.write_all(&raw).unwrap();
            z.finish().unwrap()
        }
        _ => raw,
    }
}

/// `extract-archive`: each file of a tar, tar.gz or tar.bz2 upload becomes
/// an object under the URL's container and prefix; at the account, the
/// first path element names the container (made if missing) and top-level
/// files are skipped; a broken archive is reported as 400 in the bulk
/// report.
#[test]
fn archives_extract_into_objects() {
    let s = swift();
    let files: [(&str, &[u8]); 3] = [
        ("./a.txt", b"alpha"),
        ("sub/b.txt", b"beta"),
        ("sub/deeper/c.bin", &[0u8, 1, 2, 255]),
    ];
    for format in ["tar", "tar.gz", "tar.bz2"] {
        let c = format!("/xa-{}", format.replace('.', "-"));
        s.req("PUT", &c, &[], b"");
        let r = s.req(
            "PUT",
            &format!("{c}/pre?extract-archive={format}"),
            &[("Accept", "application/json")],
            &archive(&files, format),
        );
        assert_eq!(r.status, 200, "{format}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["Number Files Created"], 3, "{format}: {v}");
        assert_eq!(v["Response Status"], "201 Created", "{format}: {v}");
        assert_eq!(
            s.req("GET", &format!("{c}/pre/a.txt"), &[], b"").body,
            b"alpha"
        );
        assert_eq!(
            s.req("GET", &format!("{c}/pre/sub/b.txt"), &[], b"").body,
            b"beta"
        );
        let bin = s.req("GET", &format!("{c}/pre/sub/deeper/c.bin"), &[], b"");
        assert_eq!(bin.body, [0u8, 1, 2, 255], "{format}");
    }
    // At the account: containers from the paths; a top-level file is skipped.
    let at_account: [(&str, &[u8]); 2] = [("xa-made/x.txt", b"x"), ("top.txt", b"t")];
    let r = s.req(
        "PUT",
        "?extract-archive=tar",
        &[("Accept", "application/json")],
        &archive(&at_account, "tar"),
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["Number Files Created"], 1, "{v}");
    assert_eq!(s.req("GET", "/xa-made/x.txt", &[], b"").body, b"x");
    // Not an archive: reported, nothing made.
    s.req("PUT", "/xa-bad", &[], b"");
    let r = s.req(
        "PUT",
        "/xa-bad?extract-archive=tar.gz",
        &[("Accept", "application/json")],
        b"this is not gzip",
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["Response Status"], "400 Bad Request", "{v}");
    assert!(
        v["Response Body"]
            .as_str()
            .unwrap()
            .contains("Invalid Tar File"),
        "{v}"
    );
    assert_eq!(s.req("GET", "/xa-bad", &[], b"").status, 204);
    let r = s.req("PUT", "/xa-bad?extract-archive=zip", &[], b"PK");
    assert_eq!(r.status, 400);
}

/// Swift's older versioning: stack mode (`X-Versions-Location`) archives
/// each overwritten version and a DELETE brings the previous one back;
/// history mode (`X-History-Location`) archives on DELETE too, with a
/// delete marker. A missing archive refuses the overwrite (412) and
/// changes nothing.
#[test]
fn versioned_writes_stack_and_history() {
    let s = swift();
    s.req("PUT", "/vw-archive", &[], b"");
    s.req("PUT", "/vw", &[("X-Versions-Location", "vw-archive")], b"");
    let h = s.req("HEAD", "/vw", &[], b"");
    assert_eq!(h.header("x-versions-location"), Some("vw-archive"));
    for v in ["v1", "v2", "v3"] {
        assert_eq!(s.req("PUT", "/vw/o", &[], v.as_bytes()).status, 201);
    }
    let archived = s.req("GET", "/vw-archive?prefix=001o/", &[], b"").text();
    assert_eq!(archived.lines().count(), 2, "{archived}");
    assert_eq!(s.req("GET", "/vw/o", &[], b"").body, b"v3");
    for want in ["v2", "v1"] {
        assert_eq!(s.req("DELETE", "/vw/o", &[], b"").status, 204);
        assert_eq!(s.req("GET", "/vw/o", &[], b"").body, want.as_bytes());
    }
    assert_eq!(s.req("DELETE", "/vw/o", &[], b"").status, 204);
    assert_eq!(s.req("GET", "/vw/o", &[], b"").status, 404);
    assert_eq!(
        s.req("GET", "/vw-archive?prefix=001o/", &[], b"").status,
        204
    );

    s.req("PUT", "/vh-archive", &[], b"");
    s.req("PUT", "/vh", &[("X-History-Location", "vh-archive")], b"");
    s.req("PUT", "/vh/o", &[], b"a");
    s.req("PUT", "/vh/o", &[], b"b");
    assert_eq!(s.req("DELETE", "/vh/o", &[], b"").status, 204);
    assert_eq!(s.req("GET", "/vh/o", &[], b"").status, 404);
    let history = s.req("GET", "/vh-archive?prefix=001o/&format=json", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&history.body).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{v}");
    assert_eq!(
        kinds[2], "application/x-deleted;swift_versions_deleted=1",
        "{v}"
    );
    // Switching modes: setting one clears the other.
    s.req("POST", "/vh", &[("X-Versions-Location", "vh-archive")], b"");
    let h = s.req("HEAD", "/vh", &[], b"");
    assert_eq!(h.header("x-versions-location"), Some("vh-archive"));
    assert_eq!(h.header("x-history-location"), None);

    let both = s.req(
        "PUT",
        "/vx",
        &[("X-Versions-Location", "a"), ("X-History-Location", "b")],
        b"",
    );
    assert_eq!(both.status, 400);
    s.req("PUT", "/vm", &[("X-Versions-Location", "vm-nowhere")], b"");
    assert_eq!(s.req("PUT", "/vm/o", &[], b"1").status, 201);
    assert_eq!(s.req("PUT", "/vm/o", &[], b"2").status, 412);
    assert_eq!(s.req("GET", "/vm/o", &[], b"").body, b"1");
    s.req("POST", "/vm", &[("X-Remove-Versions-Location", "x")], b"");
    assert_eq!(
        s.req("HEAD", "/vm", &[], b"").header("x-versions-location"),
        None
    );
    assert_eq!(s.req("PUT", "/vm/o", &[], b"2").status, 201);
}

/// Swift's object versioning (`X-Versions-Enabled`), on the same versions
/// S3 sees: every write a version with an id, `?versions` listings,
/// reads and deletes by `version-id`, delete markers, and a container with
/// versions that is not empty.
#[test]
fn object_versioning() {
    let s = swift();
    assert_eq!(
        s.req("PUT", "/ov", &[("X-Versions-Enabled", "true")], b"")
            .status,
        201
    );
    assert_eq!(
        s.req("HEAD", "/ov", &[], b"").header("x-versions-enabled"),
        Some("True")
    );
    let mut ids = Vec::new();
    for body in ["first", "second"] {
        let r = s.req("PUT", "/ov/o", &[], body.as_bytes());
        assert_eq!(r.status, 201);
        ids.push(
            r.header("x-object-version-id")
                .expect("a version id")
                .to_string(),
        );
    }
    let g = s.req("GET", "/ov/o", &[], b"");
    assert_eq!(g.body, b"second");
    assert_eq!(g.header("x-object-version-id"), Some(ids[1].as_str()));
    // A POST changes the current version's metadata.
    let posted = s.req("POST", "/ov/o", &[("X-Object-Meta-Colour", "red")], b"");
    assert_eq!(posted.status, 202);
    let h = s.req("HEAD", "/ov/o", &[], b"");
    assert_eq!(h.header("x-object-meta-colour"), Some("red"));
    let old = s.req("GET", &format!("/ov/o?version-id={}", ids[0]), &[], b"");
    assert_eq!(old.body, b"first");
    let listing = |s: &Swift| -> Vec<serde_json::Value> {
        let r = s.req("GET", "/ov?versions&format=json", &[], b"");
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let v = listing(&s);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0]["version_id"], ids[1].as_str());
    assert_eq!(v[0]["is_latest"], true);
    assert_eq!(v[1]["is_latest"], false);
    // The plain listing shows the current version as the object.
    let plain = s.req("GET", "/ov?format=json", &[], b"");
    let rows: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(rows[0]["bytes"], 6, "{rows}");
    assert_eq!(rows[0]["hash"], md5_hex(b"second"), "{rows}");

    let d = s.req("DELETE", "/ov/o", &[], b"");
    assert_eq!(d.status, 204);
    assert_eq!(d.header("x-object-version-type"), Some("delete-marker"));
    let marker = d.header("x-object-version-id").unwrap().to_string();
    assert_eq!(s.req("GET", "/ov/o", &[], b"").status, 404);
    let v = listing(&s);
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[0]["content_type"],
        "application/x-deleted;swift_versions_deleted=1"
    );
    let gone = s.req("GET", &format!("/ov/o?version-id={marker}"), &[], b"");
    assert_eq!(gone.status, 404);
    // Deleting the marker brings the newest version back, and so on.
    s.req("DELETE", &format!("/ov/o?version-id={marker}"), &[], b"");
    assert_eq!(s.req("GET", "/ov/o", &[], b"").body, b"second");
    s.req("DELETE", &format!("/ov/o?version-id={}", ids[1]), &[], b"");
    assert_eq!(s.req("GET", "/ov/o", &[], b"").body, b"first");
    // A COPY of one version.
    s.req("PUT", "/ov/o", &[], b"third");
    let copied = s.req(
        "COPY",
        &format!("/ov/o?version-id={}", ids[0]),
        &[("Destination", "/ov/from-first")],
        b"",
    );
    assert_eq!(copied.status, 201);
    assert_eq!(s.req("GET", "/ov/from-first", &[], b"").body, b"first");
    let bad = s.req("GET", "/ov/o?version-id=not-a-version", &[], b"");
    assert_eq!(bad.status, 400);

    // Versions keep the container from being deleted, and stay hidden.
    assert_eq!(s.req("DELETE", "/ov", &[], b"").status, 409);
    let account = s.req("GET", "?format=json", &[], b"").text();
    assert!(!account.contains("versions"), "{account}");
    // Suspended: a write is the null version.
    s.req("POST", "/ov", &[("X-Versions-Enabled", "false")], b"");
    let r = s.req("PUT", "/ov/o", &[], b"null one");
    assert_eq!(r.header("x-object-version-id"), Some("null"));
    let null = s.req("GET", "/ov/o?version-id=null", &[], b"");
    assert_eq!(null.body, b"null one");
    // A client's own symlink written before versioning is the null
    // version: kept when a version replaces it, as any plain object is.
    s.req("PUT", "/ov3", &[], b"");
    s.req("PUT", "/ov3/target", &[], b"aimed at");
    let linked = s.req("PUT", "/ov3/l", &[("X-Symlink-Target", "ov3/target")], b"");
    assert_eq!(linked.status, 201);
    s.req("POST", "/ov3", &[("X-Versions-Enabled", "true")], b"");
    s.req("PUT", "/ov3/l", &[], b"a version");
    assert_eq!(s.req("GET", "/ov3/l", &[], b"").body, b"a version");
    let kept = s.req("GET", "/ov3/l?version-id=null", &[], b"");
    assert_eq!(kept.status, 200, "the symlink kept as the null version");
    assert_eq!(kept.header("x-symlink-target"), Some("ov3/target"));
    // The older modes and this one exclude each other.
    let both = s.req(
        "PUT",
        "/ov2",
        &[("X-Versions-Enabled", "true"), ("X-Versions-Location", "a")],
        b"",
    );
    assert_eq!(both.status, 400);
}

/// A read of a versioned object is served by the node that holds its link,
/// with the version stored beside it, in one read (a HEAD by every replica
/// that holds both): the body, version id, ranges and conditions are the
/// version's, as when the proxy follows the link itself.
#[test]
fn versioned_reads_follow_the_link_on_its_node() {
    // A cluster of its own: the counts below are of this test's reads only.
    let c = &Cluster::start(3);
    let s = Swift::new(c);
    let followed = || -> u64 {
        (0..3)
            .map(|n| c.node_metric(n, "nubo_version_links_followed_total"))
            .sum()
    };
    let on = s.req("PUT", "/ovread", &[("X-Versions-Enabled", "true")], b"");
    assert_eq!(on.status, 201);
    s.req("PUT", "/ovread/o", &[], b"one");
    let two = s.req("PUT", "/ovread/o", &[], b"two");
    let id = two.header("x-object-version-id").unwrap().to_string();
    let before = followed();
    let g = s.req("GET", "/ovread/o", &[], b"");
    assert_eq!(g.body, b"two");
    assert_eq!(g.header("x-object-version-id"), Some(id.as_str()));
    assert_eq!(g.header("etag"), Some(md5_hex(b"two").as_str()));
    assert!(g.header("content-location").is_none());
    let part = s.req("GET", "/ovread/o", &[("Range", "bytes=1-2")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"wo");
    let same = s.req(
        "GET",
        "/ovread/o",
        &[("If-None-Match", &md5_hex(b"two"))],
        b"",
    );
    assert_eq!(same.status, 304);
    assert!(
        followed() >= before + 3,
        "each read was one read, on the link's node"
    );
    assert_eq!(followed(), before + 3, "one answer per read");
    // A HEAD asks every replica, and each that holds both answers with the
    // version; so does a multi-range GET's HEAD.
    let before = followed();
    let h = s.req("HEAD", "/ovread/o", &[], b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("x-object-version-id"), Some(id.as_str()));
    assert_eq!(h.header("content-length"), Some("3"));
    let parts = s.req("GET", "/ovread/o", &[("Range", "bytes=0-0,2-2")], b"");
    assert_eq!(parts.status, 206);
    assert!(
        parts
            .header("content-type")
            .is_some_and(|t| t.starts_with("multipart/byteranges")),
        "{:?}",
        parts.header("content-type")
    );
    assert!(
        followed() >= before + 2 * 2,
        "the HEAD and the multi-range GET's HEAD were answered with the version"
    );
    assert_eq!(
        followed(),
        before + 2 * 3,
        "by each of the three replicas, for the HEAD and the multi-range GET's HEAD"
    );
    // After a delete marker there is no link to follow.
    assert_eq!(s.req("DELETE", "/ovread/o", &[], b"").status, 204);
    assert_eq!(s.req("GET", "/ovread/o", &[], b"").status, 404);
}

/// A large object's manifest, asked for with `multipart-manifest=get`,
/// reads through a version link too: the link names the object by the
/// ETag it keeps for the whole, not the manifest's own MD5 (it answered
/// 409 before).
#[test]
fn a_versioned_large_objects_manifest_reads_through_its_link() {
    let s = swift();
    assert_eq!(
        s.req("PUT", "/ovslo", &[("X-Versions-Enabled", "true")], b"")
            .status,
        201
    );
    s.req("PUT", "/ovslo-segs", &[], b"");
    s.req("PUT", "/ovslo-segs/a", &[], b"aaaa");
    s.req("PUT", "/ovslo-segs/b", &[], b"bb");
    let manifest = serde_json::json!([{"path": "/ovslo-segs/a"}, {"path": "/ovslo-segs/b"}]);
    let put = put_manifest(&s, "/ovslo/big", &manifest);
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(s.req("GET", "/ovslo/big", &[], b"").body, b"aaaabb");
    let raw = s.req("GET", "/ovslo/big?multipart-manifest=get", &[], b"");
    assert_eq!(raw.status, 200, "{}", raw.text());
    let listed: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|seg| seg["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/ovslo-segs/a", "/ovslo-segs/b"]);
}

/// A delete by version id takes turns with a conditional write of the same
/// object (both hold the name's lease): while an `If-None-Match: *`
/// upload streams, the delete waits, and after 10 s it gets 503 and the
/// version stays; once the upload is done, the delete goes through.
#[test]
fn version_deletes_wait_for_a_conditional_write() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = swift();
    let on = s.req("PUT", "/ovlease", &[("X-Versions-Enabled", "true")], b"");
    assert_eq!(on.status, 201);
    let first = s.req("PUT", "/ovlease/o", &[], b"first");
    let id = first.header("x-object-version-id").unwrap().to_string();
    // A delete marker current: `If-None-Match: *` holds.
    assert_eq!(s.req("DELETE", "/ovlease/o", &[], b"").status, 204);

    let (host, base) = s
        .url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .unwrap();
    let mut upload = std::net::TcpStream::connect(host).unwrap();
    upload
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        upload,
        "PUT /{base}/ovlease/o HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {}\r\n\
         If-None-Match: *\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.token
    )
    .unwrap();
    let streaming = Arc::new(AtomicBool::new(true));
    let writer = {
        let mut body = upload.try_clone().unwrap();
        let streaming = streaming.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while streaming.load(Ordering::SeqCst) {
                body.write_all(b"1\r\nx\r\n").unwrap();
                sent += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            body.write_all(b"0\r\n\r\n").unwrap();
            sent
        })
    };
    // The upload has its lease long before a second passes.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let version = format!("/ovlease/o?version-id={id}");
    let waited = s.req("DELETE", &version, &[], b"");
    assert_eq!(waited.status, 503, "{}", waited.text());
    assert_eq!(s.req("GET", &version, &[], b"").body, b"first");

    streaming.store(false, Ordering::SeqCst);
    let sent = writer.join().unwrap();
    let mut answer = Vec::new();
    let _ = upload.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(s.req("GET", "/ovlease/o", &[], b"").body, vec![b'x'; sent]);
    assert_eq!(s.req("DELETE", &version, &[], b"").status, 204);
    assert_eq!(s.req("GET", &version, &[], b"").status, 404);
}

/// Account quotas: only an operator (`.reseller_admin`: `admin:admin`, as
/// in Swift's all-in-one setup) sets `X-Account-Meta-Quota-Bytes`, the
/// account's own admin gets 403; a write past it is 413 and stores
/// nothing. An operator reaches any account.
#[test]
fn account_quotas_are_the_operators() {
    let c = cluster();
    let owner = Swift::as_user(c, "test2:tester2", "testing2");
    let operator = Swift::as_user(c, "admin:admin", "admin");
    let quota = [("X-Account-Meta-Quota-Bytes", "10")];
    assert_eq!(owner.req("POST", "", &quota, b"").status, 403);
    let set = |headers: &[(&str, &str)]| operator.send("POST", &owner.url, headers, b"", true);
    assert_eq!(set(&[("X-Account-Meta-Quota-Bytes", "ten")]).status, 400);
    assert_eq!(set(&quota).status, 204);
    assert_eq!(owner.req("PUT", "/aq", &[], b"").status, 201);
    assert_eq!(owner.req("PUT", "/aq/a", &[], b"12345").status, 201);
    // The account's byte count follows its containers' shortly.
    for _ in 0..100 {
        let used = owner.req("HEAD", "", &[], b"");
        if used.header("x-account-bytes-used") == Some("5") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(owner.req("PUT", "/aq/b", &[], b"123456").status, 413);
    assert_eq!(owner.req("HEAD", "/aq/b", &[], b"").status, 404);
    assert_eq!(owner.req("PUT", "/aq/c", &[], b"12345").status, 201);
    assert_eq!(
        set(&[("X-Remove-Account-Meta-Quota-Bytes", "x")]).status,
        204
    );
    assert_eq!(owner.req("PUT", "/aq/b", &[], b"123456").status, 201);
}
