//! appvm's userspace: loading, pinning and inspecting the kernel programs.
//!
//! The `appvm` binary is a thin clap front end over this library; the
//! integration tests and the lab use the same functions.

pub mod backend;
pub mod batch;
pub mod bpffs;
pub mod cert;
pub mod counters;
pub mod debug_log;
pub mod doctor;
pub mod events;
pub mod link_info;
pub mod netdev;
pub mod object;
pub mod pinning;
pub mod policy_slots;
pub mod render;
pub mod stats;
mod sys_bpf;
pub mod table;
pub mod toml_error;
pub mod vm;
