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

#[test]
fn doctor_passes_on_the_running_pathway_and_names_what_drifted() {
    require_servers();
    let mut p = Pathway::start().expect("pathway");
    let doctor = |p: &Pathway| {
        p.lab
            .backend
            .ns
            .command(appvm_lab::sys::appvm_bin())
            .args(["doctor", "--json"])
            .env("APPVM_CONFIG", &p.config)
            .env("APPVM_PIN_ROOT", p.lab.pin_root())
            .output()
            .expect("doctor")
    };
    let out = doctor(&p);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(out.status.success(), "{checks:#}");
    let names: Vec<&str> = checks
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    for expected in [
        "kernel VM table equals the table",
        "nginx site current",
        "dnsmasq addn-hosts current",
        "guard on sec0 attached",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not checked: {names:?}"
        );
    }
    // The service stops; the table changes behind its back.
    let service = p.service.take().expect("service");
    assert!(service.terminate().is_some_and(|s| s.success()));
    let out = std::process::Command::new(appvm_lab::sys::appvm_bin())
        .args([
            "table",
            "add",
            "--name",
            "late",
            "--mac",
            "02:00:00:00:03:01",
            "--vm-config",
            "c",
        ])
        .env("APPVM_CONFIG", &p.config)
        .output()
        .expect("table add");
    assert!(out.status.success());
    let out = doctor(&p);
    assert_eq!(out.status.code(), Some(1));
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let failed: Vec<&str> = checks
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .filter_map(|c| c["check"].as_str())
        .collect();
    assert!(
        failed.contains(&"kernel VM table equals the table")
            && failed.contains(&"dnsmasq addn-hosts current"),
        "{failed:?}"
    );
}
