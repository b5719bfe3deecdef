//! Container ACLs. For requests without a token, as Swift's TempAuth
//! reads `X-Container-Read`: `.r:*` (anyone), `.r:<host>` or
//! `.r:.<domain>` (by `Referer`), `.r:-<host>` (a denial), and
//! `.rlistings` (the container may be listed, not only read). For users
//! of other projects, as Swift's keystoneauth reads `X-Container-Read` and
//! `X-Container-Write`: `<project>:<user>` items, each side an id, a name
//! or `*`.

/// What a container's read ACL grants an anonymous request.
#[derive(Debug, Default, PartialEq)]
pub struct PublicRead {
    pub objects: bool,
    pub listings: bool,
}

/// Reads `X-Container-Read` for a request with this `Referer`.
pub fn public_read(acl: &str, referrer: Option<&str>) -> PublicRead {
    let host = referrer.and_then(referrer_host).unwrap_or("unknown");
    let mut objects = false;
    let mut listings = false;
    for item in acl.split(',').map(str::trim) {
        if item == ".rlistings" {
            listings = true;
        } else if let Some(rule) = item
            .strip_prefix(".r:")
            .or_else(|| item.strip_prefix(".referrer:"))
        {
            let (deny, rule) = match rule.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rule),
            };
            let matches = rule == host || (rule.starts_with('.') && host.ends_with(rule));
            if deny {
                if matches {
                    objects = false;
                }
            } else if rule == "*" || matches {
                objects = true;
            }
        }
    }
    PublicRead {
        objects,
        listings: objects && listings,
    }
}

/// Who an ACL item may name: a user of a project, by id or by name.
pub struct AclUser<'a> {
    pub project_id: &'a str,
    pub project_name: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
}

/// Whether an ACL names this user (`<project>:<user>`, `*` on either side;
/// referrer and listing items are not users).
pub fn names_user(acl: &str, who: &AclUser) -> bool {
    acl.split(',')
        .map(str::trim)
        .filter(|item| !item.starts_with('.'))
        .filter_map(|item| item.split_once(':'))
        .any(|(p, u)| {
            (p == "*" || p == who.project_id || p == who.project_name)
                && (u == "*" || u == who.user_id || u == who.user_name)
        })
}

/// The host of a `Referer` URL.
fn referrer_host(referrer: &str) -> Option<&str> {
    let rest = referrer.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_rules_as_swift_reads_them() {
        let all = public_read(".r:*", None);
        assert_eq!((all.objects, all.listings), (true, false));
        assert!(public_read(".r:*,.rlistings", None).listings);
        assert!(
            !public_read(".rlistings", None).listings,
            "listings need read"
        );
        let site = ".r:.example.com,.r:-bad.example.com";
        assert!(public_read(site, Some("https://www.example.com/page")).objects);
        assert!(!public_read(site, Some("https://bad.example.com/")).objects);
        assert!(!public_read(site, Some("https://other.org/")).objects);
        assert!(!public_read(site, None).objects);
        assert!(!public_read("AUTH_test:tester", None).objects);
        assert!(!public_read("", None).objects);
    }

    #[test]
    fn user_items_as_keystoneauth_reads_them() {
        let who = AclUser {
            project_id: "p1d",
            project_name: "team",
            user_id: "u1d",
            user_name: "writer",
        };
        for granted in [
            "p1d:u1d",
            "team:writer",
            "team:*",
            "*:writer",
            "*:*",
            ".r:*, team:u1d",
        ] {
            assert!(names_user(granted, &who), "{granted}");
        }
        for refused in ["", ".r:*", "other:writer", "team:other", "team", "p1d", "*"] {
            assert!(!names_user(refused, &who), "{refused}");
        }
    }
}
