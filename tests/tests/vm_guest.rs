//! The guard at the boot of a real VM: a qemu guest (TCG) on the lab's
//! secure network, booted as the VM controller boots it (guard before the
//! interface is configured, then DHCP, then HTTPS), probed from the
//! namespaces. Also `cargo xtask vm-test`.

use appvm_lab::{guest_lab, pathway::format_checks, sys::require_privileges};

#[test]
fn guard_holds_from_the_guest_boot_on() {
    require_privileges();
    let report = guest_lab::run().unwrap_or_else(|e| panic!("{e}"));
    let table = format_checks(&report.checks);
    assert!(
        report.checks.iter().all(appvm_lab::pathway::Check::ok),
        "{table}"
    );
    let boot = &report.steps[0];
    eprintln!(
        "{table}\nboot to userspace {:.1} s wall ({} s guest), whole run {:.1} s",
        boot.1.as_secs_f64(),
        boot.2,
        report.total.as_secs_f64()
    );
}
