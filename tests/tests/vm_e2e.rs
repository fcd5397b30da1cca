//! The VM guard end to end: real namespaces, the `appvm` binary, real TCP
//! and raw frames. Every lab removes its namespaces and pins on drop.

use std::time::Duration;

use appvm_lab::{
    Lab, frames,
    lab::{APP_PORT, SEC_IF},
    probe::{Sniffer, send_frames, tcp_connects},
    scenario::{self, format_table},
    status::counter,
    sys::{ok, require_privileges},
};

fn lab() -> Lab {
    require_privileges();
    Lab::new().expect("build lab")
}

fn attach_args(lab: &Lab) -> Vec<String> {
    ["vm", "attach", "--iface", SEC_IF, "--backend-ip"]
        .iter()
        .map(ToString::to_string)
        .chain([
            lab.backend.ip.to_string(),
            "--app-port".into(),
            APP_PORT.to_string(),
        ])
        .collect()
}

fn appvm(lab: &Lab, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.appvm(&lab.vm, &args)
}

fn status_json(lab: &Lab) -> serde_json::Value {
    let out = lab.appvm(&lab.vm, &["vm", "status", "--iface", SEC_IF, "--json"]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    v[0].clone()
}

#[test]
fn every_flow_as_expected_and_status_counters_agree() {
    let lab = lab();
    let run = scenario::run_lab(&lab).expect("scenario");
    let table = format_table(&run.rows);
    assert!(
        run.rows.iter().all(scenario::FlowRow::ok),
        "flows differ:\n{table}"
    );
    let status = &run.status_json[0];
    assert_eq!(status["attached"], true, "{status}");
    assert_eq!(status["policy"]["backend_ip"], lab.backend.ip.to_string());
    // Counters moved only by the raw frames must equal what was sent; the
    // others at least what the flows counted.
    for row in run.rows.iter().filter(|r| r.counter != "-") {
        let total: u64 = run
            .rows
            .iter()
            .filter(|r| r.counter == row.counter)
            .map(|r| r.counted)
            .sum();
        // The backend's reasons are in `appvm backend status`.
        let source = if row.counter.starts_with("pub_") || row.counter.starts_with("sec_") {
            &run.backend_status_json
        } else {
            status
        };
        let shown = counter(source, row.counter);
        if row.exact
            && run
                .rows
                .iter()
                .filter(|r| r.counter == row.counter)
                .all(|r| r.exact)
        {
            assert_eq!(
                shown, total,
                "{}: status {shown}, flows {total}\n{table}",
                row.counter
            );
        } else {
            assert!(
                shown >= total,
                "{}: status {shown} < flows {total}\n{table}",
                row.counter
            );
        }
    }
    // Detached: nothing left under the pin root.
    let left: Vec<_> = std::fs::read_dir(lab.pin_root())
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pins left after detach: {left:?}");
}

#[test]
fn reattach_updates_policy_in_place_with_no_gap() {
    let lab = lab();
    let out = appvm(&lab, &attach_args(&lab));
    ok(&out);
    let before = status_json(&lab);
    lab.pin_neighbour(&lab.rogue, &lab.vm).expect("neigh");

    // The rogue floods SYNs to the app port while the policy is replaced
    // (new port list, same backend); the VM must not see one of them.
    let sniffer = Sniffer::start(&lab.vm.ns, SEC_IF, Duration::from_secs(10)).expect("sniffer");
    let syn = |i: u16| {
        frames::tcp_syn(
            lab.rogue.mac,
            lab.vm.mac,
            lab.rogue.ip,
            lab.vm.ip,
            30000 + i,
            APP_PORT,
        )
    };
    let flood: Vec<Vec<u8>> = (0..2000).map(syn).collect();
    let rogue = &lab.rogue.ns;
    let mut args = attach_args(&lab);
    args.extend(["--app-port".into(), "8443".into()]);
    // Bounded: 2,000 frames in 20 bursts, one policy update after each.
    for chunk in flood.chunks(100) {
        send_frames(rogue, SEC_IF, chunk.to_vec()).expect("send");
        let out = appvm(&lab, &args);
        ok(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("updated policy"));
    }
    std::thread::sleep(Duration::from_millis(100));
    let seen = sniffer.finish();
    let leaked = seen
        .iter()
        .filter(|f| flood.iter().any(|s| f.starts_with(s)))
        .count();
    assert_eq!(
        leaked, 0,
        "rogue frames reached the VM during policy updates"
    );

    let after = status_json(&lab);
    assert_eq!(
        after["ingress_link"], before["ingress_link"],
        "programs were not replaced"
    );
    assert_eq!(after["egress_link"], before["egress_link"]);
    assert_eq!(after["policy"]["app_ports"], serde_json::json!([443, 8443]));
    // Every flood frame counted, once.
    let dropped =
        counter(&after, "in_drop_foreign_source") - counter(&before, "in_drop_foreign_source");
    assert_eq!(dropped, 2000, "flood frames counted");
    // The backend still gets in on both ports.
    let _l = appvm_lab::probe::Listener::start(&lab.vm.ns, 8443, Duration::from_secs(20))
        .expect("listen");
    assert!(tcp_connects(&lab.backend.ns, lab.vm.ip, 8443, Duration::from_secs(3)).expect("probe"));
}

#[test]
fn bad_input_is_one_line_exit_2_and_changes_nothing() {
    let lab = lab();
    let bad: Vec<Vec<&str>> = vec![
        vec![
            "--iface",
            "nosuch0",
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "443",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.300",
            "--app-port",
            "443",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "255.255.255.255",
            "--app-port",
            "443",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "0",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "65536",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "-1",
        ],
        vec!["--iface", SEC_IF, "--backend-ip", "192.168.128.1"],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "443",
            "--backend-mac",
            "01:00:5e:00:00:01",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "443",
            "--backend-mac",
            "zz",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "443",
            "--allow-egress",
            "10.0.0.1",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "443",
            "--dhcp-server",
            "0.0.0.0",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-port",
            "443",
            "--config",
            "/nonexistent.toml",
        ],
        vec![
            "--iface",
            SEC_IF,
            "--backend-ip",
            "192.168.128.1",
            "--app-prot",
            "443",
        ],
    ];
    let check = |args: &[&str]| {
        let mut full = vec!["vm", "attach"];
        full.extend_from_slice(args);
        let out = lab.appvm(&lab.vm, &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
    };
    for args in &bad {
        check(args);
    }
    assert!(
        !lab.pin_root().exists()
            || std::fs::read_dir(lab.pin_root())
                .expect("root")
                .next()
                .is_none()
    );

    // With a guard attached, a bad update leaves the policy in force.
    let out = appvm(&lab, &attach_args(&lab));
    assert!(out.status.success());
    let before = status_json(&lab);
    for args in &bad {
        check(args);
    }
    let after = status_json(&lab);
    assert_eq!(before["policy"], after["policy"]);
    assert_eq!(before["policy_slot"], after["policy_slot"]);
}

#[test]
fn config_file_with_flags_overriding() {
    let lab = lab();
    let dir = std::env::temp_dir().join(format!("appvm-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let good = dir.join("guard.toml");
    std::fs::write(
        &good,
        format!("iface = \"{SEC_IF}\"\nbackend_ip = \"192.168.128.99\"\napp_ports = [443]\nallow_egress = [\"192.168.128.5:25\"]\n"),
    )
    .expect("write");
    let unknown = dir.join("unknown.toml");
    std::fs::write(
        &unknown,
        "iface = \"sec0\"\nbackend_ip = \"192.168.128.1\"\napp_ports = [443]\nbackend_port = 1\n",
    )
    .expect("write");
    let out = lab.appvm(
        &lab.vm,
        &["vm", "attach", "--config", unknown.to_str().expect("utf8")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("backend_port"));

    let out = lab.appvm(
        &lab.vm,
        &[
            "vm",
            "attach",
            "--config",
            good.to_str().expect("utf8"),
            "--backend-ip",
            &lab.backend.ip.to_string(),
        ],
    );
    ok(&out);
    let status = status_json(&lab);
    assert_eq!(
        status["policy"]["backend_ip"],
        lab.backend.ip.to_string(),
        "flag overrides file"
    );
    assert_eq!(
        status["policy"]["allow_egress"],
        serde_json::json!(["192.168.128.5:25"])
    );
    drop(std::fs::remove_dir_all(&dir));
}

#[test]
fn failed_attach_leaves_nothing_behind() {
    let lab = lab();
    let out = appvm(&lab, &attach_args(&lab));
    assert!(out.status.success());
    // A second guard under another pin root on the same interface: the XDP
    // link is taken, the attach must fail and leave no pins of its own.
    let other_root = lab.pin_root().with_extension("other");
    let mut cmd = lab.vm.ns.command(appvm_lab::sys::appvm_bin());
    cmd.args(attach_args(&lab))
        .env("APPVM_PIN_ROOT", &other_root);
    let out = cmd.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&other_root)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    drop(std::fs::remove_dir_all(&other_root));
    assert!(left.is_empty(), "half-applied attach left {left:?}");
    // The first guard is untouched and still enforcing.
    assert_eq!(status_json(&lab)["attached"], true);
}

#[test]
fn status_reports_a_guard_whose_interface_is_gone() {
    let lab = lab();
    let out = appvm(&lab, &attach_args(&lab));
    assert!(out.status.success());
    lab.vm
        .ns
        .ip(&["link", "del", SEC_IF])
        .expect("delete interface");
    let out = lab.appvm(&lab.vm, &["vm", "status", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["attached"], false, "{v}");
    let out = lab.appvm(&lab.vm, &["vm", "detach", "--iface", SEC_IF]);
    ok(&out);
    let out = lab.appvm(&lab.vm, &["vm", "detach", "--iface", SEC_IF]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "second detach: nothing attached"
    );
}
