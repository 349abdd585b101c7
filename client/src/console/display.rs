//! `vncdisplay` and `domdisplay`: where a guest's console listens, from the `display` of its
//! `Domain.Info` reply, or why it has none (derived from the reply's state, so the message
//! says whether starting the guest or editing its definition is the fix).

use vmgate_proto::v1::{Display, DomainInfo, DomainState};

use crate::output::{MissingSummary, escape_cell, graphics_uri};

/// The first VNC TCP port: display N listens on 5900 + N.
const VNC_BASE_PORT: u32 = 5900;

/// A guest has no console to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Domain '{domain}' has no VNC console ({why})")]
pub struct NoConsole {
    pub domain: String,
    pub why: NoConsoleReason,
}

/// Why a guest has no console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoConsoleReason {
    /// Consoles exist only while the guest runs.
    #[error("it is shut off")]
    ShutOff,
    /// The guest runs but its definition asks for no graphics.
    #[error("no [graphics] in its definition")]
    NoGraphics,
    /// The guest's console speaks another protocol (`vncdisplay` only).
    #[error("its console is {0}")]
    OtherKind(String),
}

/// Why [`console_of`] found no console: the reply was incomplete, or there is none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Missing(#[from] MissingSummary),
    #[error(transparent)]
    None(#[from] NoConsole),
}

/// The console of the guest `info` describes.
pub fn console_of(info: &DomainInfo) -> Result<&Display, ConsoleError> {
    let summary = info.summary.as_ref().ok_or(MissingSummary)?;
    match &info.display {
        Some(display) => Ok(display),
        None => Err(NoConsole {
            domain: summary.name.clone(),
            why: if summary.state() == DomainState::ShutOff {
                NoConsoleReason::ShutOff
            } else {
                NoConsoleReason::NoGraphics
            },
        }
        .into()),
    }
}

/// The console's protocol; the daemon may leave it empty, which means VNC.
fn kind(display: &Display) -> &str {
    if display.kind.is_empty() {
        "vnc"
    } else {
        &display.kind
    }
}

/// `vncdisplay`: `HOST:DISPLAY` as virsh prints it (`127.0.0.1:0`, `[::1]:0`, and `:0` for a
/// console listening on every address), `HOST::PORT` for a port below 5900 (the form VNC
/// viewers take for a raw port), or the socket path of a UNIX-socket console. A console of
/// another protocol is an error naming `domain`.
pub fn vnc_display(domain: &str, display: &Display) -> Result<String, NoConsole> {
    let kind = kind(display);
    if kind != "vnc" {
        return Err(NoConsole {
            domain: domain.to_owned(),
            why: NoConsoleReason::OtherKind(kind.to_owned()),
        });
    }
    let text = if display.socket_path.is_empty() {
        let host = match display.host.as_str() {
            "" | "0.0.0.0" | "::" => String::new(),
            h if h.contains(':') => format!("[{h}]"),
            h => h.to_owned(),
        };
        match display.port.checked_sub(VNC_BASE_PORT) {
            Some(n) => format!("{host}:{n}"),
            None => format!("{host}::{}", display.port),
        }
    } else {
        display.socket_path.clone()
    };
    Ok(format!("{}\n", escape_cell(&text)))
}

/// `domdisplay`: the console as a URI, the same text `dominfo` prints after `Graphics:`.
pub fn dom_display(display: &Display) -> String {
    format!("{}\n", escape_cell(&graphics_uri(display)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmgate_proto::v1::DomainSummary;

    fn tcp(host: &str, port: u32) -> Display {
        Display {
            kind: "vnc".into(),
            host: host.into(),
            port,
            socket_path: String::new(),
        }
    }

    fn unix(path: &str) -> Display {
        Display {
            kind: "vnc".into(),
            host: String::new(),
            port: 0,
            socket_path: path.into(),
        }
    }

    fn info(state: DomainState, display: Option<Display>) -> DomainInfo {
        DomainInfo {
            summary: Some(DomainSummary {
                id: u32::from(state != DomainState::ShutOff),
                name: "alpha".into(),
                uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f".into(),
                state: state.into(),
                autostart: false,
            }),
            display,
            ..DomainInfo::default()
        }
    }

    fn vnc(display: &Display) -> String {
        vnc_display("alpha", display).expect("a VNC console")
    }

    #[test]
    fn ipv4_displays() {
        assert_eq!(vnc(&tcp("127.0.0.1", 5900)), "127.0.0.1:0\n");
        assert_eq!(vnc(&tcp("192.0.2.7", 5917)), "192.0.2.7:17\n");
        assert_eq!(vnc(&tcp("0.0.0.0", 5901)), ":1\n");
        assert_eq!(vnc(&tcp("127.0.0.1", 5000)), "127.0.0.1::5000\n");
        assert_eq!(dom_display(&tcp("127.0.0.1", 5900)), "vnc://127.0.0.1:0\n");
        assert_eq!(dom_display(&tcp("0.0.0.0", 5901)), "vnc://localhost:1\n");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(vnc(&tcp("::1", 5900)), "[::1]:0\n");
        assert_eq!(vnc(&tcp("fe80::1%eth0", 5903)), "[fe80::1%eth0]:3\n");
        assert_eq!(vnc(&tcp("::", 5902)), ":2\n");
        assert_eq!(dom_display(&tcp("::1", 5900)), "vnc://[::1]:0\n");
    }

    #[test]
    fn unix_socket_consoles() {
        let d = unix("/run/vmgate/vnc/alpha.sock");
        assert_eq!(vnc(&d), "/run/vmgate/vnc/alpha.sock\n");
        assert_eq!(dom_display(&d), "vnc+unix:///run/vmgate/vnc/alpha.sock\n");
    }

    #[test]
    fn an_empty_kind_is_vnc_and_others_are_refused() {
        let mut d = tcp("127.0.0.1", 5900);
        d.kind = String::new();
        assert_eq!(vnc(&d), "127.0.0.1:0\n");
        d.kind = "spice".into();
        assert_eq!(
            vnc_display("alpha", &d).expect_err("not VNC").to_string(),
            "Domain 'alpha' has no VNC console (its console is spice)"
        );
    }

    #[test]
    fn control_characters_in_paths_are_escaped() {
        assert_eq!(vnc(&unix("/tmp/a\x1b[2J")), "/tmp/a\\x1b[2J\n");
    }

    #[test]
    fn no_console_says_why() {
        let err = console_of(&info(DomainState::ShutOff, None)).expect_err("shut off");
        assert_eq!(
            err.to_string(),
            "Domain 'alpha' has no VNC console (it is shut off)"
        );
        let err = console_of(&info(DomainState::Running, None)).expect_err("no graphics");
        assert_eq!(
            err.to_string(),
            "Domain 'alpha' has no VNC console (no [graphics] in its definition)"
        );
        let d = tcp("127.0.0.1", 5900);
        let i = info(DomainState::Running, Some(d.clone()));
        assert_eq!(console_of(&i), Ok(&d));
        let i = DomainInfo { summary: None, ..i };
        assert_eq!(console_of(&i), Err(ConsoleError::Missing(MissingSummary)));
    }
}
