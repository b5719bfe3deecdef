//! Compute: Nova-style API, scheduler, libvirt/QEMU drivers (issue 7).
//!
//! So far: [`scheduler`], the pure placement core.

pub mod scheduler;
