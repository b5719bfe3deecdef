//! The identity service's config: where it listens and keeps its records,
//! its token key repository, and the public URLs of the services its
//! catalog lists.

use serde::{Deserialize, Serialize};
use service_kit::config::{check, check_positive, check_set, Validate};
use std::path::PathBuf;

/// `nubo identity-server --config <file>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The address to listen on.
    pub bind_ip: String,
    /// Keystone's port is 5000.
    pub port: u16,
    /// The RocksDB database of domains, projects, users, roles.
    pub data_dir: PathBuf,
    /// The token key repository (shared with every service).
    pub key_dir: PathBuf,
    /// How long a token is valid (Keystone's default: one hour).
    #[serde(default = "hour")]
    pub token_ttl_secs: u64,
    /// The service catalog's region.
    #[serde(default = "region_one")]
    pub region: String,
    /// The services' URLs as clients reach them.
    pub catalog: CatalogUrls,
    /// Users, projects and roles to create when the database is new.
    #[serde(default)]
    pub seed: Vec<SeedUser>,
}

fn hour() -> u64 {
    3600
}

fn region_one() -> String {
    "RegionOne".into()
}

/// The public base URL of each service (`http://host:port`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogUrls {
    /// This service.
    pub identity: String,
    /// The proxy (Swift under `/v1`).
    pub object_store: String,
    /// The image registry.
    pub image: String,
    /// The compute API (under `/v2.1`).
    pub compute: String,
}

/// A user created on first start, with one role on one project (both
/// created if missing). Seeded projects get their name as id, so that a
/// Swift account written before the identity service (`AUTH_test`) stays
/// the project's account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// The project's name (and id).
    pub project: String,
    /// The user's name.
    pub user: String,
    /// The user's password.
    pub password: String,
    /// Role names on the project.
    pub roles: Vec<String>,
}

impl Validate for IdentityConfig {
    fn validate(&self) -> Result<(), String> {
        check_positive(&[
            ("port", self.port.into()),
            ("token_ttl_secs", self.token_ttl_secs),
        ])?;
        check(
            self.token_ttl_secs <= 7 * 86_400,
            "token_ttl_secs",
            "at most a week (revocations are kept that long)",
        )?;
        check_set(&[
            ("bind_ip", &self.bind_ip),
            ("region", &self.region),
            ("catalog.identity", &self.catalog.identity),
            ("catalog.object_store", &self.catalog.object_store),
            ("catalog.image", &self.catalog.image),
            ("catalog.compute", &self.catalog.compute),
        ])?;
        for s in &self.seed {
            check(
                !s.project.is_empty() && !s.user.is_empty() && !s.password.is_empty(),
                "seed",
                "project, user and password must be set",
            )?;
        }
        Ok(())
    }
}
