//! What the commands print, as pure functions from the daemon's replies to text: virsh's
//! aligned tables, the `dominfo` layout, state names, `event`'s lines, and the `--json` shapes
//! whose field names are a stable interface for scripts. Nothing here talks to the daemon or
//! writes to stdout.

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use vmgate_proto::v1::{DomainEvent, DomainInfo, DomainState, DomainSummary};

use crate::console::rfc3339_millis;

/// The first VNC TCP port; a console's display number is its port minus this.
const VNC_BASE_PORT: u32 = 5900;

/// virsh's name for a state.
pub fn state_name(state: DomainState) -> &'static str {
    match state {
        DomainState::Running => "running",
        DomainState::ShutOff => "shut off",
        DomainState::Paused => "paused",
        DomainState::Unspecified => "no state",
    }
}

/// The Id column: the run number, or `-` when the guest is not running.
pub fn id_text(id: u32) -> String {
    if id == 0 {
        "-".to_owned()
    } else {
        id.to_string()
    }
}

/// A table laid out as virsh's `vshTable` does: every cell is preceded by one space, columns
/// are padded to their widest cell and separated by two more spaces, and the dashed line under
/// the header is each column's width plus three. Control characters in cells are shown as
/// `\xNN` so a name cannot move the cursor or change the terminal.
pub fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| escape_cell(h)).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_cell(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(cell.chars().count()),
                None => widths.push(cell.chars().count()),
            }
        }
    }
    let mut out = String::new();
    push_row(&mut out, &header, &widths);
    out.push_str(&"-".repeat(widths.iter().map(|w| w + 3).sum()));
    out.push('\n');
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    out
}

fn push_row(out: &mut String, cells: &[String], widths: &[usize]) {
    for (i, cell) in cells.iter().enumerate() {
        out.push(' ');
        out.push_str(cell);
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push('\n');
}

pub(crate) fn escape_cell(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    for c in cell.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `list`'s table: ` Id   Name   State`.
pub fn list_table(domains: &[DomainSummary]) -> String {
    let rows: Vec<Vec<String>> = domains
        .iter()
        .map(|d| {
            vec![
                id_text(d.id),
                d.name.clone(),
                state_name(d.state()).to_owned(),
            ]
        })
        .collect();
    format_table(&["Id", "Name", "State"], &rows)
}

/// One element of `list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// The run number, `null` when the guest is not running.
    pub id: Option<u32>,
    pub name: String,
    pub uuid: String,
    /// `"running"`, `"shut off"` or `"paused"`.
    pub state: &'static str,
    pub autostart: bool,
}

impl From<&DomainSummary> for ListEntry {
    fn from(d: &DomainSummary) -> Self {
        ListEntry {
            id: (d.id != 0).then_some(d.id),
            name: d.name.clone(),
            uuid: d.uuid.clone(),
            state: state_name(d.state()),
            autostart: d.autostart,
        }
    }
}

/// `list --json`: a pretty-printed array of [`ListEntry`], with a final newline.
pub fn list_json(domains: &[DomainSummary]) -> Result<String, serde_json::Error> {
    let entries: Vec<ListEntry> = domains.iter().map(ListEntry::from).collect();
    let mut text = serde_json::to_string_pretty(&entries)?;
    text.push('\n');
    Ok(text)
}

/// The console's address as virsh `domdisplay` writes it: `vnc://HOST:DISPLAY`, with `HOST::PORT`
/// for a port below 5900, `localhost` for a console listening on every address (the local
/// transports are the only ones so far), and `vnc+unix://PATH` for a UNIX-socket console.
/// `dominfo`'s `Graphics:` line and `domdisplay` both print this.
pub fn graphics_uri(display: &vmgate_proto::v1::Display) -> String {
    let kind = if display.kind.is_empty() {
        "vnc"
    } else {
        display.kind.as_str()
    };
    if !display.socket_path.is_empty() {
        return format!("{kind}+unix://{}", display.socket_path);
    }
    let host = match display.host.as_str() {
        "" | "0.0.0.0" | "::" => "localhost".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    if kind != "vnc" {
        // Other protocols' URIs carry the port itself, as virsh prints them.
        return format!("{kind}://{host}:{}", display.port);
    }
    match display.port.checked_sub(VNC_BASE_PORT) {
        Some(n) => format!("{kind}://{host}:{n}"),
        None => format!("{kind}://{host}::{}", display.port),
    }
}

/// `dominfo`: labels padded to 16 columns, as virsh prints them.
pub fn dominfo_text(info: &DomainInfo) -> Result<String, MissingSummary> {
    let s = info.summary.as_ref().ok_or(MissingSummary)?;
    let kib = info.memory_mib.saturating_mul(1024);
    let lines: [(&str, String); 11] = [
        ("Id:", id_text(s.id)),
        ("Name:", s.name.clone()),
        ("UUID:", s.uuid.clone()),
        ("State:", state_name(s.state()).to_owned()),
        ("CPU(s):", info.vcpus.to_string()),
        ("CPU time:", format!("{:.1}s", cpu_secs(info.cpu_time_ns))),
        ("Max memory:", format!("{kib} KiB")),
        ("Used memory:", format!("{kib} KiB")),
        ("Persistent:", "yes".to_owned()),
        (
            "Autostart:",
            if s.autostart { "enable" } else { "disable" }.to_owned(),
        ),
        (
            "Graphics:",
            info.display
                .as_ref()
                .map_or_else(|| "-".to_owned(), graphics_uri),
        ),
    ];
    let mut out = String::new();
    for (label, value) in lines {
        let _ = writeln!(out, "{label:<15} {}", escape_cell(&value));
    }
    Ok(out)
}

/// The reply had no `summary`: the daemon always sends one, so this means a version mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("domain summary")]
pub struct MissingSummary;

#[allow(clippy::cast_precision_loss)] // CPU time in seconds for display; 2^53 ns is 104 days.
fn cpu_secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `dominfo --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomInfoJson {
    pub id: Option<u32>,
    pub name: String,
    pub uuid: String,
    pub state: &'static str,
    /// Why the guest is in its state (`booted`, `destroyed`, ...); empty when unknown.
    pub state_reason: String,
    pub vcpus: u32,
    pub cpu_time_ns: u64,
    pub max_memory_kib: u64,
    pub used_memory_kib: u64,
    pub persistent: bool,
    pub autostart: bool,
    /// The console, `null` when the guest has none or is not running.
    pub graphics: Option<GraphicsJson>,
}

/// The console part of [`DomInfoJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphicsJson {
    /// `"vnc"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Listen host; `null` for a UNIX-socket console.
    pub host: Option<String>,
    /// TCP port; `null` for a UNIX-socket console.
    pub port: Option<u32>,
    /// Socket path; `null` for a TCP console.
    pub socket: Option<String>,
    /// The same address `dominfo` prints, e.g. `vnc://127.0.0.1:0`.
    pub uri: String,
}

impl TryFrom<&DomainInfo> for DomInfoJson {
    type Error = MissingSummary;

    fn try_from(info: &DomainInfo) -> Result<Self, Self::Error> {
        let s = info.summary.as_ref().ok_or(MissingSummary)?;
        let kib = info.memory_mib.saturating_mul(1024);
        Ok(DomInfoJson {
            id: (s.id != 0).then_some(s.id),
            name: s.name.clone(),
            uuid: s.uuid.clone(),
            state: state_name(s.state()),
            state_reason: info.state_reason.clone(),
            vcpus: info.vcpus,
            cpu_time_ns: info.cpu_time_ns,
            max_memory_kib: kib,
            used_memory_kib: kib,
            persistent: true,
            autostart: s.autostart,
            graphics: info.display.as_ref().map(|d| {
                let unix = !d.socket_path.is_empty();
                GraphicsJson {
                    kind: if d.kind.is_empty() {
                        "vnc".to_owned()
                    } else {
                        d.kind.clone()
                    },
                    host: (!unix).then(|| d.host.clone()),
                    port: (!unix).then_some(d.port),
                    socket: unix.then(|| d.socket_path.clone()),
                    uri: graphics_uri(d),
                }
            }),
        })
    }
}

/// `domstate`, with ` (REASON)` when `with_reason` (`unknown` when the daemon gave none).
pub fn domstate_text(info: &DomainInfo, with_reason: bool) -> Result<String, MissingSummary> {
    let s = info.summary.as_ref().ok_or(MissingSummary)?;
    let state = state_name(s.state());
    Ok(if with_reason {
        let reason = if info.state_reason.is_empty() {
            "unknown"
        } else {
            &info.state_reason
        };
        format!("{state} ({})\n", escape_cell(reason))
    } else {
        format!("{state}\n")
    })
}

/// The family of the note the daemon sends when this listener fell behind.
pub const LOST_FAMILY: &str = "lost";

/// virsh's `--timestamp` prefix: the time in UTC to the millisecond with an explicit offset.
const EVENT_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]+0000");

/// `event`'s line, as virsh prints it: `event 'lifecycle' for domain 'alpha': Started Booted`
/// for state and definition changes, `event 'reboot' for domain 'alpha'` for the others (with
/// `: DETAIL` should the daemon give one). With `timestamp`, prefixed with the event's time as
/// virsh `--timestamp` does: `2030-01-31 18:00:00.250+0000: `.
pub fn event_line(event: &DomainEvent, timestamp: bool) -> String {
    let mut out = String::new();
    if timestamp {
        let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(event.time_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(EVENT_TIME).ok())
            .unwrap_or_else(|| format!("@{}ms", event.time_ms));
        let _ = write!(out, "{time}: ");
    }
    let _ = write!(
        out,
        "event '{}' for domain '{}'",
        escape_cell(&event.family),
        escape_cell(&event.domain)
    );
    let what: Vec<&str> = if event.family == "lifecycle" {
        vec![event.event.as_str(), event.detail.as_str()]
    } else {
        vec![event.detail.as_str()]
    };
    let what: Vec<String> = what
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(escape_cell)
        .collect();
    if !what.is_empty() {
        let _ = write!(out, ": {}", what.join(" "));
    }
    out.push('\n');
    out
}

/// What `event` says when the daemon reports `lost` events dropped for this listener.
pub fn events_lost_text(lost: u64) -> String {
    format!("{lost} events were lost: this listener fell behind the daemon")
}

/// One line of `event --json`; the field names are a stable interface. An event of family
/// `"lost"` is a note that `lost` events were dropped because the listener fell behind; its
/// domain, uuid, event and detail are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventJson {
    /// RFC 3339 in UTC with milliseconds.
    pub time: String,
    pub time_ms: i64,
    pub domain: String,
    pub uuid: String,
    /// `"lifecycle"`, `"reboot"`, `"reset"`, or `"lost"`.
    pub family: String,
    /// `"Defined"`, `"Undefined"`, `"Started"`, `"Suspended"`, `"Resumed"`, `"Stopped"`,
    /// `"Reboot"`, `"Reset"`.
    pub event: String,
    /// virsh's detail: `"Booted"`, `"Paused"`, `"Destroyed"`, ...; may be empty.
    pub detail: String,
    /// Events dropped just before this one (family `"lost"` only; 0 otherwise).
    pub lost: u64,
}

impl From<&DomainEvent> for EventJson {
    fn from(e: &DomainEvent) -> Self {
        EventJson {
            time: rfc3339_millis(e.time_ms),
            time_ms: e.time_ms,
            domain: e.domain.clone(),
            uuid: e.uuid.clone(),
            family: e.family.clone(),
            event: e.event.clone(),
            detail: e.detail.clone(),
            lost: e.lost,
        }
    }
}

/// `event --json`: one compact [`EventJson`] object and a newline.
pub fn event_json(event: &DomainEvent) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string(&EventJson::from(event))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
