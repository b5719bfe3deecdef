//! Container read ACLs for requests without a token, as Swift's TempAuth
//! reads `X-Container-Read`: `.r:*` (anyone), `.r:<host>` or
//! `.r:.<domain>` (by `Referer`), `.r:-<host>` (a denial), and
//! `.rlistings` (the container may be listed, not only read).
//! Users and groups named in the ACL need the identity service and are
//! not granted anything here.

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
}
