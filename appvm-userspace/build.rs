//! Compiles `appvm-ebpf` for `bpfel-unknown-none` and leaves the object in
//! `OUT_DIR` for `include_bytes_aligned!`.
//!
//! Two toolchains work: the upstream one (rustup nightly with rust-src,
//! `-Z build-std=core`) and Debian's (`/usr/bin/rustc` from `rustc-web` with
//! the precompiled `core` from `libstd-rust-web-dev-bpf`). `cargo xtask setup`
//! installs whichever this machine can get, plus `bpf-linker`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const SETUP_HINT: &str = "run `cargo xtask setup` (as root) to install the eBPF toolchain";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";

enum Toolchain {
    Upstream,
    Debian,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    for watched in [
        "appvm-ebpf/src",
        "appvm-ebpf/Cargo.toml",
        "appvm-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=APPVM_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=APPVM_EBPF_DEBUG_LOG");
    // Per-packet aya-log logging only when asked for (never by default).
    let debug_log = env::var("APPVM_EBPF_DEBUG_LOG").is_ok_and(|v| v == "1");
    println!(
        "cargo:rustc-env=APPVM_EBPF_DEBUG_LOG_BUILT={}",
        u8::from(debug_log)
    );
    println!("cargo:rerun-if-env-changed=PATH");

    let linker = find_bpf_linker().unwrap_or_else(|| fail("bpf-linker not found"));
    let toolchain = pick_toolchain().unwrap_or_else(|| {
        fail("no Rust compiler with `core` for bpfel-unknown-none (neither rustup nightly with rust-src nor Debian's rustc-web + libstd-rust-web-dev-bpf)")
    });
    let target_dir = root
        .join("target")
        .join(if debug_log { "ebpf-debug-log" } else { "ebpf" });
    let mut cmd = cargo_for(&toolchain);
    cmd.current_dir(root.join("appvm-ebpf"))
        .args(["build", "--release", "--target", "bpfel-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir);
    if matches!(toolchain, Toolchain::Upstream) {
        cmd.args(["-Z", "build-std=core"]);
    }
    if debug_log {
        cmd.args(["--features", "debug-log"]);
    }
    // Clean the outer build's environment: it describes a host build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUSTFLAGS").env_remove("RUSTUP_TOOLCHAIN");
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        ["-C", "debuginfo=2", "-C", "link-arg=--btf"].join("\x1f"),
    );
    if let Some(dir) = linker.parent() {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(env::split_paths(&path));
        cmd.env("PATH", env::join_paths(paths).expect("valid PATH"));
    }
    if matches!(toolchain, Toolchain::Debian) {
        cmd.env("RUSTC", DEBIAN_RUSTC).env("RUSTC_BOOTSTRAP", "1");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo for appvm-ebpf: {e}")));
    if !status.success() {
        fail(&format!("building appvm-ebpf failed ({status}): {cmd:?}"));
    }
    let object = target_dir.join("bpfel-unknown-none/release/appvm-ebpf");
    std::fs::copy(&object, out_dir.join("appvm-ebpf"))
        .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", object.display())));
}

fn fail(what: &str) -> ! {
    panic!("appvm-ebpf: {what}; {SETUP_HINT}");
}

fn pick_toolchain() -> Option<Toolchain> {
    match env::var("APPVM_EBPF_TOOLCHAIN").as_deref() {
        Ok("upstream") => return Some(Toolchain::Upstream),
        Ok("debian") => return Some(Toolchain::Debian),
        _ => {}
    }
    if nightly_has_rust_src() {
        Some(Toolchain::Upstream)
    } else if Path::new(DEBIAN_RUSTC).exists() && Path::new(DEBIAN_BPF_CORE).exists() {
        Some(Toolchain::Debian)
    } else {
        None
    }
}

fn cargo_for(toolchain: &Toolchain) -> Command {
    match toolchain {
        Toolchain::Upstream => {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", "nightly", "cargo"]);
            cmd
        }
        Toolchain::Debian => Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    }
}

fn nightly_has_rust_src() -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    out.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib/src/rust/library/core")
            .exists()
}

fn find_bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("bpf-linker"))
        .find(|p| p.is_file())
}
