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
}
