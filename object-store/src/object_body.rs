//! An object's body wherever a device keeps it (inline in the database with
//! its record, or a file), read only as checked bytes.
//!
//! A node never sends bytes that fail their hash: a body is read in 1 MiB
//! chunks ([`crate::body_hashes::CHUNK`]), each checked before any of it is
//! sent. A bad first chunk (or a bad inline body) makes the read answer
//! "missing", so the proxy asks the next replica; a bad later chunk ends the
//! response early, and the proxy goes on from another replica at that byte.
//! Either way the bad copy is quarantined at once: moved aside and its
//! record dropped, so the replicator restores it from a good replica.
//! The auditor checks bodies the same way.

use crate::body_hashes::CHUNK;
use crate::records::ObjectRecord;
use crate::storage_node::{Device, NodeState};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use ring_tools::NameHash;
use service_kit::http_util::{Body, BoxError};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Where a body is read from.
enum Source {
    Inline(Bytes),
    File(std::fs::File),
}

/// Why a body cannot be served from this device.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// The record's body is not here (a file lost, or removed meanwhile).
    #[error("the body is missing")]
    Missing,
    /// The body failed its check and has been quarantined.
    #[error("the body does not match its hash")]
    Corrupt,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One object version on one device, as the read path needs it.
#[derive(Clone)]
pub struct StoredBody {
    pub state: Arc<NodeState>,
    pub device: Arc<Device>,
    pub part: u32,
    pub hash: NameHash,
    pub record: ObjectRecord,
}

impl StoredBody {
    fn open(&self) -> Result<Source, Unreadable> {
        if self.record.inline {
            return match self.device.db.inline_body(self.part, &self.hash) {
                Ok(Some(b)) => Ok(Source::Inline(Bytes::from(b))),
                Ok(None) => Err(Unreadable::Missing),
                Err(e) => Err(Unreadable::Io(io::Error::other(e))),
            };
        }
        let path = self
            .device
            .files
            .data_path(self.part, &self.hash, self.record.timestamp);
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unreadable::Missing),
            Err(e) => return Err(e.into()),
        };
        // Cut short or grown: a file is exactly as long as its body.
        if file.metadata()?.len() != self.record.size {
            return Err(self.failed("file has the wrong length"));
        }
        Ok(Source::File(file))
    }

    /// Chunk `index`, checked; a bad chunk quarantines the body.
    fn chunk(&self, source: &Source, index: u64) -> Result<Bytes, Unreadable> {
        let expected = self.record.expected_body();
        let start = index * CHUNK;
        let len = (expected.size - start).min(CHUNK) as usize;
        let data = match source {
            Source::Inline(b) => b.slice(start as usize..(start as usize + len).min(b.len())),
            Source::File(f) => {
                let mut buf = vec![0u8; len];
                match f.read_exact_at(&mut buf, start) {
                    Ok(()) => Bytes::from(buf),
                    // Shorter than its record: truncated.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Bytes::new(),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // An inline body longer than its record would pass a chunk check.
        let whole_length_right = match source {
            Source::Inline(b) => b.len() as u64 == expected.size,
            Source::File(_) => true,
        };
        if whole_length_right && expected.chunk_matches(index, &data) {
            return Ok(data);
        }
        Err(self.failed(&format!("chunk {index} does not match its hash")))
    }

    /// Drops the record if it is still this version and moves the body
    /// aside (to `<device>/quarantined/objects/`, never served again), so the
    /// replicator sees the object missing here and restores it. False when
    /// a newer version replaced this one meanwhile (nothing to quarantine).
    pub fn quarantine(&self) -> bool {
        let inline_body = if self.record.inline {
            self.device
                .db
                .inline_body(self.part, &self.hash)
                .ok()
                .flatten()
        } else {
            None
        };
        match self
            .device
            .db
            .forget_object(self.part, &self.hash, self.record.timestamp)
        {
            Ok(true) => crate::metrics::NodeMetrics::add(&self.state.metrics.quarantined, 1),
            Ok(false) => return false,
            Err(e) => {
                tracing::error!(error = %e, "cannot drop a quarantined object's record");
                return false;
            }
        }
        let dir = self.device.files.root().join("quarantined").join("objects");
        let _ = std::fs::create_dir_all(&dir);
        let name = format!("{}-{}", self.hash.to_hex(), self.record.timestamp);
        match inline_body {
            Some(body) => {
                let _ = std::fs::write(dir.join(format!("{name}.inline")), body);
            }
            None => {
                let path =
                    self.device
                        .files
                        .data_path(self.part, &self.hash, self.record.timestamp);
                let _ = std::fs::rename(path, dir.join(format!("{name}.data")));
            }
        }
        true
    }

    /// The error for a body that failed its check: quarantined, or gone
    /// because a newer version replaced it while it was read.
    fn failed(&self, what: &str) -> Unreadable {
        if self.quarantine() {
            tracing::warn!(
                device = %self.device.name,
                object = %format!("{}/{}/{}", self.record.account, self.record.container, self.record.object),
                "object body {what}; quarantined"
            );
            Unreadable::Corrupt
        } else {
            Unreadable::Missing
        }
    }

    /// Reads the whole body, checking every chunk (the auditor), calling
    /// `pace` with each chunk's length: the bytes read, or why the body is
    /// unreadable (a bad body is quarantined).
    pub fn check_whole(&self, mut pace: impl FnMut(u64)) -> Result<u64, Unreadable> {
        let source = self.open()?;
        let mut read = 0;
        // An empty body has one (empty) chunk to check too.
        for index in 0..self.record.size.div_ceil(CHUNK).max(1) {
            let n = self.chunk(&source, index)?.len() as u64;
            read += n;
            pace(n);
        }
        Ok(read)
    }

    /// The bytes `first..=last` as a response body. The first chunk is read
    /// and checked before this returns, so a bad or missing body is known
    /// before the response starts.
    pub async fn read(self, first: u64, last: u64) -> Result<Body, Unreadable> {
        let me = Arc::new(self);
        let (first_chunk, last_chunk) = (first / CHUNK, last / CHUNK);
        let (source, head) = {
            let me = me.clone();
            tokio::task::spawn_blocking(move || {
                let source = me.open()?;
                let head = me.chunk(&source, first_chunk)?;
                Ok::<_, Unreadable>((Arc::new(source), head))
            })
            .await
            .map_err(io::Error::other)??
        };
        let slice = move |index: u64, data: Bytes| {
            let start = index * CHUNK;
            let from = first.saturating_sub(start) as usize;
            let to = ((last + 1 - start) as usize).min(data.len());
            data.slice(from..to)
        };
        let head = slice(first_chunk, head);
        // The next chunk is read and checked while this one is sent (one
        // chunk ahead, so a GET holds at most two in memory); a client
        // that goes away drops the receiver and ends the reading.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tokio::spawn(async move {
            for index in first_chunk + 1..=last_chunk {
                let (me, source) = (me.clone(), source.clone());
                let read = tokio::task::spawn_blocking(move || me.chunk(&source, index)).await;
                let item = match read {
                    Ok(Ok(data)) => Ok(Frame::data(slice(index, data))),
                    // Ends the response early: the proxy resumes elsewhere.
                    Ok(Err(e)) => Err(BoxError::from(e)),
                    Err(e) => Err(BoxError::from(e)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        let rest =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let head = futures_util::stream::once(async move { Ok(Frame::data(head)) });
        use futures_util::StreamExt;
        Ok(BodyExt::boxed_unsync(StreamBody::new(Box::pin(
            head.chain(rest),
        ))))
    }
}
