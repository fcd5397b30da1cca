//! Reading and changing the table file: lock, load, change, validate, write
//! the table then the hosts file atomically. An error changes nothing.

use std::{fs, io, path::Path};

use super::{Table, TableError, atomic, hosts};
use crate::backend::config::BackendConfig;

const HEADER: &str = "# appvm application-VM table. Managed by `appvm table`; edits by hand\n# must keep it valid (the backend service refuses an invalid table).\n\n";
const MAX_TABLE_BYTES: u64 = 64 * 1024 * 1024;

/// Loads the table; a missing file is an empty table.
pub fn load(path: &Path) -> Result<Table, TableError> {
    let shown = path.display().to_string();
    let parse = |why: String| TableError::Parse {
        path: shown.clone(),
        why,
    };
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Table::default()),
        Err(e) => return Err(TableError::Io(format!("cannot read table {shown}: {e}"))),
        Ok(m) if m.len() > MAX_TABLE_BYTES => {
            return Err(parse(format!("larger than {MAX_TABLE_BYTES} bytes")));
        }
        Ok(_) => {}
    }
    let bytes =
        fs::read(path).map_err(|e| TableError::Io(format!("cannot read table {shown}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_e| parse("not UTF-8".into()))?;
    parse_compact(&text).map_err(|e| parse(crate::toml_error::one_line(&text, &e)))
}

/// Parses on a short-lived thread and keeps a copy made on this one. The
/// parser's many small temporaries land in that thread's malloc arena,
/// interleaved with the table's own strings; once that table is dropped
/// (free returns memory to the arena it came from, whichever thread
/// frees it), the whole arena is free, and the service's `malloc_trim`
/// after each resync gives it back to the system. The long-lived copy sits
/// compactly in this thread's arena. For 65,536 VMs this is the difference
/// between ~95 MiB and ~41 MiB resident in the service.
fn parse_compact(text: &str) -> Result<Table, toml::de::Error> {
    let parsed = std::thread::scope(|s| {
        s.spawn(|| toml::from_str::<Table>(text))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    Ok(parsed.clone())
}

/// Loads and validates against `cfg`.
pub fn load_valid(cfg: &BackendConfig) -> Result<Table, TableError> {
    let table = load(&cfg.table)?;
    table.validate(cfg)?;
    Ok(table)
}

/// The table file's text.
pub fn render(table: &Table) -> Result<String, TableError> {
    let body =
        toml::to_string(table).map_err(|e| TableError::Io(format!("cannot encode table: {e}")))?;
    Ok(format!("{HEADER}{body}"))
}

/// Applies `change` to the table under the exclusive lock and writes the
/// result, then the hosts file. Nothing is written if `change` or the
/// validation fails.
pub fn update<T>(
    cfg: &BackendConfig,
    change: impl FnOnce(&mut Table) -> Result<T, TableError>,
) -> Result<T, TableError> {
    let _lock = atomic::Lock::exclusive(&cfg.table)
        .map_err(|e| TableError::Io(format!("cannot lock table {}: {e}", cfg.table.display())))?;
    // Validated once, after the change: an invalid file stays refused (its
    // fault is still there), and a change that removes the fault goes in.
    let mut table = load(&cfg.table)?;
    let out = change(&mut table)?;
    table.validate(cfg)?;
    // Both files staged first: a hosts file that cannot be written leaves
    // the table as it was too.
    let table_file = atomic::stage(&cfg.table, render(&table)?.as_bytes())
        .map_err(|e| table_write_error(cfg, &e))?;
    let hosts_text = hosts::render(&table);
    let hosts_file = if fs::read_to_string(&cfg.hosts_file).is_ok_and(|old| old == hosts_text) {
        None
    } else {
        Some(
            atomic::stage(&cfg.hosts_file, hosts_text.as_bytes())
                .map_err(|e| hosts_write_error(cfg, &e))?,
        )
    };
    table_file
        .commit()
        .map_err(|e| table_write_error(cfg, &e))?;
    if let Some(hosts_file) = hosts_file {
        hosts_file
            .commit()
            .map_err(|e| hosts_write_error(cfg, &e))?;
    }
    Ok(out)
}

fn table_write_error(cfg: &BackendConfig, e: &io::Error) -> TableError {
    TableError::Io(format!("cannot write table {}: {e}", cfg.table.display()))
}

fn hosts_write_error(cfg: &BackendConfig, e: &io::Error) -> TableError {
    TableError::Io(format!(
        "cannot write hosts file {}: {e}",
        cfg.hosts_file.display()
    ))
}

/// Renders the dnsmasq hosts file; returns whether its content changed.
pub fn write_hosts(cfg: &BackendConfig, table: &Table) -> Result<bool, TableError> {
    atomic::write_if_changed(&cfg.hosts_file, &hosts::render(table))
        .map_err(|e| hosts_write_error(cfg, &e))
}
