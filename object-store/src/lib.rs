//! The object store: storage nodes that keep objects, container and account
//! listings on their devices, and stateless proxies that speak the Swift API.
//!
//! Storage node: [`storage_node`] routes the internal API to
//! [`object_server`], [`container_server`] and [`account_server`]; bodies
//! live in [`object_files`], records in [`device_db`] (RocksDB); the
//! [`updater`] delivers listing updates owed to other nodes; [`write_locks`]
//! serializes conditional writes of one name. [`version_names`] is what
//! nodes and proxies both know of object versions: their names and where
//! the ring places them; [`symlink_format`] how a link is stored.
//!
//! Proxy: [`proxy`] (quorum reads and writes in [`proxy::backend`]) and the
//! [`swift`] API on top of it.

// Handlers return ready-made error responses through `Result`; boxing them
// would only add allocations on error paths.
#![allow(clippy::result_large_err)]

pub(crate) mod account_server;
pub(crate) mod auditor;
pub(crate) mod body_hashes;
pub mod config;
pub(crate) mod container_server;
pub(crate) mod device_db;
pub(crate) mod expirer;
pub(crate) mod lifecycle;
pub(crate) mod listing_rows;
pub(crate) mod metrics;
pub(crate) mod object_body;
pub(crate) mod object_files;
pub(crate) mod object_server;
pub mod proxy;
pub(crate) mod rate_limit;
pub(crate) mod reclaimer;
pub(crate) mod records;
pub(crate) mod replicator;
pub(crate) mod s3;
pub mod storage_node;
pub(crate) mod swift;
pub(crate) mod symlink_format;
pub(crate) mod updater;
pub(crate) mod version_names;
pub(crate) mod write_locks;
