//! `appvm backend run`: keeps the backend programs' maps equal to the table.
//!
//! Starts by attaching (or adopting) the programs with the table in their
//! maps, then follows the table file: every change is synced, the dnsmasq
//! hosts file re-rendered and dnsmasq sent SIGHUP. On SIGTERM/SIGINT it
//! exits and leaves the programs enforcing (fail closed). An invalid table
//! is refused and the maps keep the last valid one.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::signal::unix::{SignalKind, signal};

use super::{
    attach::{BackendAttachError, ensure_attached},
    config::{BackendConfig, BackendConfigError},
    maps::BackendMaps,
    sync::Syncer,
    watch::FileWatch,
};
use crate::table::{Table, TableError, store};

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
    #[error("cannot count CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Sends SIGHUP to the dnsmasq named by the pid file, if configured.
fn reload_dnsmasq(cfg: &BackendConfig) {
    let Some(pid_file) = &cfg.dnsmasq_pid_file else {
        return;
    };
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 0);
    match pid {
        // SAFETY: plain kill(2).
        Some(pid) if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 => {
            tracing::info!(pid, "sent SIGHUP to dnsmasq");
        }
        Some(pid) => {
            tracing::error!(pid, error = %std::io::Error::last_os_error(), "cannot signal dnsmasq")
        }
        None => tracing::error!(pid_file = %pid_file.display(), "no dnsmasq pid in pid file"),
    }
}

struct Service {
    cfg: BackendConfig,
    maps: BackendMaps,
    syncer: Syncer,
    table: Table,
    cpus: usize,
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
        } else if table == self.table {
            return;
        }
        match self.syncer.sync(&self.maps, &table, self.cpus) {
            Ok(r) => tracing::info!(
                why,
                entries = r.entries,
                added = r.added,
                changed = r.changed,
                removed = r.removed,
                micros = r.micros as u64,
                "maps synced to table"
            ),
            Err(e) => {
                tracing::error!(error = %e, "sync failed; will retry");
                return;
            }
        }
        let table_changed = table != self.table;
        self.table = table;
        match store::write_hosts(&self.cfg, &self.table) {
            Ok(_) if table_changed => reload_dnsmasq(&self.cfg),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot render hosts file"),
        }
    }
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: &Path, root: &Path) -> Result<(), ServiceError> {
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
    if let Err(e) = store::write_hosts(&cfg, &table) {
        tracing::error!(error = %e, "cannot render hosts file");
    }
    reload_dnsmasq(&cfg);
    let mut watch = FileWatch::new(&cfg.table).map_err(|source| ServiceError::Watch {
        path: cfg.table.clone(),
        source,
    })?;
    let mut term = signal(SignalKind::terminate()).map_err(ServiceError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServiceError::Signals)?;
    let mut periodic = tokio::time::interval(PERIODIC_RESYNC);
    periodic.tick().await;
    let mut service = Service {
        cfg,
        maps,
        syncer,
        table,
        cpus,
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
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("exiting; the backend programs stay attached and enforcing");
    Ok(())
}
