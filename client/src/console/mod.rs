//! The console commands' pure side: what `vncdisplay`, `domdisplay`, `console-sessions`,
//! `vnc-passwd` and `audit` check in their arguments and print from the daemon's replies.
//! One submodule per command family, each with its own error type; nothing here talks to the
//! daemon, reads the terminal or writes to stdout (the commands in the binary do that).
//!
//! - [`display`]: a guest's console address (`127.0.0.1:0`, `vnc://...`) or why it has none.
//! - [`sessions`]: the live-session table and JSON, and byte counts as `1.2 MiB`.
//! - [`password`]: the 8-byte VNC password limit, `--valid-to`, the typed-twice check and
//!   the `--password-stdin` line.
//! - [`audit`]: `--since` (RFC 3339 or `30s`/`15m`/`1h`/`2d` back from now) and the audit
//!   table and JSON.

pub mod audit;
pub mod display;
pub mod password;
pub mod sessions;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// RFC 3339 in UTC to the second, as `console-sessions` shows when a session began.
const SECONDS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// RFC 3339 in UTC to the millisecond, as `audit` shows its records' times.
const MILLIS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Unix seconds as `2025-01-31T18:00:00Z`. A time `time` cannot represent (a corrupt record)
/// is shown as the raw number rather than failing the whole listing.
pub fn rfc3339_secs(unix_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(SECONDS).ok())
        .unwrap_or_else(|| format!("@{unix_secs}"))
}

/// Unix milliseconds as `2025-01-31T18:00:00.250Z`; see [`rfc3339_secs`] for bad input.
pub fn rfc3339_millis(unix_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(MILLIS).ok())
        .unwrap_or_else(|| format!("@{unix_ms}ms"))
}

/// A table cell for an optional text field: `-` when the daemon sent nothing, as virsh does.
fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_738_346_400), "2025-01-31T18:00:00Z");
        assert_eq!(
            rfc3339_millis(1_738_346_400_250),
            "2025-01-31T18:00:00.250Z"
        );
        assert_eq!(
            rfc3339_millis(1_738_346_400_000),
            "2025-01-31T18:00:00.000Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn unrepresentable_times_show_the_number() {
        assert_eq!(rfc3339_secs(i64::MAX), format!("@{}", i64::MAX));
        assert_eq!(rfc3339_millis(i64::MIN), format!("@{}ms", i64::MIN));
    }

    #[test]
    fn empty_cells_are_dashes() {
        assert_eq!(or_dash(""), "-");
        assert_eq!(or_dash("alice"), "alice");
    }
}
