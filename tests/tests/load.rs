//! Four bursts of 500 concurrent HTTPS survey requests through Nginx to the VM while the
//! table changes 100 times per second: every request answered 200, every
//! table change applied, no rogue connection, and afterwards the kernel
//! map equal to the table.

use std::time::Duration;

use appvm_lab::{enforced, load, pathway::Pathway, sys::require_privileges};

const REQUESTS: usize = 500;
const ROUNDS: usize = 4;
const CHANGES_PER_SEC: u32 = 100;

#[test]
fn concurrent_surveys_while_the_table_changes() {
    require_privileges();
    let p = Pathway::start().unwrap_or_else(|e| panic!("pathway: {e}"));
    let report =
        load::run(&p, REQUESTS, ROUNDS, CHANGES_PER_SEC).unwrap_or_else(|e| panic!("load: {e}"));
    let text = report.format();
    eprintln!("{text}");
    assert_eq!(report.ok(), REQUESTS * ROUNDS, "{text}\n{}", p.logs());
    assert!(report.table_changes > 0, "{text}");
    assert!(
        report.table_change_failures.is_empty(),
        "{text}\n{:?}",
        report.table_change_failures
    );
    assert!(report.rogue_attempts > 0, "{text}");
    assert_eq!(report.rogue_connected, 0, "{text}");
    let table = p.lab.files().join("table.toml");
    enforced::wait_map_equals_table(p.lab.pin_root(), &table, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
}
