//! The boot race: traffic that arrives before the guard is attached. The
//! documented order (guard first, while the interface is down and has no
//! address; then the address) leaves no moment at which the rogue can
//! connect. The reverse order opens a window, and this test sees it: the
//! probe is able to catch a leak.

use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use appvm_lab::{
    Lab,
    lab::{APP_PORT, SEC_IF},
    probe::{Listener, tcp_connects},
    status::counter,
    sys::{ok, require_privileges},
};

/// The VM before its boot: the secure interface down, without an address.
fn unbooted_vm() -> Lab {
    let lab = Lab::new().expect("lab");
    lab.vm
        .ns
        .ip(&["addr", "flush", "dev", SEC_IF])
        .expect("flush");
    lab.vm
        .ns
        .ip(&["link", "set", SEC_IF, "down"])
        .expect("down");
    lab.pin_neighbour(&lab.rogue, &lab.vm).expect("neighbour");
    lab
}

fn attach(lab: &Lab) {
    let out = lab.attach_guard();
    ok(&out);
}

fn configure(lab: &Lab) {
    let ns = &lab.vm.ns;
    ns.ip(&["addr", "add", &format!("{}/24", lab.vm.ip), "dev", SEC_IF])
        .expect("addr");
    ns.ip(&["link", "set", SEC_IF, "up"]).expect("up");
}

/// Runs `boot` while the rogue keeps connecting to the application port;
/// returns (attempts, connections) before and after `boot` returned.
fn race(lab: &Lab, boot: impl FnOnce() + Send) -> ((usize, usize), (usize, usize)) {
    let stop = AtomicBool::new(false);
    let booted = AtomicBool::new(false);
    let counts = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    thread::scope(|scope| {
        scope.spawn(|| {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let phase = if booted.load(Ordering::Relaxed) { 2 } else { 0 };
                counts[phase].fetch_add(1, Ordering::Relaxed);
                if tcp_connects(
                    &lab.rogue.ns,
                    lab.vm.ip,
                    APP_PORT,
                    Duration::from_millis(100),
                )
                .unwrap_or(false)
                {
                    counts[phase + 1].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        thread::sleep(Duration::from_millis(300));
        boot();
        booted.store(true, Ordering::Relaxed);
        thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
    });
    let n = |i: usize| counts[i].load(Ordering::Relaxed);
    ((n(0), n(1)), (n(2), n(3)))
}

#[test]
fn documented_order_leaves_no_window() {
    require_privileges();
    let lab = unbooted_vm();
    let listener =
        Listener::start(&lab.vm.ns, APP_PORT, Duration::from_secs(30)).expect("listener");
    let (during, after) = race(&lab, || {
        attach(&lab);
        configure(&lab);
    });
    eprintln!(
        "guard, then address: rogue attempts/connections during boot {during:?}, after {after:?}"
    );
    assert_eq!(during.1 + after.1, 0);
    assert_eq!(listener.accepted(), 0);
    assert!(during.0 > 0 && after.0 > 0, "{during:?} {after:?}");
    let out = lab.appvm(&lab.vm, &["vm", "status", "--iface", SEC_IF, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status");
    assert!(
        counter(&status[0], "in_drop_foreign_source") > 0,
        "{status}"
    );
}

#[test]
fn address_first_opens_a_window_the_probe_sees() {
    require_privileges();
    let lab = unbooted_vm();
    let _listener =
        Listener::start(&lab.vm.ns, APP_PORT, Duration::from_secs(30)).expect("listener");
    let (during, after) = race(&lab, || {
        configure(&lab);
        thread::sleep(Duration::from_millis(500));
        attach(&lab);
    });
    eprintln!(
        "address, then guard: rogue attempts/connections during boot {during:?}, after {after:?}"
    );
    assert!(during.1 > 0, "the window was not seen: {during:?}");
    assert_eq!(after.1, 0, "{after:?}");
}
