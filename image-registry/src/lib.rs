//! Image registry: a Glance-style image API over the object store.
//!
//! [`inspect`] is the pure core: format detection, virtual size and the
//! safety checks every uploaded image must pass before qemu-img or a
//! hypervisor sees it. [`verify`] is the one verdict every path that makes
//! an image usable calls: the inspector and qemu-img must agree.
//!
//! The public surface is deliberate: the service ([`service::run`] and its
//! [`config`]), and the image toolkit a compute host needs to use images
//! safely without the registry's internals — [`inspect`], [`verify`],
//! [`convert`], [`process`], the host cache ([`cache`]) and the chunk
//! client ([`chunks`]: manifests, local indexes, assembly). Everything
//! else (the API, records, imports, web-download) is the registry's own.

// Handlers return ready-made error responses through `Result`, as in the
// object store; boxing them would only add allocations on error paths.
#![allow(clippy::result_large_err)]

#[cfg(feature = "service")]
pub(crate) mod api;
#[cfg(feature = "service")]
pub mod cache;
#[cfg(feature = "service")]
pub mod chunks;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod convert;
#[cfg(feature = "service")]
pub(crate) mod db;
#[cfg(feature = "service")]
pub(crate) mod image;
#[cfg(feature = "service")]
pub(crate) mod import;
pub mod inspect;
pub mod process;
#[cfg(feature = "service")]
pub(crate) mod schema;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod store;
#[cfg(feature = "service")]
pub mod verify;
#[cfg(feature = "service")]
pub(crate) mod web_download;
