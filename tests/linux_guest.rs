//! Slow: a real Linux guest. Debian's kernel (`linux-image-amd64`) and
//! `busybox-static` are packed by this test into a bootable disk (MBR with
//! syslinux, one FAT partition holding the kernel, an initramfs whose init
//! prints a line on the serial console, reads its config drive as
//! cloud-init would, prints what it found and powers off), uploaded to the
//! registry and launched through the compute API under software emulation.
//! It stays in the test command; it takes tens of seconds.

mod common;
use base64::Engine;
use common::glance::Glance;
use common::nova::{upload_image, Nova};
use common::Cluster;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Builds the disk in `dir`; its path. No mounting: sfdisk writes the
/// partition table, mkfs.fat and mtools work on the image at an offset,
/// and syslinux installs itself the same way.
fn linux_disk(dir: &Path, marker: &str) -> std::path::PathBuf {
    let kernel = std::fs::read_dir("/boot")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("a Debian kernel in /boot (linux-image-amd64; the test command installs it)");
    let script = format!(
        r#"set -euo pipefail
cd "$DIR"
mkdir -p root/bin root/modules root/mnt
cp /bin/busybox root/bin/busybox
# The kernel's own modules for virtio disks and VFAT (Debian builds them
# as modules), loaded by the init in the order of modules.dep: each after
# what it needs.
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk fat vfat nls_cp437 nls_ascii"
MODDIR=/lib/modules/$(basename "$KERNEL" | sed 's/^vmlinuz-//')
for m in $MODULES; do cp "$(find "$MODDIR" -name "$m.ko")" root/modules/; done
cat > root/init <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /dev /sys
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec >/dev/ttyS0 2>&1
echo "{marker} \$(uname -sr)"
for m in $MODULES; do insmod /modules/\$m.ko; done
# What cloud-init's ConfigDrive source does: find the volume by its label.
for i in 1 2 3 4 5 6 7 8 9 10; do dev=\$(findfs LABEL=config-2) && break; sleep 1; done
if [ -n "\$dev" ] && mount -t vfat -o ro "\$dev" /mnt; then
  echo "DRIVE-META \$(cat /mnt/openstack/latest/meta_data.json)"
  echo "DRIVE-EC2 \$(cat /mnt/ec2/latest/meta-data.json)"
  echo "DRIVE-USER \$(cat /mnt/openstack/latest/user_data)"
else
  echo "DRIVE-MISSING"
fi
echo "DRIVE-END"
poweroff -f
INIT
chmod 755 root/init
(cd root && find . | cpio -o -H newc --quiet | gzip -1 > ../initrd.gz)
cp "$KERNEL" vmlinuz
printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL vmlinuz\n  APPEND initrd=initrd.gz console=ttyS0 quiet panic=-1\n' > syslinux.cfg
truncate -s 64M disk.img
printf 'label: dos\nstart=2048, type=c, bootable\n' | sfdisk -q disk.img
dd if=/usr/lib/syslinux/mbr/mbr.bin of=disk.img conv=notrunc bs=440 count=1 status=none
mkfs.fat --offset 2048 -n NUBO disk.img $((64 * 1024 - 1024)) > /dev/null
mcopy -i disk.img@@1M vmlinuz initrd.gz syslinux.cfg ::/
syslinux --offset 1048576 --install disk.img
"#
    );
    common::run_ok(
        Command::new("bash")
            .args(["-c", &script])
            .env("DIR", dir)
            .env("KERNEL", &kernel),
    );
    dir.join("disk.img")
}

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
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| {
                l.trim_end_matches('\r')
                    .split_once(prefix)
                    .map(|(_, r)| r.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {prefix:?} line on the console:\n{out}"))
    };
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
