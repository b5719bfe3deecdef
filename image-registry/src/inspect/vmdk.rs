//! VMDK, read the way qemu's `block/vmdk.c` reads it, because qemu is what
//! will open the image later. The descriptor is where the danger is: an
//! extent line can name any file of the host (CVE-2022-47951), and
//! `parentFileNameHint` a backing file.
//!
//! How qemu opens a file it is told is VMDK:
//! - `KDMV` (VMDK4 sparse): header fields after the magic; capacity
//!   (sectors) at 12, grain size at 20, descriptor offset/size (sectors) at
//!   28/36, grain table entries per table at 44, redundant grain directory
//!   at 48, grain directory at 56, first grain at 64, compression at 77.
//!   **If the capacity is 0 and the descriptor offset is not, qemu parses
//!   the embedded descriptor as a descriptor file**, extents and all. A
//!   grain directory offset of `GD_AT_END` makes qemu read the header from
//!   the footer instead. The create type is the header's (streamOptimized
//!   when compressed, else monolithicSparse), never the descriptor's.
//! - `COWD` (VMDK3, ESX's old sparse form): a different header.
//! - Anything else is a descriptor file, whose extents are other files.
//! - After either, qemu searches `parentFileNameHint` with `strstr` in the
//!   20 sectors at 0x200 (for a sparse file), wherever the header's
//!   descriptor offset points and whatever line (comment, `ddb.` key) holds
//!   it, and makes it the backing file.
//!
//! qemu's probe (`vmdk_probe`) also takes a text file whose first line
//! that is not a comment or blank is `version=1|2|3`: [`matches`] does the
//! same, so a "raw" upload that qemu would probe as VMDK is a mismatch.

use super::source::{le_u16, le_u32, le_u64, peek, read, within, Source};
use super::{Found, InspectError};

const FORMAT: &str = "vmdk";
const MAGIC: &[u8] = b"KDMV";
const VMDK3_MAGIC: &[u8] = b"COWD";
const MAX_DESCRIPTOR: u64 = 1 << 20;
const GD_AT_END: u64 = u64::MAX;
const MARKER_FOOTER: u32 = 3;
const COMPRESSION_DEFLATE: u16 = 1;
const FLAG_RGD: u32 = 1 << 1;
/// Where qemu reads the descriptor of a sparse file for its hints, and how
/// much (`DESC_SIZE`, 20 sectors).
const QEMU_DESC_AT: u64 = 0x200;
const QEMU_DESC_SIZE: u64 = 20 * 512;
/// How much of a file qemu's probe sees (`BLOCK_PROBE_BUF_SIZE`).
const PROBE_SIZE: u64 = 512;
/// qemu's own bounds (`vmdk_add_extent`, `vmdk_open_vmdk4`).
const MAX_GTES_PER_GT: u64 = 512;
const MAX_GRAIN_SECTORS: u64 = 0x20_0000;
const MAX_L1_ENTRIES: u64 = 32 * 1024 * 1024;

pub fn matches(src: &dyn Source) -> bool {
    peek(src, 0, 4).is_some_and(|m| m == MAGIC || m == VMDK3_MAGIC) || probes_as_descriptor(src)
}

/// qemu's `vmdk_probe` on text: skip `#` comment lines and lines of spaces;
/// the first other line must be `version=1`, `2` or `3` (LF or CRLF).
fn probes_as_descriptor(src: &dyn Source) -> bool {
    let len = src.size().min(PROBE_SIZE) as usize;
    let Some(buf) = peek(src, 0, len) else {
        return false;
    };
    let mut p = 0usize;
    while p < buf.len() {
        match buf[p] {
            b'#' => {
                while p < buf.len() && buf[p] != b'\n' {
                    p += 1;
                }
                p += 1;
            }
            b' ' => {
                while p < buf.len() && buf[p] == b' ' {
                    p += 1;
                }
                if p < buf.len() && buf[p] == b'\r' {
                    p += 1;
                }
                if p == buf.len() || buf[p] != b'\n' {
                    return false;
                }
                p += 1;
            }
            _ => {
                let rest = &buf[p..];
                return [b'1', b'2', b'3'].iter().any(|v| {
                    let lf = [&b"version="[..], &[*v], b"\n"].concat();
                    let crlf = [&b"version="[..], &[*v], b"\r\n"].concat();
                    rest.starts_with(&lf) || rest.starts_with(&crlf)
                });
            }
        }
    }
    false
}

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

/// The VMDK4 header fields qemu uses (offsets from the start of the file).
struct Header {
    version: u32,
    flags: u32,
    capacity: u64,
    granularity: u64,
    desc_offset: u64,
    desc_size: u64,
    gtes_per_gt: u64,
    rgd_offset: u64,
    gd_offset: u64,
    grain_offset: u64,
    compression: u16,
}

impl Header {
    fn parse(h: &[u8]) -> Header {
        Header {
            version: le_u32(h, 4),
            flags: le_u32(h, 8),
            capacity: le_u64(h, 12),
            granularity: le_u64(h, 20),
            desc_offset: le_u64(h, 28),
            desc_size: le_u64(h, 36),
            gtes_per_gt: u64::from(le_u32(h, 44)),
            rgd_offset: le_u64(h, 48),
            gd_offset: le_u64(h, 56),
            grain_offset: le_u64(h, 64),
            compression: le_u16(h, 77),
        }
    }
}

pub(crate) fn inspect(src: &dyn Source) -> Result<Found, InspectError> {
    let magic = peek(src, 0, 4);
    if magic.as_deref() == Some(VMDK3_MAGIC) {
        return Err(bad(
            "is a VMDK3 (COWD) sparse extent, which is not accepted",
        ));
    }
    if magic.as_deref() != Some(MAGIC) {
        // A descriptor alone keeps its data in other files.
        return Err(bad("is a descriptor file whose extents are other files"));
    }
    let first = read(src, FORMAT, 0, 512)?;
    let header = Header::parse(&first);
    if header.capacity == 0 {
        // With a descriptor offset, qemu would open the embedded descriptor
        // as a descriptor file (extents naming any file); without one, the
        // disk is empty. Neither is an image.
        return Err(bad(
            "has a capacity of 0 (qemu would read its descriptor as a descriptor file)",
        ));
    }
    // What qemu reads for its hints, wherever the header points.
    if let Some(window) = qemu_descriptor_window(src) {
        if contains(&window, b"parentFileNameHint") {
            return Err(bad("has a backing file (parentFileNameHint)"));
        }
    }
    let compressed = header.compression == COMPRESSION_DEFLATE;
    let create_type = if compressed {
        "streamOptimized"
    } else {
        "monolithicSparse"
    };
    // The header that counts: the footer's, when the header defers to it.
    let header = if header.gd_offset == GD_AT_END {
        check_footer(src, &first)?
    } else {
        header
    };
    if compressed {
        check_end_of_stream(src)?;
    }
    check_tables(src, &header)?;
    if header.desc_size == 0 {
        return Err(bad("has no embedded descriptor"));
    }
    let desc_len = header
        .desc_size
        .checked_mul(512)
        .filter(|n| *n <= MAX_DESCRIPTOR)
        .ok_or_else(|| bad("has a descriptor over 1 MiB"))?;
    let desc_at = header
        .desc_offset
        .checked_mul(512)
        .ok_or_else(|| bad("has a descriptor past any possible file end"))?;
    let text = read(src, FORMAT, desc_at, desc_len)?;
    let declared = check_descriptor(&text)?;
    if declared != create_type {
        return Err(bad(format!(
            "says createType {declared:?} but its header makes it {create_type} (as qemu reads it)"
        )));
    }
    let virtual_size = header
        .capacity
        .checked_mul(512)
        .ok_or_else(|| bad("has an impossible capacity"))?;
    Ok(Found {
        virtual_size,
        variant: format!("vmdk {create_type}"),
    })
}

/// The bytes qemu searches for `parentFileNameHint` in a sparse file.
fn qemu_descriptor_window(src: &dyn Source) -> Option<Vec<u8>> {
    let end = src.size().min(QEMU_DESC_AT + QEMU_DESC_SIZE);
    let len = end.checked_sub(QEMU_DESC_AT)?;
    peek(src, QEMU_DESC_AT, len as usize)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Rule 11 and qemu's own limits: the grain directories lie inside the
/// file, tables are of a size qemu accepts, and all arithmetic is checked.
fn check_tables(src: &dyn Source, h: &Header) -> Result<(), InspectError> {
    if h.version > 3 {
        return Err(bad(format!("has version {} (at most 3)", h.version)));
    }
    if h.gtes_per_gt == 0 || h.gtes_per_gt > MAX_GTES_PER_GT {
        return Err(bad(format!(
            "has {} grain table entries per table (1 to {MAX_GTES_PER_GT})",
            h.gtes_per_gt
        )));
    }
    if h.granularity == 0 || h.granularity > MAX_GRAIN_SECTORS {
        return Err(bad(format!(
            "has an invalid grain size ({})",
            h.granularity
        )));
    }
    let per_l1 = h.gtes_per_gt * h.granularity;
    let l1_entries = h.capacity.div_ceil(per_l1);
    if l1_entries > MAX_L1_ENTRIES {
        return Err(bad("has a grain directory over qemu's limit"));
    }
    let mut dirs = vec![("grain directory", h.gd_offset)];
    if h.flags & FLAG_RGD != 0 {
        dirs.push(("redundant grain directory", h.rgd_offset));
    }
    for (what, sector) in dirs {
        let at = sector
            .checked_mul(512)
            .ok_or_else(|| bad(format!("has a {what} past any possible file end")))?;
        within(src, FORMAT, at, l1_entries * 4)?;
    }
    within(src, FORMAT, h.grain_offset.saturating_mul(512), 0)
}

/// Check 4, on the embedded descriptor: only monolithicSparse and
/// streamOptimized, every line of a known kind, no parent, exactly one
/// extent, a read-write SPARSE one naming no other file. Keys are also
/// found the way qemu finds them (a substring anywhere, comments
/// included), and both readings must agree. Returns the create type.
pub fn check_descriptor(raw: &[u8]) -> Result<String, InspectError> {
    // The embedded area is padded with NULs after the text; qemu's string
    // functions stop at the first.
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let text =
        std::str::from_utf8(&raw[..end]).map_err(|_| bad("has a descriptor that is not text"))?;
    if text.contains("parentFileNameHint") {
        return Err(bad("has a backing file (parentFileNameHint)"));
    }
    let mut create_type = None;
    let mut extents = Vec::new();
    for line in text.split('\n') {
        // qemu's sscanf reading, which skips leading white space and needs
        // no particular ending: anything it takes as an extent is one.
        if let Some(extent) = qemu_extent(line) {
            extents.push(extent);
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(extent) = strict_extent(line) {
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
            "createType" => {
                if create_type.is_some() {
                    return Err(bad("has more than one createType"));
                }
                create_type = Some(value.to_string())
            }
            "parentCID" if !value.eq_ignore_ascii_case("ffffffff") => {
                return Err(bad("has a backing file (parentCID)"))
            }
            _ => {}
        }
    }
    let create_type = create_type.ok_or_else(|| bad("has no createType"))?;
    if qemu_create_type(text).as_deref() != Some(create_type.as_str()) {
        return Err(bad(
            "has a createType that qemu reads differently (a commented or embedded key)",
        ));
    }
    if create_type != "monolithicSparse" && create_type != "streamOptimized" {
        return Err(bad(format!(
            "has createType {create_type:?} (only monolithicSparse and streamOptimized)"
        )));
    }
    match extents.as_slice() {
        [] => Err(bad("has no extent")),
        [extent] => {
            let file = &extent.file;
            if file.contains('/') || file.contains('\\') || file.contains(':') {
                Err(bad(format!("has an extent naming another file: {file:?}")))
            } else if extent.kind != "SPARSE" {
                Err(bad(format!(
                    "has a {} extent in a monolithic image",
                    extent.kind
                )))
            } else if extent.access != "RW" {
                Err(bad(format!("has a {} extent", extent.access)))
            } else if file.is_empty() {
                Err(bad("has an extent naming no file"))
            } else {
                Ok(create_type)
            }
        }
        _ => Err(bad("has more than one extent")),
    }
}

/// An extent line: access, kind, file.
#[derive(Debug, PartialEq)]
struct Extent {
    access: String,
    kind: String,
    file: String,
}

/// qemu's `createType` lookup: the first occurrence of the word anywhere,
/// skip two characters (`="`), up to the next `"`.
fn qemu_create_type(text: &str) -> Option<String> {
    let at = text.find("createType")?;
    let rest = text.get(at + "createType".len() + 2..)?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

/// A line as qemu's `sscanf("%10s %ld %10s \"%511[^\n\r\"]\" %ld")` takes
/// it, when qemu would treat it as an extent (at least four fields).
/// Access words other than RW are taken too: qemu skips them, we refuse
/// them.
fn qemu_extent(line: &str) -> Option<Extent> {
    let mut rest = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let word = |s: &str| -> (String, usize) {
        let n = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
        (s[..n].to_string(), n)
    };
    let (access, n) = word(rest);
    if access.is_empty() || access.starts_with('#') {
        return None;
    }
    rest = rest[n..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    let digits = rest
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
        .count();
    if digits == 0 || !rest[..digits].bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    rest = rest[digits..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (kind, n) = word(rest);
    if kind.is_empty() {
        return None;
    }
    rest = rest[n..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    let quoted = rest.strip_prefix('"')?;
    let end = quoted.find(['"', '\r', '\n'])?;
    if end == 0 || !quoted[end..].starts_with('"') {
        return None;
    }
    Some(Extent {
        access,
        kind,
        file: quoted[..end].to_string(),
    })
}

/// `RW 2097152 SPARSE "disk.vmdk" [offset]`, however the access and kind
/// are spelt (any RW/RDONLY/NOACCESS; FLAT, ZERO, VMFS, ... all count).
fn strict_extent(line: &str) -> Option<Extent> {
    let (access, rest) = line.split_once(char::is_whitespace)?;
    if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
        return None;
    }
    let (sectors, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    if sectors.is_empty() || !sectors.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest.trim_start();
    let (kind, file) = match rest.split_once(char::is_whitespace) {
        Some((kind, rest)) => {
            let file = rest
                .trim()
                .strip_prefix('"')
                .and_then(|f| f.split_once('"'))
                .map(|(f, _)| f.to_string())
                .unwrap_or_default();
            (kind, file)
        }
        // `RW 100 ZERO` names no file.
        None => (rest, String::new()),
    };
    Some(Extent {
        access: access.to_string(),
        kind: kind.to_string(),
        file,
    })
}

/// Check 5: the footer qemu reads instead of the header (a marker, the
/// footer, an end-of-stream marker) must be well formed and agree with
/// the header. Returns the footer's header.
fn check_footer(src: &dyn Source, header: &[u8]) -> Result<Header, InspectError> {
    let size = src.size();
    let marker_at = size.checked_sub(1536).ok_or_else(|| bad("has no footer"))?;
    let marker = read(src, FORMAT, marker_at, 512)?;
    if le_u32(&marker, 8) != 0 || le_u32(&marker, 12) != MARKER_FOOTER {
        return Err(bad("has no footer marker before its footer"));
    }
    let footer = read(src, FORMAT, marker_at + 512, 512)?;
    let agrees = &footer[..4] == MAGIC
        && footer[4..8] == header[4..8]
        && footer[12..48] == header[12..48]
        && le_u64(&footer, 56) != GD_AT_END;
    if !agrees {
        return Err(bad("has a footer that disagrees with its header"));
    }
    check_end_of_stream(src)?;
    Ok(Header::parse(&footer))
}

/// A stream ends with a zero end-of-stream marker.
fn check_end_of_stream(src: &dyn Source) -> Result<(), InspectError> {
    let eos_at = src
        .size()
        .checked_sub(512)
        .ok_or_else(|| bad("has no end-of-stream marker"))?;
    if read(src, FORMAT, eos_at, 512)?.iter().any(|b| *b != 0) {
        return Err(bad("has a malformed end-of-stream marker"));
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
        let crlf = GOOD.replace('\n', "\r\n");
        assert!(check_descriptor(crlf.as_bytes()).is_ok());
    }

    #[test]
    fn dangerous_descriptors_are_refused() {
        for (change, expect) in [
            ("\"k.vmdk\"", "\"/etc/passwd\"", "another file"),
            ("\"k.vmdk\"", "\"json:x\"", "another file"),
            ("monolithicSparse", "monolithicFlat", "createType"),
            ("parentCID=ffffffff", "parentCID=12345678", "backing file"),
            (
                "version=1",
                "parentFileNameHint=\"base.vmdk\"",
                "backing file",
            ),
            (
                "# Extent description",
                "# parentFileNameHint=\"/etc/passwd\"",
                "backing file",
            ),
            (
                "ddb.adapterType",
                "ddb.parentFileNameHint=\"x\" ddb.a",
                "backing file",
            ),
            ("version=1", "some junk line", "cannot accept"),
            ("RW 2097152 SPARSE \"k.vmdk\"", "", "no extent"),
            ("SPARSE", "FLAT", "FLAT extent"),
            ("SPARSE", "VMFS", "VMFS extent"),
            (
                "RW 2097152 SPARSE",
                "RDONLY 2097152 SPARSE",
                "RDONLY extent",
            ),
            (
                "RW 2097152 SPARSE \"k.vmdk\"",
                "RW 2097152 ZERO",
                "ZERO extent",
            ),
            (
                "RW 2097152 SPARSE \"k.vmdk\"",
                "  RW 2097152 FLAT \"/etc/passwd\" 0 trailing words",
                "another file",
            ),
            (
                "# Disk DescriptorFile",
                "# createType=\"monolithicFlat\"",
                "qemu reads differently",
            ),
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

    #[test]
    fn text_descriptors_are_detected_as_qemu_probes_them() {
        for text in [
            "version=1\ncreateType=\"monolithicFlat\"\n",
            "# a comment\n   \nversion=2\r\n",
            "# Disk DescriptorFile\nversion=3\n",
        ] {
            assert!(matches(&text.as_bytes()), "{text:?}");
        }
        for text in ["hello\nversion=1\n", "version=4\n", "  x\nversion=1\n"] {
            assert!(!matches(&text.as_bytes()), "{text:?}");
        }
    }
}
