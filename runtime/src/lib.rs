//! What hookline's binaries share at run time.
//!
//! The record contracts live in `hookline-schemas`; this crate holds the process plumbing both the ingress and
//! the processor need, so neither depends on the other:
//!
//! - [`backoff`]: the waits of every retry loop (exponential, jittered);
//! - [`binary`]: the `main` of both binaries (config, `--check`, logging, listener, signals);
//! - [`config`]: one TOML file plus `HOOKLINE_*` environment overrides, with errors that name the field;
//! - [`kafka`]: the `[kafka]` config section, librdkafka client settings, topic creation;
//! - [`admin`]: the `/livez`, `/readyz` and `/metrics` responses;
//! - [`telemetry`]: tracing setup (text or JSON);
//! - [`shutdown`]: SIGTERM / Ctrl-C to a cancellation token;
//! - [`reload`]: SIGHUP to a freshly loaded config;
//! - [`malloc`]: glibc malloc settings for processes that run librdkafka.

pub mod admin;
pub mod backoff;
pub mod binary;
pub mod config;
pub mod kafka;
pub mod malloc;
pub mod reload;
pub mod shutdown;
pub mod telemetry;
pub mod traces;

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
