//! The raw `bpf(2)` syscall, for the few commands aya 0.14 does not wrap
//! (batch map updates, link info with the interface).

use std::io;

/// `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
///
/// Every pointer stored in `attr` must be valid for what `cmd` does with
/// it (read or written, for the lengths `attr` gives).
pub(crate) unsafe fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> io::Result<i64> {
    // SAFETY: `attr` is a live, writable buffer of the size passed; the
    // pointers inside it are the caller's promise.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), size_of_val(attr)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
