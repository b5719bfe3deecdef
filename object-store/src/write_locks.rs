//! Short leases that serialize conditional writes of one object name
//! (S3's `If-None-Match: *` and `If-Match` on PUT and multipart
//! completion). A proxy takes the lease on the object's first reachable
//! primary (`LOCK`), checks the condition against a quorum, writes, and
//! gives the lease back (`UNLOCK`); a second conditional writer meanwhile
//! hears 409 (S3's `ConditionalRequestConflict`). A lease ends by itself
//! after its time to live, so a proxy that dies holding one blocks the
//! name for at most that long; the holder renews it while it writes.
//! Unconditional writes never wait for a lease, as in S3.

use http::{Method, Request, Response, StatusCode};
use service_kit::http_util::{header_str, status, text, Body};
use service_kit::server::RequestBody;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest lease a holder may ask for (it renews before it ends).
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// Leases held on this node, by object name.
#[derive(Default)]
pub struct WriteLocks {
    held: Mutex<HashMap<String, Lease>>,
}

struct Lease {
    token: String,
    until: Instant,
}

impl WriteLocks {
    /// Takes (or, for its holder, renews) the lease on `name` until
    /// `now + ttl`; false if another holder has it.
    pub fn acquire(&self, name: &str, token: &str, ttl: Duration, now: Instant) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Ended leases go as new ones are asked for: the map stays small.
        held.retain(|_, l| l.until > now);
        match held.get_mut(name) {
            Some(l) if l.token != token => false,
            Some(l) => {
                l.until = now + ttl.min(MAX_TTL);
                true
            }
            None => {
                held.insert(
                    name.to_string(),
                    Lease {
                        token: token.to_string(),
                        until: now + ttl.min(MAX_TTL),
                    },
                );
                true
            }
        }
    }

    /// Gives a lease back; only its holder can.
    pub fn release(&self, name: &str, token: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(name).is_some_and(|l| l.token == token) {
            held.remove(name);
        }
    }
}

/// `LOCK` (take or renew) and `UNLOCK` on an object path, with the holder's
/// token in `x-nubo-lock-token` and the time to live in
/// `x-nubo-lock-ttl-ms`: 200, or 409 while another holder has it.
pub fn handle(locks: &WriteLocks, name: &str, req: &Request<RequestBody>) -> Response<Body> {
    let Some(token) = header_str(req.headers(), "x-nubo-lock-token") else {
        return text(StatusCode::BAD_REQUEST, "x-nubo-lock-token is missing");
    };
    if req.method() == lock_method() {
        let ttl = header_str(req.headers(), "x-nubo-lock-ttl-ms")
            .and_then(|v| v.parse().ok())
            .map_or(MAX_TTL, Duration::from_millis);
        if locks.acquire(name, &token, ttl, Instant::now()) {
            status(StatusCode::OK)
        } else {
            status(StatusCode::CONFLICT)
        }
    } else {
        locks.release(name, &token);
        status(StatusCode::OK)
    }
}

/// The methods a lease travels in.
pub fn lock_method() -> Method {
    Method::from_bytes(b"LOCK").expect("a valid method")
}

pub fn unlock_method() -> Method {
    Method::from_bytes(b"UNLOCK").expect("a valid method")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_until_release_or_expiry() {
        let locks = WriteLocks::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        assert!(locks.acquire("a/c/o", "one", ttl, t0));
        assert!(!locks.acquire("a/c/o", "two", ttl, t0));
        // Another name is free; the holder renews.
        assert!(locks.acquire("a/c/p", "two", ttl, t0));
        assert!(locks.acquire("a/c/o", "one", ttl, t0 + Duration::from_secs(4)));
        assert!(!locks.acquire("a/c/o", "two", ttl, t0 + Duration::from_secs(8)));
        // Only the holder releases.
        locks.release("a/c/o", "two");
        assert!(!locks.acquire("a/c/o", "two", ttl, t0 + Duration::from_secs(8)));
        locks.release("a/c/o", "one");
        assert!(locks.acquire("a/c/o", "two", ttl, t0 + Duration::from_secs(8)));
        // An ended lease is free for the next.
        assert!(locks.acquire("a/c/o", "three", ttl, t0 + Duration::from_secs(20)));
        // No lease outlives MAX_TTL.
        assert!(locks.acquire("x", "one", Duration::from_secs(3600), t0));
        assert!(locks.acquire("x", "two", ttl, t0 + MAX_TTL + Duration::from_secs(1)));
    }
}
