//! Waiting for a file to be replaced or written (inotify on its directory,
//! so an atomic rename is seen too).

use std::{
    ffi::{CString, OsString},
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::{OsStrExt as _, OsStringExt as _},
    },
    path::Path,
};

use tokio::io::unix::AsyncFd;

/// Events on one file name in a watched directory.
#[derive(Debug)]
pub struct FileWatch {
    fd: AsyncFd<OwnedFd>,
    name: OsString,
}

impl FileWatch {
    pub fn new(path: &Path) -> io::Result<Self> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
            .to_owned();
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_dir = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_DELETE | libc::IN_CREATE;
        // SAFETY: valid fd and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: we own `fd` and nothing else registers or closes it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { fd, name })
    }

    /// Resolves when the watched file was written, replaced or removed.
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut buf = vec![0_u8; 4096];
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
                // SAFETY: valid fd and buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            let Ok(result) = read else { continue };
            let n = result?;
            if self.names(&buf[..n]).any(|name| name == self.name) {
                return Ok(());
            }
        }
    }

    /// File names in a buffer of `struct inotify_event`s.
    fn names<'a>(&self, mut buf: &'a [u8]) -> impl Iterator<Item = OsString> + 'a {
        const HEADER: usize = 16; // wd, mask, cookie, len
        std::iter::from_fn(move || {
            if buf.len() < HEADER {
                return None;
            }
            let len = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
            let end = (HEADER + len).min(buf.len());
            let raw = &buf[HEADER..end];
            let name = raw.split(|&b| b == 0).next().unwrap_or_default().to_vec();
            buf = &buf[end..];
            Some(OsString::from_vec(name))
        })
    }
}
