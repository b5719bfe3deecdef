//! Image registry: a Glance-style image API over the object store.
//!
//! [`inspect`] is the pure core: format detection, virtual size and the
//! safety checks every uploaded image must pass before qemu-img or a
//! hypervisor sees it. [`verify`] is the one verdict every path that makes
//! an image usable calls: the inspector and qemu-img must agree.

// Handlers return ready-made error responses through `Result`, as in the
// object store; boxing them would only add allocations on error paths.
#![allow(clippy::result_large_err)]

#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod cache;
#[cfg(feature = "service")]
pub mod chunks;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod convert;
#[cfg(feature = "service")]
pub mod db;
#[cfg(feature = "service")]
pub mod image;
#[cfg(feature = "service")]
pub mod import;
pub mod inspect;
pub mod process;
#[cfg(feature = "service")]
pub mod schema;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod store;
#[cfg(feature = "service")]
pub mod verify;
#[cfg(feature = "service")]
pub mod web_download;
