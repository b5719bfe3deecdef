//! Image registry: a Glance-style image API over the object store.
//!
//! [`inspect`] is the pure core: format detection, virtual size and the
//! safety checks every uploaded image must pass before qemu-img or a
//! hypervisor sees it.

// Handlers return ready-made error responses through `Result`, as in the
// object store; boxing them would only add allocations on error paths.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod cache;
pub mod config;
pub mod db;
pub mod image;
pub mod inspect;
pub mod schema;
pub mod service;
pub mod store;
