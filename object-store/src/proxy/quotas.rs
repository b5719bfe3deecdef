//! Quotas (Swift's `container_quotas` and `account_quotas` middleware): a
//! container's `X-Container-Meta-Quota-Bytes` and `-Quota-Count`, and an
//! account's `X-Account-Meta-Quota-Bytes` (set by an operator only), bound
//! what writes may add; a write past one is refused (Swift: 413) and
//! stores nothing. Both APIs' writes are checked, as Swift's s3api writes
//! pass the same middleware.

use super::objects::{ObjectError, ObjectResult, Objects};
use http::HeaderMap;
use service_kit::http_util::header_str;

pub const QUOTA_BYTES: &str = "x-container-meta-quota-bytes";
pub const QUOTA_COUNT: &str = "x-container-meta-quota-count";
pub const ACCOUNT_QUOTA_BYTES: &str = "x-account-meta-quota-bytes";

/// A container's quotas, from its headers.
#[derive(Debug, Default, PartialEq)]
pub struct Quota {
    pub bytes: Option<u64>,
    pub count: Option<u64>,
}

impl Quota {
    pub fn of(headers: &HeaderMap) -> Quota {
        let num = |name| header_str(headers, name).and_then(|v| v.trim().parse().ok());
        Quota {
            bytes: num(QUOTA_BYTES),
            count: num(QUOTA_COUNT),
        }
    }

    fn is_set(&self) -> bool {
        self.bytes.is_some() || self.count.is_some()
    }

    /// Whether one more object of `length` bytes (unknown: 0, as Swift
    /// counts a chunked upload) fits beside `used` bytes in `objects`.
    pub fn admits(&self, used: u64, objects: u64, length: Option<u64>) -> bool {
        let bytes_ok = self
            .bytes
            .is_none_or(|q| used.saturating_add(length.unwrap_or(0)) <= q);
        let count_ok = self.count.is_none_or(|q| objects < q);
        bytes_ok && count_ok
    }
}

/// Checks quota values a client sets: digits, or empty (a removal).
pub fn check_values(headers: &HeaderMap) -> Result<(), String> {
    for (name, what) in [(QUOTA_BYTES, "bytes"), (QUOTA_COUNT, "count")] {
        if let Some(v) = header_str(headers, name) {
            if !v.is_empty() && !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("Invalid {what} quota."));
            }
        }
    }
    Ok(())
}

impl Objects {
    /// Refuses a write of `length` bytes into a container whose quota it
    /// would pass. The counts are read afresh when a quota is set (a
    /// cached count would let quick writes past it).
    pub(super) async fn check_quota(
        &self,
        account: &str,
        container: &str,
        cached: &HeaderMap,
        length: Option<u64>,
    ) -> ObjectResult<()> {
        if !Quota::of(cached).is_set() {
            return Ok(());
        }
        let now = self.head_container(account, container).await?;
        let count = |name| {
            header_str(&now, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (used, objects) = (
            count("x-container-bytes-used"),
            count("x-container-object-count"),
        );
        if Quota::of(&now).admits(used, objects, length) {
            Ok(())
        } else {
            Err(ObjectError::QuotaExceeded)
        }
    }
}

impl Objects {
    /// Refuses a write of `length` bytes into an account whose quota it
    /// would pass (the account's bytes read afresh when a quota is set).
    pub(super) async fn check_account_quota(
        &self,
        account: &str,
        length: Option<u64>,
    ) -> ObjectResult<()> {
        let quota = |h: &HeaderMap| {
            header_str(h, ACCOUNT_QUOTA_BYTES).and_then(|v| v.trim().parse::<u64>().ok())
        };
        let cached = self.account_meta(account).await?;
        if quota(&cached).is_none() {
            return Ok(());
        }
        let now = self.head_account(account).await?;
        let used: u64 = header_str(&now, "x-account-bytes-used")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let quota = Quota {
            bytes: quota(&now),
            count: None,
        };
        if quota.admits(used, 0, length) {
            Ok(())
        } else {
            Err(ObjectError::QuotaExceeded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::http_util::set_header;

    #[test]
    fn quotas_admit_what_fits() {
        let q = Quota {
            bytes: Some(100),
            count: Some(3),
        };
        assert!(q.admits(90, 0, Some(10)));
        assert!(!q.admits(90, 0, Some(11)));
        assert!(q.admits(100, 0, None), "a chunked upload is counted as 0");
        assert!(!q.admits(101, 0, None));
        assert!(q.admits(0, 2, Some(1)));
        assert!(!q.admits(0, 3, Some(1)));
        assert!(Quota::default().admits(u64::MAX, u64::MAX - 1, Some(u64::MAX)));
        let mut h = HeaderMap::new();
        set_header(&mut h, QUOTA_BYTES, "12x");
        assert_eq!(check_values(&h), Err("Invalid bytes quota.".into()));
        set_header(&mut h, QUOTA_BYTES, "");
        set_header(&mut h, QUOTA_COUNT, "5");
        assert_eq!(check_values(&h), Ok(()));
        assert_eq!(
            Quota::of(&h),
            Quota {
                bytes: None,
                count: Some(5)
            }
        );
    }
}
