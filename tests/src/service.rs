//! `appvm backend run` as a child process inside the lab's backend namespace.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::{lab::Lab, sys::appvm_bin};

/// The running service; killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct BackendService {
    child: Option<Child>,
    log: PathBuf,
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl BackendService {
    /// Starts the service and waits (at most 30 s) until it follows the table.
    pub fn start(lab: &Lab, config: &Path) -> Result<Self, String> {
        Self::start_with(lab, config, &[])
    }

    /// [`Self::start`] with extra `appvm backend run` arguments.
    pub fn start_with(lab: &Lab, config: &Path, extra: &[&str]) -> Result<Self, String> {
        let mut service = Self::spawn(lab, config, extra)?;
        service.wait_following().map(|()| service)
    }

    /// Starts the service without waiting for it.
    pub fn spawn(lab: &Lab, config: &Path, extra: &[&str]) -> Result<Self, String> {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = lab.files().join(format!("backend-{n}.log"));
        let file = fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = lab
            .backend
            .ns
            .command(appvm_bin())
            .args(["backend", "run", "--config"])
            .arg(config)
            .args(extra)
            .env("APPVM_PIN_ROOT", lab.pin_root())
            .env("APPVM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("spawn appvm backend run: {e}"))?;
        Ok(Self {
            child: Some(child),
            log,
        })
    }

    /// Waits (at most 30 s) until the service follows the table.
    pub fn wait_following(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.log().contains("following") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("service exited ({status}): {}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("service not ready after 30 s: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no clean-up code of the service runs.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.kill());
            drop(c.wait());
        }
    }

    /// SIGTERM and wait (at most 10 s).
    pub fn terminate(mut self) -> Option<ExitStatus> {
        crate::daemon::terminate(self.child.take()?, Duration::from_secs(10))
    }

    /// Waits until the log has `needle` (at most `timeout`).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for BackendService {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.kill());
            drop(c.wait());
        }
    }
}
