//! Load on the running pathway: many concurrent HTTPS survey requests from
//! the public client through Nginx to the VM, while the table changes at a
//! steady rate (other VMs added and removed) and the rogue keeps trying
//! the VM's application port.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::{
    lab::{APP_PORT, BACKEND_PUBLIC_IP, PUBLIC_PORT},
    pathway::{EXTERNAL_NAME, Pathway},
    probe::tcp_connects,
};

/// curl runs at most this many transfers at once per process (its cap
/// is 300), so the requests are split over several processes.
const PER_CURL: usize = 250;
/// Names the churn cycles through.
const CHURN_NAMES: u8 = 4;

#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests in all; `rounds` bursts, each all at once.
    pub requests: usize,
    pub rounds: usize,
    /// HTTP status (or curl's failure) -> count.
    pub codes: BTreeMap<String, usize>,
    pub seconds: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub table_changes: usize,
    pub table_change_failures: Vec<String>,
    pub changes_per_sec: f64,
    pub rogue_attempts: usize,
    pub rogue_connected: usize,
}

impl LoadReport {
    pub fn ok(&self) -> usize {
        self.codes.get("200").copied().unwrap_or(0)
    }

    pub fn format(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} HTTPS survey requests ({} bursts of {} at once) in {:.2} s: {} x 200, codes {:?}",
            self.requests,
            self.rounds,
            self.requests / self.rounds.max(1),
            self.seconds,
            self.ok(),
            self.codes
        );
        let _ = writeln!(
            s,
            "  latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.latency_ms_p50, self.latency_ms_p99, self.latency_ms_max
        );
        let _ = writeln!(
            s,
            "  table changes during the bursts: {} ({:.0}/s), {} failed",
            self.table_changes,
            self.changes_per_sec,
            self.table_change_failures.len()
        );
        let _ = writeln!(
            s,
            "  rogue -> vm:{APP_PORT} attempts {}, connected {}",
            self.rogue_attempts, self.rogue_connected
        );
        s
    }
}

/// Runs `rounds` bursts of `requests` concurrent requests while the table
/// changes `changes_per_sec` times per second.
pub fn run(
    p: &Pathway,
    requests: usize,
    rounds: usize,
    changes_per_sec: u32,
) -> Result<LoadReport, String> {
    let lab = &p.lab;
    lab.pin_neighbour(&lab.rogue, &lab.vm)?;
    let stop = AtomicBool::new(false);
    let changes = AtomicUsize::new(0);
    let rogue_attempts = AtomicUsize::new(0);
    let rogue_connected = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let churn_started = Instant::now();
    let window = std::sync::Mutex::new((0_usize, 0_usize));
    let outcome = thread::scope(|scope| {
        // Two workers at half the rate each: one `appvm table` process
        // (a debug build) can take longer than the whole period.
        for worker in 0..2_u8 {
            let (stop, changes, failures) = (&stop, &changes, &failures);
            scope.spawn(move || {
                let period = Duration::from_secs(2) / changes_per_sec.max(1);
                let mut next = Instant::now();
                let mut i: u32 = 0;
                // Bounded: stopped after the bursts, which curl's
                // --max-time bounds, or at two minutes.
                while !stop.load(Ordering::Relaxed)
                    && churn_started.elapsed() < Duration::from_secs(120)
                {
                    let k = worker * CHURN_NAMES
                        + u8::try_from((i / 2) % u32::from(CHURN_NAMES)).unwrap_or(0);
                    let name = format!("churn{k}");
                    let out = if i.is_multiple_of(2) {
                        let mac = format!("02:00:00:00:02:{k:02x}");
                        lab.table(
                            &p.config,
                            &[
                                "add",
                                "--name",
                                &name,
                                "--mac",
                                &mac,
                                "--vm-config",
                                "churn",
                            ],
                        )
                    } else {
                        lab.table(&p.config, &["remove", &name])
                    };
                    if !out.status.success() {
                        failures
                            .lock()
                            .expect("failures")
                            .push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
                    }
                    changes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    next += period;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                }
            });
        }
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed)
                && churn_started.elapsed() < Duration::from_secs(120)
            {
                rogue_attempts.fetch_add(1, Ordering::Relaxed);
                if tcp_connects(
                    &lab.rogue.ns,
                    lab.vm.ip,
                    APP_PORT,
                    Duration::from_millis(200),
                )
                .unwrap_or(false)
                {
                    rogue_connected.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Let the churn reach its pace before the bursts.
        thread::sleep(Duration::from_millis(300));
        let first = changes.load(Ordering::Relaxed);
        let mut all: Result<Burst, String> = Ok((BTreeMap::new(), Vec::new(), 0.0));
        for _ in 0..rounds {
            all = all.and_then(|(mut codes, mut lat, secs)| {
                let (c, l, s) = burst(p, requests)?;
                for (k, v) in c {
                    *codes.entry(k).or_insert(0) += v;
                }
                lat.extend(l);
                Ok((codes, lat, secs + s))
            });
        }
        *window.lock().expect("window") = (first, changes.load(Ordering::Relaxed));
        stop.store(true, Ordering::Relaxed);
        all
    });
    let (codes, mut latencies, seconds) = outcome?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (first, last) = window.into_inner().unwrap_or_default();
    let table_changes = last - first;
    Ok(LoadReport {
        requests: requests * rounds,
        rounds,
        codes,
        seconds,
        latency_ms_p50: at(0.5),
        latency_ms_p99: at(0.99),
        latency_ms_max: at(1.0),
        table_changes,
        table_change_failures: failures.into_inner().unwrap_or_default(),
        changes_per_sec: table_changes as f64 / seconds.max(f64::EPSILON),
        rogue_attempts: rogue_attempts.load(Ordering::Relaxed),
        rogue_connected: rogue_connected.load(Ordering::Relaxed),
    })
}

type Burst = (BTreeMap<String, usize>, Vec<f64>, f64);

/// All requests at once, from curl processes in the public namespace.
fn burst(p: &Pathway, requests: usize) -> Result<Burst, String> {
    let started = Instant::now();
    let mut children = Vec::new();
    for (chunk, first) in (0..requests).step_by(PER_CURL).enumerate() {
        let n = PER_CURL.min(requests - first);
        let list = p.dir.join(format!("load-{chunk}.curl"));
        let urls: String = (first..first + n)
            .map(|i| {
                format!(
                    "url = \"https://{EXTERNAL_NAME}:{PUBLIC_PORT}/surveys/?s=LOAD{i}\"\noutput = \"/dev/null\"\n"
                )
            })
            .collect();
        fs::write(&list, urls).map_err(|e| e.to_string())?;
        let child = p
            .lab
            .public
            .ns
            .command("curl")
            .args([
                "-sS",
                "--parallel",
                "--parallel-immediate",
                "--parallel-max",
            ])
            .arg(PER_CURL.to_string())
            .args([
                "--max-time",
                "60",
                "-w",
                "%{http_code} %{time_total}\\n",
                "--cacert",
            ])
            .arg(&p.external_cert)
            .arg("--resolve")
            .arg(format!("{EXTERNAL_NAME}:{PUBLIC_PORT}:{BACKEND_PUBLIC_IP}"))
            .arg("-K")
            .arg(&list)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("curl: {e}"))?;
        children.push(child);
    }
    let mut codes = BTreeMap::new();
    let mut latencies = Vec::new();
    for child in children {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (code, time) = line.split_once(' ').unwrap_or((line, "0"));
            *codes.entry(code.to_owned()).or_insert(0) += 1;
            latencies.push(time.parse::<f64>().unwrap_or(0.0) * 1000.0);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // curl 7.88 draws its parallel progress meter even with -s; its
        // error lines are "curl: (N) ...".
        for line in err.lines().filter(|l| l.starts_with("curl: (")) {
            *codes.entry(line.to_owned()).or_insert(0) += 1;
        }
    }
    Ok((codes, latencies, started.elapsed().as_secs_f64()))
}
