//! `appvm backend run`: keeps the backend programs' maps equal to the table.
//!
//! Starts by attaching (or adopting) the programs with the table in their
//! maps, then follows the table file: every change is synced, the dnsmasq
//! hosts file re-rendered and dnsmasq sent SIGHUP. On SIGTERM/SIGINT it
//! exits and leaves the programs enforcing (fail closed). An invalid table
//! is refused and the maps keep the last valid one.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};

use super::{
    attach::{BackendAttachError, ensure_attached, pin_dir},
    config::{BackendConfig, BackendConfigError},
    maps::BackendMaps,
    metrics::{self, MetricsState, SyncFigures},
    sync::Syncer,
    watch::FileWatch,
};
use crate::{
    events::PinnedEvents,
    render::apply::{apply, signal_dnsmasq},
    table::{Table, TableError, store},
};

/// Resync even without an inotify event, in case one was missed.
const PERIODIC_RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] BackendConfigError),
    #[error("refusing to start: {0}")]
    Table(#[from] TableError),
    #[error(transparent)]
    Attach(#[from] BackendAttachError),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot count CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen for /metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct Service {
    cfg: BackendConfig,
    maps: BackendMaps,
    syncer: Syncer,
    table: Arc<Table>,
    cpus: usize,
    /// Shared with the metrics endpoint.
    /// The same table for `/metrics` (shared, not copied: 65,536 VMs are
    /// megabytes).
    shared_table: Arc<Mutex<Arc<Table>>>,
    sync: Arc<Mutex<SyncFigures>>,
    events: Option<PinnedEvents>,
    audit: Option<Box<dyn Write + Send>>,
    /// The programs' aya-log records (debug-log builds only).
    kernel_logs: Vec<aya_log::EbpfLogger<crate::debug_log::ToTracing>>,
}

impl Service {
    /// Re-reads the table; syncs maps and hosts file if it changed.
    fn resync(&mut self, why: &str) {
        let table = match store::load_valid(&self.cfg) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "table refused; the maps keep the last valid table");
                return;
            }
        };
        if why == "periodic" {
            // Re-read the kernel maps: whatever changed them behind our
            // back is put right by the sync below.
            match Syncer::adopt(&self.maps) {
                Ok(s) => self.syncer = s,
                Err(e) => tracing::error!(error = %e, "cannot re-read the VM map"),
            }
        } else if table == *self.table {
            return;
        }
        match self.syncer.sync(&self.maps, &table, self.cpus) {
            Ok(r) => {
                if let Ok(mut f) = self.sync.lock() {
                    f.last_sync_seconds = r.micros as f64 / 1e6;
                    f.last_sync_unix = unix_now();
                    f.syncs += 1;
                }
                tracing::info!(
                    why,
                    entries = r.entries,
                    added = r.added,
                    changed = r.changed,
                    removed = r.removed,
                    micros = r.micros as u64,
                    "maps synced to table"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "sync failed; will retry");
                return;
            }
        }
        let changed = table != *self.table;
        self.table = Arc::new(table);
        if let Ok(mut shared) = self.shared_table.lock() {
            *shared = Arc::clone(&self.table);
        }
        render(&self.cfg, &self.table, changed);
        release_freed_memory();
    }
}

/// Parsing a large table peaks at several times its size; glibc keeps the
/// freed pages unless asked to give them back.
fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

impl Service {
    /// Writes the backend programs' drop events as JSON audit lines.
    fn audit(&mut self) {
        for logger in &mut self.kernel_logs {
            logger.flush();
        }
        let (Some(events), Some(out)) = (&mut self.events, &mut self.audit) else {
            return;
        };
        for e in events.drain() {
            tracing::debug!(target: "appvm::audit", reason = e.reason, src = ?e.src_ip, "drop");
            match serde_json::to_string(&e) {
                Ok(line) => {
                    if let Err(err) = writeln!(out, "{line}") {
                        tracing::error!(error = %err, "cannot write the audit log");
                    }
                }
                Err(err) => tracing::error!(error = %err, "cannot encode an event"),
            }
        }
        drop(out.flush());
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Opens the audit log (`-` is stdout), appending.
fn open_audit(path: &Path) -> Result<Box<dyn Write + Send>, ServiceError> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdout()));
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ServiceError::Audit {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Box::new(f))
}

/// Renders the hosts files and the Nginx site; errors are logged (the
/// previous files stay in force). dnsmasq gets SIGHUP when the table
/// changed even if `appvm table` already rewrote the hosts file.
fn render(cfg: &BackendConfig, table: &Table, table_changed: bool) {
    match apply(cfg, table) {
        Ok(a) => {
            if table_changed && !(a.hosts || a.addn_hosts) {
                signal_dnsmasq(cfg);
            }
            tracing::info!(
                hosts = a.hosts,
                addn_hosts = a.addn_hosts,
                nginx = a.nginx,
                "configuration rendered"
            );
        }
        Err(e) => {
            if table_changed {
                signal_dnsmasq(cfg);
            }
            tracing::error!(error = %e, "cannot render configuration");
        }
    }
}

/// Options of `appvm backend run` beyond the config file.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceOptions {
    /// Serve `/metrics` here.
    pub metrics_listen: Option<SocketAddr>,
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: &Path, root: &Path, opts: ServiceOptions) -> Result<(), ServiceError> {
    let cfg = BackendConfig::load(config)?;
    let table = store::load_valid(&cfg)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| ServiceError::Cpus(e))?;
    let (state, maps, syncer, report) = ensure_attached(&cfg, root, &table, cpus)?;
    tracing::info!(
        ?state,
        entries = report.entries,
        added = report.added,
        removed = report.removed,
        micros = report.micros as u64,
        "backend programs attached; maps synced to table"
    );
    // dnsmasq may have started before us with an older file.
    render(&cfg, &table, true);
    release_freed_memory();
    let mut watch = FileWatch::new(&cfg.table).map_err(|source| ServiceError::Watch {
        path: cfg.table.clone(),
        source,
    })?;
    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signals)?;
    let mut periodic = tokio::time::interval(PERIODIC_RESYNC);
    periodic.tick().await;
    let table = Arc::new(table);
    let shared_table = Arc::new(Mutex::new(Arc::clone(&table)));
    let sync_figures = Arc::new(Mutex::new(SyncFigures {
        last_sync_seconds: report.micros as f64 / 1e6,
        last_sync_unix: unix_now(),
        syncs: 1,
    }));
    let _metrics = match opts.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServiceError::Metrics { addr, source })?;
            tracing::info!(%addr, "serving /metrics");
            Some(tokio::spawn(metrics::serve(
                listener,
                MetricsState {
                    root: root.to_path_buf(),
                    table: Arc::clone(&shared_table),
                    sync: Arc::clone(&sync_figures),
                },
            )))
        }
        None => None,
    };
    let audit = cfg.audit_log.as_deref().map(open_audit).transpose()?;
    let events = if audit.is_some() {
        PinnedEvents::open(&pin_dir(root)).ok()
    } else {
        None
    };
    let mut audit_tick = tokio::time::interval(Duration::from_millis(250));
    // One logger per program; nothing unless the object was built to log.
    let kernel_logs = appvm_common::pins::backend::LINK_PINS
        .iter()
        .filter_map(|pin| crate::link_info::pinned_link_info(&pin_dir(root).join(pin)).ok())
        .filter_map(|info| crate::debug_log::init_from_program(info.prog_id))
        .collect();
    let mut service = Service {
        cfg,
        maps,
        syncer,
        table,
        cpus,
        shared_table,
        sync: sync_figures,
        events,
        audit,
        kernel_logs,
    };
    tracing::info!("following {}", service.cfg.table.display());
    loop {
        tokio::select! {
            changed = watch.changed() => {
                if let Err(e) = changed {
                    tracing::error!(error = %e, "table watch failed; resyncing periodically");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                service.resync("table changed");
            }
            _ = periodic.tick() => service.resync("periodic"),
            _ = audit_tick.tick() => service.audit(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    service.audit();
    tracing::info!("exiting; the backend programs stay attached and enforcing");
    Ok(())
}
