//! The S3 API through the clients people use, against a real cluster.
//! The clients are installed by `scripts/setup.sh` into `$NUBO_VENV`.

mod common;
use common::Cluster;

fn run_script(c: &Cluster, script: &str) {
    common::run_client_script(c, script);
}

#[test]
fn boto3_buckets_objects_listings_copies_and_errors() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_basic.py");
}

#[test]
fn what_one_api_writes_the_other_reads() {
    let c = Cluster::start(3);
    run_script(&c, "cross_api.py");
}

#[test]
fn boto3_lists_show_every_acknowledged_write() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_listings.py");
}

#[test]
fn checksums_are_verified_in_headers_and_trailers_and_races_succeed() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_checksums.py");
}

#[test]
fn conditional_writes_have_exactly_one_winner() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_conditional.py");
}

#[test]
fn the_edges_clients_hit() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_edges.py");
}

#[test]
fn browser_post_uploads_follow_their_policy() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_post.py");
}

/// Versioning through boto3 (and the same versions through Swift):
/// `tests/clients/boto3_versioning.py`.
#[test]
fn versioned_buckets_keep_every_version() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_versioning.py");
}

/// Object Lock through boto3, and the Swift API meeting the same lock:
/// `tests/clients/boto3_object_lock.py`.
#[test]
fn locked_versions_cannot_be_deleted_on_any_path() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_object_lock.py");
}

/// Lifecycle configurations and the storage nodes' lifecycle worker:
/// `tests/clients/boto3_lifecycle.py`.
#[test]
fn lifecycle_rules_expire_versions_and_abort_uploads() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_lifecycle.py");
}

/// SSE-S3 and SSE-C through boto3 and Swift (`tests/clients/boto3_sse.py`);
/// then no file of the cluster's data holds an encrypted body's plaintext,
/// while the unencrypted control object's is found (so the scan can fail).
#[test]
fn encrypted_bodies_are_sealed_at_rest_and_open_on_every_path() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_sse.py");
    let mut found = (false, false, false);
    scan(c.dir.path(), &mut found);
    assert!(found.1, "the scan finds the unencrypted control body");
    assert!(!found.0, "an encrypted body's plaintext is stored");
    assert!(!found.2, "a customer's SSE-C key is stored");
}

/// Whether any file under `dir` holds the secret marker (`.0`), the
/// control marker (`.1`), or the script's SSE-C key, raw or in base64
/// (`.2`).
fn scan(dir: &std::path::Path, found: &mut (bool, bool, bool)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            scan(&path, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let has = |m: &[u8]| bytes.windows(m.len()).any(|w| w == m);
            found.0 |= has(b"NUBO-SSE-SECRET-MARKER");
            found.1 |= has(b"NUBO-PLAIN-CONTROL-MARKER");
            // base64 of "NUBO-SSE-C-CUSTOMER-KEY-32-BYTES".
            found.2 |= has(b"NUBO-SSE-C-CUSTOMER-KEY-32-BYTES")
                || has(b"TlVCTy1TU0UtQy1DVVNUT01FUi1LRVktMzItQllURVM=");
        }
    }
}

#[test]
fn swift_clients_cannot_touch_what_s3_keeps_on_a_bucket() {
    let c = Cluster::start(3);
    run_script(&c, "cross_api_sysmeta.py");
}

#[test]
fn canned_acls_decide_what_anonymous_readers_get() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_acl.py");
}

#[test]
fn boto3_multipart_uploads() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_multipart.py");
}

#[test]
fn aws_cli_high_level_and_s3api() {
    let c = Cluster::start(3);
    run_script(&c, "awscli.sh");
}

#[test]
fn rclone_copy_sync_check_lsjson() {
    let c = Cluster::start(3);
    run_script(&c, "rclone.sh");
}

#[test]
fn sigv4_presigned_urls_expiry_tampering_and_virtual_hosts() {
    let c = Cluster::start(3);
    run_script(&c, "boto3_auth.py");
}

#[test]
fn aws_chunked_uploads_with_chunk_signatures() {
    let c = Cluster::start(3);
    run_script(&c, "chunked_sigv4.py");
}
