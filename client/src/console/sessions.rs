//! `console-sessions`: a guest's open console sessions as virsh's aligned table or as the
//! stable JSON array, and byte counts in binary units.

use serde::Serialize;
use vmgate_proto::v1::Session;

use super::{or_dash, rfc3339_secs};
use crate::output::format_table;

/// `bytes` in binary units with one decimal, rounded to the nearest tenth: `512 B`,
/// `1.0 KiB`, `1.2 MiB`, up to EiB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scaled = bytes;
    // Whole units first (exact in integers), then one decimal from the remainder.
    while scaled >= 1024 * 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    let whole = scaled / 1024;
    let tenths = ((scaled % 1024) * 10 + 512) / 1024;
    let (whole, tenths) = if tenths == 10 {
        (whole + 1, 0)
    } else {
        (whole, tenths)
    };
    if whole >= 1024 && unit + 1 < UNITS.len() {
        // 1023.96 MiB rounds up to the next unit rather than printing "1024.0 MiB".
        return format!("1.0 {}", UNITS[unit + 1]);
    }
    format!("{whole}.{tenths} {}", UNITS[unit])
}

/// The table: ` Id   Client   Security   Identity   Since   In   Out`, one row per session in
/// the daemon's order.
pub fn sessions_table(sessions: &[Session]) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.client.clone(),
                or_dash(&s.security_type),
                or_dash(&s.identity),
                rfc3339_secs(s.connected_since),
                human_bytes(s.bytes_in),
                human_bytes(s.bytes_out),
            ]
        })
        .collect();
    format_table(
        &["Id", "Client", "Security", "Identity", "Since", "In", "Out"],
        &rows,
    )
}

/// One element of `console-sessions --json`; the field names are a stable interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionJson {
    pub id: u64,
    /// `127.0.0.1:53422`, or `uid 1000` for a UNIX-socket console.
    pub client: String,
    /// `none`, `vnc`, `vencrypt-x509none`, ...
    pub security_type: String,
    /// The user and/or certificate DN the session authenticated as; empty when none.
    pub identity: String,
    /// The SASL or VeNCrypt Plain user; empty when none.
    pub user: String,
    /// The verified client certificate's DN; empty when none.
    pub dn: String,
    /// Unix time in seconds.
    pub connected_since: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub shared: bool,
}

impl From<&Session> for SessionJson {
    fn from(s: &Session) -> Self {
        SessionJson {
            id: s.id,
            client: s.client.clone(),
            security_type: s.security_type.clone(),
            identity: s.identity.clone(),
            user: s.user.clone(),
            dn: s.dn.clone(),
            connected_since: s.connected_since,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            shared: s.shared,
        }
    }
}

/// `console-sessions --json`: a pretty-printed array of [`SessionJson`], with a final newline.
pub fn sessions_json(sessions: &[Session]) -> Result<String, serde_json::Error> {
    let entries: Vec<SessionJson> = sessions.iter().map(SessionJson::from).collect();
    let mut text = serde_json::to_string_pretty(&entries)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn bytes_round_to_the_nearest_tenth() {
        assert_eq!(human_bytes(1024 + 51), "1.0 KiB");
        assert_eq!(human_bytes(1024 + 52), "1.1 KiB");
        assert_eq!(human_bytes(2047), "2.0 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(1024 * 1024 * 1024 - 1), "1.0 GiB");
    }

    fn session(id: u64, client: &str, security: &str, identity: &str) -> Session {
        Session {
            id,
            client: client.into(),
            security_type: security.into(),
            identity: identity.into(),
            user: identity.into(),
            dn: String::new(),
            connected_since: 1_738_346_400,
            bytes_in: 2048,
            bytes_out: 1_258_291,
            shared: true,
        }
    }

    #[test]
    fn table_as_virsh_lays_it_out() {
        let sessions = [
            session(1, "127.0.0.1:53422", "vnc", ""),
            session(12, "uid 1000", "vencrypt-x509sasl", "alice"),
        ];
        let text = sessions_table(&sessions);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            " Id   Client            Security            Identity   Since                  \
             In        Out"
        );
        // Widths 2, 15, 17, 8, 20, 7, 7, each plus three.
        assert_eq!(lines[1], "-".repeat(76 + 7 * 3));
        assert_eq!(
            lines[2],
            " 1    127.0.0.1:53422   vnc                 -          2025-01-31T18:00:00Z   \
             2.0 KiB   1.2 MiB"
        );
        assert_eq!(
            lines[3],
            " 12   uid 1000          vencrypt-x509sasl   alice      2025-01-31T18:00:00Z   \
             2.0 KiB   1.2 MiB"
        );
        assert_eq!(lines.len(), 4);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn empty_table_has_header_and_dashes() {
        assert_eq!(
            sessions_table(&[]),
            format!(
                " Id   Client   Security   Identity   Since   In   Out\n{}\n",
                "-".repeat(34 + 7 * 3)
            )
        );
    }

    #[test]
    fn json_fields_are_stable() {
        let text = sessions_json(&[session(3, "127.0.0.1:1", "none", "")]).expect("json");
        assert!(text.ends_with("]\n"));
        let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(
            value,
            serde_json::json!([{
                "id": 3,
                "client": "127.0.0.1:1",
                "security_type": "none",
                "identity": "",
                "user": "",
                "dn": "",
                "connected_since": 1_738_346_400,
                "bytes_in": 2048,
                "bytes_out": 1_258_291,
                "shared": true,
            }])
        );
    }
}
