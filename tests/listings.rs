//! Listings show every acknowledged write: 8 Swift writers each list right
//! after every PUT and every DELETE, 2,000 objects in all, and no listing
//! may miss one; a static large object is listed (and counted) as the whole
//! object, with the ETag Swift lists for it.

mod common;
use common::{Cluster, Swift};
use serde_json::Value;

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

fn listed(s: &Swift, container: &str, prefix: &str) -> Vec<Value> {
    let r = s.req(
        "GET",
        &format!("/{container}?format=json&prefix={prefix}"),
        &[],
        b"",
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_default()
}

#[test]
fn every_listing_after_a_write_shows_it() {
    let c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/listed", &[], b"").status, 201);
    const WRITERS: usize = 8;
    const EACH: usize = 250;
    let misses: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = Swift::new(&c);
                scope.spawn(move || {
                    let mut missed = Vec::new();
                    for i in 0..EACH {
                        let name = format!("w{w}/o{i:04}");
                        let put = s.req("PUT", &format!("/listed/{name}"), &[], name.as_bytes());
                        assert_eq!(put.status, 201, "{}", put.text());
                        let after_put = listed(&s, "listed", &name);
                        if after_put.len() != 1 || after_put[0]["name"] != name.as_str() {
                            missed.push(format!("PUT {name}"));
                        }
                        let del = s.req("DELETE", &format!("/listed/{name}"), &[], b"");
                        assert_eq!(del.status, 204, "{}", del.text());
                        if !listed(&s, "listed", &name).is_empty() {
                            missed.push(format!("DELETE {name}"));
                        }
                    }
                    missed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        misses.is_empty(),
        "{} of {} listings missed the write before them: {:?}",
        misses.len(),
        2 * WRITERS * EACH,
        &misses[..misses.len().min(5)]
    );

    // A static large object: listed with its total size, the manifest's
    // MD5 as hash and the SLO ETag as slo_etag (as Swift lists it), and
    // counted in the container's bytes by its total size.
    assert_eq!(s.req("PUT", "/segs", &[], b"").status, 201);
    let parts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 100_000]).collect();
    let manifest: Vec<Value> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = format!("/segs/p{i}");
            assert_eq!(s.req("PUT", &path, &[], p).status, 201);
            serde_json::json!({"path": path, "etag": md5_hex(p), "size_bytes": p.len()})
        })
        .collect();
    let put = s.req(
        "PUT",
        "/listed/big?multipart-manifest=put",
        &[],
        serde_json::to_string(&manifest).unwrap().as_bytes(),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let head = s.req("HEAD", "/listed/big", &[], b"");
    let rows = listed(&s, "listed", "big");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["bytes"], 300_000, "{rows:?}");
    assert_eq!(
        Some(rows[0]["slo_etag"].as_str().unwrap()),
        head.header("etag"),
        "{rows:?}"
    );
    let raw = s.req("GET", "/listed/big?multipart-manifest=get", &[], b"");
    assert_eq!(rows[0]["hash"], md5_hex(&raw.body).as_str());
    let container = s.req("HEAD", "/listed", &[], b"");
    assert_eq!(container.header("x-container-bytes-used"), Some("300000"));
    assert_eq!(container.header("x-container-object-count"), Some("1"));
}
