//! HTTP Range for object GETs (RFC 9110 byte ranges), resolved against an
//! object's size.

/// What a Range header asks of an object of a given size.
#[derive(Debug, PartialEq)]
pub enum Ranges {
    /// No Range header, or one we ignore (bad syntax): the whole object.
    Whole,
    /// Inclusive (first, last) byte offsets, in request order.
    Parts(Vec<(u64, u64)>),
    /// Well-formed but no range overlaps the object: 416.
    Unsatisfiable,
}

/// More ranges than this in one request are refused as abusive (Swift: 100).
const MAX_RANGES: usize = 100;

/// Resolves a Range header against an object of `size` bytes.
pub fn resolve(header: Option<&str>, size: u64) -> Ranges {
    // The unit is case-insensitive and may have spaces around it
    // (`BYTES=0-9`, `bytes = 0-9`), as Swift's parser takes it.
    let Some(spec) = header
        .and_then(|h| h.split_once('='))
        .filter(|(unit, _)| unit.trim().eq_ignore_ascii_case("bytes"))
        .map(|(_, spec)| spec)
    else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    let mut any = false;
    for item in spec.split(',') {
        let item = item.trim();
        let Some((a, b)) = item.split_once('-') else {
            return Ranges::Whole;
        };
        let range = match (a.trim(), b.trim()) {
            ("", "") => return Ranges::Whole,
            ("", suffix) => match suffix.parse::<u64>() {
                Ok(0) => None,
                Ok(n) if size > 0 => Some((size.saturating_sub(n), size - 1)),
                Ok(_) => None,
                Err(_) => return Ranges::Whole,
            },
            (first, "") => match first.parse::<u64>() {
                Ok(f) if f < size => Some((f, size - 1)),
                Ok(_) => None,
                Err(_) => return Ranges::Whole,
            },
            (first, last) => match (first.parse::<u64>(), last.parse::<u64>()) {
                (Ok(f), Ok(l)) if f > l => return Ranges::Whole,
                (Ok(f), Ok(l)) if f < size => Some((f, l.min(size - 1))),
                (Ok(_), Ok(_)) => None,
                _ => return Ranges::Whole,
            },
        };
        any = true;
        if let Some(r) = range {
            parts.push(r);
        }
    }
    if !any {
        return Ranges::Whole;
    }
    if parts.is_empty() || parts.len() > MAX_RANGES {
        return Ranges::Unsatisfiable;
    }
    Ranges::Parts(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_ranges() {
        assert_eq!(resolve(None, 10), Ranges::Whole);
        assert_eq!(resolve(Some("bytes=0-4"), 10), Ranges::Parts(vec![(0, 4)]));
        assert_eq!(resolve(Some("bytes=5-"), 10), Ranges::Parts(vec![(5, 9)]));
        assert_eq!(resolve(Some("BYTES=0-4"), 10), Ranges::Parts(vec![(0, 4)]));
        assert_eq!(
            resolve(Some(" bytes = 0-4"), 10),
            Ranges::Parts(vec![(0, 4)])
        );
        assert_eq!(resolve(Some("items=0-4"), 10), Ranges::Whole);
        assert_eq!(resolve(Some("bytes=-3"), 10), Ranges::Parts(vec![(7, 9)]));
        assert_eq!(resolve(Some("bytes=-30"), 10), Ranges::Parts(vec![(0, 9)]));
        assert_eq!(
            resolve(Some("bytes=8-100"), 10),
            Ranges::Parts(vec![(8, 9)])
        );
        assert_eq!(
            resolve(Some("bytes=0-0, 2-3,-1"), 10),
            Ranges::Parts(vec![(0, 0), (2, 3), (9, 9)])
        );
        assert_eq!(resolve(Some("bytes=10-"), 10), Ranges::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=20-30"), 10), Ranges::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-0"), 10), Ranges::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=5-2"), 10), Ranges::Whole);
        assert_eq!(resolve(Some("bytes=x-2"), 10), Ranges::Whole);
        assert_eq!(resolve(Some("items=0-2"), 10), Ranges::Whole);
        assert_eq!(resolve(Some("bytes=0-1"), 0), Ranges::Unsatisfiable);
    }
}
