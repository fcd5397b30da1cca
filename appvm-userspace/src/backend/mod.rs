//! The backend host: configuration, kernel programs, the sync service.

pub mod config;
