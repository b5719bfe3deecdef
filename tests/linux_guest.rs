//! Slow: a real Linux guest. Debian's kernel (`linux-image-amd64`) and
//! `busybox-static` are packed into a bootable disk (`common::linux_guest`:
//! syslinux, an initramfs whose init
//! prints a line on the serial console, reads its config drive as
//! cloud-init would, prints what it found, opens a shell on its serial
//! console and powers off when it ends), uploaded to the registry and
//! launched through the compute API under software emulation; the test
//! types into that shell through `nubo server console` (the interactive
//! serial console) and powers the guest off from it.
//! It stays in the test command; it takes tens of seconds.

mod common;
use base64::Engine;
use common::glance::Glance;
use common::linux_guest::{linux_disk, type_into_console};
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
    // SHELL: the guest opens a shell on its serial console at the end.
    let user_data = "#cloud-config\nruncmd: [echo from-user-data]\nSHELL";
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

    // The interactive console: typed into through `nubo server console`.
    nova.wait_console(&id, "SHELL-READY", 1, Duration::from_secs(120));
    console_refusals(&nova, &id);
    let mut answer = String::new();
    for _ in 0..3 {
        answer = type_into_console(&c, &id, "echo $((6*7))\n");
        if answer.lines().any(|l| l.trim() == "42") {
            break;
        }
    }
    assert!(
        answer.lines().any(|l| l.trim() == "42"),
        "the guest's shell did not answer through the console:\n{answer}"
    );
    // Powered off from its own console; the API learns it from the host,
    // and a stopped server has no console to give.
    type_into_console(&c, &id, "poweroff -f\n");
    nova.wait_status(&id, &["SHUTOFF"], Duration::from_secs(120));
    let (st, v) = nova.call(
        "POST",
        &format!("/servers/{id}/remote-consoles"),
        Some(json!({"remote_console": {"protocol": "serial", "type": "serial"}})),
    );
    assert_eq!(st, 409, "{v}");
    assert!(v["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("is not ready"));
    nova.delete(&id);
    nova.wait_gone(&id, Duration::from_secs(60));
}

/// What is refused: console types this deployment lacks (Nova's 400), and
/// opening the agent's WebSocket without this instance's valid token (401,
/// before any upgrade); the true token upgrades (101).
fn console_refusals(nova: &Nova, id: &str) {
    let (st, v) = nova.call(
        "POST",
        &format!("/servers/{id}/remote-consoles"),
        Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Unavailable console type novnc."
    );
    let (st, v) = nova.call(
        "POST",
        &format!("/servers/{id}/remote-consoles"),
        Some(json!({"remote_console": {"protocol": "telnet", "type": "serial"}})),
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = nova.action(id, json!({"os-getVNCConsole": {"type": "novnc"}}));
    assert_eq!(st, 400, "{v}");
    // The older action gives the same kind of URL.
    let (st, v) = nova.action(id, json!({"os-getSerialConsole": {"type": "serial"}}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["console"]["type"], "serial");
    let url = v["console"]["url"].as_str().unwrap().to_string();
    let (path, token) = url.split_once("?token=").unwrap();
    assert!(path.ends_with(&format!("/instances/{id}/serial")), "{url}");
    let other = path.replace(id, "00000000-0000-4000-8000-000000000000");
    let mut forged = token.to_string();
    forged.replace_range(
        forged.len() - 1..,
        if token.ends_with('0') { "1" } else { "0" },
    );
    assert_eq!(handshake(path), 401, "no token");
    assert_eq!(
        handshake(&format!("{path}?token={forged}")),
        401,
        "a forged token"
    );
    assert_eq!(
        handshake(&format!("{other}?token={token}")),
        401,
        "another instance's"
    );
    // One client at a time: a second is told so while the first stays.
    let (status, first) = handshake_held(&url);
    assert_eq!(status, 101, "the token the API gave");
    assert_eq!(
        handshake(&url),
        409,
        "a second client while the first is on"
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handshake(&url) != 101 {
        assert!(
            std::time::Instant::now() < deadline,
            "the console stayed taken after its client left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // (That last client left at once; the agent notices within moments.)
    std::thread::sleep(Duration::from_millis(500));
}

/// The status a WebSocket handshake to `url` (`ws://host:port/...`) gets.
fn handshake(url: &str) -> u16 {
    handshake_held(url).0
}

/// A handshake's status and its connection, held open by the caller.
fn handshake_held(url: &str) -> (u16, std::net::TcpStream) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("ws://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    (String::from_utf8_lossy(&head[9..12]).parse().unwrap(), s)
}
