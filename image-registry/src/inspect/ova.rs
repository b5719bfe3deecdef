//! OVA: a POSIX tar whose first member is the .ovf descriptor (check 12).
//! Members must be plain files with plain names (no `..`, no absolute
//! path, no links or devices); the descriptor is well-formed XML parsed
//! without any DTD (so no entity expansion); exactly one disk, the file its
//! DiskSection names, which is then inspected like any upload.

use super::source::{read, Source, Window};
use super::{inspect_disk, ImageInfo, InspectError, Limits};
use std::io::{self, Read, Seek, SeekFrom};

const FORMAT: &str = "ova";
const MAX_MEMBERS: usize = 64;
const MAX_OVF: u64 = 1 << 20;

fn bad(reason: impl Into<String>) -> InspectError {
    InspectError::unsafe_image(FORMAT, reason)
}

/// A tar's first header: `ustar` magic at 257 and a name ending in `.ovf`.
pub fn matches(src: &dyn Source) -> bool {
    let Some(h) = super::source::peek(src, 0, 512) else {
        return false;
    };
    let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
    &h[257..262] == b"ustar" && h[..name_end].ends_with(b".ovf")
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

fn members(src: &dyn Source) -> Result<Vec<Member>, InspectError> {
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
        let size = entry.size();
        let offset = entry.raw_file_position();
        if offset.saturating_add(size) > src.size() {
            return Err(InspectError::Truncated {
                format: FORMAT,
                needed: offset.saturating_add(size),
                size: src.size(),
            });
        }
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

pub fn parse_ovf(bytes: &[u8]) -> Result<Ovf, InspectError> {
    let text = std::str::from_utf8(bytes).map_err(|_| bad("has an .ovf that is not UTF-8"))?;
    // roxmltree refuses any DTD unless told otherwise: no entities at all.
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| bad(format!("has an .ovf that is not well-formed XML ({e})")))?;
    let attr = |n: roxmltree::Node, name: &str| -> Option<String> {
        n.attributes()
            .find(|a| a.name() == name)
            .map(|a| a.value().to_string())
    };
    let disks: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Disk")
        .collect();
    let disk = match disks.as_slice() {
        [d] => *d,
        [] => return Err(bad("has no disk in its descriptor")),
        _ => return Err(bad("has more than one disk")),
    };
    let file_ref = attr(disk, "fileRef").ok_or_else(|| bad("has a disk without a fileRef"))?;
    let href = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "File")
        .find(|n| attr(*n, "id").as_deref() == Some(&file_ref))
        .and_then(|n| attr(n, "href"))
        .ok_or_else(|| bad("has a disk whose file is not in References"))?;
    if href.contains('/') || href.contains('\\') || href.contains("..") {
        return Err(bad(format!(
            "names a disk file outside the package: {href:?}"
        )));
    }
    let mut properties = Vec::new();
    let text_of = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    if let Some(v) = doc
        .descendants()
        .find(|n| n.tag_name().name() == "VirtualSystem")
    {
        if let Some(id) = attr(v, "id") {
            properties.push(("ovf_name".into(), id));
        }
    }
    if let Some(os) = doc
        .descendants()
        .find(|n| n.tag_name().name() == "OperatingSystemSection")
        .and_then(|s| s.children().find(|c| c.tag_name().name() == "Description"))
        .and_then(|d| d.text())
    {
        properties.push(("ovf_os".into(), os.trim().to_string()));
    }
    for item in doc.descendants().filter(|n| n.tag_name().name() == "Item") {
        let child = |name: &str| {
            item.children()
                .find(|c| c.tag_name().name() == name)
                .and_then(|c| c.text())
                .map(|t| t.trim().to_string())
        };
        match (child("ResourceType").as_deref(), child("VirtualQuantity")) {
            (Some("3"), Some(q)) => properties.push(("ovf_cpus".into(), q)),
            (Some("4"), Some(q)) => {
                let unit = child("AllocationUnits").unwrap_or_default();
                properties.push((
                    "ovf_memory".into(),
                    format!("{q} {unit}").trim().to_string(),
                ));
            }
            _ => {}
        }
    }
    if let Some(product) = text_of("Product") {
        properties.push(("ovf_product".into(), product));
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
    }
}
