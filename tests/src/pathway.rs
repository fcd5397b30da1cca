//! The full external pathway with the real servers, every host a namespace:
//! dnsmasq and Nginx on the backend with `appvm backend run`; the VM with
//! its guard, its address from a real DHCP exchange, and an HTTPS server
//! (Nginx) with the certificate `appvm cert issue` made; a public client;
//! a secure-network user (the rogue namespace, which is on the secure
//! network but not an application VM).

use std::{
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    daemon::Daemon,
    lab::{APP_PORT, BACKEND_PUBLIC_IP, Host, Lab, PUBLIC_PORT, SEC_IF},
    service::BackendService,
    sys::{appvm_bin, run, wait_for},
};

pub const EXTERNAL_NAME: &str = "surveys.example.org";
pub const VM_NAME: &str = "redcap";
pub const VM_DNS: &str = "redcap.app.internal";

/// One check of the pathway.
#[derive(Clone, Debug)]
pub struct Check {
    pub what: String,
    pub expected: String,
    pub actual: String,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.expected == self.actual
    }
}

/// The running pathway. Fields drop in order: servers first, lab last.
#[derive(Debug)]
pub struct Pathway {
    vm_server: Option<Daemon>,
    daemons: Vec<Daemon>,
    pub service: Option<BackendService>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub external_cert: PathBuf,
    pub lab: Lab,
}

pub fn appvm(args: &[&str], config: &Path) -> Result<String, String> {
    let out = run(Command::new(appvm_bin())
        .args(args)
        .env("APPVM_CONFIG", config))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `appvm` on the backend host (its namespace: `nginx -t` binds the
/// listen addresses, which exist only there).
fn appvm_on(host: &Host, args: &[&str], config: &Path) -> Result<String, String> {
    let out = run(host
        .ns
        .command(appvm_bin())
        .args(args)
        .env("APPVM_CONFIG", config))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A minimal Nginx main config whose paths all live in `dir`.
fn nginx_main(dir: &Path, body: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nuser root;\nworker_processes 1;\nworker_rlimit_nofile 8192;\npid {d}/nginx.pid;\nerror_log {d}/error.log notice;\nevents {{ worker_connections 4096; }}\nhttp {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/tmp/body;\n    proxy_temp_path {d}/tmp/proxy;\n    fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n{body}\n}}\n"
    )
}

impl Pathway {
    /// Builds everything, the VM a namespace; on error, whatever started
    /// is stopped.
    pub fn start() -> Result<Self, String> {
        let mut p = Self::start_backend()?;
        p.boot_vm_ns().map(|()| p)
    }

    /// The backend side only (certificates, table entry, dnsmasq, Nginx,
    /// `appvm backend run`): the VM, in its namespace or as a real guest,
    /// boots afterwards.
    pub fn start_backend() -> Result<Self, String> {
        let lab = Lab::with_dhcp_vm()?;
        let dir = lab.files();
        let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
        for sub in [
            "nginx/sites",
            "nginx/tmp",
            "vm-nginx/tmp",
            "trust",
            "external",
            "vm-cert",
        ] {
            mk(&dir.join(sub))?;
        }
        let nginx_dir = dir.join("nginx");
        let extra = format!(
            "dnsmasq_pid_file = \"{d}/dnsmasq.pid\"\ntrust_dir = \"{d}/trust\"\n[external]\nname = \"{EXTERNAL_NAME}\"\nvm = \"{VM_NAME}\"\ncert = \"{d}/external/surveys.crt\"\nkey = \"{d}/external/surveys.key\"\n[nginx]\nsite = \"{n}/sites/appvm.conf\"\nmain = \"{n}/nginx.conf\"\npid_file = \"{n}/nginx.pid\"\nerror_log = \"{n}/error.log\"\n[dnsmasq]\nconf = \"{d}/dnsmasq.conf\"\naddn_hosts = \"{d}/secure-dns-hosts\"\nlease_file = \"{d}/dnsmasq.leases\"\n",
            d = dir.display(),
            n = nginx_dir.display()
        );
        let config = lab.backend_config(&extra);
        let mut p = Self {
            vm_server: None,
            daemons: Vec::new(),
            service: None,
            external_cert: dir.join("external/surveys.crt"),
            dir,
            config,
            lab,
        };
        p.build_backend().map(|()| p)
    }

    fn build_backend(&mut self) -> Result<(), String> {
        let (dir, config) = (self.dir.clone(), self.config.clone());
        let d = |s: &str| dir.join(s).display().to_string();
        // Certificates: the external name's, and the VM controller's.
        appvm(
            &[
                "cert",
                "issue",
                "--name",
                "surveys",
                "--dns",
                EXTERNAL_NAME,
                "--out",
                &d("external"),
            ],
            &config,
        )?;
        let vm_ip = self.lab.vm.ip.to_string();
        appvm(
            &[
                "cert",
                "issue",
                "--name",
                VM_NAME,
                "--dns",
                VM_DNS,
                "--ip",
                &vm_ip,
                "--out",
                &d("vm-cert"),
            ],
            &config,
        )?;
        // The table entry pins the VM's MAC to its IP.
        let mac = appvm::vm::config::format_mac(self.lab.vm.mac);
        appvm(
            &[
                "table",
                "add",
                "--name",
                VM_NAME,
                "--mac",
                &mac,
                "--vm-config",
                "redcap-cfg",
                "--ip",
                &vm_ip,
            ],
            &config,
        )?;
        // Backend: Nginx main config including appvm's site, dnsmasq.
        let nginx_dir = dir.join("nginx");
        fs::write(
            nginx_dir.join("nginx.conf"),
            nginx_main(
                &nginx_dir,
                &format!("    include {}/sites/*.conf;", nginx_dir.display()),
            ),
        )
        .map_err(|e| e.to_string())?;
        appvm_on(
            &self.lab.backend,
            &["render", "dnsmasq", "--write"],
            &config,
        )?;
        appvm_on(
            &self.lab.backend,
            &[
                "cert",
                "register",
                "--name",
                VM_NAME,
                "--cert",
                &d("vm-cert/redcap.crt"),
            ],
            &config,
        )?;
        let backend = &self.lab.backend.ns;
        self.daemons.push(Daemon::spawn(
            "dnsmasq",
            backend
                .command("dnsmasq")
                .args(["--keep-in-foreground", "--user=root"])
                .arg(format!("--conf-file={}", d("dnsmasq.conf")))
                .arg(format!("--pid-file={}", d("dnsmasq.pid")))
                .arg(format!("--log-facility={}", d("dnsmasq.log"))),
        )?);
        self.daemons.push(Daemon::spawn(
            "nginx (backend)",
            backend
                .command("nginx")
                .arg("-c")
                .arg(nginx_dir.join("nginx.conf")),
        )?);
        wait_for("dnsmasq", Duration::from_secs(5), || {
            dir.join("dnsmasq.pid").exists()
        })?;
        wait_for("nginx", Duration::from_secs(5), || {
            nginx_dir.join("nginx.pid").exists()
        })?;
        self.service = Some(BackendService::start(&self.lab, &config)?);
        Ok(())
    }

    /// The VM's namespace boots: guard first, then DHCP, then its HTTPS
    /// server.
    fn boot_vm_ns(&mut self) -> Result<(), String> {
        let dir = self.dir.clone();
        let out = self.lab.appvm(
            &self.lab.vm,
            &[
                "vm",
                "attach",
                "--iface",
                SEC_IF,
                "--backend-ip",
                &self.lab.backend.ip.to_string(),
                "--backend-mac",
                &appvm::vm::config::format_mac(self.lab.backend.mac),
                "--app-port",
                &APP_PORT.to_string(),
            ],
        );
        if !out.status.success() {
            return Err(format!(
                "appvm vm attach: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.dhcp()?;
        self.start_vm_server(&dir.join("vm-cert"))?;
        Ok(())
    }

    /// busybox udhcpc on the VM's interface; returns the address it got.
    pub fn dhcp(&self) -> Result<Ipv4Addr, String> {
        let script = self.dir.join("udhcpc.sh");
        fs::write(
            &script,
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    ip addr flush dev \"$interface\"\n    ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n    echo \"$ip\" > \"$(dirname \"$0\")/dhcp-ip\";;\nesac\nexit 0\n",
        )
        .map_err(|e| e.to_string())?;
        run(Command::new("chmod").arg("+x").arg(&script))?;
        let script_s = script.display().to_string();
        self.lab.vm.ns.exec(&[
            "busybox", "udhcpc", "-i", SEC_IF, "-n", "-q", "-f", "-t", "5", "-T", "1", "-s",
            &script_s,
        ])?;
        let ip = fs::read_to_string(self.dir.join("dhcp-ip"))
            .map_err(|e| format!("no DHCP address: {e}"))?;
        ip.trim()
            .parse()
            .map_err(|_e| format!("bad DHCP address '{ip}'"))
    }

    /// Nginx in the VM on the application port with the certificate in
    /// `cert_dir` (`redcap.crt`/`.key`), answering with what it received.
    pub fn start_vm_server(&mut self, cert_dir: &Path) -> Result<(), String> {
        if let Some(mut old) = self.vm_server.take() {
            old.stop();
        }
        let vdir = self.dir.join("vm-nginx");
        drop(fs::remove_file(vdir.join("nginx.pid")));
        let body = format!(
            "    server {{\n        listen {ip}:{APP_PORT} ssl;\n        ssl_certificate {c}/redcap.crt;\n        ssl_certificate_key {c}/redcap.key;\n        location / {{\n            return 200 \"redcap uri=$uri xff=$http_x_forwarded_for proto=$http_x_forwarded_proto host=$http_host\\n\";\n        }}\n    }}",
            ip = self.lab.vm.ip,
            c = cert_dir.display()
        );
        fs::write(vdir.join("nginx.conf"), nginx_main(&vdir, &body)).map_err(|e| e.to_string())?;
        let mut server = Daemon::spawn(
            "nginx (vm)",
            self.lab
                .vm
                .ns
                .command("nginx")
                .arg("-c")
                .arg(vdir.join("nginx.conf")),
        )?;
        wait_for("nginx in the VM", Duration::from_secs(5), || {
            vdir.join("nginx.pid").exists()
        })?;
        if !server.alive() {
            return Err(format!(
                "nginx in the VM exited: {}",
                fs::read_to_string(vdir.join("error.log")).unwrap_or_default()
            ));
        }
        self.vm_server = Some(server);
        Ok(())
    }

    /// `curl` from `from` to the external name at `ip` (verified against the
    /// external certificate). Returns (status, body); status 0 when no
    /// HTTP answer came.
    pub fn get(&self, from: &Host, ip: Ipv4Addr, path: &str) -> Result<(u16, String), String> {
        self.get_with(from, ip, path, &[])
    }

    /// [`Self::get`] with extra request headers.
    pub fn get_with(
        &self,
        from: &Host,
        ip: Ipv4Addr,
        path: &str,
        headers: &[&str],
    ) -> Result<(u16, String), String> {
        let mut cmd = from.ns.command("curl");
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        let out = cmd
            .args([
                "-sS",
                "--max-time",
                "5",
                "--path-as-is",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(&self.external_cert)
            .arg("--resolve")
            .arg(format!("{EXTERNAL_NAME}:{PUBLIC_PORT}:{ip}"))
            .arg(format!("https://{EXTERNAL_NAME}:{PUBLIC_PORT}{path}"))
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// The VM asks the backend's dnsmasq for the external name.
    pub fn vm_resolves(&self) -> Result<Option<Ipv4Addr>, String> {
        let out = self
            .lab
            .vm
            .ns
            .command("busybox")
            .args(["nslookup", EXTERNAL_NAME, &self.lab.backend.ip.to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let after_name = text
            .split_once("Name:")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        Ok(after_name
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Address:"))
            .filter_map(|a| a.trim().split([' ', ':']).next()?.parse().ok())
            .next())
    }

    /// A direct HTTPS attempt at the VM's application port from `from`.
    pub fn direct_to_vm(&self, from: &Host) -> Result<u16, String> {
        let out = from
            .ns
            .command("curl")
            .args([
                "-sk",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("https://{}:{APP_PORT}/surveys/", self.lab.vm.ip))
            .output()
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0))
    }

    /// Every check of the pathway, in order; ends with the impostor.
    pub fn checks(&mut self) -> Result<Vec<Check>, String> {
        let mut c = Vec::new();
        let mut add = |what: &str, expected: String, actual: String| {
            c.push(Check {
                what: what.to_owned(),
                expected,
                actual,
            })
        };
        let lease = fs::read_to_string(self.dir.join("dhcp-ip")).unwrap_or_default();
        add(
            "vm: DHCP address from dnsmasq (pinned by MAC)",
            self.lab.vm.ip.to_string(),
            lease.trim().to_owned(),
        );
        let resolved = self
            .vm_resolves()?
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "nothing".into());
        add(
            &format!("vm: {EXTERNAL_NAME} resolves to"),
            self.lab.backend.ip.to_string(),
            resolved,
        );
        let public = &self.lab.public;
        let (code, body) = self.get(public, BACKEND_PUBLIC_IP, "/surveys/?s=ABC123")?;
        add(
            "public: GET /surveys/?s=ABC123",
            "200".into(),
            code.to_string(),
        );
        let xff = body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("xff="))
            .unwrap_or("-")
            .to_owned();
        add(
            "  ... proxied to the vm, X-Forwarded-For",
            public.ip.to_string(),
            xff,
        );
        let proto = body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("proto="))
            .unwrap_or("-")
            .to_owned();
        add("  ... X-Forwarded-Proto", "https".into(), proto);
        // Nginx is the edge: a client's own X-Forwarded-For is replaced.
        let (_, body) = self.get_with(
            public,
            BACKEND_PUBLIC_IP,
            "/surveys/?s=ABC123",
            &["X-Forwarded-For: 10.9.9.9"],
        )?;
        let xff = body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("xff="))
            .unwrap_or("-")
            .to_owned();
        add(
            "  ... a client's X-Forwarded-For is replaced",
            public.ip.to_string(),
            xff,
        );
        for (path, expected) in [
            ("/redcap_v14.0.0/Resources/css/app.css", 200),
            ("/redcap_v14.0.0/index.php", 403),
            ("/surveys/../redcap_v14.0.0/index.php", 403),
            ("/surveys/%2e%2e/redcap_v14.0.0/index.php", 403),
            ("/surveys/%2E%2E/redcap_v14.0.0/index.php", 403),
            ("/surveys/..%2fredcap_v14.0.0/index.php", 403),
            ("/surveys%2f..%2fredcap_v14.0.0/index.php", 403),
            ("//redcap_v14.0.0/index.php", 403),
            ("/surveys//../redcap_v14.0.0/index.php", 403),
            ("/surveys/./../redcap_v14.0.0/index.php", 403),
            ("/surveys/%5c../redcap_v14.0.0/index.php", 403),
            ("/surveys/%252e%252e/redcap_v14.0.0/index.php", 403),
            (
                "/surveys/index.php?s=ABC&__passthru=DataEntry%2Fimage_view.php",
                200,
            ),
            ("/Surveys/", 403),
            ("/", 403),
        ] {
            let (code, _) = self.get(public, BACKEND_PUBLIC_IP, path)?;
            add(
                &format!("public: GET {path}"),
                expected.to_string(),
                code.to_string(),
            );
        }
        let user = &self.lab.rogue;
        let (code, _) = self.get(user, self.lab.backend.ip, "/redcap_v14.0.0/index.php")?;
        add(
            "secure-network user: GET /redcap_v14.0.0/index.php",
            "200".into(),
            code.to_string(),
        );
        let resolved = self.vm_resolves()?.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let (code, _) = self.get(&self.lab.vm, resolved, "/redcap_v14.0.0/index.php")?;
        add(
            &format!(
                "vm: GET https://{EXTERNAL_NAME}:{PUBLIC_PORT}/redcap_v14.0.0/index.php (TLS verified)"
            ),
            "200".into(),
            code.to_string(),
        );
        add(
            "public: direct HTTPS to vm:443",
            "0".into(),
            self.direct_to_vm(public)?.to_string(),
        );
        // An impostor at the VM's address with another key.
        let impostor = self.dir.join("impostor");
        appvm(
            &[
                "cert",
                "issue",
                "--name",
                VM_NAME,
                "--dns",
                VM_DNS,
                "--out",
                &impostor.display().to_string(),
            ],
            &self.config,
        )?;
        self.start_vm_server(&impostor)?;
        let (code, _) = self.get(&self.lab.public, BACKEND_PUBLIC_IP, "/surveys/?s=ABC123")?;
        add(
            "public: GET /surveys/ with an impostor key at the vm",
            "502".into(),
            code.to_string(),
        );
        Ok(c)
    }
}

impl Pathway {
    /// The servers' logs (for a failing check's message).
    pub fn logs(&self) -> String {
        ["nginx/error.log", "vm-nginx/error.log", "dnsmasq.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    fs::read_to_string(self.dir.join(f)).unwrap_or_default()
                )
            })
            .chain(
                self.service
                    .iter()
                    .map(|s| format!("--- appvm backend run\n{}", s.log())),
            )
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The checks as an aligned table.
pub fn format_checks(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(5);
    let mut out = format!(
        "{:<width$}  {:<15} {:<15} ok\n",
        "check", "expected", "actual"
    );
    for c in checks {
        let _ = writeln!(
            out,
            "{:<width$}  {:<15} {:<15} {}",
            c.what,
            c.expected,
            c.actual,
            if c.ok() { "ok" } else { "MISMATCH" }
        );
    }
    out
}
