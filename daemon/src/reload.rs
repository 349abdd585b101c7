//! Reloading TLS credentials without a restart, as `virt-admin server-update-tls` and
//! QEMU's `display-reload` do: SIGHUP and `Admin.ReloadTls` re-read every registered TLS
//! configuration's files and swap the new configuration in. New handshakes use it; open
//! connections keep the one they were made with. A configuration whose new files are broken
//! keeps its previous one, and the failure names the file.
//!
//! This module owns the registry and the swap; it knows nothing about listeners. Building a
//! configuration from files is `tls`'s job, and each listener reads
//! [`ReloadableServerConfig::current`] for every handshake.
//!
//! # Registering a configuration
//!
//! A component with its own TLS files (the API listener, the console gateway's VeNCrypt)
//! wraps its builder in a [`ReloadableServerConfig`] and registers it in `run`:
//!
//! ```ignore
//! let vencrypt = ReloadableServerConfig::new("vnc", move || {
//!     tls::server_config(&files, &clients, &[])
//! })?;
//! reloader.register(vencrypt.clone());
//! // ... and per handshake: TlsAcceptor::from(vencrypt.current())
//! ```
//!
//! Anything else that can reload implements [`ReloadTls`] itself.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::ServerConfig;

use crate::tls::TlsError;

/// Something whose TLS credentials can be re-read from disk.
pub trait ReloadTls: Send + Sync {
    /// Short name for messages: `api`, `vnc`.
    fn name(&self) -> &str;

    /// Re-reads the files and swaps the new configuration in; on error the previous one
    /// stays in force.
    fn reload(&self) -> Result<(), TlsError>;
}

type Build = dyn Fn() -> Result<Arc<ServerConfig>, TlsError> + Send + Sync;

/// A rustls server configuration that can be rebuilt from its files and swapped in.
pub struct ReloadableServerConfig {
    name: String,
    build: Box<Build>,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableServerConfig {
    /// Builds the configuration once (an error here is a start-up error) and keeps `build`
    /// to rebuild it on reload.
    pub fn new(
        name: impl Into<String>,
        build: impl Fn() -> Result<Arc<ServerConfig>, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<ReloadableServerConfig>, TlsError> {
        let first = build()?;
        Ok(Arc::new(ReloadableServerConfig {
            name: name.into(),
            build: Box::new(build),
            current: RwLock::new(first),
        }))
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        // A poisoned lock still holds a whole Arc: the swap is one assignment.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ReloadTls for ReloadableServerConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn reload(&self) -> Result<(), TlsError> {
        let fresh = (self.build)()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// Why a reload did not take everywhere.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("No TLS configuration to reload: listen_tls and vnc_tls are off")]
    NothingToReload,
    #[error("{}", failure_message(.failed, .reloaded))]
    Failed {
        /// The configurations that kept their previous files, and why.
        failed: Vec<(String, TlsError)>,
        /// The ones that did reload.
        reloaded: Vec<String>,
    },
    #[error("The reload was interrupted: {0}")]
    Interrupted(String),
}

fn failure_message(failed: &[(String, TlsError)], reloaded: &[String]) -> String {
    let mut parts: Vec<String> = failed
        .iter()
        .map(|(name, e)| format!("Kept the previous {name} TLS configuration: {e}"))
        .collect();
    if !reloaded.is_empty() {
        parts.push(format!("reloaded {}", reloaded.join(", ")));
    }
    parts.join("; ")
}

/// The registry of reloadable TLS configurations, shared by the SIGHUP handler and the
/// Admin service. Cloning gives another handle on the same registry.
#[derive(Clone, Default)]
pub struct Reloader {
    configs: Arc<RwLock<Vec<Arc<dyn ReloadTls>>>>,
    /// One reload at a time, so a SIGHUP and an RPC never interleave their swaps.
    running: Arc<Mutex<()>>,
}

impl Reloader {
    pub fn new() -> Reloader {
        Reloader::default()
    }

    /// Adds a configuration to every later reload.
    pub fn register(&self, config: Arc<dyn ReloadTls>) {
        self.configs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(config);
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|c| c.name().to_owned())
            .collect()
    }

    fn snapshot(&self) -> Vec<Arc<dyn ReloadTls>> {
        self.configs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reloads every registered configuration (each independently: one broken file does not
    /// stop the others) and returns the names reloaded. Reads files: call it off the async
    /// threads, or use [`Reloader::reload`].
    pub fn reload_blocking(&self) -> Result<Vec<String>, ReloadError> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let configs = self.snapshot();
        if configs.is_empty() {
            return Err(ReloadError::NothingToReload);
        }
        let mut reloaded = Vec::new();
        let mut failed = Vec::new();
        for config in configs {
            let name = config.name().to_owned();
            match config.reload() {
                Ok(()) => reloaded.push(name),
                Err(e) => failed.push((name, e)),
            }
        }
        if failed.is_empty() {
            Ok(reloaded)
        } else {
            Err(ReloadError::Failed { failed, reloaded })
        }
    }

    /// [`Reloader::reload_blocking`] on the blocking pool.
    pub async fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_blocking())
            .await
            .map_err(|e| ReloadError::Interrupted(e.to_string()))?
    }

    /// What SIGHUP does: reload and log the outcome. Needs a tokio runtime.
    pub fn on_hangup(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.reload().await {
                Ok(names) => tracing::info!(
                    "SIGHUP: reloaded the TLS configuration of {}",
                    names.join(", ")
                ),
                Err(ReloadError::NothingToReload) => {
                    tracing::info!("SIGHUP: no TLS configuration to reload")
                }
                Err(e) => tracing::error!("SIGHUP: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    struct Fake {
        name: &'static str,
        broken: AtomicBool,
        reloads: Mutex<u32>,
    }

    impl ReloadTls for Fake {
        fn name(&self) -> &str {
            self.name
        }

        fn reload(&self) -> Result<(), TlsError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(TlsError::Invalid {
                    path: "/pki/servercert.pem".into(),
                    reason: "not a PEM certificate".into(),
                });
            }
            *self.reloads.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            Ok(())
        }
    }

    fn fake(name: &'static str, broken: bool) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            broken: AtomicBool::new(broken),
            reloads: Mutex::new(0),
        })
    }

    #[test]
    fn an_empty_registry_says_so() {
        assert!(matches!(
            Reloader::new().reload_blocking(),
            Err(ReloadError::NothingToReload)
        ));
    }

    #[test]
    fn one_broken_configuration_does_not_stop_the_others() {
        let reloader = Reloader::new();
        let (api, vnc) = (fake("api", true), fake("vnc", false));
        reloader.register(api.clone());
        reloader.register(vnc.clone());
        assert_eq!(reloader.names(), ["api", "vnc"]);
        let err = reloader.reload_blocking().expect_err("api is broken");
        assert_eq!(
            err.to_string(),
            "Kept the previous api TLS configuration: /pki/servercert.pem: not a PEM \
             certificate; reloaded vnc"
        );
        assert_eq!(
            *vnc.reloads.lock().unwrap_or_else(PoisonError::into_inner),
            1
        );
        api.broken.store(false, Ordering::SeqCst);
        assert_eq!(
            reloader.reload_blocking().expect("both reload"),
            ["api", "vnc"]
        );
    }
}
