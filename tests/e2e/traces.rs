//! Issue 17's traces: one webhook's spans share one trace from the provider's request to the event, received
//! over OTLP/HTTP from the real binaries by [`hookline_e2e::otlp::Receiver`] (a stand-in for a collector).

use std::collections::BTreeSet;
use std::time::Duration;

use hookline_e2e::otlp::{Receiver, Span};
use hookline_e2e::*;

use crate::{SETTLE, TIMEOUT};

/// The ingress's span of a request to source `shop`, named as OpenTelemetry names HTTP server spans.
const WEBHOOK: &str = "POST /webhooks/shop";

/// The ingress's and the processor's spans of one webhook.
const SPANS: [&str; 7] = [WEBHOOK, "verify", "kafka.ack", "process", "dedup", "pipeline", "output"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhooks_spans_share_one_trace_from_the_providers_request_to_the_event() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let otlp = Receiver::start().await;
    let tracing = format!("[tracing]\notlp_endpoint = \"{}\"\n", otlp.endpoint());
    let ingress_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = ingress_toml(&kafka, &topics, &IngressOptions { extra: &tracing, ..IngressOptions::default() })
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{ingress_addr}\""));
    let _ingress = Component::ingress(dir.path(), ingress_addr, &toml).await;
    let processor_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml =
        processor_toml(kafka.brokers(), &topics, &dir.path().join("state"), &processor_addr.to_string(), &tracing);
    let _processor = ProcessorProcess::start(dir.path(), processor_addr, &toml, &[]).await;

    // One webhook continues its sender's trace; the other starts one at the ingress.
    let upstream_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let upstream_span = "00f067aa0ba902b7";
    let url = format!("http://{ingress_addr}/webhooks/shop");
    let send = |body: &'static str, traceparent: Option<String>| {
        let mut headers =
            vec![("content-type", "application/json".to_owned()), ("x-signature", sign(SECRET, body.as_bytes()))];
        headers.extend(traceparent.map(|t| ("traceparent", t)));
        let url = url.clone();
        async move { post(&url, &headers, body).await.unwrap() }
    };
    let continued =
        send(r#"{"id":"t-1","order":"o-1"}"#, Some(format!("00-{upstream_trace}-{upstream_span}-01"))).await;
    assert_eq!(continued.status, 202, "{}", continued.text());
    let started = send(r#"{"id":"t-2","order":"o-2"}"#, None).await;
    assert_eq!(started.status, 202, "{}", started.text());

    let events = read_topic(kafka.brokers(), &topics.events, 2, SETTLE, TIMEOUT).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let raw = read_topic(kafka.brokers(), &topics.raw, 2, SETTLE, TIMEOUT).await;
    for (id, expected_trace) in [("t-1", Some(upstream_trace)), ("t-2", None)] {
        let event = events.iter().filter_map(|e| e.value.as_ref()).find(|v| v["id"] == id).unwrap();
        let traceparent = event["traceparent"].as_str().unwrap_or_else(|| panic!("no traceparent on {event}"));
        let [version, trace, span, flags] = parts(traceparent);
        assert_eq!((version, flags), ("00", "01"), "{traceparent}");
        if let Some(expected) = expected_trace {
            assert_eq!(trace, expected, "the event continues the sender's trace");
        }
        let meta = &raw.iter().find(|r| dedup_key(r) == id).unwrap().headers["hookline-meta"];
        let [_, raw_trace, ingress_span, _] = parts(meta["traceparent"].as_str().unwrap());
        assert_eq!(raw_trace, trace, "the raw record carries the same trace");

        let spans = otlp.trace(trace, &SPANS, Duration::from_secs(30)).await;
        let named = |name: &str| -> &Span {
            spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no `{name}` span in {spans:#?}"))
        };
        let webhook = named(WEBHOOK);
        assert_eq!(webhook.service, "hookline-ingress");
        assert_eq!(webhook.span_id, ingress_span, "the raw record names the ingress's span");
        assert_eq!(webhook.parent_span_id, if expected_trace.is_some() { upstream_span } else { "" });
        for child in ["verify", "kafka.ack"] {
            assert_eq!(named(child).parent_span_id, webhook.span_id, "{child}");
        }
        let process = named("process");
        assert_eq!((process.service.as_str(), process.parent_span_id.as_str()), ("hookline-processor", ingress_span));
        assert_eq!(process.span_id, span, "the event names the processor's span");
        for child in ["dedup", "pipeline", "output"] {
            assert_eq!(named(child).parent_span_id, process.span_id, "{child}");
        }
        let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        assert_eq!(ids.len(), spans.len(), "every span once: {spans:#?}");
    }
}

/// The four fields of a W3C `traceparent`.
fn parts(traceparent: &str) -> [&str; 4] {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    [fields[0], fields[1], fields[2], fields[3]]
}
