//! What every Nubo service uses and none owns: the HTTP server loop and
//! client, bodies and small response helpers, the error-to-response trait,
//! token checking (TempAuth, and the identity service's sealed tokens), strict config loading, ids and timestamps,
//! byte ranges, file-system helpers and the JSON record store.
//!
//! Service crates (object-store, image-registry, compute) depend on this
//! one and never on each other's internals.

#![warn(missing_docs)]

pub mod api_error;
pub mod auth;
pub mod client;
pub mod config;
pub mod fs;
pub mod http_util;
pub mod ids;
pub mod json_store;
pub mod range;
pub mod server;
pub mod timestamp;
pub mod token;
