//! Program, map and link names, and where they are pinned on bpffs.
//!
//! Layout (bpfman-like): `<root>/<iface>/{prog_*,link_*,map_*}` where `root`
//! defaults to [`DEFAULT_PIN_ROOT`] and can be moved (tests use one per run).

/// Default root of appvm's pins.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/appvm";
/// Environment variable that overrides the pin root.
pub const PIN_ROOT_ENV: &str = "APPVM_PIN_ROOT";

/// Drop-event maps, shared by every program of one loaded object and
/// pinned beside the programs' other maps.
pub mod events {
    /// `RingBuf` of `DropEvent`s.
    pub const MAP_EVENTS: &str = "EVENTS";
    /// `Array<EventConfig>`, one entry.
    pub const MAP_EVENT_CONFIG: &str = "EVENT_CONFIG";
    /// `PerCpuArray<TokenBucket>`, one entry.
    pub const MAP_EVENT_BUCKET: &str = "EVENT_BUCKET";
    /// `PerCpuArray<u64>` indexed by `EVENT_STAT_*`.
    pub const MAP_EVENT_STATS: &str = "EVENT_STATS";
    /// Pin names (VM guard: `<root>/<iface>/`, backend: `<root>/backend/`).
    pub const PIN_EVENTS: &str = "map_events";
    pub const PIN_EVENT_CONFIG: &str = "map_event_config";
    pub const PIN_EVENT_BUCKET: &str = "map_event_bucket";
    pub const PIN_EVENT_STATS: &str = "map_event_stats";
    /// (map, pin) pairs.
    pub const MAPS: &[(&str, &str)] = &[
        (MAP_EVENTS, PIN_EVENTS),
        (MAP_EVENT_CONFIG, PIN_EVENT_CONFIG),
        (MAP_EVENT_BUCKET, PIN_EVENT_BUCKET),
        (MAP_EVENT_STATS, PIN_EVENT_STATS),
    ];
}

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

/// The backend's programs and maps, by name in the eBPF object; pinned under
/// `<root>/backend/`.
pub mod backend {
    /// Directory under the pin root.
    pub const DIR: &str = "backend";
    /// XDP on the public interface.
    pub const PROG_PUBLIC: &str = "backend_public";
    /// tcx egress on the public interface: records outbound flows.
    pub const PROG_PUBLIC_EGRESS: &str = "backend_public_egress";
    /// XDP on the secure-network interface: anti-spoofing by the table.
    pub const PROG_SECURE: &str = "backend_secure";
    /// `Array<BackendPolicy>` with `BACKEND_POLICY_SLOTS` entries.
    pub const MAP_POLICY: &str = "BACKEND_POLICY";
    /// `Array<u32>`: the active policy slot.
    pub const MAP_POLICY_SLOT: &str = "BACKEND_POLICY_SLOT";
    /// `HashMap<u32, VmEntry>`: the application-VM table by IP.
    pub const MAP_VMS: &str = "BACKEND_VMS";
    /// `PerCpuHashMap<u32, VmTraffic>`: per-VM counters by IP.
    pub const MAP_VM_TRAFFIC: &str = "BACKEND_VM_TRAFFIC";
    /// `LruHashMap<FlowKey, u64>`: outbound flows, last-seen time.
    pub const MAP_FLOWS: &str = "BACKEND_FLOWS";
    /// `PerCpuArray<Counter>` indexed by `BackendReason`.
    pub const MAP_COUNTERS: &str = "BACKEND_COUNTERS";

    pub const PIN_PROG_PUBLIC: &str = "prog_public";
    pub const PIN_PROG_PUBLIC_EGRESS: &str = "prog_public_egress";
    pub const PIN_PROG_SECURE: &str = "prog_secure";
    pub const PIN_LINK_PUBLIC: &str = "link_public";
    pub const PIN_LINK_PUBLIC_EGRESS: &str = "link_public_egress";
    pub const PIN_LINK_SECURE: &str = "link_secure";

    /// Map pins are named after the map: `map_<NAME>` in lower case.
    pub const MAPS: &[&str] = &[
        MAP_POLICY,
        MAP_POLICY_SLOT,
        MAP_VMS,
        MAP_VM_TRAFFIC,
        MAP_FLOWS,
        MAP_COUNTERS,
    ];

    /// Link pins, in the order `detach` removes them.
    pub const LINK_PINS: &[&str] = &[PIN_LINK_PUBLIC, PIN_LINK_PUBLIC_EGRESS, PIN_LINK_SECURE];
}
