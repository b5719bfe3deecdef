//! The architecture, checked: the seams the code is built around stay
//! where they are. The Swift and S3 front ends are thin layers over the
//! object layer and never import each other or the node protocol; the
//! registry and compute use service-kit, not the object store's
//! internals; every source file says what it is for.

use std::path::{Path, PathBuf};

/// The checkout, read when the test runs (the build directory is shared
/// by every clone, so a path baked in at build time may be another's).
fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"))
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), &mut out);
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// The files under `dir` that mention any of `needles` in code (not in
/// comments).
fn offenders(dir: &str, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(dir) {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|x| code.contains(x)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_front_ends_do_not_import_each_other_or_the_node_protocol() {
    for (dir, other) in [
        ("object-store/src/s3", "swift"),
        ("object-store/src/swift", "s3"),
    ] {
        let crate_path = format!("crate::{other}");
        let super_path = format!("super::{other}");
        let found = offenders(dir, &[&crate_path, &super_path, "backend"]);
        assert!(
            found.is_empty(),
            "{dir} reaches past the object layer:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn services_use_service_kit_not_object_store_internals() {
    for dir in ["compute/src", "image-registry/src", "identity/src"] {
        let found = offenders(dir, &["object_store::"]);
        assert!(found.is_empty(), "{dir}:\n{}", found.join("\n"));
    }
    let found = offenders(
        "compute/src",
        &["image_registry::image::", "image_registry::db"],
    );
    assert!(found.is_empty(), "compute:\n{}", found.join("\n"));
    // Identity is what every service depends on, so it depends on none.
    let found = offenders("identity/src", &["image_registry::", "compute::"]);
    assert!(found.is_empty(), "identity:\n{}", found.join("\n"));
}

#[test]
fn every_source_file_starts_with_its_purpose() {
    let mut missing = Vec::new();
    for dir in [
        "service-kit/src",
        "ring-tools/src",
        "object-store/src",
        "image-registry/src",
        "compute/src",
        "identity/src",
        "src",
    ] {
        for (path, text) in sources(dir) {
            if !text.trim_start().starts_with("//!") {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no purpose comment:\n{}",
        missing.join("\n")
    );
}
