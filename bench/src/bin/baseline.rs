//! The baseline `make bench` measures hookline's ingress against: the least a webhook receiver that answers
//! honestly can do. hyper, an HMAC-SHA256 check of the body, one idempotent `acks=all` produce, and 202 only
//! once the delivery report arrived. No config, limits, metrics, keys or headers.
//!
//! Usage: bench-baseline <listen> <brokers> <topic> <secret>
//!
//! Records are keyed like hookline keys them (the ordering key, `order` in the bench's bodies), so both spread
//! over the same 12 partitions the same way.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

struct State {
    producer: FutureProducer,
    topic: String,
    secret: Vec<u8>,
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let signature = req
        .headers()
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST));
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&state.secret).expect("hmac key");
    mac.update(&body);
    if signature.is_none_or(|s| mac.verify_slice(&s).is_err()) {
        return Ok(reply(StatusCode::UNAUTHORIZED));
    }
    // The record is keyed like hookline keys it (the ordering key, `order` in the bench's bodies), so both
    // spread records over partitions the same way.
    let key = ordering_key(&body);
    let record = FutureRecord::<[u8], [u8]>::to(&state.topic).payload(&body).key(key);
    match state.producer.send(record, std::time::Duration::ZERO).await {
        Ok(_) => Ok(reply(StatusCode::ACCEPTED)),
        Err(_) => Ok(reply(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// The value of the first `"order":"…"` in the body, without parsing JSON; empty if absent.
fn ordering_key(body: &[u8]) -> &[u8] {
    const FIELD: &[u8] = b"\"order\":\"";
    let Some(start) = body.windows(FIELD.len()).position(|w| w == FIELD).map(|i| i + FIELD.len()) else {
        return b"";
    };
    let len = body[start..].iter().position(|b| *b == b'"').unwrap_or(0);
    &body[start..start + len]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, brokers, topic, secret] = args.as_slice() else {
        anyhow::bail!("usage: bench-baseline <listen> <brokers> <topic> <secret>");
    };
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let topic_spec = rdkafka::admin::NewTopic::new(topic, 12, rdkafka::admin::TopicReplication::Fixed(-1));
    let _ = admin.create_topics([&topic_spec], &rdkafka::admin::AdminOptions::new()).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The producer settings of hookline's ingress by default, so the comparison is of the code around it.
        .set("linger.ms", "1")
        .set("partitioner", "murmur2_random")
        .set("compression.type", "lz4")
        .create()?;
    let state = Arc::new(State { producer, topic: topic.clone(), secret: secret.as_bytes().to_vec() });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
