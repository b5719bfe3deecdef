//! The storage node: serves the devices the ring assigns to its ip:port over
//! the internal API, and runs the updater that delivers queued listing
//! updates.
//!
//! Internal API (path segments percent-encoded):
//! - `/obj/{device}/{partition}/{account}/{container}/{object}`: PUT GET HEAD POST DELETE
//! - `/cont/{device}/{partition}/{account}/{container}`: PUT GET HEAD POST DELETE
//! - `/rows/{device}`: PUT (a batch of listing rows for containers on the device)
//! - `/acct/{device}/{partition}/{account}`: GET HEAD POST
//! - `/acct/{device}/{partition}/{account}/{container}`: PUT (listing row)
//! - `/healthcheck`
//! - `/replicate`, `/expire`, `/audit`, `/lifecycle`: POST runs one pass now

use crate::config::{timeouts, NodeConfig};
use crate::device_db::DeviceDb;
use crate::object_files::ObjectFiles;
use crate::{account_server, container_server, object_server, updater};
use http::{Request, Response, StatusCode};
use ring_tools::{LiveRing, Ring};
use service_kit::client::HttpClient;
use service_kit::http_util::{text, Body};
use service_kit::server;
use service_kit::server::RequestBody;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One device: its metadata database and its object files.
pub struct Device {
    pub name: String,
    pub db: DeviceDb,
    pub files: ObjectFiles,
}

pub struct NodeState {
    pub config: NodeConfig,
    pub ring: Arc<LiveRing>,
    pub client: HttpClient,
    devices: RwLock<HashMap<String, Arc<Device>>>,
    /// Wakes the updater when an update is queued.
    pub updates_queued: tokio::sync::Notify,
    /// When the last replication pass ended, and what it did.
    pub last_replication:
        std::sync::Mutex<Option<(std::time::Instant, crate::replicator::PassStats)>>,
    pub metrics: crate::metrics::NodeMetrics,
    /// One replication pass at a time (timer or `POST /replicate`).
    pub replicating: tokio::sync::Mutex<()>,
    /// Leases of conditional writers, by object name.
    pub write_locks: crate::write_locks::WriteLocks,
    /// The lifecycle worker's object layer.
    pub lifecycle: crate::lifecycle::worker::Lifecycle,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {0} is not served by this node")]
    Unknown(String),
    #[error("device {0} is not available: {1}")]
    Unavailable(String, String),
}

impl NodeState {
    pub fn new(config: NodeConfig) -> anyhow::Result<Arc<NodeState>> {
        let ring = Arc::new(LiveRing::open(&config.ring, None)?);
        let client =
            || HttpClient::new(timeouts(config.connect_timeout_ms, config.node_timeout_ms));
        let state = Arc::new(NodeState {
            lifecycle: crate::lifecycle::worker::Lifecycle::new(crate::proxy::backend::Backend {
                ring: ring.clone(),
                client: client(),
                metrics: Default::default(),
            }),
            client: client(),
            config,
            ring,
            devices: RwLock::new(HashMap::new()),
            updates_queued: tokio::sync::Notify::new(),
            last_replication: std::sync::Mutex::new(None),
            metrics: Default::default(),
            replicating: tokio::sync::Mutex::new(()),
            write_locks: Default::default(),
        });
        for name in state.my_device_names(&state.ring.current()) {
            if let Err(e) = state.device(&name) {
                tracing::warn!(device = %name, error = %e, "device not available at start");
            }
        }
        Ok(state)
    }

    pub fn ring(&self) -> Arc<Ring> {
        self.ring.current()
    }

    fn my_device_names(&self, ring: &Ring) -> Vec<String> {
        ring.devices()
            .iter()
            .filter(|d| d.ip == self.config.bind_ip && d.port == self.config.port)
            .map(|d| d.device.clone())
            .collect()
    }

    /// The devices open on this node.
    pub fn devices(&self) -> Vec<Arc<Device>> {
        self.devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Opens a device on first use. A device must be in the ring for this
    /// node and its directory must exist (an unmounted disk is not silently
    /// replaced by the root file system).
    pub fn device(&self, name: &str) -> Result<Arc<Device>, DeviceError> {
        if let Some(d) = self
            .devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(d.clone());
        }
        if !self.my_device_names(&self.ring()).iter().any(|n| n == name) {
            return Err(DeviceError::Unknown(name.to_string()));
        }
        let mut devices = self.devices.write().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = devices.get(name) {
            return Ok(d.clone());
        }
        let root = self.config.devices_root.join(name);
        let unavailable = |e: String| DeviceError::Unavailable(name.to_string(), e);
        if !root.is_dir() {
            return Err(unavailable(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let files = ObjectFiles::open(&root).map_err(|e| unavailable(e.to_string()))?;
        let db = DeviceDb::open(&root.join("meta.db")).map_err(|e| unavailable(e.to_string()))?;
        let device = Arc::new(Device {
            name: name.to_string(),
            db,
            files,
        });
        devices.insert(name.to_string(), device.clone());
        Ok(device)
    }
}

/// Runs a storage node until Ctrl-C or SIGTERM.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let check = Duration::from_secs(config.ring_check_secs);
    let state = NodeState::new(config)?;
    let _watch = state.ring.watch(check);
    tokio::spawn(updater::run(state.clone()));
    let every = Duration::from_secs(state.config.replicator_interval_secs);
    tokio::spawn(crate::replicator::run(state.clone(), every));
    let expire_every = Duration::from_secs(state.config.expirer_interval_secs);
    tokio::spawn(crate::expirer::run(state.clone(), expire_every));
    let audit_every = Duration::from_secs(state.config.auditor_interval_secs);
    tokio::spawn(crate::auditor::run(
        state.clone(),
        audit_every,
        state.config.auditor_bytes_per_sec,
    ));
    let lifecycle_every = Duration::from_secs(state.config.lifecycle_interval_secs);
    tokio::spawn(crate::lifecycle::worker::run(
        state.clone(),
        lifecycle_every,
    ));
    tracing::info!(%addr, "storage node listening");
    server::serve(listener, state, handle, server::shutdown_signal()).await;
    Ok(())
}

/// `PUT /ring` (`nubo ring push`): a ring file for this node. It must load,
/// belong to the same cluster (same hash secret), and be newer than the ring
/// in service; it then replaces the ring file atomically and is swapped in.
async fn receive_ring(state: &NodeState, req: Request<RequestBody>) -> Response<Body> {
    let Some(bytes) = service_kit::http_util::collect_limited(req.into_body(), 256 << 20).await
    else {
        return text(StatusCode::BAD_REQUEST, "ring file too large or broken");
    };
    let ring = match ring_tools::ring_file::decode(&bytes) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("not a valid ring: {e}")),
    };
    let current = state.ring();
    if ring.secret() != current.secret() {
        return text(StatusCode::CONFLICT, "this ring belongs to another cluster");
    }
    if ring.checksum() == current.checksum() {
        return text(StatusCode::OK, "ring already in service");
    }
    if ring.generation() <= current.generation() {
        return text(
            StatusCode::CONFLICT,
            format!(
                "ring generation {} is not newer than {}",
                ring.generation(),
                current.generation()
            ),
        );
    }
    let path = state.config.ring.clone();
    let written =
        tokio::task::spawn_blocking(move || ring_tools::atomic_file::write(&path, &bytes)).await;
    if !matches!(written, Ok(Ok(()))) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not write the ring file",
        );
    }
    match state.ring.reload_if_changed() {
        Ok(_) => text(
            StatusCode::CREATED,
            format!("ring generation {} in service", ring.generation()),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A parsed internal path.
pub struct Target<'a> {
    pub device: Arc<Device>,
    pub partition: u32,
    pub names: Vec<String>,
    pub state: &'a Arc<NodeState>,
}

async fn handle(state: Arc<NodeState>, req: Request<RequestBody>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if segments.len() == 1 && segments[0] == "healthcheck" {
        return text(StatusCode::OK, "OK");
    }
    if segments.len() == 1 && segments[0] == "ring" && req.method() == http::Method::PUT {
        return receive_ring(&state, req).await;
    }
    if segments.len() == 1 && segments[0] == "metrics" {
        let mut r = text(StatusCode::OK, crate::metrics::render(&state).await);
        service_kit::http_util::set_header(
            r.headers_mut(),
            "content-type",
            "text/plain; version=0.0.4",
        );
        return r;
    }
    if segments.len() == 1 && segments[0] == "replicate" && req.method() == http::Method::POST {
        // One pass now, for operators and tests (like `swift-object-replicator --once`).
        let _one = state.replicating.lock().await;
        let stats = crate::replicator::replicate_once(&state).await;
        *state
            .last_replication
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), stats.clone()));
        let mut r = http::Response::new(service_kit::http_util::full(
            serde_json::to_vec(&stats).expect("json"),
        ));
        service_kit::http_util::set_header(r.headers_mut(), "content-type", "application/json");
        return r;
    }
    if segments.len() == 1 && segments[0] == "expire" && req.method() == http::Method::POST {
        let stats = crate::expirer::expire_once(&state).await;
        let mut r = http::Response::new(service_kit::http_util::full(
            serde_json::to_vec(&stats).expect("json"),
        ));
        service_kit::http_util::set_header(r.headers_mut(), "content-type", "application/json");
        return r;
    }
    if segments.len() == 1 && segments[0] == "lifecycle" && req.method() == http::Method::POST {
        // One pass now, for operators and tests; `?now=<unix seconds>`
        // decides as of that time (a test's way to see a later day).
        let now = service_kit::http_util::query_pairs(req.uri().query())
            .into_iter()
            .find(|(k, _)| k == "now")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| service_kit::timestamp::Timestamp::now().secs());
        let stats = crate::lifecycle::worker::run_once(&state, now).await;
        let mut r = http::Response::new(service_kit::http_util::full(
            serde_json::to_vec(&stats).expect("json"),
        ));
        service_kit::http_util::set_header(r.headers_mut(), "content-type", "application/json");
        return r;
    }
    if segments.len() == 1 && segments[0] == "audit" && req.method() == http::Method::POST {
        // One unthrottled pass now, for operators and tests.
        let stats = crate::auditor::audit_once(&state, 0).await;
        let mut r = http::Response::new(service_kit::http_util::full(
            serde_json::to_vec(&stats).expect("json"),
        ));
        service_kit::http_util::set_header(r.headers_mut(), "content-type", "application/json");
        return r;
    }
    if let (4, Some(kind)) = (
        segments.len(),
        crate::replicator::Listing::from_path(&segments[0]),
    ) {
        let device = match state.device(&segments[1]) {
            Ok(d) => d,
            Err(e) => return text(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        };
        let (Ok(part), Ok(raw)) = (segments[2].parse::<u32>(), hex::decode(&segments[3])) else {
            return text(StatusCode::BAD_REQUEST, "bad partition or name hash");
        };
        let Ok(hash) = <[u8; 16]>::try_from(raw.as_slice()) else {
            return text(StatusCode::BAD_REQUEST, "bad name hash");
        };
        let name_hash = ring_tools::NameHash(hash);
        if segments[0] == kind.paths().0 {
            return crate::replicator::listing_digest_response(kind, device, part, name_hash).await;
        }
        let Some(body) = service_kit::http_util::collect_limited(req.into_body(), 512 << 20).await
        else {
            return text(StatusCode::BAD_REQUEST, "body too large or broken");
        };
        return crate::replicator::listing_merge_response(kind, device, part, name_hash, body)
            .await;
    }
    if (segments.len() == 3 && segments[0] == "hashes")
        || (segments.len() == 4 && segments[0] == "suffix")
    {
        let device = match state.device(&segments[1]) {
            Ok(d) => d,
            Err(e) => return text(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        };
        let Ok(part) = segments[2].parse::<u32>() else {
            return text(StatusCode::BAD_REQUEST, "bad partition");
        };
        if segments[0] == "hashes" {
            return crate::replicator::hashes_response(device, part).await;
        }
        let Ok(suffix) = u16::from_str_radix(&segments[3], 16) else {
            return text(StatusCode::BAD_REQUEST, "bad suffix");
        };
        return crate::replicator::suffix_response(device, part, suffix).await;
    }
    if segments.len() == 2 && segments[0] == "rows" {
        return container_server::handle_rows(state.clone(), &segments[1], req).await;
    }
    if segments.len() < 4 {
        return text(StatusCode::BAD_REQUEST, "bad internal path");
    }
    let device = match state.device(&segments[1]) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
    };
    let Ok(partition) = segments[2].parse::<u32>() else {
        return text(StatusCode::BAD_REQUEST, "bad partition");
    };
    let kind = segments[0].clone();
    let target = Target {
        device,
        partition,
        names: segments[3..].to_vec(),
        state: &state,
    };
    match (kind.as_str(), target.names.len()) {
        ("obj", 3) => object_server::handle(target, req).await,
        ("cont", 2) => container_server::handle(target, req).await,
        ("acct", 1) => account_server::handle(target, req).await,
        ("acct", 2) => account_server::handle_row(target, req).await,
        _ => text(StatusCode::BAD_REQUEST, "bad internal path"),
    }
}
