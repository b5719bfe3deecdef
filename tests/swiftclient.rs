//! python-swiftclient (the `swift` command operators use) against a real
//! cluster: upload, download, list, stat, post, copy, delete, and a 300 MiB
//! object uploaded both whole and as SLO segments, compared byte for byte.
//! The client is installed by `scripts/setup.sh` into `$NUBO_VENV`.

mod common;
use common::Cluster;
use std::path::{Path, PathBuf};
use std::process::Command;

fn swift_bin() -> PathBuf {
    common::venv_bin("swift")
}

fn swift(c: &Cluster, cwd: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(swift_bin());
    cmd.current_dir(cwd)
        .args([
            "-A",
            &format!("{}/auth/v1.0", c.url()),
            "-U",
            "test:tester",
            "-K",
            "testing",
        ])
        .args(args);
    String::from_utf8_lossy(&common::run_ok(&mut cmd).stdout).into_owned()
}

/// A file of pseudo-random bytes (so that a misplaced block cannot compare equal).
fn random_file(path: &Path, mib: usize) {
    let mut data = vec![0u8; mib << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(path, data).unwrap();
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .arg("-s")
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

#[test]
fn swift_command_line_client() {
    let c = Cluster::start(3);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("small.txt"), b"hello from swiftclient\n").unwrap();
    swift(&c, w, &["upload", "docs", "small.txt"]);
    assert!(swift(&c, w, &["list"]).lines().any(|l| l == "docs"));
    assert_eq!(swift(&c, w, &["list", "docs"]).trim(), "small.txt");
    swift(&c, w, &["post", "-m", "color:blue", "docs", "small.txt"]);
    let stat = swift(&c, w, &["stat", "docs", "small.txt"]);
    assert!(stat.contains("Meta Color: blue"), "{stat}");
    swift(
        &c,
        w,
        &["copy", "-d", "/docs/copy.txt", "docs", "small.txt"],
    );
    let down = w.join("down");
    std::fs::create_dir(&down).unwrap();
    swift(&c, &down, &["download", "docs", "copy.txt"]);
    assert!(same_bytes(&w.join("small.txt"), &down.join("copy.txt")));
    let account = swift(&c, w, &["stat"]);
    assert!(account.contains("Containers: 1"), "{account}");
    swift(&c, w, &["delete", "docs", "copy.txt"]);
    assert_eq!(swift(&c, w, &["list", "docs"]).trim(), "small.txt");

    // 300 MiB: as one object, and as SLO segments of 100 MiB.
    random_file(&w.join("big.bin"), 300);
    swift(&c, w, &["upload", "large", "big.bin"]);
    swift(
        &c,
        w,
        &[
            "upload",
            "--use-slo",
            "-S",
            "104857600",
            "large-slo",
            "big.bin",
        ],
    );
    let stat = swift(&c, w, &["stat", "large-slo", "big.bin"]);
    assert!(
        stat.contains("Manifest:") || stat.contains("Content Length: 314572800"),
        "{stat}"
    );
    for container in ["large", "large-slo"] {
        let dir = w.join(format!("got-{container}"));
        std::fs::create_dir(&dir).unwrap();
        swift(&c, &dir, &["download", container, "big.bin"]);
        assert!(
            same_bytes(&w.join("big.bin"), &dir.join("big.bin")),
            "{container} differs"
        );
        std::fs::remove_file(dir.join("big.bin")).unwrap();
    }
    swift(&c, w, &["delete", "large-slo", "big.bin"]);
    swift(&c, w, &["delete", "--all"]);
    assert_eq!(swift(&c, w, &["list"]).trim(), "");
}

/// Symlinks, container quotas, FormPost, CORS, public reads, static
/// websites, TempURLs from swiftclient's `generate_temp_url`, and nested
/// SLOs, through python-swiftclient and plain HTTP
/// (`tests/clients/swift_middleware.py`).
#[test]
fn swift_middleware_through_swiftclient() {
    let c = Cluster::start(3);
    common::run_client_script(&c, "swift_middleware.py");
}
