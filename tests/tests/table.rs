//! `appvm table`: every validation error (exit 2, one line, files
//! unchanged), 20 concurrent adds, and crash safety under kill -9.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use appvm_lab::sys::{appvm_bin, ok, rejected};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A scratch directory with a backend config; removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

impl Dir {
    fn new(pool: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "appvm-table-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("tmp");
        std::fs::write(
            dir.join("backend.toml"),
            format!(
                "secure_network = \"192.168.128.0/24\"\nvm_pool = \"{pool}\"\nbackend_ip = \"192.168.128.254\"\ntable = \"{}\"\nhosts_file = \"{}\"\n",
                dir.join("table.toml").display(),
                dir.join("hosts").display()
            ),
        )
        .expect("config");
        Self(dir)
    }

    fn config(&self) -> PathBuf {
        self.0.join("backend.toml")
    }

    fn table(&self, args: &[&str]) -> Output {
        Command::new(appvm_bin())
            .arg("table")
            .args(args)
            .env("APPVM_CONFIG", self.config())
            .output()
            .expect("appvm table")
    }

    fn add(&self, name: &str, mac: &str, extra: &[&str]) -> Output {
        let mut args = vec!["add", "--name", name, "--mac", mac, "--vm-config", "cfg"];
        args.extend_from_slice(extra);
        self.table(&args)
    }

    fn files(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            std::fs::read(self.0.join("table.toml")).ok(),
            std::fs::read(self.0.join("hosts")).ok(),
        )
    }
}

#[test]
fn allocates_lowest_free_ip_and_renders_hosts_file() {
    let d = Dir::new("192.168.128.0/28");
    // .0 is the secure network's own address: never allocated.
    assert!(ok(&d.add("a", "02:00:00:00:00:0a", &[])).contains("192.168.128.1 "));
    assert!(
        ok(&d.add("b", "02:00:00:00:00:0b", &["--ip", "192.168.128.3"])).contains("192.168.128.3")
    );
    assert!(
        ok(&d.add(
            "c",
            "02:00:00:00:00:0C",
            &["--port", "443", "--port", "8443"]
        ))
        .contains("192.168.128.2 ")
    );
    ok(&d.table(&["remove", "a"]));
    assert!(
        ok(&d.add("d", "02:00:00:00:00:0d", &[])).contains("192.168.128.1 "),
        "freed address reused"
    );
    let hosts = std::fs::read_to_string(d.0.join("hosts")).expect("hosts");
    assert_eq!(
        hosts,
        "# MAC address, IP address\n02:00:00:00:00:0d, 192.168.128.1\n02:00:00:00:00:0c, 192.168.128.2\n02:00:00:00:00:0b, 192.168.128.3\n"
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(&d.table(&["list", "--json"]))).expect("json");
    assert_eq!(list.as_array().expect("array").len(), 3);
    let c: serde_json::Value =
        serde_json::from_str(&ok(&d.table(&["show", "c", "--json"]))).expect("json");
    assert_eq!(c["ports"], serde_json::json!([443, 8443]));
    assert_eq!(
        c["mac"], "02:00:00:00:00:0c",
        "MACs are stored in canonical form"
    );
}

#[test]
fn every_validation_error_is_one_line_exit_2_and_changes_nothing() {
    let d = Dir::new("192.168.128.0/30");
    ok(&d.add("taken", "02:00:00:00:00:01", &[]));
    let before = d.files();
    let long = "a".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "add",
                "--name",
                "Upper",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
            ],
            "invalid name 'Upper'",
        ),
        (
            vec![
                "add",
                "--name",
                "under_score",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
            ],
            "invalid name",
        ),
        (
            vec![
                "add",
                "--name=-dash",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
            ],
            "invalid name",
        ),
        (
            vec![
                "add",
                "--name",
                &long,
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
            ],
            "invalid name",
        ),
        (
            vec![
                "add",
                "--name",
                "",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
            ],
            "invalid name",
        ),
        (
            vec![
                "add",
                "--name",
                "taken",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
            ],
            "name 'taken' is already in the table",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "01:00:5e:00:00:01",
                "--vm-config",
                "c",
            ],
            "invalid mac '01:00:5e:00:00:01'",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "00:00:00:00:00:00",
                "--vm-config",
                "c",
            ],
            "invalid mac",
        ),
        (
            vec!["add", "--name", "x", "--mac", "zz", "--vm-config", "c"],
            "invalid mac 'zz'",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:01",
                "--vm-config",
                "c",
            ],
            "mac '02:00:00:00:00:01' is already in the table",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
                "--ip",
                "192.168.128.9",
            ],
            "invalid ip '192.168.128.9': outside the VM pool",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
                "--ip",
                "192.168.128.0",
            ],
            "reserved",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
                "--ip",
                "192.168.128.1",
            ],
            "ip '192.168.128.1' is already in the table",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
                "--ip",
                "nope",
            ],
            "invalid ip 'nope'",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
                "--port",
                "0",
            ],
            "invalid port '0'",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "c",
                "--port",
                "70000",
            ],
            "invalid port '70000'",
        ),
        (
            vec![
                "add",
                "--name",
                "x",
                "--mac",
                "02:00:00:00:00:09",
                "--vm-config",
                "",
            ],
            "invalid vm_config",
        ),
        (vec!["remove", "ghost"], "no VM named 'ghost'"),
        (vec!["show", "ghost"], "no VM named 'ghost'"),
        (vec!["add", "--name", "x"], "required"),
    ];
    for (args, expect) in &cases {
        rejected(&d.table(args), expect);
        assert_eq!(d.files(), before, "{args:?} changed the files");
    }
    // Fill the /30 (.0 is the network: .1-.3 usable), then exhaustion.
    ok(&d.add("b", "02:00:00:00:00:02", &[]));
    ok(&d.add("c", "02:00:00:00:00:03", &[]));
    let full = d.files();
    rejected(
        &d.add("d", "02:00:00:00:00:04", &[]),
        "pool 192.168.128.0/30 is exhausted",
    );
    assert_eq!(d.files(), full);
}

#[test]
fn bad_config_and_bad_table_file_are_refused() {
    let d = Dir::new("192.168.128.0/28");
    let write = |text: &str| std::fs::write(d.config(), text).expect("write");
    let base = std::fs::read_to_string(d.config()).expect("config");
    for (text, expect) in [
        (
            base.replace("192.168.128.0/28", "10.0.0.0/28"),
            "not inside secure_network",
        ),
        (
            base.replace("192.168.128.254", "192.168.128.5"),
            "inside vm_pool",
        ),
        (
            base.replace("192.168.128.254", "10.1.1.1"),
            "not a host address",
        ),
        (
            base.replace("192.168.128.0/28", "192.168.128.3/28"),
            "host bits set",
        ),
        (format!("{base}unknown_key = 1\n"), "unknown field"),
        (
            base.replace("\"192.168.128.0/28\"", "\"300.0.0.0/8\""),
            "line 2",
        ),
    ] {
        write(&text);
        rejected(&d.table(&["list"]), expect);
    }
    write(&base);
    ok(&d.add("a", "02:00:00:00:00:0a", &[]));
    let table = d.0.join("table.toml");
    let good = std::fs::read(&table).expect("table");
    for (text, expect) in [
        ("[[vm]]\nname = \"a\"\n", "missing field"),
        (
            "[[vm]]\nname = \"a\"\nmac = \"02:00:00:00:00:0a\"\nvm_config = \"c\"\nip = \"192.168.128.1\"\nports = [443]\n[[vm]]\nname = \"a\"\nmac = \"02:00:00:00:00:0b\"\nvm_config = \"c\"\nip = \"192.168.128.2\"\nports = [443]\n",
            "name 'a' is already",
        ),
        ("not toml", "invalid table"),
    ] {
        std::fs::write(&table, text).expect("write");
        rejected(&d.table(&["list"]), expect);
        let hosts = d.files().1;
        rejected(&d.add("z", "02:00:00:00:00:0f", &[]), expect);
        assert_eq!(
            std::fs::read_to_string(&table).expect("table"),
            text,
            "a refused table is not rewritten"
        );
        assert_eq!(d.files().1, hosts);
    }
    std::fs::write(&table, [0xff, 0xfe]).expect("write");
    rejected(&d.table(&["list"]), "not UTF-8");
    std::fs::write(&table, good).expect("restore");
    ok(&d.table(&["list"]));
}

#[test]
fn twenty_concurrent_adds_get_twenty_distinct_ips() {
    let d = Dir::new("192.168.128.0/26");
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(appvm_bin())
                .args([
                    "table",
                    "add",
                    "--name",
                    &format!("vm{i}"),
                    "--mac",
                    &format!("02:00:00:00:01:{i:02x}"),
                    "--vm-config",
                    "c",
                ])
                .env("APPVM_CONFIG", d.config())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        ok(&out);
    }
    let list: serde_json::Value =
        serde_json::from_str(&ok(&d.table(&["list", "--json"]))).expect("json");
    let ips: std::collections::BTreeSet<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["ip"].as_str().expect("ip").to_owned())
        .collect();
    assert_eq!(ips.len(), 20, "{list}");
    let hosts = std::fs::read_to_string(d.0.join("hosts")).expect("hosts");
    assert_eq!(hosts.lines().count(), 21);
}

/// kill -9 at random points of `appvm table add`: the table is always the
/// old or the new one, never corrupt.
#[test]
fn kill_9_during_writes_leaves_old_or_new_table() {
    let d = Dir::new("192.168.128.0/25");
    let table = d.0.join("table.toml");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut prev_count = 0;
    for i in 0..40_u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(appvm_bin())
            .args([
                "table",
                "add",
                "--name",
                &format!("k{i}"),
                "--mac",
                &format!("02:00:00:00:02:{i:02x}"),
                "--vm-config",
                "c",
            ])
            .env("APPVM_CONFIG", d.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(seed % 4000));
        drop(child.kill());
        drop(child.wait());
        let count = check_table(&table, &d.config());
        assert!(
            count == prev_count || count == prev_count + 1,
            "entries went from {prev_count} to {count}"
        );
        prev_count = count;
    }
}

/// Parses the table with the binary; returns its entry count.
fn check_table(table: &Path, config: &Path) -> usize {
    if !table.exists() {
        return 0;
    }
    let out = Command::new(appvm_bin())
        .args(["table", "list", "--json"])
        .env("APPVM_CONFIG", config)
        .output()
        .expect("list");
    assert!(
        out.status.success(),
        "table corrupt after kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .len()
}
