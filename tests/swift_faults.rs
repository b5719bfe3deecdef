//! Node loss: with one of three storage nodes SIGKILLed, reads and writes
//! keep working (other replicas and handoffs), and after it restarts every
//! object written in either state reads back.

mod common;
use common::{Cluster, Swift};

#[test]
fn reads_and_writes_survive_a_killed_node() {
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/durable", &[], b"").status, 201);
    let body = |i: usize| format!("object {i} ").repeat(100 + i).into_bytes();
    for i in 0..20 {
        assert_eq!(
            s.req("PUT", &format!("/durable/before-{i}"), &[], &body(i))
                .status,
            201
        );
    }
    c.kill_node(0);
    for i in 0..20 {
        let g = s.req("GET", &format!("/durable/before-{i}"), &[], b"");
        assert_eq!(g.status, 200, "before-{i} with node 0 down");
        assert_eq!(g.body, body(i));
    }
    for i in 0..20 {
        assert_eq!(
            s.req("PUT", &format!("/durable/during-{i}"), &[], &body(i))
                .status,
            201,
            "during-{i}"
        );
    }
    assert_eq!(s.req("PUT", "/while-down", &[], b"").status, 201);
    assert_eq!(s.req("HEAD", "/durable/during-3", &[], b"").status, 200);
    assert_eq!(s.req("DELETE", "/durable/before-0", &[], b"").status, 204);
    c.restart_node(0);
    for i in 0..20 {
        let g = s.req("GET", &format!("/durable/during-{i}"), &[], b"");
        assert_eq!(g.status, 200, "during-{i} after restart");
        assert_eq!(g.body, body(i));
    }
    // The delete made while the node was down wins over its stale copy.
    assert_eq!(s.req("HEAD", "/durable/before-0", &[], b"").status, 404);
    assert_eq!(s.req("GET", "/durable/before-1", &[], b"").body, body(1));

    // Replication: handoffs push what they took in to the primaries and drop
    // it; the restarted primary gets what it missed. Afterwards every object
    // is on exactly its primaries.
    let mut passes = 0;
    loop {
        passes += 1;
        let pushed: u64 = (0..3)
            .map(|n| c.replicate(n)["objects_pushed"].as_u64().unwrap())
            .sum();
        eprintln!("replication pass {passes}: {pushed} objects pushed");
        if pushed == 0 || passes == 5 {
            break;
        }
    }
    for i in 0..20 {
        for name in [format!("before-{i}"), format!("during-{i}")] {
            let placement = c.placement("AUTH_test", "durable", &name);
            for (addr_port, device, holds) in placement {
                let want_data = name != "before-0";
                if holds.is_primary {
                    let st = c.internal_head(
                        addr_port,
                        &device,
                        holds.partition,
                        "AUTH_test",
                        "durable",
                        &name,
                    );
                    if want_data {
                        assert_eq!(
                            st, 200,
                            "{name} missing on primary {addr_port}/{device} after {passes} passes"
                        );
                    } else {
                        assert_eq!(st, 404, "{name} should be deleted on {addr_port}/{device}");
                    }
                } else {
                    let st = c.internal_head(
                        addr_port,
                        &device,
                        holds.partition,
                        "AUTH_test",
                        "durable",
                        &name,
                    );
                    assert_eq!(
                        st, 404,
                        "{name} still on handoff {addr_port}/{device} after {passes} passes"
                    );
                }
            }
        }
    }
}

/// A node killed while it streams an object to the proxy: the client gets
/// fewer bytes than the Content-Length it was promised (a visible error),
/// never a complete-looking response with wrong content.
#[test]
fn a_node_dying_mid_stream_never_yields_a_short_200() {
    use std::io::{Read, Write};
    let c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/stream", &[], b"").status, 201);
    let body: Vec<u8> = (0..(48u32 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(s.req("PUT", "/stream/big", &[], &body).status, 201);
    // Which node serves the first replica: ask the ring.
    let out = std::process::Command::new(common::nubo())
        .args(["ring", "lookup"])
        .arg(c.data_dir().join("object.ring"))
        .args(["AUTH_test", "stream", "big", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = v["primaries"][0]["port"].as_u64().unwrap() as u16;
    let node = port - c.node_base_port;

    let mut sock = std::net::TcpStream::connect(("127.0.0.1", c.proxy_port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(sock, "GET /v1/AUTH_test/stream/big HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nConnection: close\r\n\r\n", s.token).unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = sock.read(&mut first).unwrap();
    assert!(n > 0);
    c.kill_node(node);
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    let mut all = first[..n].to_vec();
    all.extend(rest);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let got = &all[split + 4..];
    if got.len() == body.len() {
        // The node finished sending before it died: then the bytes are right.
        assert!(
            got == &body[..],
            "a complete-length response must be correct"
        );
    } else {
        eprintln!("cut off after {} of {} bytes", got.len(), body.len());
        assert!(got.len() < body.len(), "never more bytes than promised");
        assert_eq!(got, &body[..got.len()], "what arrived is a correct prefix");
    }
}
