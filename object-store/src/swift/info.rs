//! `GET /info`: the capabilities clients read (python-swiftclient decides on
//! SLO segments and bulk delete from it).

use crate::proxy::limits::*;
use http::{Response, StatusCode};
use serde_json::json;
use service_kit::http_util::Body;

pub const MAX_BULK_DELETES: usize = 10_000;

/// The one storage policy (Swift's default name): containers report it,
/// and a container PUT naming another is refused.
pub const POLICY: &str = "Policy-0";

pub fn response() -> Response<Body> {
    service_kit::http_util::json_response(
        StatusCode::OK,
        &json!({
            "swift": {
                "version": env!("CARGO_PKG_VERSION"),
                "max_file_size": MAX_OBJECT_SIZE,
                "max_object_name_length": MAX_OBJECT_NAME,
                "max_container_name_length": MAX_CONTAINER_NAME,
                "max_account_name_length": MAX_ACCOUNT_NAME,
                "max_meta_name_length": MAX_META_NAME,
                "max_meta_value_length": MAX_META_VALUE,
                "max_meta_count": MAX_META_COUNT,
                "max_meta_overall_size": MAX_META_OVERALL,
                "container_listing_limit": MAX_LISTING,
                "account_listing_limit": MAX_LISTING,
                "max_header_size": 8192,
                "extra_header_count": 0,
                "strict_cors_mode": true,
                "policies": [{"name": POLICY, "default": true}],
            },
            "tempauth": {"account_acls": false},
            "s3api": {
                "max_bucket_listing": 1000,
                "max_parts_listing": 1000,
                "max_upload_part_num": 10000,
                "max_multi_delete_objects": 1000,
                "allow_multipart_uploads": true,
                "min_segment_size": 5 * 1024 * 1024,
                "s3_acl": false
            },
            "slo": {
                "max_manifest_segments": MAX_MANIFEST_SEGMENTS,
                "max_manifest_size": MAX_MANIFEST_BYTES,
                "min_segment_size": 1,
                "yield_frequency": 10
            },
            "dlo": {"max_segments": 10000},
            "bulk_upload": {
                "max_containers_per_extraction": 10000,
                "max_failed_extractions": 1000
            },
            "bulk_delete": {
                "max_deletes_per_request": MAX_BULK_DELETES,
                "max_failed_deletes": 1000
            },
            "formpost": {},
            "symlink": {"symloop_max": crate::proxy::symlinks::MAX_HOPS, "static_links": true},
            "container_quotas": {},
            "account_quotas": {},
            "tempurl": {
                "methods": ["GET", "HEAD", "PUT", "POST", "DELETE"],
                "allowed_digests": ["sha1", "sha256", "sha512"],
                "incoming_remove_headers": ["x-timestamp"],
                "outgoing_remove_headers": ["x-object-meta-*"]
            }
        }),
    )
}
