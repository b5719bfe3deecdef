//! The inspector against real images made by qemu-img (and tar for OVA):
//! each format is detected with the virtual size `qemu-img info` reports,
//! and a hostile corpus (qemu-img plus byte patches) is refused with a
//! clear reason, one case per check of image-safety.md.

use image_registry::inspect::{self, DiskFormat, FileSource, InspectError, Limits};
use std::path::{Path, PathBuf};
use std::process::Command;

fn qemu_img(args: &[&str]) {
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

/// `qemu-img info -f FMT --output=json`: (format, virtual size).
fn qemu_info(path: &Path, format: &str) -> (String, u64) {
    let out = Command::new("qemu-img")
        .args(["info", "-f", format, "--output=json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["format"].as_str().unwrap().to_string(),
        v["virtual-size"].as_u64().unwrap(),
    )
}

fn inspect_file(path: &Path) -> Result<inspect::ImageInfo, InspectError> {
    inspect::inspect(&FileSource::open(path).unwrap(), &Limits::default())
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).to_string_lossy().into_owned()
    }
}

/// A 4 MiB raw disk with recognisable content.
fn raw_source(d: &Dir) -> String {
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.p("source.raw"), data).unwrap();
    d.s("source.raw")
}

#[test]
fn every_format_is_detected_with_qemus_virtual_size() {
    let d = Dir::new();
    let src = raw_source(&d);
    let cases: &[(&str, &[&str], DiskFormat, &str, &str)] = &[
        ("a.raw", &["-O", "raw"], DiskFormat::Raw, "raw", "raw"),
        (
            "a3.qcow2",
            &["-O", "qcow2"],
            DiskFormat::Qcow2,
            "qcow2",
            "qcow2 v3",
        ),
        (
            "a2.qcow2",
            &["-O", "qcow2", "-o", "compat=0.10"],
            DiskFormat::Qcow2,
            "qcow2",
            "qcow2 v2",
        ),
        (
            "dyn.vhd",
            &["-O", "vpc"],
            DiskFormat::Vhd,
            "vpc",
            "vhd dynamic",
        ),
        (
            "fixed.vhd",
            &["-O", "vpc", "-o", "subformat=fixed"],
            DiskFormat::Vhd,
            "vpc",
            "vhd fixed",
        ),
        ("a.vhdx", &["-O", "vhdx"], DiskFormat::Vhdx, "vhdx", "vhdx"),
        (
            "dyn.vdi",
            &["-O", "vdi"],
            DiskFormat::Vdi,
            "vdi",
            "vdi dynamic",
        ),
        (
            "static.vdi",
            &["-O", "vdi", "-o", "static=on"],
            DiskFormat::Vdi,
            "vdi",
            "vdi static",
        ),
        (
            "sparse.vmdk",
            &["-O", "vmdk"],
            DiskFormat::Vmdk,
            "vmdk",
            "vmdk monolithicSparse",
        ),
        (
            "stream.vmdk",
            &["-O", "vmdk", "-o", "subformat=streamOptimized"],
            DiskFormat::Vmdk,
            "vmdk",
            "vmdk streamOptimized",
        ),
    ];
    for (name, opts, format, qemu_fmt, variant) in cases {
        let mut args = vec!["convert", "-f", "raw"];
        args.extend_from_slice(opts);
        let out = d.s(name);
        args.extend([src.as_str(), out.as_str()]);
        qemu_img(&args);
        let info = inspect_file(&d.p(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (qf, qsize) = qemu_info(&d.p(name), qemu_fmt);
        assert_eq!(info.format, *format, "{name}");
        assert_eq!(qf, *qemu_fmt, "{name}");
        assert_eq!(info.virtual_size, qsize, "{name}: virtual size");
        assert_eq!(info.variant, *variant, "{name}");
    }
}

#[test]
fn large_sparse_images_report_their_virtual_size() {
    let d = Dir::new();
    for (name, fmt) in [
        ("big.qcow2", "qcow2"),
        ("big.vmdk", "vmdk"),
        ("big.vhdx", "vhdx"),
        ("big.vdi", "vdi"),
    ] {
        qemu_img(&["create", "-q", "-f", fmt, &d.s(name), "10G"]);
        let info = inspect_file(&d.p(name)).unwrap();
        assert_eq!(info.virtual_size, qemu_info(&d.p(name), fmt).1, "{name}");
    }
}

const OVF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
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

/// Builds a tar with Python's tarfile: members (name, file or None for a
/// symlink to /etc/passwd).
fn tar(d: &Dir, out: &str, members: &[(&str, Option<&str>)]) {
    let list: Vec<String> = members
        .iter()
        .map(|(name, file)| match file {
            Some(f) => format!("('{name}', '{}')", d.s(f)),
            None => format!("('{name}', None)"),
        })
        .collect();
    let script = format!(
        "import tarfile\nwith tarfile.open('{}', 'w', format=tarfile.USTAR_FORMAT) as t:\n  for name, path in [{}]:\n    if path is None:\n      i = tarfile.TarInfo(name); i.type = tarfile.SYMTYPE; i.linkname = '/etc/passwd'; t.addfile(i)\n    else:\n      t.add(path, arcname=name)\n",
        d.s(out),
        list.join(", ")
    );
    let st = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn an_ova_reports_its_disk_and_descriptor_properties() {
    let d = Dir::new();
    let src = raw_source(&d);
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        &src,
        &d.s("disk.vmdk"),
    ]);
    std::fs::write(d.p("tiny.ovf"), OVF).unwrap();
    tar(
        &d,
        "tiny.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
        ],
    );
    let info = inspect_file(&d.p("tiny.ova")).unwrap();
    assert_eq!(info.container, Some("ova"));
    assert_eq!(info.format, DiskFormat::Vmdk);
    assert_eq!(info.virtual_size, 4 << 20);
    assert!(info
        .properties
        .contains(&("ovf_os".into(), "Debian GNU/Linux 12".into())));
    assert!(info.properties.contains(&("ovf_cpus".into(), "1".into())));
    let (name, offset, len) = info.disk_member.clone().unwrap();
    assert_eq!(name, "disk.vmdk");
    let ova = std::fs::read(d.p("tiny.ova")).unwrap();
    assert_eq!(
        &ova[offset as usize..(offset + len) as usize],
        &std::fs::read(d.p("disk.vmdk")).unwrap()[..]
    );
}

/// Runs the inspector on a hostile file: it must be refused, with `reason`
/// in the message.
fn refused(path: &Path, reason: &str) -> String {
    match inspect_file(path) {
        Ok(info) => panic!("{} accepted as {info:?}", path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(reason), "{}: {msg}", path.display());
            msg
        }
    }
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn the_hostile_corpus_is_refused_with_clear_reasons() {
    let d = Dir::new();
    let src = raw_source(&d);
    let mut reasons = Vec::new();

    // 1. qcow2 with a backing file.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &src,
        "-F",
        "raw",
        &d.s("backing.qcow2"),
    ]);
    reasons.push(refused(&d.p("backing.qcow2"), "has a backing file"));
    // 2. qcow2 with an external data file; an unknown incompatible feature; version 4.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", d.s("data.bin")),
        &d.s("datafile.qcow2"),
        "16M",
    ]);
    reasons.push(refused(&d.p("datafile.qcow2"), "external data file"));
    qemu_img(&["create", "-q", "-f", "qcow2", &d.s("feature.qcow2"), "16M"]);
    patch(&d.p("feature.qcow2"), 72, &(1u64 << 40).to_be_bytes());
    reasons.push(refused(
        &d.p("feature.qcow2"),
        "unknown incompatible features",
    ));
    qemu_img(&["create", "-q", "-f", "qcow2", &d.s("v4.qcow2"), "16M"]);
    patch(&d.p("v4.qcow2"), 4, &4u32.to_be_bytes());
    reasons.push(refused(&d.p("v4.qcow2"), "version 4"));
    // 3. qed.
    qemu_img(&["create", "-q", "-f", "qed", &d.s("a.qed"), "16M"]);
    reasons.push(refused(&d.p("a.qed"), "qed image is not accepted"));
    // 4. vmdk: a descriptor naming another file (CVE-2022-47951), a flat
    // createType, a parent, and a descriptor file on its own.
    qemu_img(&["create", "-q", "-f", "vmdk", &d.s("evil.vmdk"), "16M"]);
    let mut img = std::fs::read(d.p("evil.vmdk")).unwrap();
    let at = find(&img, b"SPARSE \"evil.vmdk\"").unwrap();
    let evil = b"SPARSE \"/dev/sda1\"";
    img[at..at + evil.len()].copy_from_slice(evil);
    std::fs::write(d.p("evil.vmdk"), &img).unwrap();
    reasons.push(refused(&d.p("evil.vmdk"), "extent naming another file"));
    qemu_img(&["create", "-q", "-f", "vmdk", &d.s("parent.vmdk"), "16M"]);
    let mut img = std::fs::read(d.p("parent.vmdk")).unwrap();
    let at = find(&img, b"parentCID=ffffffff").unwrap();
    img[at..at + 18].copy_from_slice(b"parentCID=1234abcd");
    std::fs::write(d.p("parent.vmdk"), &img).unwrap();
    reasons.push(refused(&d.p("parent.vmdk"), "backing file (parentCID)"));
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        &d.s("flat.vmdk"),
        "16M",
    ]);
    reasons.push(refused(
        &d.p("flat.vmdk"),
        "descriptor file whose extents are other files",
    ));
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=twoGbMaxExtentSparse",
        &d.s("split.vmdk"),
        "16M",
    ]);
    reasons.push(refused(&d.p("split.vmdk"), "descriptor file"));
    // 5. streamOptimized with a broken end-of-stream marker.
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        &src,
        &d.s("eos.vmdk"),
    ]);
    let len = std::fs::metadata(d.p("eos.vmdk")).unwrap().len();
    patch(&d.p("eos.vmdk"), len - 100, b"\x07");
    reasons.push(refused(&d.p("eos.vmdk"), "end-of-stream marker"));
    // 6. vhdx with too many region entries.
    qemu_img(&["create", "-q", "-f", "vhdx", &d.s("regions.vhdx"), "16M"]);
    for table in [192u64 << 10, 256 << 10] {
        patch(&d.p("regions.vhdx"), table + 8, &5000u32.to_le_bytes());
    }
    reasons.push(refused(&d.p("regions.vhdx"), "5000 region entries"));
    // 7. A raw image with a bad MBR boot flag, and a protective GPT entry
    // beside another partition.
    let mut mbr = vec![0u8; 1 << 20];
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr[446] = 0x33;
    mbr[450] = 0x83;
    std::fs::write(d.p("bootflag.raw"), &mbr).unwrap();
    reasons.push(refused(&d.p("bootflag.raw"), "invalid boot flag"));
    mbr[446] = 0;
    mbr[450] = 0xEE;
    mbr[454..458].copy_from_slice(&1u32.to_le_bytes());
    mbr[466] = 0x83;
    std::fs::write(d.p("gpt.raw"), &mbr).unwrap();
    reasons.push(refused(&d.p("gpt.raw"), "protective GPT entry beside"));
    // 8. Declared raw, is qcow2.
    qemu_img(&["create", "-q", "-f", "qcow2", &d.s("liar.qcow2"), "16M"]);
    let info = inspect_file(&d.p("liar.qcow2")).unwrap();
    let e = inspect::check_declared(&info, Some("raw"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "image was declared raw but is qcow2: rejected");
    reasons.push(e);
    // Polyglot: a qcow2 that also ends in a VHD footer.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vpc",
        "-o",
        "subformat=fixed",
        &d.s("tail.vhd"),
        "1M",
    ]);
    let tail = std::fs::read(d.p("tail.vhd")).unwrap();
    let mut poly = std::fs::read(d.p("liar.qcow2")).unwrap();
    poly.extend_from_slice(&tail[tail.len() - 512..]);
    std::fs::write(d.p("poly.img"), poly).unwrap();
    reasons.push(refused(
        &d.p("poly.img"),
        "matches several formats (qcow2, vhd)",
    ));
    // 11. Shorter than the header claims; a virtual size over the limit.
    let whole = std::fs::read(d.p("liar.qcow2")).unwrap();
    std::fs::write(d.p("short.qcow2"), &whole[..whole.len() / 2]).unwrap();
    reasons.push(refused(
        &d.p("short.qcow2"),
        "shorter than its header claims",
    ));
    qemu_img(&["create", "-q", "-f", "qcow2", &d.s("huge.qcow2"), "2T"]);
    reasons.push(refused(&d.p("huge.qcow2"), "over the limit"));
    // 12. OVA: traversal, a link, a descriptor with entities, two disks,
    // a stray member.
    std::fs::write(d.p("tiny.ovf"), OVF).unwrap();
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
        &src,
        &d.s("disk.vmdk"),
    ]);
    tar(
        &d,
        "traversal.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("../disk.vmdk", Some("disk.vmdk")),
        ],
    );
    reasons.push(refused(&d.p("traversal.ova"), "unsafe path"));
    tar(
        &d,
        "link.ova",
        &[("tiny.ovf", Some("tiny.ovf")), ("disk.vmdk", None)],
    );
    reasons.push(refused(&d.p("link.ova"), "not a plain file"));
    let bomb = OVF.replacen(
        "<Envelope",
        "<!DOCTYPE Envelope [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\n<Envelope",
        1,
    );
    std::fs::write(d.p("bomb.ovf"), bomb).unwrap();
    tar(
        &d,
        "bomb.ova",
        &[
            ("bomb.ovf", Some("bomb.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
        ],
    );
    reasons.push(refused(&d.p("bomb.ova"), "not well-formed XML"));
    std::fs::write(
        d.p("two.ovf"),
        OVF.replace(
            "</DiskSection>",
            "<Disk ovf:diskId=\"d2\" ovf:fileRef=\"file1\"/></DiskSection>",
        ),
    )
    .unwrap();
    tar(
        &d,
        "two.ova",
        &[
            ("two.ovf", Some("two.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
        ],
    );
    reasons.push(refused(&d.p("two.ova"), "more than one disk"));
    tar(
        &d,
        "stray.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
            ("run.sh", Some("tiny.ovf")),
        ],
    );
    reasons.push(refused(&d.p("stray.ova"), "does not name"));
    // An OVA whose disk is itself hostile.
    std::fs::copy(d.p("backing.qcow2"), d.p("disk.vmdk")).unwrap();
    tar(
        &d,
        "inner.ova",
        &[
            ("tiny.ovf", Some("tiny.ovf")),
            ("disk.vmdk", Some("disk.vmdk")),
        ],
    );
    reasons.push(refused(&d.p("inner.ova"), "has a backing file"));

    for r in &reasons {
        eprintln!("{r}");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The fuzzer's seeds (kept in `fuzz/corpus/inspect`) are valid images of
/// each format, so that fuzzing starts deep inside every parser.
#[test]
fn fuzz_seeds_are_valid_images() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/inspect");
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("seed") {
            continue;
        }
        let info = inspect_file(&e.path()).unwrap_or_else(|err| panic!("{name}: {err}"));
        seen.push(info.format);
    }
    for f in [
        DiskFormat::Qcow2,
        DiskFormat::Vhd,
        DiskFormat::Vhdx,
        DiskFormat::Vdi,
        DiskFormat::Vmdk,
        DiskFormat::Iso,
    ] {
        assert!(seen.contains(&f), "no seed for {f}");
    }
}
