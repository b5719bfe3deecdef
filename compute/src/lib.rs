//! Compute: Nova-style API, scheduler, libvirt/QEMU drivers (issue 7).
