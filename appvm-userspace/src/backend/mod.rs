//! The backend host: configuration, kernel programs, the sync service.

pub mod attach;
pub mod config;
pub mod loaded;
pub mod maps;
pub mod metrics;
pub mod policy;
pub mod service;
pub mod status;
pub mod sync;
pub mod watch;
