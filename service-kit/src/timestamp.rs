//! Swift-style timestamps: the version of every record, newest wins.
//!
//! A timestamp is a count of 10-microsecond ticks since the Unix epoch,
//! written as Swift writes it (`1700000000.12345`, always 10.5 digits, so
//! that text order is time order and file names sort by age).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A time in 10-microsecond ticks since the Unix epoch.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

const TICKS_PER_SECOND: u64 = 100_000;

impl Timestamp {
    /// The epoch: older than every real version.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The current time, strictly after every timestamp this process handed out
    /// before, so that two quick writes from one proxy never tie.
    pub fn now() -> Timestamp {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64 / 10)
            .unwrap_or(0);
        let mut last = LAST.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Timestamp(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// The start of a Unix second.
    pub fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(TICKS_PER_SECOND))
    }

    /// The Unix second it falls in.
    pub fn secs(self) -> u64 {
        self.0 / TICKS_PER_SECOND
    }

    /// `Last-Modified` / `If-Modified-Since` form (whole seconds).
    pub fn http_date(self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(self.secs()))
    }

    /// ISO 8601 with microseconds, as Swift's JSON listings show `last_modified`.
    pub fn iso8601(self) -> String {
        let secs = self.secs();
        let micros = (self.0 % TICKS_PER_SECOND) * 10;
        let (y, mo, d, h, mi, s) = civil_from_unix(secs);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}")
    }
}

impl Timestamp {
    /// Parses the listing form written by [`Timestamp::iso8601`].
    pub fn from_iso8601(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let micros = match s.get(19..) {
            Some(f) if f.starts_with('.') && f.len() > 1 => {
                let digits: String = f[1..].chars().take(6).collect();
                format!("{digits:0<6}").parse::<i64>().ok()?
            }
            _ => 0,
        };
        // Days from civil (Howard Hinnant).
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (mo + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
        if secs < 0 {
            return None;
        }
        Some(Timestamp(
            secs as u64 * TICKS_PER_SECOND + micros as u64 / 10,
        ))
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> std::time::SystemTime {
        UNIX_EPOCH + std::time::Duration::from_micros(self.0 * 10)
    }
}

/// Days-from-civil inverse (Howard Hinnant's algorithm), to avoid a date crate
/// for one formatting routine.
fn civil_from_unix(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y as u64,
        m as u64,
        d as u64,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:010}.{:05}",
            self.0 / TICKS_PER_SECOND,
            self.0 % TICKS_PER_SECOND
        )
    }
}

/// Text that is not a timestamp.
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {0:?}")]
pub struct BadTimestamp(String);

impl FromStr for Timestamp {
    type Err = BadTimestamp;
    /// Accepts `secs`, `secs.fraction` (up to 5 digits kept), as Swift sends them.
    fn from_str(s: &str) -> Result<Timestamp, BadTimestamp> {
        let bad = || BadTimestamp(s.chars().take(40).collect());
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() || whole.len() > 12 || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let secs: u64 = whole.parse().map_err(|_| bad())?;
        let mut ticks = 0u64;
        for b in frac.bytes().chain(std::iter::repeat(b'0')).take(5) {
            ticks = ticks * 10 + u64::from(b - b'0');
        }
        Ok(Timestamp(secs * TICKS_PER_SECOND + ticks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let t: Timestamp = "1700000000.12345".parse().unwrap();
        assert_eq!(t.to_string(), "1700000000.12345");
        assert_eq!(
            "17.5".parse::<Timestamp>().unwrap().to_string(),
            "0000000017.50000"
        );
        let a = Timestamp(5).to_string();
        let b = Timestamp(170_000_000_000_000).to_string();
        assert!(a < b);
        for bad in ["", "x", "1.2.3", "-1", "1.abc", "9999999999999"] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn now_is_strictly_increasing() {
        let a = Timestamp::now();
        let b = Timestamp::now();
        assert!(b > a);
    }

    #[test]
    fn formats_dates() {
        let t = Timestamp::from_secs(1_700_000_000);
        assert_eq!(t.iso8601(), "2023-11-14T22:13:20.000000");
        let u: Timestamp = "1795500043.03176".parse().unwrap();
        assert_eq!(Timestamp::from_iso8601(&u.iso8601()), Some(u));
        assert_eq!(
            Timestamp::from_iso8601("2000-02-29T00:00:00"),
            Some(Timestamp::from_secs(951_782_400))
        );
        assert_eq!(Timestamp::from_iso8601("garbage"), None);
        assert_eq!(t.http_date(), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
