//! The names of object versions, and where they are placed.
//!
//! A container's versions live in a hidden container,
//! `\0versions\0<container>` (no client can name it: names with NUL are
//! refused), as `<object>\0<inverted time>` so that a listing gives each
//! object's versions newest first; the null version ends in `n`.
//!
//! A version is placed on the ring with its object (the partition of
//! `<container>/<object>`, not of its own name), so that the devices that
//! hold an object hold its versions too: a node stores a new version and
//! makes it current in one batch ([`crate::object_server`]). Likewise the
//! versions container is placed with its container, so that the two
//! listing rows of a versioned write reach the same container servers.
//!
//! Shared by the proxy, which names versions, and the storage nodes, which
//! check that a version and the link made current with it belong together.

use service_kit::timestamp::Timestamp;

/// The NUL-led prefix of every versions container.
const PREFIX: &str = "\0versions\0";
/// The id of the null version.
pub const NULL: &str = "null";

/// The hidden container of a container's versions.
pub fn versions_container(container: &str) -> String {
    format!("{PREFIX}{container}")
}

/// Whether a container is hidden (a versions container).
pub fn is_hidden(container: &str) -> bool {
    container.starts_with('\0')
}

/// A version's name in the versions container.
pub fn version_name(object: &str, at: Timestamp, null: bool) -> String {
    format!(
        "{object}\0{:020}{}",
        u64::MAX - at.0,
        if null { "n" } else { "" }
    )
}

/// A version as its name in the versions container says.
#[derive(Clone, Debug, PartialEq)]
pub struct Named {
    pub object: String,
    pub at: Timestamp,
    pub null: bool,
}

pub fn parse_version_name(name: &str) -> Option<Named> {
    let (object, rest) = name.rsplit_once('\0')?;
    let (digits, null) = match rest.strip_suffix('n') {
        Some(d) => (d, true),
        None => (rest, false),
    };
    let inverted: u64 = digits.parse().ok()?;
    Some(Named {
        object: object.to_string(),
        at: Timestamp(u64::MAX - inverted),
        null,
    })
}

impl Named {
    pub fn id(&self) -> String {
        if self.null {
            NULL.into()
        } else {
            self.at.to_string()
        }
    }
}

/// The system metadata that marks an object's current record as a link
/// to one of its versions (not a plain object: a null version), and its
/// key as the proxy names system metadata.
pub const LINK_MARK: &str = "x-object-sysmeta-version-link";
pub const LINK_MARK_KEY: &str = "version-link";

/// Whether a stored object is a link to one of its versions (and not a
/// plain object or a client's own symlink: a null version).
pub fn is_version_link(record: &crate::records::ObjectRecord) -> bool {
    record.headers.contains_key(LINK_MARK)
}

/// [`is_version_link`] of an object as a node's answer shows it.
pub fn is_version_link_answer(headers: &http::HeaderMap) -> bool {
    headers.contains_key(LINK_MARK)
}

/// Where a container is placed on the ring: a versions container with the
/// container it keeps the versions of, so that a version's listing row and
/// its object's go to the same container servers, in one batch.
pub fn container_placement(container: &str) -> &str {
    container.strip_prefix(PREFIX).unwrap_or(container)
}

/// Where an object is placed on the ring: a version with its object
/// (`<container>/<object>`), anything else by its own name.
pub fn placement<'a>(container: &'a str, object: &'a str) -> (&'a str, &'a str) {
    match (container.strip_prefix(PREFIX), object.rsplit_once('\0')) {
        (Some(owner), Some((of, _))) if parse_version_name(object).is_some() => (owner, of),
        _ => (container, object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_newest_first_and_parse_back() {
        let old = version_name("a/b", Timestamp(100), false);
        let new = version_name("a/b", Timestamp(200), false);
        let null = version_name("a/b", Timestamp(150), true);
        let mut names = vec![old.clone(), null.clone(), new.clone()];
        names.sort();
        assert_eq!(names, [new.clone(), null.clone(), old.clone()]);
        let parsed = parse_version_name(&null).expect("parses");
        assert_eq!(parsed.object, "a/b");
        assert_eq!(parsed.at, Timestamp(150));
        assert!(parsed.null);
        assert_eq!(parsed.id(), NULL);
        assert_eq!(
            parse_version_name(&new).unwrap().id(),
            Timestamp(200).to_string()
        );
        // A longer name with the same start sorts after every version.
        assert!(version_name("a/b", Timestamp(1), false).as_str() < "a/b\u{1}");
        assert!(parse_version_name("plain").is_none());
    }

    #[test]
    fn versions_are_placed_with_their_object() {
        let v = version_name("a/b", Timestamp(100), false);
        assert_eq!(placement(&versions_container("c"), &v), ("c", "a/b"));
        assert_eq!(placement("c", "a/b"), ("c", "a/b"));
        assert_eq!(container_placement(&versions_container("c")), "c");
        assert_eq!(container_placement("c"), "c");
        // A name in a versions container that is not a version's stays put.
        assert_eq!(
            placement(&versions_container("c"), "x"),
            (versions_container("c").as_str(), "x")
        );
    }
}
