//! VMDK: a hosted sparse extent (`KDMV`, little-endian) with an embedded
//! text descriptor, or a descriptor file on its own (`# Disk
//! DescriptorFile`). The descriptor is where the danger is: an extent line
//! can name any file of the host (CVE-2022-47951), and `parentFileNameHint`
//! a backing file.
//!
//! Sparse header: capacity (sectors) at 12, grain size at 20, descriptor
//! offset/size (sectors) at 28/36, grain directory offset at 56; a
//! streamOptimized image may put the real header in a footer before the
//! end-of-stream marker (grain directory offset `GD_AT_END`).

use super::source::{le_u32, le_u64, peek, read, Source};
use super::{Found, InspectError};

const FORMAT: &str = "vmdk";
const MAGIC: &[u8] = b"KDMV";
const DESCRIPTOR_FILE: &[u8] = b"# Disk DescriptorFile";
const MAX_DESCRIPTOR: u64 = 1 << 20;
const GD_AT_END: u64 = u64::MAX;
const MARKER_FOOTER: u32 = 3;

pub fn matches(src: &dyn Source) -> bool {
    peek(src, 0, 4).is_some_and(|m| m == MAGIC)
        || peek(src, 0, DESCRIPTOR_FILE.len()).is_some_and(|m| m == DESCRIPTOR_FILE)
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    if peek(src, 0, 4).is_none_or(|m| m != MAGIC) {
        // A descriptor alone keeps its data in other files.
        return Err(bad("is a descriptor file whose extents are other files"));
    }
    let h = read(src, FORMAT, 0, 512)?;
    let capacity = le_u64(&h, 12);
    let desc_at = le_u64(&h, 28).saturating_mul(512);
    let desc_len = le_u64(&h, 36).saturating_mul(512);
    if desc_len == 0 {
        return Err(bad("has no embedded descriptor"));
    }
    if desc_len > MAX_DESCRIPTOR {
        return Err(bad(format!(
            "has a descriptor of {desc_len} bytes (at most 1 MiB)"
        )));
    }
    let text = read(src, FORMAT, desc_at, desc_len)?;
    let create_type = check_descriptor(&text)?;
    if create_type == "streamOptimized" {
        check_stream_end(src, &h)?;
    }
    let virtual_size = capacity
        .checked_mul(512)
        .ok_or_else(|| bad("has an impossible capacity"))?;
    Ok(Found {
        virtual_size,
        variant: format!("vmdk {create_type}"),
    })
}

/// Check 4: only monolithicSparse and streamOptimized, every line of a
/// known kind, no parent, exactly one extent and it names no other file.
/// Returns the create type.
pub fn check_descriptor(raw: &[u8]) -> Result<String, InspectError> {
    // The embedded area is padded with NULs after the text.
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let text =
        std::str::from_utf8(&raw[..end]).map_err(|_| bad("has a descriptor that is not text"))?;
    let mut create_type = None;
    let mut extents = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(extent) = parse_extent(line) {
            extents.push(extent);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(format!(
                "has a descriptor line it cannot accept: {line:?}"
            )));
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        if !key_ok {
            return Err(bad(format!(
                "has a descriptor line it cannot accept: {line:?}"
            )));
        }
        match key {
            "createType" => create_type = Some(value.to_string()),
            "parentCID" if !value.eq_ignore_ascii_case("ffffffff") => {
                return Err(bad("has a backing file (parentCID)"))
            }
            "parentFileNameHint" => return Err(bad("has a backing file (parentFileNameHint)")),
            _ => {}
        }
    }
    let create_type = create_type.ok_or_else(|| bad("has no createType"))?;
    if create_type != "monolithicSparse" && create_type != "streamOptimized" {
        return Err(bad(format!(
            "has createType {create_type:?} (only monolithicSparse and streamOptimized)"
        )));
    }
    match extents.as_slice() {
        [] => Err(bad("has no extent")),
        [(kind, file)] => {
            if file.contains('/') || file.contains('\\') || file.is_empty() {
                Err(bad(format!("has an extent naming another file: {file:?}")))
            } else if kind != "SPARSE" {
                Err(bad(format!("has a {kind} extent in a monolithic image")))
            } else {
                Ok(create_type)
            }
        }
        _ => Err(bad("has more than one extent")),
    }
}

/// `RW 2097152 SPARSE "disk.vmdk" [offset]` -> (type, file name).
fn parse_extent(line: &str) -> Option<(String, String)> {
    let (access, rest) = line.split_once(char::is_whitespace)?;
    if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
        return None;
    }
    let (sectors, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    if sectors.is_empty() || !sectors.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (kind, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    let (file, tail) = rest.trim().strip_prefix('"')?.split_once('"')?;
    let tail = tail.trim();
    if !tail.is_empty() && !tail.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind.to_string(), file.to_string()))
}

/// Check 5: a stream ends with a zero end-of-stream marker, and a footer
/// (when the header defers to one) must agree with the header.
fn check_stream_end(src: &dyn Source, header: &[u8]) -> Result<(), InspectError> {
    let size = src.size();
    let eos_at = size
        .checked_sub(512)
        .ok_or_else(|| bad("has no end-of-stream marker"))?;
    if read(src, FORMAT, eos_at, 512)?.iter().any(|b| *b != 0) {
        return Err(bad("has a malformed end-of-stream marker"));
    }
    if le_u64(header, 56) != GD_AT_END {
        return Ok(());
    }
    let marker_at = size.checked_sub(1536).ok_or_else(|| bad("has no footer"))?;
    let marker = read(src, FORMAT, marker_at, 512)?;
    if le_u32(&marker, 8) != 0 || le_u32(&marker, 12) != MARKER_FOOTER {
        return Err(bad("has no footer marker before its footer"));
    }
    let footer = read(src, FORMAT, size - 1024, 512)?;
    let agrees = &footer[..4] == MAGIC
        && footer[4..8] == header[4..8]
        && footer[12..48] == header[12..48]
        && le_u64(&footer, 56) != GD_AT_END;
    if !agrees {
        return Err(bad("has a footer that disagrees with its header"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# Disk DescriptorFile\nversion=1\nCID=d02ca260\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW 2097152 SPARSE \"k.vmdk\"\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n";

    #[test]
    fn a_plain_descriptor_passes() {
        assert_eq!(
            check_descriptor(GOOD.as_bytes()).unwrap(),
            "monolithicSparse"
        );
        let padded = [GOOD.as_bytes(), &[0u8; 100]].concat();
        assert!(check_descriptor(&padded).is_ok());
    }

    #[test]
    fn dangerous_descriptors_are_refused() {
        for (change, expect) in [
            ("\"k.vmdk\"", "\"/etc/passwd\"", "another file"),
            ("monolithicSparse", "monolithicFlat", "createType"),
            ("parentCID=ffffffff", "parentCID=12345678", "backing file"),
            (
                "version=1",
                "parentFileNameHint=\"base.vmdk\"",
                "backing file",
            ),
            ("version=1", "some junk line", "cannot accept"),
            ("RW 2097152 SPARSE \"k.vmdk\"", "", "no extent"),
            ("SPARSE", "FLAT", "FLAT extent"),
        ]
        .map(|(a, b, e)| ((a, b), e))
        {
            let text = GOOD.replace(change.0, change.1);
            let err = check_descriptor(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expect), "{change:?}: {err}");
        }
        let two = GOOD.replace(
            "RW 2097152 SPARSE \"k.vmdk\"",
            "RW 1 SPARSE \"k.vmdk\"\nRW 1 SPARSE \"k2.vmdk\"",
        );
        assert!(check_descriptor(two.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("more than one"));
    }
}
