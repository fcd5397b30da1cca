//! Certificates of the external pathway (rcgen).
//!
//! The VM controller issues the VM's self-signed certificate (`issue`); the
//! backend checks and stores it as the only trust anchor Nginx uses for
//! that VM (`register`).

pub mod inspect;
pub mod issue;
pub mod register;

/// Certificates, keys and their checks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    #[error("invalid {field} '{value}': {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{path} exists; not overwriting it (pass --force to replace)")]
    Exists { path: String },
    #[error("cannot generate the certificate: {0}")]
    Generate(String),
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("{path}: {why}")]
    Rejected { path: String, why: String },
}

/// `AA:BB:...` SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
