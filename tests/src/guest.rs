//! A real Linux guest under qemu (TCG: this machine kind has no usable
//! hardware virtualisation), its virtio-net NIC on a tap device inside a
//! namespace. The console is the guest's serial port on qemu's stdio:
//! the host reads the guest's marked lines and writes commands to it.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::{daemon::terminate, initramfs::MARK, netns::Netns};

/// Where `cargo xtask setup` caches qemu's guest kernel.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("APPVM_GUEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/appvm/guest"), PathBuf::from)
}

/// The unpacked kernel package and its `vmlinuz`.
pub fn kernel() -> Result<(PathBuf, PathBuf), String> {
    let root = cache_dir().join("kernel");
    let boot = root.join("boot");
    let image = fs::read_dir(&boot)
        .map_err(|e| {
            format!(
                "{}: {e} (cargo xtask setup fetches the guest kernel)",
                boot.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("{}: no vmlinuz-*", boot.display()))?;
    Ok((root, image))
}

/// A running guest; qemu is killed on drop.
#[derive(Debug)]
pub struct Guest {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    console: Arc<Mutex<Console>>,
    started: Instant,
}

/// What the guest printed: everything, and what no wait has consumed yet.
#[derive(Debug, Default)]
struct Console {
    all: Vec<String>,
    pending: Vec<String>,
}

impl Console {
    fn push(&mut self, line: String) {
        self.all.push(line.clone());
        self.pending.push(line);
    }
}

/// One NIC on a tap device that already exists in `ns`.
#[derive(Debug)]
pub struct Nic<'a> {
    pub ns: &'a Netns,
    pub tap: &'a str,
    pub mac: &'a str,
}

impl Guest {
    /// Boots `kernel` with `initrd`; the console goes to `log` as well.
    pub fn boot(kernel: &Path, initrd: &Path, nic: &Nic<'_>, log: &Path) -> Result<Self, String> {
        let mut child = nic
            .ns
            .command("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-m",
                "768",
                "-smp",
                "1",
                "-nodefaults",
                "-no-user-config",
                "-no-reboot",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-kernel",
            ])
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                nic.tap
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={}", nic.mac))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let console = Arc::new(Mutex::new(Console::default()));
        let mut log_file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stdout = child.stdout.take().ok_or("qemu stdout")?;
        let lines = Arc::clone(&console);
        thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                drop(writeln!(log_file, "{text}"));
                lines.lock().expect("console lock").push(text);
            }
        });
        let stderr = child.stderr.take().ok_or("qemu stderr")?;
        let errors = Arc::clone(&console);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                errors
                    .lock()
                    .expect("console lock")
                    .push(format!("qemu: {line}"));
            }
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child: Some(child),
            console,
            started: Instant::now(),
        })
    }

    /// Seconds since qemu started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the guest's marked line starting with `what` (after the
    /// mark), returning the rest of it. A `fail` line, qemu's exit or the
    /// timeout ends the wait with an error naming `step`.
    pub fn wait(&mut self, step: &str, what: &str, timeout: Duration) -> Result<String, String> {
        self.wait_collect(step, what, timeout).map(|(rest, _)| rest)
    }

    /// Lines between `begin <what>` and `end <what>`.
    pub fn block(&mut self, what: &str, timeout: Duration) -> Result<Vec<String>, String> {
        self.wait(what, &format!("begin {what}"), timeout)?;
        self.wait_collect(what, &format!("end {what}"), timeout)
            .map(|(_, lines)| lines)
    }

    /// [`Self::wait`], also returning the console lines before the match.
    /// Later waits see only what came after it.
    fn wait_collect(
        &mut self,
        step: &str,
        what: &str,
        timeout: Duration,
    ) -> Result<(String, Vec<String>), String> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut console = self.console.lock().expect("console lock");
                let lines = &mut console.pending;
                for (i, line) in lines.iter().enumerate() {
                    let Some(rest) = marked(line) else { continue };
                    if let Some(found) = rest.strip_prefix(what) {
                        let found = found.trim().to_owned();
                        let before: Vec<String> = lines.drain(..=i).take(i).collect();
                        return Ok((found, before));
                    }
                    if let Some(why) = rest.strip_prefix("fail ") {
                        return Err(format!("guest step '{step}' failed in the guest: {why}"));
                    }
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "guest step '{step}': qemu exited ({status}); console:\n{}",
                    self.console_tail(40)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "guest step '{step}': nothing after {timeout:?}; console:\n{}",
                    self.console_tail(40)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one command line to the guest's console.
    pub fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("guest console closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("guest console: {e}"))
    }

    /// Waits for qemu to exit by itself (the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!("guest did not power off within {timeout:?}"))
    }

    /// The last `n` console lines.
    pub fn console_tail(&self, n: usize) -> String {
        let console = self.console.lock().expect("console lock");
        let all = &console.all;
        all[all.len().saturating_sub(n)..].join("\n")
    }
}

/// The part of a console line after the guest's mark.
fn marked(line: &str) -> Option<&str> {
    line.split_once(MARK).map(|(_, rest)| rest.trim_start())
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(2));
        }
    }
}
