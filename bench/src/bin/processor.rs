//! `make bench`'s processor tools.
//!
//! - `preload`: writes N raw records as the ingress writes them (1 KB bodies, a share of re-deliveries of
//!   earlier webhooks, K ordering keys), and prints how many distinct webhooks it wrote;
//! - `bare`: the baseline, a bare consume → produce loop (no dedup, no state, no parsing): each raw record's
//!   value is copied to the same partition of an output topic, offsets committed once outputs are acked;
//! - `watch`: follows a running hookline-processor's `/metrics` until it has published `--expect` events and
//!   reports its throughput (first record consumed → last event acknowledged);
//! - `latency`: writes raw records at a fixed rate while a read_committed consumer reads the events topic,
//!   and reports, per webhook, the time from Kafka acknowledging its raw record (when the ingress answers
//!   202) to its event being visible to a read_committed consumer.
//!
//! Each prints one JSON line.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Writes the raw records.
    Preload {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Share of records that re-deliver an earlier webhook.
        #[arg(long, default_value_t = 0.1)]
        dup_rate: f64,
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Partitions of the raw topic (created if missing).
        #[arg(long, default_value_t = 12)]
        partitions: i32,
    },
    /// The bare consume → produce loop.
    Bare {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        out: String,
        #[arg(long)]
        group: String,
        /// Records to copy before stopping.
        #[arg(long)]
        records: u64,
        /// Partitions of the output topic (created if missing).
        #[arg(long, default_value_t = 12)]
        partitions: i32,
    },
    /// Follows a processor's metrics.
    Watch {
        /// Its `/metrics` URL.
        #[arg(long)]
        metrics: String,
        /// Events to wait for.
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
    /// Measures 202 → visible latency through a running processor.
    Latency {
        #[arg(long)]
        brokers: String,
        /// The raw topic the processor reads.
        #[arg(long)]
        topic: String,
        /// Its events topic.
        #[arg(long)]
        events: String,
        /// Webhooks per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = match Cli::parse().mode {
        Mode::Preload { brokers, topic, records, dup_rate, keys, size, partitions } => {
            create_topic(&brokers, &topic, partitions).await?;
            preload(&brokers, &topic, records, dup_rate, keys, size).await?
        }
        Mode::Bare { brokers, topic, out, group, records, partitions } => {
            create_topic(&brokers, &out, partitions).await?;
            bare(&brokers, &topic, &out, &group, records).await?
        }
        Mode::Watch { metrics, expect, timeout_secs } => watch(&metrics, expect, timeout_secs).await?,
        Mode::Latency { brokers, topic, events, rate, secs } => latency(&brokers, &topic, &events, rate, secs).await?,
    };
    println!("{out}");
    Ok(())
}

/// Creates `topic` (a producer would auto-create it with the broker's default partition count).
async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))], &AdminOptions::new())
        .await?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("creating {t}: {e}"),
        }
    }
    Ok(())
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "200000")
        .create()?)
}

/// Waits for the oldest deliveries until at most `window` are pending.
async fn drain(pending: &mut VecDeque<rdkafka::producer::DeliveryFuture>, window: usize) -> anyhow::Result<()> {
    while pending.len() > window {
        match pending.pop_front().expect("non-empty").await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!("delivery failed: {e}"),
            Err(_) => anyhow::bail!("delivery cancelled"),
        }
    }
    Ok(())
}

async fn preload(
    brokers: &str,
    topic: &str,
    records: u64,
    dup_rate: f64,
    keys: u64,
    size: usize,
) -> anyhow::Result<serde_json::Value> {
    let producer = producer(brokers)?;
    let started = Instant::now();
    let mut pending = VecDeque::new();
    let mut unique = 0u64;
    let pad = "x".repeat(size.saturating_sub(120));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..records {
        // A re-delivery repeats one of the last 10,000 distinct webhooks (a provider retrying within minutes).
        let id = if unique > 0 && rng.f64() < dup_rate {
            unique - 1 - rng.u64(0..unique.min(10_000))
        } else {
            unique += 1;
            unique - 1
        };
        let key = format!("cus_{}", id % keys);
        let body = format!(r#"{{"id":"evt_{id}","type":"charge.succeeded","customer":"{key}","n":{n},"pad":"{pad}"}}"#);
        let meta = serde_json::json!({
            "v": 1, "source": "bench", "received_at_ms": now, "dedup_key": format!("evt_{id}"),
            "dedup_key_origin": "json_pointer", "content_type": "application/json", "request_id": format!("r{n}"),
            "headers": [["content-type", "application/json"]],
        });
        let meta = serde_json::to_vec(&meta)?;
        let headers = OwnedHeaders::new().insert(Header { key: "hookline-meta", value: Some(&meta) });
        let record = FutureRecord::to(topic).key(&key).payload(&body).headers(headers);
        match producer.send_result(record) {
            Ok(d) => pending.push_back(d),
            Err((e, _)) => anyhow::bail!("enqueue: {e}"),
        }
        drain(&mut pending, 50_000).await?;
    }
    drain(&mut pending, 0).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({ "records": records, "unique": unique, "secs": secs, "per_sec": records as f64 / secs }))
}

async fn bare(brokers: &str, topic: &str, out: &str, group: &str, records: u64) -> anyhow::Result<serde_json::Value> {
    let consumer: Arc<StreamConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            .set("partition.assignment.strategy", "range")
            .create()?,
    );
    consumer.subscribe(&[topic])?;
    let producer = producer(brokers)?;
    // Deliveries are awaited in order by a second task, which stores each acknowledged record's offset for
    // the next auto-commit: offsets advance only over acknowledged outputs.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, i64, rdkafka::producer::DeliveryFuture)>(20_000);
    let acker = tokio::spawn({
        let consumer = consumer.clone();
        let topic = topic.to_owned();
        async move {
            let mut unstored = 0u64;
            while let Some((p, o, d)) = rx.recv().await {
                d.await
                    .map_err(|_| anyhow::anyhow!("cancelled"))?
                    .map_err(|(e, _)| anyhow::anyhow!("delivery: {e}"))?;
                // A partition revoked meanwhile refuses the store; its next owner re-reads from the last commit.
                if consumer.store_offset(&topic, p, o).is_err() {
                    unstored += 1;
                }
            }
            anyhow::Ok((Instant::now(), unstored))
        }
    });
    let mut started = None;
    let mut consumed = 0u64;
    while consumed < records {
        let msg = consumer.recv().await?;
        started.get_or_insert_with(Instant::now);
        consumed += 1;
        let mut record = FutureRecord::to(out).partition(msg.partition()).payload(msg.payload().unwrap_or_default());
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        let delivery = match producer.send_result(record) {
            Ok(d) => d,
            Err((e, _)) => anyhow::bail!("enqueue: {e}"),
        };
        if tx.send((msg.partition(), msg.offset(), delivery)).await.is_err() {
            // The acker stopped: its error says why.
            return Err(acker.await?.err().unwrap_or_else(|| anyhow::anyhow!("acker stopped")));
        }
    }
    drop(tx);
    let (done, unstored) = acker.await??;
    consumer.commit_consumer_state(CommitMode::Sync)?;
    let secs = started.map(|s| done.duration_since(s).as_secs_f64()).unwrap_or(0.0);
    Ok(
        serde_json::json!({ "records": consumed, "secs": secs, "per_sec": consumed as f64 / secs, "unstored_offsets": unstored }),
    )
}

async fn scrape(url: &str) -> Option<String> {
    let (host, path) = url.strip_prefix("http://")?.split_once('/')?;
    let stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(format!("/{path}"))
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series.split('{').next()? == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn watch(url: &str, expect: u64, timeout_secs: u64) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut first = None;
    let mut text = String::new();
    loop {
        anyhow::ensure!(Instant::now() < deadline, "timed out; last metrics:\n{text}");
        if let Some(t) = scrape(url).await {
            text = t;
            let consumed = sum(&text, "hookline_processor_records_consumed_total");
            let events = sum(&text, "hookline_processor_events_produced_total");
            if consumed > 0.0 {
                first.get_or_insert_with(Instant::now);
            }
            if events >= expect as f64 {
                let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
                return Ok(serde_json::json!({
                    "records": consumed, "events": events,
                    "duplicates": sum(&text, "hookline_processor_duplicates_dropped_total"),
                    "dlq": sum(&text, "hookline_processor_dlq_records_total"),
                    "secs": secs, "per_sec": consumed / secs,
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn raw_record(n: u64, pad: &str) -> anyhow::Result<(String, String, Vec<u8>)> {
    let key = format!("cus_{}", n % 10_000);
    let body = format!(r#"{{"id":"lat_{n}","type":"charge.succeeded","customer":"{key}","n":{n},"pad":"{pad}"}}"#);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let meta = serde_json::json!({
        "v": 1, "source": "bench", "received_at_ms": now, "dedup_key": format!("lat_{n}"),
        "dedup_key_origin": "json_pointer", "content_type": "application/json", "request_id": format!("l{n}"),
        "headers": [["content-type", "application/json"]],
    });
    Ok((key, body, serde_json::to_vec(&meta)?))
}

async fn latency(brokers: &str, topic: &str, events: &str, rate: u64, secs: u64) -> anyhow::Result<serde_json::Value> {
    let total = rate * secs;
    let acked: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("latency.{}", fastrand::u64(..)))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    consumer.subscribe(&[events])?;
    // Join and get the partitions before the first webhook, so no event predates the reader.
    while consumer.assignment()?.count() == 0 {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let reader = tokio::spawn(async move {
        let mut visible: HashMap<String, Instant> = HashMap::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(secs + 60);
        while (visible.len() as u64) < total && Instant::now() < deadline {
            let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await else {
                continue;
            };
            let now = Instant::now();
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(msg.payload().unwrap_or_default()) else {
                continue;
            };
            if let Some(key) = event["hooklinededupkey"].as_str() {
                visible.entry(key.to_owned()).or_insert(now);
            }
        }
        visible
    });
    let producer = producer(brokers)?;
    let pad = "x".repeat(900);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut acks = tokio::task::JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let (key, body, meta) = raw_record(n, &pad)?;
        let headers = OwnedHeaders::new().insert(Header { key: "hookline-meta", value: Some(&meta) });
        let delivery = match producer.send_result(FutureRecord::to(topic).key(&key).payload(&body).headers(headers)) {
            Ok(d) => d,
            Err((e, _)) => anyhow::bail!("enqueue: {e}"),
        };
        let acked = acked.clone();
        acks.spawn(async move {
            if let Ok(Ok(_)) = delivery.await {
                acked.lock().unwrap().insert(format!("lat_{n}"), Instant::now());
            }
        });
    }
    while acks.join_next().await.is_some() {}
    let visible = reader.await?;
    let acked = acked.lock().unwrap();
    let mut ms: Vec<f64> = visible
        .iter()
        .filter_map(|(key, seen)| acked.get(key).map(|at| seen.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    anyhow::ensure!(!ms.is_empty(), "no event became visible");
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    Ok(serde_json::json!({
        "webhooks": total, "visible": ms.len(), "rate": rate,
        "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0),
    }))
}
