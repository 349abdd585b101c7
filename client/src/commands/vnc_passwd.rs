//! `vnc-passwd DOMAIN [--password-stdin] [--valid-to TIME | --expire-now]
//! [--connected keep|disconnect|fail]`: changes a guest's VNC password.
//!
//! The password never comes from the command line (where `ps` and shell history would show
//! it): it is typed twice at a prompt on the terminal without echo, or read from the first
//! line of stdin with `--password-stdin`. When the commands themselves come from stdin, stdin's
//! next line is the script's: `--password-stdin` takes the line after the command, and there
//! is no one to prompt, so the command without it is refused. Everything that can fail
//! without the password (arguments, connection, the domain's name) is checked before the
//! prompt.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use vmgate::ClientError;
use vmgate::console::password::{self, PasswordError, PasswordOf};
use vmgate_proto::v1::{ConnectedPolicy, SetPasswordRequest};

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct VncPasswdArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Read the password from one line of stdin instead of prompting: its first line, or in
    /// commands read from stdin the line after this one (an empty line removes the domain's
    /// own password)
    #[arg(long)]
    password_stdin: bool,
    /// RFC 3339 time after which the password no longer works, e.g. 2030-01-31T18:00:00Z
    #[arg(long, value_name = "TIME", conflicts_with = "expire_now")]
    valid_to: Option<String>,
    /// Make the password expire at once
    #[arg(long)]
    expire_now: bool,
    /// What happens to connected clients [default: the domain's `connected` setting]
    #[arg(long, value_enum, value_name = "POLICY")]
    connected: Option<Connected>,
}

/// libvirt's values for `connected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Connected {
    /// Leave them connected
    Keep,
    /// Disconnect the sessions that used the old password
    Disconnect,
    /// Refuse the change while clients are connected
    Fail,
}

impl From<Connected> for ConnectedPolicy {
    fn from(c: Connected) -> Self {
        match c {
            Connected::Keep => ConnectedPolicy::Keep,
            Connected::Disconnect => ConnectedPolicy::Disconnect,
            Connected::Fail => ConnectedPolicy::Fail,
        }
    }
}

pub async fn run(session: &mut Session, args: &VncPasswdArgs) -> Result<String, ClientError> {
    // Read a piped password first: in a script it is the next line, which must be taken even
    // when the command fails, or it would run as a command of its own.
    let piped = if args.password_stdin {
        Some(from_stdin(session)?)
    } else if session.reads_script() {
        return Err(PasswordError::ScriptPrompt.into());
    } else {
        None
    };
    if let Some(text) = &args.valid_to {
        password::check_valid_to(text)?;
    }
    let conn = session.conn().await?;
    // Also makes a mistyped name fail before the prompt, and gives the name to print.
    let name = conn
        .domain
        .lookup(domain_ref(&args.domain))
        .await?
        .into_inner()
        .name;
    let new_password = match piped {
        Some(p) => p,
        // Reading the terminal blocks this thread; the runtime's worker keeps the connection
        // alive meanwhile.
        None => password::confirm_new(&name, |prompt: &str| rpassword::prompt_password(prompt))?,
    };
    let request = SetPasswordRequest {
        domain: Some(domain_ref(&args.domain)),
        password: new_password,
        valid_to: args.valid_to.clone().unwrap_or_default(),
        expire_now: args.expire_now,
        connected: args
            .connected
            .map_or(ConnectedPolicy::Default, ConnectedPolicy::from)
            .into(),
    };
    let reply = conn.console.set_password(request).await?.into_inner();
    Ok(match reply.disconnected {
        0 => format!("Password of domain '{name}' changed\n"),
        n => format!("Password of domain '{name}' changed; {n} session(s) disconnected\n"),
    })
}

/// The password `--password-stdin` reads: the script's next line when the commands come from
/// stdin, else stdin's first line (without echo when stdin is a terminal, as in the
/// interactive shell). Checked for length.
fn from_stdin(session: &mut Session) -> Result<String, PasswordError> {
    let line = secret_line(session, PasswordOf::Domain)?;
    password::check_length(&line)?;
    Ok(line)
}

/// One secret line from stdin: the script's next line when the commands come from stdin,
/// else stdin's first line (without echo on a terminal). A line over `of`'s limit is
/// refused without being read to its end; in a script the rest of it is then skipped, so
/// that no part of a password runs as a command.
pub(super) fn secret_line(session: &mut Session, of: PasswordOf) -> Result<String, PasswordError> {
    Ok(match session.script_input() {
        Some(script) => match password::read_line(script, of) {
            Err(e) if password::left_line_unread(&e) => {
                password::skip_line(script).map_err(PasswordError::Stdin)?;
                return Err(e);
            }
            line => line?,
        },
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                rpassword::read_password().map_err(PasswordError::Stdin)?
            } else {
                password::read_line(&mut stdin.lock(), of)?
            }
        }
    })
}
