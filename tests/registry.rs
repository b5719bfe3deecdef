//! The image registry on a real cluster (`nubo up`): every format uploads,
//! is detected with qemu-img's virtual size and downloads byte for byte;
//! hostile images are refused with their reason, leave the image `killed`
//! and store nothing; python-glanceclient works against it.

mod common;
use common::corpus::{self, qemu_img};
use common::glance::{import, Glance};
use common::Cluster;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// python-glanceclient against the registry, with a token.
fn glance_cli(c: &Cluster, token: &str) -> Command {
    let mut cmd = Command::new(common::venv_bin("glance"));
    cmd.args([
        "--os-image-url",
        &c.registry_url(),
        "--os-auth-token",
        token,
    ]);
    cmd
}

fn qemu_virtual_size(path: &Path, fmt: &str) -> u64 {
    let out = common::run_ok(
        Command::new("qemu-img")
            .args(["info", "-f", fmt, "--output=json"])
            .arg(path),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

#[test]
fn every_format_round_trips_through_the_registry() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(p("src.raw"), &data).unwrap();
    let src = p("src.raw").to_string_lossy().into_owned();
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("a.raw", &["-O", "raw"], "raw", "raw"),
        ("a.qcow2", &["-O", "qcow2"], "qcow2", "qcow2"),
        (
            "v2.qcow2",
            &["-O", "qcow2", "-o", "compat=0.10"],
            "qcow2",
            "qcow2",
        ),
        ("d.vhd", &["-O", "vpc"], "vhd", "vpc"),
        (
            "f.vhd",
            &["-O", "vpc", "-o", "subformat=fixed"],
            "vhd",
            "vpc",
        ),
        ("a.vhdx", &["-O", "vhdx"], "vhdx", "vhdx"),
        ("d.vdi", &["-O", "vdi"], "vdi", "vdi"),
        ("s.vdi", &["-O", "vdi", "-o", "static=on"], "vdi", "vdi"),
        ("m.vmdk", &["-O", "vmdk"], "vmdk", "vmdk"),
        (
            "so.vmdk",
            &["-O", "vmdk", "-o", "subformat=streamOptimized"],
            "vmdk",
            "vmdk",
        ),
    ];
    for (name, opts, disk_format, qemu_fmt) in cases {
        let mut args = vec!["convert", "-f", "raw"];
        args.extend_from_slice(opts);
        let out = p(name).to_string_lossy().into_owned();
        args.extend([src.as_str(), out.as_str()]);
        qemu_img(&args);
        let bytes = std::fs::read(p(name)).unwrap();
        let id =
            g.create(json!({"name": name, "disk_format": disk_format, "container_format": "bare"}));
        let (st, body) = g.upload(&id, &bytes);
        assert_eq!(st, 204, "{name}: {}", String::from_utf8_lossy(&body));
        let img = g.show(&id);
        assert_eq!(img["status"], "active", "{name}");
        assert_eq!(img["size"], bytes.len() as u64, "{name}");
        assert_eq!(
            img["virtual_size"],
            qemu_virtual_size(&p(name), qemu_fmt),
            "{name}"
        );
        assert_eq!(
            img["checksum"],
            format!("{:032x}", md5_of(&bytes)),
            "{name}"
        );
        assert_eq!(img["os_hash_algo"], "sha512");
        assert_eq!(
            img["nubo_blake3"],
            blake3::hash(&bytes).to_hex().as_str(),
            "{name}"
        );
        let (st, back) = g.call("GET", &format!("/v2/images/{id}/file"), None, b"");
        assert_eq!(st, 200);
        assert!(back == bytes, "{name}: downloaded bytes differ");
        // The same image imported with conversion to qcow2: the content
        // qemu-img sees is unchanged.
        let converted = import(&g, &bytes, disk_format, "bare", None);
        assert_eq!(converted["disk_format"], "qcow2", "{name}");
        let (_, q) = g.call(
            "GET",
            &format!("/v2/images/{}/file", converted["id"].as_str().unwrap()),
            None,
            b"",
        );
        // The hashes are of the converted data.
        assert_eq!(converted["nubo_blake3"], blake3::hash(&q).to_hex().as_str());
        assert_eq!(converted["size"], q.len() as u64);
        let out = p(&format!("{name}.converted"));
        std::fs::write(&out, q).unwrap();
        qemu_img(&[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            &src,
            out.to_str().unwrap(),
        ]);
    }
    // A ranged download, a second upload (409), and an upload with a
    // detected format when none was declared.
    let id = g.create(json!({"name": "plain"}));
    assert_eq!(g.upload(&id, &data).0, 204);
    assert_eq!(g.show(&id)["disk_format"], "raw");
    assert_eq!(g.upload(&id, &data).0, 409);
    let r = g
        .agent
        .get(&format!("{}/v2/images/{id}/file", g.url))
        .set("X-Auth-Token", &g.token)
        .set("Range", "bytes=100-199")
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    let mut part = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut part).unwrap();
    assert_eq!(part, &data[100..200]);
}

fn md5_of(b: &[u8]) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(b).into())
}

/// Whether the object store holds an image's data, asked as the
/// registry's service user with a HEAD (every primary is asked and the
/// newest answer wins, so unlike a listing this is not eventually
/// consistent).
fn stored(c: &Cluster, id: &str) -> bool {
    let swift = common::Swift::registry_service(c);
    // The manifest, or (had the manifest not been written) a segment.
    [format!("/images/{id}"), format!("/images/{id}-00001")]
        .iter()
        .any(|path| match swift.req("HEAD", path, &[], b"").status {
            404 => false,
            200 => true,
            other => panic!("HEAD of {path}: {other}"),
        })
}

#[test]
fn hostile_images_are_refused_and_nothing_is_stored() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    // Every case of the inspector's hostile corpus, uploaded as a client
    // declaring it would: 400 with the reason, image killed, nothing stored.
    let cases = corpus::build(dir.path());
    let mut refused = Vec::new();
    for case in &cases {
        let file = case
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let id = g.create(json!({"name": file, "disk_format": case.disk_format, "container_format": case.container_format}));
        let (st, body) = g.upload(&id, &std::fs::read(&case.file).unwrap());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(st, 400, "{file}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(case.reason), "{file}: {msg}");
        let img = g.show(&id);
        assert_eq!(img["status"], "killed", "{file}");
        assert!(
            img["nubo_failure"].as_str().unwrap().contains(case.reason),
            "{file}: the record keeps the reason: {img}"
        );
        let (st, _) = g.call("GET", &format!("/v2/images/{id}/file"), None, b"");
        assert_eq!(st, 204, "{file}: no data to download");
        refused.push((file, id));
    }
    for (file, id) in &refused {
        assert!(
            !stored(&c, id),
            "{file}: a refused image left data in the store"
        );
    }
    eprintln!("{} hostile images refused through the API", cases.len());
    // The same verdict on the import path: each case back to queued with
    // its reason, nothing stored.
    for case in &cases {
        let img = import(
            &g,
            &std::fs::read(&case.file).unwrap(),
            case.disk_format,
            case.container_format,
            None,
        );
        let file = case.file.display();
        assert_eq!(img["status"], "queued", "{file}: {img}");
        let why = img["os_glance_import_error"].as_str().unwrap_or_default();
        assert!(why.contains(case.reason), "{file}: {why}");
        assert!(!stored(&c, img["id"].as_str().unwrap()), "{file}");
    }
    // And through the CLI (which uploads with the declared formats).
    for case in &cases {
        let out = c
            .nubo_image()
            .arg("upload")
            .arg(&case.file)
            .args(["--name", "hostile", "--disk-format", case.disk_format])
            .args(["--container-format", case.container_format])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: accepted", case.file.display());
        assert!(err.contains(case.reason), "{}: {err}", case.file.display());
    }
    // A checksum the client sends must match.
    let id = g.create(json!({"name": "sum", "disk_format": "raw", "container_format": "bare"}));
    let r = g
        .agent
        .put(&format!("{}/v2/images/{id}/file", g.url))
        .set("X-Auth-Token", &g.token)
        .set("Content-Type", "application/octet-stream")
        .set("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .send_bytes(&[7u8; 4096]);
    assert!(matches!(r, Err(ureq::Error::Status(400, _))));
    assert_eq!(g.show(&id)["status"], "killed");
    assert!(!stored(&c, &id));
}

#[test]
fn the_api_follows_glance() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    assert_eq!(
        ureq::get(&format!("{}/v2/images", g.url))
            .call()
            .err()
            .map(|e| match e {
                ureq::Error::Status(s, _) => s,
                _ => 0,
            }),
        Some(401)
    );
    let ids: Vec<String> = (0..5)
        .map(|i| g.create(json!({"name": format!("img{i}"), "disk_format": "raw", "container_format": "bare", "os_distro": "debian"})))
        .collect();
    // Paging with a next link.
    let (st, page) = g.json(
        "GET",
        "/v2/images?limit=2&sort_key=name&sort_dir=asc",
        Value::Null,
    );
    assert_eq!(st, 200);
    let names: Vec<&str> = page["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["img0", "img1"]);
    let next = page["next"].as_str().unwrap().to_string();
    let (_, page2) = g.json("GET", &next, Value::Null);
    assert_eq!(page2["images"][0]["name"], "img2");
    // JSON patch, with the media type Glance requires.
    let patch = json!([{"op": "replace", "path": "/name", "value": "renamed"}, {"op": "add", "path": "/hw_disk_bus", "value": "virtio"}]);
    let (st, _) = g.call(
        "PATCH",
        &format!("/v2/images/{}", ids[0]),
        Some("application/json"),
        patch.to_string().as_bytes(),
    );
    assert_eq!(st, 415);
    let (st, b) = g.call(
        "PATCH",
        &format!("/v2/images/{}", ids[0]),
        Some("application/openstack-images-v2.1-json-patch"),
        patch.to_string().as_bytes(),
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let img = g.show(&ids[0]);
    assert_eq!(
        (img["name"].as_str(), img["hw_disk_bus"].as_str()),
        (Some("renamed"), Some("virtio"))
    );
    let bad = json!([{"op": "replace", "path": "/status", "value": "active"}]);
    let (st, _) = g.call(
        "PATCH",
        &format!("/v2/images/{}", ids[0]),
        Some("application/openstack-images-v2.1-json-patch"),
        bad.to_string().as_bytes(),
    );
    assert_eq!(st, 403);
    // Tags, filters, protected images, delete.
    assert_eq!(
        g.call(
            "PUT",
            &format!("/v2/images/{}/tags/gold", ids[1]),
            None,
            b""
        )
        .0,
        204
    );
    let (_, tagged) = g.json("GET", "/v2/images?tag=gold", Value::Null);
    assert_eq!(tagged["images"].as_array().unwrap().len(), 1);
    let (_, f) = g.json("GET", "/v2/images?os_distro=debian", Value::Null);
    assert_eq!(f["images"].as_array().unwrap().len(), 5);
    let protect = json!([{"op": "replace", "path": "/protected", "value": true}]);
    g.call(
        "PATCH",
        &format!("/v2/images/{}", ids[2]),
        Some("application/openstack-images-v2.1-json-patch"),
        protect.to_string().as_bytes(),
    );
    assert_eq!(
        g.call("DELETE", &format!("/v2/images/{}", ids[2]), None, b"")
            .0,
        403
    );
    assert_eq!(
        g.call("DELETE", &format!("/v2/images/{}", ids[3]), None, b"")
            .0,
        204
    );
    assert_eq!(
        g.call("GET", &format!("/v2/images/{}", ids[3]), None, b"")
            .0,
        404
    );
    // Deactivation (admin): the data stays but cannot be downloaded by others.
    let id = ids[4].clone();
    assert_eq!(g.upload(&id, &[0u8; 4096]).0, 204);
    let action = |a: &str| {
        g.call("POST", &format!("/v2/images/{id}/actions/{a}"), None, b"")
            .0
    };
    assert_eq!(action("deactivate"), 204);
    assert_eq!(g.show(&id)["status"], "deactivated");
    assert_eq!(action("reactivate"), 204);
    assert_eq!(g.show(&id)["status"], "active");
    assert_eq!(
        g.call(
            "POST",
            &format!("/v2/images/{}/actions/reactivate", ids[0]),
            None,
            b""
        )
        .0,
        409
    );
    let (st, _) = g.json(
        "POST",
        &format!("/v2/images/{id}/import"),
        json!({"method": {"name": "copy-image"}}),
    );
    assert_eq!(st, 409);
    let (st, schema) = g.json("GET", "/v2/schemas/image", Value::Null);
    assert_eq!(st, 200);
    assert_eq!(schema["name"], "image");
}

#[test]
fn python_glanceclient_creates_lists_and_downloads() {
    let c = Cluster::start(3);
    let token = c.login().1;
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("cirros-like.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        image.to_str().unwrap(),
        "64M",
    ]);
    let glance = |args: &[&str]| -> String {
        let out = common::run_ok(glance_cli(&c, &token).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let created = glance(&[
        "image-create",
        "--name",
        "gc",
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--file",
        image.to_str().unwrap(),
    ]);
    assert!(created.contains("active"), "{created}");
    let id = created
        .lines()
        .find(|l| l.contains("| id "))
        .and_then(|l| l.split('|').nth(2))
        .unwrap()
        .trim()
        .to_string();
    // image-upload into an image created empty (through the API: the
    // client reads stdin as image data whenever it is not a terminal).
    let (st, v) = Glance::new(&c).json(
        "POST",
        "/v2/images",
        json!({"name": "gc2", "disk_format": "qcow2", "container_format": "bare"}),
    );
    assert_eq!(st, 201);
    let id2 = v["id"].as_str().unwrap().to_string();
    glance(&["image-upload", "--file", image.to_str().unwrap(), &id2]);
    let list = glance(&["image-list"]);
    assert!(list.contains(&id) && list.contains(&id2), "{list}");
    let back: PathBuf = dir.path().join("back.qcow2");
    glance(&["image-download", "--file", back.to_str().unwrap(), &id]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&image).unwrap()
    );
    // A hostile image: the client shows the reason.
    let evil = dir.path().join("evil.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        image.to_str().unwrap(),
        "-F",
        "qcow2",
        evil.to_str().unwrap(),
    ]);
    let out = glance_cli(&c, &token)
        .args([
            "image-create",
            "--name",
            "evil",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
        ])
        .arg(&evil)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("qcow2 image has a backing file: rejected"),
        "{said}"
    );
}

#[test]
fn the_nubo_image_cli_uploads_lists_downloads_and_manages_the_cache() {
    let c = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.vmdk");
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, vec![3u8; 2 << 20]).unwrap();
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vmdk",
        raw.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    let nubo = |args: &[&str]| c.nubo_image().args(args).output().unwrap();
    let ok = |args: &[&str]| -> String {
        let out = nubo(args);
        assert!(
            out.status.success(),
            "nubo image {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The format is detected when not given; the last line sums it up.
    let line = ok(&[
        "upload",
        image.to_str().unwrap(),
        "--name",
        "cli",
        "--property",
        "os_distro=debian",
    ]);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[1], "active", "{line}");
    assert_eq!(words[words.len() - 1], "2097152", "{line}");
    let id = words[0].to_string();
    let shown: Value = serde_json::from_str(&ok(&["show", &id])).unwrap();
    assert_eq!(
        (shown["disk_format"].as_str(), shown["os_distro"].as_str()),
        (Some("vmdk"), Some("debian"))
    );
    assert!(ok(&["list"]).contains(&id));
    let back = dir.path().join("back.vmdk");
    ok(&["download", &id, back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&image).unwrap()
    );
    assert!(
        ok(&["cache", "list"]).contains(&id),
        "the upload fills the cache"
    );
    ok(&["cache", "purge"]);
    assert!(!ok(&["cache", "list"]).contains(&id));
    ok(&["cache", "prefetch", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ok(&["cache", "list"]).contains(&id) {
        assert!(
            std::time::Instant::now() < deadline,
            "prefetch did not fill the cache"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A hostile image: one line saying what is wrong, and a failure status.
    let evil = dir.path().join("evil.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        raw.to_str().unwrap(),
        "-F",
        "raw",
        evil.to_str().unwrap(),
    ]);
    let out = nubo(&["upload", evil.to_str().unwrap(), "--name", "evil"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: qcow2 image has a backing file: rejected"
    );
    ok(&["delete", &id]);
    assert!(!ok(&["list"]).contains(&id));
    // With conversion: staged, imported, converted by the registry.
    let line = ok(&[
        "upload",
        image.to_str().unwrap(),
        "--name",
        "conv",
        "--convert-to",
        "qcow2",
    ]);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((words[1], words[2]), ("active", "qcow2"), "{line}");
    let out = nubo(&[
        "upload",
        evil.to_str().unwrap(),
        "--name",
        "evil2",
        "--disk-format",
        "qcow2",
        "--convert-to",
        "raw",
    ]);
    assert!(!out.status.success());
}

#[test]
fn imports_convert_ovas_and_refuse_hostile_data() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(p("src.raw"), &data).unwrap();
    corpus::stream_optimized(&p("src.raw"), &p("disk.vmdk"));
    // To each target format.
    for target in ["raw", "vmdk", "qcow2"] {
        let img = import(
            &g,
            &std::fs::read(p("disk.vmdk")).unwrap(),
            "vmdk",
            "bare",
            Some(target),
        );
        assert_eq!(
            (img["status"].as_str(), img["disk_format"].as_str()),
            (Some("active"), Some(target)),
            "{img}"
        );
        let (_, bytes) = g.call(
            "GET",
            &format!("/v2/images/{}/file", img["id"].as_str().unwrap()),
            None,
            b"",
        );
        std::fs::write(p("out"), bytes).unwrap();
        let qfmt = if target == "vmdk" { "vmdk" } else { target };
        qemu_img(&["compare", "-f", "raw", "-F", qfmt, &p("src.raw"), &p("out")]);
    }
    // An OVA: its disk is converted, its descriptor kept as properties.
    let ovf = r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="f1" ovf:href="disk.vmdk"/></References>
  <DiskSection><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="2097152"/></DiskSection>
  <VirtualSystem ovf:id="appliance"><OperatingSystemSection ovf:id="96"><Description>Debian 12</Description></OperatingSystemSection>
  <VirtualHardwareSection><Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item></VirtualHardwareSection></VirtualSystem>
</Envelope>"#;
    std::fs::write(p("appliance.ovf"), ovf).unwrap();
    let st = Command::new("tar")
        .args([
            "--format=ustar",
            "-cf",
            &p("appliance.ova"),
            "-C",
            &p(""),
            "appliance.ovf",
            "disk.vmdk",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let img = import(
        &g,
        &std::fs::read(p("appliance.ova")).unwrap(),
        "vmdk",
        "ova",
        None,
    );
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(
        (
            img["disk_format"].as_str(),
            img["container_format"].as_str()
        ),
        (Some("qcow2"), Some("bare"))
    );
    assert_eq!(
        (img["ovf_os"].as_str(), img["ovf_cpus"].as_str()),
        (Some("Debian 12"), Some("2"))
    );
    let (_, bytes) = g.call(
        "GET",
        &format!("/v2/images/{}/file", img["id"].as_str().unwrap()),
        None,
        b"",
    );
    std::fs::write(p("ova.qcow2"), bytes).unwrap();
    qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        &p("src.raw"),
        &p("ova.qcow2"),
    ]);
    // Hostile staged data: back to queued with the reason, nothing stored.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &p("src.raw"),
        "-F",
        "raw",
        &p("backing.qcow2"),
    ]);
    let img = import(
        &g,
        &std::fs::read(p("backing.qcow2")).unwrap(),
        "qcow2",
        "bare",
        None,
    );
    assert_eq!(img["status"], "queued");
    assert_eq!(
        img["os_glance_import_error"],
        "qcow2 image has a backing file: rejected"
    );
    assert!(!stored(&c, img["id"].as_str().unwrap()));
    // Import without staged data, and an unknown method.
    let id = g.create(json!({"name": "nothing", "disk_format": "raw", "container_format": "bare"}));
    let (st, _) = g.json(
        "POST",
        &format!("/v2/images/{id}/import"),
        json!({"method": {"name": "glance-direct"}}),
    );
    assert_eq!(st, 409);
    let (st, _) = g.json(
        "POST",
        &format!("/v2/images/{id}/import"),
        json!({"method": {"name": "web-download"}}),
    );
    assert_eq!(st, 400, "web-download without a uri");
    let (st, _) = g.json(
        "POST",
        &format!("/v2/images/{id}/import"),
        json!({"method": {"name": "no-such-method"}}),
    );
    assert_eq!(st, 400);
}

/// An upload cut short by the registry dying leaves no image stuck in
/// `saving` and nothing stored: after a restart the image is `killed`.
#[test]
fn an_upload_interrupted_by_a_registry_crash_ends_killed() {
    use std::io::Write;
    let mut c = Cluster::start(3);
    let g = Glance::new(&c);
    let id = g.create(json!({"name": "cut", "disk_format": "raw", "container_format": "bare"}));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", c.registry_port)).unwrap();
    write!(
        s,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 67108864\r\n\r\n",
        g.token
    )
    .unwrap();
    s.write_all(&vec![7u8; 4 << 20]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while g.show(&id)["status"] != "saving" {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.restart_registry_after_kill();
    drop(s);
    let img = g.show(&id);
    assert_eq!(img["status"], "killed", "{img}");
    // The partial object, if the store committed anything, is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored(&c, &id) {
        assert!(
            std::time::Instant::now() < deadline,
            "partial data left in the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// No false positives on any path: images real tools make (a raw image
/// whose size is not a multiple of 512, an ISO padded after its volume,
/// GPT disks behind protective and hybrid MBRs) become active by direct
/// upload and by import, with qemu's virtual size.
#[test]
fn real_images_are_accepted_on_every_path() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    for good in corpus::good(dir.path()) {
        let name = good.file.display().to_string();
        let bytes = std::fs::read(&good.file).unwrap();
        let id = g.create(
            json!({"name": name, "disk_format": good.disk_format, "container_format": good.container_format}),
        );
        let (st, body) = g.upload(&id, &bytes);
        assert_eq!(st, 204, "{name}: {}", String::from_utf8_lossy(&body));
        let img = g.show(&id);
        assert_eq!(img["status"], "active", "{name}");
        assert_eq!(img["virtual_size"], good.virtual_size, "{name}");
        let img = import(&g, &bytes, good.disk_format, good.container_format, None);
        assert_eq!(img["status"], "active", "{name}: {img}");
    }
}

/// Two uploads to one image at once, many times over, with one of them
/// hostile half the time: exactly one wins the queued -> saving
/// compare-and-set (the other gets 409 before it touches anything), and
/// the image ends in the winner's state: active with the winner's
/// checksum and its data in the store, or killed with nothing stored,
/// and never a stray cached copy of a killed image.
#[test]
fn racing_uploads_to_one_image_leave_one_consistent_outcome() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    corpus::qcow2_with_backing_file(&dir.path().join("evil.qcow2"), "/etc/passwd");
    let evil = std::fs::read(dir.path().join("evil.qcow2")).unwrap();
    let clean_a = vec![0x11u8; 256 << 10];
    let clean_b = vec![0x22u8; 256 << 10];
    let cache_dir = c.data_dir().join("registry/cache/complete");
    for round in 0..20 {
        let hostile = round % 2 == 0;
        let id = g.create(json!({"name": format!("race{round}"), "disk_format": "raw", "container_format": "bare"}));
        let (first, second) = if hostile {
            (&clean_a, &evil)
        } else {
            (&clean_a, &clean_b)
        };
        let (ra, rb) = std::thread::scope(|s| {
            let a = s.spawn(|| g.upload(&id, first));
            let b = s.spawn(|| g.upload(&id, second));
            (a.join().unwrap(), b.join().unwrap())
        });
        let statuses = [ra.0, rb.0];
        assert!(
            statuses.contains(&409),
            "round {round}: one upload must lose: {statuses:?}"
        );
        let img = g.show(&id);
        let winner = if ra.0 != 409 {
            (ra.0, first)
        } else {
            (rb.0, second)
        };
        match winner.0 {
            204 => {
                assert_eq!(img["status"], "active", "round {round}: {img}");
                assert_eq!(img["checksum"], format!("{:032x}", md5_of(winner.1)));
                let (st, back) = g.call("GET", &format!("/v2/images/{id}/file"), None, b"");
                assert_eq!(st, 200);
                assert!(back == *winner.1, "round {round}: served data differs");
                assert!(stored(&c, &id));
            }
            400 => {
                assert_eq!(img["status"], "killed", "round {round}: {img}");
                assert!(!stored(&c, &id), "round {round}: killed image has data");
                assert!(
                    !cache_dir.join(&id).exists(),
                    "round {round}: killed image has a cached copy"
                );
            }
            other => panic!("round {round}: winner answered {other}"),
        }
    }
}

/// A tiny HTTP server on 127.0.0.1 for web-download: `/img` and `/evil`
/// serve bytes, `/redir` redirects to `/img`, `/away` redirects to a port
/// the registry may not reach. Serves until the test ends.
fn serve_images(img: Vec<u8>, evil: Vec<u8>, away_port: u16) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut s = stream;
            let (head, body): (String, &[u8]) = match path.as_str() {
                "/img" => (format!("200 OK\r\nContent-Length: {}", img.len()), &img),
                "/evil" => (format!("200 OK\r\nContent-Length: {}", evil.len()), &evil),
                "/redir" => ("302 Found\r\nLocation: /img\r\nContent-Length: 0".into(), b""),
                "/away" => (
                    format!("302 Found\r\nLocation: http://127.0.0.1:{away_port}/img\r\nContent-Length: 0"),
                    b"",
                ),
                _ => ("404 Not Found\r\nContent-Length: 0".into(), b""),
            };
            let _ = write!(s, "HTTP/1.1 {head}\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(body);
        }
    });
    port
}

/// Glance's web-download import: filtered before anything changes (scheme,
/// port, loopback unless configured), redirects followed only where the
/// filter allows, progress in the image's os_glance_import_* fields, and
/// the same verdict as every other path.
#[test]
fn web_download_imports_with_glances_protections() {
    let mut c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    let src: Vec<u8> = (0..2u32 << 20).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.path().join("src.raw"), &src).unwrap();
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "vmdk",
        dir.path().join("src.raw").to_str().unwrap(),
        dir.path().join("src.vmdk").to_str().unwrap(),
    ]);
    let vmdk = std::fs::read(dir.path().join("src.vmdk")).unwrap();
    corpus::qcow2_with_backing_file(&dir.path().join("evil.qcow2"), "/etc/passwd");
    let evil = std::fs::read(dir.path().join("evil.qcow2")).unwrap();
    let unreachable = common::ports(1);
    let port = serve_images(vmdk, evil, unreachable);
    let web = |disk_format: &str, path: &str| -> (u16, Value, String) {
        let id = g
            .create(json!({"name": "web", "disk_format": disk_format, "container_format": "bare"}));
        let (st, v) = g.json(
            "POST",
            &format!("/v2/images/{id}/import"),
            json!({"method": {"name": "web-download", "uri": format!("http://127.0.0.1:{port}{path}")}}),
        );
        (st, v, id)
    };
    // Out of the box, loopback and port 8xxx are refused, and nothing changes.
    let (st, v, id) = web("vmdk", "/img");
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not pass filtering"));
    assert_eq!(g.show(&id)["status"], "queued");
    let (st, _) = g.json(
        "POST",
        &format!("/v2/images/{id}/import"),
        json!({"method": {"name": "web-download", "uri": "file:///etc/passwd"}}),
    );
    assert_eq!(st, 400);
    // Allowed by configuration: loopback and the server's port only.
    let cfg_path = c.data_dir().join("registry.toml");
    let mut cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg.insert(
        "web_download".into(),
        toml::Value::Table(
            toml::from_str(&format!(
                "allow_loopback = true\nallowed_ports = [{port}]\n"
            ))
            .unwrap(),
        ),
    );
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    c.restart_registry_after_kill();
    let g = Glance::new(&c);
    let wait = |id: &str| -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let img = g.show(id);
            if img["status"] == "active" || img["status"] == "queued" {
                return img;
            }
            assert!(std::time::Instant::now() < deadline, "{img}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    for path in ["/img", "/redir"] {
        let (st, v, id) = web("vmdk", path);
        assert_eq!(st, 202, "{v}");
        let img = wait(&id);
        assert_eq!(img["status"], "active", "{path}: {img}");
        assert_eq!(img["disk_format"], "qcow2");
        assert_eq!(img["os_glance_import_bytes"], vmdk_len(&dir));
        assert!(img.get("os_glance_importing_to_stores").is_none(), "{img}");
        let (_, data) = g.call("GET", &format!("/v2/images/{id}/file"), None, b"");
        let out = dir.path().join(format!("{}.qcow2", &id));
        std::fs::write(&out, data).unwrap();
        qemu_img(&[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            dir.path().join("src.raw").to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
    }
    // A redirect to a port the filter refuses, and a hostile image: back to
    // queued with the reason, nothing stored.
    for (path, fmt, why) in [
        ("/away", "vmdk", "does not pass filtering"),
        ("/evil", "qcow2", "qcow2 image has a backing file: rejected"),
        ("/missing", "raw", "HTTP 404"),
    ] {
        let (st, v, id) = web(fmt, path);
        assert_eq!(st, 202, "{v}");
        let img = wait(&id);
        assert_eq!(img["status"], "queued", "{path}: {img}");
        assert_eq!(img["os_glance_failed_import"], "web-download");
        let err = img["os_glance_import_error"].as_str().unwrap();
        assert!(err.contains(why), "{path}: {err}");
        assert!(!stored(&c, &id), "{path}");
    }
    // Clients cannot write the registry's own os_glance_* properties.
    let id = g.create(json!({"name": "reserved"}));
    let (st, _) = g.call(
        "PATCH",
        &format!("/v2/images/{id}"),
        Some("application/openstack-images-v2.1-json-patch"),
        br#"[{"op": "add", "path": "/os_glance_import_error", "value": "x"}]"#,
    );
    assert_eq!(st, 403);
    let (_, info) = g.json("GET", "/v2/info/import", Value::Null);
    assert_eq!(
        info["import-methods"]["value"],
        json!(["glance-direct", "web-download"])
    );
    drop(c);
}

fn vmdk_len(dir: &tempfile::TempDir) -> String {
    std::fs::metadata(dir.path().join("src.vmdk"))
        .unwrap()
        .len()
        .to_string()
}

/// `POST /v2/cache/clean` removes stalled partial files (older than
/// `cache_stall_secs`) and leaves fresh ones; `POST /v2/cache/prune` keeps
/// the cache within its cap and says what it removed; both need an admin.
#[test]
fn cache_clean_and_prune() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let id = g.create(json!({"name": "cached", "disk_format": "raw", "container_format": "bare"}));
    assert_eq!(g.upload(&id, &[5u8; 8192]).0, 204);
    let partial = c.data_dir().join("registry/cache/incomplete");
    std::fs::write(partial.join("stalled.1"), b"old").unwrap();
    std::fs::write(partial.join("fresh.2"), b"new").unwrap();
    let st = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(partial.join("stalled.1"))
        .status()
        .unwrap();
    assert!(st.success());
    let (st, v) = g.json("POST", "/v2/cache/clean", Value::Null);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["cleaned"], 1);
    assert!(!partial.join("stalled.1").exists());
    assert!(partial.join("fresh.2").exists());
    let (st, v) = g.json("POST", "/v2/cache/prune", Value::Null);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["pruned"], json!([]));
    assert_eq!(v["cache_bytes"], 8192);
    // A non-admin may not.
    let key = "testing3";
    let (_, token) = common::login_as(&c.url(), "test:tester3", key);
    let r = ureq::post(&format!("{}/v2/cache/clean", g.url))
        .set("X-Auth-Token", &token)
        .call();
    assert!(matches!(r, Err(ureq::Error::Status(403, _))), "{r:?}");
}

/// Chunks are shared between images and collected when no image holds
/// them, safely against uploads racing the delete: an image uploaded with
/// the same content while another holding those chunks is deleted stays
/// whole, read back from the store through an emptied cache, every round.
#[test]
fn deleting_an_image_never_takes_chunks_a_concurrent_upload_holds() {
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let data: Vec<u8> = (0..6u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut previous =
        g.create(json!({"name": "gen0", "disk_format": "raw", "container_format": "bare"}));
    assert_eq!(g.upload(&previous, &data).0, 204);
    for round in 1..=8 {
        let next = g.create(json!({"name": format!("gen{round}"), "disk_format": "raw", "container_format": "bare"}));
        let (deleted, uploaded) = std::thread::scope(|s| {
            let d = s.spawn(|| {
                g.call("DELETE", &format!("/v2/images/{previous}"), None, b"")
                    .0
            });
            let u = s.spawn(|| g.upload(&next, &data).0);
            (d.join().unwrap(), u.join().unwrap())
        });
        assert_eq!((deleted, uploaded), (204, 204), "round {round}");
        // Let the collector run, then read the new image from the store.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(g.call("DELETE", "/v2/cache", None, b"").0, 204);
        let (st, back) = g.call("GET", &format!("/v2/images/{next}/file"), None, b"");
        assert_eq!(st, 200, "round {round}");
        assert!(back == data, "round {round}: the image lost data");
        previous = next;
    }
}

/// Image members as Glance has them: the owner shares a `shared` image
/// with another project, which sees it at once, lists it once it accepts,
/// downloads it, and loses it when the owner stops sharing; only the
/// member answers, only the owner shares, and only shared images.
#[test]
fn image_members_share_an_image_with_another_project() {
    let c = Cluster::start(3);
    let owner = Glance::new(&c);
    // A member of another project (an admin role anywhere sees every
    // image, as in Glance's default policy).
    let other = Glance {
        token: c.member_of_new_project("guests", "guest"),
        ..Glance::new(&c)
    };
    let guests = {
        let keys = service_kit::token::KeyRing::load(&c.data_dir().join("token-keys")).unwrap();
        match keys.open(&other.token).unwrap().scope {
            service_kit::token::Scope::Project { id, .. } => id,
            s => panic!("{s:?}"),
        }
    };
    let id = owner
        .create(json!({"name": "shared-one", "disk_format": "raw", "container_format": "bare"}));
    assert_eq!(owner.upload(&id, &[7u8; 4096]).0, 204);
    let listed = |g: &Glance| {
        let (st, v) = g.json("GET", "/v2/images", Value::Null);
        assert_eq!(st, 200);
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id.as_str())
    };
    let members = format!("/v2/images/{id}/members");
    assert_eq!(
        other.call("GET", &format!("/v2/images/{id}"), None, b"").0,
        404
    );

    let (st, m) = owner.json("POST", &members, json!({"member": guests}));
    assert_eq!(st, 200, "{m}");
    assert_eq!(
        (m["member_id"].as_str(), m["status"].as_str()),
        (Some(guests.as_str()), Some("pending"))
    );
    assert_eq!(
        owner.json("POST", &members, json!({"member": guests})).0,
        409
    );
    assert_eq!(owner.json("POST", &members, json!({})).0, 400);
    assert_eq!(
        other.json("POST", &members, json!({"member": "test3"})).0,
        403,
        "only the owner shares"
    );

    // Pending: seen, not listed; accepted: listed and downloadable.
    assert_eq!(
        other.call("GET", &format!("/v2/images/{id}"), None, b"").0,
        200
    );
    assert!(!listed(&other));
    let me = format!("{members}/{guests}");
    assert_eq!(
        owner.json("PUT", &me, json!({"status": "accepted"})).0,
        403,
        "only the member answers"
    );
    assert_eq!(other.json("PUT", &me, json!({"status": "maybe"})).0, 400);
    let (st, m) = other.json("PUT", &me, json!({"status": "accepted"}));
    assert_eq!((st, m["status"].as_str()), (200, Some("accepted")));
    assert!(listed(&other));
    let (st, body) = other.call("GET", &format!("/v2/images/{id}/file"), None, b"");
    assert_eq!((st, body), (200, vec![7u8; 4096]));
    let (st, v) = other.json("GET", &members, Value::Null);
    assert_eq!((st, v["members"].as_array().unwrap().len()), (200, 1));
    // The member may not change the image.
    assert_eq!(
        other
            .call("DELETE", &format!("/v2/images/{id}"), None, b"")
            .0,
        403
    );
    assert_eq!(owner.call("GET", "/v2/schemas/member", None, b"").0, 200);

    // Unshared: gone for the member.
    assert_eq!(owner.call("DELETE", &me, None, b"").0, 204);
    assert_eq!(
        other.call("GET", &format!("/v2/images/{id}"), None, b"").0,
        404
    );
    assert_eq!(owner.call("DELETE", &me, None, b"").0, 404);

    // Only shared images have members.
    let private = owner.create(json!({"name": "mine", "visibility": "private"}));
    let (st, _) = owner.json(
        "POST",
        &format!("/v2/images/{private}/members"),
        json!({"member": guests}),
    );
    assert_eq!(st, 403);
}
