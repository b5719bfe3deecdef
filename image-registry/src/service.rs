//! Starting the registry: open its database, cache and store client, and
//! serve the API until Ctrl-C or SIGTERM.

#![cfg(feature = "service")]

use crate::api::{handle, Registry};
use crate::cache::Cache;
use crate::chunks::ChunkStore;
use crate::config::RegistryConfig;
use crate::db::ImageDb;
use crate::inspect::Limits;
use crate::store::ObjectStore;
use anyhow::Context;
use service_kit::auth::TempAuth;
use std::sync::Arc;

impl Registry {
    pub fn open(config: RegistryConfig) -> anyhow::Result<Registry> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let db = Arc::new(
            ImageDb::open(&config.data_dir.join("images.db"))
                .context("opening the image database")?,
        );
        let cache = Cache::open(&config.data_dir.join("cache"), config.cache_max_bytes)
            .context("opening the image cache")?;
        Ok(Registry {
            db: db.clone(),
            cache,
            store: Arc::new(ChunkStore::new(
                ObjectStore::new(config.store.clone()),
                db.clone(),
            )),
            auth: TempAuth::new(config.auth.clone()).context("loading the token keys")?,
            limits: Limits {
                max_virtual_size: config.max_virtual_size,
                allow_bad_partition_table: config.allow_bad_partition_table,
                max_convert_bytes: config.max_convert_bytes,
                max_expansion: config.max_expansion,
                expansion_floor: config.expansion_floor,
            },
            config,
            uploads_ok: Default::default(),
            uploads_failed: Default::default(),
            verify_micros: Default::default(),
            cache_chunk_bytes_local: Default::default(),
            delete_later: Default::default(),
        })
    }
}

pub async fn run(config: RegistryConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let reg = Arc::new(Registry::open(config)?);
    reg.auth.spawn_refresh();
    recover_interrupted(&reg)?;
    // The container may not exist yet; the store may still be starting.
    for attempt in 0..50 {
        match reg.store.objects.ensure_container().await {
            Ok(()) => break,
            Err(e) if attempt == 49 => return Err(e).context("preparing the image container"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let leftovers: Vec<String> =
        std::mem::take(&mut *reg.delete_later.lock().unwrap_or_else(|p| p.into_inner()));
    for id in leftovers {
        if let Err(e) = reg.store.delete(&id).await {
            tracing::warn!(image = %id, error = %e, "could not delete the data of an interrupted upload");
        }
    }
    tracing::info!(%addr, "image registry listening");
    service_kit::server::serve(
        listener,
        reg,
        handle,
        service_kit::server::shutdown_signal(),
    )
    .await;
    Ok(())
}

/// Images a previous run left mid-way (the process stopped during an upload
/// or an import) would otherwise stay `saving` or `importing` for ever: an
/// interrupted upload is `killed` (its data may be partly stored, so it is
/// deleted), an interrupted import returns to `queued`, and a staged image
/// whose staged file is gone returns to `queued` too. Each is logged.
fn recover_interrupted(reg: &Registry) -> anyhow::Result<()> {
    use crate::image::Status;
    for mut img in reg.db.all()? {
        let staged = reg.config.data_dir.join("staging").join(&img.id);
        let (to, why) = match img.status {
            Status::Saving => (Status::Killed, "the registry stopped during the upload"),
            Status::Importing => (Status::Queued, "the registry stopped during the import"),
            Status::Uploading if !staged.exists() => (Status::Queued, "the staged data is gone"),
            _ => continue,
        };
        tracing::warn!(image = %img.id, from = img.status.name(), to = to.name(), why, "recovering an interrupted image");
        if img.status == Status::Saving {
            // Part of it may have reached the store before the stop.
            let _ = std::fs::remove_file(&staged);
            img.location = None;
            reg.delete_later
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(img.id.clone());
        }
        img.status = to;
        img.failure = Some(why.to_string());
        if to == Status::Queued {
            img.properties
                .insert("os_glance_import_error".into(), why.to_string());
            img.size = None;
        }
        img.updated_at = service_kit::ids::now_iso8601();
        reg.db.update(&img.id.clone(), |record| {
            *record = img;
            Ok::<(), std::convert::Infallible>(())
        })?;
    }
    Ok(())
}
