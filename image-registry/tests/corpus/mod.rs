//! The hostile corpus, built with qemu-img, tar and byte patches: one case
//! per check of image-safety.md, each with the disk and container format a
//! client would declare and the reason it must be refused with. Shared by
//! the inspector's tests and the registry's API tests
//! (`#[path = ...] mod corpus;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Case {
    pub file: PathBuf,
    pub disk_format: &'static str,
    pub container_format: &'static str,
    /// The refusal's message contains this.
    pub reason: &'static str,
}

pub fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const OVF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="file1" ovf:href="disk.vmdk"/></References>
  <DiskSection><Info>disks</Info><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="4194304"/></DiskSection>
  <VirtualSystem ovf:id="tiny-vm">
    <OperatingSystemSection ovf:id="96"><Description>Debian GNU/Linux 12</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#;

/// A tar made with Python's tarfile (USTAR): members (name in the archive,
/// file under `dir`, or `None` for a symlink to /etc/passwd).
pub fn tar(dir: &Path, out: &str, members: &[(&str, Option<&str>)]) {
    let list: Vec<String> = members
        .iter()
        .map(|(name, file)| match file {
            Some(f) => format!("('{name}', '{}')", dir.join(f).display()),
            None => format!("('{name}', None)"),
        })
        .collect();
    let script = format!(
        "import tarfile\nwith tarfile.open('{}', 'w', format=tarfile.USTAR_FORMAT) as t:\n  for name, path in [{}]:\n    if path is None:\n      i = tarfile.TarInfo(name); i.type = tarfile.SYMTYPE; i.linkname = '/etc/passwd'; t.addfile(i)\n    else:\n      t.add(path, arcname=name)\n",
        dir.join(out).display(),
        list.join(", ")
    );
    assert!(Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success());
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present")
}

/// Replaces `from` (same length as `to`) inside a file.
fn replace_in(path: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut img = std::fs::read(path).unwrap();
    let at = find(&img, from);
    img[at..at + to.len()].copy_from_slice(to);
    std::fs::write(path, &img).unwrap();
}

/// `out`: a qcow2 whose backing file is `backing` (which need not exist),
/// 1 MiB virtual: the classic hostile image.
pub fn qcow2_with_backing_file(out: &Path, backing: &str) {
    let out = out.to_string_lossy();
    qemu_img(&[
        "create", "-q", "-u", "-f", "qcow2", "-b", backing, "-F", "raw", &out, "1M",
    ]);
}

/// Builds every case under `dir`.
pub fn build(dir: &Path) -> Vec<Case> {
    let p = |n: &str| dir.join(n);
    let s = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(p("source.raw"), data).unwrap();
    let mut cases = Vec::new();
    let mut case = |file: &str, disk_format, container_format, reason| {
        cases.push(Case {
            file: p(file),
            disk_format,
            container_format,
            reason,
        })
    };

    // 1. qcow2 with a backing file.
    qcow2_with_backing_file(&p("backing.qcow2"), &s("source.raw"));
    case(
        "backing.qcow2",
        "qcow2",
        "bare",
        "qcow2 image has a backing file: rejected",
    );
    // 2. qcow2 with an external data file, an unknown incompatible feature, version 4.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", s("data.bin")),
        &s("datafile.qcow2"),
        "16M",
    ]);
    case(
        "datafile.qcow2",
        "qcow2",
        "bare",
        "qcow2 image has an external data file: rejected",
    );
    qemu_img(&["create", "-q", "-f", "qcow2", &s("feature.qcow2"), "16M"]);
    patch(&p("feature.qcow2"), 72, &(1u64 << 40).to_be_bytes());
    case(
        "feature.qcow2",
        "qcow2",
        "bare",
        "unknown incompatible features",
    );
    qemu_img(&["create", "-q", "-f", "qcow2", &s("v4.qcow2"), "16M"]);
    patch(&p("v4.qcow2"), 4, &4u32.to_be_bytes());
    case("v4.qcow2", "qcow2", "bare", "version 4");
    // 3. qed.
    qemu_img(&["create", "-q", "-f", "qed", &s("a.qed"), "16M"]);
    case(
        "a.qed",
        "raw",
        "bare",
        "qed image is not accepted: rejected",
    );
    // 4. vmdk: an extent naming a host file (CVE-2022-47951), a parent, a
    // descriptor file on its own, a split image.
    qemu_img(&["create", "-q", "-f", "vmdk", &s("evil.vmdk"), "16M"]);
    replace_in(&p("evil.vmdk"), b"\"evil.vmdk\"", b"\"/dev/sda1\"");
    case(
        "evil.vmdk",
        "vmdk",
        "bare",
        "vmdk image has an extent naming another file: \"/dev/sda1\": rejected",
    );
    qemu_img(&["create", "-q", "-f", "vmdk", &s("parent.vmdk"), "16M"]);
    replace_in(
        &p("parent.vmdk"),
        b"parentCID=ffffffff",
        b"parentCID=1234abcd",
    );
    case(
        "parent.vmdk",
        "vmdk",
        "bare",
        "vmdk image has a backing file (parentCID): rejected",
    );
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        &s("flat.vmdk"),
        "16M",
    ]);
    case(
        "flat.vmdk",
        "vmdk",
        "bare",
        "vmdk image is a descriptor file whose extents are other files: rejected",
    );
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentSparse",
        &s("split.vmdk"),
        "16M",
    ]);
    case("split.vmdk", "vmdk", "bare", "descriptor file");
    // 5. streamOptimized with a broken end-of-stream marker.
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        &s("source.raw"),
        &s("eos.vmdk"),
    ]);
    let len = std::fs::metadata(p("eos.vmdk")).unwrap().len();
    patch(&p("eos.vmdk"), len - 100, b"\x07");
    case(
        "eos.vmdk",
        "vmdk",
        "bare",
        "vmdk image has a malformed end-of-stream marker: rejected",
    );
    // 6. vhdx with too many region entries.
    qemu_img(&["create", "-q", "-f", "vhdx", &s("regions.vhdx"), "16M"]);
    for table in [192u64 << 10, 256 << 10] {
        patch(&p("regions.vhdx"), table + 8, &5000u32.to_le_bytes());
    }
    case(
        "regions.vhdx",
        "vhdx",
        "bare",
        "vhdx image has 5000 region entries (at most 2048): rejected",
    );
    // 7. Raw images with a bad MBR boot flag, and a protective GPT entry
    // beside another partition.
    let mut mbr = vec![0u8; 1 << 20];
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr[446] = 0x33;
    mbr[450] = 0x83;
    std::fs::write(p("bootflag.raw"), &mbr).unwrap();
    case(
        "bootflag.raw",
        "raw",
        "bare",
        "raw image has an MBR entry with an invalid boot flag 0x33: rejected",
    );
    mbr[446] = 0;
    mbr[450] = 0xEE;
    mbr[454..458].copy_from_slice(&1u32.to_le_bytes());
    mbr[466] = 0x83;
    std::fs::write(p("gpt.raw"), &mbr).unwrap();
    case(
        "gpt.raw",
        "raw",
        "bare",
        "raw image has a protective GPT entry beside other MBR entries: rejected",
    );
    // 8. Declared raw, is qcow2.
    qemu_img(&["create", "-q", "-f", "qcow2", &s("liar.qcow2"), "16M"]);
    case(
        "liar.qcow2",
        "raw",
        "bare",
        "image was declared raw but is qcow2: rejected",
    );
    // A polyglot: a qcow2 that also ends in a VHD footer.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed",
        &s("tail.vhd"),
        "1M",
    ]);
    let tail = std::fs::read(p("tail.vhd")).unwrap();
    let mut poly = std::fs::read(p("liar.qcow2")).unwrap();
    poly.extend_from_slice(&tail[tail.len() - 512..]);
    std::fs::write(p("poly.img"), poly).unwrap();
    case(
        "poly.img",
        "qcow2",
        "bare",
        "image matches several formats (qcow2, vhd): rejected",
    );
    // 11. Shorter than its header claims; a virtual size over the limit.
    let whole = std::fs::read(p("liar.qcow2")).unwrap();
    std::fs::write(p("short.qcow2"), &whole[..whole.len() / 2]).unwrap();
    case(
        "short.qcow2",
        "qcow2",
        "bare",
        "qcow2 image is shorter than its header claims",
    );
    qemu_img(&["create", "-q", "-f", "qcow2", &s("huge.qcow2"), "2T"]);
    case("huge.qcow2", "qcow2", "bare", "over the limit");
    // 12. OVA: traversal, a link, a descriptor with a DTD, two disks, a
    // stray member, and a hostile disk inside.
    std::fs::write(p("tiny.ovf"), OVF).unwrap();
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        &s("source.raw"),
        &s("disk.vmdk"),
    ]);
    tar(
        dir,
        "traversal.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("../disk.vmdk", Some("disk.vmdk")),
        ],
    );
    case(
        "traversal.ova",
        "vmdk",
        "ova",
        "ova image has a member with an unsafe path: \"../disk.vmdk\": rejected",
    );
    tar(
        dir,
        "link.ova",
        &[("tiny.ovf", Some("tiny.ovf")), ("disk.vmdk", None)],
    );
    case(
        "link.ova",
        "vmdk",
        "ova",
        "ova image has a member that is not a plain file: \"disk.vmdk\": rejected",
    );
    let bomb = OVF.replacen(
        "<Envelope",
        "<!DOCTYPE Envelope [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\n<Envelope",
        1,
    );
    std::fs::write(p("bomb.ovf"), bomb).unwrap();
    tar(
        dir,
        "bomb.ova",
        &[
            ("bomb.ovf", Some("bomb.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
        ],
    );
    case("bomb.ova", "vmdk", "ova", "not well-formed XML");
    std::fs::write(
        p("two.ovf"),
        OVF.replace(
            "</DiskSection>",
            "<Disk ovf:diskId=\"d2\" ovf:fileRef=\"file1\"/></DiskSection>",
        ),
    )
    .unwrap();
    tar(
        dir,
        "two.ova",
        &[
            ("two.ovf", Some("two.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
        ],
    );
    case(
        "two.ova",
        "vmdk",
        "ova",
        "ova image has more than one disk: rejected",
    );
    tar(
        dir,
        "stray.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
            ("run.sh", Some("tiny.ovf")),
        ],
    );
    case(
        "stray.ova",
        "vmdk",
        "ova",
        "ova image has a member the descriptor does not name: \"run.sh\": rejected",
    );
    std::fs::copy(p("backing.qcow2"), p("inner-disk.vmdk")).unwrap();
    tar(
        dir,
        "inner.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("disk.vmdk", Some("inner-disk.vmdk")),
        ],
    );
    case(
        "inner.ova",
        "vmdk",
        "ova",
        "qcow2 image has a backing file: rejected",
    );
    cases
}
