//! Slow: a real Linux guest. Debian's kernel (`linux-image-amd64`) and
//! `busybox-static` are packed by this test into a bootable disk (MBR with
//! syslinux, one FAT partition holding the kernel, an initramfs whose init
//! prints a line on the serial console and powers off), uploaded to the
//! registry and launched through the compute API under software emulation.
//! It stays in the test command; it takes tens of seconds.

mod common;
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
mkdir -p root/bin
cp /bin/busybox root/bin/busybox
cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
exec >/dev/ttyS0 2>&1
echo "{marker} $(/bin/busybox uname -sr)"
/bin/busybox poweroff -f
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
fn slow_a_linux_guest_boots_and_prints_on_its_console() {
    let c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let dir = tempfile::tempdir().unwrap();
    let disk = linux_disk(dir.path(), "NUBO-LINUX-UP");
    let image = upload_image(&g, "debian-busybox", "raw", &std::fs::read(disk).unwrap());
    let id = nova.create("linux", &image, "1", json!({}));
    nova.wait_console(&id, "NUBO-LINUX-UP Linux", 1, Duration::from_secs(300));
    let out = nova.console(&id);
    let line = out.lines().find(|l| l.contains("NUBO-LINUX-UP")).unwrap();
    assert!(
        line.contains("-amd64"),
        "the Debian kernel printed {line:?}"
    );
    // Its init powers the guest off: the API learns it from the host.
    nova.wait_status(&id, &["SHUTOFF"], Duration::from_secs(120));
    nova.delete(&id);
    nova.wait_gone(&id, Duration::from_secs(60));
}
