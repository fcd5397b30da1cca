//! Installing rendered files: validate first, keep the previous file on any
//! error, reload the daemon, and check that the reload took.

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use super::{RenderError, dnsmasq, nginx};
use crate::{
    backend::config::{BackendConfig, NginxConfig},
    table::{
        Table,
        atomic::{write_atomic, write_if_changed},
        store,
    },
};

fn io(path: &Path) -> impl Fn(std::io::Error) -> RenderError + '_ {
    move |e| RenderError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

/// What `apply` changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub hosts: bool,
    pub addn_hosts: bool,
    pub nginx: bool,
}

/// Renders the hosts files and the Nginx site from `table`, installs what
/// changed, sends dnsmasq SIGHUP and reloads Nginx as needed.
pub fn apply(cfg: &BackendConfig, table: &Table) -> Result<Applied, RenderError> {
    let mut applied = apply_dns(cfg, table)?;
    if let (Some(_), Some(n)) = (&cfg.external, &cfg.nginx) {
        applied.nginx = install_nginx(n, &nginx::render(cfg, table)?)?;
    }
    Ok(applied)
}

/// dnsmasq's part of [`apply`]: the hosts file and `addn-hosts`, then
/// SIGHUP if either changed.
pub fn apply_dns(cfg: &BackendConfig, table: &Table) -> Result<Applied, RenderError> {
    let mut applied = Applied {
        hosts: store::write_hosts(cfg, table).map_err(|e| RenderError::Io {
            path: cfg.hosts_file.display().to_string(),
            why: e.to_string(),
        })?,
        ..Applied::default()
    };
    if let Some(d) = &cfg.dnsmasq {
        applied.addn_hosts =
            write_if_changed(&d.addn_hosts, &dnsmasq::render_addn_hosts(cfg, table))
                .map_err(io(&d.addn_hosts))?;
    }
    if applied.hosts || applied.addn_hosts {
        signal_dnsmasq(cfg);
    }
    Ok(applied)
}

/// Sends SIGHUP to dnsmasq (pid file from the config), logging the outcome.
pub fn signal_dnsmasq(cfg: &BackendConfig) {
    let Some(pid_file) = &cfg.dnsmasq_pid_file else {
        return;
    };
    match read_pid(pid_file) {
        // SAFETY: plain kill(2).
        Some(pid) if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 => {
            tracing::info!(pid, "sent SIGHUP to dnsmasq")
        }
        Some(pid) => {
            tracing::error!(pid, error = %std::io::Error::last_os_error(), "cannot signal dnsmasq")
        }
        None => {
            tracing::warn!(pid_file = %pid_file.display(), "dnsmasq not running (no pid in its pid file)")
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
}

/// First line of `text` that says what is wrong (nginx's `[emerg]`).
fn first_error(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("[emerg]") || l.contains("[crit]") || l.contains("error"))
        .or_else(|| text.lines().next())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

/// Installs the Nginx site: `nginx -t` with it in place, the previous file
/// restored if that fails; then a reload, watched in the error log because a
/// reload with a broken config exits 0 and silently keeps the old one.
pub fn install_nginx(n: &NginxConfig, content: &str) -> Result<bool, RenderError> {
    let old = fs::read_to_string(&n.site).ok();
    if old.as_deref() == Some(content) {
        return Ok(false);
    }
    write_atomic(&n.site, content.as_bytes()).map_err(io(&n.site))?;
    let restore = || match &old {
        Some(text) => drop(write_atomic(&n.site, text.as_bytes())),
        None => drop(fs::remove_file(&n.site)),
    };
    let test = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&n.main)
        .output();
    match test {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            restore();
            return Err(RenderError::NginxTest(first_error(
                &String::from_utf8_lossy(&out.stderr),
            )));
        }
        Err(e) => {
            restore();
            return Err(RenderError::NginxTest(format!("cannot run nginx -t: {e}")));
        }
    }
    reload_nginx(n)?;
    Ok(true)
}

/// SIGHUP to the master, then up to 1 s watching the error log for an
/// `[emerg]` written after the signal.
pub fn reload_nginx(n: &NginxConfig) -> Result<(), RenderError> {
    let Some(pid) = read_pid(&n.pid_file) else {
        tracing::warn!(pid_file = %n.pid_file.display(), "nginx not running; the site takes effect when it starts");
        return Ok(());
    };
    let offset = n
        .error_log
        .as_ref()
        .and_then(|p| fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(RenderError::NginxReload(format!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    let Some(log) = &n.error_log else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let text = fs::read(log).unwrap_or_default();
        let new =
            String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default()).into_owned();
        if let Some(line) = new.lines().find(|l| l.contains("[emerg]")) {
            return Err(RenderError::NginxReload(line.trim().to_owned()));
        }
    }
    tracing::info!(pid, "nginx reloaded");
    Ok(())
}

/// Installs the dnsmasq configuration after `dnsmasq --test` accepts it.
pub fn install_dnsmasq_conf(cfg: &BackendConfig) -> Result<bool, RenderError> {
    let d = cfg
        .dnsmasq
        .as_ref()
        .ok_or(RenderError::Missing("dnsmasq"))?;
    let content = dnsmasq::render_conf(cfg)?;
    if fs::read_to_string(&d.conf).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let dir = d.conf.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".appvm-dnsmasq-test.{}", std::process::id()));
    fs::write(&tmp, &content).map_err(io(&tmp))?;
    let test = Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={}", tmp.display()))
        .output();
    drop(fs::remove_file(&tmp));
    match test {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(RenderError::DnsmasqTest(first_error(
                &String::from_utf8_lossy(&out.stderr),
            )));
        }
        Err(e) => {
            return Err(RenderError::DnsmasqTest(format!(
                "cannot run dnsmasq --test: {e}"
            )));
        }
    }
    write_atomic(&d.conf, content.as_bytes()).map_err(io(&d.conf))?;
    Ok(true)
}
