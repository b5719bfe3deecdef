//! Compute: Nova-style API, scheduler, libvirt/QEMU drivers (issue 7).
//!
//! So far: [`scheduler`], the pure placement core; [`overlay`], instance
//! disks on cached bases; and [`boot_disk`], the generated guest the tests
//! boot.

pub mod boot_disk;
pub mod driver;
pub mod overlay;
pub mod scheduler;
