//! The partition ring: where every account, container and object lives.
//!
//! The ring is Nubo's version of OpenStack Swift's ring (see
//! `shared/reference/ring.md`): a name is hashed with a cluster secret into one
//! of `2^part_power` partitions, and each partition is assigned to `replicas`
//! devices spread as widely as possible across regions, zones and hosts.
//!
//! - [`placement`]: name -> hash -> partition (pure, keyed blake3).
//! - [`ring`]: the loaded, immutable ring; primaries and handoffs of a partition.
//! - [`builder`]: the operator's view: devices, weights, rebalance with minimal movement.
//! - [`ring_file`] / [`builder_file`]: versioned, checksummed binary files.
//! - [`watch`]: lets a long-running service swap in a changed ring file.
//! - [`cli`]: `nubo ring ...`, the operator command line.

pub mod atomic_file;
pub mod builder;
pub mod builder_file;
pub mod cli;
mod codec;
pub mod device;
pub mod error;
mod permute;
pub mod placement;
pub mod ring;
pub mod ring_file;
pub mod watch;

pub use builder::{RebalanceOptions, RebalanceReport, RingBuilder};
pub use device::{Device, DeviceId};
pub use error::{Error, Result};
pub use placement::{HashSecret, NameHash};
pub use ring::{Handoffs, Ring};
pub use watch::LiveRing;
