//! The CLI's surface: --version, --help with an example everywhere,
//! completions, the man page, and the systemd units in the repository.

use std::process::Command;

use appvm_lab::sys::appvm_bin;

fn appvm(args: &[&str]) -> std::process::Output {
    Command::new(appvm_bin())
        .args(args)
        .output()
        .expect("appvm")
}

#[test]
fn version_help_completions_and_man() {
    let out = appvm(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("appvm {}", env!("CARGO_PKG_VERSION"))
    );
    let commands: &[&[&str]] = &[
        &["vm", "attach"],
        &["vm", "detach"],
        &["vm", "status"],
        &["table", "add"],
        &["table", "remove"],
        &["table", "list"],
        &["table", "show"],
        &["backend", "run"],
        &["backend", "detach"],
        &["backend", "status"],
        &["cert", "issue"],
        &["cert", "register"],
        &["render", "nginx"],
        &["render", "dnsmasq"],
        &["events"],
        &["stats"],
        &["doctor"],
        &["completions"],
        &["man"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = appvm(&args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains("Example: appvm"),
            "{cmd:?} --help has no example:\n{help}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = appvm(&["completions", shell]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("appvm"),
            "{shell}"
        );
    }
    let man = String::from_utf8_lossy(&appvm(&["man"]).stdout).into_owned();
    assert!(
        man.contains(".TH appvm") && man.contains("backend"),
        "{man}"
    );
}

#[test]
fn systemd_units_verify() {
    assert!(
        appvm_lab::sys::which("systemd-analyze").is_some(),
        "systemd-analyze not installed"
    );
    let dir = std::env::temp_dir().join(format!("appvm-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(&src).expect("dist/systemd") {
        let path = entry.expect("entry").path();
        // Point ExecStart at the binary under test: verify checks it exists.
        let text = std::fs::read_to_string(&path)
            .expect("unit")
            .replace("/usr/bin/appvm", &appvm_bin().display().to_string());
        let copy = dir.join(path.file_name().expect("name"));
        std::fs::write(&copy, text).expect("write");
        units.push(copy);
    }
    assert_eq!(units.len(), 2, "both units are in dist/systemd");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only complaints about our own units count (the host's may have others).
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("appvm")).collect();
    drop(std::fs::remove_dir_all(&dir));
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}
