//! `appvm cert issue | register`: what the VM controller writes, and every
//! way the backend refuses a certificate (exit 2, one line, nothing stored).

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use appvm_lab::{
    certs::craft,
    sys::{appvm_bin, ok, rejected},
};
use rcgen::{
    CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "appvm-cert-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("tmp");
        std::fs::write(
            dir.join("backend.toml"),
            format!(
                "secure_network = \"192.168.128.0/24\"\nvm_pool = \"192.168.128.16/28\"\nbackend_ip = \"192.168.128.1\"\ntable = \"{d}/table.toml\"\nhosts_file = \"{d}/hosts\"\ntrust_dir = \"{d}/trust\"\n",
                d = dir.display()
            ),
        )
        .expect("config");
        let d = Self(dir);
        ok(&d.appvm(&[
            "table",
            "add",
            "--name",
            "redcap",
            "--mac",
            "02:00:00:00:00:20",
            "--vm-config",
            "c",
        ]));
        d
    }

    fn appvm(&self, args: &[&str]) -> Output {
        Command::new(appvm_bin())
            .args(args)
            .env("APPVM_CONFIG", self.0.join("backend.toml"))
            .output()
            .expect("appvm")
    }

    fn path(&self, p: &str) -> String {
        self.0.join(p).display().to_string()
    }

    fn trust(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(self.0.join("trust"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| (e.path(), std::fs::read(e.path()).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn openssl(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(file)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn issue_writes_a_p256_self_signed_certificate_and_a_private_key() {
    let d = Dir::new();
    let out = ok(&d.appvm(&[
        "cert",
        "issue",
        "--name",
        "redcap",
        "--dns",
        "redcap.app.internal",
        "--ip",
        "192.168.128.20",
        "--out",
        &d.path("vm"),
    ]));
    let crt = d.0.join("vm/redcap.crt");
    let key = d.0.join("vm/redcap.key");
    assert_eq!(
        std::fs::metadata(&key).expect("key").permissions().mode() & 0o777,
        0o600
    );
    let text = openssl(&["x509", "-noout", "-text"], &crt);
    assert!(
        text.contains("DNS:redcap.app.internal") && text.contains("IP Address:192.168.128.20"),
        "{text}"
    );
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    let fp = openssl(&["x509", "-noout", "-fingerprint", "-sha256"], &crt);
    let fp = fp.trim().rsplit('=').next().expect("fingerprint");
    assert!(
        out.contains(fp),
        "printed fingerprint {out} differs from openssl's {fp}"
    );
    // 397 days by default.
    let end = openssl(&["x509", "-noout", "-enddate"], &crt);
    let days = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(396 * 86400).to_string(),
            "-in",
        ])
        .arg(&crt)
        .status()
        .expect("openssl");
    assert!(days.success(), "expires before 396 days: {end}");
    // Never silently overwritten.
    let before = (
        std::fs::read(&crt).expect("crt"),
        std::fs::read(&key).expect("key"),
    );
    rejected(
        &d.appvm(&["cert", "issue", "--name", "redcap", "--out", &d.path("vm")]),
        "exists; not overwriting",
    );
    assert_eq!(
        (
            std::fs::read(&crt).expect("crt"),
            std::fs::read(&key).expect("key")
        ),
        before
    );
    ok(&d.appvm(&[
        "cert",
        "issue",
        "--name",
        "redcap",
        "--dns",
        "redcap.app.internal",
        "--out",
        &d.path("vm"),
        "--force",
    ]));
    assert_ne!(std::fs::read(&crt).expect("crt"), before.0);
    rejected(
        &d.appvm(&[
            "cert",
            "issue",
            "--name",
            "Bad_Name",
            "--out",
            &d.path("vm"),
        ]),
        "invalid name",
    );
    rejected(
        &d.appvm(&[
            "cert",
            "issue",
            "--name",
            "x",
            "--dns",
            "bad..name",
            "--out",
            &d.path("vm"),
        ]),
        "invalid dns",
    );
    rejected(
        &d.appvm(&[
            "cert",
            "issue",
            "--name",
            "x",
            "--ip",
            "300.1.1.1",
            "--out",
            &d.path("vm"),
        ]),
        "invalid ip",
    );
    rejected(
        &d.appvm(&[
            "cert",
            "issue",
            "--name",
            "x",
            "--days",
            "0",
            "--out",
            &d.path("vm"),
        ]),
        "invalid days",
    );
}

#[test]
fn register_refuses_every_bad_certificate_and_stores_nothing() {
    let d = Dir::new();
    let good = |days| {
        craft(
            &d.0,
            "good.pem",
            "redcap.app.internal",
            &PKCS_ECDSA_P256_SHA256,
            -1,
            days,
            None,
        )
    };
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "some CA");
    let cases = [
        (
            craft(
                &d.0,
                "expired.pem",
                "redcap.app.internal",
                &PKCS_ECDSA_P256_SHA256,
                -30,
                -1,
                None,
            ),
            "expired",
        ),
        (
            craft(
                &d.0,
                "future.pem",
                "redcap.app.internal",
                &PKCS_ECDSA_P256_SHA256,
                2,
                30,
                None,
            ),
            "not valid yet",
        ),
        (
            craft(
                &d.0,
                "other.pem",
                "other.app.internal",
                &PKCS_ECDSA_P256_SHA256,
                -1,
                30,
                None,
            ),
            "does not name redcap.app.internal",
        ),
        (
            craft(
                &d.0,
                "p384.pem",
                "redcap.app.internal",
                &PKCS_ECDSA_P384_SHA384,
                -1,
                30,
                None,
            ),
            "not ECDSA P-256",
        ),
        (
            craft(
                &d.0,
                "leaf.pem",
                "redcap.app.internal",
                &PKCS_ECDSA_P256_SHA256,
                -1,
                30,
                Some((&ca_params, &ca_key)),
            ),
            "not self-signed",
        ),
    ];
    for (path, expect) in &cases {
        rejected(
            &d.appvm(&["cert", "register", "--name", "redcap", "--cert", path]),
            expect,
        );
        assert!(d.trust().is_empty(), "{expect}: something was stored");
    }
    let garbage = d.0.join("garbage.pem");
    std::fs::write(&garbage, "hello").expect("write");
    rejected(
        &d.appvm(&[
            "cert",
            "register",
            "--name",
            "redcap",
            "--cert",
            &garbage.display().to_string(),
        ]),
        "not a PEM certificate",
    );
    let two = d.0.join("two.pem");
    let g = good(30);
    std::fs::write(
        &two,
        [std::fs::read(&g).expect("g"), std::fs::read(&g).expect("g")].concat(),
    )
    .expect("write");
    rejected(
        &d.appvm(&[
            "cert",
            "register",
            "--name",
            "redcap",
            "--cert",
            &two.display().to_string(),
        ]),
        "more than one PEM block",
    );
    let huge = d.0.join("huge.pem");
    std::fs::write(&huge, vec![b'A'; 100_000]).expect("write");
    rejected(
        &d.appvm(&[
            "cert",
            "register",
            "--name",
            "redcap",
            "--cert",
            &huge.display().to_string(),
        ]),
        "larger than",
    );
    rejected(
        &d.appvm(&[
            "cert",
            "register",
            "--name",
            "redcap",
            "--cert",
            &d.path("missing.pem"),
        ]),
        "No such file",
    );
    rejected(
        &d.appvm(&["cert", "register", "--name", "ghost", "--cert", &g]),
        "no such VM in the table",
    );
    assert!(d.trust().is_empty());
    // A good one is stored; registering another replaces it (rotation).
    ok(&d.appvm(&["cert", "register", "--name", "redcap", "--cert", &g]));
    let first = d.trust();
    assert_eq!(first.len(), 1);
    let second = craft(
        &d.0,
        "second.pem",
        "redcap.app.internal",
        &PKCS_ECDSA_P256_SHA256,
        -1,
        60,
        None,
    );
    ok(&d.appvm(&["cert", "register", "--name", "redcap", "--cert", &second]));
    let now = d.trust();
    assert_eq!(now.len(), 1);
    assert_ne!(
        now[0].1, first[0].1,
        "rotation replaces the stored certificate"
    );
    assert_eq!(now[0].1, std::fs::read(&second).expect("second"));
    // A bad one after a good one leaves the good one in place.
    rejected(
        &d.appvm(&[
            "cert",
            "register",
            "--name",
            "redcap",
            "--cert",
            &cases[0].0,
        ]),
        "expired",
    );
    assert_eq!(d.trust(), now);
}
