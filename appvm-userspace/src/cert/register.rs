//! `appvm cert register`: checks a VM's certificate and makes it the only
//! trust anchor for that VM (replacing the old one atomically: rotation).

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{
    CertError,
    inspect::{CertInfo, inspect},
};
use crate::{
    backend::config::BackendConfig,
    table::{atomic::write_atomic, store},
};

const MAX_CERT_BYTES: u64 = 64 * 1024;

/// Where the registered certificate of VM `name` lives.
pub fn trusted_cert(cfg: &BackendConfig, name: &str) -> PathBuf {
    cfg.trust_dir.join(format!("{name}.crt"))
}

/// Checks `cert` for the table entry `name` and stores it. Returns what was
/// stored. Nothing is written unless every check passes.
pub fn register(
    cfg: &BackendConfig,
    name: &str,
    cert: &Path,
    now: i64,
) -> Result<CertInfo, CertError> {
    let shown = cert.display().to_string();
    let reject = |why: String| CertError::Rejected {
        path: shown.clone(),
        why,
    };
    let table = store::load_valid(cfg).map_err(|e| CertError::Io {
        path: cfg.table.display().to_string(),
        why: e.to_string(),
    })?;
    if table.get(name).is_none() {
        return Err(CertError::Invalid {
            field: "name",
            value: name.to_owned(),
            why: "no such VM in the table",
        });
    }
    let meta = fs::metadata(cert).map_err(|e| reject(e.to_string()))?;
    if meta.len() > MAX_CERT_BYTES {
        return Err(reject(format!("larger than {MAX_CERT_BYTES} bytes")));
    }
    let pem = fs::read(cert).map_err(|e| reject(e.to_string()))?;
    let info = inspect(&pem).map_err(&reject)?;
    if !info.self_signed {
        return Err(reject(
            "not self-signed (the VM controller issues a self-signed certificate)".into(),
        ));
    }
    if !info.ecdsa_p256 {
        return Err(reject("key is not ECDSA P-256".into()));
    }
    let dns = cfg.vm_dns_name(name);
    if !info.dns_names.contains(&dns) {
        return Err(reject(format!(
            "does not name {dns} (SAN DNS names: {})",
            info.dns_names.join(", ")
        )));
    }
    if info.not_after <= now {
        return Err(reject("expired".into()));
    }
    if info.not_before > now {
        return Err(reject("not valid yet".into()));
    }
    let stored = pem_encode(&info.der);
    let target = trusted_cert(cfg, name);
    write_atomic(&target, stored.as_bytes()).map_err(|e| CertError::Io {
        path: target.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(info)
}

/// PEM of DER bytes (64-column base64).
fn pem_encode(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0_u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_encoding_matches_base64() {
        // RFC 4648 test vectors, wrapped.
        let pem = super::pem_encode(b"foobar");
        assert_eq!(
            pem,
            "-----BEGIN CERTIFICATE-----\nZm9vYmFy\n-----END CERTIFICATE-----\n"
        );
        assert!(super::pem_encode(b"fo").contains("\nZm8=\n"));
        assert!(super::pem_encode(b"f").contains("\nZg==\n"));
    }
}
