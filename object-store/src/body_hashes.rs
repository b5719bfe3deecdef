//! What an object's body is checked against: its blake3, and the blake3
//! chaining value of every 1 MiB chunk, so that a node can check each chunk
//! before it sends it instead of learning at the end that the whole was bad.
//!
//! The chunk values are the interior nodes of the body's own BLAKE3 tree
//! (blake3's `hazmat` API, as Bao uses it): hashing a body once yields both
//! the chunk values and the whole body's hash, merged from them, so a PUT
//! hashes each byte once, as before. A body of one chunk or less keeps no
//! chunk values: it is checked whole against its blake3.
//!
//! Pure: no I/O. The node's read path ([`crate::object_body`]) and the
//! auditor use it.

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unit a node checks before sending: a power of two, so chunks are
/// whole subtrees of the BLAKE3 tree.
pub const CHUNK: u64 = 1 << 20;

/// The chaining values of a body's chunks, in order (empty for a body of
/// one chunk or less). Stored in the object record as one hex string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkHashes(pub Vec<ChainingValue>);

impl ChunkHashes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ChunkHashes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.concat()))
    }
}

impl<'de> Deserialize<'de> for ChunkHashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        if bytes.len() % 32 != 0 {
            return Err(serde::de::Error::custom("chunk hashes are 32 bytes each"));
        }
        Ok(ChunkHashes(
            bytes
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32 bytes"))
                .collect(),
        ))
    }
}

/// Hashes a body as it arrives, in pieces of any size.
pub struct BodyHasher {
    /// Hashes the chunk being received, from its offset in the body.
    current: blake3::Hasher,
    /// Bytes of the current chunk received.
    filled: u64,
    done: Vec<ChainingValue>,
}

impl Default for BodyHasher {
    fn default() -> Self {
        BodyHasher {
            current: blake3::Hasher::new(),
            filled: 0,
            done: Vec::new(),
        }
    }
}

impl BodyHasher {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.filled == CHUNK {
                self.done.push(self.current.finalize_non_root());
                self.current = blake3::Hasher::new();
                self.current
                    .set_input_offset(self.done.len() as u64 * CHUNK);
                self.filled = 0;
            }
            let room = (CHUNK - self.filled) as usize;
            let (now, later) = data.split_at(room.min(data.len()));
            self.current.update(now);
            self.filled += now.len() as u64;
            data = later;
        }
    }

    /// The body's blake3 and its chunk values.
    pub fn finish(mut self) -> (blake3::Hash, ChunkHashes) {
        if self.done.is_empty() {
            return (self.current.finalize(), ChunkHashes::default());
        }
        let len = self.done.len() as u64 * CHUNK + self.filled;
        self.done.push(self.current.finalize_non_root());
        let root = root_of(&self.done, len);
        (root, ChunkHashes(self.done))
    }
}

/// The blake3 of a body of `len` bytes (more than one chunk) from its chunk values.
fn root_of(chunks: &[ChainingValue], len: u64) -> blake3::Hash {
    let (left, right) = halves(chunks, len);
    merge_subtrees_root(&left, &right, Mode::Hash)
}

/// The chaining value of the subtree over `chunks` (`len` bytes).
fn subtree(chunks: &[ChainingValue], len: u64) -> ChainingValue {
    if chunks.len() == 1 {
        return chunks[0];
    }
    let (left, right) = halves(chunks, len);
    merge_subtrees_non_root(&left, &right, Mode::Hash)
}

/// The two subtrees BLAKE3 splits `len` bytes into (the left one the
/// largest power of two of chunks that leaves some on the right).
fn halves(chunks: &[ChainingValue], len: u64) -> (ChainingValue, ChainingValue) {
    let left = left_subtree_len(len);
    let n = (left / CHUNK) as usize;
    (
        subtree(&chunks[..n], left),
        subtree(&chunks[n..], len - left),
    )
}

/// What a stored body is checked against (borrowed from its record).
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub size: u64,
    /// Hex blake3 of the whole body.
    pub blake3: &'a str,
    pub chunks: &'a [ChainingValue],
}

impl Expected<'_> {
    /// Whether the chunk numbered `index` (all `CHUNK` bytes of it, or the
    /// rest of the body for the last one) is what was stored.
    pub fn chunk_matches(&self, index: u64, data: &[u8]) -> bool {
        let start = index.saturating_mul(CHUNK);
        if start > self.size || data.len() as u64 != (self.size - start).min(CHUNK) {
            return false;
        }
        if self.chunks.is_empty() {
            return index == 0 && blake3::hash(data).to_hex().as_str() == self.blake3;
        }
        let Some(expected) = self.chunks.get(index as usize) else {
            return false;
        };
        let mut h = blake3::Hasher::new();
        h.set_input_offset(start);
        h.update(data);
        h.finalize_non_root() == *expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the chunk values are those of a body with this blake3 and
    /// size: one per chunk (none for a single chunk), merging to the root.
    fn is_consistent(e: &Expected) -> bool {
        let count = e.size.div_ceil(CHUNK);
        if count <= 1 {
            return e.chunks.is_empty();
        }
        e.chunks.len() as u64 == count && root_of(e.chunks, e.size).to_hex().as_str() == e.blake3
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[test]
    fn the_merged_root_is_the_bodys_blake3() {
        let c = CHUNK as usize;
        for len in [
            0,
            1,
            1024,
            c - 1,
            c,
            c + 1,
            2 * c,
            3 * c - 5,
            4 * c,
            5 * c + 77,
            7 * c,
            8 * c + 1,
        ] {
            let data = body(len);
            for piece in [1000, 65536, c + 3] {
                let mut h = BodyHasher::default();
                for p in data.chunks(piece) {
                    h.update(p);
                }
                let (root, chunks) = h.finish();
                assert_eq!(root, blake3::hash(&data), "len {len}, pieces of {piece}");
                let hex = root.to_hex();
                let expected = Expected {
                    size: len as u64,
                    blake3: hex.as_str(),
                    chunks: &chunks.0,
                };
                assert!(is_consistent(&expected), "len {len}");
                for (i, chunk) in data.chunks(c).enumerate() {
                    assert!(
                        expected.chunk_matches(i as u64, chunk),
                        "len {len} chunk {i}"
                    );
                    let mut bad = chunk.to_vec();
                    bad[chunk.len() / 2] ^= 1;
                    assert!(!expected.chunk_matches(i as u64, &bad));
                    assert!(!expected.chunk_matches(i as u64, &chunk[..chunk.len() - 1]));
                }
            }
        }
    }

    #[test]
    fn a_chunk_is_checked_only_where_it_belongs() {
        let data = body(3 * CHUNK as usize);
        let mut h = BodyHasher::default();
        h.update(&data);
        let (root, chunks) = h.finish();
        let hex = root.to_hex();
        let e = Expected {
            size: data.len() as u64,
            blake3: hex.as_str(),
            chunks: &chunks.0,
        };
        let c = CHUNK as usize;
        // The right bytes at the wrong place, and places past the end.
        assert!(!e.chunk_matches(1, &data[..c]));
        assert!(!e.chunk_matches(3, &[]));
        assert!(!e.chunk_matches(u64::MAX, &data[..c]));
        let text = serde_json::to_string(&chunks).unwrap();
        assert_eq!(serde_json::from_str::<ChunkHashes>(&text).unwrap(), chunks);
        assert!(serde_json::from_str::<ChunkHashes>("\"abcd\"").is_err());
    }
}
