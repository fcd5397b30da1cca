//! Reading a certificate: what `register` checks and `doctor` reports.

use std::net::IpAddr;

use x509_parser::{
    extensions::GeneralName,
    oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY},
    pem::parse_x509_pem,
};

use super::fingerprint;

/// The facts about a certificate appvm decides by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Issuer equals subject and the signature verifies with its own key.
    pub self_signed: bool,
    pub ecdsa_p256: bool,
    pub fingerprint: String,
    /// The PEM's DER, for storing exactly what was checked.
    pub der: Vec<u8>,
}

/// Parses one PEM certificate; the error is one line.
pub fn inspect(pem: &[u8]) -> Result<CertInfo, String> {
    let (rest, pem) = parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate ({e})"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("PEM block is '{}', not a CERTIFICATE", pem.label));
    }
    if rest.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err("more than one PEM block (give only the VM's certificate)".into());
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let spki = cert.public_key();
    let ecdsa_p256 = spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid == OID_EC_P256);
    let self_signed = cert.issuer() == cert.subject() && cert.verify_signature(None).is_ok();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        dns_names,
        ips,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        self_signed,
        ecdsa_p256,
        fingerprint: fingerprint(pem.contents.as_slice()),
        der: pem.contents.clone(),
    })
}
