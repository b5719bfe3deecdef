//! A compute host's template cache (Nova's `_base`, CloudStack's
//! secondary-to-primary copy): the first launch of an image on a host
//! fetches it from the registry (through the registry's own cache) into
//! `<host data>/_base/<image id>`, checks its hash against the registry's
//! record, inspects it, and converts it to a base format if need be.
//! Concurrent launches of one image fetch it once (the registry's cache
//! module does the single-flight and the partial-file handling). Bases no
//! instance has used for a while are removed.

use crate::rest::addr_of;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use image_registry::cache::Cache;
use image_registry::inspect::{self, DiskFormat, FileSource, InspectError, Limits};
use md5::Md5;
use object_store::http_util::empty;
use object_store::node_client::{NodeClient, Timeouts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use std::collections::HashSet;
use std::io::Write;
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
    #[error("image {0} could not be converted: {1}")]
    Convert(String, String),
    #[error("image {0} is {1}, which cannot be a base")]
    Format(String, String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
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

pub struct TemplateCache {
    cache: Cache,
    /// Time spent fetching (download, hash check, inspection, conversion), µs.
    fetch_micros: std::sync::atomic::AtomicU64,
    client: NodeClient,
    limits: Limits,
    convert_timeout: Duration,
}

impl TemplateCache {
    pub fn open(base_dir: &Path) -> std::io::Result<TemplateCache> {
        Ok(TemplateCache {
            cache: Cache::open_flat(base_dir, u64::MAX)?,
            fetch_micros: Default::default(),
            client: NodeClient::new(Timeouts {
                connect: Duration::from_secs(2),
                node: Duration::from_secs(120),
            }),
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
            .get_or_fetch(&image.id, |dest| {
                self.fetch(image, declared, registry_url, token, dest)
            })
            .await?;
        Ok((path, base_format(declared)))
    }

    /// Downloads, verifies, inspects and (if need be) converts one image
    /// into `dest`; the bytes downloaded.
    async fn fetch(
        &self,
        image: &ImageRef,
        declared: DiskFormat,
        registry_url: &str,
        token: &str,
        dest: PathBuf,
    ) -> Result<u64, TemplateError> {
        let started = std::time::Instant::now();
        let result = self
            .download(image, declared, registry_url, token, dest)
            .await;
        self.fetch_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        result
    }

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
        let download = dest.with_extension("download");
        let mut file = std::fs::File::create(&download)?;
        let (mut sha, mut md5, mut len) = (Sha512::new(), Md5::new(), 0u64);
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| fail(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                sha.update(&data);
                md5.update(&data);
                len += data.len() as u64;
                file.write_all(&data)?;
            }
        }
        file.sync_all()?;
        drop(file);
        // Inspection and conversion read the whole file: off the async workers.
        let result = crate::rest::blocking(|| {
            self.verify_and_settle(image, declared, &download, &dest, sha, md5, len)
        })
        .map(|()| len);
        let _ = std::fs::remove_file(&download);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_and_settle(
        &self,
        image: &ImageRef,
        declared: DiskFormat,
        download: &Path,
        dest: &Path,
        sha: Sha512,
        md5: Md5,
        len: u64,
    ) -> Result<(), TemplateError> {
        let mismatch = |algo, got: String, want: &str| TemplateError::HashMismatch {
            id: image.id.clone(),
            algo,
            got,
            want: want.to_string(),
        };
        if let Some(want) = &image.os_hash_value {
            let got = hex::encode(sha.finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(mismatch("sha512", got, want));
            }
        } else if let Some(want) = &image.checksum {
            let got = hex::encode(md5.finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(mismatch("md5", got, want));
            }
        } else {
            return Err(TemplateError::Fetch(
                image.id.clone(),
                "the registry gives no hash to verify it against".into(),
            ));
        }
        if image.size.is_some_and(|s| s != len) {
            return Err(TemplateError::Fetch(
                image.id.clone(),
                format!("{len} bytes arrived, the registry says {:?}", image.size),
            ));
        }
        let unsafe_ = |e| TemplateError::Unsafe(image.id.clone(), e);
        let info = inspect::inspect(&FileSource::open(download)?, &self.limits).map_err(unsafe_)?;
        inspect::check_declared(&info, Some(declared.name())).map_err(unsafe_)?;
        if info.container.is_some() {
            return Err(TemplateError::Format(
                image.id.clone(),
                "an OVA package (import it, and the registry extracts its disk)".into(),
            ));
        }
        let target = base_format(declared);
        if target == info.format {
            std::fs::rename(download, dest)?;
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
        }
        std::fs::File::open(dest)?.sync_all()?;
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
            last_accessed: last,
        };
        let entries = [e("old", 100), e("fresh", 950), e("old-in-use", 100)];
        let in_use: HashSet<String> = ["old-in-use".to_string()].into();
        assert_eq!(unused_bases(&entries, &in_use, 1000, 600), ["old"]);
        assert!(unused_bases(&entries, &in_use, 1000, 10_000).is_empty());
    }

    #[test]
    fn bases_are_raw_or_qcow2() {
        assert_eq!(base_format(DiskFormat::Raw), DiskFormat::Raw);
        assert_eq!(base_format(DiskFormat::Qcow2), DiskFormat::Qcow2);
        assert_eq!(base_format(DiskFormat::Vmdk), DiskFormat::Qcow2);
        assert_eq!(base_format(DiskFormat::Vhdx), DiskFormat::Qcow2);
    }
}
