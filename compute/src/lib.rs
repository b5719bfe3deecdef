//! Compute: a Nova-style API that schedules instances on compute hosts,
//! and the agent that runs them there, from templates cached on the host
//! and cloned as qcow2 copy-on-write overlays.
//!
//! The pure cores: [`scheduler`] (filters and weighers), [`instance`]
//! (Nova's states, allowed actions, reconciliation), [`keypairs`] (SSH
//! keys: names, parsing, fingerprints), [`network`] (subnets, addresses,
//! MACs), [`security_groups`] (rules, what each guest lets in). The shells: [`api`]
//! (HTTP) over [`conductor`] (build, retry, actions, heartbeats) and
//! [`db`] and [`fixed_ips`]; [`agent`] (one per host) over [`driver`] (libvirt or QEMU),
//! [`host_network`] (bridges, taps, DHCP), [`host_firewall`] (nftables), [`metadata_service`],
//! [`serial_console`],
//! [`template_cache`] and [`overlay`]. [`boot_disk`] builds the tiny guest
//! the tests boot.

// Handlers return ready-made error responses through `Result`, as in the
// other services.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod api;
pub mod boot_disk;
pub mod conductor;
pub mod config;
pub mod config_drive;
pub mod db;
pub mod driver;
pub mod fixed_ips;
pub mod host_firewall;
pub mod host_network;
pub mod instance;
pub mod keypairs;
pub mod metadata;
pub mod metadata_service;
pub mod network;
pub mod overlay;
pub mod rest;
pub mod scheduler;
pub mod security_groups;
pub mod serial_console;
pub mod template_cache;
