//! A long-running child process (Nginx, dnsmasq) killed on drop.

use std::process::{Child, Command, Stdio};

#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
}

impl Daemon {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// SIGTERM (Nginx's master then stops its workers), SIGKILL after 3 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(c.kill());
        drop(c.wait());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
