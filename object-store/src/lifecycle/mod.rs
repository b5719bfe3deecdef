//! Lifecycle: a bucket's rules (S3's lifecycle configuration, kept as
//! container system metadata in JSON) and the pure decisions they make
//! about one object, one version or one multipart upload at a given time.
//! The S3 front end reads and writes the rules (`s3/lifecycle.rs`); the
//! storage nodes' [`worker`] applies them.
//!
//! Days count as S3 (and MinIO) count them: from the object's creation,
//! rounded up to the next midnight UTC, so an object made at 10:30 on day D
//! with `Days: 1` expires at 00:00 on day D+2.

pub mod worker;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use service_kit::http_util::header_str;

/// The container system metadata header the rules live under.
pub const HEADER: &str = "x-container-sysmeta-s3-lifecycle";

pub const DAY: u64 = 86_400;

/// A bucket's lifecycle configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub filter: Filter,
    /// Whether the filter was given as the rule's own `Prefix` (S3's first
    /// syntax), shown back the same way.
    #[serde(default)]
    pub legacy_prefix: bool,
    pub expiration: Option<Expiration>,
    pub noncurrent: Option<Noncurrent>,
    /// Incomplete multipart uploads are aborted this many days after they
    /// began.
    pub abort_after_days: Option<u32>,
}

/// Which objects a rule applies to: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub prefix: String,
    pub tags: Vec<(String, String)>,
    pub size_greater_than: Option<u64>,
    pub size_less_than: Option<u64>,
    /// The tags and sizes were given under `And`.
    #[serde(default)]
    pub and: bool,
}

/// When current versions expire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Expiration {
    /// This many days after creation (rounded up to midnight UTC).
    Days(u32),
    /// At this time (Unix seconds, a midnight UTC).
    Date(u64),
    /// A delete marker that is a key's only version is removed.
    ExpiredDeleteMarker,
}

/// When noncurrent versions expire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noncurrent {
    /// Days after the version stopped being current.
    pub days: u32,
    /// This many newer noncurrent versions are kept whatever their age.
    pub keep_newer: Option<u32>,
}

/// What the rules need to know of one object or version.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub key: &'a str,
    pub size: u64,
    /// `None`: not read (no rule that could apply filters by tags).
    pub tags: Option<&'a [(String, String)]>,
}

impl Rules {
    /// The rules a container's headers hold, if any.
    pub fn of(container: &HeaderMap) -> Option<Rules> {
        let kept = header_str(container, HEADER)?;
        if kept.is_empty() {
            return None;
        }
        serde_json::from_str(&kept).ok()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("json")
    }

    fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }

    /// Whether any enabled rule that could apply to `key` filters by tags
    /// (so the object's tags must be read before deciding).
    pub fn needs_tags(&self, key: &str) -> bool {
        self.enabled()
            .any(|r| !r.filter.tags.is_empty() && key.starts_with(&r.filter.prefix))
    }

    /// When the current version described by `facts`, created at
    /// `created`, expires, and by which rule: the earliest of the rules
    /// that apply.
    pub fn current_expiry(&self, facts: &Facts, created: u64) -> Option<(u64, &Rule)> {
        self.enabled()
            .filter(|r| r.filter.matches(facts))
            .filter_map(|r| {
                let at = match r.expiration.as_ref()? {
                    Expiration::Days(d) => due(created, *d),
                    Expiration::Date(at) => *at,
                    Expiration::ExpiredDeleteMarker => return None,
                };
                Some((at, r))
            })
            .min_by_key(|(at, _)| *at)
    }

    /// Whether a delete marker that is its key's only version is removed.
    pub fn removes_lone_marker(&self, key: &str) -> bool {
        let facts = Facts {
            key,
            ..Default::default()
        };
        self.enabled().any(|r| {
            r.expiration == Some(Expiration::ExpiredDeleteMarker) && r.filter.matches(&facts)
        })
    }

    /// Whether a noncurrent version expires at `now`: it stopped being
    /// current at `noncurrent_since`, and `newer_noncurrent` noncurrent
    /// versions of its key are newer than it.
    pub fn noncurrent_expires(
        &self,
        facts: &Facts,
        noncurrent_since: u64,
        newer_noncurrent: u32,
        now: u64,
    ) -> bool {
        self.enabled()
            .filter(|r| r.filter.matches(facts))
            .filter_map(|r| r.noncurrent.as_ref())
            .any(|n| {
                due(noncurrent_since, n.days) <= now
                    && n.keep_newer.is_none_or(|keep| newer_noncurrent >= keep)
            })
    }

    /// Whether a multipart upload of `key` begun at `initiated` is aborted
    /// at `now`.
    pub fn aborts_upload(&self, key: &str, initiated: u64, now: u64) -> bool {
        let facts = Facts {
            key,
            ..Default::default()
        };
        self.enabled()
            .filter(|r| r.filter.matches(&facts))
            .filter_map(|r| r.abort_after_days)
            .any(|d| due(initiated, d) <= now)
    }

    /// Whether any rule acts on noncurrent versions or delete markers (so
    /// a versioned bucket's versions must be listed).
    pub fn acts_on_versions(&self) -> bool {
        self.enabled().any(|r| {
            r.noncurrent.is_some() || r.expiration == Some(Expiration::ExpiredDeleteMarker)
        })
    }

    /// Whether any rule aborts uploads.
    pub fn aborts_uploads(&self) -> bool {
        self.enabled().any(|r| r.abort_after_days.is_some())
    }
}

impl Filter {
    /// Whether the object fits. Tags not read count as none, so a tag
    /// filter never matches an object whose tags are unknown.
    pub fn matches(&self, facts: &Facts) -> bool {
        if !facts.key.starts_with(&self.prefix) {
            return false;
        }
        if self.size_greater_than.is_some_and(|n| facts.size <= n) {
            return false;
        }
        if self.size_less_than.is_some_and(|n| facts.size >= n) {
            return false;
        }
        let tags = facts.tags.unwrap_or_default();
        self.tags.iter().all(|t| tags.contains(t))
    }
}

/// `days` after `from`, rounded up to the next midnight UTC.
pub fn due(from: u64, days: u32) -> u64 {
    (from / DAY + u64::from(days) + 1) * DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, prefix: &str) -> Rule {
        Rule {
            id: id.into(),
            enabled: true,
            filter: Filter {
                prefix: prefix.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn facts(key: &str, size: u64) -> Facts<'_> {
        Facts {
            key,
            size,
            tags: None,
        }
    }

    #[test]
    fn days_round_up_to_midnight() {
        let d15_1030 = 15 * DAY + 10 * 3600 + 1800;
        assert_eq!(due(d15_1030, 3), 19 * DAY);
        assert_eq!(due(15 * DAY, 1), 17 * DAY);
        assert_eq!(due(15 * DAY - 1, 1), 16 * DAY);
    }

    #[test]
    fn the_earliest_applying_rule_wins() {
        let mut a = rule("a", "logs/");
        a.expiration = Some(Expiration::Days(10));
        let mut b = rule("b", "");
        b.expiration = Some(Expiration::Days(3));
        let mut c = rule("c", "");
        c.expiration = Some(Expiration::Days(1));
        c.enabled = false;
        let rules = Rules {
            rules: vec![a, b, c],
        };
        let (at, r) = rules.current_expiry(&facts("logs/x", 1), 0).unwrap();
        assert_eq!((at, r.id.as_str()), (4 * DAY, "b"));
        let only_a = Rules {
            rules: rules.rules[..1].to_vec(),
        };
        assert!(only_a.current_expiry(&facts("data/x", 1), 0).is_none());
    }

    #[test]
    fn filters_need_every_condition() {
        let f = Filter {
            prefix: "p/".into(),
            tags: vec![("k".into(), "v".into())],
            size_greater_than: Some(10),
            size_less_than: Some(100),
            and: true,
        };
        let tags = vec![("k".to_string(), "v".to_string()), ("o".into(), "x".into())];
        let ok = Facts {
            key: "p/a",
            size: 50,
            tags: Some(&tags),
        };
        assert!(f.matches(&ok));
        assert!(!f.matches(&Facts {
            key: "q/a",
            ..ok.clone()
        }));
        assert!(!f.matches(&Facts {
            size: 10,
            ..ok.clone()
        }));
        assert!(!f.matches(&Facts {
            size: 100,
            ..ok.clone()
        }));
        assert!(!f.matches(&Facts {
            tags: None,
            ..ok.clone()
        }));
        let other = vec![("k".to_string(), "w".to_string())];
        assert!(!f.matches(&Facts {
            tags: Some(&other),
            ..ok
        }));
    }

    #[test]
    fn noncurrent_versions_keep_the_newer_ones() {
        let mut r = rule("n", "");
        r.noncurrent = Some(Noncurrent {
            days: 1,
            keep_newer: Some(2),
        });
        let rules = Rules { rules: vec![r] };
        let f = facts("k", 1);
        // Not yet due.
        assert!(!rules.noncurrent_expires(&f, 10 * DAY, 5, 11 * DAY));
        // Due, but only 1 newer noncurrent version: kept.
        assert!(!rules.noncurrent_expires(&f, 10 * DAY, 1, 12 * DAY));
        assert!(rules.noncurrent_expires(&f, 10 * DAY, 2, 12 * DAY));
    }

    #[test]
    fn uploads_and_markers() {
        let mut r = rule("u", "tmp/");
        r.abort_after_days = Some(2);
        r.expiration = Some(Expiration::ExpiredDeleteMarker);
        let rules = Rules { rules: vec![r] };
        assert!(rules.aborts_upload("tmp/a", 0, 3 * DAY));
        assert!(!rules.aborts_upload("tmp/a", 0, 3 * DAY - 1));
        assert!(!rules.aborts_upload("other", 0, 30 * DAY));
        assert!(rules.removes_lone_marker("tmp/x"));
        assert!(!rules.removes_lone_marker("x"));
        assert!(rules.acts_on_versions() && rules.aborts_uploads());
    }

    #[test]
    fn kept_form_round_trips() {
        let mut r = rule("r", "a/");
        r.expiration = Some(Expiration::Date(20 * DAY));
        let rules = Rules { rules: vec![r] };
        let mut h = HeaderMap::new();
        service_kit::http_util::set_header(&mut h, HEADER, &rules.encode());
        assert_eq!(Rules::of(&h), Some(rules));
        service_kit::http_util::set_header(&mut h, HEADER, "");
        assert_eq!(Rules::of(&h), None);
    }
}
