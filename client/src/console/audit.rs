//! `audit`: the `--since` argument (an RFC 3339 time, or a duration back from now such as
//! `15m`), and the records as virsh's aligned table or the stable JSON array.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vmgate_proto::v1::AuditRecord;

use super::{or_dash, rfc3339_millis};
use crate::output::format_table;

/// `--since` is neither a time nor a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid --since '{0}': give an RFC 3339 time such as 2030-01-31T18:00:00Z, or a duration \
     back from now: a whole number followed by s, m, h or d (30s, 15m, 1h, 2d)"
)]
pub struct SinceError(pub String);

/// A duration such as `30s`, `15m`, `1h` or `2d`, in seconds; `None` when `text` is not one.
pub fn parse_duration(text: &str) -> Option<i64> {
    let unit = text.chars().last()?;
    let secs_per_unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    // `i64::from_str` would also take a sign; only plain digits are a duration.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()?.checked_mul(secs_per_unit)
}

/// `--since` as the Unix time in seconds the daemon wants, `now` being the current one. A time
/// before 1970 asks for everything, which the request spells 0.
pub fn parse_since(text: &str, now: i64) -> Result<i64, SinceError> {
    let since = match parse_duration(text) {
        Some(back) => now.saturating_sub(back),
        None => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| SinceError(text.to_owned()))?
            .unix_timestamp(),
    };
    Ok(since.max(0))
}

/// The table: ` Time   Event   Domain   Source   Security   Identity   Reason`, one record a
/// line, `-` for empty fields.
pub fn audit_table(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                rfc3339_millis(r.time_ms),
                r.event.clone(),
                or_dash(&r.domain),
                or_dash(&r.source),
                or_dash(&r.security_type),
                or_dash(&r.identity),
                or_dash(&r.reason),
            ]
        })
        .collect();
    format_table(
        &[
            "Time", "Event", "Domain", "Source", "Security", "Identity", "Reason",
        ],
        &rows,
    )
}

/// One element of `audit --json`; the field names are a stable interface. Text fields the
/// daemon left empty are empty strings, so every field always has the same JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditJson {
    /// RFC 3339 in UTC with milliseconds, as the table shows it.
    pub time: String,
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// `connect`, `auth-success`, `auth-failure`, `lockout`, `disconnect`, `revoked`,
    /// `password-change`, `acl-change` or `flood-summary`.
    pub event: String,
    pub domain: String,
    pub source: String,
    pub security_type: String,
    pub identity: String,
    pub reason: String,
}

impl From<&AuditRecord> for AuditJson {
    fn from(r: &AuditRecord) -> Self {
        AuditJson {
            time: rfc3339_millis(r.time_ms),
            time_ms: r.time_ms,
            event: r.event.clone(),
            domain: r.domain.clone(),
            source: r.source.clone(),
            security_type: r.security_type.clone(),
            identity: r.identity.clone(),
            reason: r.reason.clone(),
        }
    }
}

/// `audit --json`: a pretty-printed array of [`AuditJson`], with a final newline.
pub fn audit_json(records: &[AuditRecord]) -> Result<String, serde_json::Error> {
    let entries: Vec<AuditJson> = records.iter().map(AuditJson::from).collect();
    let mut text = serde_json::to_string_pretty(&entries)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_738_346_400;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("0s"), Some(0));
        assert_eq!(parse_duration("007m"), Some(420));
        for bad in [
            "",
            "s",
            "1",
            "10",
            "1w",
            "1.5h",
            "-1h",
            "+1h",
            " 1h",
            "1h ",
            "1H",
            "1h30m",
            "h1",
            "1é",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration(&format!("{}d", i64::MAX)), None, "overflow");
    }

    #[test]
    fn since_is_now_minus_a_duration_or_a_time() {
        assert_eq!(parse_since("30s", NOW), Ok(NOW - 30));
        assert_eq!(parse_since("2d", NOW), Ok(NOW - 172_800));
        assert_eq!(parse_since("2025-01-31T18:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_since("2025-01-31T19:00:00+01:00", 0), Ok(NOW));
        assert_eq!(parse_since("2025-01-31T18:00:00.999Z", 0), Ok(NOW));
    }

    #[test]
    fn since_before_1970_means_everything() {
        assert_eq!(parse_since("1960-01-01T00:00:00Z", NOW), Ok(0));
        assert_eq!(parse_since("100000d", NOW), Ok(0));
    }

    #[test]
    fn bad_since_names_both_forms() {
        for bad in ["yesterday", "1w", "2025-01-31", "-5m", ""] {
            let err = parse_since(bad, NOW).expect_err(bad);
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid --since '{bad}': ")),
                "{msg}"
            );
            assert!(msg.contains("RFC 3339"), "{msg}");
            assert!(msg.contains("30s, 15m, 1h, 2d"), "{msg}");
        }
    }

    fn record(ms: i64, event: &str, identity: &str, reason: &str) -> AuditRecord {
        AuditRecord {
            time_ms: ms,
            event: event.into(),
            domain: "alpha".into(),
            source: "127.0.0.1:53422".into(),
            security_type: "vnc".into(),
            identity: identity.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn table_as_virsh_lays_it_out() {
        let records = [
            record(1_738_346_400_250, "connect", "", ""),
            record(1_738_346_401_000, "auth-failure", "alice", "wrong password"),
        ];
        let text = audit_table(&records);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            " Time                       Event          Domain   Source            Security   \
             Identity   Reason"
        );
        // Widths 24, 12, 6, 15, 8, 8, 14, each plus three.
        assert_eq!(lines[1], "-".repeat(87 + 7 * 3));
        assert_eq!(
            lines[2],
            " 2025-01-31T18:00:00.250Z   connect        alpha    127.0.0.1:53422   vnc        \
             -          -"
        );
        assert_eq!(
            lines[3],
            " 2025-01-31T18:00:01.000Z   auth-failure   alpha    127.0.0.1:53422   vnc        \
             alice      wrong password"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn empty_table_has_header_and_dashes() {
        assert_eq!(
            audit_table(&[]),
            format!(
                " Time   Event   Domain   Source   Security   Identity   Reason\n{}\n",
                "-".repeat(43 + 7 * 3)
            )
        );
    }

    #[test]
    fn json_fields_are_stable() {
        let text =
            audit_json(&[record(1_738_346_400_250, "revoked", "CN=x", "acl")]).expect("json");
        assert!(text.ends_with("]\n"));
        let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(
            value,
            serde_json::json!([{
                "time": "2025-01-31T18:00:00.250Z",
                "time_ms": 1_738_346_400_250i64,
                "event": "revoked",
                "domain": "alpha",
                "source": "127.0.0.1:53422",
                "security_type": "vnc",
                "identity": "CN=x",
                "reason": "acl",
            }])
        );
    }
}
