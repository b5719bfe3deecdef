//! The generated boot disk really boots: QEMU (software emulation) runs it,
//! the marker appears on the serial console, and the guest powers itself
//! off. Needs `qemu-system-x86_64` (the test command installs it).

use compute::boot_disk::marker_disk;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_marker_disk_boots_prints_and_powers_off() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    let console = dir.path().join("console.log");
    std::fs::write(&disk, marker_disk("NUBO-BOOT-OK", 1 << 20)).unwrap();
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "accel=tcg",
            "-m",
            "32",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .spawn()
        .expect("qemu-system-x86_64 runs");
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the guest did not power off within 60 s; console: {:?}",
                std::fs::read_to_string(&console)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&console).unwrap();
    assert!(out.contains("NUBO-BOOT-OK"), "console: {out:?}");
    assert!(status.success(), "{status}");
    eprintln!("booted, printed and powered off in {:?}", started.elapsed());
}
