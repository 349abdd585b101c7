//! `sasl-user add|passwd|del|list`: the SASL user database, as saslpasswd2 and
//! sasldblistusers2 manage Cyrus SASL's. Passwords are typed twice at a prompt without
//! echo, or read from one line of stdin with `--password-stdin` (the line after the command
//! when commands come from stdin); never from the command line.

use clap::{Args, Subcommand};
use vmgate::ClientError;
use vmgate::console::password::{self, PasswordError, PasswordOf};
use vmgate_proto::v1::{Empty, UserName, UserPassword};

use super::vnc_passwd::secret_line;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct SaslUserArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Add a user (prompts for the password)
    Add(PasswordArgs),
    /// Change a user's password; its open console sessions are cut
    Passwd(PasswordArgs),
    /// Delete a user; its open console sessions are cut
    Del(NameArg),
    /// List the users
    List {
        /// Print a JSON array of names
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct PasswordArgs {
    /// User name: letters, digits and . _ @ -
    #[arg(value_name = "NAME")]
    name: String,
    /// Read the password from one line of stdin instead of prompting
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
struct NameArg {
    #[arg(value_name = "NAME")]
    name: String,
}

pub async fn run(session: &mut Session, args: &SaslUserArgs) -> Result<String, ClientError> {
    match &args.action {
        Action::Add(a) => {
            let secret = new_password(session, a)?;
            let conn = session.conn().await?;
            let request = UserPassword {
                name: a.name.clone(),
                password: secret.into_bytes(),
            };
            conn.users.add(request).await?;
            Ok(format!("SASL user '{}' added\n", a.name))
        }
        Action::Passwd(a) => {
            let secret = new_password(session, a)?;
            let conn = session.conn().await?;
            let request = UserPassword {
                name: a.name.clone(),
                password: secret.into_bytes(),
            };
            let cut = conn.users.set_password(request).await?.into_inner();
            Ok(changed(
                "Password of SASL user",
                &a.name,
                "changed",
                cut.disconnected,
            ))
        }
        Action::Del(a) => {
            let conn = session.conn().await?;
            let request = UserName {
                name: a.name.clone(),
            };
            let cut = conn.users.delete(request).await?.into_inner();
            Ok(changed("SASL user", &a.name, "deleted", cut.disconnected))
        }
        Action::List { json } => {
            let conn = session.conn().await?;
            let names = conn.users.list(Empty {}).await?.into_inner().names;
            if *json {
                return Ok(serde_json::to_string_pretty(&names)? + "\n");
            }
            Ok(names.iter().map(|n| format!("{n}\n")).collect())
        }
    }
}

fn changed(what: &str, name: &str, verb: &str, cut: u32) -> String {
    match cut {
        0 => format!("{what} '{name}' {verb}\n"),
        n => format!("{what} '{name}' {verb}; {n} console session(s) disconnected\n"),
    }
}

/// The new password, read before connecting: in a script the next line must be taken
/// even when the command fails, or it would run as a command of its own.
fn new_password(session: &mut Session, args: &PasswordArgs) -> Result<String, ClientError> {
    let secret = if args.password_stdin {
        secret_line(session, PasswordOf::SaslUser)?
    } else if session.reads_script() {
        return Err(PasswordError::UserScriptPrompt.into());
    } else {
        password::confirm_user_password(&args.name, |prompt: &str| {
            rpassword::prompt_password(prompt)
        })?
    };
    password::check_user_password(&secret)?;
    Ok(secret)
}
