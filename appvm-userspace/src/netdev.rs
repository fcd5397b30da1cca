//! Network interfaces by name.

use std::ffi::CString;

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("invalid --iface '{0}': no such network interface")]
    Unknown(String),
}

/// The interface index of `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32, NetdevError> {
    let unknown = || NetdevError::Unknown(name.to_owned());
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(unknown());
    }
    let c_name = CString::new(name).map_err(|_nul| unknown())?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(unknown())
    } else {
        Ok(index)
    }
}
