//! `appvm-lab demo`: builds the namespace lab, attaches the guard with the
//! `appvm` binary, tries every flow, prints the table and the counters,
//! cleans up. Exits non-zero if any flow differs from its expectation.
//! Run through `cargo xtask demo`, which does the set-up and builds first.

use std::process::ExitCode;

use appvm_lab::{Lab, lab::SEC_IF, scenario, sys};

fn main() -> ExitCode {
    sys::require_privileges();
    let lab = match Lab::new() {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("appvm-lab: cannot build the lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "lab: secure network 192.168.128.0/24 on a bridge; backend {} ({}), vm {} ({}), rogue {} ({})",
        lab.backend.ip,
        lab.backend.ns.name(),
        lab.vm.ip,
        lab.vm.ns.name(),
        lab.rogue.ip,
        lab.rogue.ns.name()
    );
    println!("guard: appvm vm attach --iface {SEC_IF} --backend-ip {} --backend-mac {} --app-port 443 (inside vm)\n", lab.backend.ip, appvm::vm::config::format_mac(lab.backend.mac));
    let run = match scenario::run_vm_guard(&lab) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("appvm-lab: scenario failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", scenario::format_table(&run.rows));
    println!("\nappvm vm status (before detach):\n{}", run.status_text);
    let bad = run.rows.iter().filter(|r| !r.ok()).count();
    drop(lab);
    println!("lab removed (namespaces and pins)");
    if bad == 0 {
        println!("all {} flows as expected", run.rows.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("{bad} flow(s) differ from the expectation");
        ExitCode::FAILURE
    }
}
