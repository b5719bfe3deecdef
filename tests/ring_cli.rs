//! `nubo ring` as operators script it: the real binary, real files.

use ring_tools::Ring;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nubo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nubo"))
        .args(args)
        .output()
        .expect("run nubo")
}

fn ok(args: &[&str]) -> String {
    let out = nubo(args);
    assert!(
        out.status.success(),
        "nubo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail, and returns its one-line reason.
fn fails(args: &[&str]) -> String {
    let out = nubo(args);
    assert!(!out.status.success(), "nubo {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

struct Cluster {
    _dir: tempfile::TempDir,
    builder: PathBuf,
    ring: PathBuf,
}

impl Cluster {
    fn path(p: &Path) -> &str {
        p.to_str().unwrap()
    }
    fn b(&self) -> &str {
        Self::path(&self.builder)
    }
    fn r(&self) -> &str {
        Self::path(&self.ring)
    }
}

/// 4 zones x 3 devices, part power 10, rebalanced.
fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster {
        builder: dir.path().join("object.builder"),
        ring: dir.path().join("object.ring"),
        _dir: dir,
    };
    ok(&[
        "ring",
        "create",
        c.b(),
        "--part-power",
        "10",
        "--replicas",
        "3",
        "--min-part-hours",
        "1",
    ]);
    for zone in 1..=4 {
        for dev in 1..=3 {
            let id = ok(&[
                "ring",
                "add",
                c.b(),
                "--region",
                "1",
                "--zone",
                &zone.to_string(),
                "--ip",
                &format!("127.0.0.{zone}"),
                "--port",
                &format!("62{zone}0"),
                "--device",
                &format!("sdb{dev}"),
                "--weight",
                "100",
            ]);
            assert_eq!(
                id.trim(),
                ((zone - 1) * 3 + dev - 1).to_string(),
                "add prints the new id"
            );
        }
    }
    let report: Value = serde_json::from_str(&ok(&[
        "ring",
        "rebalance",
        c.b(),
        "--ring",
        c.r(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["moved"], 3072);
    assert!(report["balance"].as_f64().unwrap() < 1.0);
    assert_eq!(report["dispersion"].as_f64().unwrap(), 0.0);
    c
}

#[test]
fn show_reports_every_field_operators_script_against() {
    let c = cluster();
    let show: Value = serde_json::from_str(&ok(&["ring", "show", c.b(), "--json"])).unwrap();
    assert_eq!(show["part_power"], 10);
    assert_eq!(show["replicas"], 3);
    assert_eq!(show["min_part_hours"], 1);
    assert!(show["balance"].is_number() && show["dispersion"].is_number());
    let devices = show["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 12);
    let total: u64 = devices.iter().map(|d| d["parts"].as_u64().unwrap()).sum();
    assert_eq!(total, 3072);
    for key in [
        "id", "region", "zone", "ip", "port", "device", "weight", "parts", "balance",
    ] {
        assert!(
            devices.iter().all(|d| !d[key].is_null()),
            "device field {key}"
        );
    }
    let text = ok(&["ring", "show", c.b()]);
    assert!(
        text.contains("127.0.0.3:6230") && text.contains("balance"),
        "{text}"
    );
    assert!(
        ok(&["ring", "validate", c.r()]).starts_with("ok: 1024 partitions, 3 replicas, 12 devices")
    );
}

#[test]
fn lookup_is_the_same_in_every_process_and_in_the_library() {
    let c = cluster();
    let ring = Ring::load(&c.ring).unwrap();
    for i in 0..20 {
        let name = format!("obj-{i}");
        let args = [
            "ring",
            "lookup",
            c.r(),
            "AUTH_test",
            "photos",
            &name,
            "--json",
            "--handoffs",
            "5",
        ];
        let first: Value = serde_json::from_str(&ok(&args)).unwrap();
        let second: Value = serde_json::from_str(&ok(&args)).unwrap();
        assert_eq!(first, second);
        let (hash, part) = ring.locate(&["AUTH_test", "photos", &name]);
        assert_eq!(first["partition"], part);
        assert_eq!(first["hash"], hash.to_hex());
        let ids = |key: &str| -> Vec<u64> {
            first[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_u64().unwrap())
                .collect()
        };
        let primaries: Vec<u64> = ring.primaries(part).map(|d| d.id as u64).collect();
        let handoffs: Vec<u64> = ring.handoffs(part).take(5).map(|d| d.id as u64).collect();
        assert_eq!(ids("primaries"), primaries);
        assert_eq!(ids("handoffs"), handoffs);
        let zones: std::collections::HashSet<_> = first["primaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["zone"].as_u64())
            .collect();
        assert_eq!(zones.len(), 3, "three replicas, three zones");
    }
    // Accounts and containers are placed too; handoffs default to the replica count.
    let account: Value =
        serde_json::from_str(&ok(&["ring", "lookup", c.r(), "AUTH_test", "--json"])).unwrap();
    assert_eq!(account["handoffs"].as_array().unwrap().len(), 3);
    let text = ok(&["ring", "lookup", c.r(), "AUTH_test", "photos"]);
    assert!(text.contains("partition") && text.contains("primary") && text.contains("handoff"));
}

#[test]
fn mistakes_get_one_clear_line_and_change_nothing() {
    let c = cluster();
    let before = std::fs::read(&c.builder).unwrap();
    assert!(fails(&["ring", "set-weight", c.b(), "99", "10"]).contains("unknown device id 99"));
    assert!(fails(&["ring", "set-weight", c.b(), "3", "-1"]).contains("weight -1"));
    assert!(fails(&["ring", "remove", c.b(), "77"]).contains("unknown device id 77"));
    assert!(fails(&[
        "ring",
        "add",
        c.b(),
        "--region",
        "1",
        "--zone",
        "1",
        "--ip",
        "127.0.0.1",
        "--port",
        "6210",
        "--device",
        "sdb1",
        "--weight",
        "1"
    ])
    .contains("already in the ring"));
    assert!(fails(&[
        "ring",
        "add",
        c.b(),
        "--region",
        "1",
        "--zone",
        "1",
        "--ip",
        "nowhere",
        "--port",
        "6210",
        "--device",
        "sdx",
        "--weight",
        "1"
    ])
    .contains("not an IPv4 or IPv6 address"));
    assert!(fails(&[
        "ring",
        "create",
        c.b(),
        "--part-power",
        "10",
        "--replicas",
        "3",
        "--min-part-hours",
        "1"
    ])
    .contains("already exists"));
    assert_eq!(
        std::fs::read(&c.builder).unwrap(),
        before,
        "failed commands leave the builder alone"
    );

    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b");
    let b = b.to_str().unwrap();
    for pp in ["0", "33", "-1"] {
        assert!(fails(&[
            "ring",
            "create",
            b,
            "--part-power",
            pp,
            "--replicas",
            "3",
            "--min-part-hours",
            "1"
        ])
        .contains("part power"));
    }
    assert!(fails(&["ring", "show", "/nonexistent/builder"]).contains("/nonexistent/builder"));
    assert!(fails(&["ring", "validate", "/nonexistent/ring"]).contains("No such file"));

    ok(&[
        "ring",
        "create",
        b,
        "--part-power",
        "4",
        "--replicas",
        "3",
        "--min-part-hours",
        "0",
    ]);
    for n in 1..=2 {
        ok(&[
            "ring",
            "add",
            b,
            "--region",
            "1",
            "--zone",
            "1",
            "--ip",
            "10.0.0.1",
            "--port",
            "6200",
            "--device",
            &format!("d{n}"),
            "--weight",
            "1",
        ]);
    }
    let ring = dir.path().join("r");
    let reason = fails(&["ring", "rebalance", b, "--ring", ring.to_str().unwrap()]);
    assert!(reason.contains("cannot place 3 replicas"), "{reason}");
    assert!(!ring.exists(), "no ring file from a failed rebalance");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn validate_names_what_is_wrong_with_a_ring_file() {
    let c = cluster();
    let good = std::fs::read(&c.ring).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        fails(&["ring", "validate", p.to_str().unwrap()])
    };
    assert!(check("truncated", &good[..good.len() / 2]).contains("truncated"));
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x10;
    assert!(check("flipped", &flipped).contains("checksum mismatch"));
    let mut version = good.clone();
    version[8] = 9;
    assert!(check("version", &version).contains("unsupported ring file version 9"));
    assert!(check("other", b"this is not a ring").contains("bad magic"));
    assert!(check("builder", &std::fs::read(&c.builder).unwrap()).contains("bad magic"));
}

#[test]
fn equal_builders_write_byte_identical_rings() {
    let dir = tempfile::tempdir().unwrap();
    let mut rings = Vec::new();
    for copy in ["a", "b"] {
        let b = dir.path().join(format!("{copy}.builder"));
        let r = dir.path().join(format!("{copy}.ring"));
        let (b, r) = (b.to_str().unwrap(), r.to_str().unwrap());
        ok(&[
            "ring",
            "create",
            b,
            "--part-power",
            "8",
            "--replicas",
            "2",
            "--min-part-hours",
            "0",
            "--hash-path-prefix",
            "shared-prefix",
            "--hash-path-suffix",
            "shared-suffix",
        ]);
        for zone in 1..=3 {
            ok(&[
                "ring",
                "add",
                b,
                "--region",
                "1",
                "--zone",
                &zone.to_string(),
                "--ip",
                "10.0.0.1",
                "--port",
                "6200",
                "--device",
                &format!("z{zone}"),
                "--weight",
                "50",
            ]);
        }
        ok(&["ring", "rebalance", b, "--ring", r, "--seed", "42"]);
        rings.push(std::fs::read(r).unwrap());
    }
    assert_eq!(rings[0], rings[1]);
}

#[test]
fn draining_and_removing_through_the_cli() {
    let c = cluster();
    ok(&["ring", "set-weight", c.b(), "4", "0"]);
    ok(&["ring", "remove", c.b(), "7"]);
    let report: Value = serde_json::from_str(&ok(&[
        "ring",
        "rebalance",
        c.b(),
        "--ring",
        c.r(),
        "--json",
    ]))
    .unwrap();
    // Removal ignores min_part_hours; the drain waits for it (all partitions moved at creation).
    assert!(report["moved"].as_u64().unwrap() > 0);
    let ring = Ring::load(&c.ring).unwrap();
    assert!(
        ring.device(7).is_none(),
        "removed device is gone from the ring"
    );
    assert!(
        ring.device(4).is_some(),
        "drained device stays, with weight 0"
    );
    let on_removed = (0..1024u32)
        .flat_map(|p| ring.primaries(p).map(|d| d.id).collect::<Vec<_>>())
        .filter(|&id| id == 7)
        .count();
    assert_eq!(on_removed, 0);
}
