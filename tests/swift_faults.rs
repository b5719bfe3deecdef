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
    // Every account replica lists both containers, the one created while a
    // node was down included.
    let want = vec!["durable".to_string(), "while-down".to_string()];
    assert_eq!(c.account_replicas("AUTH_test"), vec![want; 3]);
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

/// A node that dies (SIGKILL) or stalls (SIGSTOP) while it streams a
/// 48 MiB GET: the proxy goes on from another replica at the same byte, and
/// the client receives the whole object, correct, as one 200.
fn a_node_failing_mid_stream(signal: &str) {
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
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(sock, "GET /v1/AUTH_test/stream/big HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nConnection: close\r\n\r\n", s.token).unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = sock.read(&mut first).unwrap();
    assert!(n > 0);
    match signal {
        "KILL" => c.kill_node(node),
        other => c.signal_service(&c.node_config(node), other),
    }
    let mut rest = Vec::new();
    let read = sock.read_to_end(&mut rest);
    if signal == "STOP" {
        c.signal_service(&c.node_config(node), "CONT");
    }
    read.unwrap();
    let mut all = first[..n].to_vec();
    all.extend(rest);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let got = &all[split + 4..];
    assert_eq!(got.len(), body.len(), "the whole object arrives");
    assert!(got == &body[..], "and its bytes are right");
    let metrics = ureq::get(&format!("{}/metrics", c.url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("nubo_proxy_reads_resumed_total 1"),
        "the read went on from another replica:\n{metrics}"
    );
}

#[test]
fn a_node_killed_mid_stream_costs_the_client_nothing() {
    a_node_failing_mid_stream("KILL");
}

#[test]
fn a_node_stalled_mid_stream_costs_the_client_nothing() {
    a_node_failing_mid_stream("STOP");
}

fn data_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "quarantined" || n == "tmp" || n == "meta.db")
            {
                continue;
            }
            data_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "data") {
            out.push(p);
        }
    }
}

/// A GET through the proxy over a raw socket: `Some(body)` when the
/// transfer completed (all Content-Length bytes), `None` when it was cut.
fn get_complete(c: &Cluster, token: &str, path: &str) -> Option<Vec<u8>> {
    let head = format!("GET /v1/AUTH_test{path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nConnection: close\r\n\r\n");
    let r = common::raw(c.proxy_port, &head, b"");
    if r.status == 0 {
        return None;
    }
    assert_eq!(r.status, 200, "{path}");
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    (r.body.len() == len).then_some(r.body)
}

/// A byte flipped in the third chunk of the replica the proxy reads first:
/// that node sends two checked chunks, then ends its response and
/// quarantines the file; the proxy goes on from the next replica at that
/// byte, and the client receives one whole, correct 200.
#[test]
fn a_bad_chunk_mid_body_is_served_from_another_replica() {
    a_bad_chunk_mid_body(&[]);
}

/// The same, of a versioned object's current version, which the node that
/// holds its link serves in the link's stead: the next replica is asked
/// for the version the same way.
#[test]
fn a_bad_chunk_mid_body_of_a_version_is_served_from_another_replica() {
    a_bad_chunk_mid_body(&[("X-Versions-Enabled", "true")]);
}

fn a_bad_chunk_mid_body(container_headers: &[(&str, &str)]) {
    let c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/mid", container_headers, b"").status, 201);
    let body: Vec<u8> = (0..(3u32 << 20) + 12345).map(|i| (i % 241) as u8).collect();
    assert_eq!(s.req("PUT", "/mid/o", &[], &body).status, 201);
    let (port, device, _) = c.placement("AUTH_test", "mid", "o").remove(0);
    let mut files = Vec::new();
    data_files(&c.device_dir(port - c.node_base_port, &device), &mut files);
    assert_eq!(files.len(), 1);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[(2 << 20) + 777] ^= 0x10;
    std::fs::write(&files[0], bytes).unwrap();

    let got = get_complete(&c, &s.token, "/mid/o").expect("a complete GET");
    assert!(got == body, "the right bytes");
    let metrics = ureq::get(&format!("{}/metrics", c.url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("nubo_proxy_reads_resumed_total 1"),
        "the read went on from another replica:\n{metrics}"
    );
    assert_eq!(
        c.node_metric(port - c.node_base_port, "nubo_objects_quarantined_total"),
        1
    );
    assert!(!files[0].exists(), "the bad file is moved aside");
    // The next GET is served whole by a good replica.
    assert!(get_complete(&c, &s.token, "/mid/o").unwrap() == body);
}

/// Bit rot: 20 of 90 replica files get bytes flipped at random offsets or
/// are truncated on disk. Before the auditor runs, every GET (whole and
/// ranged) returns the right bytes as a complete 200/206: nodes check each
/// 1 MiB chunk before sending it, quarantine a bad file at once, and the
/// proxy goes on from another replica. The auditor quarantines the bad
/// files no read touched, and the replicator restores all 20.
#[test]
fn bit_rot_is_caught_quarantined_and_repaired() {
    let c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/rot", &[], b"").status, 201);
    // Files, not inline records: 70 KiB to about 3 MiB (up to 4 chunks).
    let body = |i: usize| -> Vec<u8> {
        let len = (70 << 10) + i * (100 << 10);
        (0..len).map(|b| ((b * 31 + i * 7) % 251) as u8).collect()
    };
    for i in 0..30 {
        assert_eq!(
            s.req("PUT", &format!("/rot/o{i}"), &[], &body(i)).status,
            201
        );
    }
    let mut files = Vec::new();
    data_files(c.data_dir(), &mut files);
    files.sort();
    assert_eq!(files.len(), 90, "one file per replica");
    // 20 of the 90 replicas, spread over the disks: every fourth file, but
    // never all three replicas of one object (that would be a real loss, not
    // bit rot the cluster can repair). Some objects lose two.
    let mut per_object: std::collections::HashMap<std::ffi::OsString, usize> = Default::default();
    let mut victims = Vec::new();
    for f in files
        .iter()
        .step_by(4)
        .chain(files.iter().skip(1).step_by(4))
    {
        let object = f.parent().unwrap().file_name().unwrap().to_os_string();
        let hits = per_object.entry(object).or_default();
        if *hits < 2 && victims.len() < 20 && !victims.contains(f) {
            *hits += 1;
            victims.push(f.clone());
        }
    }
    assert_eq!(victims.len(), 20);
    // A fixed-seed xorshift: random offsets, the same on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    for (n, f) in victims.iter().enumerate() {
        let mut bytes = std::fs::read(f).unwrap();
        if n % 3 == 2 {
            let keep = random(bytes.len());
            bytes.truncate(keep);
        } else {
            for _ in 0..1 + random(3) {
                let at = random(bytes.len());
                bytes[at] ^= 1 << random(8);
            }
        }
        std::fs::write(f, bytes).unwrap();
    }
    let (mut attempted, mut served) = (0, 0);
    for round in 0..3 {
        for i in 0..30 {
            attempted += 1;
            let got = get_complete(&c, &s.token, &format!("/rot/o{i}"));
            assert!(got.is_some(), "round {round}: GET o{i} was cut off");
            assert!(got.unwrap() == body(i), "o{i} served wrong bytes");
            served += 1;
        }
    }
    // Ranges across chunk boundaries: checked the same way.
    for i in [10, 20, 29] {
        let want = body(i);
        let (first, last) = ((1 << 20) - 5, want.len() - 3);
        let r = s.req(
            "GET",
            &format!("/rot/o{i}"),
            &[("range", &format!("bytes={first}-{last}"))],
            b"",
        );
        attempted += 1;
        assert_eq!(r.status, 206);
        assert!(r.body == want[first..=last], "range of o{i}");
        served += 1;
    }
    let by_reads: u64 = (0..3)
        .map(|n| c.node_metric(n, "nubo_objects_quarantined_total"))
        .sum();
    let metrics = ureq::get(&format!("{}/metrics", c.url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let resumed: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("nubo_proxy_reads_resumed_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    eprintln!(
        "before the auditor: {attempted} GETs, {served} complete and correct, {} failed, {by_reads} replicas quarantined by reads, {resumed} reads resumed mid-body",
        attempted - served
    );
    assert!(by_reads > 0, "reads found bad replicas");
    let by_auditor: u64 = (0..3)
        .map(|n| c.audit(n)["quarantined"].as_u64().unwrap())
        .sum();
    eprintln!("the auditor quarantined {by_auditor} more");
    assert_eq!(by_reads + by_auditor, 20);

    let mut restored = 0;
    for pass in 1..=8 {
        let stats: Vec<_> = (0..3).map(|n| c.replicate(n)).collect();
        let pushed: u64 = stats
            .iter()
            .map(|s| s["objects_pushed"].as_u64().unwrap())
            .sum();
        let failures: u64 = stats.iter().map(|s| s["failures"].as_u64().unwrap()).sum();
        restored += pushed;
        eprintln!("replication pass {pass}: {pushed} pushed, {failures} failures");
        if pushed == 0 && failures == 0 {
            break;
        }
    }
    // Under load a write may have gone to a handoff, so count copies, not
    // pushes: every object must now be whole on each of its primaries.
    assert!(restored >= 20, "{restored} restored");
    eprintln!("the replicator restored {restored} replicas");
    for i in 0..30 {
        let placement = c.placement("AUTH_test", "rot", &format!("o{i}"));
        // Where every device stands on this object, for the failure message.
        let census: Vec<String> = placement
            .iter()
            .map(|(port, device, h)| {
                let st = c.internal_head(
                    *port,
                    device,
                    h.partition,
                    "AUTH_test",
                    "rot",
                    &format!("o{i}"),
                );
                format!(
                    "{port}/{device}{}={st}",
                    if h.is_primary { "(primary)" } else { "" }
                )
            })
            .collect();
        for (port, device, holds) in &placement {
            if holds.is_primary {
                let got = c.internal_get(
                    *port,
                    device,
                    holds.partition,
                    "AUTH_test",
                    "rot",
                    &format!("o{i}"),
                );
                assert!(
                    got.as_deref() == Some(&body(i)[..]),
                    "o{i} not whole on {port}/{device}; census {census:?}; victims {victims:?}"
                );
            }
        }
    }
    let quarantined_again: u64 = (0..3)
        .map(|n| c.audit(n)["quarantined"].as_u64().unwrap())
        .sum();
    assert_eq!(quarantined_again, 0, "the restored copies are good");
    for i in 0..30 {
        assert_eq!(
            get_complete(&c, &s.token, &format!("/rot/o{i}")).as_deref(),
            Some(&body(i)[..])
        );
    } // The operator's view: metrics per node, and the cluster summary.
    let m = common::raw(
        c.node_base_port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert!(
        m.text().contains("nubo_replication_passes_total"),
        "{}",
        m.text()
    );
    assert!(m.text().contains("nubo_device_used_bytes{device=\"d1\"}"));
    let out = std::process::Command::new(common::nubo())
        .args(["cluster", "status", "--ring"])
        .arg(c.data_dir().join("object.ring"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3/3 nodes up, 20 files quarantined"),
        "{text}"
    );
}

/// Drain: a device's weight set to 0 and the ring rebalanced and reloaded
/// by every node. Objects stay readable while their data moves; afterwards
/// the drained device holds nothing and nothing is lost.
#[test]
fn draining_a_device_moves_its_data_off() {
    let c = Cluster::start_with(3, &["--min-part-hours", "0"]);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/drain", &[], b"").status, 201);
    // Even objects are kept inline with their records, odd ones in files
    // (over 64 KiB): both kinds move.
    let body = |i: usize| {
        let repeat = if i % 2 == 0 { 50 + i } else { 6000 + i };
        format!("drain me {i} ").repeat(repeat).into_bytes()
    };
    for i in 0..100 {
        assert_eq!(
            s.req("PUT", &format!("/drain/o{i}"), &[], &body(i)).status,
            201
        );
    }
    let drained = c
        .data_dir()
        .join(format!("node-{}", c.node_base_port))
        .join("d1");
    let count = |dir: &std::path::Path| {
        let mut f = Vec::new();
        if dir.join("objects").exists() {
            data_files(&dir.join("objects"), &mut f);
        }
        f.len()
    };
    let before = count(&drained);
    assert!(before > 0);
    let builder = c.data_dir().join("object.builder");
    let ring = c.data_dir().join("object.ring");
    let run = |args: &[&str]| {
        common::nubo_ok(args);
    };
    let old_ring = c.data_dir().join("old.ring");
    std::fs::copy(&ring, &old_ring).unwrap();
    let new_ring = c.data_dir().join("new.ring");
    run(&["ring", "set-weight", builder.to_str().unwrap(), "0", "0"]);
    run(&[
        "ring",
        "rebalance",
        builder.to_str().unwrap(),
        "--ring",
        new_ring.to_str().unwrap(),
    ]);
    // Distribute it: every node checks and installs it (here they share one
    // ring file, which the proxy reloads within 2 s).
    run(&["ring", "push", new_ring.to_str().unwrap()]);
    let stale = std::process::Command::new(common::nubo())
        .args(["ring", "push"])
        .arg(&old_ring)
        .output()
        .unwrap();
    assert!(!stale.status.success(), "an older ring must be refused");
    assert!(String::from_utf8_lossy(&stale.stdout).contains("not newer"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    for i in (0..100).step_by(7) {
        assert_eq!(
            s.req("GET", &format!("/drain/o{i}"), &[], b"").body,
            body(i),
            "o{i} during the move"
        );
    }
    let mut moved = 0;
    for pass in 1..=6 {
        let pushed: u64 = (0..3)
            .map(|n| c.replicate(n)["objects_pushed"].as_u64().unwrap())
            .sum();
        moved += pushed;
        eprintln!("replication pass {pass}: {pushed} pushed");
        if pushed == 0 && count(&drained) == 0 {
            break;
        }
    }
    eprintln!("drained device held {before} object files; {moved} replicas pushed");
    assert_eq!(count(&drained), 0, "the drained device still holds objects");
    for i in 0..100 {
        assert_eq!(
            s.req("GET", &format!("/drain/o{i}"), &[], b"").body,
            body(i),
            "o{i} after the move"
        );
        let placement = c.placement("AUTH_test", "drain", &format!("o{i}"));
        assert_eq!(
            c.internal_head(
                c.node_base_port,
                "d1",
                placement[0].2.partition,
                "AUTH_test",
                "drain",
                &format!("o{i}")
            ),
            404,
            "o{i} (inline or not) is gone from the drained device"
        );
        for (port, device, holds) in placement {
            if holds.is_primary {
                assert_eq!(
                    c.internal_head(
                        port,
                        &device,
                        holds.partition,
                        "AUTH_test",
                        "drain",
                        &format!("o{i}")
                    ),
                    200
                );
            }
        }
    }
}

fn tmp_files(c: &Cluster) -> usize {
    let mut n = 0;
    for node in std::fs::read_dir(c.data_dir()).unwrap().flatten() {
        if !node.file_name().to_string_lossy().starts_with("node-") || !node.path().is_dir() {
            continue;
        }
        for dev in std::fs::read_dir(node.path()).unwrap().flatten() {
            if let Ok(tmp) = std::fs::read_dir(dev.path().join("tmp")) {
                n += tmp.count();
            }
        }
    }
    n
}

/// Torn writes: a node SIGKILLed in the middle of a large PUT, and a client
/// that goes away mid-upload. No partial object is ever listed or served,
/// and temp files do not outlive the write.
#[test]
fn torn_writes_leave_nothing_partial() {
    use std::io::{Read, Write};
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/torn", &[], b"").status, 201);
    let body: Vec<u8> = (0..(64u32 << 20)).map(|i| (i % 253) as u8).collect();
    let head = |name: &str| {
        format!("PUT /v1/AUTH_test/torn/{name} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", s.token, body.len())
    };

    // 1. The first primary dies halfway through; the upload completes on the others.
    let first = c
        .placement("AUTH_test", "torn", "big")
        .into_iter()
        .next()
        .unwrap();
    let victim = first.0 - c.node_base_port;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", c.proxy_port)).unwrap();
    sock.write_all(head("big").as_bytes()).unwrap();
    sock.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.kill_node(victim);
    sock.write_all(&body[body.len() / 2..]).unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert_eq!(s.req("GET", "/torn/big", &[], b"").body, body);
    c.restart_node(victim);
    assert_eq!(
        c.internal_head(
            first.0,
            &first.1,
            first.2.partition,
            "AUTH_test",
            "torn",
            "big"
        ),
        404,
        "the killed node kept a partial object"
    );
    let pushed: u64 = (0..3)
        .map(|n| c.replicate(n)["objects_pushed"].as_u64().unwrap())
        .sum();
    assert!(pushed >= 1);
    assert_eq!(
        c.internal_head(
            first.0,
            &first.1,
            first.2.partition,
            "AUTH_test",
            "torn",
            "big"
        ),
        200
    );

    // 2. The client goes away halfway: nothing is stored anywhere.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", c.proxy_port)).unwrap();
    sock.write_all(head("abandoned").as_bytes()).unwrap();
    sock.write_all(&body[..body.len() / 3]).unwrap();
    drop(sock);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(s.req("HEAD", "/torn/abandoned", &[], b"").status, 404);
    for (port, device, holds) in c.placement("AUTH_test", "torn", "abandoned") {
        assert_eq!(
            c.internal_head(
                port,
                &device,
                holds.partition,
                "AUTH_test",
                "torn",
                "abandoned"
            ),
            404
        );
    }
    // The container replica on the killed node missed `big`'s row; container
    // replication brings it. The abandoned upload is never listed.
    for n in 0..3 {
        c.replicate(n);
    }
    assert_eq!(c.container_replicas("AUTH_test", "torn"), vec!["big\n"; 3]);
    assert_eq!(s.req("GET", "/torn", &[], b"").text(), "big\n");
    assert_eq!(tmp_files(&c), 0, "temp files left behind");
}

/// Node loss under load: 2000 small objects (4 KiB, kept inline with their
/// records) written by 16 concurrent writers, whose syncs are shared, while
/// one of three nodes is SIGKILLed and later restarted. Every acknowledged
/// object reads back with the right bytes; after replication every primary
/// holds every object's exact bytes.
#[test]
fn node_loss_under_load_loses_nothing_acknowledged() {
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/load", &[], b"").status, 201);
    let body = |i: usize| {
        let mut b = format!("load object {i} ").repeat(300).into_bytes();
        b.truncate(4096);
        b
    };
    let acked = std::sync::Mutex::new(Vec::new());
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for w in 0..16 {
            let (s, acked, failed) = (&s, &acked, &failed);
            scope.spawn(move || {
                for i in (w..2000).step_by(16) {
                    let st = s.req("PUT", &format!("/load/o{i}"), &[], &body(i)).status;
                    if st == 201 {
                        acked.lock().unwrap().push(i);
                    } else {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(800));
        c.kill_node(1);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        c.restart_node(1);
    });
    let acked = acked.into_inner().unwrap();
    let failed = failed.into_inner();
    eprintln!(
        "2000 written in {:?}: {} acknowledged, {failed} refused",
        started.elapsed(),
        acked.len()
    );
    let mut lost = 0;
    for &i in &acked {
        if s.req("GET", &format!("/load/o{i}"), &[], b"").body != body(i) {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "acknowledged objects lost or damaged");
    let converge = std::time::Instant::now();
    for pass in 1..=6 {
        let pushed: u64 = (0..3)
            .map(|n| c.replicate(n)["objects_pushed"].as_u64().unwrap())
            .sum();
        eprintln!("replication pass {pass}: {pushed} pushed");
        if pushed == 0 {
            break;
        }
    }
    eprintln!("replication converged in {:?}", converge.elapsed());
    let mut missing = 0;
    for &i in &acked {
        for (port, device, holds) in c.placement("AUTH_test", "load", &format!("o{i}")) {
            if holds.is_primary
                && c.internal_get(
                    port,
                    &device,
                    holds.partition,
                    "AUTH_test",
                    "load",
                    &format!("o{i}"),
                )
                .as_deref()
                    != Some(&body(i)[..])
            {
                missing += 1;
            }
        }
    }
    assert_eq!(missing, 0, "primary copies missing after replication");
}

/// A listing update that cannot be delivered waits on disk and lands when
/// the container's node is back, without any replication pass.
#[test]
fn listing_updates_wait_on_disk_until_the_container_node_returns() {
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/queued", &[], b"").status, 201);
    // Three nodes in three zones: every partition has a replica on node 0.
    c.kill_node(0);
    let names: Vec<String> = (0..5).map(|i| format!("o{i}")).collect();
    for n in &names {
        assert_eq!(
            s.req("PUT", &format!("/queued/{n}"), &[], n.as_bytes())
                .status,
            201
        );
    }
    let queued: f64 = (1..3)
        .map(|n| {
            let m = common::raw(
                c.node_base_port + n,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"",
            );
            m.text()
                .lines()
                .filter(|l| l.starts_with("nubo_updates_queued{"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum();
    assert!(
        queued >= 1.0,
        "rows for the dead node's container replica are queued"
    );
    c.restart_node(0);
    let want: String = names.iter().map(|n| format!("{n}\n")).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let replicas = c.container_replicas("AUTH_test", "queued");
        if replicas.iter().all(|r| *r == want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queued rows never landed: {replicas:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Conditional writes stay atomic with a node down: for names whose first
/// primary is the dead node the write lease falls to the next primary, and
/// of racing `If-None-Match: *` writers exactly one wins every round; the
/// others hear 412 (the object exists) or 409 (the lease is taken).
#[test]
fn conditional_writes_keep_one_winner_with_a_node_down() {
    let c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/cond", &[], b"").status, 201);
    c.kill_node(0);
    for round in 0..30 {
        let path = format!("/cond/key-{round}");
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..8)
                .map(|i| {
                    let (s, path) = (&s, &path);
                    scope.spawn(move || {
                        let body = format!("writer {i}");
                        s.req("PUT", path, &[("If-None-Match", "*")], body.as_bytes())
                            .status
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let winners = statuses.iter().filter(|st| **st == 201).count();
        assert_eq!(winners, 1, "round {round}: {statuses:?}");
        assert!(
            statuses.iter().all(|st| [201, 409, 412].contains(st)),
            "round {round}: {statuses:?}"
        );
        assert_eq!(s.req("GET", &path, &[], b"").status, 200);
    }
}

/// A null version current on only some replicas (written while a primary
/// was down, not yet repaired by replication) survives versioning being
/// enabled and a new version written: the restarted primary takes the new
/// version's link at once, the others hold the null object, and the proxy
/// keeps the null object from a replica that holds it before the link
/// replaces it there. (It used to look only at the newest replica's answer,
/// the new link, and the null version was overwritten everywhere.)
#[test]
fn a_null_version_on_some_replicas_only_is_kept_when_a_version_replaces_it() {
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/nullkeep", &[], b"").status, 201);
    // Three nodes in three zones: node 0 is a primary of every partition.
    c.kill_node(0);
    assert_eq!(
        s.req("PUT", "/nullkeep/o", &[], b"written before versioning")
            .status,
        201
    );
    c.restart_node(0);
    assert_eq!(
        s.req("POST", "/nullkeep", &[("X-Versions-Enabled", "true")], b"")
            .status,
        204
    );
    let v = s.req("PUT", "/nullkeep/o", &[], b"the first version");
    assert_eq!(v.status, 201);
    assert_eq!(
        s.req("GET", "/nullkeep/o", &[], b"").body,
        b"the first version"
    );
    let null = s.req("GET", "/nullkeep/o?version-id=null", &[], b"");
    assert_eq!(null.status, 200, "the null version was lost");
    assert_eq!(null.body, b"written before versioning");
    let listing = s.req("GET", "/nullkeep?versions&format=json", &[], b"");
    let rows: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{rows}");
    assert_eq!(ids[1], "null", "{rows}");
}

/// A storage node serves the record a read names by its timestamp
/// (`x-nubo-stored-at`, what the proxy sends to copy a null version from
/// the replica that holds it) and nothing else: another record answers a
/// bare 404, without the `x-backend-timestamp` that would make the proxy
/// take it for a deletion.
#[test]
fn a_node_serves_only_the_record_a_read_names() {
    let c = Cluster::start(1);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/storedat", &[], b"").status, 201);
    assert_eq!(s.req("PUT", "/storedat/o", &[], b"first").status, 201);
    let (port, device, holds) = c
        .placement("AUTH_test", "storedat", "o")
        .into_iter()
        .find(|(_, _, h)| h.is_primary)
        .unwrap();
    let node_get = |stored_at: Option<&str>| {
        let extra = stored_at
            .map(|t| format!("x-nubo-stored-at: {t}\r\n"))
            .unwrap_or_default();
        common::raw(
            port,
            &format!(
                "GET /obj/{device}/{}/AUTH_test/storedat/o HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n",
                holds.partition
            ),
            b"",
        )
    };
    let first = node_get(None);
    assert_eq!(first.status, 200);
    let first_at = first.header("x-timestamp").unwrap().to_string();
    assert_eq!(node_get(Some(&first_at)).body, b"first");
    assert_eq!(s.req("PUT", "/storedat/o", &[], b"second").status, 201);
    let second_at = node_get(None).header("x-timestamp").unwrap().to_string();
    assert_ne!(first_at, second_at);
    let named = node_get(Some(&second_at));
    assert_eq!((named.status, named.body.as_slice()), (200, &b"second"[..]));
    let gone = node_get(Some(&first_at));
    assert_eq!(
        gone.status, 404,
        "a record the read did not name was served"
    );
    assert!(
        gone.header("x-backend-timestamp").is_none(),
        "{:?}",
        gone.headers
    );
}
