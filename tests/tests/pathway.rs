//! The external pathway with the real servers (Nginx, dnsmasq, a DHCP
//! client): the lab test behind the second table of `cargo xtask demo`.

use appvm_lab::{
    pathway::{Pathway, format_checks},
    sys::{require_privileges, which},
};

fn require_servers() {
    require_privileges();
    for tool in ["nginx", "dnsmasq", "busybox", "curl"] {
        assert!(
            which(tool).is_some(),
            "`{tool}` not installed (cargo xtask setup installs it)"
        );
    }
}

#[test]
fn surveys_only_from_the_internet_everything_from_the_secure_network() {
    require_servers();
    let mut p = Pathway::start().expect("pathway");
    let checks = p.checks().expect("checks");
    let table = format_checks(&checks);
    eprintln!("{table}");
    assert!(
        checks.iter().all(appvm_lab::pathway::Check::ok),
        "pathway differs:\n{table}\n{}",
        p.logs()
    );
}

#[test]
fn a_rendered_site_nginx_rejects_is_not_installed() {
    require_servers();
    let p = Pathway::start().expect("pathway");
    let site = p.dir.join("nginx/sites/appvm.conf");
    let before = std::fs::read_to_string(&site).expect("site");
    // Point the external certificate at a file that does not exist.
    let text = std::fs::read_to_string(&p.config).expect("config");
    std::fs::write(
        &p.config,
        text.replace("external/surveys.crt", "external/missing.crt"),
    )
    .expect("write");
    let out = p
        .lab
        .backend
        .ns
        .command(appvm_lab::sys::appvm_bin())
        .args(["render", "nginx", "--write"])
        .env("APPVM_CONFIG", &p.config)
        .output()
        .expect("appvm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nginx rejected the rendered config") && stderr.contains("missing.crt"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&site).expect("site"),
        before,
        "previous site kept"
    );
    let (code, _) = p
        .get(
            &p.lab.public,
            appvm_lab::lab::BACKEND_PUBLIC_IP,
            "/surveys/",
        )
        .expect("get");
    assert_eq!(code, 200, "still serving the previous config");
}
