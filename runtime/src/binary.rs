//! The `main` of both binaries, written once: read the log format, load and validate the config (a bad one
//! stops the process with exit code 2 and names the field), answer `--check`, then bind the listeners (the
//! ingress's webhook and admin addresses, the processor's admin address) and serve until SIGTERM or Ctrl-C
//! ([`crate::shutdown`]), with the config loaded again on each SIGHUP ([`crate::reload`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::reload::Reloads;
use crate::telemetry::{self, LogFormat};

/// What a binary plugs into [`main`].
#[derive(Debug)]
pub struct Binary<'a, Load, Summary, Traces, Listen, Serve> {
    /// The binary's name, the prefix of what it prints.
    pub name: &'static str,
    /// The config file.
    pub config: &'a Path,
    /// `--check`: validate the config and exit.
    pub check: bool,
    /// Loads and validates the config file: at startup, and again on each SIGHUP.
    pub load: Load,
    /// One line about a valid config, printed by `--check` and logged at startup.
    pub summary: Summary,
    /// The config's `[tracing]`: where spans are exported, if anywhere.
    pub traces: Traces,
    /// The config's listen addresses, each with its field.
    pub listen: Listen,
    /// Serves on the bound listeners, in the order of `listen`, until the token is cancelled, taking what it
    /// can of the configs loaded on SIGHUP.
    pub serve: Serve,
}

/// Runs a binary; its exit code: 0 after a clean shutdown, 2 for a bad config, 1 for a failure while serving.
pub fn main<S, E, Fut, const N: usize>(
    binary: Binary<
        '_,
        impl Fn(&Path) -> Result<S, ConfigError> + Send + Sync + 'static,
        impl Fn(&S) -> String,
        impl FnOnce(&S) -> Option<crate::traces::TracingSettings>,
        impl FnOnce(&S) -> [(SocketAddr, &'static str); N],
        impl FnOnce(S, [TcpListener; N], CancellationToken, Reloads<S>) -> Fut,
    >,
) -> ExitCode
where
    S: Send + 'static,
    E: std::error::Error,
    Fut: Future<Output = Result<(), E>>,
{
    crate::malloc::keep_freed_memory();
    let name = binary.name;
    let format = match LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match (binary.load)(binary.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let summary = (binary.summary)(&settings);
    if binary.check {
        println!("{}: ok ({summary})", binary.config.display());
        return ExitCode::SUCCESS;
    }
    // Held until the process exits: dropping it exports the last spans.
    let traces = match (binary.traces)(&settings).map(|t| crate::traces::Exporter::start(&t)).transpose() {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(format, traces.as_ref());
    let addresses = (binary.listen)(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return failed(name, &e),
    };
    let result = runtime.block_on(async {
        let mut listeners = Vec::with_capacity(N);
        for (addr, field) in addresses {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("config field `{field}`: cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string());
            tracing::info!(addr = %local, "{name} listening on {field} ({summary})");
            listeners.push(listener);
        }
        let listeners: [TcpListener; N] = listeners.try_into().map_err(|_| "a listener was not bound".to_owned())?;
        #[cfg(unix)]
        let reloads = crate::reload::on_sighup(binary.config.to_owned(), binary.load);
        #[cfg(not(unix))]
        let reloads = Reloads::channel().1;
        (binary.serve)(settings, listeners, crate::shutdown::on_signals(), reloads).await.map_err(|e| e.to_string())
    });
    // Blocking Kafka calls still running (bounded by their own timeouts) need not delay the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => failed(name, &message),
    }
}

fn failed(name: &str, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{error}");
    eprintln!("{name}: {error}");
    ExitCode::FAILURE
}
