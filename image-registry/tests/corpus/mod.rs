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
    /// Only qemu-img's side of the verdict can see it (the pure inspector
    /// passes it; `qemu-img measure` does not).
    pub needs_qemu: bool,
}

/// An image that real tools make and that every path must accept.
pub struct Good {
    pub file: PathBuf,
    pub disk_format: &'static str,
    pub container_format: &'static str,
    /// What `qemu-img info` says.
    pub virtual_size: u64,
}

/// Runs a command to its end; panics with its stderr unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn qemu_img(args: &[&str]) {
    run_ok(Command::new("qemu-img").args(args));
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

/// Raw `src` as a streamOptimized VMDK (an OVA's disk) at `dst`.
pub fn stream_optimized(src: &str, dst: &str) {
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        src,
        dst,
    ]);
}

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
            needs_qemu: false,
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
    stream_optimized(&s("source.raw"), &s("eos.vmdk"));
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
    stream_optimized(&s("source.raw"), &s("disk.vmdk"));
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
    // --- Read like qemu (issue 13): VMDK the way block/vmdk.c reads it.
    // Capacity 0: qemu parses the embedded descriptor as a descriptor
    // file, so its FLAT extent reads a host file (CVE-2022-47951 again).
    qemu_img(&["create", "-q", "-f", "vmdk", &s("capacity0.vmdk"), "16M"]);
    patch(&p("capacity0.vmdk"), 12, &0u64.to_le_bytes());
    set_descriptor(
        &p("capacity0.vmdk"),
        "# Disk DescriptorFile\nversion=1\nCID=6f5442d4\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/passwd\" 0\n",
    );
    case(
        "capacity0.vmdk",
        "vmdk",
        "bare",
        "vmdk image has a capacity of 0",
    );
    // A parent hint in a comment, and one in the sectors qemu reads while
    // the header points our reader at a clean descriptor elsewhere.
    qemu_img(&["create", "-q", "-f", "vmdk", &s("hint.vmdk"), "16M"]);
    let clean = descriptor_of(&p("hint.vmdk"));
    set_descriptor(
        &p("hint.vmdk"),
        &clean.replace(
            "# Extent description",
            "# parentFileNameHint=\"/etc/passwd\"",
        ),
    );
    case(
        "hint.vmdk",
        "vmdk",
        "bare",
        "vmdk image has a backing file (parentFileNameHint): rejected",
    );
    qemu_img(&["create", "-q", "-f", "vmdk", &s("elsewhere.vmdk"), "16M"]);
    let clean = descriptor_of(&p("elsewhere.vmdk"));
    let mut area =
        b"CID=fffffffe\nparentCID=ffffffff\nparentFileNameHint=\"/etc/passwd\"\n".to_vec();
    area.resize(1024, 0);
    area.extend_from_slice(clean.as_bytes());
    area.resize(10240, 0);
    patch(&p("elsewhere.vmdk"), 512, &area);
    patch(&p("elsewhere.vmdk"), 28, &3u64.to_le_bytes());
    patch(&p("elsewhere.vmdk"), 36, &18u64.to_le_bytes());
    case(
        "elsewhere.vmdk",
        "vmdk",
        "bare",
        "vmdk image has a backing file (parentFileNameHint): rejected",
    );
    // A monolithicSparse descriptor on a header qemu reads as streamOptimized.
    qemu_img(&["create", "-q", "-f", "vmdk", &s("ctype.vmdk"), "16M"]);
    patch(&p("ctype.vmdk"), 77, &1u16.to_le_bytes());
    case("ctype.vmdk", "vmdk", "bare", "as qemu reads it");
    // VMDK3 (COWD), which qemu still opens.
    let mut cowd = vec![0u8; 1 << 20];
    cowd[..4].copy_from_slice(b"COWD");
    std::fs::write(p("cowd.vmdk"), &cowd).unwrap();
    case("cowd.vmdk", "vmdk", "bare", "COWD");
    // A text descriptor that does not start "# Disk DescriptorFile",
    // declared raw: qemu's probe takes it as VMDK.
    std::fs::write(
        p("text.raw"),
        "version=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/passwd\" 0\n",
    )
    .unwrap();
    case(
        "text.raw",
        "raw",
        "bare",
        "vmdk image is a descriptor file whose extents are other files: rejected",
    );
    // The same text in an ISO's system area.
    let mut iso = iso_image(64, 64 * 2048);
    let text = b"version=1\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/passwd\" 0\n";
    iso[..text.len()].copy_from_slice(text);
    std::fs::write(p("system-area.iso"), &iso).unwrap();
    case(
        "system-area.iso",
        "iso",
        "bare",
        "image matches several formats (vmdk, iso): rejected",
    );
    // A format qemu probes that we never take, declared raw.
    let mut luks = vec![0u8; 1 << 20];
    luks[..6].copy_from_slice(b"LUKS\xba\xbe");
    std::fs::write(p("luks.raw"), &luks).unwrap();
    case(
        "luks.raw",
        "raw",
        "bare",
        "luks image is not accepted: rejected",
    );
    // --- Rule 11 in every format.
    // VHD: a copy at the start (what qemu reads) that differs from the end.
    qemu_img(&["create", "-q", "-f", "vpc", &s("copies.vhd"), "16M"]);
    let mut start = std::fs::read(p("copies.vhd")).unwrap()[..512].to_vec();
    start[48..56].copy_from_slice(&(1u64 << 40).to_be_bytes());
    seal_vhd_footer(&mut start);
    patch(&p("copies.vhd"), 0, &start);
    case(
        "copies.vhd",
        "vhd",
        "bare",
        "vhd image has a footer copy at its start that differs from its footer: rejected",
    );
    // qcow2: a snapshot table past the end of the file.
    qemu_img(&["create", "-q", "-f", "qcow2", &s("snapshots.qcow2"), "16M"]);
    patch(&p("snapshots.qcow2"), 60, &1u32.to_be_bytes());
    patch(&p("snapshots.qcow2"), 64, &(1u64 << 40).to_be_bytes());
    case(
        "snapshots.qcow2",
        "qcow2",
        "bare",
        "qcow2 image is shorter than its header claims",
    );
    // VDI: allocated blocks past the end of the file.
    qemu_img(&["create", "-q", "-f", "vdi", &s("blocks.vdi"), "16M"]);
    patch(&p("blocks.vdi"), 0x184, &16u32.to_le_bytes());
    case(
        "blocks.vdi",
        "vdi",
        "bare",
        "vdi image is shorter than its header claims",
    );
    // VHDX: a region (the first, whatever it is) past the end of the file.
    qemu_img(&["create", "-q", "-f", "vhdx", &s("region.vhdx"), "16M"]);
    for table in [192u64 << 10, 256 << 10] {
        patch(&p("region.vhdx"), table + 32, &(1u64 << 40).to_le_bytes());
    }
    case(
        "region.vhdx",
        "vhdx",
        "bare",
        "vhdx image is shorter than its header claims",
    );
    // --- OVA: two members of one name, a compressed disk, a huge PAX header.
    tar(
        dir,
        "twice.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
            ("disk.vmdk", Some("inner-disk.vmdk")),
        ],
    );
    case(
        "twice.ova",
        "vmdk",
        "ova",
        "ova image has two members named \"disk.vmdk\": rejected",
    );
    std::fs::write(
        p("gz.ovf"),
        OVF.replace(
            "ovf:href=\"disk.vmdk\"",
            "ovf:href=\"disk.vmdk\" ovf:compression=\"gzip\"",
        ),
    )
    .unwrap();
    tar(
        dir,
        "gz.ova",
        &[("gz.ovf", Some("gz.ovf")), ("disk.vmdk", Some("disk.vmdk"))],
    );
    case(
        "gz.ova",
        "vmdk",
        "ova",
        "ova image has a compressed disk (gzip): rejected",
    );
    let script = format!(
        "import tarfile\nwith tarfile.open('{}', 'w', format=tarfile.PAX_FORMAT) as t:\n  t.add('{}', arcname='tiny.ovf')\n  i = t.gettarinfo('{}', arcname='disk.vmdk'); i.pax_headers = {{'comment': 'x' * (1 << 20)}}\n  t.addfile(i, open('{}', 'rb'))\n",
        s("pax.ova"),
        s("tiny.ovf"),
        s("disk.vmdk"),
        s("disk.vmdk"),
    );
    assert!(Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success());
    case("pax.ova", "vmdk", "ova", "tar extension header");
    // --- Expansion: a 512 KiB qcow2 whose L2 tables all point at one
    // cluster converts to 1 GiB of data (and at 1 TiB would fill a disk).
    expanding_qcow2(&p("expands.qcow2"));
    cases.push(Case {
        file: p("expands.qcow2"),
        disk_format: "qcow2",
        container_format: "bare",
        reason: "once converted, more than the",
        needs_qemu: true,
    });
    cases
}

/// An ISO 9660 image of `blocks` 2048-byte blocks in its primary volume
/// descriptor, `len` bytes long (padding after the volume when longer).
pub fn iso_image(blocks: u32, len: usize) -> Vec<u8> {
    let mut iso = vec![0u8; len];
    let pvd = &mut iso[32768..32768 + 2048];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[80..84].copy_from_slice(&blocks.to_le_bytes());
    pvd[84..88].copy_from_slice(&blocks.to_be_bytes());
    pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
    pvd[130..132].copy_from_slice(&2048u16.to_be_bytes());
    iso[34816] = 255;
    iso[34817..34822].copy_from_slice(b"CD001");
    iso
}

/// The embedded descriptor of a sparse VMDK made by qemu-img (at 512).
fn descriptor_of(path: &Path) -> String {
    let img = std::fs::read(path).unwrap();
    let area = &img[512..512 + 10240];
    let end = area.iter().position(|b| *b == 0).unwrap();
    String::from_utf8(area[..end].to_vec()).unwrap()
}

/// Replaces the embedded descriptor (20 sectors at 512) of a qemu-made VMDK.
fn set_descriptor(path: &Path, text: &str) {
    let mut area = text.as_bytes().to_vec();
    area.resize(10240, 0);
    patch(path, 512, &area);
}

/// Recomputes a VHD footer's checksum.
fn seal_vhd_footer(footer: &mut [u8]) {
    footer[64..68].fill(0);
    let sum = footer
        .iter()
        .fold(0u32, |a, b| a.wrapping_add(u32::from(*b)));
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
}

/// A 1 GiB qcow2 with two data clusters, every L2 entry then pointed at
/// the first data cluster of its table.
pub fn expanding_qcow2(out: &Path) {
    let o = out.to_string_lossy();
    qemu_img(&["create", "-q", "-f", "qcow2", &o, "1G"]);
    run_ok(
        Command::new("qemu-io")
            .args([
                "-f",
                "qcow2",
                "-c",
                "write -P 0x5a 0 64k",
                "-c",
                "write -P 0x5a 512M 64k",
            ])
            .arg(out),
    );
    let mut img = std::fs::read(out).unwrap();
    let be64 = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let l1_entries = u32::from_be_bytes(img[36..40].try_into().unwrap()) as usize;
    let l1 = be64(&img, 40) as usize;
    for i in 0..l1_entries {
        let l2 = (be64(&img, l1 + 8 * i) & 0x00ff_ffff_ffff_fe00) as usize;
        let first: [u8; 8] = img[l2..l2 + 8].try_into().unwrap();
        for j in 0..8192 {
            img[l2 + 8 * j..l2 + 8 * j + 8].copy_from_slice(&first);
        }
    }
    std::fs::write(out, img).unwrap();
}

/// Images real tools make that must pass every path (no false positives):
/// a raw image whose size is not a multiple of 512, an ISO padded after
/// its volume, and raw disks with a GPT behind a protective and a hybrid
/// MBR.
pub fn good(dir: &Path) -> Vec<Good> {
    let p = |n: &str| dir.join(n);
    let mut out = Vec::new();
    let odd: Vec<u8> = (0..1_000_003u32).map(|i| (i % 253) as u8 + 1).collect();
    std::fs::write(p("good-odd.raw"), odd).unwrap();
    out.push(Good {
        file: p("good-odd.raw"),
        disk_format: "raw",
        container_format: "bare",
        virtual_size: 1_000_448,
    });
    std::fs::write(p("good-padded.iso"), iso_image(64, 64 * 2048 + 300 * 1024)).unwrap();
    out.push(Good {
        file: p("good-padded.iso"),
        disk_format: "iso",
        container_format: "bare",
        virtual_size: 64 * 2048 + 300 * 1024,
    });
    std::fs::write(p("good-gpt.raw"), vec![0u8; 8 << 20]).unwrap();
    let sfdisk = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'label: gpt\\n,4MiB,U\\n,,L\\n' | sfdisk -q {}",
            p("good-gpt.raw").display()
        ))
        .status()
        .unwrap();
    assert!(sfdisk.success());
    out.push(Good {
        file: p("good-gpt.raw"),
        disk_format: "raw",
        container_format: "bare",
        virtual_size: 8 << 20,
    });
    // Hybrid: the protective entry plus a bootable FAT partition, as
    // isohybrid and gdisk make them.
    let mut hybrid = std::fs::read(p("good-gpt.raw")).unwrap();
    let e = &mut hybrid[462..478];
    e[0] = 0x80;
    e[4] = 0x0C;
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&8192u32.to_le_bytes());
    std::fs::write(p("good-hybrid.raw"), hybrid).unwrap();
    out.push(Good {
        file: p("good-hybrid.raw"),
        disk_format: "raw",
        container_format: "bare",
        virtual_size: 8 << 20,
    });
    out
}
