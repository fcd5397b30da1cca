//! Bad input of every kind against one running system (a guard attached in
//! the VM, the backend service following its table, a certificate trust
//! directory): config files, table files, hosts-file paths, certificates
//! and command lines. Each must exit 2 with one line naming the problem,
//! and leave the state on disk and in the kernel exactly as it was: every
//! file of the backend, every pin, the VM map, the guard's policy, the
//! link ids.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use appvm::link_info::pinned_link_info;
use appvm_lab::{
    Lab,
    certs::craft,
    enforced,
    lab::{Host, SEC_IF},
    service::BackendService,
    sys::{RemoveOnDrop, appvm_bin, ok, require_privileges, tree},
};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};

/// Everything a bad input must not change.
#[derive(Debug, PartialEq, Eq)]
struct State {
    files: BTreeMap<PathBuf, Vec<u8>>,
    pins: Vec<PathBuf>,
    links: Vec<(PathBuf, u32, u32)>,
    vm_map: BTreeSet<(Ipv4Addr, String)>,
    guard_policy: String,
}

fn state(lab: &Lab) -> State {
    // The service's own log grows; lock files appear on first use.
    let files = tree(&lab.files())
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| !p.extension().is_some_and(|e| e == "log" || e == "lock"))
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect();
    let mut pins = tree(lab.pin_root());
    pins.sort();
    let links = pins
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
        })
        .map(|p| {
            let info = pinned_link_info(p).expect("link info");
            (p.clone(), info.id, info.prog_id)
        })
        .collect();
    let out = lab.appvm(&lab.vm, &["vm", "status", "--iface", SEC_IF, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status");
    State {
        files,
        pins,
        links,
        vm_map: enforced::map_pairs(lab.pin_root()).expect("vm map"),
        guard_policy: format!("{} {}", status[0]["policy"], status[0]["policy_slot"]),
    }
}

/// One bad input: the command, where it runs, and what its error names.
struct Case {
    what: &'static str,
    args: Vec<String>,
    config: Option<PathBuf>,
    host: &'static str,
    expect: &'static str,
}

fn case(
    what: &'static str,
    args: &[&str],
    config: Option<PathBuf>,
    host: &'static str,
    expect: &'static str,
) -> Case {
    Case {
        what,
        args: args.iter().map(|&a| a.to_owned()).collect(),
        config,
        host,
        expect,
    }
}

/// The backend config with `line` replacing the line starting with `key`
/// (or added), written to `scratch/name`.
fn config_variant(base: &str, scratch: &Path, name: &str, key: &str, line: &str) -> PathBuf {
    let mut lines: Vec<String> = base
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} ")) && !l.starts_with(&format!("{key}=")))
        .map(str::to_owned)
        .collect();
    // Top-level keys go before any [section].
    let at = lines
        .iter()
        .position(|l| l.starts_with('['))
        .unwrap_or(lines.len());
    if !line.is_empty() {
        lines.insert(at, line.to_owned());
    }
    let path = scratch.join(name);
    fs::write(&path, lines.join("\n") + "\n").expect("write config");
    path
}

/// The backend config with its table and hosts file moved to `dir`.
fn config_in(base: &str, dir: &Path, hosts: &Path) -> PathBuf {
    let text = base
        .lines()
        .map(|l| {
            if l.starts_with("table ") {
                format!("table = \"{}\"", dir.join("table.toml").display())
            } else if l.starts_with("hosts_file ") {
                format!("hosts_file = \"{}\"", hosts.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("backend.toml");
    fs::write(&path, text + "\n").expect("write config");
    path
}

/// A config whose table is `table_text`, in its own scratch directory.
fn table_variant(base: &str, scratch: &Path, name: &str, table_text: &[u8]) -> PathBuf {
    let dir = scratch.join(name);
    fs::create_dir_all(&dir).expect("dir");
    fs::write(dir.join("table.toml"), table_text).expect("table");
    config_in(base, &dir, &dir.join("hosts"))
}

const VALID_ENTRY: &str = "[[vm]]\nname = \"redcap\"\nmac = \"02:00:00:00:00:14\"\nvm_config = \"c\"\nip = \"192.168.128.20\"\nports = [443]\n";

fn entry(name: &str, mac: &str, ip: &str, ports: &str) -> String {
    format!(
        "[[vm]]\nname = \"{name}\"\nmac = \"{mac}\"\nvm_config = \"c\"\nip = \"{ip}\"\nports = {ports}\n"
    )
}

#[test]
fn every_bad_input_is_one_line_exit_2_and_changes_nothing() {
    require_privileges();
    let lab = Lab::new().expect("lab");
    let trust = lab.files().join("trust");
    let config = lab.backend_config(&format!("trust_dir = \"{}\"\n", trust.display()));
    let base = fs::read_to_string(&config).expect("config");
    let out = lab.table_add_vm(&config);
    ok(&out);
    let backend_ip = lab.backend.ip.to_string();
    let out = lab.attach_guard();
    ok(&out);
    let svc = BackendService::start(&lab, &config).expect("service");

    let scratch =
        RemoveOnDrop(std::env::temp_dir().join(format!("appvm-bad-input-{}", std::process::id())));
    let s = scratch.0.as_path();
    fs::create_dir_all(s).expect("scratch");
    let sub = |name: &str, key: &str, line: &str| Some(config_variant(&base, s, name, key, line));
    let table = |name: &str, text: &[u8]| Some(table_variant(&base, s, name, text));
    let list = ["table", "list"];
    let add = [
        "table",
        "add",
        "--name",
        "newvm",
        "--mac",
        "02:00:00:00:03:01",
        "--vm-config",
        "c",
    ];
    let huge_config = s.join("huge.toml");
    fs::write(&huge_config, format!("{base}# {}\n", "x".repeat(70_000))).expect("huge");
    let hosts_dir = s.join("hosts-is-a-dir");
    fs::create_dir_all(hosts_dir.join("hosts")).expect("dir");
    fs::copy(lab.files().join("table.toml"), hosts_dir.join("table.toml")).expect("copy");
    let hosts_under_file = s.join("hosts-under-a-file");
    fs::create_dir_all(&hosts_under_file).expect("dir");
    fs::copy(
        lab.files().join("table.toml"),
        hosts_under_file.join("table.toml"),
    )
    .expect("copy");
    fs::write(hosts_under_file.join("plain"), "x").expect("file");
    let cert =
        |file: &str, dns: &str, alg: &'static rcgen::SignatureAlgorithm, from: i64, to: i64| {
            craft(s, file, dns, alg, from, to, None)
        };
    let vm_dns = "redcap.app.internal";
    let expired = cert("expired.pem", vm_dns, &PKCS_ECDSA_P256_SHA256, -30, -1);
    let p384 = cert("p384.pem", vm_dns, &PKCS_ECDSA_P384_SHA384, -1, 30);
    let other_name = cert(
        "other.pem",
        "other.app.internal",
        &PKCS_ECDSA_P256_SHA256,
        -1,
        30,
    );
    let good = cert("good.pem", vm_dns, &PKCS_ECDSA_P256_SHA256, -1, 30);
    let garbage = s.join("garbage.pem");
    fs::write(&garbage, "hello").expect("garbage");
    let binary = s.join("binary.pem");
    fs::write(&binary, [0xff_u8, 0xfe, 0x00, 0x80]).expect("binary");
    let huge_cert = s.join("huge.pem");
    fs::write(&huge_cert, vec![b'A'; 100_000]).expect("huge");
    let register = |path: &str| {
        vec![
            "cert".to_owned(),
            "register".into(),
            "--name".into(),
            "redcap".into(),
            "--cert".into(),
            path.to_owned(),
        ]
    };
    let path = |p: &Path| p.display().to_string();

    let mut cases = vec![
        // Backend config files.
        case(
            "config: not UTF-8",
            &list,
            {
                let p = s.join("binary.toml");
                fs::write(&p, [0xff_u8, 0xfe, b'\n']).expect("w");
                Some(p)
            },
            "backend",
            "not UTF-8",
        ),
        case(
            "config: larger than 64 KiB",
            &list,
            Some(huge_config.clone()),
            "backend",
            "larger than",
        ),
        case(
            "config: duplicate key",
            &list,
            sub("dup.toml", "zzz", &format!("backend_ip = \"{backend_ip}\"")),
            "backend",
            "duplicate key",
        ),
        case(
            "config: pool outside the secure network",
            &list,
            sub("pool-out.toml", "vm_pool", "vm_pool = \"10.0.0.0/28\""),
            "backend",
            "vm_pool",
        ),
        case(
            "config: backend IP inside the pool",
            &list,
            sub(
                "backend-in-pool.toml",
                "backend_ip",
                "backend_ip = \"192.168.128.17\"",
            ),
            "backend",
            "inside vm_pool",
        ),
        case(
            "config: pool not on a network boundary",
            &list,
            sub(
                "pool-unaligned.toml",
                "vm_pool",
                "vm_pool = \"192.168.128.17/28\"",
            ),
            "backend",
            "vm_pool",
        ),
        case(
            "config: unknown field",
            &list,
            sub("unknown.toml", "bogus", "bogus = 1"),
            "backend",
            "unknown field",
        ),
        case(
            "config: public port out of range",
            &list,
            sub("port.toml", "public_port", "public_port = 70000"),
            "backend",
            "public_port",
        ),
        case(
            "config: backend IP missing",
            &list,
            sub("no-backend.toml", "backend_ip", ""),
            "backend",
            "backend_ip",
        ),
        case(
            "config: DHCP range overlapping the pool",
            &list,
            sub(
                "dhcp.toml",
                "dhcp_range",
                "dhcp_range = \"192.168.128.20,192.168.128.254\"",
            ),
            "backend",
            "dhcp_range",
        ),
        case(
            "config: a directory",
            &list,
            Some(s.to_path_buf()),
            "backend",
            "config",
        ),
        // Table files (each behind a config of its own).
        case(
            "table: not UTF-8",
            &add,
            table("t-binary", &[0xff, 0xfe, b'\n']),
            "backend",
            "not UTF-8",
        ),
        case(
            "table: TOML syntax error",
            &add,
            table("t-syntax", b"[[vm]\nname = \"x\"\n"),
            "backend",
            "invalid table",
        ),
        case(
            "table: duplicate MAC",
            &add,
            table(
                "t-dup-mac",
                format!(
                    "{VALID_ENTRY}{}",
                    entry("b", "02:00:00:00:00:14", "192.168.128.21", "[443]")
                )
                .as_bytes(),
            ),
            "backend",
            "02:00:00:00:00:14",
        ),
        case(
            "table: duplicate IP",
            &add,
            table(
                "t-dup-ip",
                format!(
                    "{VALID_ENTRY}{}",
                    entry("b", "02:00:00:00:00:15", "192.168.128.20", "[443]")
                )
                .as_bytes(),
            ),
            "backend",
            "192.168.128.20",
        ),
        case(
            "table: duplicate name",
            &add,
            table(
                "t-dup-name",
                format!(
                    "{VALID_ENTRY}{}",
                    entry("redcap", "02:00:00:00:00:15", "192.168.128.21", "[443]")
                )
                .as_bytes(),
            ),
            "backend",
            "redcap",
        ),
        case(
            "table: IP outside the pool",
            &add,
            table(
                "t-ip-out",
                entry("a", "02:00:00:00:00:15", "192.168.128.200", "[443]").as_bytes(),
            ),
            "backend",
            "192.168.128.200",
        ),
        case(
            "table: invalid MAC",
            &add,
            table(
                "t-mac",
                entry("a", "02:00:00:00:00", "192.168.128.21", "[443]").as_bytes(),
            ),
            "backend",
            "mac",
        ),
        case(
            "table: multicast MAC",
            &add,
            table(
                "t-mcast",
                entry("a", "01:00:5e:00:00:01", "192.168.128.21", "[443]").as_bytes(),
            ),
            "backend",
            "mac",
        ),
        case(
            "table: name not a DNS label",
            &add,
            table(
                "t-name",
                entry("Bad Name", "02:00:00:00:00:15", "192.168.128.21", "[443]").as_bytes(),
            ),
            "backend",
            "name",
        ),
        case(
            "table: port 0",
            &add,
            table(
                "t-port",
                entry("a", "02:00:00:00:00:15", "192.168.128.21", "[0]").as_bytes(),
            ),
            "backend",
            "port",
        ),
        case(
            "table: unknown field",
            &add,
            table(
                "t-field",
                format!("{VALID_ENTRY}colour = \"red\"\n").as_bytes(),
            ),
            "backend",
            "unknown field",
        ),
        // Hosts-file paths: the table must not change without its hosts file.
        case(
            "hosts file: path is a directory",
            &add,
            Some(config_in(&base, &hosts_dir, &hosts_dir.join("hosts"))),
            "backend",
            "hosts file",
        ),
        case(
            "hosts file: parent is a regular file",
            &add,
            Some(config_in(
                &base,
                &hosts_under_file,
                &hosts_under_file.join("plain/hosts"),
            )),
            "backend",
            "hosts file",
        ),
        // Certificates for `cert register`.
        Case {
            what: "cert: expired",
            args: register(&expired),
            config: None,
            host: "backend",
            expect: "expired",
        },
        Case {
            what: "cert: P-384 key",
            args: register(&p384),
            config: None,
            host: "backend",
            expect: "not ECDSA P-256",
        },
        Case {
            what: "cert: names another VM",
            args: register(&other_name),
            config: None,
            host: "backend",
            expect: "does not name",
        },
        Case {
            what: "cert: not PEM",
            args: register(&path(&garbage)),
            config: None,
            host: "backend",
            expect: "not a PEM certificate",
        },
        Case {
            what: "cert: binary bytes",
            args: register(&path(&binary)),
            config: None,
            host: "backend",
            expect: "PEM",
        },
        Case {
            what: "cert: larger than 64 KiB",
            args: register(&path(&huge_cert)),
            config: None,
            host: "backend",
            expect: "larger than",
        },
        Case {
            what: "cert: missing file",
            args: register(&path(&s.join("missing.pem"))),
            config: None,
            host: "backend",
            expect: "No such file",
        },
        case(
            "cert: unknown VM",
            &["cert", "register", "--name", "ghost", "--cert", &good],
            None,
            "backend",
            "no such VM in the table",
        ),
        // Command lines.
        case(
            "cli: backend IP not an address",
            &[
                "vm",
                "attach",
                "--iface",
                SEC_IF,
                "--backend-ip",
                "192.168.128.300",
                "--app-port",
                "443",
            ],
            None,
            "vm",
            "192.168.128.300",
        ),
        case(
            "cli: application port 0",
            &[
                "vm",
                "attach",
                "--iface",
                SEC_IF,
                "--backend-ip",
                &backend_ip,
                "--app-port",
                "0",
            ],
            None,
            "vm",
            "0",
        ),
        case(
            "cli: multicast backend MAC",
            &[
                "vm",
                "attach",
                "--iface",
                SEC_IF,
                "--backend-ip",
                &backend_ip,
                "--app-port",
                "443",
                "--backend-mac",
                "01:00:5e:00:00:01",
            ],
            None,
            "vm",
            "01:00:5e:00:00:01",
        ),
        case(
            "cli: no such interface",
            &[
                "vm",
                "attach",
                "--iface",
                "nosuch0",
                "--backend-ip",
                &backend_ip,
                "--app-port",
                "443",
            ],
            None,
            "vm",
            "nosuch0",
        ),
        case(
            "cli: misspelt flag",
            &[
                "vm",
                "attach",
                "--iface",
                SEC_IF,
                "--backend-ip",
                &backend_ip,
                "--app-prot",
                "443",
            ],
            None,
            "vm",
            "--app-prot",
        ),
        case(
            "cli: table add with a bad MAC",
            &[
                "table",
                "add",
                "--name",
                "x",
                "--mac",
                "zz",
                "--vm-config",
                "c",
            ],
            None,
            "backend",
            "zz",
        ),
        case(
            "cli: table add outside the pool",
            &[
                "table",
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:03:02",
                "--vm-config",
                "c",
                "--ip",
                "192.168.128.200",
            ],
            None,
            "backend",
            "192.168.128.200",
        ),
        case(
            "cli: table add of an existing name",
            &[
                "table",
                "add",
                "--name",
                "redcap",
                "--mac",
                "02:00:00:00:03:03",
                "--vm-config",
                "c",
            ],
            None,
            "backend",
            "redcap",
        ),
        case(
            "cli: table remove of an unknown VM",
            &["table", "remove", "nosuch"],
            None,
            "backend",
            "nosuch",
        ),
        case(
            "cli: backend run with an invalid config",
            &["backend", "run"],
            sub("run-bad.toml", "vm_pool", "vm_pool = \"10.0.0.0/28\""),
            "backend",
            "vm_pool",
        ),
    ];
    // Bad table files and hosts paths: their own files must not change either.
    let scratch_files = |dir: &Path| {
        let mut p = tree(dir);
        p.sort();
        p.into_iter()
            .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "lock"))
            .map(|p| (p.clone(), fs::read(&p).unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let before = state(&lab);
    let mut failures = Vec::new();
    for c in &mut cases {
        let host: &Host = if c.host == "vm" {
            &lab.vm
        } else {
            &lab.backend
        };
        let scratch_before = scratch_files(s);
        let mut cmd = host.ns.command(appvm_bin());
        cmd.args(&c.args)
            .env("APPVM_PIN_ROOT", lab.pin_root())
            .env("APPVM_CONFIG", c.config.as_deref().unwrap_or(&config));
        let out = cmd.output().expect("run appvm");
        let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
        let mut wrong = Vec::new();
        if out.status.code() != Some(2) {
            wrong.push(format!("exit {:?}", out.status.code()));
        }
        if err.lines().count() != 1 {
            wrong.push("not one line".to_owned());
        }
        if !err.contains(c.expect) {
            wrong.push(format!("does not name '{}'", c.expect));
        }
        if state(&lab) != before {
            wrong.push("state changed".to_owned());
        }
        if scratch_files(s) != scratch_before {
            wrong.push("its input files changed".to_owned());
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {} -> {err}", c.what, wrong.join(", ")));
        }
    }
    eprintln!(
        "{} bad inputs, {} as expected",
        cases.len(),
        cases.len() - failures.len()
    );
    assert!(cases.len() >= 30);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(svc);
}
