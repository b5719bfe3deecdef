//! OVA: a POSIX tar whose first member is the .ovf descriptor (check 12).
//! Members must be plain files with plain names (no `..`, no absolute
//! path, no links or devices); the descriptor is well-formed XML parsed
//! as a stream without any DTD (so no entity expansion, no recursion); exactly one disk, the file its
//! DiskSection names, which is then inspected like any upload.

use super::source::{read, Source, Window};
use super::{inspect_disk, ImageInfo, InspectError, Limits};
use std::io::{self, Read, Seek, SeekFrom};

const FORMAT: &str = "ova";
const MAX_MEMBERS: usize = 64;
const MAX_OVF: u64 = 1 << 20;
/// The largest tar extension header (PAX, GNU long name) accepted: the tar
/// reader holds one in memory, so an unbounded one would let a client
/// choose the registry's memory use.
const MAX_EXTENSION_HEADER: u64 = 64 << 10;

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

/// A tar whose first member (after any PAX or GNU extension headers, as
/// `tar --format=pax` and Python write them) has `ustar` magic at 257 and
/// a name ending in `.ovf`.
pub fn matches(src: &dyn Source) -> bool {
    let mut at = 0u64;
    for _ in 0..4 {
        let Some(h) = super::source::peek(src, at, 512) else {
            return false;
        };
        if &h[257..262] != b"ustar" {
            return false;
        }
        if matches!(h[156], b'x' | b'g' | b'L' | b'K') {
            let Some(next) = tar_size(&h[124..136]).and_then(|n| next_header(at, n)) else {
                return false;
            };
            at = next;
            continue;
        }
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        return h[..name_end].ends_with(b".ovf");
    }
    false
}

/// Where the header after a member of `size` bytes at `at` starts.
fn next_header(at: u64, size: u64) -> Option<u64> {
    size.checked_next_multiple_of(512)?
        .checked_add(512)?
        .checked_add(at)
}

/// One member: name, where its bytes start, how many.
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

/// Lets the `tar` crate walk headers over a [`Source`], seeking past contents.
struct SourceReader<'a> {
    src: &'a dyn Source,
    pos: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.src.size().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        self.src.read_exact_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.src.size().checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Walks the raw tar headers before the `tar` crate sees them, so that no
/// extension header (PAX `x`/`g`, GNU `L`/`K`) is larger than
/// [`MAX_EXTENSION_HEADER`]: memory per upload stays bounded whatever the
/// input.
fn check_raw_headers(src: &dyn Source) -> Result<(), InspectError> {
    let mut at = 0u64;
    // Each member may carry a few extension headers of its own.
    for _ in 0..MAX_MEMBERS * 4 + 2 {
        let Some(h) = super::source::peek(src, at, 512) else {
            return Ok(());
        };
        if h.iter().all(|b| *b == 0) {
            return Ok(());
        }
        let size = tar_size(&h[124..136])
            .ok_or_else(|| bad("has a member header with an unreadable size"))?;
        if matches!(h[156], b'x' | b'g' | b'L' | b'K') && size > MAX_EXTENSION_HEADER {
            return Err(bad(format!(
                "has a {size}-byte tar extension header (at most {MAX_EXTENSION_HEADER})"
            )));
        }
        at = next_header(at, size).ok_or_else(|| bad("has a member past any possible file end"))?;
    }
    Err(bad(format!("has more than {MAX_MEMBERS} members")))
}

/// A tar size field: octal digits (NUL or space ended), or base-256 when
/// the high bit of the first byte is set.
fn tar_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut n = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

fn members(src: &dyn Source) -> Result<Vec<Member>, InspectError> {
    check_raw_headers(src)?;
    let mut archive = tar::Archive::new(SourceReader { src, pos: 0 });
    let mut out = Vec::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| bad(format!("is not a readable tar ({e})")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("is not a readable tar ({e})")))?;
        if out.len() == MAX_MEMBERS {
            return Err(bad(format!("has more than {MAX_MEMBERS} members")));
        }
        let kind = entry.header().entry_type();
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| bad("has a member name that is not UTF-8"))?;
        if !kind.is_file() {
            return Err(bad(format!(
                "has a member that is not a plain file: {name:?}"
            )));
        }
        if name.is_empty()
            || name.starts_with('/')
            || name.contains('/')
            || name == ".."
            || name == "."
        {
            return Err(bad(format!("has a member with an unsafe path: {name:?}")));
        }
        if out.iter().any(|m: &Member| m.name == name) {
            return Err(bad(format!("has two members named {name:?}")));
        }
        let size = entry.size();
        let offset = entry.raw_file_position();
        super::source::within(src, FORMAT, offset, size)?;
        out.push(Member { name, offset, size });
    }
    Ok(out)
}

pub fn inspect(src: &dyn Source, limits: &Limits) -> Result<ImageInfo, InspectError> {
    let members = members(src)?;
    let ovf = members
        .first()
        .filter(|m| m.name.ends_with(".ovf"))
        .ok_or_else(|| bad("does not start with its .ovf descriptor"))?;
    if ovf.size > MAX_OVF {
        return Err(bad("has an .ovf descriptor over 1 MiB"));
    }
    let text = read(src, FORMAT, ovf.offset, ovf.size)?;
    let descriptor = parse_ovf(&text)?;
    for m in &members[1..] {
        let known =
            m.name == descriptor.disk_file || m.name.ends_with(".mf") || m.name.ends_with(".cert");
        if !known {
            return Err(bad(format!(
                "has a member the descriptor does not name: {:?}",
                m.name
            )));
        }
    }
    let disk = members[1..]
        .iter()
        .find(|m| m.name == descriptor.disk_file)
        .ok_or_else(|| {
            bad(format!(
                "lacks the disk its descriptor names ({:?})",
                descriptor.disk_file
            ))
        })?;
    let window = Window {
        inner: src,
        start: disk.offset,
        len: disk.size,
    };
    let mut info = inspect_disk(&window, limits)?;
    info.container = Some("ova");
    info.properties = descriptor.properties;
    info.disk_member = Some((disk.name.clone(), disk.offset, disk.size));
    Ok(info)
}

/// What we take from the .ovf: the single disk's file name and a few
/// properties kept on the image (as Glance's OVF processing does).
#[derive(Debug, PartialEq)]
pub struct Ovf {
    pub disk_file: String,
    pub properties: Vec<(String, String)>,
}

/// Deepest element nesting accepted in an .ovf (real ones stay under 10).
const MAX_DEPTH: usize = 64;

/// Parses the descriptor with a pull parser: no recursion (a deeply nested
/// document cannot exhaust the stack; the fuzzer found that in a tree
/// parser), no DTD, and only XML's predefined entities and character
/// references, so nothing expands.
pub fn parse_ovf(bytes: &[u8]) -> Result<Ovf, InspectError> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(bytes).map_err(|_| bad("has an .ovf that is not UTF-8"))?;
    let xml_err = |e: String| bad(format!("has an .ovf that is not well-formed XML ({e})"));
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut disks: Vec<String> = Vec::new();
    let mut files: Vec<(String, String)> = Vec::new();
    let mut properties = Vec::new();
    // Inside an <Item>: its ResourceType, VirtualQuantity, AllocationUnits.
    let mut item: Option<[String; 3]> = None;
    let mut text_buf = String::new();
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(|e| xml_err(e.to_string()))?;
        let (start, is_empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            if path.is_empty() && seen_root {
                return Err(xml_err("more than one root element".into()));
            }
            seen_root = true;
            let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
            let mut attrs = Vec::new();
            for a in e.attributes() {
                let a = a.map_err(|e| xml_err(e.to_string()))?;
                let value = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| xml_err(e.to_string()))?;
                attrs.push((
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    value.into_owned(),
                ));
            }
            let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            match name.as_str() {
                "Disk" => {
                    disks.push(attr("fileRef").ok_or_else(|| bad("has a disk without a fileRef"))?)
                }
                "File" => {
                    // A compressed or chunked disk is not what qemu would
                    // read from the member: refused rather than unpacked.
                    if let Some(c) = attr("compression").filter(|c| c != "identity") {
                        return Err(bad(format!("has a compressed disk ({c})")));
                    }
                    if attr("chunkSize").is_some() {
                        return Err(bad("has a disk split into chunks"));
                    }
                    if let (Some(id), Some(href)) = (attr("id"), attr("href")) {
                        files.push((id, href));
                    }
                }
                "VirtualSystem" => {
                    if let Some(id) = attr("id") {
                        properties.push(("ovf_name".to_string(), id));
                    }
                }
                "Item" => item = Some(Default::default()),
                _ => {}
            }
            if !is_empty {
                if path.len() == MAX_DEPTH {
                    return Err(bad(format!(
                        "has an .ovf nested deeper than {MAX_DEPTH} elements"
                    )));
                }
                path.push(name);
                text_buf.clear();
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let name = path
                    .pop()
                    .ok_or_else(|| xml_err("unbalanced end tag".into()))?;
                let value = text_buf.trim().to_string();
                let parent = path.last().map(String::as_str);
                match (parent, name.as_str()) {
                    (Some("OperatingSystemSection"), "Description") if !value.is_empty() => {
                        properties.push(("ovf_os".into(), value))
                    }
                    (_, "Product") if !value.is_empty() => {
                        properties.push(("ovf_product".into(), value))
                    }
                    (Some("Item"), field) => {
                        if let Some(fields) = item.as_mut() {
                            let slot = match field {
                                "ResourceType" => Some(0),
                                "VirtualQuantity" => Some(1),
                                "AllocationUnits" => Some(2),
                                _ => None,
                            };
                            if let Some(i) = slot {
                                fields[i] = value;
                            }
                        }
                    }
                    (_, "Item") => {
                        if let Some([kind, quantity, unit]) = item.take() {
                            match kind.as_str() {
                                "3" => properties.push(("ovf_cpus".into(), quantity)),
                                "4" => properties.push((
                                    "ovf_memory".into(),
                                    format!("{quantity} {unit}").trim().to_string(),
                                )),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
                text_buf.clear();
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| xml_err(e.to_string()))?;
                if text_buf.len() + s.len() <= 4096 {
                    text_buf.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| xml_err(e.to_string()))? {
                    Some(c) => c,
                    None => match &*r {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        _ => return Err(xml_err("undefined entity".into())),
                    },
                };
                text_buf.push(c);
            }
            Event::DocType(_) => return Err(xml_err("a DTD is not allowed".into())),
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() || !seen_root {
        return Err(xml_err("the document is not closed".into()));
    }
    let file_ref = match disks.as_slice() {
        [d] => d.clone(),
        [] => return Err(bad("has no disk in its descriptor")),
        _ => return Err(bad("has more than one disk")),
    };
    let href = files
        .into_iter()
        .find(|(id, _)| *id == file_ref)
        .map(|(_, h)| h)
        .ok_or_else(|| bad("has a disk whose file is not in References"))?;
    if href.contains('/') || href.contains('\\') || href.contains("..") {
        return Err(bad(format!(
            "names a disk file outside the package: {href:?}"
        )));
    }
    Ok(Ovf {
        disk_file: href,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const OVF: &str = r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="file1" ovf:href="disk.vmdk"/></References>
  <DiskSection><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1073741824"/></DiskSection>
  <VirtualSystem ovf:id="tiny">
    <OperatingSystemSection ovf:id="96"><Description>Debian 12</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>"#;

    #[test]
    fn the_descriptor_names_the_disk_and_properties() {
        let o = parse_ovf(OVF.as_bytes()).unwrap();
        assert_eq!(o.disk_file, "disk.vmdk");
        assert!(o.properties.contains(&("ovf_cpus".into(), "2".into())));
        assert!(o
            .properties
            .contains(&("ovf_memory".into(), "512 byte * 2^20".into())));
        assert!(o
            .properties
            .contains(&("ovf_os".into(), "Debian 12".into())));
    }

    #[test]
    fn entities_traversal_and_two_disks_are_refused() {
        let bomb = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>{}",
            &OVF[OVF.find("<Envelope").unwrap()..]
        );
        assert!(parse_ovf(bomb.as_bytes()).is_err());
        let traversal = OVF.replace("disk.vmdk", "../../etc/shadow");
        assert!(parse_ovf(traversal.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("outside"));
        let two = OVF.replace(
            "</DiskSection>",
            "<Disk ovf:diskId=\"d2\" ovf:fileRef=\"file1\"/></DiskSection>",
        );
        assert!(parse_ovf(two.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("more than one"));
        assert!(parse_ovf(b"<not-closed>").is_err());
        let deep = "<a>".repeat(100_000);
        assert!(parse_ovf(deep.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("nested deeper"));
        let undefined = OVF.replace("Debian 12", "Debian &xxe;");
        assert!(parse_ovf(undefined.as_bytes()).is_err());
        let escaped = OVF.replace("Debian 12", "Debian &amp; &#x41;");
        assert!(parse_ovf(escaped.as_bytes())
            .unwrap()
            .properties
            .contains(&("ovf_os".into(), "Debian & A".into())));
    }
}
