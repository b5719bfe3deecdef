//! A compute host's template cache (Nova's `_base`, CloudStack's
//! secondary-to-primary copy): the first launch of an image on a host
//! fetches it from the registry (through the registry's own cache) into
//! `<host data>/_base/<image id>`, checks its hash against the registry's
//! record, runs the registry's verdict on it (inspector and qemu-img must
//! agree), and converts it to a base format if need be.
//! Concurrent launches of one image fetch it once (the registry's cache
//! module does the single-flight and the partial-file handling). Bases no
//! instance has used for a while are removed.

use crate::rest::addr_of;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use image_registry::cache::Cache;
use image_registry::chunks::{assemble, local_index, save_sidecar, Manifest};
use image_registry::inspect::{DiskFormat, InspectError, Limits};
use image_registry::verify::{verify, Declared, VerifyError};
use md5::Md5;
use serde::{Deserialize, Serialize};
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::empty;
use sha2::{Digest, Sha512};
use std::collections::HashSet;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// What the agent needs to know of an image to cache it (from the
/// registry's record, passed along by the API).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRef {
    pub id: String,
    pub disk_format: String,
    /// SHA-512 (Glance's `os_hash_value`), hex.
    pub os_hash_value: Option<String>,
    /// MD5 (Glance's `checksum`), hex; checked when there is no SHA-512.
    pub checksum: Option<String>,
    /// BLAKE3 (the registry's `nubo_blake3`), hex; preferred when present:
    /// it verifies several times faster than SHA-512.
    #[serde(default)]
    pub blake3: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("fetching image {0} from the registry: {1}")]
    Fetch(String, String),
    #[error("image {id} does not match the registry's hash ({algo} {got}, expected {want})")]
    HashMismatch {
        id: String,
        algo: &'static str,
        got: String,
        want: String,
    },
    #[error("image {0} failed inspection on this host: {1}")]
    Unsafe(String, InspectError),
    #[error("image {0} was refused on this host: {1}")]
    Rejected(String, String),
    #[error("image {0} could not be converted: {1}")]
    Convert(String, String),
    #[error("image {0} is {1}, which cannot be a base")]
    Format(String, String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The hash a download is checked with.
#[derive(Clone, Copy, Debug)]
enum HashAlgo {
    Blake3,
    Sha512,
    Md5,
}

enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha512(Box<Sha512>),
    Md5(Md5),
}

impl HashAlgo {
    fn name(self) -> &'static str {
        match self {
            HashAlgo::Blake3 => "blake3",
            HashAlgo::Sha512 => "sha512",
            HashAlgo::Md5 => "md5",
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Blake3 => Hasher::Blake3(Box::default()),
            HashAlgo::Sha512 => Hasher::Sha512(Box::default()),
            HashAlgo::Md5 => Hasher::Md5(Md5::new()),
        }
    }
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(data);
            }
            Hasher::Sha512(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// Asks the kernel to start writing a range of `file` to disk, without
/// waiting (`sync_file_range`, SYNC_FILE_RANGE_WRITE). Only an
/// optimisation: durability still comes from the fsync at the end.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor we own; the call only schedules I/O.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The format a base is kept in: raw and qcow2 as they come, anything
/// else converted to qcow2 (sparse, and what the overlays' backing files
/// expect most often).
pub fn base_format(disk_format: DiskFormat) -> DiskFormat {
    match disk_format {
        DiskFormat::Raw | DiskFormat::Qcow2 => disk_format,
        _ => DiskFormat::Qcow2,
    }
}

/// Which bases go: unused for `unused_secs` before `now` (seconds since
/// the epoch) and not backing any instance on the host.
pub fn unused_bases(
    entries: &[image_registry::cache::Entry],
    in_use: &HashSet<String>,
    now: u64,
    unused_secs: u64,
) -> Vec<String> {
    entries
        .iter()
        .filter(|e| !in_use.contains(&e.id) && now.saturating_sub(e.last_accessed) >= unused_secs)
        .map(|e| e.id.clone())
        .collect()
}

/// The hash a download is checked against: BLAKE3 where the registry
/// computed it, else SHA-512 (Glance's os_hash_value), else MD5.
fn expected_hash(image: &ImageRef) -> Result<(HashAlgo, String), String> {
    match (&image.blake3, &image.os_hash_value, &image.checksum) {
        (Some(h), _, _) => Ok((HashAlgo::Blake3, h.clone())),
        (None, Some(h), _) => Ok((HashAlgo::Sha512, h.clone())),
        (None, None, Some(h)) => Ok((HashAlgo::Md5, h.clone())),
        (None, None, None) => Err("the registry gives no hash to verify it against".into()),
    }
}

/// A download's hash against the registry's record.
fn check_hash(
    image: &ImageRef,
    algo: HashAlgo,
    got: String,
    want: &str,
) -> Result<(), TemplateError> {
    if got.eq_ignore_ascii_case(want) {
        return Ok(());
    }
    Err(TemplateError::HashMismatch {
        id: image.id.clone(),
        algo: algo.name(),
        got,
        want: want.to_string(),
    })
}

/// `GET path` on the registry: the body on 200, `None` on 404.
async fn get_bytes(
    client: &HttpClient,
    addr: &str,
    token: &str,
    path: &str,
) -> Result<Option<bytes::Bytes>, String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", addr)
        .header("x-auth-token", token)
        .body(empty())
        .expect("valid request");
    let resp = client.send(addr, req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    match status {
        StatusCode::OK => Ok(Some(body)),
        StatusCode::NOT_FOUND => Ok(None),
        other => Err(format!("the registry answered {other} to {path}")),
    }
}

pub struct TemplateCache {
    cache: Cache,
    /// Time spent fetching (download, hash check, inspection, conversion), µs.
    fetch_micros: std::sync::atomic::AtomicU64,
    client: std::sync::Arc<HttpClient>,
    limits: Limits,
    /// Bytes fetched from the registry (chunks a host already had are not).
    network_bytes: std::sync::atomic::AtomicU64,
    convert_timeout: Duration,
}

impl TemplateCache {
    pub fn open(base_dir: &Path) -> std::io::Result<TemplateCache> {
        Ok(TemplateCache {
            cache: Cache::open_flat(base_dir, u64::MAX)?,
            fetch_micros: Default::default(),
            client: std::sync::Arc::new(HttpClient::new(Timeouts {
                connect: Duration::from_secs(2),
                node: Duration::from_secs(120),
            })),
            network_bytes: Default::default(),
            limits: Limits::default(),
            convert_timeout: Duration::from_secs(600),
        })
    }

    /// Fetches so far (cache misses), launches served from the cache,
    /// bytes fetched, and seconds spent fetching.
    pub fn counters(&self) -> (u64, u64, u64, f64) {
        (
            self.cache.misses.load(Ordering::Relaxed),
            self.cache.hits.load(Ordering::Relaxed),
            self.cache.bytes_fetched.load(Ordering::Relaxed),
            self.fetch_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// Bytes fetched from the registry so far.
    pub fn network_bytes(&self) -> u64 {
        self.network_bytes.load(Ordering::Relaxed)
    }

    /// The ids of the cached bases.
    pub fn cached(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.cache.entries().into_iter().map(|e| e.id).collect();
        ids.sort();
        ids
    }

    /// The base of `image` and its format, fetched on first use.
    pub async fn base(
        &self,
        image: &ImageRef,
        registry_url: &str,
        token: &str,
    ) -> Result<(PathBuf, DiskFormat), TemplateError> {
        let declared = DiskFormat::parse(&image.disk_format).ok_or_else(|| {
            TemplateError::Format(
                image.id.clone(),
                format!("disk_format {:?}", image.disk_format),
            )
        })?;
        if declared == DiskFormat::Iso {
            return Err(TemplateError::Format(
                image.id.clone(),
                "an ISO (boot from volume is not supported)".into(),
            ));
        }
        let path = self
            .cache
            .get_or_fetch(&image.id, |dest| async move {
                let started = std::time::Instant::now();
                let fetched = self
                    .download(image, declared, registry_url, token, dest)
                    .await;
                self.fetch_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                fetched
            })
            .await?;
        Ok((path, base_format(declared)))
    }

    /// Downloads, verifies, inspects and (if need be) converts one image
    /// into `dest`; the bytes downloaded.
    async fn download(
        &self,
        image: &ImageRef,
        declared: DiskFormat,
        registry_url: &str,
        token: &str,
        dest: PathBuf,
    ) -> Result<u64, TemplateError> {
        let fail = |e: String| TemplateError::Fetch(image.id.clone(), e);
        let addr = addr_of(registry_url).map_err(|e| fail(e.to_string()))?;
        // With a good part of the image already here (an earlier version),
        // build it from chunks; with little or none, one streamed download
        // is faster than many chunk requests, and the chunk list is still
        // kept for the next version.
        let manifest = self.manifest(image, &addr, token).await?;
        if let Some(manifest) = &manifest {
            if let Some(built) = self
                .assemble(image, declared, manifest, &addr, token, &dest)
                .await
            {
                return built;
            }
        }
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("/v2/images/{}/file", image.id))
            .header("host", &addr)
            .header("x-auth-token", token)
            .body(empty())
            .expect("valid request");
        let resp = self
            .client
            .send(&addr, req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if resp.status() != StatusCode::OK {
            return Err(fail(format!("the registry answered {}", resp.status())));
        }
        // The hash the registry's record is checked against: BLAKE3 where
        // the registry computed it, else SHA-512 (Glance's os_hash_value),
        // else MD5.
        let (algo, want) = expected_hash(image).map_err(fail)?;
        // The network task receives; one thread hashes and another writes,
        // so the three overlap.
        let download = dest.with_extension("download");
        let (to_hash, mut hash_rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let (to_write, mut write_rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let hashing = tokio::task::spawn_blocking(move || {
            let mut hasher = algo.hasher();
            let mut len = 0u64;
            while let Some(data) = hash_rx.blocking_recv() {
                hasher.update(&data);
                len += data.len() as u64;
            }
            (hasher.hex(), len)
        });
        let path = download.clone();
        let writing = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&path)?;
            let (mut written, mut flushed) = (0u64, 0u64);
            while let Some(data) = write_rx.blocking_recv() {
                // Zeros become holes: a sparse image stays sparse here.
                service_kit::fs::write_sparse(&mut file, &data)?;
                written += data.len() as u64;
                // Start writing back every 16 MiB as it arrives, so the
                // final fsync has little left to wait for.
                if written - flushed >= 16 << 20 {
                    start_writeback(&file, flushed, written - flushed);
                    flushed = written;
                }
            }
            file.set_len(written)?;
            file.sync_all()
        });
        let mut body = resp.into_body();
        let mut received: Result<(), TemplateError> = Ok(());
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        let sent = to_hash.send(data.clone()).await.is_ok()
                            && to_write.send(data).await.is_ok();
                        if !sent {
                            break; // the writer failed; its error says why
                        }
                    }
                }
                Err(e) => {
                    received = Err(fail(e.to_string()));
                    break;
                }
            }
        }
        drop((to_hash, to_write));
        let written = match writing.await {
            Ok(r) => r.map_err(TemplateError::from),
            Err(e) => Err(fail(e.to_string())),
        };
        let hashed = hashing.await.map_err(|e| fail(e.to_string()));
        let written = written.and(hashed);
        let result = received.and(written).and_then(|(got, len)| {
            check_hash(image, algo, got, &want)?;
            if image.size.is_some_and(|s| s != len) {
                return Err(fail(format!(
                    "{len} bytes arrived, the registry says {:?}",
                    image.size
                )));
            }
            // Inspection and conversion read the file: off the async workers.
            service_kit::server::blocking(|| {
                self.settle(image, declared, &download, &dest, manifest.as_ref())
            })?;
            Ok(len)
        });
        let _ = std::fs::remove_file(&download);
        self.network_bytes
            .fetch_add(*result.as_ref().unwrap_or(&0), Ordering::Relaxed);
        result
    }

    /// The image's chunks, if the registry stores it as chunks.
    async fn manifest(
        &self,
        image: &ImageRef,
        addr: &str,
        token: &str,
    ) -> Result<Option<Manifest>, TemplateError> {
        let fail = |e: String| TemplateError::Fetch(image.id.clone(), e);
        let body = get_bytes(
            &self.client,
            addr,
            token,
            &format!("/v2/images/{}/chunks", image.id),
        )
        .await
        .map_err(fail)?;
        match body {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| fail(format!("a bad chunk list: {e}"))),
            None => Ok(None),
        }
    }

    /// Builds the image from its chunks when cached bases hold at least 5%
    /// of it (`None` otherwise): those chunks are copied from the bases, the
    /// rest fetched; every chunk is checked against its id and the whole
    /// against the registry's hash, then settled as a download is.
    async fn assemble(
        &self,
        image: &ImageRef,
        declared: DiskFormat,
        manifest: &Manifest,
        addr: &str,
        token: &str,
        dest: &Path,
    ) -> Option<Result<u64, TemplateError>> {
        let dir = self.cache.complete_dir().to_path_buf();
        let index = service_kit::server::blocking(|| local_index(&dir));
        let local: u64 = manifest
            .chunks
            .iter()
            .filter(|c| index.contains_key(&c.id))
            .map(|c| c.len)
            .sum();
        if local.saturating_mul(20) < manifest.size {
            return None;
        }
        let built = async {
            let fail = |e: String| TemplateError::Fetch(image.id.clone(), e);
            if image.size.is_some_and(|s| s != manifest.size) {
                return Err(fail(format!(
                    "its chunks make {} bytes, the registry's record says {:?}",
                    manifest.size, image.size
                )));
            }
            let (algo, want) = expected_hash(image).map_err(fail)?;
            let download = dest.with_extension("download");
            let mut hasher = algo.hasher();
            let (client, addr_owned, token_owned) =
                (self.client.clone(), addr.to_string(), token.to_string());
            let id = image.id.clone();
            let done = assemble(
                manifest,
                &index,
                &download,
                move |chunk| {
                    let (client, addr, token) =
                        (client.clone(), addr_owned.clone(), token_owned.clone());
                    let path = format!("/v2/images/{id}/chunks/{chunk}");
                    async move {
                        get_bytes(&client, &addr, &token, &path)
                            .await?
                            .ok_or_else(|| format!("the registry has no chunk {chunk}"))
                    }
                },
                |data| hasher.update(data),
            )
            .await;
            let result = done.map_err(fail).and_then(|done| {
                self.network_bytes
                    .fetch_add(done.fetched_bytes, Ordering::Relaxed);
                check_hash(image, algo, hasher.hex(), &want)?;
                service_kit::server::blocking(|| {
                    self.settle(image, declared, &download, dest, Some(manifest))
                })?;
                Ok(manifest.size)
            });
            let _ = std::fs::remove_file(&download);
            result
        };
        Some(built.await)
    }

    /// Inspects a verified download and makes it the base at `dest`,
    /// converting it if its format cannot be one.
    fn settle(
        &self,
        image: &ImageRef,
        declared: DiskFormat,
        download: &Path,
        dest: &Path,
        manifest: Option<&Manifest>,
    ) -> Result<(), TemplateError> {
        // The registry's own verdict, on this host's copy: the inspector
        // and qemu-img must agree, whatever the registry said before.
        let work = dest.with_extension("verify");
        let declared = Declared {
            disk_format: Some(declared.name()),
            container_format: None,
        };
        let verdict = verify(download, declared, &self.limits, &work);
        let _ = std::fs::remove_dir_all(&work);
        let verified = verdict.map_err(|e| match e {
            VerifyError::Inspect(e) => TemplateError::Unsafe(image.id.clone(), e),
            e => TemplateError::Rejected(image.id.clone(), e.to_string()),
        })?;
        let info = verified.info;
        if info.container.is_some() {
            return Err(TemplateError::Format(
                image.id.clone(),
                "an OVA package (import it, and the registry extracts its disk)".into(),
            ));
        }
        let target = base_format(info.format);
        if target == info.format {
            std::fs::rename(download, dest)?;
            // The base is the image's bytes: its chunks can serve the next
            // version's fetch.
            if let Some(m) = manifest {
                save_sidecar(dest, m)?;
            }
        } else {
            image_registry::convert::convert(
                download,
                &info,
                dest,
                target,
                &self.limits,
                self.convert_timeout,
            )
            .map_err(|e| TemplateError::Convert(image.id.clone(), e.to_string()))?;
            std::fs::File::open(dest)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes the bases unused for `unused_secs` that back no instance;
    /// their ids.
    pub fn prune(&self, in_use: &HashSet<String>, unused_secs: u64) -> Vec<String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let gone = unused_bases(&self.cache.entries(), in_use, now, unused_secs);
        gone.into_iter()
            .filter(|id| self.cache.remove(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_registry::cache::Entry;

    #[test]
    fn only_unused_and_old_bases_go() {
        let e = |id: &str, last| Entry {
            id: id.into(),
            size: 1,
            disk_bytes: 1,
            last_accessed: last,
        };
        let entries = [e("old", 100), e("fresh", 950), e("old-in-use", 100)];
        let in_use: HashSet<String> = ["old-in-use".to_string()].into();
        assert_eq!(unused_bases(&entries, &in_use, 1000, 600), ["old"]);
        assert!(unused_bases(&entries, &in_use, 1000, 10_000).is_empty());
    }

    fn qemu_img(args: &[&str]) {
        let status = std::process::Command::new("qemu-img").args(args).status();
        assert!(status.unwrap().success(), "qemu-img {args:?}");
    }

    /// The host runs the registry's whole verdict on its own copy (not only
    /// the inspector): a VMDK whose zero capacity makes qemu read its
    /// descriptor's FLAT extent (a host file) is refused, and a clean one
    /// becomes a qcow2 base.
    #[test]
    fn the_host_settles_a_base_only_through_the_verdict() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = TemplateCache::open(&dir.path().join("_base")).unwrap();
        let image = |id: &str| ImageRef {
            id: id.into(),
            disk_format: "vmdk".into(),
            os_hash_value: None,
            checksum: None,
            blake3: None,
            size: None,
        };
        let evil = dir.path().join("evil.vmdk");
        qemu_img(&["create", "-q", "-f", "vmdk", evil.to_str().unwrap(), "16M"]);
        let f = std::fs::OpenOptions::new().write(true).open(&evil).unwrap();
        f.write_all_at(&0u64.to_le_bytes(), 12).unwrap();
        let mut desc = b"# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/passwd\" 0\n".to_vec();
        desc.resize(10240, 0);
        f.write_all_at(&desc, 512).unwrap();
        let dest = dir.path().join("evil-base");
        let e = cache
            .settle(&image("evil"), DiskFormat::Vmdk, &evil, &dest, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("capacity of 0"), "{e}");
        assert!(!dest.exists());
        let good = dir.path().join("good.vmdk");
        qemu_img(&["create", "-q", "-f", "vmdk", good.to_str().unwrap(), "16M"]);
        let dest = dir.path().join("good-base");
        cache
            .settle(&image("good"), DiskFormat::Vmdk, &good, &dest, None)
            .unwrap();
        let out = std::process::Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&dest)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"], 16 << 20);
    }

    #[test]
    fn bases_are_raw_or_qcow2() {
        assert_eq!(base_format(DiskFormat::Raw), DiskFormat::Raw);
        assert_eq!(base_format(DiskFormat::Qcow2), DiskFormat::Qcow2);
        assert_eq!(base_format(DiskFormat::Vmdk), DiskFormat::Qcow2);
        assert_eq!(base_format(DiskFormat::Vhdx), DiskFormat::Qcow2);
    }
}
