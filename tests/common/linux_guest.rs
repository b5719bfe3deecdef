//! A real Linux guest for the slow compute tests: Debian's kernel
//! (`linux-image-amd64`) and `busybox-static` packed into a bootable disk
//! (MBR with syslinux, one FAT partition holding the kernel, an initramfs
//! whose init prints a line on the serial console, reads its config drive
//! as cloud-init would and prints what it found, takes an address by DHCP
//! where it has an interface and asks the metadata service (169.254.169.254)
//! what it read from the drive, then powers off). Its user data may order
//! `PING <address>` (printed `PING-OK`/`PING-FAIL`), `STAY <seconds>`,
//! `SHELL` (a shell on the serial console, `SHELL-READY` printed) and
//! `SSH` (the metadata service's key made root's, Debian's dropbear
//! started on port 22, `SSH-READY` printed).

use std::path::Path;
use std::process::Command;

/// Builds the disk in `dir`; its path. No mounting: sfdisk writes the
/// partition table, mkfs.fat and mtools work on the image at an offset,
/// and syslinux installs itself the same way.
pub fn linux_disk(dir: &Path, marker: &str) -> std::path::PathBuf {
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
mkdir -p root/bin root/modules root/mnt root/etc root/root
cp /bin/busybox root/bin/busybox
# dropbear (Debian's dropbear-bin) with the libraries it links, for SSH.
mkdir -p root/sbin
cp /usr/sbin/dropbear root/sbin/dropbear
for lib in $(ldd /usr/sbin/dropbear | grep -o '/[^ ]*'); do
  mkdir -p "root$(dirname "$lib")"
  cp -L "$lib" "root$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > root/etc/passwd
printf '/bin/sh\n' > root/etc/shells
# The kernel's own modules for virtio disks, VFAT and virtio-net (Debian
# builds them as modules), loaded by the init in the order of modules.dep:
# each after what it needs.
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk fat vfat nls_cp437 nls_ascii failover net_failover virtio_net"
MODDIR=/lib/modules/$(basename "$KERNEL" | sed 's/^vmlinuz-//')
for m in $MODULES; do cp "$(find "$MODDIR" -name "$m.ko")" root/modules/; done
# What udhcpc runs with the lease: the address on the interface, as
# cloud-init's DHCP would leave it.
cat > root/bin/dhcp-script <<'SCRIPT'
#!/bin/busybox sh
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && route add default gw "$router"
    echo "DHCP-BOUND $ip" ;;
esac
SCRIPT
chmod 755 root/bin/dhcp-script
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
  # Test orders in the user data: ping an address, stay up a while.
  peer=\$(sed -n 's/^PING //p' /mnt/openstack/latest/user_data)
  stay=\$(sed -n 's/^STAY //p' /mnt/openstack/latest/user_data)
  shell=\$(grep -x SHELL /mnt/openstack/latest/user_data)
  ssh=\$(grep -x SSH /mnt/openstack/latest/user_data)
else
  echo "DRIVE-MISSING"
fi
echo "DRIVE-END"
# An interface: its address by DHCP, as a cloud image gets it.
if [ -e /sys/class/net/eth0 ]; then
  ip link set lo up
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 20 -T 2 -s /bin/dhcp-script || echo "DHCP-FAILED"
  echo "NET-UP \$(cat /sys/class/net/eth0/address)"
  # What cloud-init's OpenStack and EC2 sources ask the metadata service
  # (by nc: busybox-static's wget crashes in its resolver).
  get() {{
    # stdin held open a moment: busybox nc may stop reading at its EOF.
    r=\$( (printf 'GET %s HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' "\$1"; sleep 1) | nc -w 5 169.254.169.254 80 | tr -d '\r')
    case "\$r" in
      "HTTP/1."[01]" 200"*) echo "\$r" | sed '1,/^\$/d' ;;
      *) echo none ;;
    esac
  }}
  echo "MD-META \$(get /openstack/latest/meta_data.json)"
  echo "MD-IP \$(get /latest/meta-data/local-ipv4)"
  echo "MD-KEY \$(get /latest/meta-data/public-keys/0/openssh-key)"
  echo "MD-USER \$(get /latest/user-data | head -n 1)"
  # What cloud-init does with the key: root's authorized key; then sshd.
  if [ -n "\$ssh" ]; then
    mkdir -p /root/.ssh /etc/dropbear /dev/pts
    mount -t devpts devpts /dev/pts
    get /latest/meta-data/public-keys/0/openssh-key > /root/.ssh/authorized_keys
    chmod 700 /root /root/.ssh
    chmod 600 /root/.ssh/authorized_keys
    /sbin/dropbear -R -p 22 && echo "SSH-READY"
  fi
  if [ -n "\$peer" ]; then
    if ping -c 3 -W 3 "\$peer" >/dev/null; then echo "PING-OK \$peer"; else echo "PING-FAIL \$peer"; fi
  fi
  [ -n "\$stay" ] && sleep "\$stay"
fi
# A shell on the serial console (the interactive console's test types
# into it); the guest powers off when it ends.
if [ -n "\$shell" ]; then
  echo "SHELL-READY"
  sh -i </dev/ttyS0 >/dev/ttyS0 2>&1
fi
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
    super::run_ok(
        Command::new("bash")
            .args(["-c", &script])
            .env("DIR", dir)
            .env("KERNEL", &kernel),
    );
    dir.join("disk.img")
}

/// Pipes `input` into `nubo server console`, which sends it and ends once
/// the guest has been quiet for 5 s; what the guest printed.
pub fn type_into_console(c: &super::Cluster, id: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = c
        .nubo_server()
        .args(["console", id, "--quiet-secs", "5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nubo server console: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the guest `from` reaches `address` by ping, asked through its
/// serial console (the guest's user data said `SHELL`). The answer's
/// marker is computed by the guest's shell, so the echo of the command
/// line itself never matches.
pub fn reaches(c: &super::Cluster, from: &str, address: &str) -> bool {
    for _ in 0..3 {
        let out = type_into_console(
            c,
            from,
            &format!(
                "ping -c 1 -W 3 {address} >/dev/null 2>&1 && echo REACH-$((40+2)) || echo FAIL-$((40+2))\n"
            ),
        );
        if out.contains("REACH-42") {
            return true;
        }
        if out.contains("FAIL-42") {
            return false;
        }
    }
    panic!("the guest {from} did not answer on its console");
}
