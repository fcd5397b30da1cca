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
use crate::{
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
    #[error("cannot count CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
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
        let changed = table != self.table;
        self.table = table;
        render(&self.cfg, &self.table, changed);
    }
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
    // dnsmasq may have started before us with an older file.
    render(&cfg, &table, true);
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
