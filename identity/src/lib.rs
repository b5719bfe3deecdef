//! The identity service: domains, projects, users, roles, role
//! assignments and EC2 credentials in RocksDB, behind a Keystone v3 API.
//! Its tokens are sealed with the shared key repository, so every Nubo
//! service checks them locally (`service_kit::token`); revocations are
//! polled from `GET /v3/OS-REVOKE/events`.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod password;
pub mod store;

use config::IdentityConfig;
use error::IdentityError;
use service_kit::token::{Claims, KeyRing, TokenCheck};
use std::sync::Arc;
use store::{Assignment, IdentityDb, Project, DEFAULT_DOMAIN_ID};

/// The running service's state.
pub struct IdentityService {
    /// Its config.
    pub config: IdentityConfig,
    /// Its records.
    pub db: IdentityDb,
    /// Seals and checks tokens.
    pub tokens: TokenCheck,
}

impl IdentityService {
    /// Opens the database and the key repository (creating both), and
    /// seeds the configured users into a new database.
    pub fn open(config: IdentityConfig) -> anyhow::Result<IdentityService> {
        use anyhow::Context;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        service_kit::token::setup_keys(&config.key_dir)?;
        let db = IdentityDb::open(&config.data_dir.join("identity.db"))
            .context("opening the identity database")?;
        let svc = IdentityService {
            tokens: TokenCheck::new(KeyRing::load(&config.key_dir)?),
            db,
            config,
        };
        svc.seed().context("seeding the identity database")?;
        svc.refresh_revocations()?;
        Ok(svc)
    }

    /// Creates the standard roles and the configured users, where missing
    /// (so a restart changes nothing an operator did).
    fn seed(&self) -> Result<(), IdentityError> {
        for role in ["admin", "member", "reader", "ResellerAdmin"] {
            if self.db.role_by_name(role)?.is_none() {
                self.db.create_role(role)?;
            }
        }
        for s in &self.config.seed {
            let project = match self.db.project_by_name(DEFAULT_DOMAIN_ID, &s.project)? {
                Some(p) => p,
                None => self.db.create_project(
                    Project {
                        id: String::new(),
                        name: s.project.clone(),
                        domain_id: DEFAULT_DOMAIN_ID.into(),
                        description: String::new(),
                        enabled: true,
                    },
                    Some(s.project.clone()),
                )?,
            };
            if self.db.user_by_name(DEFAULT_DOMAIN_ID, &s.user)?.is_some() {
                continue;
            }
            let user = self.db.create_user(
                &s.user,
                DEFAULT_DOMAIN_ID,
                &s.password,
                Some(project.id.clone()),
                true,
            )?;
            for name in &s.roles {
                let role = match self.db.role_by_name(name)? {
                    Some(r) => r,
                    None => self.db.create_role(name)?,
                };
                self.db.assign(&Assignment {
                    project_id: project.id.clone(),
                    user_id: user.id.clone(),
                    role_id: role.id,
                })?;
            }
        }
        Ok(())
    }

    /// Loads the revocation events into the token checker.
    pub fn refresh_revocations(&self) -> Result<(), IdentityError> {
        let now = store::now_us() / 1_000_000;
        self.tokens.set_revocations(self.db.revocations(now)?);
        Ok(())
    }

    /// The claims of a valid token.
    pub fn check(&self, token: &str) -> Option<Claims> {
        self.tokens.check(token, store::now_us() / 1_000_000)
    }
}

/// Serves the Keystone API until Ctrl-C or SIGTERM.
pub async fn run(config: IdentityConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let svc = Arc::new(IdentityService::open(config)?);
    // After `nubo identity rotate-keys` the staged key signs: reload the
    // repository as every other service does, or tokens would go on being
    // sealed with a key the rotation after next removes.
    let reloading = svc.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            let dir = reloading.config.key_dir.clone();
            match service_kit::server::blocking(|| KeyRing::load(&dir)) {
                Ok(ring) => reloading.tokens.set_ring(ring),
                Err(e) => tracing::warn!(error = %e, "reloading token keys"),
            }
        }
    });
    tracing::info!(%addr, "identity listening");
    service_kit::server::serve(
        listener,
        svc,
        api::handle,
        service_kit::server::shutdown_signal(),
    )
    .await;
    Ok(())
}
