//! The Kerberos console client as a child process (why: see the parent module's doc).
//!
//! [`child_main`] is the child: it parses its arguments, logs in one or more times with
//! [`super::login`], asks for full frames, times all of it, and prints one JSON line, the
//! [`Report`] (or `{"error": ...}` and exit status 1). With `--hold` it first builds the
//! login's first token, prints `{"ready": true}` and waits for a line on stdin before it
//! connects: the parent decides when a token built earlier reaches the server.
//! [`GssClient`] is the parent's side: the command line, the Kerberos environment, and a
//! deadline on every wait.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use vmgated::auth::sasl_layer::SecurityLayer;

use super::{FirstStep, login, login_layer};

/// The argument that makes the benchmark binary run as this child.
pub const CHILD_ARG: &str = "gss-client";

/// How long a child may run, beyond its streaming time, before the parent kills it.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// What a child is asked to do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Logins one after another (each a new TCP connection and context); at least one.
    pub logins: usize,
    /// Full-frame updates read after the last login.
    pub updates: usize,
    /// Then full-frame updates back to back for this long.
    pub stream_for: Option<Duration>,
    /// Instead of all that: one login, then wrapping data with its layer for this long
    /// (one core encrypting, as the gateway does for each frame).
    pub wrap_for: Option<Duration>,
    /// The security layer to ask for (RFC 4752's bit); None: confidentiality.
    pub layer: Option<u8>,
}

/// What a child did.
#[derive(Clone, Debug)]
pub struct Report(Value);

impl Report {
    /// The desktop name in ServerInit (the guest's name).
    pub fn name(&self) -> &str {
        self.0["name"].as_str().unwrap_or_default()
    }

    pub fn size(&self) -> (u64, u64) {
        let n = |k: &str| self.0[k].as_u64().unwrap_or_default();
        (n("width"), n("height"))
    }

    /// Each login's time from building the first token to ServerInit received.
    pub fn login_times(&self) -> Vec<Duration> {
        self.floats("login_ms")
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect()
    }

    /// The Raw pixel bytes of each of the `updates` full frames.
    pub fn update_bytes(&self) -> Vec<u64> {
        self.floats("update_bytes").map(|b| b as u64).collect()
    }

    /// MB/s of Raw pixel data while streaming.
    pub fn stream_rate(&self) -> Option<f64> {
        let bytes = self.0["stream_bytes"].as_f64()?;
        Some(bytes / self.0["stream_secs"].as_f64()? / 1e6)
    }

    /// MB/s the layer wrapped (a [`Plan::wrap_for`] run).
    pub fn wrap_rate(&self) -> Option<f64> {
        let bytes = self.0["wrap_bytes"].as_f64()?;
        Some(bytes / self.0["wrap_secs"].as_f64()? / 1e6)
    }

    /// Everything the child reported.
    pub fn json(&self) -> &Value {
        &self.0
    }

    fn floats(&self, key: &str) -> impl Iterator<Item = f64> + '_ {
        let items = self.0[key]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        items.iter().filter_map(Value::as_f64)
    }
}

/// The parent's handle on the client program: which binary (and leading arguments), with
/// which Kerberos environment.
#[derive(Clone, Debug)]
pub struct GssClient {
    program: PathBuf,
    prefix: Vec<OsString>,
    env: Vec<(String, String)>,
    host: String,
}

impl GssClient {
    /// `program prefix...` asking tickets for `vnc/host`, with `env` (the KDC's
    /// `client_env`) added to the environment.
    pub fn new(
        program: PathBuf,
        prefix: &[&str],
        env: Vec<(String, String)>,
        host: &str,
    ) -> GssClient {
        GssClient {
            program,
            prefix: prefix.iter().map(OsString::from).collect(),
            env,
            host: host.to_owned(),
        }
    }

    /// Runs `plan` against `addr` and returns the report, or the child's error text.
    pub fn run(&self, addr: SocketAddr, plan: &Plan) -> Result<Report, String> {
        let mut running = self.spawn(addr, plan, false)?;
        running.finish()
    }

    /// Starts one login that builds its first token now and sends it at [`Held::go`].
    pub fn hold(&self, addr: SocketAddr) -> Result<Held, String> {
        let plan = Plan {
            logins: 1,
            updates: 1,
            ..Plan::default()
        };
        let mut running = self.spawn(addr, &plan, true)?;
        let line = running.line(CHILD_DEADLINE)?;
        let ready: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        if ready["ready"] != json!(true) {
            running.kill();
            return Err(error_text(&ready, &line));
        }
        Ok(Held(running))
    }

    fn spawn(&self, addr: SocketAddr, plan: &Plan, hold: bool) -> Result<Running, String> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .arg(addr.to_string())
            .args(["--host", &self.host])
            .args(["--logins", &plan.logins.max(1).to_string()])
            .args(["--updates", &plan.updates.to_string()]);
        if let Some(d) = plan.stream_for {
            cmd.args(["--stream-ms", &d.as_millis().to_string()]);
        }
        if let Some(d) = plan.wrap_for {
            cmd.args(["--wrap-ms", &d.as_millis().to_string()]);
        }
        if let Some(layer) = plan.layer {
            cmd.args(["--layer", &layer.to_string()]);
        }
        if hold {
            cmd.arg("--hold");
        }
        let mut child = cmd
            .env_remove("KRB5CCNAME")
            .env_remove("KRB5_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.program.display()))?;
        let stdin = child.stdin.take();
        let lines = child.stdout.take().map(read_lines);
        let busy = plan.stream_for.unwrap_or_default() + plan.wrap_for.unwrap_or_default();
        let deadline = Instant::now() + CHILD_DEADLINE + busy;
        Ok(Running {
            child,
            stdin,
            lines,
            deadline,
        })
    }
}

/// A child that has built its first token and waits to send it.
pub struct Held(Running);

impl Held {
    /// Lets the child connect and log in; returns its report or error text.
    pub fn go(mut self) -> Result<Report, String> {
        if let Some(mut stdin) = self.0.stdin.take() {
            writeln!(stdin, "go").map_err(|e| format!("tell the client to go: {e}"))?;
        }
        self.0.finish()
    }
}

/// A running child, its stdout read line by line on a thread (so that waits have
/// deadlines), killed when dropped.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<mpsc::Receiver<String>>,
    deadline: Instant,
}

impl Running {
    fn line(&mut self, within: Duration) -> Result<String, String> {
        let until = self.deadline.min(Instant::now() + within);
        let wait = until.saturating_duration_since(Instant::now());
        let lines = self.lines.as_ref().ok_or("no stdout")?;
        lines
            .recv_timeout(wait)
            .map_err(|e| format!("no answer from the Kerberos client ({e})"))
    }

    /// The last line: the report, or the error as the child put it.
    fn finish(&mut self) -> Result<Report, String> {
        let line = self.line(CHILD_DEADLINE)?;
        let value: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        let _ = self.child.wait();
        match value.get("error") {
            None => Ok(Report(value)),
            Some(_) => Err(error_text(&value, &line)),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn read_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn error_text(value: &Value, line: &str) -> String {
    value["error"].as_str().unwrap_or(line).to_owned()
}

/// The child: `ADDR --host H --logins N --updates N [--stream-ms MS] [--layer BIT] [--hold]`, with the
/// Kerberos environment already in place. Prints one JSON line.
pub fn child_main(args: &[String]) -> ExitCode {
    let result = parse(args).and_then(|(addr, host, plan, hold)| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let result = runtime.block_on(run_child(addr, &host, &plan, hold));
        // Not waiting for a stdin read that may still block.
        runtime.shutdown_background();
        result
    });
    let (line, code) = match result {
        Ok(report) => (report, ExitCode::SUCCESS),
        Err(e) => (json!({ "error": format!("{e:#}") }), ExitCode::FAILURE),
    };
    println!("{line}");
    code
}

fn parse(args: &[String]) -> anyhow::Result<(SocketAddr, String, Plan, bool)> {
    let (addr, rest) = args.split_first().context("no address")?;
    let addr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    let (mut host, mut plan, mut hold) = ("localhost".to_owned(), Plan::default(), false);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => host = value()?.clone(),
            "--logins" => plan.logins = value()?.parse()?,
            "--updates" => plan.updates = value()?.parse()?,
            "--stream-ms" => plan.stream_for = Some(Duration::from_millis(value()?.parse()?)),
            "--wrap-ms" => plan.wrap_for = Some(Duration::from_millis(value()?.parse()?)),
            "--layer" => plan.layer = Some(value()?.parse()?),
            "--hold" => hold = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok((addr, host, plan, hold))
}

async fn run_child(addr: SocketAddr, host: &str, plan: &Plan, hold: bool) -> anyhow::Result<Value> {
    if let Some(budget) = plan.wrap_for {
        return wrap_for(addr, host, budget).await;
    }
    let mut login_ms = Vec::new();
    let mut client = None;
    for _ in 0..plan.logins.max(1) {
        let start = Instant::now();
        let first = FirstStep::new(host, plan.layer)?;
        if hold {
            println!("{}", json!({ "ready": true }));
            wait_for_go().await?;
        }
        let start = if hold { Instant::now() } else { start };
        client = Some(login(addr, first, true).await?);
        login_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut client = client.ok_or_else(|| anyhow!("no login"))?;
    let mut update_bytes = Vec::new();
    for _ in 0..plan.updates {
        update_bytes.push(client.full_update().await?);
    }
    let (mut stream_bytes, mut stream_secs) = (0, 0.0);
    if let Some(budget) = plan.stream_for {
        client.full_update().await?;
        let start = Instant::now();
        while start.elapsed() < budget {
            stream_bytes += client.full_update().await?;
        }
        stream_secs = start.elapsed().as_secs_f64();
    }
    let init = client.server_init();
    Ok(json!({
        "name": init.name_lossy(),
        "width": init.width,
        "height": init.height,
        "login_ms": login_ms,
        "update_bytes": update_bytes,
        "stream_bytes": stream_bytes,
        "stream_secs": stream_secs,
    }))
}

/// Wraps pieces as large as the server accepts, for `budget`.
async fn wrap_for(addr: SocketAddr, host: &str, budget: Duration) -> anyhow::Result<Value> {
    let mut layer = login_layer(addr, FirstStep::new(host, None)?).await?;
    let piece = vec![0x5a; layer.peer_max().saturating_sub(128).max(1)];
    let (mut wrap_bytes, start) = (0, Instant::now());
    while start.elapsed() < budget {
        layer.wrap(&piece)?;
        wrap_bytes += piece.len();
    }
    let wrap_secs = start.elapsed().as_secs_f64();
    Ok(json!({ "wrap_bytes": wrap_bytes, "wrap_secs": wrap_secs, "piece": piece.len() }))
}

/// A line on stdin; EOF (the parent went away) or [`CHILD_DEADLINE`] ends the child.
async fn wait_for_go() -> anyhow::Result<()> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|n| n > 0)
    });
    match tokio::time::timeout(CHILD_DEADLINE, read).await {
        Ok(Ok(Ok(true))) => Ok(()),
        Ok(Ok(Ok(false))) => bail!("the parent closed stdin before saying go"),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("no go within {CHILD_DEADLINE:?}"),
    }
}
