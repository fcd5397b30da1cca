//! aya-log: the default object has no logging at all (no log map, nothing
//! on the per-packet path); one built with `APPVM_EBPF_DEBUG_LOG=1` logs
//! every verdict. CI runs this file in both builds.

use std::{
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use appvm::{
    debug_log::COMPILED_IN,
    vm::{GuardSettings, loaded::LoadedGuard},
};
use appvm_lab::{frames, sys::require_privileges};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().expect("lock").push(record.args().to_string());
    }
    fn flush(&self) {}
}

#[test]
fn kernel_logging_only_in_debug_log_builds() {
    require_privileges();
    let mut g = LoadedGuard::load().expect("load");
    let policy = GuardSettings {
        iface: Some("eth0".into()),
        backend_ip: Some("10.0.0.1".into()),
        app_ports: vec![443],
        ..GuardSettings::default()
    }
    .validate()
    .expect("valid")
    .to_policy();
    g.install(&policy).expect("policy");
    let capture = Capture::default();
    let logger = g.kernel_logger(capture.clone());
    if !COMPILED_IN {
        assert!(
            logger.is_none(),
            "the default object must not carry aya-log"
        );
        return;
    }
    let mut logger = logger.expect("a debug-log object has a log map");
    let syn = frames::tcp_syn(
        [2, 0, 0, 0, 0, 0x66],
        [2, 0, 0, 0, 0, 0x20],
        Ipv4Addr::new(10, 0, 0, 66),
        Ipv4Addr::new(10, 0, 0, 20),
        1,
        443,
    );
    g.run_ingress(&syn, 1).expect("run");
    logger.flush();
    let lines = capture.0.lock().expect("lock").clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("vm_ingress: reason 16 passes 0")),
        "{lines:?}"
    );
}
