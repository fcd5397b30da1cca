//! `/metrics` in the Prometheus text format (0.0.4), from the pinned maps
//! at every scrape, plus the service's own sync figures.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::{stats::Snapshot, table::Table};

/// What the service knows that the maps do not.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncFigures {
    pub last_sync_seconds: f64,
    /// Unix time of the last sync.
    pub last_sync_unix: f64,
    pub syncs: u64,
}

/// Shared between the service loop and the HTTP task.
#[derive(Debug, Clone)]
pub struct MetricsState {
    pub root: PathBuf,
    pub table: Arc<Mutex<Arc<Table>>>,
    pub sync: Arc<Mutex<SyncFigures>>,
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for `snap`.
pub fn render(snap: &Snapshot, sync: SyncFigures) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# HELP appvm_packets_total Packets by program and verdict reason.\n# TYPE appvm_packets_total counter"
    );
    let mut bytes = String::new();
    let _ = writeln!(
        bytes,
        "# HELP appvm_bytes_total Bytes by program and verdict reason.\n# TYPE appvm_bytes_total counter"
    );
    for g in &snap.guards {
        for c in &g.counters {
            let program = if c.direction == "ingress" {
                "vm_ingress"
            } else {
                "vm_egress"
            };
            let l = format!(
                "source=\"{}\",program=\"{program}\",reason=\"{}\",verdict=\"{}\"",
                label(&g.iface),
                c.reason,
                c.verdict
            );
            let _ = writeln!(w, "appvm_packets_total{{{l}}} {}", c.packets);
            let _ = writeln!(bytes, "appvm_bytes_total{{{l}}} {}", c.bytes);
        }
    }
    if let Some(b) = &snap.backend {
        for c in &b.counters {
            let l = format!(
                "source=\"backend\",program=\"{}\",reason=\"{}\",verdict=\"{}\"",
                c.program, c.reason, c.verdict
            );
            let _ = writeln!(w, "appvm_packets_total{{{l}}} {}", c.packets);
            let _ = writeln!(bytes, "appvm_bytes_total{{{l}}} {}", c.bytes);
        }
    }
    s.push_str(&bytes);
    let w = &mut s;
    if let Some(b) = &snap.backend {
        for (metric, help) in [
            (
                "appvm_vm_packets_total",
                "Frames from an application VM's IP and pinned MAC.",
            ),
            (
                "appvm_vm_bytes_total",
                "Bytes from an application VM's IP and pinned MAC.",
            ),
            (
                "appvm_vm_spoofed_packets_total",
                "Frames claiming an application VM's IP from another MAC.",
            ),
        ] {
            let _ = writeln!(w, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for v in &b.vms {
                let value = match metric {
                    "appvm_vm_packets_total" => v.packets,
                    "appvm_vm_bytes_total" => v.bytes,
                    _ => v.spoofed_packets,
                };
                let _ = writeln!(
                    w,
                    "{metric}{{vm=\"{}\",ip=\"{}\"}} {value}",
                    label(&v.name),
                    v.ip
                );
            }
        }
        let _ = writeln!(
            w,
            "# HELP appvm_table_size Application VMs in the kernel table.\n# TYPE appvm_table_size gauge\nappvm_table_size {}",
            b.table_size
        );
    }
    let _ = writeln!(
        w,
        "# HELP appvm_events_total Drop events by outcome (sent, suppressed by the rate limit, lost).\n# TYPE appvm_events_total counter"
    );
    let sources = snap
        .guards
        .iter()
        .map(|g| (g.iface.as_str(), g.events))
        .chain(snap.backend.iter().map(|b| ("backend", b.events)));
    for (source, ev) in sources {
        if let Some(e) = ev {
            for (outcome, n) in [
                ("sent", e.sent),
                ("suppressed", e.suppressed),
                ("lost", e.lost),
            ] {
                let _ = writeln!(
                    w,
                    "appvm_events_total{{source=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(source)
                );
            }
        }
    }
    let _ = writeln!(
        w,
        "# HELP appvm_last_sync_duration_seconds Duration of the last table sync.\n# TYPE appvm_last_sync_duration_seconds gauge\nappvm_last_sync_duration_seconds {}",
        sync.last_sync_seconds
    );
    let _ = writeln!(
        w,
        "# HELP appvm_last_sync_timestamp_seconds Unix time of the last table sync.\n# TYPE appvm_last_sync_timestamp_seconds gauge\nappvm_last_sync_timestamp_seconds {}",
        sync.last_sync_unix
    );
    let _ = writeln!(
        w,
        "# HELP appvm_syncs_total Table syncs since the service started.\n# TYPE appvm_syncs_total counter\nappvm_syncs_total {}",
        sync.syncs
    );
    s
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, state: MetricsState) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = vec![0_u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
            let Ok(Ok(n)) = read else { return };
            let request = String::from_utf8_lossy(&buf[..n]);
            let response = if request.starts_with("GET /metrics ")
                || request.starts_with("GET /metrics?")
            {
                let table = state
                    .table
                    .lock()
                    .map(|t| Arc::clone(&t))
                    .unwrap_or_default();
                let sync = state.sync.lock().map(|s| *s).unwrap_or_default();
                match crate::stats::snapshot(&state.root, Some(&table)) {
                    Ok(snap) => {
                        let body = render(&snap, sync);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    Err(e) => format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{e}",
                        e.len()
                    ),
                }
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            drop(conn.write_all(response.as_bytes()).await);
        });
    }
}
