//! The driver suite, run against every driver this host has (so far the
//! `qemu` driver; software emulation): an instance boots from an overlay on
//! a base, its console shows the guest's marker, it can be listed, stopped
//! and destroyed, and nothing of it is left.

use compute::boot_disk::{idle_marker_disk, marker_disk};
use compute::driver::libvirt::LibvirtDriver;
use compute::driver::qemu::QemuDriver;
use compute::driver::{console_tail, Driver, InstanceSpec, PowerState};
use compute::overlay;
use image_registry::inspect::DiskFormat;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spec(dir: &Path, name: &str, base: &Path) -> InstanceSpec {
    let disk = dir.join(format!("{name}.qcow2"));
    overlay::create(base, DiskFormat::Raw, &disk, 1 << 30).unwrap();
    InstanceSpec {
        name: name.into(),
        vcpus: 1,
        ram_mb: 64,
        disk,
        console_log: dir.join(format!("{name}.log")),
        console_socket: Some(dir.join(format!("{name}.sock"))),
        config_drive: None,
        nics: Vec::new(),
    }
}

fn suite(driver: &dyn Driver, dir: &Path, prefix: &str) {
    // A guest that prints and stays up: running, then stopped, then gone.
    let base = dir.join("idle.raw");
    std::fs::write(&base, idle_marker_disk("NUBO-IDLE-UP", 1 << 20)).unwrap();
    let base_bytes = std::fs::read(&base).unwrap();
    let s = spec(dir, &format!("{prefix}idle-1"), &base);
    driver.launch(&s).unwrap();
    assert!(matches!(
        driver.launch(&s),
        Err(compute::driver::DriverError::Exists(_))
    ));
    wait_for("the marker", Duration::from_secs(30), || {
        String::from_utf8_lossy(&console_tail(&s.console_log, 100 << 10).unwrap())
            .contains("NUBO-IDLE-UP")
    });
    assert_eq!(
        driver.state(&format!("{prefix}idle-1")).unwrap(),
        PowerState::Running
    );
    assert_eq!(driver.list().unwrap(), [format!("{prefix}idle-1")]);
    // The interactive console's socket listens while the guest runs.
    let socket = s.console_socket.clone().unwrap();
    std::os::unix::net::UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("the console socket {}: {e}", socket.display()));
    let stats = driver.stats(&format!("{prefix}idle-1")).unwrap();
    assert_eq!(stats.memory_max_kib, 64 * 1024);
    assert!(stats.cpu_time_ns > 0, "{stats:?}");
    assert!(
        stats.disk_read_bytes >= 512,
        "the BIOS read the boot sector: {stats:?}"
    );
    driver.stop(&format!("{prefix}idle-1")).unwrap();
    assert_eq!(
        driver.state(&format!("{prefix}idle-1")).unwrap(),
        PowerState::Shutoff
    );
    // Stopped, it is still known; started again, it boots again.
    assert_eq!(driver.list().unwrap(), [format!("{prefix}idle-1")]);
    driver.start(&format!("{prefix}idle-1")).unwrap();
    wait_for("the marker a second time", Duration::from_secs(30), || {
        String::from_utf8_lossy(&console_tail(&s.console_log, 100 << 10).unwrap())
            .matches("NUBO-IDLE-UP")
            .count()
            >= 2
    });
    assert_eq!(
        driver.state(&format!("{prefix}idle-1")).unwrap(),
        PowerState::Running
    );
    driver.destroy(&format!("{prefix}idle-1")).unwrap();
    assert!(driver.list().unwrap().is_empty());
    assert!(driver.state(&format!("{prefix}idle-1")).is_err());
    // A guest that powers itself off: it ends Shutoff on its own.
    let base2 = dir.join("off.raw");
    std::fs::write(&base2, marker_disk("NUBO-POWER-OFF", 1 << 20)).unwrap();
    let s2 = spec(dir, &format!("{prefix}off-1"), &base2);
    driver.launch(&s2).unwrap();
    wait_for("the guest to power off", Duration::from_secs(30), || {
        driver.state(&format!("{prefix}off-1")).unwrap() == PowerState::Shutoff
    });
    assert!(
        String::from_utf8_lossy(&console_tail(&s2.console_log, 1 << 20).unwrap())
            .contains("NUBO-POWER-OFF")
    );
    assert_eq!(driver.list().unwrap(), [format!("{prefix}off-1")]);
    driver.destroy(&format!("{prefix}off-1")).unwrap();
    // The bases are untouched: every write went to the overlays.
    assert_eq!(std::fs::read(&base).unwrap(), base_bytes);
    assert!(driver.list().unwrap().is_empty());
    // No QEMU of ours is left.
    let ours = std::process::Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ours.stdout).trim().is_empty(),
        "leftover processes"
    );
}

#[test]
fn the_qemu_driver_passes_the_driver_suite() {
    let dir = tempfile::tempdir().unwrap();
    let driver = QemuDriver::new(&dir.path().join("state"), false).unwrap();
    suite(&driver, dir.path(), "");
}

#[test]
fn the_libvirt_driver_passes_the_driver_suite() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("nubo-test-{}-", std::process::id());
    let driver = LibvirtDriver::new("qemu:///system", false, &prefix)
        .expect("a libvirt daemon answers at qemu:///system (the test command starts one)");
    suite(&driver, dir.path(), &prefix);
}
