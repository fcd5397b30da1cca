//! A network namespace that exists for the lifetime of a value.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use crate::sys::run;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `avm<pid>-<n>-<role>`: unique per process and call, so tests
    /// run in parallel.
    pub fn new(role: &str) -> Result<Self, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("avm{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        // No IPv6 chatter (router solicitations, DAD) in counters, loopback up.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        // A bridge here is plain L2: br_netfilter (built in on this kernel)
        // would otherwise validate and drop malformed IP before the guard
        // ever sees it.
        for table in ["arptables", "iptables", "ip6tables"] {
            ns.exec(&[
                "sysctl",
                "-qew",
                &format!("net.bridge.bridge-nf-call-{table}=0"),
            ])?;
        }
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command that runs inside this namespace. `nsenter --net` (not
    /// `ip netns exec`, which remounts /sys and hides /sys/fs/bpf).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs a command inside the namespace; error with its stderr.
    pub fn exec(&self, argv: &[&str]) -> Result<String, String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n <ns> ...`.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(drop)
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it
    /// creates belong to the namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        self.spawn(f)?
            .join()
            .map_err(|_panic| format!("thread in {} panicked", self.name))
    }

    /// Like [`Self::run`], for a closure that borrows (aya objects, the
    /// caller's state): attaching by interface index and
    /// `BPF_PROG_TEST_RUN` act in the calling thread's namespace.
    pub fn run_scoped<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let file = File::open(self.path()).map_err(|e| format!("open {}: {e}", self.name))?;
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: a valid namespace fd; setns affects only this thread.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(format!("cannot enter namespace {}", self.name));
                    }
                    Ok(f())
                })
                .join()
                .map_err(|_panic| format!("thread in {} panicked", self.name))?
        })
    }

    /// Like [`Self::run`] without waiting.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<thread::JoinHandle<T>, String> {
        let file = File::open(self.path()).map_err(|e| format!("open {}: {e}", self.name))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = thread::spawn(move || {
            // SAFETY: a valid namespace fd; setns affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            let entered = rc == 0;
            let _ = tx.send(entered);
            assert!(entered, "setns failed");
            f()
        });
        match rx.recv() {
            Ok(true) => Ok(handle),
            _ => Err(format!("cannot enter namespace {}", self.name)),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its interfaces (and veth peers).
        drop(run(Command::new("ip").args(["netns", "del", &self.name])));
    }
}
