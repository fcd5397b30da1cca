//! What a pinned link is attached to.
//!
//! aya's `LinkInfo` does not expose the interface of an XDP or tcx link, and
//! `appvm vm status` must tell an attached guard from a defunct one (its
//! interface gone), so this reads `bpf_link_info` directly.

use crate::sys_bpf::bpf;
use std::{
    ffi::CString,
    io,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The parts of `struct bpf_link_info` appvm reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PinnedLinkInfo {
    /// Kernel link id.
    pub id: u32,
    /// Id of the program the link runs.
    pub prog_id: u32,
    /// Interface the link is attached to; 0 once the interface is gone.
    pub ifindex: u32,
}

/// Opens a pinned BPF object (`BPF_OBJ_GET`).
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // union bpf_attr { __aligned_u64 pathname; __u32 bpf_fd; __u32 file_flags; }
    let mut attr = [0_u64; 2];
    attr[0] = c_path.as_ptr() as u64;
    // SAFETY: `pathname` points at `c_path`, alive until the call returns.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut attr) }?;
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads id, program and interface of the link pinned at `path`.
pub fn pinned_link_info(path: &Path) -> io::Result<PinnedLinkInfo> {
    use std::os::fd::AsRawFd as _;
    let fd = open_pinned(path)?;
    // struct bpf_link_info: type, id, prog_id, then a union aligned to 8 whose
    // xdp and tcx members both start with `__u32 ifindex` (word 4).
    let mut info = [0_u32; 32];
    let mut attr = [0_u64; 2];
    attr[0] = u64::from(fd.as_raw_fd() as u32) | ((size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: `info` points at `info`, writable for the length given.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(PinnedLinkInfo {
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
    })
}
