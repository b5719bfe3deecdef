//! Retention of versions (S3 Object Lock), in the object layer so that
//! every path obeys it: a version's mode (`GOVERNANCE`, `COMPLIANCE`) and
//! retain-until time, and its legal hold, kept as its system metadata. A
//! retained or held version cannot be deleted (S3's `DeleteObject` with a
//! `versionId`, Swift's `DELETE ?version-id=`); `GOVERNANCE` yields to a
//! caller that bypasses it. A container with Object Lock keeps versions
//! always, may give new versions a default retention, and takes no
//! `X-Delete-At` (the expirer would remove a retained version).
//!
//! The S3 front end sets and shows these (`s3/object_lock.rs`).

use super::objects::ObjectMeta;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use service_kit::http_util::header_str;

/// Object system metadata items.
pub const MODE_KEY: &str = "s3-lock-mode";
pub const UNTIL_KEY: &str = "s3-lock-until";
pub const HOLD_KEY: &str = "s3-legal-hold";

/// The container system metadata holding its Object Lock configuration.
pub const LOCK_HEADER: &str = "x-container-sysmeta-s3-object-lock";

/// A retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "GOVERNANCE")]
    Governance,
    #[serde(rename = "COMPLIANCE")]
    Compliance,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "GOVERNANCE" => Some(Mode::Governance),
            "COMPLIANCE" => Some(Mode::Compliance),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Governance => "GOVERNANCE",
            Mode::Compliance => "COMPLIANCE",
        }
    }
}

/// A container's Object Lock configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    /// The retention new versions get when their write names none:
    /// (mode, seconds).
    pub default: Option<(Mode, u64)>,
    /// The default was given in years (S3 shows it as it was set).
    #[serde(default)]
    pub in_years: bool,
}

impl LockConfig {
    /// The configuration a container's headers hold, if Object Lock is on.
    pub fn of(container: &HeaderMap) -> Option<LockConfig> {
        serde_json::from_str(&header_str(container, LOCK_HEADER)?).ok()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("json")
    }
}

/// What protects one version.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retention {
    pub mode: Option<Mode>,
    /// Unix seconds.
    pub until: Option<u64>,
    pub legal_hold: bool,
}

impl Retention {
    /// From a stored version's headers.
    pub fn of(headers: &HeaderMap) -> Retention {
        let sys = |k: &str| header_str(headers, &format!("x-object-sysmeta-{k}"));
        Retention {
            mode: sys(MODE_KEY).and_then(|m| Mode::parse(&m)),
            until: sys(UNTIL_KEY).and_then(|u| u.parse().ok()),
            legal_hold: sys(HOLD_KEY).as_deref() == Some("ON"),
        }
    }

    /// From metadata about to be written.
    pub fn of_meta(meta: &ObjectMeta) -> Retention {
        Retention {
            mode: meta.system(MODE_KEY).and_then(Mode::parse),
            until: meta.system(UNTIL_KEY).and_then(|u| u.parse().ok()),
            legal_hold: meta.system(HOLD_KEY) == Some("ON"),
        }
    }

    /// Whether the retention is in force at `now`.
    pub fn retained(&self, now: u64) -> bool {
        self.mode.is_some() && self.until.is_some_and(|u| u > now)
    }

    /// Why a delete at `now` is refused, if it is.
    pub fn refuses_delete(&self, now: u64, bypass_governance: bool) -> Option<&'static str> {
        if self.legal_hold {
            return Some("the object version is under a legal hold");
        }
        match self.mode {
            _ if !self.retained(now) => None,
            Some(Mode::Governance) if bypass_governance => None,
            _ => Some("the object version is protected by Object Lock retention"),
        }
    }

    /// Why replacing this retention with `new` at `now` is refused, if it
    /// is: compliance is never shortened or weakened; governance only by a
    /// caller that bypasses it.
    pub fn refuses_change(
        &self,
        new: &Retention,
        now: u64,
        bypass_governance: bool,
    ) -> Option<&'static str> {
        if !self.retained(now) {
            return None;
        }
        let shorter = new.until.unwrap_or(0) < self.until.unwrap_or(0);
        let weaker = self.mode == Some(Mode::Compliance) && new.mode != Some(Mode::Compliance);
        match self.mode {
            Some(Mode::Compliance) if shorter || weaker => {
                Some("a COMPLIANCE retention cannot be shortened or removed")
            }
            Some(Mode::Governance) if (shorter || new.mode.is_none()) && !bypass_governance => Some(
                "a GOVERNANCE retention is shortened only with x-amz-bypass-governance-retention",
            ),
            _ => None,
        }
    }

    /// The system metadata items that store it.
    pub fn system_meta(&self) -> Vec<(String, String)> {
        let mut items = Vec::new();
        if let (Some(m), Some(u)) = (self.mode, self.until) {
            items.push((MODE_KEY.to_string(), m.name().to_string()));
            items.push((UNTIL_KEY.to_string(), u.to_string()));
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mode: Option<Mode>, until: u64, hold: bool) -> Retention {
        Retention {
            mode,
            until: Some(until),
            legal_hold: hold,
        }
    }

    #[test]
    fn deletes_and_changes_follow_s3() {
        let now = 1000;
        assert_eq!(r(None, 2000, false).refuses_delete(now, false), None);
        assert!(r(Some(Mode::Compliance), 2000, false)
            .refuses_delete(now, true)
            .is_some());
        assert!(r(Some(Mode::Governance), 2000, false)
            .refuses_delete(now, false)
            .is_some());
        assert_eq!(
            r(Some(Mode::Governance), 2000, false).refuses_delete(now, true),
            None
        );
        assert_eq!(
            r(Some(Mode::Compliance), 500, false).refuses_delete(now, false),
            None
        );
        assert!(r(None, 0, true).refuses_delete(now, true).is_some());

        let compliance = r(Some(Mode::Compliance), 2000, false);
        assert!(compliance
            .refuses_change(&r(Some(Mode::Compliance), 1500, false), now, true)
            .is_some());
        assert!(compliance
            .refuses_change(&r(Some(Mode::Governance), 3000, false), now, true)
            .is_some());
        assert_eq!(
            compliance.refuses_change(&r(Some(Mode::Compliance), 3000, false), now, false),
            None
        );
        let governance = r(Some(Mode::Governance), 2000, false);
        assert!(governance
            .refuses_change(&r(Some(Mode::Governance), 1500, false), now, false)
            .is_some());
        assert_eq!(
            governance.refuses_change(&r(Some(Mode::Governance), 1500, false), now, true),
            None
        );
        let config = LockConfig {
            default: Some((Mode::Governance, 86_400)),
            in_years: false,
        };
        let mut h = HeaderMap::new();
        service_kit::http_util::set_header(&mut h, LOCK_HEADER, &config.encode());
        assert_eq!(LockConfig::of(&h), Some(config));
    }
}
