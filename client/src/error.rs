//! The client library's error type for commands, and the one place that decides how a
//! `tonic::Status` reads: a status the daemon sent is shown by its message alone (the daemon's
//! messages already name the cause and the fix), while one tonic made up locally from a broken
//! transport becomes "lost the connection to vmgated: ...".

use std::error::Error as StdError;
use std::path::PathBuf;

use crate::connect::ConnectError;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The daemon refused the call.
    #[error("{}", status_detail(.0))]
    Daemon(tonic::Status),
    /// The connection broke during a call.
    #[error("lost the connection to vmgated: {}", status_detail(.0))]
    Lost(tonic::Status),
    #[error("cannot read {path}: {err}", path = .path.display())]
    ReadFile { path: PathBuf, err: std::io::Error },
    /// The daemon's reply lacks a field the client needs.
    #[error("the daemon's reply has no {0}; are vmgate and vmgated the same version?")]
    Incomplete(&'static str),
    #[error("cannot encode the output as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    NoConsole(#[from] crate::console::display::NoConsole),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Password(#[from] crate::console::password::PasswordError),
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    #[error(transparent)]
    Since(#[from] crate::console::audit::SinceError),
    /// Input the command cannot use (an ACL file that does not parse, ...).
    #[error("{0}")]
    Invalid(String),
    /// Output a command writes as it goes (`event`) could not be written.
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
    /// The daemon ended a stream of events without saying why.
    #[error("vmgated ended the event stream")]
    EventsEnded,
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        if is_transport_status(&status) {
            ClientError::Lost(status)
        } else {
            ClientError::Daemon(status)
        }
    }
}

impl From<crate::console::display::ConsoleError> for ClientError {
    fn from(e: crate::console::display::ConsoleError) -> Self {
        match e {
            crate::console::display::ConsoleError::Missing(m) => m.into(),
            crate::console::display::ConsoleError::None(n) => n.into(),
        }
    }
}

impl From<crate::output::MissingSummary> for ClientError {
    fn from(_: crate::output::MissingSummary) -> Self {
        ClientError::Incomplete("domain summary")
    }
}

/// Whether tonic made this status up locally from a transport failure. Statuses decoded from
/// the daemon's trailers carry no source error; those built from hyper, h2 or I/O errors do.
pub fn is_transport_status(status: &tonic::Status) -> bool {
    status.source().is_some()
}

/// What a status says: its message, or for a status tonic made from a local error, that
/// error's chain (outermost first) followed by the message when it adds anything. An empty
/// message falls back to the code's description.
pub fn status_detail(status: &tonic::Status) -> String {
    let message = if status.message().is_empty() {
        status.code().description()
    } else {
        status.message()
    };
    match status.source() {
        Some(source) => {
            let mut text = error_chain(source);
            push_cause(&mut text, message);
            text
        }
        None => message.to_owned(),
    }
}

/// An error's message followed by those of its sources, joined by ": ", skipping repeats.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        push_cause(&mut text, &e.to_string());
        source = e.source();
    }
    text
}

fn push_cause(text: &mut String, cause: &str) {
    if !cause.is_empty() && !text.contains(cause) {
        text.push_str(": ");
        text.push_str(cause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_status_shows_its_message_only() {
        let e = ClientError::from(tonic::Status::not_found("domain 'x' not found"));
        assert!(matches!(e, ClientError::Daemon(_)));
        assert_eq!(e.to_string(), "domain 'x' not found");
    }

    #[test]
    fn transport_status_is_a_lost_connection() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let status = tonic::Status::from_error(Box::new(io));
        let e = ClientError::from(status);
        assert!(matches!(e, ClientError::Lost(_)), "{e:?}");
        assert_eq!(e.to_string(), "lost the connection to vmgated: broken pipe");
    }

    #[test]
    fn empty_message_uses_the_code() {
        let e = ClientError::from(tonic::Status::permission_denied(""));
        assert!(e.to_string().contains("permission"), "{e}");
    }
}
