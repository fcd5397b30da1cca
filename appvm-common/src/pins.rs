//! Program, map and link names, and where they are pinned on bpffs.
//!
//! Layout (bpfman-like): `<root>/<iface>/{prog_*,link_*,map_*}` where `root`
//! defaults to [`DEFAULT_PIN_ROOT`] and can be moved (tests use one per run).

/// Default root of appvm's pins.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/appvm";
/// Environment variable that overrides the pin root.
pub const PIN_ROOT_ENV: &str = "APPVM_PIN_ROOT";

/// The VM guard's programs and maps, by name in the eBPF object.
pub mod vm {
    /// XDP program on the secure interface's ingress.
    pub const PROG_INGRESS: &str = "vm_ingress";
    /// tcx program on the secure interface's ingress, after XDP: drops
    /// frames whose VLAN tag was lifted into skb metadata.
    pub const PROG_INGRESS_VLAN: &str = "vm_ingress_vlan";
    /// tcx program on the secure interface's egress.
    pub const PROG_EGRESS: &str = "vm_egress";
    /// `Array<VmPolicy>` with `POLICY_SLOTS` entries.
    pub const MAP_POLICY: &str = "VM_POLICY";
    /// `Array<u32>` with one entry: the active policy slot.
    pub const MAP_POLICY_SLOT: &str = "VM_POLICY_SLOT";
    /// `PerCpuArray<Counter>` indexed by `VmReason`.
    pub const MAP_COUNTERS: &str = "VM_COUNTERS";

    /// Pin file names inside `<root>/<iface>/`.
    pub const PIN_PROG_INGRESS: &str = "prog_ingress";
    pub const PIN_PROG_INGRESS_VLAN: &str = "prog_ingress_vlan";
    pub const PIN_PROG_EGRESS: &str = "prog_egress";
    pub const PIN_LINK_INGRESS: &str = "link_ingress";
    pub const PIN_LINK_INGRESS_VLAN: &str = "link_ingress_vlan";
    pub const PIN_LINK_EGRESS: &str = "link_egress";
    pub const PIN_MAP_POLICY: &str = "map_policy";
    pub const PIN_MAP_POLICY_SLOT: &str = "map_policy_slot";
    pub const PIN_MAP_COUNTERS: &str = "map_counters";

    /// Link pins, in the order `detach` removes them.
    pub const LINK_PINS: &[&str] = &[PIN_LINK_INGRESS, PIN_LINK_INGRESS_VLAN, PIN_LINK_EGRESS];

    /// Every pin a complete attachment has.
    pub const ALL_PINS: &[&str] = &[
        PIN_PROG_INGRESS,
        PIN_PROG_INGRESS_VLAN,
        PIN_PROG_EGRESS,
        PIN_LINK_INGRESS,
        PIN_LINK_INGRESS_VLAN,
        PIN_LINK_EGRESS,
        PIN_MAP_POLICY,
        PIN_MAP_POLICY_SLOT,
        PIN_MAP_COUNTERS,
    ];
}
