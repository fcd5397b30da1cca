//! `appvm cert issue`: the VM controller's self-signed certificate.

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use time::{Duration, OffsetDateTime};

use super::{CertError, fingerprint};
use crate::table::{atomic::write_atomic, entry::is_dns_label};

/// Default validity: the CA/Browser Forum's 397-day maximum.
pub const DEFAULT_DAYS: u32 = 397;

/// What to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// File stem and common name (the table entry's name).
    pub name: String,
    /// DNS names in the SAN (the VM's DNS name at least).
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub days: u32,
    pub out: PathBuf,
    /// Replace existing files.
    pub force: bool,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
    pub not_after: OffsetDateTime,
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> CertError + '_ {
    move |e| CertError::Io {
        path: p.display().to_string(),
        why: e.to_string(),
    }
}

fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_dns_label)
}

/// Generates an ECDSA P-256 key and a self-signed certificate; writes
/// `<out>/<name>.crt` and `<out>/<name>.key` (mode 0600).
pub fn issue(req: &IssueRequest) -> Result<Issued, CertError> {
    if !is_dns_label(&req.name) {
        return Err(CertError::Invalid {
            field: "name",
            value: req.name.clone(),
            why: "not a DNS label",
        });
    }
    let mut dns = req.dns.clone();
    if dns.is_empty() {
        dns.push(req.name.clone());
    }
    if let Some(bad) = dns.iter().find(|d| !valid_dns_name(d)) {
        return Err(CertError::Invalid {
            field: "dns",
            value: bad.clone(),
            why: "not a DNS name",
        });
    }
    if req.days == 0 || req.days > 3650 {
        return Err(CertError::Invalid {
            field: "days",
            value: req.days.to_string(),
            why: "not 1-3650",
        });
    }
    let cert_path = req.out.join(format!("{}.crt", req.name));
    let key_path = req.out.join(format!("{}.key", req.name));
    if !req.force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(CertError::Exists {
                    path: p.display().to_string(),
                });
            }
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, dns[0].clone());
    for d in &dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(d.clone().try_into().map_err(|_e| {
                CertError::Invalid {
                    field: "dns",
                    value: d.clone(),
                    why: "not a DNS name",
                }
            })?));
    }
    params
        .subject_alt_names
        .extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let now = OffsetDateTime::now_utc();
    // A little back-dating absorbs clock skew between VM and backend.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(req.days));
    let cert = params
        .self_signed(&key)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    fs::create_dir_all(&req.out).map_err(io(&req.out))?;
    write_key(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
    write_atomic(&cert_path, cert.pem().as_bytes()).map_err(io(&cert_path))?;
    Ok(Issued {
        fingerprint: fingerprint(cert.der()),
        cert: cert_path,
        key: key_path,
        not_after: params.not_after,
    })
}

/// Writes a private key: created 0600 from the start (never readable by
/// others, even for a moment), then renamed into place.
fn write_key(path: &Path, pem: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("key.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        drop(fs::remove_file(&tmp));
    }
    result
}
