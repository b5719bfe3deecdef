//! `nubo image ...`: the operator's client of the image registry. Logs in
//! with TempAuth ([`crate::service_client`]) and talks Glance v2; uploads
//! and downloads stream with a progress bar (bytes, rate, ETA).

use crate::service_client::{Login, ServiceClient};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use image_registry::inspect;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use service_kit::http_util::{empty, Body};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The registry.
    #[arg(
        long,
        env = "NUBO_REGISTRY_URL",
        default_value = "http://127.0.0.1:9292"
    )]
    registry_url: String,
    #[command(flatten)]
    login: Login,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Create an image and upload FILE into it.
    Upload {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// Detected from the file when omitted.
        #[arg(long)]
        disk_format: Option<String>,
        /// `bare`, or `ova` for an OVA package (detected when omitted).
        #[arg(long)]
        container_format: Option<String>,
        #[arg(long, default_value = "shared")]
        visibility: String,
        /// Import with conversion to this format (qcow2, raw, vmdk) instead
        /// of storing the file as it is.
        #[arg(long)]
        convert_to: Option<String>,
        /// Extra properties, `key=value`, repeatable.
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    List,
    Show {
        id: String,
    },
    /// Download an image's data into FILE.
    Download {
        id: String,
        file: PathBuf,
    },
    Delete {
        id: String,
    },
    /// The registry's local cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, clap::Subcommand)]
enum CacheCommand {
    List,
    /// Fetch an image into the cache in the background.
    Prefetch {
        id: String,
    },
    /// Drop every cached image.
    Purge,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// A file as a request body that advances `pb` as it is sent.
fn file_with_progress(path: &Path, pb: ProgressBar) -> Result<Body> {
    let file = tokio::fs::File::from_std(std::fs::File::open(path)?);
    let stream = futures_util::stream::unfold((file, pb), |(mut f, pb)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                pb.inc(n as u64);
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), (f, pb)))
            }
            Err(e) => Some((
                Err(Box::new(e) as service_kit::http_util::BoxError),
                (f, pb),
            )),
        }
    });
    Ok(BodyExt::boxed_unsync(http_body_util::StreamBody::new(
        stream,
    )))
}

pub fn run(args: ImageArgs) -> Result<()> {
    // A CLI piped into `head` should stop quietly when the pipe closes, as
    // other Unix tools do, rather than panic on a failed print.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let c = ServiceClient::login(&args.login, &args.registry_url, "registry").await?;
        match args.command {
            ImageCommand::Upload {
                file,
                name,
                disk_format,
                container_format,
                visibility,
                convert_to,
                properties,
            } => {
                let spec = NewImage {
                    name,
                    disk_format,
                    container_format,
                    visibility,
                    convert_to,
                    properties,
                };
                upload(&c, &file, spec).await
            }
            ImageCommand::List => {
                let v = c.json(Method::GET, "/v2/images?limit=1000", None).await?;
                println!(
                    "{:<36}  {:<24} {:<8} {:<6} {:>14}",
                    "ID", "Name", "Status", "Format", "Size"
                );
                for i in v["images"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<24} {:<8} {:<6} {:>14}",
                        i["id"].as_str().unwrap_or(""),
                        i["name"].as_str().unwrap_or(""),
                        i["status"].as_str().unwrap_or(""),
                        i["disk_format"].as_str().unwrap_or(""),
                        i["size"]
                            .as_u64()
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    );
                }
                Ok(())
            }
            ImageCommand::Show { id } => {
                let v = c
                    .json(Method::GET, &format!("/v2/images/{id}"), None)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(())
            }
            ImageCommand::Download { id, file } => download(&c, &id, &file).await,
            ImageCommand::Delete { id } => {
                c.json(Method::DELETE, &format!("/v2/images/{id}"), None)
                    .await?;
                println!("deleted {id}");
                Ok(())
            }
            ImageCommand::Cache(CacheCommand::List) => {
                let v = c.json(Method::GET, "/v2/cache", None).await?;
                for e in v["cached_images"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {:>14} bytes",
                        e["image_id"].as_str().unwrap_or(""),
                        e["size"]
                    );
                }
                Ok(())
            }
            ImageCommand::Cache(CacheCommand::Prefetch { id }) => {
                c.json(Method::PUT, &format!("/v2/cache/{id}"), None)
                    .await?;
                println!("{id} queued for caching");
                Ok(())
            }
            ImageCommand::Cache(CacheCommand::Purge) => {
                c.json(Method::DELETE, "/v2/cache", None).await?;
                println!("cache purged");
                Ok(())
            }
        }
    })
}

/// What `upload` was asked for.
struct NewImage {
    name: String,
    disk_format: Option<String>,
    container_format: Option<String>,
    visibility: String,
    convert_to: Option<String>,
    properties: Vec<(String, String)>,
}

async fn upload(c: &ServiceClient, file: &Path, spec: NewImage) -> Result<()> {
    let NewImage {
        name,
        disk_format,
        container_format,
        visibility,
        convert_to,
        properties,
    } = spec;
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    // The registry inspects again; checking here first saves sending a
    // bad image and fills in the formats when they were not given.
    let src = inspect::FileSource::open(file)?;
    let info =
        inspect::inspect(&src, &inspect::Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let disk_format = disk_format.unwrap_or_else(|| info.format.name().to_string());
    let container_format =
        container_format.unwrap_or_else(|| info.container.unwrap_or("bare").to_string());
    let mut body = json!({
        "name": name,
        "disk_format": disk_format,
        "container_format": container_format,
        "visibility": visibility,
    });
    for (k, v) in properties {
        body[k] = json!(v);
    }
    let created = c.json(Method::POST, "/v2/images", Some(body)).await?;
    let id = created["id"]
        .as_str()
        .context("no id in the answer")?
        .to_string();
    // Direct upload, or stage + import when converting.
    let target = if convert_to.is_some() {
        "stage"
    } else {
        "file"
    };
    let pb = bar(len, "uploading");
    let resp = c
        .send(
            Method::PUT,
            &format!("/v2/images/{id}/{target}"),
            Some("application/octet-stream"),
            file_with_progress(file, pb.clone())?,
            true,
        )
        .await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    pb.finish_and_clear();
    c.check(status, &bytes)?;
    let img = match convert_to {
        None => {
            c.json(Method::GET, &format!("/v2/images/{id}"), None)
                .await?
        }
        Some(format) => {
            let body = json!({"method": {"name": "glance-direct"}, "convert_to": format});
            c.json(Method::POST, &format!("/v2/images/{id}/import"), Some(body))
                .await?;
            let spinner = ProgressBar::new_spinner();
            spinner.set_message(format!("converting to {format}"));
            let img = loop {
                spinner.tick();
                let img = c
                    .json(Method::GET, &format!("/v2/images/{id}"), None)
                    .await?;
                match img["status"].as_str() {
                    Some("active") => break img,
                    Some("queued") => {
                        spinner.finish_and_clear();
                        bail!(
                            "{}",
                            img["os_glance_import_error"]
                                .as_str()
                                .unwrap_or("import failed")
                        );
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            spinner.finish_and_clear();
            img
        }
    };
    println!(
        "{id} {} {} checksum {} virtual size {}",
        img["status"].as_str().unwrap_or("?"),
        img["disk_format"].as_str().unwrap_or("?"),
        img["checksum"].as_str().unwrap_or("-"),
        img["virtual_size"]
    );
    Ok(())
}

async fn download(c: &ServiceClient, id: &str, file: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let img = c
        .json(Method::GET, &format!("/v2/images/{id}"), None)
        .await?;
    let resp = c
        .send(
            Method::GET,
            &format!("/v2/images/{id}/file"),
            None,
            empty(),
            true,
        )
        .await?;
    let status = resp.status();
    if status == StatusCode::NO_CONTENT {
        bail!(
            "image {id} has no data (status {})",
            img["status"].as_str().unwrap_or("?")
        );
    }
    if !status.is_success() {
        let bytes = resp.into_body().collect().await?.to_bytes();
        c.check(status, &bytes)?;
        bail!("the registry answered {status}");
    }
    let len = img["size"].as_u64().unwrap_or(0);
    let pb = bar(len, "downloading");
    let temp = file.with_extension("part");
    let mut out = tokio::fs::File::create(&temp)
        .await
        .with_context(|| format!("creating {}", temp.display()))?;
    let mut body = resp.into_body();
    let mut md5 = <md5::Md5 as md5::Digest>::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("download interrupted")?;
        if let Ok(data) = frame.into_data() {
            md5::Digest::update(&mut md5, &data);
            out.write_all(&data).await?;
            pb.inc(data.len() as u64);
        }
    }
    out.sync_all().await?;
    pb.finish_and_clear();
    let got = hex::encode(md5::Digest::finalize(md5));
    if img["checksum"].as_str().is_some_and(|want| want != got) {
        let _ = std::fs::remove_file(&temp);
        bail!("downloaded data does not match the image's checksum");
    }
    std::fs::rename(&temp, file)?;
    println!("{id} saved to {} ({got})", file.display());
    Ok(())
}
