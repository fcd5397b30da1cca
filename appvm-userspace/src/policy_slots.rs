//! Double-buffered policy maps (VM guard and backend alike): a two-slot
//! array and a one-entry array naming the active slot.

use std::path::Path;

use appvm_common::{VmPolicy, policy::POLICY_SLOTS};
use aya::{
    Pod,
    maps::{Array, Map, MapData, MapError},
};

#[derive(Debug, thiserror::Error)]
pub enum PolicyMapError {
    #[error("cannot open pinned map {path}: {source}")]
    Open { path: String, source: MapError },
    #[error("cannot access policy map: {0}")]
    Access(#[from] MapError),
}

/// The two maps that hold a policy of type `P`.
pub struct PolicyMaps<T, P: Pod = VmPolicy> {
    pub policy: Array<T, P>,
    pub slot: Array<T, u32>,
}

impl<T, P: Pod> std::fmt::Debug for PolicyMaps<T, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMaps").finish_non_exhaustive()
    }
}

fn open_array<V: Pod>(dir: &Path, name: &str) -> Result<Array<MapData, V>, PolicyMapError> {
    let path = dir.join(name);
    MapData::from_pin(&path)
        .and_then(|data| Array::try_from(Map::Array(data)))
        .map_err(|source| PolicyMapError::Open {
            path: path.display().to_string(),
            source,
        })
}

impl<P: Pod> PolicyMaps<MapData, P> {
    /// Opens the pinned policy maps `dir/policy_pin` and `dir/slot_pin`.
    pub fn open_pinned(
        dir: &Path,
        policy_pin: &str,
        slot_pin: &str,
    ) -> Result<Self, PolicyMapError> {
        Ok(Self {
            policy: open_array(dir, policy_pin)?,
            slot: open_array(dir, slot_pin)?,
        })
    }
}

impl<T: std::borrow::BorrowMut<MapData>, P: Pod> PolicyMaps<T, P> {
    /// The active slot index (0 on a fresh map).
    pub fn active_slot(&self) -> Result<u32, MapError> {
        self.slot.get(&0, 0)
    }

    /// The policy the programs enforce now.
    pub fn active(&self) -> Result<P, MapError> {
        let slot = self.active_slot()?;
        self.policy.get(&(slot % POLICY_SLOTS), 0)
    }

    /// Writes `policy` into the inactive slot, then makes it active with one
    /// 4-byte write: programs see the old policy or the new one, never a mix.
    pub fn install(&mut self, policy: &P) -> Result<u32, MapError> {
        let next = (self.active_slot()? + 1) % POLICY_SLOTS;
        self.policy.set(next, *policy, 0)?;
        self.slot.set(0, next, 0)?;
        Ok(next)
    }
}
