//! appvm's kernel programs. Entry points are thin; every packet read goes
//! through [`frame::Frame`], the one bounds-checked accessor.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod backend_maps;
mod backend_public;
mod backend_public_egress;
mod backend_secure;
mod bench;
mod count;
mod debug_log;
mod events;
mod floor;
mod flow;
mod frame;
mod headers;
mod ipv4;
mod ipv6;
mod maps;
mod policy;
mod vm_egress;
mod vm_ingress;
mod vm_ingress_vlan;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path; this is never run.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
