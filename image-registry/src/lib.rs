//! Image registry: a Glance-style image API over the object store.
//!
//! [`inspect`] is the pure core: format detection, virtual size and the
//! safety checks every uploaded image must pass before qemu-img or a
//! hypervisor sees it.

pub mod cache;
pub mod db;
pub mod image;
pub mod inspect;
pub mod store;
