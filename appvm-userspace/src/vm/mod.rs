//! The application-VM guard: configuration, policy, attach/detach/status.

pub mod attach;
pub mod config;
pub mod detach;
pub mod loaded;
pub mod policy;
pub mod status;

use std::path::{Path, PathBuf};

pub use attach::{AttachError, AttachOutcome, attach};
pub use config::{ConfigError, GuardSettings, VmGuardConfig};
pub use detach::{DetachError, detach};
pub use status::{StatusError, VmStatus, status};

/// Opens the guard's pinned policy maps in `dir`.
pub fn open_policy(
    dir: &Path,
) -> Result<crate::policy_slots::PolicyMaps<aya::maps::MapData>, crate::policy_slots::PolicyMapError>
{
    crate::policy_slots::PolicyMaps::open_pinned(
        dir,
        appvm_common::pins::vm::PIN_MAP_POLICY,
        appvm_common::pins::vm::PIN_MAP_POLICY_SLOT,
    )
}

/// Where the guard of `iface` is pinned under `root`.
///
/// bpffs refuses names with a dot (reserved for the kernel), and interface
/// names may have one (`eth0.100`), so `.` and `%` are percent-encoded.
pub fn pin_dir(root: &Path, iface: &str) -> PathBuf {
    root.join(iface.replace('%', "%25").replace('.', "%2e"))
}

/// The interface a pin directory name stands for (inverse of [`pin_dir`]);
/// `None` for names appvm does not create (staging directories start with `_`).
pub fn iface_of_pin_dir(name: &str) -> Option<String> {
    (!name.starts_with('_')).then(|| name.replace("%2e", ".").replace("%25", "%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dir_names_avoid_dots_and_round_trip() {
        let root = Path::new("/sys/fs/bpf/appvm");
        for iface in ["eth0", "eth0.100", "a%2eb", "br-lan"] {
            let dir = pin_dir(root, iface);
            let name = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert!(!name.contains('.'), "bpffs refuses dots: {name}");
            assert_eq!(iface_of_pin_dir(&name).as_deref(), Some(iface));
        }
        assert_eq!(iface_of_pin_dir("_staging_eth0_12"), None);
    }
}
