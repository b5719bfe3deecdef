//! The limits of the object store, whichever API a request comes through
//! (Swift's constraints; S3 clients meet the same ones). `/info` reports
//! them.

/// The largest object one PUT may store (larger ones are segmented).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_ACCOUNT_NAME: usize = 256;
pub const MAX_CONTAINER_NAME: usize = 256;
pub const MAX_OBJECT_NAME: usize = 1024;
pub const MAX_META_NAME: usize = 128;
pub const MAX_META_VALUE: usize = 256;
pub const MAX_META_COUNT: usize = 90;
pub const MAX_META_OVERALL: usize = 4096;
/// Segments one static large object may list.
pub const MAX_MANIFEST_SEGMENTS: usize = 1000;
/// The largest manifest body a client may send.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Listings return at most this many entries per page.
pub const MAX_LISTING: usize = 10_000;

/// Checks metadata items (`name`, raw value) of a `kind` (`object`,
/// `container`, `account`) against the limits; the message names the item.
pub fn check_metadata<'a>(
    kind: &str,
    items: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), String> {
    let prefix = format!("x-{kind}-meta-");
    let (mut count, mut total) = (0usize, 0usize);
    for (key, value) in items {
        if key.is_empty() {
            return Err("Metadata name cannot be empty".into());
        }
        if std::str::from_utf8(value).is_err() {
            return Err("Metadata must be valid UTF-8".into());
        }
        if key.len() > MAX_META_NAME {
            return Err(format!("Metadata name too long: {prefix}{key}"));
        }
        if value.len() > MAX_META_VALUE {
            return Err(format!(
                "Metadata value longer than {MAX_META_VALUE}: {prefix}{key}"
            ));
        }
        count += 1;
        total += key.len() + value.len();
    }
    if count > MAX_META_COUNT {
        return Err(format!("Too many metadata items; max {MAX_META_COUNT}"));
    }
    if total > MAX_META_OVERALL {
        return Err(format!("Total metadata too large; max {MAX_META_OVERALL}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_limits_name_the_item() {
        let ok = [("color", b"blue".as_slice())];
        assert!(check_metadata("object", ok).is_ok());
        let long_name = "n".repeat(MAX_META_NAME + 1);
        let e = check_metadata("object", [(long_name.as_str(), b"v".as_slice())]).unwrap_err();
        assert!(e.contains("x-object-meta-nnn"), "{e}");
        let long_value = vec![b'v'; MAX_META_VALUE + 1];
        assert!(check_metadata("container", [("k", long_value.as_slice())]).is_err());
        assert!(check_metadata("object", [("", b"v".as_slice())]).is_err());
        assert!(check_metadata("object", [("k", b"\xff".as_slice())]).is_err());
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_META_COUNT)
            .map(|i| (format!("k{i}"), b"v".to_vec()))
            .collect();
        let e = check_metadata(
            "account",
            many.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
        .unwrap_err();
        assert!(e.starts_with("Too many metadata items"), "{e}");
    }
}
