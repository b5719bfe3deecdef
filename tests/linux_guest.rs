//! Slow: a real Linux guest. Debian's kernel (`linux-image-amd64`) and
//! `busybox-static` are packed into a bootable disk (`common::linux_guest`:
//! syslinux, an initramfs whose init
//! prints a line on the serial console, reads its config drive as
//! cloud-init would, prints what it found and powers off), uploaded to the
//! registry and launched through the compute API under software emulation.
//! It stays in the test command; it takes tens of seconds.

mod common;
use base64::Engine;
use common::glance::Glance;
use common::linux_guest::linux_disk;
use common::nova::{upload_image, Nova};
use common::Cluster;
use serde_json::json;
use std::time::Duration;

#[test]
fn slow_a_linux_guest_on_libvirt_reads_its_key_and_user_data_from_the_config_drive() {
    guest_reads_its_config_drive("libvirt");
}

/// The QEMU driver attaches the drive by its own command line.
#[test]
fn slow_a_linux_guest_on_qemu_reads_its_key_and_user_data_from_the_config_drive() {
    guest_reads_its_config_drive("qemu");
}

fn guest_reads_its_config_drive(driver: &str) {
    let c = Cluster::start_with(1, &["--compute-driver", driver]);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let dir = tempfile::tempdir().unwrap();
    let disk = linux_disk(dir.path(), "NUBO-LINUX-UP");
    let image = upload_image(&g, "debian-busybox", "raw", &std::fs::read(disk).unwrap());
    let (st, made) = nova.call(
        "POST",
        "/os-keypairs",
        Some(json!({"keypair": {"name": "guest-key"}})),
    );
    assert_eq!(st, 200, "{made}");
    let public_key = made["keypair"]["public_key"].as_str().unwrap().to_string();
    let user_data = "#cloud-config\nruncmd: [echo from-user-data]";
    let id = nova.create(
        "Linux Guest",
        &image,
        "1",
        json!({
            "key_name": "guest-key",
            "user_data": base64::engine::general_purpose::STANDARD.encode(user_data),
            "metadata": {"role": "test"},
        }),
    );
    let shown = nova.show(&id);
    assert_eq!(shown["key_name"], "guest-key", "{shown}");
    assert_eq!(shown["config_drive"], "True", "{shown}");
    nova.wait_console(&id, "DRIVE-END", 1, Duration::from_secs(300));
    let out = nova.console(&id);
    let line = |prefix: &str| nova.console_line(&id, prefix);
    let up = line("NUBO-LINUX-UP");
    assert!(up.contains("-amd64"), "the Debian kernel printed {up:?}");
    assert!(!out.contains("DRIVE-MISSING"), "no config drive:\n{out}");
    let meta: serde_json::Value = serde_json::from_str(&line("DRIVE-META")).unwrap();
    assert_eq!(meta["uuid"], id.as_str());
    assert_eq!(meta["name"], "Linux Guest");
    assert_eq!(meta["hostname"], "linux-guest");
    assert_eq!(meta["public_keys"]["guest-key"], public_key.as_str());
    assert_eq!(meta["meta"]["role"], "test");
    let ec2: serde_json::Value = serde_json::from_str(&line("DRIVE-EC2")).unwrap();
    assert_eq!(ec2["public-keys"]["0"]["openssh-key"], public_key.as_str());
    // `cat` of a file with a line break: the console shows its first line
    // after the prefix and the rest on the next.
    assert_eq!(line("DRIVE-USER"), "#cloud-config");
    assert!(out.contains("runcmd: [echo from-user-data]"), "{out}");
    // Its init powers the guest off: the API learns it from the host.
    nova.wait_status(&id, &["SHUTOFF"], Duration::from_secs(120));
    nova.delete(&id);
    nova.wait_gone(&id, Duration::from_secs(60));
}
