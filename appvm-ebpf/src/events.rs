//! Drop events to user space: a ring buffer behind a per-CPU token bucket,
//! so a flood costs a bounded number of events (the rest are counted as
//! suppressed). Only the drop path comes here.

use appvm_common::event::{
    DEFAULT_EVENT_BURST, DEFAULT_EVENT_RATE, DropEvent, EVENT_RING_BYTES, EVENT_STAT_COUNT,
    EVENT_STAT_LOST, EVENT_STAT_SENT, EVENT_STAT_SUPPRESSED, EventConfig, EventProgram,
    TokenBucket,
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};

use crate::{frame::Frame, headers::*, ipv4::Ipv4};

const NS_PER_SEC: u64 = 1_000_000_000;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);

#[map]
static EVENT_CONFIG: Array<EventConfig> = Array::with_max_entries(1, 0);

#[map]
static EVENT_BUCKET: PerCpuArray<TokenBucket> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_STAT_COUNT, 0);

#[inline(always)]
fn stat(index: u32) {
    if let Some(n) = EVENT_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU value, this CPU only.
        unsafe { *n += 1 };
    }
}

/// Takes one token from this CPU's bucket, refilling it for the time
/// since the last refill.
#[inline(always)]
fn take_token(now: u64) -> bool {
    let (rate, burst) = match EVENT_CONFIG.get(0) {
        Some(c) => (
            if c.rate_per_sec == 0 {
                DEFAULT_EVENT_RATE
            } else {
                c.rate_per_sec
            },
            if c.burst == 0 {
                DEFAULT_EVENT_BURST
            } else {
                c.burst
            },
        ),
        None => (DEFAULT_EVENT_RATE, DEFAULT_EVENT_BURST),
    };
    let Some(b) = EVENT_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    let rate = u64::from(rate);
    // SAFETY: per-CPU value, this CPU only.
    unsafe {
        let elapsed = now.wrapping_sub((*b).last_ns);
        // Under a flood the bucket is empty and no token has been earned
        // since the last one: a multiplication and a compare, no division.
        // Capped at 2 s (a longer gap refills the whole bucket anyway), so
        // the product fits: 2e9 * u32::MAX < u64::MAX. (A saturating
        // multiply would need 128-bit arithmetic, which BPF lacks.)
        let scaled = elapsed.min(2 * NS_PER_SEC) * rate;
        if scaled >= NS_PER_SEC {
            let earned = scaled / NS_PER_SEC;
            (*b).tokens = ((*b).tokens + earned).min(u64::from(burst));
            if elapsed > NS_PER_SEC {
                (*b).last_ns = now;
            } else {
                // Keep the remainder: the rate holds over time. checked_div:
                // a plain `/` by a variable brings a divide-by-zero panic
                // path, which the verifier rejects.
                (*b).last_ns += (earned * NS_PER_SEC).checked_div(rate).unwrap_or(elapsed);
            }
        }
        if (*b).tokens == 0 {
            return false;
        }
        (*b).tokens -= 1;
    }
    true
}

/// Reports a dropped frame (if the rate limit allows).
#[inline(always)]
pub(crate) fn dropped(program: EventProgram, reason: u32, ifindex: u32, frame: &Frame) {
    // The coarse clock (no TSC read) is plenty for a few events a second;
    // the precise one is read only for an event that is sent.
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if !take_token(now) {
        stat(EVENT_STAT_SUPPRESSED);
        return;
    }
    let mut e = DropEvent {
        // SAFETY: as above.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        reason,
        program: program as u8,
        ..DropEvent::default()
    };
    if let Some(mac) = frame.read::<[u8; 6]>(ETH_SRC) {
        e.src_mac = mac;
    }
    if let Some(t) = frame.read::<u16>(ETH_TYPE) {
        e.ethertype_be = t;
    }
    if frame.be16(ETH_TYPE) == Some(ETH_P_IP)
        && let Ok(ip) = Ipv4::parse(frame)
    {
        e.proto = ip.proto;
        e.src_ip_be = ip.src_be;
        e.dst_ip_be = ip.dst_be;
        if !ip.is_later_fragment()
            && let Ok(Some(p)) = ip.ports(frame)
        {
            e.src_port_be = p.src_be;
            e.dst_port_be = p.dst_be;
        }
    }
    match EVENTS.output::<DropEvent>(&e, 0) {
        Ok(()) => stat(EVENT_STAT_SENT),
        Err(_) => stat(EVENT_STAT_LOST),
    }
}
