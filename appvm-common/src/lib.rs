//! Types shared by the kernel programs and userspace.
//!
//! Everything stored in a map is `#[repr(C)]` with explicit padding and a
//! compile-time size check, so the two sides can never disagree on a layout.
#![no_std]

pub mod backend;
pub mod backend_reason;
pub mod bench;
pub mod counter;
pub mod event;
pub mod pins;
pub mod policy;
pub mod reason;

pub use backend_reason::BackendReason;
pub use counter::Counter;
pub use policy::{EgressRule, VmPolicy};
pub use reason::VmReason;
