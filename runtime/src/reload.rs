//! SIGHUP to a freshly loaded config: on each signal the config file is read again (with the same environment
//! overrides) and validated, and the result, a new config or the error naming its field, is handed to the
//! running binary, which decides what it can apply. A config that fails to load changes nothing.

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::config::ConfigError;

/// The configs loaded on SIGHUP, in order.
#[derive(Debug)]
pub struct Reloads<S>(mpsc::Receiver<Result<S, ConfigError>>);

/// Hands configs to a [`Reloads`]: what SIGHUP does, and what a test does to reload in-process.
#[derive(Debug, Clone)]
pub struct Reloader<S>(mpsc::Sender<Result<S, ConfigError>>);

impl<S> Reloader<S> {
    /// Hands over a loaded config (or why it could not be loaded); `false` once the binary no longer listens.
    pub async fn send(&self, loaded: Result<S, ConfigError>) -> bool {
        self.0.send(loaded).await.is_ok()
    }
}

impl<S> Reloads<S> {
    /// A pair whose [`Reloader`] feeds the [`Reloads`].
    pub fn channel() -> (Reloader<S>, Reloads<S>) {
        let (tx, rx) = mpsc::channel(1);
        (Reloader(tx), Reloads(rx))
    }

    /// The next loaded config; `None` when no more can come.
    pub async fn next(&mut self) -> Option<Result<S, ConfigError>> {
        self.0.recv().await
    }
}

impl<S: Send + 'static> Reloads<S> {
    /// For a binary that reads its config at startup only: each SIGHUP is answered with a log line saying so
    /// (and whether the file would be valid), instead of the default action of SIGHUP, which ends the process.
    pub fn refuse(mut self, name: &'static str) {
        tokio::spawn(async move {
            while let Some(loaded) = self.next().await {
                match loaded {
                    Ok(_) => tracing::warn!("SIGHUP: {name} reads its config at startup only; restart it to apply"),
                    Err(e) => {
                        tracing::error!("SIGHUP: {name} reads its config at startup only, and it is invalid: {e}")
                    }
                }
            }
        });
    }
}

/// Loads `path` with `load` on every SIGHUP and hands the result over. Must be called inside a tokio runtime.
/// (hookline runs on Unix; SIGHUP has no equivalent elsewhere.)
#[cfg(unix)]
pub fn on_sighup<S: Send + 'static>(
    path: PathBuf,
    load: impl Fn(&std::path::Path) -> Result<S, ConfigError> + Send + Sync + 'static,
) -> Reloads<S> {
    let (reloader, reloads) = Reloads::channel();
    // Installed before returning, so that no SIGHUP from now on has its default action (ending the process).
    let Some(mut hangups) = hangups() else { return reloads };
    tokio::spawn(async move {
        let load = std::sync::Arc::new(load);
        while hangups.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
            let (load, path) = (load.clone(), path.clone());
            let loaded = match tokio::task::spawn_blocking(move || load(&path)).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!(error = %e, "the config reload task failed");
                    continue;
                }
            };
            if !reloader.send(loaded).await {
                return;
            }
        }
    });
    reloads
}

#[cfg(unix)]
fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; the config will not reload");
            None
        }
    }
}
