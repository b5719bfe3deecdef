//! Content-addressed image data. An image is cut into content-defined
//! chunks (FastCDC 2020: 256 KiB to 4 MiB, 1 MiB on average), each stored
//! once in the object store as `chunks/<blake3>` however many images hold
//! it, and the image itself is a small manifest object at `<id>` listing
//! its chunks in order. A new version of an image stores only the chunks
//! the store lacks, and a compute host that has the old version fetches
//! only those (`GET /v2/images/{id}/chunks` and `.../chunks/{chunk}`).
//! What clients see does not change: `size`, `checksum`, `os_hash_value`
//! and the bytes of a download are the image's.
//!
//! Reference counts live in the registry's database ([`ImageDb`]): an
//! upload pins each chunk for its image as it goes (`held/<image>/<chunk>`,
//! `chunk/<chunk>` counts the images holding it), so a chunk it relies on
//! cannot be collected under it; deleting an image (or refusing an upload)
//! releases its pins, and chunks left with no holder are deleted from the
//! store by the collector. The collector runs under the write side of
//! [`ChunkStore::gc`], uploads pin and store under its read side: a chunk
//! is never deleted between an upload's pin and its manifest.
//!
//! Every chunk read is checked against its BLAKE3 name before a byte of it
//! is served. Images stored before chunking (a plain object or segments
//! with an SLO manifest) read and delete as they were.

#![cfg(feature = "service")]

use crate::db::ImageDb;
use crate::store::{ObjectStore, StoreError};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use service_kit::fs::write_sparse;
use service_kit::http_util::Body;
use service_kit::server::blocking;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const MIN_CHUNK: u32 = 512 << 10;
pub const AVG_CHUNK: u32 = 2 << 20;
pub const MAX_CHUNK: u32 = 8 << 20;
/// Chunks read at once.
const PARALLEL: usize = 4;
/// Chunks stored at once: each is a synced write on three nodes, so more
/// in flight hide the disks' latency.
const STORE_PARALLEL: usize = 16;
/// Manifests kept in memory (about 2 KiB each per GiB of image).
const MANIFESTS_KEPT: usize = 256;
/// The user metadata that marks a manifest object.
const MANIFEST_META: &str = "x-object-meta-nubo-chunked";

/// One chunk of an image: its BLAKE3 (hex) and length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: String,
    pub len: u64,
}

/// An image as chunks, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

impl Manifest {
    /// The chunks covering bytes `first..=last`, each with its offset.
    pub fn covering(&self, first: u64, last: u64) -> Vec<(u64, &ChunkRef)> {
        let mut at = 0u64;
        let mut out = Vec::new();
        for c in &self.chunks {
            let end = at + c.len;
            if end > first && at <= last {
                out.push((at, c));
            }
            at = end;
        }
        out
    }
}

/// What an image's data cost the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub size: u64,

    pub manifest: Manifest,
}

/// The name of a chunk's object.
pub fn chunk_object(id: &str) -> String {
    format!("chunks/{id}")
}

pub struct ChunkStore {
    pub objects: ObjectStore,
    db: Arc<ImageDb>,
    /// Uploads hold it shared from a chunk's pin to its store; the
    /// collector holds it alone while it checks and deletes a chunk.
    gc: tokio::sync::RwLock<()>,
    /// Manifests already read, by image: an image's manifest never changes
    /// once written (a new write or a delete of the name replaces or drops
    /// it here), and every chunk request of a host would read it again.
    manifests: std::sync::Mutex<std::collections::HashMap<String, Arc<Manifest>>>,
    /// Bytes of new chunks stored, and of chunks an upload found stored.
    pub bytes_new: AtomicU64,
    pub bytes_deduplicated: AtomicU64,
    /// Chunks the collector deleted.
    pub chunks_collected: AtomicU64,
}

fn unavailable(why: impl Into<String>) -> StoreError {
    StoreError::Status(StatusCode::SERVICE_UNAVAILABLE, why.into())
}

impl ChunkStore {
    pub fn new(objects: ObjectStore, db: Arc<ImageDb>) -> ChunkStore {
        ChunkStore {
            objects,
            db,
            gc: tokio::sync::RwLock::new(()),
            manifests: Default::default(),
            bytes_new: AtomicU64::new(0),
            bytes_deduplicated: AtomicU64::new(0),
            chunks_collected: AtomicU64::new(0),
        }
    }

    /// Cuts what `data` yields into chunks, stores the ones the store
    /// lacks and then the manifest at `name`. The caller compares
    /// [`Stored`]'s size with what it sent (the bytes are the caller's own
    /// buffers, each chunk checked by the store's ETag), and calls
    /// [`Self::delete`] if it keeps none of it (that releases the chunks
    /// pinned here).
    pub async fn put_stream(
        &self,
        name: &str,
        data: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<Stored, StoreError> {
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<(String, Bytes)>(STORE_PARALLEL);
        // The chunker and its hashes run on a blocking thread.
        let chunker = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let reader = ChannelReader {
                rx: data,
                current: Bytes::new(),
            };
            let mut size = 0u64;
            for chunk in fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
                let chunk = chunk.map_err(std::io::Error::other)?;
                size += chunk.data.len() as u64;
                let id = blake3::hash(&chunk.data).to_hex().to_string();
                if chunk_tx
                    .blocking_send((id, Bytes::from(chunk.data)))
                    .is_err()
                {
                    break;
                }
            }
            Ok(size)
        });
        let mut chunks = Vec::new();
        let mut new_bytes = 0u64;
        // A chunk the image repeats is stored once: the first occurrence
        // stores it, later ones (maybe still in flight beside it) only
        // refer to it; the manifest is written after every store ended.
        let claimed = std::sync::Mutex::new(std::collections::HashSet::new());
        let claimed = &claimed;
        // Pin each chunk, then store the new ones, a few at a time.
        let stored: Vec<Result<(ChunkRef, u64), StoreError>> = stream_of(chunk_rx)
            .map(|(id, data)| async move {
                let len = data.len() as u64;
                // From the pin to the stored object, the collector cannot
                // decide this chunk is unheld and delete it.
                let _no_collector = self.gc.read().await;
                let store_it = self
                    .db
                    .pin_chunk(name, &id)
                    .map_err(|e| unavailable(e.to_string()))?;
                let first = claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone());
                if store_it && first {
                    // The MD5 the store's ETag must match, on another core
                    // while the chunk travels.
                    let sent = data.clone();
                    let md5 = tokio::task::spawn_blocking(move || hex::encode(Md5::digest(&sent)));
                    let object = chunk_object(&id);
                    let (etag, md5) = tokio::join!(self.objects.put_bytes(&object, data), md5);
                    let (etag, md5) = (etag?, md5.map_err(|e| unavailable(e.to_string()))?);
                    if etag != md5 {
                        return Err(unavailable(format!(
                            "chunk {id}: the store's ETag {etag} is not the MD5 sent ({md5})"
                        )));
                    }
                    self.db
                        .chunk_stored(&id)
                        .map_err(|e| unavailable(e.to_string()))?;
                    Ok((ChunkRef { id, len }, len))
                } else {
                    Ok((ChunkRef { id, len }, 0))
                }
            })
            .buffered(STORE_PARALLEL)
            .collect()
            .await;
        let size = chunker
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|e| unavailable(format!("chunking: {e}")))?;
        for s in stored {
            let (c, fresh) = s?;
            new_bytes += fresh;
            chunks.push(c);
        }
        let manifest = Manifest { size, chunks };
        let body = Bytes::from(serde_json::to_vec(&manifest).expect("JSON serializes"));
        self.forget_manifest(name);
        self.objects
            .put_object_meta(name, body, &[(MANIFEST_META, "1")])
            .await?;
        self.bytes_new.fetch_add(new_bytes, Ordering::Relaxed);
        self.bytes_deduplicated
            .fetch_add(size - new_bytes, Ordering::Relaxed);
        Ok(Stored { size, manifest })
    }

    /// Stores a file as [`Self::put_stream`] does, and checks the data
    /// stored hashes to `blake3_hex`.
    pub async fn put_file(
        self: &Arc<Self>,
        name: &str,
        path: &Path,
        blake3_hex: &str,
    ) -> Result<Stored, StoreError> {
        let file = std::fs::File::open(path)
            .map_err(|e| StoreError::File(path.display().to_string(), e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        // The file is hashed as it is read, so what was sent is known.
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use std::io::Read;
            let mut file = file;
            let mut whole = blake3::Hasher::new();
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(whole.finalize().to_hex().to_string());
                }
                buf.truncate(n);
                whole.update(&buf);
                if tx.blocking_send(Bytes::from(buf)).is_err() {
                    return Ok(whole.finalize().to_hex().to_string());
                }
            }
        });
        let stored = self.put_stream(name, rx).await;
        let read = reader
            .await
            .map_err(|e| StoreError::File(path.display().to_string(), std::io::Error::other(e)))?;
        let stored = match (stored, read) {
            (Ok(s), Ok(sent)) if sent == blake3_hex => s,
            (Ok(_), Ok(sent)) => {
                let _ = self.delete(name).await;
                return Err(unavailable(format!(
                    "storing {name}: sent data hashing to {sent}, not {blake3_hex}"
                )));
            }
            (Ok(_), Err(e)) => {
                let _ = self.delete(name).await;
                return Err(StoreError::File(path.display().to_string(), e));
            }
            (Err(e), _) => {
                let _ = self.delete(name).await;
                return Err(e);
            }
        };
        Ok(stored)
    }

    fn forget_manifest(&self, name: &str) {
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// The manifest of a chunked image; `None` for one stored otherwise.
    pub async fn manifest(&self, name: &str) -> Result<Option<Arc<Manifest>>, StoreError> {
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(Some(m.clone()));
        }
        if !self.objects.head(name).await?.contains_key(MANIFEST_META) {
            return Ok(None);
        }
        let resp = self.objects.get_range(name, None).await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .to_bytes();
        let manifest: Arc<Manifest> = serde_json::from_slice(&body)
            .map(Arc::new)
            .map_err(|e| unavailable(format!("the manifest of {name} is corrupt: {e}")))?;
        let mut known = self.manifests.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MANIFESTS_KEPT {
            known.clear();
        }
        known.insert(name.to_string(), manifest.clone());
        Ok(Some(manifest))
    }

    /// One chunk, checked against its name.
    pub async fn chunk(&self, id: &str) -> Result<Bytes, StoreError> {
        let resp = self.objects.get_range(&chunk_object(id), None).await?;
        let data = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .to_bytes();
        let got = blocking(|| blake3::hash(&data).to_hex().to_string());
        if got != id {
            return Err(unavailable(format!("chunk {id} reads back as {got}")));
        }
        Ok(data)
    }

    /// The image's bytes, or one `Range` of them (206), as a stream: the
    /// chunks in order, each checked before it is sent. Images stored
    /// before chunking stream as the store serves them.
    pub async fn get_range(
        self: &Arc<Self>,
        name: &str,
        range: Option<&str>,
    ) -> Result<Response<Body>, StoreError> {
        use service_kit::range::{resolve, Ranges};
        let Some(manifest) = self.manifest(name).await? else {
            let resp = self.objects.get_range(name, range).await?;
            let (parts, body) = resp.into_parts();
            let body = BodyExt::boxed_unsync(body.map_err(service_kit::http_util::BoxError::from));
            return Ok(Response::from_parts(parts, body));
        };
        let size = manifest.size;
        let (status, first, last) = match resolve(range, size) {
            Ranges::Parts(p) if p.len() == 1 => (StatusCode::PARTIAL_CONTENT, p[0].0, p[0].1),
            Ranges::Unsatisfiable => {
                return Err(StoreError::Status(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("bytes */{size}"),
                ))
            }
            _ => (StatusCode::OK, 0, size.saturating_sub(1)),
        };
        let wanted: Vec<(u64, ChunkRef)> = manifest
            .covering(first, last)
            .into_iter()
            .map(|(at, c)| (at, c.clone()))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(PARALLEL);
        let me = self.clone();
        tokio::spawn(async move {
            let mut reads = futures_util::stream::iter(wanted)
                .map(|(at, c)| {
                    let me = me.clone();
                    async move { me.chunk(&c.id).await.map(|d| (at, d)) }
                })
                .buffered(PARALLEL);
            while let Some(read) = reads.next().await {
                let frame = match read {
                    Ok((at, data)) => {
                        let from = first.saturating_sub(at) as usize;
                        let to = ((last + 1 - at) as usize).min(data.len());
                        Ok(hyper::body::Frame::data(data.slice(from..to)))
                    }
                    Err(e) => Err(service_kit::http_util::BoxError::from(e.to_string())),
                };
                let failed = frame.is_err();
                if tx.send(frame).await.is_err() || failed {
                    return;
                }
            }
        });
        let body = BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream_of(rx)));
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        let len = if size == 0 { 0 } else { last + 1 - first };
        h.insert("content-length", len.into());
        if status == StatusCode::PARTIAL_CONTENT {
            let v = format!("bytes {first}-{last}/{size}");
            h.insert("content-range", v.parse().expect("valid header"));
        }
        Ok(resp)
    }

    /// Deletes an image: its manifest, then its pins; chunks no image holds
    /// any more are collected in the background. Images stored before
    /// chunking are deleted as they were stored.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), StoreError> {
        let chunked = match self.manifest(name).await {
            Ok(m) => m.is_some(),
            Err(StoreError::Status(StatusCode::NOT_FOUND, _)) => true,
            Err(e) => return Err(e),
        };
        self.forget_manifest(name);
        self.objects.delete(name).await?;
        if chunked {
            let unheld = self
                .db
                .release_chunks(name)
                .map_err(|e| unavailable(e.to_string()))?;
            if !unheld.is_empty() {
                let me = self.clone();
                tokio::spawn(async move { me.collect(unheld).await });
            }
        }
        Ok(())
    }

    /// Deletes the chunks among `candidates` that no image holds. Each is
    /// checked and deleted with no upload between its pin and its store
    /// (one chunk at a time, so uploads wait for one delete, not all).
    pub async fn collect(&self, candidates: Vec<String>) {
        for id in candidates {
            let _alone = self.gc.write().await;
            let held = self.db.chunk_holders(&id).unwrap_or(1);
            if held > 0 {
                continue;
            }
            match self.objects.delete_plain(&chunk_object(&id)).await {
                Ok(()) => {
                    self.chunks_collected.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(chunk = %id, error = %e, "could not collect a chunk"),
            }
        }
    }
}

/// A `Read` over chunks arriving on a channel (for the chunker's thread).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// A receiver as a stream.
fn stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    /// Local chunks come from the file that holds them, repeated ones are
    /// fetched once, the rest fetched; a damaged local copy is an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn assemble_takes_local_chunks_and_fetches_the_rest_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, z) = (vec![1u8; 5000], vec![2u8; 7000], vec![0u8; 8192]);
        let old = dir.path().join("old");
        std::fs::write(&old, [&a[..], &b[..]].concat()).unwrap();
        let old_manifest = Manifest {
            size: 12000,
            chunks: vec![
                ChunkRef {
                    id: id(&a),
                    len: 5000,
                },
                ChunkRef {
                    id: id(&b),
                    len: 7000,
                },
            ],
        };
        save_sidecar(&old, &old_manifest).unwrap();
        let index = local_index(dir.path());
        assert_eq!(index.len(), 2);
        // a, then twelve times the same chunk of zeros.
        let mut chunks = vec![ChunkRef {
            id: id(&a),
            len: 5000,
        }];
        chunks.extend((0..12).map(|_| ChunkRef {
            id: id(&z),
            len: 8192,
        }));
        let new = Manifest {
            size: 5000 + 8192 * 12,
            chunks,
        };
        let fetches = std::sync::Arc::new(AtomicU64::new(0));
        let f = fetches.clone();
        let zeros = Bytes::from(z.clone());
        let mut whole = blake3::Hasher::new();
        let out = dir.path().join("new");
        let done = assemble(
            &new,
            &index,
            &out,
            move |_| {
                f.fetch_add(1, Ordering::Relaxed);
                let z = zeros.clone();
                async move { Ok(z) }
            },
            |d| {
                whole.update(d);
            },
        )
        .await
        .unwrap();
        let want = [a.clone(), z.repeat(12)].concat();
        assert_eq!(std::fs::read(&out).unwrap(), want);
        assert_eq!(whole.finalize(), blake3::hash(&want));
        // Only the reads already under way when the first arrived repeat it.
        let fetched = fetches.load(Ordering::Relaxed);
        assert!(
            (1..=PARALLEL as u64).contains(&fetched),
            "{fetched} fetches"
        );
        assert_eq!(done.fetched_bytes, 8192 * fetched);
        assert_eq!(done.local_bytes, want.len() as u64 - 8192 * fetched);
        // A local copy that no longer matches its id is not used silently.
        std::fs::write(&old, [&b[..5000], &b[..]].concat()).unwrap();
        let e = assemble(
            &new,
            &index,
            &dir.path().join("again"),
            |_| async { Ok(Bytes::from(vec![0u8; 8192])) },
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn covering_finds_the_chunks_of_a_range() {
        let c = |id: &str, len| ChunkRef { id: id.into(), len };
        let m = Manifest {
            size: 30,
            chunks: vec![c("a", 10), c("b", 10), c("c", 10)],
        };
        let ids = |v: Vec<(u64, &ChunkRef)>| -> Vec<(u64, String)> {
            v.into_iter().map(|(at, c)| (at, c.id.clone())).collect()
        };
        assert_eq!(ids(m.covering(0, 29)).len(), 3);
        assert_eq!(ids(m.covering(9, 10)), [(0, "a".into()), (10, "b".into())]);
        assert_eq!(ids(m.covering(25, 29)), [(20, "c".into())]);
    }
}

/// Where a copy of a chunk lies in a local file.
#[derive(Clone, Debug)]
pub struct LocalChunk {
    pub file: std::path::PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// The file beside a cached image that holds its manifest (`<file>.chunks`).
pub fn sidecar(image_file: &Path) -> std::path::PathBuf {
    let mut name = image_file.as_os_str().to_owned();
    name.push(".chunks");
    std::path::PathBuf::from(name)
}

/// Records that `image_file` holds the data `manifest` describes, so later
/// fetches can take its chunks from it.
pub fn save_sidecar(image_file: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let temp = sidecar(image_file).with_extension("chunks.tmp");
    std::fs::write(
        &temp,
        serde_json::to_vec(manifest).expect("JSON serializes"),
    )?;
    std::fs::rename(temp, sidecar(image_file))
}

/// Every chunk the complete image files in `dir` hold, by id, from their
/// sidecars (a sidecar whose file is gone or of another size is skipped).
pub fn local_index(dir: &Path) -> std::collections::HashMap<String, LocalChunk> {
    let mut index = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return index;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(file) = path
            .to_str()
            .and_then(|p| p.strip_suffix(".chunks"))
            .map(std::path::PathBuf::from)
        else {
            continue;
        };
        let Ok(m) = std::fs::read(&path)
            .map_err(|_| ())
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).map_err(|_| ()))
        else {
            continue;
        };
        if std::fs::metadata(&file).map(|m| m.len()).ok() != Some(m.size) {
            continue;
        }
        let mut at = 0;
        for c in m.chunks {
            index.entry(c.id).or_insert(LocalChunk {
                file: file.clone(),
                offset: at,
                len: c.len,
            });
            at += c.len;
        }
    }
    index
}

/// What [`assemble`] moved.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Assembled {
    /// Bytes copied from local files.
    pub local_bytes: u64,
    /// Bytes fetched over the network.
    pub fetched_bytes: u64,
}

/// Reads a local chunk and checks it against its id.
pub fn read_local(c: &LocalChunk, id: &str) -> Option<Bytes> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(&c.file).ok()?;
    let mut buf = vec![0u8; usize::try_from(c.len).ok()?];
    f.read_exact_at(&mut buf, c.offset).ok()?;
    (blake3::hash(&buf).to_hex().as_str() == id).then(|| Bytes::from(buf))
}

/// Writes the image `manifest` describes to a new file `dest`: each chunk
/// from `index` when a local file holds it (checked against its id), else
/// from `fetch` (checked too), a few at a time; zeros become holes.
/// `whole` is fed every byte in order (the caller's whole-image hash).
pub async fn assemble<F, Fut>(
    manifest: &Manifest,
    index: &std::collections::HashMap<String, LocalChunk>,
    dest: &Path,
    fetch: F,
    mut whole: impl FnMut(&[u8]),
) -> Result<Assembled, String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, String>> + Send + 'static,
{
    let mut out = blocking(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
    })
    .map_err(|e| e.to_string())?;
    let mut done = Assembled::default();
    // Reads run as tasks, a few ahead, and are taken in order.
    let start = |c: &ChunkRef| -> tokio::task::JoinHandle<Result<(Bytes, bool), String>> {
        let id = c.id.clone();
        match index.get(&c.id).cloned() {
            Some(local) => tokio::task::spawn_blocking(move || {
                read_local(&local, &id)
                    .map(|d| (d, true))
                    .ok_or_else(|| format!("the local copy of chunk {id} is damaged"))
            }),
            None => {
                let fetched = fetch(id.clone());
                tokio::spawn(async move {
                    let data = fetched.await?;
                    if blake3::hash(&data).to_hex().as_str() != id {
                        return Err(format!("chunk {id} arrived damaged"));
                    }
                    Ok((data, false))
                })
            }
        }
    };
    // A chunk the image repeats (runs of zeros, mostly) is read once and
    // kept until its last use.
    let mut left: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for c in &manifest.chunks {
        *left.entry(c.id.as_str()).or_default() += 1;
    }
    let mut memo: std::collections::HashMap<String, Bytes> = std::collections::HashMap::new();
    enum Job {
        Ready(Bytes),
        Task(tokio::task::JoinHandle<Result<(Bytes, bool), String>>),
    }
    let mut next = manifest.chunks.iter();
    let mut in_flight = std::collections::VecDeque::new();
    for c in next.by_ref().take(PARALLEL) {
        in_flight.push_back((c, Job::Task(start(c))));
    }
    let mut size = 0u64;
    while let Some((c, job)) = in_flight.pop_front() {
        let (data, local) = match job {
            Job::Ready(d) => (d, true),
            Job::Task(t) => t.await.map_err(|e| e.to_string())??,
        };
        let remaining = left.get_mut(c.id.as_str()).map(|n| {
            *n -= 1;
            *n
        });
        match remaining {
            Some(0) => {
                memo.remove(&c.id);
            }
            _ => {
                memo.entry(c.id.clone()).or_insert_with(|| data.clone());
            }
        }
        size += data.len() as u64;
        if local {
            done.local_bytes += data.len() as u64;
        } else {
            done.fetched_bytes += data.len() as u64;
        }
        // Hashing and writing are the heavy part: off the async workers.
        blocking(|| {
            whole(&data);
            write_sparse(&mut out, &data)
        })
        .map_err(|e| e.to_string())?;
        // The next read starts once this one is kept, so a repeat of it
        // comes from memory.
        if let Some(n) = next.next() {
            let job = match memo.get(&n.id) {
                Some(d) => Job::Ready(d.clone()),
                None => Job::Task(start(n)),
            };
            in_flight.push_back((n, job));
        }
    }
    if size != manifest.size {
        return Err(format!(
            "assembled {size} bytes, the manifest says {}",
            manifest.size
        ));
    }
    blocking(|| {
        out.set_len(size)?;
        out.sync_all()
    })
    .map_err(|e| e.to_string())?;
    Ok(done)
}
