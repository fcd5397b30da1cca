//! The namespace lab: hosts as network namespaces, frames built byte by byte,
//! probes that run inside a namespace. Used by the integration tests and by
//! `cargo xtask demo` (the `appvm-lab` binary).
//!
//! Everything a lab creates (namespaces, veths, bridge, pins) lives inside
//! namespaces and a pin root of its own, and is removed on drop, also when a
//! test panics.

mod attacks;
pub mod bench_report;
pub mod certs;
pub mod control_bench;
pub mod cpio;
pub mod daemon;
pub mod enforced;
pub mod frames;
pub mod fuzz;
pub mod guest;
pub mod guest_lab;
pub mod initramfs;
pub mod lab;
pub mod load;
pub mod micro;
pub mod model;
pub mod model_backend;
pub mod net_bench;
pub mod netns;
pub mod pathway;
pub mod probe;
pub mod scenario;
pub mod service;
pub mod status;
pub mod summary;
pub mod sys;

pub use lab::Lab;
pub use netns::Netns;
