//! Orderly shutdown: one `CancellationToken` that every listener, gateway and supervisor
//! watches (through child tokens), and one `TaskTracker` that `run` waits on before it
//! returns, so in-flight work finishes and nothing is left half-written.

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The daemon's shutdown signal and the set of tasks it waits for.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything to stop. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has been asked for.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// A token cancelled with the daemon's, that a component may also cancel on its own.
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Spawns a task that `wait` will wait for.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Waits for every tracked task to end; call after `trigger`.
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Triggers `shutdown` on SIGTERM or SIGINT. SIGHUP is handed to `on_hangup`.
pub fn watch_signals(
    shutdown: Shutdown,
    on_hangup: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => on_hangup(),
            }
        }
        shutdown.trigger();
    });
    Ok(())
}
