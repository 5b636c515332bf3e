//! Logging setup. `HOOKLINE_LOG` holds the filter (default `info`; `RUST_LOG` syntax), `HOOKLINE_LOG_FORMAT`
//! is `text` (default) or `json` (one object per line, for production log pipelines). Exported traces are
//! [`crate::traces`]'.
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

/// Installs the global subscriber: logs on stderr, and hookline's spans to `traces` when tracing is on. Call
/// once, from `main`.
pub fn init(format: LogFormat, traces: Option<&crate::traces::Exporter>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = std::env::var("HOOKLINE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_target(false).with_filter(filter).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).with_filter(filter).boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs);
    let traces = traces.map(|t| t.layer());
    registry.with(traces).init();
}
