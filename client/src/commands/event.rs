//! `event [--domain DOMAIN] [--event FAMILY | --all] [--loop] [--timeout SECS] [--timestamp]
//! [--json] [--list]`: domain events as they happen, as `virsh event` prints them.
//!
//! Without `--loop` the command ends after the first event; with it, when interrupted
//! (Ctrl-C) or at `--timeout`, which counts from the start. As virsh, it then prints
//! `event loop interrupted` or `event loop timed out`, and `events received: N`, on stdout,
//! and succeeds. With `--json`, stdout carries the event objects only (no closing lines),
//! so a script can read it line by line. Each line is flushed as it is printed, so a pipe
//! sees it at once; a reader that closes the pipe ends the command quietly.
//!
//! The daemon ending the stream is a failure: "vmgated is shutting down". When the daemon
//! reports that events were dropped because this client read too slowly, `--json` prints a
//! `"family": "lost"` object and the text form a warning on stderr.
//!
//! In the shell and in stdin scripts the command works as on the command line. Ctrl-C ends
//! the event loop and the shell goes on; tokio keeps handling SIGINT from then on, so later
//! commands of that run are no longer killed by Ctrl-C (the prompt itself never was).

use std::future::pending;
use std::io::ErrorKind;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::{Instant, sleep_until};
use vmgate::ClientError;
use vmgate::output::{LOST_FAMILY, event_json, event_line, events_lost_text};
use vmgate_proto::v1::{DomainEvent, EventsRequest};

use super::{Live, domain_ref};
use crate::session::Session;

/// The event families, as the daemon and virsh name them.
const FAMILIES: [&str; 3] = ["lifecycle", "reboot", "reset"];

#[derive(Debug, Args)]
pub struct EventArgs {
    /// Only this domain's events (name or UUID)
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Only this event family
    #[arg(long, value_name = "FAMILY", value_parser = FAMILIES, conflicts_with = "all")]
    event: Option<String>,
    /// Every event family (the default)
    #[arg(long)]
    all: bool,
    /// Print events until interrupted or --timeout, not just the first one
    #[arg(long = "loop")]
    keep_going: bool,
    /// Stop waiting after SECS seconds
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Start each line with the event's time (UTC)
    #[arg(long, conflicts_with = "json")]
    timestamp: bool,
    /// Print one JSON object per line with the fields time, time_ms, domain, uuid, family,
    /// event, detail, lost
    #[arg(long)]
    json: bool,
    /// List the event families and exit
    #[arg(long, exclusive = true)]
    list: bool,
}

/// Why the loop ended.
enum End {
    /// The first event (no `--loop`).
    Done,
    TimedOut,
    Interrupted,
    /// The reader closed stdout.
    Closed,
}

pub async fn run(
    session: &mut Session,
    args: &EventArgs,
    live: &mut dyn Live,
) -> Result<String, ClientError> {
    if args.list {
        return Ok(FAMILIES.map(|f| format!("{f}\n")).concat());
    }
    let request = EventsRequest {
        domain: args.domain.as_deref().map(domain_ref),
        family: args.event.clone().unwrap_or_default(),
    };
    // Counted from before the call, as the user sees it; a SIGINT handler that cannot be
    // installed leaves Ctrl-C with its default effect, which also ends the loop.
    let deadline = args
        .timeout
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let conn = session.conn().await?;
    let mut stream = conn.domain.events(request).await?.into_inner();
    let mut received = 0u64;
    let end = loop {
        let item = tokio::select! {
            item = stream.message() => item?,
            () = expires(deadline) => break End::TimedOut,
            () = interrupted(&mut sigint) => break End::Interrupted,
        };
        let Some(event) = item else {
            return Err(ClientError::EventsEnded);
        };
        let lost = event.family == LOST_FAMILY;
        if lost && !args.json {
            live.note(&events_lost_text(event.lost));
            continue;
        }
        if !write(live, &render(args, &event)?)? {
            break End::Closed;
        }
        if !lost {
            received += 1;
            if !args.keep_going {
                break End::Done;
            }
        }
    };
    Ok(closing_lines(args.json, &end, received))
}

fn render(args: &EventArgs, event: &DomainEvent) -> Result<String, ClientError> {
    Ok(if args.json {
        event_json(event)?
    } else {
        event_line(event, args.timestamp)
    })
}

/// Writes one line; false when the reader has gone (`vmgate event --loop | head -1`).
fn write(live: &mut dyn Live, text: &str) -> Result<bool, ClientError> {
    match live.line(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(ClientError::Write(e)),
    }
}

/// virsh's closing lines; none with `--json`, nor for a reader that has gone.
fn closing_lines(json: bool, end: &End, received: u64) -> String {
    let why = match end {
        _ if json => return String::new(),
        End::Closed => return String::new(),
        End::Done => "",
        End::TimedOut => "event loop timed out\n",
        End::Interrupted => "event loop interrupted\n",
    };
    format!("{why}events received: {received}\n")
}

async fn expires(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

async fn interrupted(sigint: &mut Option<Signal>) {
    if let Some(s) = sigint
        && s.recv().await.is_some()
    {
        return;
    }
    pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_lines_follow_virsh() {
        assert_eq!(closing_lines(false, &End::Done, 1), "events received: 1\n");
        assert_eq!(
            closing_lines(false, &End::TimedOut, 0),
            "event loop timed out\nevents received: 0\n"
        );
        assert_eq!(
            closing_lines(false, &End::Interrupted, 3),
            "event loop interrupted\nevents received: 3\n"
        );
        assert_eq!(closing_lines(true, &End::TimedOut, 2), "");
        assert_eq!(closing_lines(false, &End::Closed, 2), "");
    }
}
