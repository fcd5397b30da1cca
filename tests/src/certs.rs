//! Certificates crafted for the refusal tests (expired, not yet valid,
//! other names and key types, CA-signed).

use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair};
use time::{Duration, OffsetDateTime};

/// A certificate crafted with rcgen: `days` may be negative (expired).
pub fn craft(
    dir: &Path,
    file: &str,
    dns: &str,
    alg: &'static rcgen::SignatureAlgorithm,
    from_days: i64,
    to_days: i64,
    signer: Option<(&CertificateParams, &KeyPair)>,
) -> String {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut p = CertificateParams::new(vec![dns.to_owned()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, dns);
    let now = OffsetDateTime::now_utc();
    p.not_before = now + Duration::days(from_days);
    p.not_after = now + Duration::days(to_days);
    let cert = match signer {
        Some((ca, ca_key)) => {
            let issuer = rcgen::Issuer::from_params(ca, ca_key);
            p.signed_by(&key, &issuer).expect("sign")
        }
        None => p.self_signed(&key).expect("self-sign"),
    };
    let path = dir.join(file);
    std::fs::write(&path, cert.pem()).expect("write");
    path.display().to_string()
}
