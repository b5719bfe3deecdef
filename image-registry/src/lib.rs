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

// Modules beyond the pure inspector build only with the `service` feature
// (each says so at its top), so the fuzzer builds without RocksDB.
//
// Handlers return ready-made error responses through `Result`, as in the
// object store; boxing them would only add allocations on error paths.
#![allow(clippy::result_large_err)]

pub(crate) mod api;
pub mod cache;
pub mod chunks;
pub mod config;
pub mod convert;
pub(crate) mod db;
pub(crate) mod image;
pub(crate) mod import;
pub mod inspect;
pub(crate) mod members;
pub mod process;
pub(crate) mod schema;
pub mod service;
pub mod store;
pub mod verify;
pub(crate) mod web_download;
