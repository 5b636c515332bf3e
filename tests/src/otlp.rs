//! A minimal OTLP/HTTP traces receiver for the tracing tests, standing in for an OpenTelemetry Collector: it
//! answers `POST /v1/traces` as a collector does, decodes the protobuf request with the OpenTelemetry
//! project's own message types (`opentelemetry-proto`) and keeps every span it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The `service.name` of its resource.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Its trace id, hex.
    pub trace_id: String,
    /// Its id, hex.
    pub span_id: String,
    /// Its parent's id, hex; empty for a root.
    pub parent_span_id: String,
}

/// The receiver, listening on loopback until dropped.
#[derive(Debug)]
pub struct Receiver {
    /// Its address: the endpoint is `http://{addr}/v1/traces`.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    stop: CancellationToken,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (kept, stopped) = (spans.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let kept = kept.clone();
                let service = hyper::service::service_fn(move |req| receive(req, kept.clone()));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Receiver { addr, spans, stop }
    }

    /// The OTLP/HTTP traces endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The spans of `trace_id` once every one of `names` is among them, or what there is after `timeout`.
    pub async fn trace(&self, trace_id: &str, names: &[&str], timeout: Duration) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans: Vec<Span> = self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect();
            if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(req: Request<Incoming>, kept: Arc<Mutex<Vec<Span>>>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path_ok = req.method() == hyper::Method::POST && req.uri().path() == "/v1/traces";
    let body = req.into_body().collect().await?.to_bytes();
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) if path_ok => r,
        _ => return Ok(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap_or_default()),
    };
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                });
            }
        }
    }
    if let Ok(mut spans) = kept.lock() {
        spans.extend(received);
    }
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    Ok(Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(answer)))
        .unwrap_or_default())
}
