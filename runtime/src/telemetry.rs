//! Tracing setup. `HOOKLINE_LOG` holds the filter (default `info`; `RUST_LOG` syntax), `HOOKLINE_LOG_FORMAT`
//! is `text` (default) or `json` (one object per line, for production log pipelines).
//!
//! Bodies, signatures and secrets are never logged above debug level; librdkafka's own logs arrive under
//! the `librdkafka` target.

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `HOOKLINE_LOG_FORMAT`.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("HOOKLINE_LOG_FORMAT").as_deref() {
            Err(_) | Ok("") | Ok("text") => Ok(LogFormat::Text),
            Ok("json") => Ok(LogFormat::Json),
            Ok(other) => Err(format!("HOOKLINE_LOG_FORMAT must be `text` or `json`, not `{other}`")),
        }
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = std::env::var("HOOKLINE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}
