//! What identity tokens cost: checking one in a service (what every
//! request pays: open the AES-GCM seal, parse the claims, apply the
//! revocation list; no network), sealing one, and `POST /v3/auth/tokens`
//! throughput on a local cluster (argon2id password check, role lookups,
//! sealing), from 4 client threads.
//!
//! Full run (figures in README): `cargo bench --bench identity_tokens`.
//! Under `cargo test` it runs a few of each as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Cluster;
use service_kit::auth::{AuthConfig, TempAuth};
use service_kit::token::{Claims, KeyRing, RevocationEvent, RoleRef, Scope, TokenCheck};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn claims(now: u64) -> Claims {
    Claims {
        user_id: "0f6e2b8c1d4a4b7e9c3d2a1b0e9f8d7c".into(),
        user_name: "tester".into(),
        user_domain_id: "default".into(),
        scope: Scope::Project {
            id: "3c5e8f1a2b4d4e6f8a0b1c2d3e4f5a6b".into(),
            name: "test".into(),
            domain_id: "default".into(),
        },
        roles: vec![
            RoleRef {
                id: "fc0e438caec81116cc9652768bac8e4d".into(),
                name: "admin".into(),
            },
            RoleRef {
                id: "cb7e79217dd06fc2f1904a50acc1b8d2".into(),
                name: "member".into(),
            },
        ],
        methods: vec!["password".into()],
        issued_at_us: now * 1_000_000,
        expires_at: now + 3600,
        audit_ids: vec!["q2Vb0dJ8S9yX1m4Kp7Lz3A".into()],
    }
}

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

fn local_costs(full_run: bool) {
    let n = if full_run { 200_000 } else { 1_000 };
    let now = service_kit::timestamp::Timestamp::now().secs();
    let dir = tempfile::tempdir().unwrap();
    service_kit::token::setup_keys(dir.path()).unwrap();
    let ring = KeyRing::load(dir.path()).unwrap();
    let token = ring.issue(&claims(now));
    let check = TokenCheck::new(KeyRing::load(dir.path()).unwrap());
    // A realistic revocation list: 20 events, none matching.
    check.set_revocations(
        (0..20)
            .map(|i| RevocationEvent {
                audit_id: Some(format!("audit-{i}")),
                user_id: None,
                issued_before_us: now * 1_000_000,
                expires_at: now + 3600,
            })
            .collect(),
    );
    let auth = TempAuth::new(AuthConfig {
        token_secret: "benchmark-secret".into(),
        token_ttl_secs: 3600,
        public_url: None,
        users: Vec::new(),
        token_key_dir: Some(dir.path().to_path_buf()),
        identity_url: None,
    })
    .unwrap();
    assert!(auth.check(&token).is_some());
    println!("token: {} bytes", token.len());
    let open = per_call(n, || {
        black_box(check.check(black_box(&token), now));
    });
    println!(
        "check (open + parse + 20 revocations): {:.2} µs",
        open / 1000.0
    );
    let service = per_call(n, || {
        black_box(auth.check(black_box(&token)));
    });
    println!(
        "a service's check (TempAuth::check → Identity): {:.2} µs",
        service / 1000.0
    );
    let c = claims(now);
    let seal = per_call(n, || {
        black_box(ring.issue(black_box(&c)));
    });
    println!("seal a token: {:.2} µs", seal / 1000.0);
}

fn issue_throughput(full_run: bool) {
    let cluster = Cluster::start(1);
    let url = format!("{}/auth/tokens", cluster.identity_url());
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "tester", "domain": {"id": "default"}, "password": "testing"}}},
        "scope": {"project": {"name": "test", "domain": {"id": "default"}}}}})
    .to_string();
    let (threads, window) = if full_run {
        (4, Duration::from_secs(10))
    } else {
        (2, Duration::from_millis(500))
    };
    let started = Instant::now();
    let issued: u32 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let agent = ureq::AgentBuilder::new().build();
                    let mut n = 0;
                    while started.elapsed() < window || n == 0 {
                        let r = agent
                            .post(&url)
                            .set("Content-Type", "application/json")
                            .send_string(&body)
                            .expect("login");
                        assert_eq!(r.status(), 201);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "POST /v3/auth/tokens: {issued} tokens in {secs:.1} s from {threads} threads = {:.1}/s",
        f64::from(issued) / secs
    );
}

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    local_costs(full_run);
    issue_throughput(full_run);
}
