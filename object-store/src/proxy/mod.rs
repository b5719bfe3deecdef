//! The proxy: stateless front door of the object store. Loads the ring (and
//! reloads it when the file changes), authenticates, and serves the Swift
//! API under `/v1/`, TempAuth under `/auth/v1.0`, and S3 everywhere else.

pub mod backend;
pub mod checksums;
pub mod conditions;
pub mod containers;
pub mod encryption;
pub mod limits;
pub mod manifest;
pub mod object_versions;
pub mod objects;
pub mod quotas;
pub mod retention;
pub mod segments;
pub mod symlinks;
pub mod versions;

use crate::config::{timeouts, ProxyConfig};
use crate::swift;
use backend::Backend;
use http::{Method, Request, Response, StatusCode};
use objects::Objects;
use ring_tools::LiveRing;
use service_kit::auth::TempAuth;
use service_kit::client::HttpClient;
use service_kit::http_util::{set_header, text, Body};
use service_kit::server;
use service_kit::server::RequestBody;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one proxy process holds: the object layer both APIs call, TempAuth,
/// and the S3 service (built beside the object layer, on it).
pub struct ProxyState {
    pub config: ProxyConfig,
    pub objects: Arc<Objects>,
    pub auth: Arc<TempAuth>,
    s3: crate::s3::S3Front,
}

impl ProxyState {
    pub fn new(config: ProxyConfig) -> anyhow::Result<Arc<ProxyState>> {
        let ring = Arc::new(LiveRing::open(&config.ring, None)?);
        let backend = Arc::new(Backend {
            ring,
            client: HttpClient::new(timeouts(config.connect_timeout_ms, config.node_timeout_ms)),
            metrics: Default::default(),
        });
        let master_key = config
            .sse_master_key
            .as_deref()
            .and_then(encryption::Key::from_base64);
        let objects = Arc::new(Objects::new(backend).with_master_key(master_key));
        let auth = Arc::new(TempAuth::new(config.auth.clone())?);
        Ok(Arc::new(ProxyState {
            s3: crate::s3::service(objects.clone(), &config, auth.clone()),
            objects,
            auth,
            config,
        }))
    }

    fn backend(&self) -> &Backend {
        self.objects.backend()
    }
}

pub async fn run(config: ProxyConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let check = Duration::from_secs(config.ring_check_secs);
    let state = ProxyState::new(config)?;
    state.auth.spawn_refresh();
    let _watch = state.backend().ring.watch(check);
    tracing::info!(%addr, "proxy listening");
    server::serve(listener, state, handle, server::shutdown_signal()).await;
    Ok(())
}

pub async fn handle(state: Arc<ProxyState>, req: Request<RequestBody>) -> Response<Body> {
    let trans_id = format!("tx{}", hex::encode(service_kit::ids::rand_bytes::<12>()));
    let sent_body = req.headers().contains_key("transfer-encoding")
        || req
            .headers()
            .get("content-length")
            .is_some_and(|v| v.as_bytes() != b"0");
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let started = Instant::now();
    let (api, mut resp) = if path == "/info" && (method == Method::GET || method == Method::HEAD) {
        ("info", swift::info::response())
    } else if path == "/healthcheck" {
        ("health", text(StatusCode::OK, "OK"))
    } else if path == "/metrics" && method == Method::GET && is_anonymous(&req) {
        // An anonymous GET of a bucket called `metrics` would be refused
        // anyway, so Prometheus gets the conventional path.
        let ring = state.backend().ring().generation();
        let mut r = text(StatusCode::OK, state.backend().metrics.render(ring));
        set_header(r.headers_mut(), "content-type", "text/plain; version=0.0.4");
        ("metrics", r)
    } else if matches!(
        path.as_str(),
        "/auth/v1.0" | "/auth/v1.0/" | "/v1.0" | "/v1.0/"
    ) {
        ("auth", swift::auth_response(&state, &req).await)
    } else if let Some(rest) = path.strip_prefix("/v1/") {
        let rest = rest.to_string();
        // Boxed: a front end's future holds every operation's state (large), kept off the worker thread's stack.
        ("swift", Box::pin(swift::handle(&state, req, &rest)).await)
    } else {
        ("s3", Box::pin(crate::s3::handle(&state.s3, req)).await)
    };
    state.backend().metrics.record(
        api,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    let h = resp.headers_mut();
    if sent_body && failed {
        // A refused request's body may be unread; the connection cannot be
        // reused, and saying so keeps clients from sending on a closed one.
        set_header(h, "connection", "close");
    }
    set_header(h, "x-trans-id", &trans_id);
    set_header(h, "x-openstack-request-id", &trans_id);
    set_header(
        h,
        "date",
        &httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    resp
}

/// No credentials in headers or query (S3 or Swift).
fn is_anonymous(req: &Request<RequestBody>) -> bool {
    let h = req.headers();
    !h.contains_key("authorization")
        && !h.contains_key("x-auth-token")
        && !h.contains_key("x-storage-token")
        && req.uri().query().is_none()
}
