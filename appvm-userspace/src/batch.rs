//! `BPF_MAP_UPDATE_BATCH` / `BPF_MAP_DELETE_BATCH`: aya 0.14 has no batch
//! API, and one syscall per entry makes a 65,536-entry sync several times
//! slower.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

use crate::sys_bpf::bpf;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// `struct { in_batch, out_batch, keys, values: u64; count, map_fd: u32;
/// elem_flags, flags: u64 }` of `union bpf_attr`.
fn batch(
    cmd: libc::c_long,
    map: BorrowedFd<'_>,
    keys: *const u8,
    values: *const u8,
    count: usize,
) -> io::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let count32 = u32::try_from(count).map_err(io::Error::other)?;
    let mut attr = [0_u64; 7];
    attr[2] = keys as u64;
    attr[3] = values as u64;
    attr[4] = u64::from(count32) | (u64::from(map.as_raw_fd() as u32) << 32);
    // SAFETY: the kernel reads `count` keys and values from the pointers,
    // which callers size.
    let result = unsafe { bpf(cmd, &mut attr) };
    result.map(drop).map_err(|e| {
        // The kernel writes back how many entries it processed.
        let done = (attr[4] & 0xffff_ffff) as usize;
        io::Error::new(e.kind(), format!("{e} after {done} of {count} entries"))
    })
}

/// Inserts or replaces `keys[i] -> values[i]` in a (non-per-CPU) hash or
/// array map, in one syscall.
pub fn update<K: Pod, V: Pod>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    if keys.len() != values.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "keys and values differ in length",
        ));
    }
    batch(
        BPF_MAP_UPDATE_BATCH,
        map,
        keys.as_ptr().cast(),
        values.as_ptr().cast(),
        keys.len(),
    )
}

/// Inserts or replaces `keys[i]` in a per-CPU map, with the values of
/// every CPU given: `values[i * cpus + c]` is CPU `c`'s, in one syscall.
pub fn update_percpu<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    cpus: usize,
) -> io::Result<()> {
    if keys.len() * cpus != values.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "per-CPU values do not match keys x CPUs",
        ));
    }
    // The kernel lays per-CPU values out rounded up to 8 bytes each.
    let stride = size_of::<V>().next_multiple_of(8);
    let mut bytes = vec![0_u8; stride * values.len()];
    for (chunk, v) in bytes.chunks_exact_mut(stride).zip(values) {
        // SAFETY: `V: Pod` is plain data of `size_of::<V>()` bytes.
        let raw = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<V>())
        };
        chunk[..raw.len()].copy_from_slice(raw);
    }
    batch(
        BPF_MAP_UPDATE_BATCH,
        map,
        keys.as_ptr().cast(),
        bytes.as_ptr(),
        keys.len(),
    )
}

/// Deletes `keys` (all must exist) in one syscall.
pub fn delete<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    batch(
        BPF_MAP_DELETE_BATCH,
        map,
        keys.as_ptr().cast(),
        std::ptr::null(),
        keys.len(),
    )
}
