//! Drop events from the kernel: decoding, the pinned ring buffers and their
//! statistics, the rate-limit configuration.

use std::{net::Ipv4Addr, path::Path};

use appvm_common::{
    BackendReason, VmReason,
    event::{
        DropEvent, EVENT_STAT_COUNT, EVENT_STAT_LOST, EVENT_STAT_SENT, EVENT_STAT_SUPPRESSED,
        EventConfig, EventProgram,
    },
    pins::events as pins,
};
use aya::maps::{Array, Map, MapData, MapError, PerCpuArray, RingBuf};
use serde::Serialize;

use crate::vm::config::format_mac;

/// A decoded drop event, as printed and logged (stable JSON field names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// RFC 3339, UTC.
    pub time: String,
    pub ifindex: u32,
    pub program: &'static str,
    pub direction: &'static str,
    pub reason: &'static str,
    /// `ipv4`, `arp`, `ipv6`, `vlan` or the ethertype in hex.
    pub l3: String,
    /// `tcp`, `udp`, `icmp` or the IP protocol number; empty when not IPv4.
    pub protocol: String,
    pub src_ip: Option<Ipv4Addr>,
    pub dst_ip: Option<Ipv4Addr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub src_mac: String,
}

fn monotonic_ns() -> u64 {
    // SAFETY: zeroed timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Wall-clock time of a kernel monotonic timestamp.
fn wall_time(ts_ns: u64) -> String {
    let age = monotonic_ns().saturating_sub(ts_ns);
    let t = time::OffsetDateTime::now_utc()
        - time::Duration::nanoseconds(i64::try_from(age).unwrap_or(i64::MAX));
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Option<EventView> {
    if bytes.len() < size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: length checked; DropEvent is plain data valid for any bits.
    let e: DropEvent = unsafe { bytes.as_ptr().cast::<DropEvent>().read_unaligned() };
    let program = EventProgram::from_u8(e.program)?;
    let reason = match program {
        EventProgram::VmIngress | EventProgram::VmIngressVlan | EventProgram::VmEgress => {
            VmReason::from_index(e.reason)?.name()
        }
        EventProgram::BackendPublic | EventProgram::BackendSecure => {
            BackendReason::from_index(e.reason)?.name()
        }
    };
    let ethertype = u16::from_be(e.ethertype_be);
    let ipv4 = ethertype == 0x0800 && e.src_ip_be != 0;
    let ip = |raw: u32| ipv4.then(|| Ipv4Addr::from(raw.to_ne_bytes()));
    let has_ports = ipv4 && matches!(e.proto, 6 | 17) && (e.src_port_be != 0 || e.dst_port_be != 0);
    let port = |raw: u16| has_ports.then(|| u16::from_be(raw));
    Some(EventView {
        time: wall_time(e.ts_ns),
        ifindex: e.ifindex,
        program: program.name(),
        direction: program.direction(),
        reason,
        l3: match ethertype {
            0x0800 => "ipv4".into(),
            0x0806 => "arp".into(),
            0x86dd => "ipv6".into(),
            0x8100 | 0x88a8 | 0x9100 => "vlan".into(),
            other => format!("0x{other:04x}"),
        },
        protocol: match (ipv4, e.proto) {
            (false, _) => String::new(),
            (true, 6) => "tcp".into(),
            (true, 17) => "udp".into(),
            (true, 1) => "icmp".into(),
            (true, p) => p.to_string(),
        },
        src_ip: ip(e.src_ip_be),
        dst_ip: ip(e.dst_ip_be),
        src_port: port(e.src_port_be),
        dst_port: port(e.dst_port_be),
        src_mac: format_mac(e.src_mac),
    })
}

/// Sent / suppressed / lost totals over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    pub sent: u64,
    pub suppressed: u64,
    pub lost: u64,
}

pub fn read_stats(map: &PerCpuArray<MapData, u64>) -> Result<EventStats, MapError> {
    let sum = |i: u32| -> Result<u64, MapError> { Ok(map.get(&i, 0)?.iter().sum()) };
    debug_assert_eq!(EVENT_STAT_COUNT, 3);
    Ok(EventStats {
        sent: sum(EVENT_STAT_SENT)?,
        suppressed: sum(EVENT_STAT_SUPPRESSED)?,
        lost: sum(EVENT_STAT_LOST)?,
    })
}

/// The pinned event maps of one attachment directory.
pub struct PinnedEvents {
    pub ring: RingBuf<MapData>,
    pub stats: PerCpuArray<MapData, u64>,
    pub config: Array<MapData, EventConfig>,
}

impl std::fmt::Debug for PinnedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedEvents").finish_non_exhaustive()
    }
}

impl PinnedEvents {
    pub fn open(dir: &Path) -> Result<Self, MapError> {
        let data = |pin: &str| MapData::from_pin(dir.join(pin));
        Ok(Self {
            ring: RingBuf::try_from(Map::RingBuf(data(pins::PIN_EVENTS)?))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(data(pins::PIN_EVENT_STATS)?))?,
            config: Array::try_from(Map::Array(data(pins::PIN_EVENT_CONFIG)?))?,
        })
    }

    /// Every event waiting in the ring, decoded (consumes them).
    pub fn drain(&mut self) -> Vec<EventView> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(e) = decode(&item) {
                out.push(e);
            }
        }
        out
    }
}
