//! The object store: storage nodes that keep objects, container and account
//! listings on their devices, and stateless proxies that speak the Swift API.
//!
//! Storage node: [`storage_node`] routes the internal API to
//! [`object_server`], [`container_server`] and [`account_server`]; bodies
//! live in [`object_files`], records in [`device_db`] (RocksDB); the
//! [`updater`] delivers listing updates owed to other nodes.
//!
//! Proxy: [`proxy`] (quorum reads and writes in [`proxy::backend`]) and the
//! [`swift`] API on top of it.

// Handlers return ready-made error responses through `Result`; boxing them
// would only add allocations on error paths.
#![allow(clippy::result_large_err)]

pub mod account_server;
pub mod auditor;
pub mod config;
pub mod container_server;
pub mod device_db;
pub mod expirer;
pub mod http_util;
pub mod metrics;
pub mod node_client;
pub mod object_files;
pub mod object_server;
pub mod proxy;
pub mod range;
pub mod rate_limit;
pub mod reclaimer;
pub mod records;
pub mod replicator;
pub mod s3;
pub mod server;
pub mod storage_node;
pub mod swift;
pub mod timestamp;
pub mod updater;
