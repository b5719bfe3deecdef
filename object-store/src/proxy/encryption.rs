//! Server-side encryption of object bodies (S3's SSE-S3 and SSE-C), in the
//! object layer, so that every path that writes or reads a body (PUT,
//! copies, multipart parts, GET, ranges, large objects, either API) seals
//! and opens it alike.
//!
//! - Each object gets its own random 256-bit data key. The body is sealed
//!   with AES-256-GCM in 64 KiB chunks, each with its 16-byte tag. A
//!   chunk's nonce is its index and a last-chunk flag (the STREAM
//!   construction), so chunks cannot be reordered, dropped or cut off
//!   unnoticed. A range is read by opening only the chunks it covers.
//! - The data key is kept wrapped (AES-256-GCM) by one of two keys:
//!   - the cluster's master key (SSE-S3, `sse_master_key` in the proxy's
//!     configuration);
//!   - the customer's key (SSE-C). The customer key itself is never stored,
//!     and a wrong one fails to unwrap: 403.
//! - What is kept is object system metadata ([`SEAL_KEY`]): the mode, the
//!   wrapped key, the customer key's MD5 (to echo it back) and the size of
//!   the plaintext. The nodes store, hash (blake3) and audit the sealed
//!   bytes like any others, so their integrity checks still hold.
//! - Clients see the plaintext's size. SSE-S3 objects also show the
//!   plaintext's MD5 as their ETag ([`ETAG_HEADER`]), as S3 does. An SSE-C
//!   object's ETag is that of its sealed bytes: S3 too shows one that is
//!   not the MD5 of the data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use service_kit::http_util::header_str;

/// Plaintext bytes per sealed chunk.
pub const CHUNK: u64 = 64 << 10;
/// The GCM tag after each chunk.
const TAG: u64 = 16;

/// The object system metadata item (`x-object-sysmeta-crypto`) that says
/// how a body is sealed.
pub const SEAL_KEY: &str = "crypto";
/// The items as the headers they are kept as (read on every GET and HEAD,
/// so spelled out rather than formatted per request); the second holds an
/// SSE-S3 body's plaintext MD5.
const SEAL_HEADER: &str = "x-object-sysmeta-crypto";
pub const ETAG_HEADER: &str = "x-object-sysmeta-crypto-etag";
const UPLOAD_HEADER: &str = "x-object-sysmeta-crypto-parts";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A 256-bit key.
#[derive(Clone, PartialEq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn random() -> Key {
        Key(service_kit::ids::rand_bytes())
    }

    /// A key given in base64 (the master key in configuration).
    pub fn from_base64(s: &str) -> Option<Key> {
        let raw = B64.decode(s.trim()).ok()?;
        Some(Key(raw.try_into().ok()?))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&self.0))
    }
}

/// Why a customer key was refused (S3's SSE-C headers).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("The encryption algorithm must be AES256")]
    Algorithm,
    #[error("The secret key was invalid for the specified algorithm.")]
    Key,
    #[error("The calculated MD5 hash of the key did not match the hash that was provided.")]
    Md5,
    #[error("Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key and its MD5.")]
    Incomplete,
}

/// A customer's key (SSE-C), checked against the MD5 sent with it.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerKey {
    key: Key,
    /// Base64 of the key's MD5, as S3 echoes it.
    pub md5: String,
}

impl CustomerKey {
    /// The three SSE-C headers' values (algorithm, key, key MD5).
    pub fn parse(
        algorithm: Option<&str>,
        key: Option<&str>,
        md5: Option<&str>,
    ) -> Result<Option<CustomerKey>, KeyError> {
        let (algorithm, key, md5) = match (algorithm, key, md5) {
            (None, None, None) => return Ok(None),
            (Some(a), Some(k), Some(m)) => (a, k, m),
            (Some(a), _, _) if a != "AES256" => return Err(KeyError::Algorithm),
            _ => return Err(KeyError::Incomplete),
        };
        if algorithm != "AES256" {
            return Err(KeyError::Algorithm);
        }
        let raw = B64.decode(key.trim()).map_err(|_| KeyError::Key)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| KeyError::Key)?;
        let computed = B64.encode(Md5::digest(raw));
        if computed != md5.trim() {
            return Err(KeyError::Md5);
        }
        Ok(Some(CustomerKey {
            key: Key(raw),
            md5: computed,
        }))
    }
}

/// The container system metadata that seals every object written into
/// the container without a sealing of its own (S3's bucket default
/// encryption; `AES256` is SSE-S3), whichever API writes it.
pub const DEFAULT_HEADER: &str = "x-container-sysmeta-s3-encryption";

/// The sealing a container gives writes that ask for none.
pub fn container_default(container: &HeaderMap) -> Option<Sealing> {
    (header_str(container, DEFAULT_HEADER).as_deref() == Some("AES256")).then_some(Sealing::Cluster)
}

/// How a write asks its body to be sealed.
#[derive(Clone, Debug, PartialEq)]
pub enum Sealing {
    /// SSE-S3: the data key wrapped by the cluster's master key.
    Cluster,
    /// SSE-C.
    Customer(CustomerKey),
}

/// The kinds of sealing, as kept.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "sse-s3")]
    Cluster,
    #[serde(rename = "sse-c")]
    Customer,
}

/// Why a sealed body cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpenError {
    /// SSE-C, and no key was given.
    #[error("the object is encrypted with a customer key, which the request must give")]
    KeyNeeded,
    /// SSE-C, and the key given is not the one the object was sealed with.
    #[error("the customer key given is not the object's")]
    WrongKey,
    /// A key was given for an object not sealed with a customer key.
    #[error("the encryption parameters are not applicable to this object")]
    NotApplicable,
    /// SSE-S3, and this proxy has no master key (or another one).
    #[error("the cluster's encryption key is not configured or does not open this object")]
    NoMasterKey,
}

/// How one object's body is sealed (its [`SEAL_KEY`] system metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub mode: Mode,
    /// Base64 of the wrapping nonce and the wrapped data key.
    wrapped: String,
    /// SSE-C: base64 of the customer key's MD5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_md5: Option<String>,
    /// The plaintext's length.
    pub size: u64,
}

/// How a large object's parts are sealed (S3 multipart uploads with SSE),
/// kept on the upload's marker and on the completed object
/// ([`UPLOAD_KEY`]), so that a read is refused before any part is opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedParts {
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_md5: Option<String>,
}

/// The object system metadata item holding [`SealedParts`].
pub const UPLOAD_KEY: &str = "crypto-parts";

impl SealedParts {
    pub fn of_sealing(sealing: &Sealing) -> SealedParts {
        match sealing {
            Sealing::Cluster => SealedParts {
                mode: Mode::Cluster,
                customer_md5: None,
            },
            Sealing::Customer(c) => SealedParts {
                mode: Mode::Customer,
                customer_md5: Some(c.md5.clone()),
            },
        }
    }

    pub fn of(h: &HeaderMap) -> Option<SealedParts> {
        Self::parse(&header_str(h, UPLOAD_HEADER)?)
    }

    /// The item's kept value.
    pub fn parse(kept: &str) -> Option<SealedParts> {
        serde_json::from_str(kept).ok()
    }

    pub fn item(&self) -> (String, String) {
        (
            UPLOAD_KEY.to_string(),
            serde_json::to_string(self).expect("json"),
        )
    }

    /// Whether a request's keys fit: the same customer key, or none.
    pub fn check(&self, customer: Option<&CustomerKey>) -> Result<(), OpenError> {
        match (self.mode, customer) {
            (Mode::Cluster, None) => Ok(()),
            (Mode::Cluster, Some(_)) => Err(OpenError::NotApplicable),
            (Mode::Customer, None) => Err(OpenError::KeyNeeded),
            (Mode::Customer, Some(c)) if Some(&c.md5) == self.customer_md5.as_ref() => Ok(()),
            (Mode::Customer, Some(_)) => Err(OpenError::WrongKey),
        }
    }
}

/// How a stored object (plain or large) is sealed, as S3 shows it: the
/// mode, and an SSE-C key's MD5; from its kept items ([`SEAL_KEY`],
/// [`UPLOAD_KEY`]).
pub fn shown(sealed: Option<&str>, parts: Option<&str>) -> Option<SealedParts> {
    if let Some(s) = sealed.and_then(Sealed::parse) {
        return Some(SealedParts {
            mode: s.mode,
            customer_md5: s.customer_md5,
        });
    }
    parts.and_then(SealedParts::parse)
}

/// The keys a proxy can open bodies with: its master key, and the
/// customer key a request gave.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub master: Option<Key>,
    pub customer: Option<CustomerKey>,
}

/// What opening a sealed object needs: its data key, and its plaintext's
/// size and ETag as clients see them.
#[derive(Clone, Debug)]
pub struct Opened {
    data_key: Key,
    pub size: u64,
}

impl Sealed {
    /// How the stored object with these (node or client) headers is sealed.
    pub fn of(h: &HeaderMap) -> Option<Sealed> {
        Self::parse(&header_str(h, SEAL_HEADER)?)
    }

    /// The item's kept value.
    pub fn parse(kept: &str) -> Option<Sealed> {
        serde_json::from_str(kept).ok()
    }

    /// A new data key for a body of `size` bytes, and how it is kept.
    pub fn new(
        sealing: &Sealing,
        master: Option<&Key>,
        size: u64,
    ) -> Result<(Key, Sealed), OpenError> {
        let data_key = Key::random();
        let (mode, kek, customer_md5) = match sealing {
            Sealing::Cluster => (Mode::Cluster, master.ok_or(OpenError::NoMasterKey)?, None),
            Sealing::Customer(c) => (Mode::Customer, &c.key, Some(c.md5.clone())),
        };
        let nonce: [u8; 12] = service_kit::ids::rand_bytes();
        let wrapped = kek
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &data_key.0,
                    aad: aad(mode),
                },
            )
            .map_err(|_| OpenError::NoMasterKey)?;
        let mut kept = nonce.to_vec();
        kept.extend(wrapped);
        Ok((
            data_key,
            Sealed {
                mode,
                wrapped: B64.encode(kept),
                customer_md5,
                size,
            },
        ))
    }

    /// The system metadata item that keeps this.
    pub fn item(&self) -> (String, String) {
        (
            SEAL_KEY.to_string(),
            serde_json::to_string(self).expect("json"),
        )
    }

    /// The data key, unwrapped with the key the mode needs.
    pub fn open(&self, keys: &Keys) -> Result<Opened, OpenError> {
        let kek = match (self.mode, &keys.customer) {
            (Mode::Cluster, Some(_)) => return Err(OpenError::NotApplicable),
            (Mode::Cluster, None) => keys.master.as_ref().ok_or(OpenError::NoMasterKey)?,
            (Mode::Customer, None) => return Err(OpenError::KeyNeeded),
            (Mode::Customer, Some(c)) => &c.key,
        };
        let wrong = || match self.mode {
            Mode::Cluster => OpenError::NoMasterKey,
            Mode::Customer => OpenError::WrongKey,
        };
        let kept = B64.decode(&self.wrapped).map_err(|_| wrong())?;
        if kept.len() < 12 {
            return Err(wrong());
        }
        let (nonce, wrapped) = kept.split_at(12);
        let raw = kek
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: wrapped,
                    aad: aad(self.mode),
                },
            )
            .map_err(|_| wrong())?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| wrong())?;
        Ok(Opened {
            data_key: Key(raw),
            size: self.size,
        })
    }
}

fn aad(mode: Mode) -> &'static [u8] {
    match mode {
        Mode::Cluster => b"nubo data key sse-s3",
        Mode::Customer => b"nubo data key sse-c",
    }
}

/// How many chunks a body of `size` bytes is sealed in (an empty body is
/// one empty chunk, so that even it is authenticated).
fn chunks(size: u64) -> u64 {
    size.div_ceil(CHUNK).max(1)
}

/// The sealed length of a body of `size` bytes.
pub fn sealed_len(size: u64) -> u64 {
    size + chunks(size) * TAG
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals a body as it passes, chunk by chunk.
pub struct Sealer {
    cipher: Aes256Gcm,
    index: u64,
    pending: BytesMut,
}

impl Sealer {
    pub fn new(data_key: &Key) -> Sealer {
        Sealer {
            cipher: data_key.cipher(),
            index: 0,
            pending: BytesMut::new(),
        }
    }

    /// Takes plaintext; gives the sealed chunks completed so far (a full
    /// chunk is held back until more follows, since the last one is
    /// sealed as last).
    pub fn push(&mut self, data: &[u8]) -> Bytes {
        self.pending.extend_from_slice(data);
        let mut out = BytesMut::new();
        while self.pending.len() as u64 > CHUNK {
            let chunk = self.pending.split_to(CHUNK as usize);
            out.extend_from_slice(&self.seal(&chunk, false));
        }
        out.freeze()
    }

    /// The last chunk.
    pub fn finish(mut self) -> Bytes {
        let rest = std::mem::take(&mut self.pending);
        Bytes::from(self.seal(&rest, true))
    }

    fn seal(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        let n = nonce(self.index, last);
        self.index += 1;
        self.cipher
            .encrypt(Nonce::from_slice(&n), chunk)
            .expect("AES-GCM seals any chunk below its length limit")
    }
}

/// Seals a whole body at once.
#[cfg(test)]
fn seal_all(data_key: &Key, plain: &[u8]) -> Bytes {
    let mut s = Sealer::new(data_key);
    let mut out = BytesMut::from(&s.push(plain)[..]);
    out.extend_from_slice(&s.finish());
    out.freeze()
}

/// The sealed bytes that hold plaintext bytes `first..=last` of a body of
/// `size` bytes, and how to cut the plaintext out of them once opened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// The index of the first chunk read.
    pub first_chunk: u64,
    /// The sealed byte range to read (inclusive).
    pub sealed: (u64, u64),
    /// Plaintext bytes of the first chunk before the range.
    pub skip: u64,
    /// Plaintext bytes wanted.
    pub take: u64,
    total_chunks: u64,
}

impl Window {
    /// `first..=last` must lie within `size` (the caller resolved the
    /// range against the plaintext's size).
    pub fn of(size: u64, first: u64, last: u64) -> Window {
        let step = CHUNK + TAG;
        let (a, b) = (first / CHUNK, last / CHUNK);
        Window {
            first_chunk: a,
            sealed: (a * step, ((b + 1) * step).min(sealed_len(size)) - 1),
            skip: first - a * CHUNK,
            take: last - first + 1,
            total_chunks: chunks(size),
        }
    }

    /// The whole body.
    pub fn whole(size: u64) -> Window {
        Window {
            first_chunk: 0,
            sealed: (0, sealed_len(size) - 1),
            skip: 0,
            take: size,
            total_chunks: chunks(size),
        }
    }
}

/// Opens sealed chunks as they arrive and cuts out the window's plaintext.
pub struct Opener {
    cipher: Aes256Gcm,
    index: u64,
    window: Window,
    pending: BytesMut,
    skip: u64,
    left: u64,
}

/// A sealed chunk failed its tag: the bytes are not what was sealed with
/// this key.
#[derive(Debug, thiserror::Error)]
#[error("a sealed chunk failed authentication")]
pub struct Tampered;

impl Opener {
    pub fn new(opened: &Opened, window: Window) -> Opener {
        Opener {
            cipher: opened.data_key.cipher(),
            index: window.first_chunk,
            window,
            pending: BytesMut::new(),
            skip: window.skip,
            left: window.take,
        }
    }

    /// Takes sealed bytes; gives the plaintext of the chunks completed.
    pub fn push(&mut self, data: &[u8]) -> Result<Bytes, Tampered> {
        self.pending.extend_from_slice(data);
        let step = (CHUNK + TAG) as usize;
        let mut out = BytesMut::new();
        while self.pending.len() >= step && self.index + 1 < self.window.total_chunks {
            let chunk = self.pending.split_to(step);
            self.open(&chunk, false, &mut out)?;
        }
        Ok(out.freeze())
    }

    /// The rest: the last chunk read (the object's last, or a full one).
    pub fn finish(mut self) -> Result<Bytes, Tampered> {
        let mut out = BytesMut::new();
        let rest = std::mem::take(&mut self.pending);
        if self.left > 0 || !rest.is_empty() {
            let last = self.index + 1 == self.window.total_chunks;
            self.open(&rest, last, &mut out)?;
        }
        if self.left > 0 {
            return Err(Tampered);
        }
        Ok(out.freeze())
    }

    fn open(&mut self, chunk: &[u8], last: bool, out: &mut BytesMut) -> Result<(), Tampered> {
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&nonce(self.index, last)), chunk)
            .map_err(|_| Tampered)?;
        self.index += 1;
        let from = (self.skip as usize).min(plain.len());
        self.skip -= from as u64;
        let n = ((plain.len() - from) as u64).min(self.left) as usize;
        out.extend_from_slice(&plain[from..from + n]);
        self.left -= n as u64;
        Ok(())
    }
}

/// A stored body's plaintext (the window of it), opened as it streams; a
/// chunk that fails its tag ends the body with an error.
pub fn open_body(
    mut sealed: service_kit::http_util::Body,
    opened: &Opened,
    window: Window,
) -> service_kit::http_util::Body {
    use http_body_util::BodyExt;
    use hyper::body::Frame;
    let (tx, body) = service_kit::http_util::channel_body();
    let mut opener = Opener::new(opened, window);
    tokio::spawn(async move {
        let broken = || service_kit::http_util::box_error("a sealed chunk failed authentication");
        while let Some(frame) = sealed.frame().await {
            let data = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            match opener.push(&data) {
                Ok(plain) if plain.is_empty() => {}
                Ok(plain) => {
                    if tx.send(Ok(Frame::data(plain))).await.is_err() {
                        return;
                    }
                }
                Err(Tampered) => {
                    let _ = tx.send(Err(broken())).await;
                    return;
                }
            }
        }
        match opener.finish() {
            Ok(plain) if plain.is_empty() => {}
            Ok(plain) => {
                let _ = tx.send(Ok(Frame::data(plain))).await;
            }
            Err(Tampered) => {
                let _ = tx.send(Err(broken())).await;
            }
        }
    });
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(key: &Key, size: u64) -> Opened {
        Opened {
            data_key: key.clone(),
            size,
        }
    }

    fn open_range(key: &Key, sealed: &[u8], size: u64, first: u64, last: u64) -> Vec<u8> {
        let w = Window::of(size, first, last);
        let part = &sealed[w.sealed.0 as usize..=w.sealed.1 as usize];
        let mut o = Opener::new(&opened(key, size), w);
        let mut out = Vec::new();
        // Fed in odd pieces, as a network gives them.
        for piece in part.chunks(7777) {
            out.extend_from_slice(&o.push(piece).unwrap());
        }
        out.extend_from_slice(&o.finish().unwrap());
        out
    }

    #[test]
    fn every_range_opens_to_its_plaintext() {
        let key = Key::random();
        for size in [0u64, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sealed = seal_all(&key, &plain);
            assert_eq!(sealed.len() as u64, sealed_len(size));
            if size == 0 {
                let mut o = Opener::new(&opened(&key, 0), Window::whole(0));
                assert!(o.push(&sealed).unwrap().is_empty());
                assert!(o.finish().unwrap().is_empty());
                continue;
            }
            let picks = [
                (0, size - 1),
                (0, 0),
                (size - 1, size - 1),
                (size / 2, size - 1),
                (size / 3, (size / 3 + CHUNK).min(size - 1)),
            ];
            for (a, b) in picks {
                let got = open_range(&key, &sealed, size, a, b);
                assert_eq!(
                    got,
                    &plain[a as usize..=b as usize],
                    "size {size} range {a}-{b}"
                );
            }
        }
    }

    #[test]
    fn tampering_and_cutting_are_caught() {
        let key = Key::random();
        let plain = vec![7u8; (2 * CHUNK + 10) as usize];
        let sealed = seal_all(&key, &plain).to_vec();
        let size = plain.len() as u64;
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        let mut o = Opener::new(&opened(&key, size), Window::whole(size));
        let r = o.push(&flipped).and_then(|_| o.finish());
        assert!(r.is_err());
        // The body cut after its second chunk: the second is not the last.
        let cut = &sealed[..(2 * (CHUNK + TAG)) as usize];
        let mut o = Opener::new(&opened(&key, size), Window::whole(size));
        let r = o.push(cut).and_then(|_| o.finish());
        assert!(r.is_err());
        // Another key.
        let mut o = Opener::new(&opened(&Key::random(), size), Window::whole(size));
        assert!(o.push(&sealed).and_then(|_| o.finish()).is_err());
    }

    #[test]
    fn data_keys_open_only_with_their_key() {
        let master = Key::random();
        let (data_key, sealed) = Sealed::new(&Sealing::Cluster, Some(&master), 5).unwrap();
        let keys = Keys {
            master: Some(master.clone()),
            customer: None,
        };
        assert_eq!(sealed.open(&keys).unwrap().data_key, data_key);
        let wrong = Keys {
            master: Some(Key::random()),
            customer: None,
        };
        assert_eq!(sealed.open(&wrong).unwrap_err(), OpenError::NoMasterKey);

        let raw = [9u8; 32];
        let md5 = B64.encode(Md5::digest(raw));
        let c = CustomerKey::parse(Some("AES256"), Some(&B64.encode(raw)), Some(&md5))
            .unwrap()
            .unwrap();
        let (_, by_customer) = Sealed::new(&Sealing::Customer(c.clone()), None, 5).unwrap();
        assert!(!by_customer.wrapped.contains(&B64.encode(raw)));
        let with = |c: Option<&CustomerKey>| Keys {
            master: Some(master.clone()),
            customer: c.cloned(),
        };
        assert!(by_customer.open(&with(Some(&c))).is_ok());
        assert_eq!(
            by_customer.open(&with(None)).unwrap_err(),
            OpenError::KeyNeeded
        );
        let other_raw = [8u8; 32];
        let other_c = CustomerKey::parse(
            Some("AES256"),
            Some(&B64.encode(other_raw)),
            Some(&B64.encode(Md5::digest(other_raw))),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            by_customer.open(&with(Some(&other_c))).unwrap_err(),
            OpenError::WrongKey
        );
        assert_eq!(
            sealed.open(&with(Some(&c))).unwrap_err(),
            OpenError::NotApplicable
        );
    }

    #[test]
    fn customer_keys_are_checked() {
        let raw = [1u8; 32];
        let key = B64.encode(raw);
        let md5 = B64.encode(Md5::digest(raw));
        let p = |a: Option<&str>, k: Option<&str>, m: Option<&str>| CustomerKey::parse(a, k, m);
        assert_eq!(p(None, None, None), Ok(None));
        assert_eq!(
            p(Some("AES128"), Some(&key), Some(&md5)),
            Err(KeyError::Algorithm)
        );
        assert_eq!(
            p(Some("AES256"), Some("c2hvcnQ="), Some(&md5)),
            Err(KeyError::Key)
        );
        assert_eq!(
            p(Some("AES256"), Some(&key), Some("AAAA")),
            Err(KeyError::Md5)
        );
        assert_eq!(
            p(Some("AES256"), None, Some(&md5)),
            Err(KeyError::Incomplete)
        );
        assert!(p(Some("AES256"), Some(&key), Some(&md5)).unwrap().is_some());
    }
}
