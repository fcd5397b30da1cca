//! `appvm events`: drop events from every guard and the backend under the
//! pin root (consumed as they are read).

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use appvm::{
    backend::attach::pin_dir as backend_dir,
    events::{EventView, PinnedEvents},
    vm::iface_of_pin_dir,
};
use appvm_common::pins::events::PIN_EVENTS;
use clap::Args;
use serde::Serialize;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Keep reading until interrupted.
    #[arg(long)]
    follow: bool,
    /// One JSON object per line (stable field names).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    /// The guard's interface, or `backend`.
    source: &'a str,
    #[serde(flatten)]
    event: &'a EventView,
}

/// Every event source under `root`: (name, pinned maps).
fn sources(root: &Path) -> anyhow::Result<Vec<(String, PinnedEvents)>> {
    let mut out = Vec::new();
    let backend = backend_dir(root);
    if backend.join(PIN_EVENTS).exists() {
        out.push((
            "backend".to_owned(),
            PinnedEvents::open(&backend).context("backend events")?,
        ));
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(out);
    };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Some(name) = dir
            .file_name()
            .and_then(|n| iface_of_pin_dir(&n.to_string_lossy()))
        else {
            continue;
        };
        if dir != backend && dir.join(PIN_EVENTS).exists() {
            out.push((
                name,
                PinnedEvents::open(&dir).with_context(|| format!("events of {}", dir.display()))?,
            ));
        }
    }
    Ok(out)
}

fn print(source: &str, e: &EventView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&Line { source, event: e })?);
        return Ok(());
    }
    let ep = |ip: Option<std::net::Ipv4Addr>, port: Option<u16>| match (ip, port) {
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        (Some(ip), None) => ip.to_string(),
        _ => "-".to_owned(),
    };
    println!(
        "{} {:<8} {:<16} {:<32} {:<5} {:<4} {:>21} -> {:<21} {}",
        e.time,
        source,
        e.program,
        e.reason,
        e.l3,
        e.protocol,
        ep(e.src_ip, e.src_port),
        ep(e.dst_ip, e.dst_port),
        e.src_mac
    );
    Ok(())
}

pub(crate) fn run(args: EventsArgs, root: &Path) -> Result<(), CliError> {
    let mut sources = sources(root)?;
    if sources.is_empty() && !args.follow {
        eprintln!(
            "appvm: no guard or backend programs pinned under {}",
            root.display()
        );
    }
    loop {
        for (name, events) in &mut sources {
            for e in events.drain() {
                print(name, &e, args.json)?;
            }
        }
        if !args.follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
        // Pick up guards attached since.
        if sources.is_empty() {
            sources = self::sources(root)?;
        }
    }
}
