//! `make bench`'s load generator. Every request carries a unique, correctly signed body
//! (`X-Signature: sha256=<hex HMAC-SHA256>`, `{"id":"<run>-<n>",...}`), so every 202 can be looked for on the
//! raw topic afterwards.
//!
//! - `closed`: N connections, each sending its next request when the previous one is answered (like wrk);
//! - `open`: a fixed offered rate whatever the server does (a surge), each request with a deadline, at most
//!   `--max-in-flight` at once (a sender fleet's connections): a request due while that many are unanswered
//!   is counted `not_sent`, the load generator's own limit, not an answer of the server;
//! - `verify`: reads a topic and reports which accepted ids are missing.
//!
//! Each run prints one JSON line: counts by status, throughput, latency percentiles.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N connections in a closed loop.
    Closed {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(long)]
        connections: usize,
    },
    /// A fixed offered rate.
    Open {
        #[command(flatten)]
        target: Target,
        /// Requests per second offered.
        #[arg(long)]
        rate: f64,
        /// Deadline of each request, in ms; slower ones count as `timeout`.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Requests unanswered at once, at most.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
    },
    /// Checks that every accepted id is on a topic.
    Verify {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// File of accepted ids (one per line).
        #[arg(long)]
        accepted: String,
    },
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The webhook URL.
    #[arg(long)]
    url: String,
    /// The HMAC secret.
    #[arg(long)]
    secret: String,
    /// Run length in seconds.
    #[arg(long)]
    duration_secs: u64,
    /// Where to write the ids of accepted requests.
    #[arg(long)]
    accepted_out: Option<String>,
    /// Body size in bytes (padded).
    #[arg(long, default_value_t = 600)]
    body_bytes: usize,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<String, u64>,
    accepted: Vec<String>,
}

struct Shared {
    target: Target,
    run: String,
    next: AtomicU64,
    stats: Mutex<Stats>,
    padding: String,
}

impl Shared {
    fn request(&self) -> (String, http::Request<Full<Bytes>>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.run);
        let body = format!(r#"{{"id":"{id}","order":"o{}","type":"bench.event","pad":"{}"}}"#, n % 1000, self.padding);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.target.secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let req = http::Request::post(&self.target.url)
            .header("content-type", "application/json")
            .header("x-signature", sig)
            .header("host", "bench")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        (id, req)
    }

    fn record(&self, id: String, status: &str, latency: Duration) {
        let mut s = self.stats.lock().unwrap();
        s.latencies_us.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        *s.statuses.entry(status.to_owned()).or_default() += 1;
        if status == "202" {
            s.accepted.push(id);
        }
    }
}

fn summary(mode: &str, shared: &Shared, elapsed: Duration, extra: serde_json::Value) -> serde_json::Value {
    let mut s = shared.stats.lock().unwrap();
    s.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if s.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((s.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(s.latencies_us[i]) / 1000.0
    };
    let accepted = s.statuses.get("202").copied().unwrap_or_default();
    if let Some(path) = &shared.target.accepted_out {
        std::fs::write(path, s.accepted.join("\n")).unwrap();
    }
    let mut out = serde_json::json!({
        "mode": mode,
        "requests": s.latencies_us.len(),
        "elapsed_secs": elapsed.as_secs_f64(),
        "accepted_per_sec": accepted as f64 / elapsed.as_secs_f64(),
        "responses_per_sec": s.latencies_us.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "statuses": s.statuses,
    });
    if let (Some(o), Some(e)) = (out.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    out
}

async fn closed(target: Target, connections: usize) -> anyhow::Result<serde_json::Value> {
    let shared = Arc::new(shared(target.clone()));
    let uri: http::Uri = target.url.parse()?;
    let addr = format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80));
    let started = Instant::now();
    let end = started + Duration::from_secs(target.duration_secs);
    let mut workers = Vec::new();
    for _ in 0..connections {
        let shared = shared.clone();
        let addr = addr.clone();
        workers.push(tokio::spawn(async move {
            'reconnect: while Instant::now() < end {
                let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                    continue;
                };
                tokio::spawn(conn);
                while Instant::now() < end {
                    let (id, req) = shared.request();
                    let t = Instant::now();
                    match sender.send_request(req).await {
                        Ok(resp) => {
                            let status = resp.status().as_u16().to_string();
                            let _ = resp.into_body().collect().await;
                            shared.record(id, &status, t.elapsed());
                        }
                        Err(_) => {
                            shared.record(id, "error", t.elapsed());
                            continue 'reconnect;
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    Ok(summary("closed", &shared, started.elapsed(), serde_json::json!({ "connections": connections })))
}

async fn open(target: Target, rate: f64, timeout: Duration, max_in_flight: usize) -> anyhow::Result<serde_json::Value> {
    let shared = Arc::new(shared(target.clone()));
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .build::<_, Full<Bytes>>(connector);
    let started = Instant::now();
    let total = (rate * target.duration_secs as f64) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = tokio::task::JoinSet::new();
    let mut not_sent = 0u64;
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        while let Some(done) = tasks.try_join_next() {
            done?;
        }
        if tasks.len() >= max_in_flight {
            not_sent += 1;
            continue;
        }
        let (id, req) = shared.request();
        let client = client.clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let status = match tokio::time::timeout(timeout, async {
                let resp = client.request(req).await?;
                let status = resp.status().as_u16().to_string();
                resp.into_body().collect().await?;
                Ok::<_, anyhow::Error>(status)
            })
            .await
            {
                Ok(Ok(status)) => status,
                Ok(Err(e)) => error_kind(&e).to_owned(),
                Err(_) => "timeout".to_owned(),
            };
            shared.record(id, &status, t.elapsed());
        });
    }
    let sending = started.elapsed();
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let sent = total - not_sent;
    Ok(summary(
        "open",
        &shared,
        started.elapsed(),
        serde_json::json!({
            "offered_per_sec": rate,
            "sent_per_sec": sent as f64 / sending.as_secs_f64(),
            "not_sent": not_sent,
        }),
    ))
}

/// What kind of failure a request without an answer had.
fn error_kind(e: &anyhow::Error) -> &'static str {
    match e.downcast_ref::<hyper_util::client::legacy::Error>() {
        Some(e) if e.is_connect() => "error:connect",
        Some(_) => "error:connection",
        None => "error:body",
    }
}

fn shared(target: Target) -> Shared {
    let run = format!("r{}", std::process::id());
    let padding = "x".repeat(target.body_bytes.saturating_sub(80));
    Shared { target, run, next: AtomicU64::new(0), stats: Mutex::new(Stats::default()), padding }
}

fn verify(brokers: &str, topic: &str, accepted_file: &str) -> anyhow::Result<serde_json::Value> {
    let accepted: HashSet<String> =
        std::fs::read_to_string(accepted_file)?.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-verify-{}", std::process::id()))
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, i32::try_from(p)?, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    // Read until every partition reported its end and nothing new arrived for two seconds.
    let mut found = HashSet::new();
    let mut read = 0u64;
    let mut at_end = HashSet::new();
    let mut last = Instant::now();
    let started = Instant::now();
    while (at_end.len() < partitions || last.elapsed() < Duration::from_secs(2))
        && last.elapsed() < Duration::from_secs(30)
        && started.elapsed() < Duration::from_secs(600)
    {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                read += 1;
                at_end.remove(&m.partition());
                let meta = m.headers().and_then(|h| h.iter().find(|h| h.key == "hookline-meta")).and_then(|h| h.value);
                if let Some(key) = meta
                    .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                    .and_then(|v| v.get("dedup_key").and_then(serde_json::Value::as_str).map(str::to_owned))
                {
                    found.insert(key);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("verify: {e}"),
            None => {}
        }
    }
    let missing: Vec<&String> = accepted.iter().filter(|id| !found.contains(*id)).take(20).collect();
    Ok(serde_json::json!({
        "mode": "verify",
        "accepted": accepted.len(),
        "records_read": read,
        "found_on_topic": accepted.iter().filter(|id| found.contains(*id)).count(),
        "missing_examples": missing,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = match Cli::parse().mode {
        Mode::Closed { target, connections } => closed(target, connections).await?,
        Mode::Open { target, rate, timeout_ms, max_in_flight } => {
            open(target, rate, Duration::from_millis(timeout_ms), max_in_flight).await?
        }
        Mode::Verify { brokers, topic, accepted } => {
            tokio::task::spawn_blocking(move || verify(&brokers, &topic, &accepted)).await??
        }
    };
    println!("{out}");
    Ok(())
}
