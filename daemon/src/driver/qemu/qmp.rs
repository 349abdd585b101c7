//! A QMP client: one connection to a guest's monitor socket, with typed commands and the
//! guest's events on a channel. It owns the wire protocol only (greeting, capabilities
//! negotiation, JSON lines, matching answers to commands by `id`); what the events mean for
//! the guest's state is the supervisor's business.
//!
//! Two tasks serve a connection: a reader that routes each line to the command waiting for
//! it or to the event channel, and a writer that sends whole lines (so a caller giving up
//! on a command halfway cannot leave half a command on the socket). Lines are bounded by
//! [`MAX_LINE`]: a peer sending more, or anything that is not JSON, has its connection
//! dropped. The end of the connection is an event too ([`Event::Closed`]), and for QMP EOF
//! means the guest stopped. Events go out on a broadcast channel, so a slow listener loses
//! the oldest (it sees `Lagged` and can ask `query-status`) instead of stalling answers.
//!
//! Commands wait as long as QEMU takes; callers that need a deadline wrap them in
//! `tokio::time::timeout`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// The longest line accepted from QEMU. The answers this client asks for are a few hundred
/// bytes; `query-qmp-schema`, the largest QEMU has, is about 200 KiB.
pub const MAX_LINE: usize = 1024 * 1024;

/// Events kept for a listener that falls behind.
pub const EVENT_CAPACITY: usize = 256;

/// Commands queued for the writer.
const WRITE_QUEUE: usize = 32;

/// Why a QMP exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected.
    #[error("Cannot connect to the QMP socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// The first line was not a QMP greeting.
    #[error("QEMU's QMP greeting is not valid: {0}")]
    Greeting(String),
    /// The connection ended (before or while a command was waiting).
    #[error("{0}")]
    Closed(CloseReason),
    /// QEMU answered with an error.
    #[error("QEMU refused {command}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    /// QEMU answered with something this client cannot read.
    #[error("Unexpected answer to {command}: {message}")]
    Reply { command: String, message: String },
}

/// How a QMP connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// QEMU closed the socket: it exited, was killed, or quit on request.
    #[error("The guest stopped (its QMP connection closed)")]
    Eof,
    /// The connection failed, or QEMU sent what QMP does not allow; it was dropped.
    #[error("The QMP connection was dropped: {0}")]
    Broken(String),
}

/// A guest event, as QEMU reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The guest is shutting down (`guest`: it asked to itself); with `-no-shutdown` it then
    /// stops instead of exiting.
    Shutdown { guest: bool, reason: String },
    /// The ACPI power button was pressed (`system_powerdown`).
    Powerdown,
    /// The guest was reset.
    Reset { guest: bool, reason: String },
    /// The vCPUs stopped.
    Stop,
    /// The vCPUs run again.
    Resume,
    /// The guest entered ACPI S3.
    Suspend,
    /// The guest woke from S3.
    Wakeup,
    /// The guest kernel panicked (with a pvpanic device).
    GuestPanicked { action: String },
    /// Any other event.
    Other { name: String, data: Value },
    /// Synthesized once when the connection ends; nothing follows it.
    Closed(CloseReason),
}

impl Event {
    fn from_wire(name: &str, data: Value) -> Event {
        let text = |key: &str| data[key].as_str().unwrap_or_default().to_string();
        let flag = |key: &str| data[key].as_bool().unwrap_or(false);
        match name {
            "SHUTDOWN" => Event::Shutdown {
                guest: flag("guest"),
                reason: text("reason"),
            },
            "POWERDOWN" => Event::Powerdown,
            "RESET" => Event::Reset {
                guest: flag("guest"),
                reason: text("reason"),
            },
            "STOP" => Event::Stop,
            "RESUME" => Event::Resume,
            "SUSPEND" => Event::Suspend,
            "WAKEUP" => Event::Wakeup,
            "GUEST_PANICKED" => Event::GuestPanicked {
                action: text("action"),
            },
            _ => Event::Other {
                name: name.to_string(),
                data,
            },
        }
    }
}

/// What QEMU says about itself when a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// (major, minor, micro).
    pub version: (u64, u64, u64),
    /// The distribution's package string, e.g. `Debian 1:10.0.2+ds-2`.
    pub package: String,
    /// Capabilities QEMU offers (none are enabled by this client).
    pub capabilities: Vec<String>,
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// Whether the vCPUs run.
    pub running: bool,
    /// QEMU's run state.
    pub status: RunState,
}

/// QEMU's `RunState`, the values a supervisor acts on; the rest are [`RunState::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Paused,
    /// Not started yet (`-S`, or before the first `cont`).
    Prelaunch,
    /// Powered off, kept by `-no-shutdown`.
    Shutdown,
    /// In ACPI S3.
    Suspended,
    GuestPanicked,
    InternalError,
    IoError,
    #[serde(other)]
    Other,
}

/// One vCPU from `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuInfo {
    pub cpu_index: u32,
    /// The host thread running this vCPU.
    pub thread_id: u32,
}

/// `query-memory-size-summary`, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MemorySummary {
    pub base_memory: u64,
    #[serde(default)]
    pub plugged_memory: Option<u64>,
}

type Answer = Result<Value, QmpError>;

#[derive(Default)]
struct Pending {
    /// id -> (command name, who waits for the answer).
    waiting: HashMap<u64, (String, oneshot::Sender<Answer>)>,
    /// Set when the connection has ended; new commands fail with it.
    closed: Option<CloseReason>,
}

/// A negotiated QMP connection. Dropping it stops its tasks and closes the socket.
pub struct QmpClient {
    greeting: Greeting,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    lines: mpsc::Sender<String>,
    events: broadcast::Sender<Event>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl QmpClient {
    /// Connects to a monitor socket and negotiates capabilities. The receiver gets every
    /// event from then on.
    pub async fn connect(path: &Path) -> Result<(QmpClient, broadcast::Receiver<Event>), QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| QmpError::Connect {
                path: path.to_path_buf(),
                source: Arc::new(e),
            })?;
        QmpClient::handshake(stream).await
    }

    /// Reads the greeting from `stream`, starts the connection's tasks and sends
    /// `qmp_capabilities`.
    pub async fn handshake<S>(
        stream: S,
    ) -> Result<(QmpClient, broadcast::Receiver<Event>), QmpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let mut input = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
        let greeting = match input.next().await {
            Some(Ok(line)) => parse_greeting(&line)?,
            Some(Err(e)) => return Err(QmpError::Greeting(line_error(e).to_string())),
            None => return Err(QmpError::Greeting("QEMU closed the socket first".into())),
        };
        let (events, first_listener) = broadcast::channel(EVENT_CAPACITY);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (lines, queue) = mpsc::channel(WRITE_QUEUE);
        let reader = tokio::spawn(read_loop(input, pending.clone(), events.clone()));
        let writer = tokio::spawn(write_loop(write, queue));
        let client = QmpClient {
            greeting,
            pending,
            next_id: AtomicU64::new(0),
            lines,
            events,
            reader,
            writer,
        };
        client.execute("qmp_capabilities", None).await?;
        Ok((client, first_listener))
    }

    /// QEMU's greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Another receiver of events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends `command` and waits for its answer (`return`'s value).
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(reason) = &pending.closed {
                return Err(QmpError::Closed(reason.clone()));
            }
            pending.waiting.insert(id, (command.to_string(), tx));
        }
        let mut message = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        if self.lines.send(message.to_string()).await.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiting
                .remove(&id);
            return Err(QmpError::Closed(self.closed_reason()));
        }
        rx.await
            .unwrap_or_else(|_| Err(QmpError::Closed(self.closed_reason())))
    }

    fn closed_reason(&self) -> CloseReason {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .closed
            .clone()
            .unwrap_or_else(|| CloseReason::Broken("the connection's tasks ended".into()))
    }

    async fn execute_unit(&self, command: &str) -> Result<(), QmpError> {
        self.execute(command, None).await.map(drop)
    }

    async fn query<T: serde::de::DeserializeOwned>(&self, command: &str) -> Result<T, QmpError> {
        let value = self.execute(command, None).await?;
        serde_json::from_value(value).map_err(|e| QmpError::Reply {
            command: command.to_string(),
            message: e.to_string(),
        })
    }

    /// `query-status`.
    pub async fn query_status(&self) -> Result<Status, QmpError> {
        self.query("query-status").await
    }

    /// `query-cpus-fast`: the vCPUs and their host threads.
    pub async fn query_cpus_fast(&self) -> Result<Vec<CpuInfo>, QmpError> {
        self.query("query-cpus-fast").await
    }

    /// `query-memory-size-summary`.
    pub async fn query_memory_size_summary(&self) -> Result<MemorySummary, QmpError> {
        self.query("query-memory-size-summary").await
    }

    /// `system_powerdown`: presses the ACPI power button; the guest decides what to do.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute_unit("system_powerdown").await
    }

    /// `system_reset`: a hard reset.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute_unit("system_reset").await
    }

    /// `stop`: pauses the vCPUs.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute_unit("stop").await
    }

    /// `cont`: resumes the vCPUs.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute_unit("cont").await
    }

    /// `quit`: QEMU exits. Its answer and its EOF race, so EOF counts as success.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute_unit("quit").await {
            Err(QmpError::Closed(CloseReason::Eof)) => Ok(()),
            other => other,
        }
    }
}

fn parse_greeting(line: &str) -> Result<Greeting, QmpError> {
    let bad = |what: &str| QmpError::Greeting(format!("{what} in {}", clip(line)));
    let value: Value = serde_json::from_str(line).map_err(|_| bad("not JSON"))?;
    let qmp = value.get("QMP").ok_or_else(|| bad("no \"QMP\" member"))?;
    let version = &qmp["version"]["qemu"];
    let number = |key: &str| version[key].as_u64().ok_or_else(|| bad("no version"));
    Ok(Greeting {
        version: (number("major")?, number("minor")?, number("micro")?),
        package: qmp["version"]["package"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        capabilities: qmp["capabilities"]
            .as_array()
            .map(|caps| {
                caps.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The start of a line, for messages.
fn clip(line: &str) -> String {
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}", &line[..end])
}

fn line_error(e: LinesCodecError) -> CloseReason {
    match e {
        LinesCodecError::MaxLineLengthExceeded => {
            CloseReason::Broken(format!("QEMU sent a line over {MAX_LINE} bytes"))
        }
        LinesCodecError::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
            CloseReason::Broken("QEMU sent a line that is not UTF-8".into())
        }
        // QEMU exiting with a command of ours unread resets the connection: it is gone all
        // the same
        LinesCodecError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset => CloseReason::Eof,
        LinesCodecError::Io(e) => CloseReason::Broken(format!("reading the socket failed: {e}")),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut write: W, mut queue: mpsc::Receiver<String>) {
    while let Some(mut line) = queue.recv().await {
        line.push('\n');
        if let Err(e) = write.write_all(line.as_bytes()).await {
            // the reader sees the same socket fail and reports it
            tracing::debug!(error = %e, "QMP write failed");
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut input: FramedRead<R, LinesCodec>,
    pending: Arc<Mutex<Pending>>,
    events: broadcast::Sender<Event>,
) {
    let reason = loop {
        let line = match input.next().await {
            None => break CloseReason::Eof,
            Some(Err(e)) => break line_error(e),
            Some(Ok(line)) => line,
        };
        if let Err(reason) = route(&line, &pending, &events) {
            break reason;
        }
    };
    let waiting = {
        let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.closed = Some(reason.clone());
        std::mem::take(&mut pending.waiting)
    };
    for (_, (_, tx)) in waiting {
        let _ = tx.send(Err(QmpError::Closed(reason.clone())));
    }
    let _ = events.send(Event::Closed(reason));
}

/// Hands one line to its command or to the event channel; an error ends the connection.
fn route(
    line: &str,
    pending: &Mutex<Pending>,
    events: &broadcast::Sender<Event>,
) -> Result<(), CloseReason> {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(line) else {
        return Err(CloseReason::Broken(format!(
            "QEMU sent what is not a JSON object: {}",
            clip(line)
        )));
    };
    if let Some(name) = message
        .get("event")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        let data = message.remove("data").unwrap_or(Value::Null);
        let event = Event::from_wire(&name, data);
        // no listener is not an error: events are for whoever cares
        let _ = events.send(event);
        return Ok(());
    }
    let waiter = message.get("id").and_then(Value::as_u64).and_then(|id| {
        let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.waiting.remove(&id)
    });
    let Some((command, tx)) = waiter else {
        // an answer nobody waits for: its caller gave up, or QEMU could not parse a
        // command (those errors carry no id); a bounded line, so just note it
        tracing::warn!(message = %clip(line), "QMP answer without a waiting command");
        return Ok(());
    };
    let answer = if let Some(value) = message.remove("return") {
        Ok(value)
    } else if let Some(error) = message.get("error") {
        Err(QmpError::Command {
            command,
            class: error["class"].as_str().unwrap_or_default().to_string(),
            desc: error["desc"].as_str().unwrap_or_default().to_string(),
        })
    } else {
        Err(QmpError::Reply {
            command,
            message: format!("neither return nor error in {}", clip(line)),
        })
    };
    let _ = tx.send(answer);
    Ok(())
}

#[cfg(test)]
#[path = "qmp_tests.rs"]
mod tests;
