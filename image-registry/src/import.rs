//! Glance's interoperable import: `PUT /stage` keeps the data aside (status
//! `uploading`), `POST /import` with `glance-direct` inspects it, checks it
//! against qemu-img, converts it to the configured format (qcow2 by
//! default; an OVA's single disk is extracted first and its descriptor kept
//! as properties), inspects the result, hashes and stores it. A failed
//! import puts the image back to `queued` with the reason, and nothing is
//! stored.

#![cfg(feature = "service")]

use crate::api::{
    bad_transition, change_image, check_image, fault, load_owned, stream_to_file, work_dir, Failed,
    Hashes, Hashing, Registry,
};
use crate::convert;
use crate::image::{Image, Status};
use crate::inspect::DiskFormat;
use crate::web_download;
use http::{Request, Response, StatusCode};
use service_kit::auth::Identity;
use service_kit::http_util::{collect_limited, Body};
use service_kit::server::RequestBody;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const METHODS: [&str; 2] = ["glance-direct", "web-download"];

fn staging_path(reg: &Registry, id: &str) -> PathBuf {
    reg.config.data_dir.join("staging").join(id)
}

/// `PUT /v2/images/{id}/stage`
pub async fn stage(
    reg: &Registry,
    who: &Identity,
    id: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    if let Err(r) = load_owned(reg, who, id) {
        return r;
    }
    // queued -> uploading is a compare-and-set, as for uploads.
    let claimed = change_image(reg, id, |img| {
        if img.status != Status::Queued {
            return Err(bad_transition(img.status, "uploading"));
        }
        img.status = Status::Uploading;
        img.updated_at = service_kit::ids::now_iso8601();
        Ok(())
    });
    if let Err(r) = claimed {
        return r;
    }
    let path = staging_path(reg, id);
    let _ = std::fs::create_dir_all(path.parent().expect("has a parent"));
    let _ = std::fs::remove_file(&path);
    match stream_to_file(req.into_body(), &path, reg.config.max_image_size, None).await {
        Ok(hashes) => {
            let _ = change_image(reg, id, |img| {
                img.size = Some(hashes.size);
                Ok(())
            });
            let mut r = Response::new(service_kit::http_util::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(Failed(status, reason)) => {
            let _ = std::fs::remove_file(&path);
            let _ = change_image(reg, id, |img| {
                if img.status == Status::Uploading {
                    img.status = Status::Queued;
                }
                Ok(())
            });
            fault(status, reason)
        }
    }
}

/// `POST /v2/images/{id}/import`
pub async fn import(
    reg: &Arc<Registry>,
    who: &Identity,
    id: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    if let Err(r) = load_owned(reg, who, id) {
        return r;
    }
    let body = collect_limited(req.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return fault(
                StatusCode::BAD_REQUEST,
                format!("Malformed JSON in request body: {e}"),
            )
        }
    };
    let method = v["method"]["name"].as_str().unwrap_or("");
    if method == "copy-image" {
        // copy-image copies an active image into more stores; there is one,
        // and an active image is in it already (Glance answers the same).
        return fault(
            StatusCode::CONFLICT,
            format!("Image {id} is already present in every store (there is one: 'default')"),
        );
    }
    if !METHODS.contains(&method) {
        return fault(
            StatusCode::BAD_REQUEST,
            format!("Import method {method:?} is not supported (supported: {METHODS:?})"),
        );
    }
    // Our extension: the format to convert to, instead of the configured one.
    let target_name = v["convert_to"]
        .as_str()
        .unwrap_or(&reg.config.convert_to)
        .to_string();
    let target = match DiskFormat::parse(&target_name) {
        Some(f @ (DiskFormat::Qcow2 | DiskFormat::Raw | DiskFormat::Vmdk)) => f,
        _ => {
            return fault(
                StatusCode::BAD_REQUEST,
                format!("cannot convert to {target_name:?} (qcow2, raw or vmdk)"),
            )
        }
    };
    // web-download: the URL is filtered before anything changes.
    let web_url = if method == "web-download" {
        let uri = v["method"]["uri"].as_str().unwrap_or_default();
        if let Err(e) = web_download::check_url(uri, &reg.config.web_download) {
            return fault(StatusCode::BAD_REQUEST, e.to_string());
        }
        Some(uri.to_string())
    } else {
        None
    };
    // glance-direct: uploading -> importing, one import per staged upload;
    // web-download: queued -> importing. Either a compare-and-set.
    let from = if web_url.is_some() {
        Status::Queued
    } else {
        Status::Uploading
    };
    let claimed = change_image(reg, id, |img| {
        if img.status != from {
            return Err(fault(
                StatusCode::CONFLICT,
                if web_url.is_some() {
                    format!(
                        "Image {id} must be queued for web-download (status {})",
                        img.status.name()
                    )
                } else {
                    format!(
                        "Image {id} has no staged data (status {}); PUT /stage first",
                        img.status.name()
                    )
                },
            ));
        }
        img.status = Status::Importing;
        img.properties
            .insert("os_glance_importing_to_stores".into(), "default".into());
        img.properties.remove("os_glance_failed_import");
        img.properties.remove("os_glance_import_error");
        img.updated_at = service_kit::ids::now_iso8601();
        Ok(())
    });
    let img = match claimed {
        Ok(i) => i,
        Err(r) => return r,
    };
    let reg = reg.clone();
    let method = method.to_string();
    tokio::spawn(async move {
        let id = img.id.clone();
        let staged = staging_path(&reg, &id);
        let work = reg
            .config
            .data_dir
            .join("staging")
            .join(format!("{id}.work"));
        let fetched = match &web_url {
            Some(url) => download(&reg, &id, url, &staged).await,
            None => Ok(()),
        };
        let result = match fetched {
            Ok(()) => run_import(&reg, &img, &staged, &work, target).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_dir_all(&work);
        let _ = std::fs::remove_dir_all(work_dir(&staged));
        if let Err(reason) = result {
            tracing::warn!(image = %id, %reason, "import failed");
            let _ = change_image(&reg, &id, |img| {
                if img.status != Status::Importing {
                    return Err(fault(StatusCode::CONFLICT, "not importing"));
                }
                img.status = Status::Queued;
                img.size = None;
                img.failure = Some(reason.clone());
                img.properties.remove("os_glance_importing_to_stores");
                img.properties
                    .insert("os_glance_failed_import".into(), method.clone());
                img.properties
                    .insert("os_glance_import_error".into(), reason);
                img.updated_at = service_kit::ids::now_iso8601();
                Ok(())
            });
        }
    });
    let mut r = Response::new(service_kit::http_util::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// web-download's fetch into the staging file, with its progress in the
/// image's `os_glance_import_bytes` (and `os_glance_import_size` when the
/// server says) about every 16 MiB.
async fn download(reg: &Arc<Registry>, id: &str, url: &str, staged: &Path) -> Result<(), String> {
    let _ = std::fs::create_dir_all(staged.parent().expect("has a parent"));
    let _ = std::fs::remove_file(staged);
    let (reg2, id2, url, staged) = (
        reg.clone(),
        id.to_string(),
        url.to_string(),
        staged.to_path_buf(),
    );
    let max = reg.config.max_image_size;
    tokio::task::spawn_blocking(move || {
        let mut reported = 0u64;
        let mut report = |got: u64, total: Option<u64>, last: bool| {
            if !last && got < reported + (16 << 20) {
                return;
            }
            reported = got;
            let _ = change_image(&reg2, &id2, |img| {
                img.properties
                    .insert("os_glance_import_bytes".into(), got.to_string());
                if let Some(t) = total {
                    img.properties
                        .insert("os_glance_import_size".into(), t.to_string());
                }
                Ok(())
            });
        };
        let got = web_download::fetch(&url, &reg2.config.web_download, &staged, max, |g, t| {
            report(g, t, false)
        })
        .map_err(|e| e.to_string())?;
        report(got, Some(got), true);
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn run_import(
    reg: &Registry,
    img: &Image,
    staged: &Path,
    work: &Path,
    target: DiskFormat,
) -> Result<(), String> {
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    // The one verdict (an OVA's disk is extracted into its work directory).
    let verified = check_image(reg, img, staged)
        .await
        .map_err(|Failed(_, m)| m)?;
    let properties = verified.info.properties.clone();
    let (work, limits) = (work.to_path_buf(), reg.limits.clone());
    let timeout = Duration::from_secs(reg.config.convert_timeout_secs);
    let (output, out_info) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let out = work.join("converted");
        let out_info = convert::convert(
            &verified.disk,
            &verified.disk_info,
            &out,
            target,
            &limits,
            timeout,
        )
        .map_err(|e| e.to_string())?;
        Ok((out, out_info))
    })
    .await
    .map_err(|e| e.to_string())??;
    let hashes = service_kit::server::blocking(|| hash_file(&output)).map_err(|e| e.to_string())?;
    let stored = reg
        .store
        .put_file(&img.id, &output, &hashes.blake3)
        .await
        .map_err(|e| format!("could not store the image: {e}"))?;
    let done = change_image(reg, &img.id, |done| {
        if done.status != Status::Importing {
            return Err(bad_transition(done.status, "active"));
        }
        done.status = Status::Active;
        done.disk_format = Some(target.name().to_string());
        done.container_format = Some("bare".into());
        done.virtual_size = Some(out_info.virtual_size);
        hashes.clone().record(done);
        done.location = Some(done.id.clone());
        done.failure = None;
        for (k, v) in &properties {
            done.properties
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        done.properties.remove("os_glance_failed_import");
        done.properties.remove("os_glance_importing_to_stores");
        done.properties.remove("os_glance_import_error");
        done.updated_at = service_kit::ids::now_iso8601();
        Ok(())
    });
    if done.is_err() {
        let _ = reg.store.delete(&img.id).await;
        return Err("the image changed during its import".into());
    }
    let cached = reg.cache.incomplete_path(&img.id);
    if std::fs::rename(&output, &cached).is_ok() {
        let _ = service_kit::server::blocking(|| {
            crate::chunks::save_sidecar(&cached, &stored.manifest)
        });
        if reg.cache.commit(&cached, &img.id).is_err() {
            let _ = std::fs::remove_file(&cached);
            let _ = std::fs::remove_file(crate::chunks::sidecar(&cached));
        }
    }
    Ok(())
}

/// Every hash of a file in one pass.
fn hash_file(path: &Path) -> std::io::Result<Hashes> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hashing = Hashing::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hashing.update(&buf[..n]);
    }
    Ok(hashing.finish())
}
