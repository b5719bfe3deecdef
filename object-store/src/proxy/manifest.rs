//! Static large object manifests as data, with no I/O: the form a client
//! sends (`multipart-manifest=put`), the form stored, the large object's
//! ETag and length, and the byte arithmetic that turns a manifest into the
//! pieces a read streams. [`super::segments`] does the reading and writing.
//!
//! Swift's rules (its `slo` middleware): a segment is an object
//! (`path`, with optional `etag`, `size_bytes` and `range`) or inline
//! `data` (base64); an object segment may itself be a static large object
//! (`sub_slo`), nested at most [`MAX_DEPTH`] deep; the ETag is the MD5 of
//! the segments' ETags (`etag:first-last;` for a ranged one, the MD5 of the
//! bytes for a data one).

use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::range::{self, Ranges};

/// How deep manifests may nest (Swift's `max_slo_recursion_depth`).
pub const MAX_DEPTH: usize = 10;

/// An object segment as a manifest stores it (Swift's format).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    /// `/container/object`
    pub name: String,
    pub hash: String,
    /// The segment object's whole size (a sub-SLO's: its content's).
    pub bytes: u64,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub last_modified: String,
    /// The part of the segment used, `first-last` (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The segment is itself a static large object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sub_slo: bool,
}

/// One entry of a stored manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StoredSegment {
    /// Bytes kept in the manifest itself (base64).
    Data {
        data: String,
    },
    Object(Segment),
}

/// One entry of a manifest as a client sends it, checked for form only.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentRef {
    Object {
        path: String,
        etag: Option<String>,
        size_bytes: Option<u64>,
        range: Option<String>,
    },
    Data(Vec<u8>),
}

/// A piece of a large object's content, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Bytes `first..=last` of an object of `size` bytes.
    Object {
        container: String,
        object: String,
        first: u64,
        last: u64,
        size: u64,
    },
    Data(Bytes),
}

impl Piece {
    pub fn len(&self) -> u64 {
        match self {
            Piece::Object { first, last, .. } => last - first + 1,
            Piece::Data(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `/container/object` split, both parts non-empty.
pub fn split_segment_path(p: &str) -> Option<(String, String)> {
    let (c, o) = p.trim_start_matches('/').split_once('/')?;
    if c.is_empty() || o.is_empty() {
        return None;
    }
    Some((c.to_string(), o.to_string()))
}

/// Parses a client's manifest; every entry's problems are reported, as
/// Swift reports them (`Index N: ...`).
pub fn parse_request(raw: &[u8]) -> Result<Vec<SegmentRef>, String> {
    let value: Value =
        serde_json::from_slice(raw).map_err(|_| "Manifest must be valid JSON.".to_string())?;
    let Value::Array(items) = value else {
        return Err("Manifest must be a list.".into());
    };
    let mut refs = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_entry(item) {
            Ok(r) => refs.push(r),
            Err(why) => problems.push(format!("Index {i}: {why}")),
        }
    }
    if problems.is_empty() {
        Ok(refs)
    } else {
        Err(problems.join("\n"))
    }
}

fn parse_entry(item: &Value) -> Result<SegmentRef, String> {
    let Value::Object(map) = item else {
        return Err("not a JSON object".into());
    };
    if map.contains_key("data") {
        if map.len() > 1 {
            return Err("data segments may have no other keys".into());
        }
        let Some(Value::String(b64)) = map.get("data") else {
            return Err("data must be a base64 string".into());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "data must be valid base64".to_string())?;
        if bytes.is_empty() {
            return Err("too small; each segment must be at least 1 byte.".into());
        }
        return Ok(SegmentRef::Data(bytes));
    }
    let Some(path) = map.get("path") else {
        return Err("expected keys to include path or data".into());
    };
    let extra: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !["path", "etag", "size_bytes", "range"].contains(k))
        .collect();
    if !extra.is_empty() {
        return Err(format!("extraneous keys \"{}\"", extra.join("\", \"")));
    }
    let path = match path {
        Value::String(p) if split_segment_path(p).is_some() => p.clone(),
        _ => {
            return Err(
                "path does not refer to an object. Path must be of the form /container/object."
                    .into(),
            )
        }
    };
    let etag = match map.get("etag") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.trim_matches('"').to_string()),
        Some(_) => return Err("etag must be a string or null".into()),
    };
    let size_bytes = match map.get("size_bytes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| "invalid size_bytes".to_string())?),
    };
    let range = match map.get("range") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r.clone()),
        Some(_) => return Err("range must be a string".into()),
    };
    Ok(SegmentRef::Object {
        path,
        etag,
        size_bytes,
        range,
    })
}

/// A segment's `range` checked against its object's size, as stored
/// (`first-last`).
pub fn resolve_range(range: &str, size: u64) -> Result<String, String> {
    match range::resolve(Some(&format!("bytes={range}")), size) {
        Ranges::Parts(p) if p.len() == 1 => Ok(format!("{}-{}", p[0].0, p[0].1)),
        Ranges::Parts(_) => Err("multiple ranges (only one allowed)".into()),
        Ranges::Unsatisfiable => Err("Unsatisfiable Range".into()),
        Ranges::Whole => Err("invalid range".into()),
    }
}

/// `first-last` of a stored range.
fn stored_range(r: &str) -> Option<(u64, u64)> {
    let (a, b) = r.split_once('-')?;
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

impl StoredSegment {
    /// The bytes this entry adds to the large object.
    pub fn len(&self) -> u64 {
        match self {
            StoredSegment::Data { data } => decode(data).len() as u64,
            StoredSegment::Object(s) => match s.range.as_deref().and_then(stored_range) {
                Some((a, b)) => b - a + 1,
                None => s.bytes,
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn decode(data: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default()
}

/// The data entry for `bytes`.
pub fn data_segment(bytes: &[u8]) -> StoredSegment {
    StoredSegment::Data {
        data: base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// A static large object's ETag (hex, unquoted).
pub fn slo_etag(segments: &[StoredSegment]) -> String {
    let mut md5 = Md5::new();
    for s in segments {
        match s {
            StoredSegment::Data { data } => {
                md5.update(hex::encode(Md5::digest(decode(data))).as_bytes());
            }
            StoredSegment::Object(seg) => {
                let hash = seg.hash.trim_matches('"');
                match &seg.range {
                    Some(r) => md5.update(format!("{hash}:{r};").as_bytes()),
                    None => md5.update(hash.as_bytes()),
                }
            }
        }
    }
    hex::encode(md5.finalize())
}

/// The pieces of one entry whose content is not itself a manifest (a data
/// entry, or a plain object segment).
pub fn leaf_piece(s: &StoredSegment) -> Option<Piece> {
    match s {
        StoredSegment::Data { data } => Some(Piece::Data(Bytes::from(decode(data)))),
        StoredSegment::Object(seg) if !seg.sub_slo => {
            let (container, object) = split_segment_path(&seg.name)?;
            let (first, last) = match seg.range.as_deref().and_then(stored_range) {
                Some(r) => r,
                None if seg.bytes == 0 => return Some(Piece::Data(Bytes::new())),
                None => (0, seg.bytes - 1),
            };
            Some(Piece::Object {
                container,
                object,
                first,
                last,
                size: seg.bytes,
            })
        }
        StoredSegment::Object(_) => None,
    }
}

/// The range of a sub-SLO entry within its content (`None`: all of it).
pub fn sub_range(seg: &Segment) -> Option<(u64, u64)> {
    seg.range.as_deref().and_then(stored_range)
}

/// The pieces that cover bytes `first..=last` of the content `pieces`
/// make, trimmed at both ends.
pub fn slice(pieces: Vec<Piece>, first: u64, last: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for p in pieces {
        let len = p.len();
        let (start, end) = (offset, offset + len);
        offset = end;
        if len == 0 || end <= first || start > last {
            continue;
        }
        let from = first.saturating_sub(start);
        let to = (last - start).min(len - 1);
        out.push(match p {
            Piece::Data(b) => Piece::Data(b.slice(from as usize..=to as usize)),
            Piece::Object {
                container,
                object,
                first: f,
                size,
                ..
            } => Piece::Object {
                container,
                object,
                first: f + from,
                last: f + to,
                size,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, first: u64, last: u64, size: u64) -> Piece {
        Piece::Object {
            container: "c".into(),
            object: name.into(),
            first,
            last,
            size,
        }
    }

    #[test]
    fn slices_cut_pieces_at_both_ends() {
        let pieces = vec![
            obj("a", 0, 9, 10),
            Piece::Data(Bytes::from_static(b"xyz")),
            obj("b", 5, 14, 20),
        ];
        assert_eq!(slice(pieces.clone(), 0, 22), pieces);
        assert_eq!(
            slice(pieces.clone(), 8, 14),
            vec![
                obj("a", 8, 9, 10),
                Piece::Data(Bytes::from_static(b"xyz")),
                obj("b", 5, 6, 20)
            ]
        );
        assert_eq!(
            slice(pieces.clone(), 11, 11),
            vec![Piece::Data(Bytes::from_static(b"y"))]
        );
        assert_eq!(slice(pieces, 22, 22), vec![obj("b", 14, 14, 20)]);
    }

    #[test]
    fn manifests_are_checked_entry_by_entry() {
        let ok = br#"[{"path": "/c/a", "etag": null, "size_bytes": 3},
                      {"path": "c/b", "range": "1-2"}, {"data": "eHl6"}]"#;
        let refs = parse_request(ok).expect("valid");
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[2], SegmentRef::Data(b"xyz".to_vec()));
        let bad = br#"[{"path": "/c"}, {"path": "/c/a", "color": 1}, {"data": "!!"},
                       {"etag": "x"}, 7, {"path": "/c/a", "size_bytes": -1}]"#;
        let why = parse_request(bad).expect_err("invalid");
        for i in 0..6 {
            assert!(why.contains(&format!("Index {i}:")), "{why}");
        }
        assert!(why.contains("extraneous keys \"color\""), "{why}");
        assert!(parse_request(b"{}").is_err());
        assert!(parse_request(b"not json").is_err());
    }

    #[test]
    fn etags_and_lengths_follow_swift() {
        let seg = |hash: &str, bytes, range: Option<&str>| {
            StoredSegment::Object(Segment {
                name: "/c/o".into(),
                hash: hash.into(),
                bytes,
                content_type: String::new(),
                last_modified: String::new(),
                range: range.map(String::from),
                sub_slo: false,
            })
        };
        let plain = [seg("aa", 10, None), seg("bb", 20, None)];
        assert_eq!(slo_etag(&plain), hex::encode(Md5::digest(b"aabb")));
        let ranged = [seg("aa", 10, Some("2-5")), data_segment(b"xyz")];
        let want = format!("aa:2-5;{}", hex::encode(Md5::digest(b"xyz")));
        assert_eq!(slo_etag(&ranged), hex::encode(Md5::digest(want.as_bytes())));
        assert_eq!(ranged.iter().map(StoredSegment::len).sum::<u64>(), 4 + 3);
        assert_eq!(resolve_range("2-5", 10), Ok("2-5".into()));
        assert_eq!(resolve_range("-3", 10), Ok("7-9".into()));
        assert!(resolve_range("20-30", 10).is_err());
        assert!(resolve_range("0-1,3-4", 10).is_err());
    }

    #[test]
    fn stored_entries_round_trip_in_swift_form() {
        let stored = vec![
            data_segment(b"hi"),
            StoredSegment::Object(Segment {
                name: "/c/o".into(),
                hash: "h".into(),
                bytes: 4,
                content_type: "text/plain".into(),
                last_modified: String::new(),
                range: None,
                sub_slo: true,
            }),
        ];
        let json = serde_json::to_string(&stored).expect("json");
        assert!(json.contains(r#"{"data":"aGk="}"#), "{json}");
        assert!(json.contains(r#""sub_slo":true"#), "{json}");
        let back: Vec<StoredSegment> = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, stored);
    }
}
