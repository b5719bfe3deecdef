//! Starting the registry: open its database, cache and store client, and
//! serve the API until Ctrl-C or SIGTERM.

use crate::api::{handle, Registry};
use crate::cache::Cache;
use crate::config::RegistryConfig;
use crate::db::ImageDb;
use crate::inspect::Limits;
use crate::store::ObjectStore;
use anyhow::Context;
use object_store::swift::tempauth::TempAuth;
use std::sync::Arc;

impl Registry {
    pub fn open(config: RegistryConfig) -> anyhow::Result<Registry> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let db = ImageDb::open(&config.data_dir.join("images.db"))
            .context("opening the image database")?;
        let cache = Cache::open(&config.data_dir.join("cache"), config.cache_max_bytes)
            .context("opening the image cache")?;
        Ok(Registry {
            db,
            cache,
            store: ObjectStore::new(config.store.clone()),
            auth: TempAuth::new(config.auth.clone()),
            limits: Limits {
                max_virtual_size: config.max_virtual_size,
                allow_bad_partition_table: config.allow_bad_partition_table,
            },
            config,
            uploads_ok: Default::default(),
            uploads_failed: Default::default(),
        })
    }
}

pub async fn run(config: RegistryConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let reg = Arc::new(Registry::open(config)?);
    // The container may not exist yet; the store may still be starting.
    for attempt in 0..50 {
        match reg.store.ensure_container().await {
            Ok(()) => break,
            Err(e) if attempt == 49 => return Err(e).context("preparing the image container"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    tracing::info!(%addr, "image registry listening");
    object_store::server::serve(
        listener,
        reg,
        handle,
        object_store::server::shutdown_signal(),
    )
    .await;
    Ok(())
}
