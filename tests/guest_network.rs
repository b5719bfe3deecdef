//! Slow: guests on a network. Two real Linux guests (`common::linux_guest`)
//! launched through the API on the `private` network take the addresses
//! the API handed out by DHCP from the host's dnsmasq, over taps on the
//! host's bridge, one pings the other, and each reads its own metadata
//! (key, address, user data) from the metadata service at
//! 169.254.169.254; security groups then decide who reaches whom (asked of
//! the guests through their serial consoles), and a guest cannot send
//! from an address not its own; deleting them leaves no tap, no DHCP
//! entry and no firewall chain behind, and a new guest given a deleted
//! one's address gets it by DHCP.
//!
//! The bridge, the taps, dnsmasq and every guest packet stay inside a
//! network namespace this test makes: it runs itself again inside it
//! (`ip netns exec`), cluster and all, so nothing is added to the
//! machine's own namespace. The QEMU driver only: libvirtd lives in the
//! machine's namespace and could not open a tap made in this one (the
//! libvirt domain XML of an interface is unit-tested).

mod common;
use common::glance::Glance;
use common::linux_guest::{linux_disk, reaches, type_into_console};
use common::nova::{upload_image, Nova};
use common::own_namespace;
use common::Cluster;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BRIDGE: &str = "nubr0";

#[test]
fn slow_guests_get_their_addresses_by_dhcp_and_reach_each_other() {
    if own_namespace::inside() {
        return inside_the_namespace();
    }
    let test = "slow_guests_get_their_addresses_by_dhcp_and_reach_each_other";
    let args = ["--exact", test, "--nocapture"].map(String::from);
    assert!(
        own_namespace::rerun_inside("nubo-gn", &args),
        "the test inside the namespace failed"
    );
}

fn taps() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tap"))
        .collect()
}

fn dhcp_entries(data_dir: &Path) -> Vec<String> {
    let dir = data_dir
        .join("compute-host/networks")
        .join(format!("{BRIDGE}.hosts"));
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn inside_the_namespace() {
    let c = Cluster::start_with(1, &["--compute-driver", "qemu", "--guest-bridge", BRIDGE]);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let dir = tempfile::tempdir().unwrap();
    let disk = linux_disk(dir.path(), "NUBO-GUEST-BOOT");
    let image = upload_image(&g, "net-guest", "raw", &std::fs::read(disk).unwrap());
    let (_, nets) = nova.call("GET", "/os-networks", None);
    let net_id = nets["networks"][0]["id"].as_str().unwrap().to_string();
    let user_data = |text: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    // B, at a fixed address, stays up (a shell on its console); A pings
    // it, then stays up the same way.
    let b = nova.create(
        "guest-b",
        &image,
        "1",
        json!({
            "networks": [{"uuid": net_id, "fixed_ip": "10.42.0.10"}],
            "user_data": user_data("SHELL\n"),
        }),
    );
    nova.wait_console(&b, "NET-UP", 1, Duration::from_secs(300));
    let (st, made) = nova.call(
        "POST",
        "/os-keypairs",
        Some(json!({"keypair": {"name": "net-key"}})),
    );
    assert_eq!(st, 200, "{made}");
    let public_key = made["keypair"]["public_key"].as_str().unwrap().to_string();
    let a = nova.create(
        "guest-a",
        &image,
        "1",
        json!({"user_data": user_data("PING 10.42.0.10\nSSH\nSHELL\n"), "key_name": "net-key"}),
    );
    nova.wait_console(&a, "PING-", 1, Duration::from_secs(300));
    let line = |id: &str, prefix: &str| nova.console_line(id, prefix);
    for (id, name) in [(&a, "a"), (&b, "b")] {
        let shown = nova.show(id);
        let addr = &shown["addresses"]["private"][0];
        assert_eq!(
            line(id, "DHCP-BOUND"),
            addr["addr"].as_str().unwrap(),
            "guest {name} has the address the API shows"
        );
        assert_eq!(
            line(id, "NET-UP"),
            addr["OS-EXT-IPS-MAC:mac_addr"].as_str().unwrap(),
            "guest {name} has the MAC the API shows"
        );
    }
    assert_eq!(line(&b, "DHCP-BOUND"), "10.42.0.10");
    assert_eq!(line(&a, "PING-"), "OK 10.42.0.10", "a reaches b");
    // The metadata service knows each guest by its address.
    let meta: serde_json::Value = serde_json::from_str(&line(&a, "MD-META"))
        .unwrap_or_else(|e| panic!("MD-META: {e}; the console:\n{}", nova.console(&a)));
    assert_eq!(meta["uuid"], a.as_str());
    assert_eq!(meta["public_keys"]["net-key"], public_key.as_str());
    assert_eq!(line(&a, "MD-IP"), line(&a, "DHCP-BOUND"));
    assert_eq!(line(&a, "MD-KEY"), public_key);
    assert_eq!(line(&a, "MD-USER"), "PING 10.42.0.10");
    // SSH with the key pair's private key, as a user gets in.
    let key_file = dir.path().join("net-key");
    std::fs::write(&key_file, made["keypair"]["private_key"].as_str().unwrap()).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    nova.wait_console(&a, "SSH-READY", 1, Duration::from_secs(60));
    let ssh = Command::new("ssh")
        .args(["-i"])
        .arg(&key_file)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
        ])
        .arg(format!("root@{}", line(&a, "DHCP-BOUND")))
        .arg("echo $((6*7)) as $(id -u)")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout).trim(),
        "42 as 0",
        "ssh into a: {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    assert_eq!(line(&b, "MD-IP"), "10.42.0.10");
    assert_eq!(line(&b, "MD-KEY"), "none", "b has no key");
    assert_eq!(taps().len(), 2, "a tap per guest: {:?}", taps());
    assert_eq!(dhcp_entries(c.data_dir()).len(), 2);
    security_groups_guard_the_guests(&c, &nova, &a, &b);

    nova.delete(&a);
    nova.delete(&b);
    nova.wait_gone(&a, Duration::from_secs(60));
    nova.wait_gone(&b, Duration::from_secs(60));
    assert_eq!(taps(), Vec::<String>::new(), "taps left behind");
    assert_eq!(
        dhcp_entries(c.data_dir()),
        Vec::<String>::new(),
        "DHCP entries left behind"
    );
    let rules = nft_ruleset();
    assert!(
        !rules.contains("in-tap"),
        "firewall chains left behind:\n{rules}"
    );

    // b's address, handed to a new guest (another MAC), is leased to it:
    // the delete released b's lease.
    let c2 = nova.create(
        "guest-c",
        &image,
        "1",
        json!({"networks": [{"uuid": net_id, "fixed_ip": "10.42.0.10"}]}),
    );
    nova.wait_console(&c2, "NET-UP", 1, Duration::from_secs(300));
    assert_eq!(
        nova.console_line(&c2, "DHCP-BOUND"),
        "10.42.0.10",
        "a reused address got no lease:\n{}",
        nova.console(&c2)
    );
    nova.delete(&c2);
    nova.wait_gone(&c2, Duration::from_secs(60));
}

fn nft_ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Until `what` holds, for at most 40 s (a host applies rules from its
/// next heartbeat, every 2 s here).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
    }
}

/// Security groups, asked of the guests themselves through their
/// consoles: members of `default` reach each other; a group of its own
/// lets nothing in until a rule allows it; a guest cannot send with an
/// address that is not its own.
fn security_groups_guard_the_guests(c: &Cluster, nova: &Nova, a: &str, b: &str) {
    let addr_a = nova.console_line(a, "DHCP-BOUND");
    let addr_b = "10.42.0.10";
    nova.wait_console(a, "SHELL-READY", 1, Duration::from_secs(120));
    nova.wait_console(b, "SHELL-READY", 1, Duration::from_secs(120));
    assert_eq!(
        nova.show(b)["security_groups"],
        json!([{"name": "default"}])
    );
    assert!(reaches(c, b, &addr_a), "b reaches a: both are in default");
    let rules = nft_ruleset();
    assert_eq!(
        rules.matches("chain in-tap").count(),
        2,
        "a chain per tap:\n{rules}"
    );

    let (st, made) = nova.call(
        "POST",
        "/os-security-groups",
        Some(json!({"security_group": {"name": "isolated", "description": "nothing in"}})),
    );
    assert_eq!(st, 200, "{made}");
    let isolated = made["security_group"]["id"].as_str().unwrap().to_string();
    let (st, v) = nova.action(b, json!({"addSecurityGroup": {"name": "isolated"}}));
    assert_eq!(st, 202, "{v}");
    let (st, v) = nova.action(b, json!({"removeSecurityGroup": {"name": "default"}}));
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        nova.show(b)["security_groups"],
        json!([{"name": "isolated"}])
    );
    eventually("a is kept out of b, whose group lets nothing in", || {
        !reaches(c, a, addr_b)
    });
    assert!(
        !reaches(c, b, &addr_a),
        "b is no member of a's group any more"
    );

    // A rule lets ICMP in from the network.
    let (st, v) = nova.call(
        "POST",
        "/os-security-group-rules",
        Some(json!({"security_group_rule": {
            "parent_group_id": isolated, "ip_protocol": "icmp",
            "from_port": -1, "to_port": -1, "cidr": "10.42.0.0/24"}})),
    );
    assert_eq!(st, 200, "{v}");
    eventually("a reaches b by the rule", || reaches(c, a, addr_b));

    // Anti-spoofing: a lets ICMP in from anywhere; b takes another address.
    let (_, groups) = nova.call("GET", "/os-security-groups", None);
    let default = groups["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "default")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = nova.call(
        "POST",
        "/os-security-group-rules",
        Some(json!({"security_group_rule": {
            "parent_group_id": default, "ip_protocol": "icmp",
            "from_port": -1, "to_port": -1, "cidr": "0.0.0.0/0"}})),
    );
    assert_eq!(st, 200, "{v}");
    eventually("b reaches a by the rule", || reaches(c, b, &addr_a));
    type_into_console(c, b, "ifconfig eth0 10.42.0.250 netmask 255.255.255.0\n");
    assert!(
        !reaches(c, b, &addr_a),
        "b got through with an address not its own"
    );
    type_into_console(
        c,
        b,
        &format!("ifconfig eth0 {addr_b} netmask 255.255.255.0\n"),
    );
    assert!(reaches(c, b, &addr_a), "b with its own address again");
}
