//! Logging in to vmgated with SASL when the daemon asks for it (`auth_* = "sasl"`):
//! the mechanisms the connection offers, the credentials (from the auth file, else typed
//! at a prompt on the terminal), and the exchange itself through the `Auth` service, with
//! rsasl's client doing SCRAM-SHA-256 or PLAIN. In builds with the `gssapi` feature a
//! Kerberos ticket (`kinit`) is used first when the daemon offers GSSAPI, with no prompt;
//! without a ticket the password mechanisms remain. One login serves the whole
//! connection, so the shell and stdin mode log in once for many commands.

pub mod auth_file;
#[cfg(feature = "gssapi")]
pub mod gssapi;

use std::io::{BufRead, IsTerminal, Write};

use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
use vmgate_proto::v1::{Empty, MechanismList, SaslStart, SaslStep, auth_client::AuthClient};

use crate::connect::ApiChannel;

pub use auth_file::{AuthFileError, Credentials};

/// Why a login did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("vmgated offers no way to log in on this connection: {0}")]
    Refused(String),
    #[error("vmgated offers only {0}, which this client does not speak")]
    NoMechanism(String),
    #[error(transparent)]
    AuthFile(#[from] AuthFileError),
    #[error(
        "vmgated asks for a SASL login; no credentials for {host} in {file}, and no terminal \
         to prompt on: add a [[credentials]] table with host = \"{host}\" there"
    )]
    NoCredentials { host: String, file: String },
    #[error("cannot read the credentials from the terminal: {0}")]
    Prompt(std::io::Error),
    #[error("SASL login failed: {}", .0.message())]
    Daemon(tonic::Status),
    #[error("SASL login failed: {0}")]
    Sasl(String),
}

impl From<tonic::Status> for LoginError {
    fn from(status: tonic::Status) -> Self {
        LoginError::Daemon(status)
    }
}

/// The mechanisms this client can run, strongest first.
const SPOKEN: [&str; 2] = ["SCRAM-SHA-256", "PLAIN"];

/// Where the connection goes, as the login needs it.
pub struct LoginTarget<'a> {
    /// The host as the URI names it, or `localhost` for a UNIX socket: matched against the
    /// auth file's `host` keys.
    pub host: &'a str,
    /// `user@` from the URI.
    pub user: Option<&'a str>,
    /// The connection is plain TCP: warn before authenticating.
    pub plain_tcp: bool,
}

/// What the connection offers: the first call on every connection. A daemon without the
/// `Auth` service asks for no login.
pub async fn offer(channel: ApiChannel) -> Result<MechanismList, tonic::Status> {
    match AuthClient::new(channel).mechanisms(Empty {}).await {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(MechanismList::default()),
        Err(status) => Err(status),
    }
}

/// Logs in when `offer` asks for it; returns the user, or None when no login was needed.
pub async fn login(
    channel: ApiChannel,
    offer: &MechanismList,
    target: &LoginTarget<'_>,
) -> Result<Option<String>, LoginError> {
    let mut auth = AuthClient::new(channel);
    if !offer.required {
        return Ok(None);
    }
    if offer.mechanisms.is_empty() {
        return Err(LoginError::Refused(offer.refusal.clone()));
    }
    let spoken = SPOKEN
        .iter()
        .find(|m| offer.mechanisms.iter().any(|o| o == *m));
    #[cfg(feature = "gssapi")]
    if offer.mechanisms.iter().any(|m| m == "GSSAPI") {
        let tried = match gssapi::user_credential() {
            Ok(_) => kerberos_login(&mut auth, offer, target).await,
            Err(why) => Err(LoginError::Sasl(why)),
        };
        match tried {
            Ok(user) => return Ok(Some(user)),
            Err(e) if spoken.is_none() => return Err(e),
            // A ticket that did not work (or none): the password mechanisms remain.
            Err(e) if gssapi::user_credential().is_ok() => {
                eprintln!("warning: Kerberos login failed ({e}); trying a password");
            }
            Err(_) => {}
        }
    }
    let Some(mechanism) = spoken else {
        return Err(LoginError::NoMechanism(offer.mechanisms.join(", ")));
    };
    let credentials = credentials(target)?;
    if target.plain_tcp {
        eprintln!(
            "warning: logging in over plain TCP: nothing protects this connection after the \
             login; use qemu+tls:// for anything but tests"
        );
    }
    let config = SASLConfig::with_credentials(
        None,
        credentials.username.clone(),
        credentials.password.clone(),
    )
    .map_err(|e| LoginError::Sasl(e.to_string()))?;
    let name =
        Mechname::parse(mechanism.as_bytes()).map_err(|e| LoginError::Sasl(e.to_string()))?;
    let mut client = SASLClient::new(config)
        .start_suggested(&[name])
        .map_err(|e| LoginError::Sasl(e.to_string()))?;
    let mut out = Vec::new();
    client
        .step(None, &mut out)
        .map_err(|e| LoginError::Sasl(e.to_string()))?;
    let mut reply = auth
        .start(SaslStart {
            mechanism: (*mechanism).to_owned(),
            data: out,
            has_data: true,
        })
        .await?
        .into_inner();
    // SCRAM needs two round trips; anything much longer is not a mechanism we speak.
    for _ in 0..4 {
        if reply.complete {
            if reply.has_data {
                // The server's final message proves it knew the credential (SCRAM).
                client
                    .step(Some(&reply.data), &mut Vec::new())
                    .map_err(|e| LoginError::Sasl(format!("the server's proof: {e}")))?;
            }
            return Ok(Some(reply.user));
        }
        let mut out = Vec::new();
        client
            .step(Some(&reply.data), &mut out)
            .map_err(|e| LoginError::Sasl(e.to_string()))?;
        reply = auth
            .step(SaslStep {
                data: out,
                has_data: true,
            })
            .await?
            .into_inner();
    }
    Err(LoginError::Sasl("the exchange did not end".into()))
}

/// A GSSAPI login with the user's Kerberos ticket, for the service the daemon named.
#[cfg(feature = "gssapi")]
async fn kerberos_login(
    auth: &mut AuthClient<ApiChannel>,
    offer: &MechanismList,
    target: &LoginTarget<'_>,
) -> Result<String, LoginError> {
    let service = match offer.gssapi_service.as_str() {
        "" => "libvirt",
        named if named.contains(['/', '@']) => {
            return Err(LoginError::Sasl(format!(
                "the daemon names {named:?} as its Kerberos service, which is not a service name"
            )));
        }
        named => named,
    };
    let sasl = LoginError::Sasl;
    let mut initiator =
        gssapi::Initiator::new(service, target.host, gssapi::LAYER_NONE).map_err(sasl)?;
    let first = initiator.step(None).map_err(sasl)?;
    let mut reply = auth
        .start(SaslStart {
            mechanism: "GSSAPI".to_owned(),
            has_data: first.is_some(),
            data: first.unwrap_or_default(),
        })
        .await?
        .into_inner();
    // The context takes one or two round trips, the layer negotiation one more.
    for _ in 0..6 {
        if reply.complete {
            // Only a server that proved itself (mutual authentication, then the layer
            // negotiation) may end the login.
            if !initiator.is_done() {
                return Err(LoginError::Sasl(
                    "the daemon ended the Kerberos login before proving who it is".into(),
                ));
            }
            return Ok(reply.user);
        }
        let server = reply.has_data.then_some(reply.data.as_slice());
        let out = initiator.step(server).map_err(sasl)?;
        reply = auth
            .step(SaslStep {
                has_data: out.is_some(),
                data: out.unwrap_or_default(),
            })
            .await?
            .into_inner();
    }
    Err(LoginError::Sasl("the Kerberos exchange did not end".into()))
}

/// The credentials: the auth file's, else typed at the terminal.
fn credentials(target: &LoginTarget<'_>) -> Result<Credentials, LoginError> {
    let file = auth_file::path();
    if let Some(found) = auth_file::lookup(&file, target.host, target.user)? {
        return Ok(found);
    }
    if !std::io::stdin().is_terminal() {
        return Err(LoginError::NoCredentials {
            host: target.host.to_owned(),
            file: file.display().to_string(),
        });
    }
    let default = target
        .user
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default();
    eprint!("Username for {} [{default}]: ", target.host);
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .map_err(LoginError::Prompt)?;
    let typed = typed.trim();
    let username = if typed.is_empty() {
        default
    } else {
        typed.to_owned()
    };
    let password = rpassword::prompt_password(format!("Password for {username}: "))
        .map_err(LoginError::Prompt)?;
    Ok(Credentials { username, password })
}
