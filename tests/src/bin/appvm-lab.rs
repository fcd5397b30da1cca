//! `appvm-lab [demo]`: builds the namespace lab, attaches the guard with the
//! `appvm` binary, tries every flow, prints the table and the counters,
//! cleans up. Exits non-zero if any flow differs from its expectation.
//! Run through `cargo xtask demo`, which does the set-up and builds first.
//!
//! `appvm-lab bench [--repeat N] [--runs N] [--packets N] [--rounds N]
//! [--changes N] [--json FILE]`: every benchmark (`cargo xtask bench`);
//! `appvm-lab micro [REPEAT] [RUNS]`: only the per-packet cost through
//! `BPF_PROG_TEST_RUN`.
//!
//! `appvm-lab guest`: the guard at the boot of a qemu guest on the lab's
//! secure network (`cargo xtask vm-test`).

use std::process::ExitCode;

use appvm_lab::{Lab, lab::SEC_IF, scenario, sys};

fn main() -> ExitCode {
    sys::require_privileges();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("demo") => demo(),
        Some("micro") => micro(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("guest") => guest(),
        Some(other) => {
            eprintln!(
                "appvm-lab: unknown command {other:?} (demo | bench [--json FILE]... | micro [REPEAT] [RUNS] | fuzz [COUNT] [SEED] | guest)"
            );
            ExitCode::from(2)
        }
    }
}

/// The value after `--name` in `args`, parsed, or `default`.
fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stats_off() -> bool {
    let on = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|s| s.trim() != "0");
    if on {
        eprintln!(
            "appvm-lab: kernel.bpf_stats_enabled is on (adds ~100 ns per run): turn it off to time"
        );
    }
    !on
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} x {cpu}, Linux {}", kernel.trim())
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Every benchmark: micro, net, sync, control plane.
fn bench(args: &[String]) -> ExitCode {
    if !stats_off() {
        return ExitCode::FAILURE;
    }
    let repeat = flag(args, "--repeat", 1_000_000);
    let runs = flag(args, "--runs", 11);
    let packets = flag(args, "--packets", 200_000);
    let rounds = flag(args, "--rounds", 20);
    let changes = flag(args, "--changes", 200);
    let json: String = flag(args, "--json", String::new());
    // `--only micro|net|sync|control`: one section (while working on it).
    let only: String = flag(args, "--only", String::new());
    let wanted = |section: &str| only.is_empty() || only == section;
    let dir = std::env::temp_dir().join(format!("appvm-bench-{}", std::process::id()));
    drop(std::fs::create_dir_all(&dir));
    let result = (|| -> Result<appvm_lab::bench_report::Report, String> {
        let (mut guard, mut backend, mut net, mut sync, mut control) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if wanted("micro") {
            eprintln!("bench: micro (BPF_PROG_TEST_RUN)");
            guard = appvm_lab::micro::run(repeat, runs)?;
            backend = appvm_lab::micro::backend(repeat, runs, &[1, 1_000, 65_536])?;
        }
        if wanted("net") {
            eprintln!("bench: net (live frames through a veth)");
            net = appvm_lab::net_bench::run(&[1_000, 65_536], packets, rounds, &dir)?;
        }
        if wanted("sync") {
            eprintln!("bench: sync");
            sync = [1_000, 10_000, 65_536]
                .into_iter()
                .map(|n| appvm_lab::micro::sync(n).map(|(full, one)| (n, full, one)))
                .collect::<Result<Vec<_>, _>>()?;
        }
        if wanted("control") {
            eprintln!("bench: control plane");
            // At 65,536 VMs a change takes about a second (the whole table
            // is re-read): a tenth of the changes keeps the run short.
            control = [(1_000, changes), (65_536, (changes / 10).max(10))]
                .into_iter()
                .map(|(n, k)| appvm_lab::control_bench::run(n, k))
                .collect::<Result<Vec<_>, _>>()?;
        }
        Ok(appvm_lab::bench_report::Report {
            date: today(),
            machine: machine(),
            repeat,
            guard,
            backend,
            net,
            sync,
            control,
        })
    })();
    drop(std::fs::remove_dir_all(&dir));
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("appvm-lab: bench failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.format());
    if !json.is_empty() {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if let Err(e) = std::fs::write(&json, text + "\n") {
            eprintln!("appvm-lab: cannot write {json}: {e}");
            return ExitCode::FAILURE;
        }
        println!("\nJSON written to {json}");
    }
    if report.checks_ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "appvm-lab: a configuration of the net benchmark did not drop or pass exactly what it should"
        );
        ExitCode::FAILURE
    }
}

fn micro(args: &[String]) -> ExitCode {
    let repeat = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(11);
    if !stats_off() {
        return ExitCode::FAILURE;
    }
    let guard = appvm_lab::micro::run(repeat, runs);
    let backend = appvm_lab::micro::backend(repeat, runs, &[1, 1_000, 65_536]);
    match guard.and_then(|g| backend.map(|b| (g, b))) {
        Ok((guard, backend)) => {
            println!("== VM guard");
            print!("{}", appvm_lab::micro::format(&guard, repeat));
            println!("== backend");
            print!("{}", appvm_lab::micro::format(&backend, repeat));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("appvm-lab: micro benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `fuzz [COUNT] [SEED]`: COUNT frames per program and policy.
fn fuzz(args: &[String]) -> ExitCode {
    let count = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0x00c0_ffee);
    let vm = appvm_lab::fuzz::run(count, seed);
    let backend = appvm_lab::fuzz::backend::run(count, seed);
    let mut status = ExitCode::SUCCESS;
    for (what, result) in [("VM guard", vm), ("backend", backend)] {
        println!("== {what}");
        if fuzz_report(result) != ExitCode::SUCCESS {
            status = ExitCode::FAILURE;
        }
    }
    status
}

fn fuzz_report(result: Result<appvm_lab::fuzz::Report, String>) -> ExitCode {
    match result {
        Ok(r) => {
            println!(
                "frames tried {}, refused by test-run {}, disagreements {}, {:.0} frames/s ({:.1} s)",
                r.tried,
                r.refused,
                r.disagreements.len(),
                r.frames_per_sec(),
                r.seconds
            );
            for (program, n) in &r.programs {
                println!("  program {program:<24} {n:>10} frames");
            }
            for (reason, n) in &r.reasons {
                println!("  {reason:<32} {n:>10}");
            }
            for d in r.disagreements.iter().take(10) {
                let hex: String = d.frame.iter().map(|b| format!("{b:02x}")).collect();
                println!(
                    "DISAGREE {} policy {} model {} kernel {}: {hex}",
                    d.program, d.policy, d.model, d.kernel
                );
            }
            if r.disagreements.is_empty() {
                ExitCode::SUCCESS
            } else {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/new");
                if let Err(e) = appvm_lab::fuzz::save(&dir, &r.disagreements) {
                    eprintln!("appvm-lab: cannot save the corpus: {e}");
                }
                eprintln!("disagreements saved under {}", dir.display());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("appvm-lab: fuzz failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn guest() -> ExitCode {
    let report = match appvm_lab::guest_lab::run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("appvm-lab: guest run failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<20} {:>10} {:>14}", "step", "wall (s)", "guest uptime");
    for (step, wall, uptime) in &report.steps {
        println!("{step:<20} {:>10.1} {uptime:>14}", wall.as_secs_f64());
    }
    println!();
    print!("{}", appvm_lab::pathway::format_checks(&report.checks));
    println!("\nthe guest's `appvm vm status --json` (non-zero counters, read off its console):");
    for (reason, n) in &report.counters {
        println!("  {reason:<32} {n:>8}");
    }
    println!(
        "\nwhole run (lab, servers, image, boot, checks, power-off): {:.1} s",
        report.total.as_secs_f64()
    );
    if report.checks.iter().all(appvm_lab::pathway::Check::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo() -> ExitCode {
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
    println!(
        "public: client {} on the internet side, backend {}:{} (the proxy's port)",
        lab.public.ip,
        appvm_lab::lab::BACKEND_PUBLIC_IP,
        appvm_lab::lab::PUBLIC_PORT
    );
    println!(
        "guard: appvm vm attach --iface {SEC_IF} --backend-ip {} --backend-mac {} --app-port 443 (inside vm)",
        lab.backend.ip,
        appvm::vm::config::format_mac(lab.backend.mac)
    );
    println!(
        "backend: appvm table add --name redcap --mac {} ...; appvm backend run (pool 192.168.128.16/28)\n",
        appvm::vm::config::format_mac(lab.vm.mac)
    );
    let run = match scenario::run_lab(&lab) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("appvm-lab: scenario failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", scenario::format_table(&run.rows));
    println!(
        "\nappvm vm status (inside vm, before detach):\n{}",
        run.status_text
    );
    println!(
        "appvm backend status (on the backend, before detach):\n{}",
        run.backend_status_text
    );
    let bad = run.rows.iter().filter(|r| !r.ok()).count();
    drop(lab);
    println!("lab removed (namespaces and pins)\n");
    let (checks, bad_checks) = match pathway() {
        Ok(checks) => {
            let bad = checks.iter().filter(|c| !c.ok()).count();
            (checks.len(), bad)
        }
        Err(e) => {
            eprintln!("appvm-lab: external pathway failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if bad == 0 && bad_checks == 0 {
        println!(
            "all {} flows and {checks} pathway checks as expected",
            run.rows.len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{bad} flow(s) and {bad_checks} pathway check(s) differ from the expectation");
        ExitCode::FAILURE
    }
}

/// The external pathway with real Nginx, dnsmasq and DHCP; prints its
/// checks and the counters they moved.
fn pathway() -> Result<Vec<appvm_lab::pathway::Check>, String> {
    use appvm_lab::pathway::{EXTERNAL_NAME, Pathway, format_checks};
    println!(
        "external pathway: https://{EXTERNAL_NAME}:{} on the backend (Nginx, dnsmasq, appvm backend run);",
        appvm_lab::lab::PUBLIC_PORT
    );
    println!(
        "the vm boots: appvm vm attach, then DHCP (busybox udhcpc), then HTTPS on :443 with its appvm cert issue certificate\n"
    );
    let mut p = Pathway::start()?;
    let checks = p.checks()?;
    print!("{}", format_checks(&checks));
    // The rogue tries to pass for the VM: the events and the counters show it.
    let (lab, rogue) = (&p.lab, &p.lab.rogue);
    let spoof: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            appvm_lab::frames::tcp_syn(
                rogue.mac,
                lab.backend.mac,
                lab.vm.ip,
                lab.backend.ip,
                47000 + i,
                443,
            )
        })
        .collect();
    appvm_lab::probe::send_frames(&rogue.ns, SEC_IF, spoof)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let on_backend = |args: &[&str]| -> String {
        let mut cmd = lab.backend.ns.command(sys::appvm_bin());
        cmd.args(args)
            .env("APPVM_PIN_ROOT", lab.pin_root())
            .env("APPVM_CONFIG", &p.config);
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    println!("\n$ appvm events   # drop events, rate-limited in the kernel (guard and backend)");
    print!("{}", on_backend(&["events"]));
    println!("\n$ appvm stats");
    print!("{}", on_backend(&["stats"]));
    if !checks.iter().all(appvm_lab::pathway::Check::ok) {
        eprintln!("{}", p.logs());
    }
    drop(p);
    println!("pathway removed (servers, namespaces, pins)\n");
    Ok(checks)
}
