//! Traces: one trace per webhook, from the provider's request to the event, exported over OTLP/HTTP
//! (protobuf) to an OpenTelemetry Collector, Jaeger, Tempo or any OTLP receiver. Off by default; on with
//! `[tracing] otlp_endpoint` in either binary's config.
//!
//! The W3C trace context travels with the webhook: the ingress continues the request's `traceparent` header
//! (or starts a trace), writes its span's context into the raw record's metadata (`traceparent`), the
//! processor continues that, and the event carries the processor's as the CloudEvents distributed-tracing
//! extension attribute `traceparent`. A binary with tracing off passes the context on unchanged.
//!
//! Spans are `tracing` spans at TRACE level with target [`TARGET`], which only the exporting layer enables: they
//! never reach the logs, and when tracing is off no layer wants them, so they are not even created. Spans are
//! exported in batches from a background thread; when its queue is full, spans are dropped, never waited for.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::ConfigError;

/// The target of every span hookline exports.
pub const TARGET: &str = "hookline::trace";

/// `[tracing]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/HTTP traces endpoint, such as `http://127.0.0.1:4318/v1/traces` (a collector next to the
    /// process; plain HTTP). Empty (the default): no traces.
    pub otlp_endpoint: String,
    /// The share of traces started here that are sampled, 0.0 to 1.0 (default 1.0). A webhook that arrives
    /// with a `traceparent` follows its sampled flag, so a trace is kept or dropped whole.
    pub sampling_ratio: f64,
    /// The `service.name` of the spans. Default: the binary's name.
    pub service_name: Option<String>,
    /// How long one export may take before it is abandoned. Default 5000 ms.
    pub export_timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig { otlp_endpoint: String::new(), sampling_ratio: 1.0, service_name: None, export_timeout_ms: 5000 }
    }
}

/// Validated `[tracing]`: where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The OTLP/HTTP traces endpoint.
    pub endpoint: String,
    /// The share of new traces sampled.
    pub sampling_ratio: f64,
    /// The spans' `service.name`.
    pub service_name: String,
    /// One export's deadline.
    pub export_timeout: Duration,
}

impl TracingConfig {
    /// Checks the section; `None` when tracing is off. `service` is the default service name.
    pub fn validate(self, service: &str) -> Result<Option<TracingSettings>, ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::field("tracing.sampling_ratio", "must be between 0.0 and 1.0"));
        }
        crate::config::in_range("tracing.export_timeout_ms", self.export_timeout_ms, 100, 60_000)?;
        if self.otlp_endpoint.is_empty() {
            return Ok(None);
        }
        let uri: http::Uri = self.otlp_endpoint.parse().map_err(|e| {
            ConfigError::field("tracing.otlp_endpoint", format!("`{}` is not a URL: {e}", self.otlp_endpoint))
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ConfigError::field(
                "tracing.otlp_endpoint",
                "must be an http:// URL such as http://127.0.0.1:4318/v1/traces (an OpenTelemetry Collector next to \
                 the process; it forwards over TLS where needed)",
            ));
        }
        Ok(Some(TracingSettings {
            endpoint: self.otlp_endpoint,
            sampling_ratio: self.sampling_ratio,
            service_name: self.service_name.unwrap_or_else(|| service.to_owned()),
            export_timeout: Duration::from_millis(self.export_timeout_ms),
        }))
    }
}

/// The exporting pipeline: spans are batched and sent until it is dropped, which sends what is left.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `settings.endpoint`.
    pub fn start(settings: &TracingSettings) -> Result<Exporter, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&settings.endpoint)
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|e| format!("tracing: cannot build the OTLP exporter: {e}"))?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(16_384)
                    .with_max_export_batch_size(512)
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sampling_ratio))))
            .with_resource(Resource::builder().with_service_name(settings.service_name.clone()).build())
            .build();
        Ok(Exporter { provider })
    }

    /// The `tracing` layer that turns hookline's spans into exported ones.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("hookline"))
            .with_filter(tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE))
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("tracing: the last spans could not be exported: {e}");
        }
    }
}

/// The trace context of a W3C `traceparent` value; `None` when it is not a valid one.
pub fn context_of(traceparent: &str) -> Option<Context> {
    if !is_traceparent(traceparent) {
        return None;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Whether `s` is a version-00 W3C `traceparent`, to the letter (the propagator alone accepts short ids):
/// `00-{32 lowercase hex, not all 0}-{16 lowercase hex, not all 0}-{2 lowercase hex}`.
fn is_traceparent(s: &str) -> bool {
    let hex =
        |f: &str, len: usize| f.len() == len && f.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let nonzero = |f: &str| f.bytes().any(|b| b != b'0');
    let fields: Vec<&str> = s.split('-').collect();
    matches!(fields.as_slice(), [version, trace, span, flags]
        if *version == "00" && hex(trace, 32) && nonzero(trace) && hex(span, 16) && nonzero(span) && hex(flags, 2))
}

/// Makes `span` continue the trace of `traceparent`, if that is a valid one.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(context_of) {
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` of `span`, when it is exported (tracing on); else `passed_on`, the context the
/// webhook came with, if valid, so that a hop without tracing does not cut the trace.
pub fn traceparent(span: &tracing::Span, passed_on: Option<&str>) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        return Some(format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()));
    }
    passed_on.filter(|t| is_traceparent(t)).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_off_by_default_and_checked_when_on() {
        assert_eq!(TracingConfig::default().validate("hookline-ingress").unwrap(), None);
        let on = TracingConfig { otlp_endpoint: "http://127.0.0.1:4318/v1/traces".into(), ..TracingConfig::default() };
        let s = on.clone().validate("hookline-ingress").unwrap().unwrap();
        assert_eq!((s.service_name.as_str(), s.sampling_ratio), ("hookline-ingress", 1.0));
        let e = |c: TracingConfig| c.validate("x").unwrap_err().to_string();
        assert!(e(TracingConfig { sampling_ratio: 1.5, ..on.clone() }).contains("tracing.sampling_ratio"));
        assert!(e(TracingConfig { otlp_endpoint: "collector:4318".into(), ..on.clone() }).contains("otlp_endpoint"));
        assert!(e(TracingConfig { otlp_endpoint: "https://c/v1/traces".into(), ..on }).contains("http://"));
    }

    #[test]
    fn traceparents_are_read_only_when_valid_and_passed_on_without_tracing() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(context_of(valid).is_some());
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf9-00f0-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(context_of(bad).is_none(), "{bad}");
        }
        // No exporting layer here: a span has no context of its own, and the one it came with is passed on.
        let span = tracing::trace_span!(target: TARGET, "webhook");
        assert_eq!(traceparent(&span, Some(valid)).as_deref(), Some(valid));
        assert_eq!(traceparent(&span, Some("garbage")), None);
        assert_eq!(traceparent(&span, None), None);
    }
}
