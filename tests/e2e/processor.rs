//! Issue 4's scenarios: the processor's exactly-once effect, per-key order with concurrency, the pipeline's
//! DLQ, crashes, rebalances and lost state, on the real broker.
//!
//! Raw records are written straight to the raw topic, exactly as the ingress writes them, so a test can send
//! thousands in a second and knows each one's partition and offset. Every scenario ends by reading the output
//! topics back and checking each accepted webhook against them: none lost, none duplicated, none unknown, and
//! each ordering key's events in the order they were written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookline_e2e::*;
use hookline_schemas::view::RecordView;

use crate::{SETTLE, TIMEOUT};

/// A stream of webhooks: `unique` distinct ones spread over `keys` ordering keys, each key's numbered by
/// `seq` in the order written, plus a re-delivery of an earlier webhook after every `dup_every`-th one.
struct Stream {
    records: Vec<RawRecord>,
    /// dedup key → (ordering key, seq), for the distinct webhooks.
    unique: BTreeMap<String, (String, u64)>,
}

impl Stream {
    fn new(prefix: &str, unique: usize, keys: usize, dup_every: usize) -> Stream {
        let mut s = Stream { records: Vec::new(), unique: BTreeMap::new() };
        s.extend(prefix, 0, unique, keys, dup_every);
        s
    }

    /// Appends webhooks `from..from + n` (numbering continues across calls with the same prefix).
    fn extend(&mut self, prefix: &str, from: usize, n: usize, keys: usize, dup_every: usize) -> Vec<RawRecord> {
        let mut batch = Vec::new();
        for i in from..from + n {
            let key = format!("{prefix}-key-{}", i % keys);
            let seq = (i / keys) as u64;
            let id = format!("{prefix}-{i}");
            let body = format!(r#"{{"id":"{id}","key":"{key}","seq":{seq},"pad":"{}"}}"#, "x".repeat(200));
            let record = RawRecord::json("shop", &id, &key, body);
            self.unique.insert(id, (key, seq));
            batch.push(record);
            if dup_every > 0 && i % dup_every == dup_every - 1 && i >= from + 5 {
                // The same webhook again (a provider retry): same dedup key, same body.
                batch.push(batch[batch.len() - 6].clone());
            }
        }
        self.records.extend(batch.iter().cloned());
        batch
    }

    fn duplicates(&self) -> usize {
        self.records.len() - self.unique.len()
    }
}

/// Every distinct webhook of `stream` is exactly one event, there are no others, and each ordering key's
/// events are in the order written.
fn assert_exactly_once_in_order(stream: &Stream, events: &[RecordView]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        let ce = e.value.as_ref().expect("events are JSON");
        let id = ce["id"].as_str().expect("id").to_owned();
        *seen.entry(id).or_default() += 1;
        let key = e.key.clone().expect("events are keyed");
        by_key.entry(key).or_default().push(ce["data"]["seq"].as_u64().expect("seq"));
    }
    let lost: Vec<&String> = stream.unique.keys().filter(|id| !seen.contains_key(*id)).collect();
    let duplicated: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let phantom: Vec<&String> = seen.keys().filter(|id| !stream.unique.contains_key(*id)).collect();
    assert!(
        lost.is_empty() && duplicated.is_empty() && phantom.is_empty(),
        "lost {}: {:?}…; duplicated {}: {:?}…; phantom {}: {:?}…",
        lost.len(),
        &lost[..lost.len().min(10)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)],
        phantom.len(),
        &phantom[..phantom.len().min(10)],
    );
    for (key, seqs) in &by_key {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, &expected, "events of {key} are out of order");
    }
}

/// The processors' `consumer.session_timeout_ms` (the default).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// A processor config listening on a free port, plus `extra` TOML.
fn config(kafka: &Kafka, topics: &Topics, dir: &Path, extra: &str) -> (std::net::SocketAddr, String) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (addr, processor_toml(kafka.brokers(), topics, dir, &addr.to_string(), extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_yield_one_event_and_each_key_keeps_its_order_in_batches() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    create_raw_topic(&kafka, &topics, 4).await;
    let stream = Stream::new("o", 2000, 40, 10);
    produce_raw(kafka.brokers(), &topics.raw, &stream.records).await;
    let state = tempfile::tempdir().unwrap();
    let processor = Running::processor(processor_config(&kafka, &topics, state.path(), "")).await;

    let events = read_topic(kafka.brokers(), &topics.events, stream.unique.len(), SETTLE, TIMEOUT).await;
    assert_exactly_once_in_order(&stream, &events);
    assert!(read_topic(kafka.brokers(), &topics.dlq, 0, SETTLE, TIMEOUT).await.is_empty());

    let m = processor.metrics().await;
    assert_eq!(metric_sum(&m, "hookline_processor_duplicates_dropped_total") as usize, stream.duplicates(), "{m}");
    assert_eq!(metric_sum(&m, "hookline_processor_records_consumed_total") as usize, stream.records.len());
    // The backlog was worked through in batches (one state lookup each), duplicates within a batch included.
    let batches = metric(&m, "hookline_processor_batch_records_count");
    let singles = metric(&m, r#"hookline_processor_batch_records_bucket{le="1.0"}"#);
    assert!(batches > 0.0 && singles < batches, "every batch held one record ({singles} of {batches})");
    assert!(batches < stream.records.len() as f64 / 4.0, "{batches} batches for {} records", stream.records.len());
    processor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dlq_with_every_header_and_the_stream_continues() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let orders = format!("{}.orders", topics.raw);
    let audit = format!("{}.audit", topics.raw);
    let schema = dir.path().join("order.schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer","minimum":0}}}"#,
    )
    .unwrap();
    let extra = format!(
        r#"
        [sources.shop]
        event_type = {{ json_pointer = "/type" }}
        filter = {{ deny = ["*.test"] }}
        [[routes]]
        topic = "{orders}"
        types = ["order.*"]
        data_schema = "{schema}"
        [[routes]]
        topic = "{audit}"
        types = ["order.*", "refund.*"]
        "#,
        schema = schema.display()
    );
    create_raw_topic(&kafka, &topics, 1).await;
    let (addr, toml) = config(&kafka, &topics, &dir.path().join("state"), &extra);
    let processor =
        ProcessorProcess::start(dir.path(), addr, &toml, &[("HOOKLINE_FAULT_PANIC_ON", "PANIC-MARK")]).await;

    let bodies = [
        r#"{"id":"p0","type":"order.created","amount":5}"#,
        "not json at all",
        r#"{"id":"p2","no_type":true}"#,
        r#"{"id":"p3","type":"order.created","amount":"lots"}"#,
        r#"{"id":"p4","type":"ping.test"}"#,
        r#"{"id":"p5","type":"refund.created","note":"PANIC-MARK"}"#,
        r#"{"id":"p6","type":"customer.updated"}"#,
        r#"{"id":"p7","type":"order.paid","amount":7}"#,
    ];
    let records: Vec<RawRecord> =
        bodies.iter().enumerate().map(|(i, b)| RawRecord::json("shop", &format!("p{i}"), "k", (*b).into())).collect();
    let started = now_ms();
    let offsets = produce_raw(kafka.brokers(), &topics.raw, &records).await;

    let dlq = read_topic(kafka.brokers(), &topics.dlq, 4, SETTLE, TIMEOUT).await;
    let raw = read_topic(kafka.brokers(), &topics.raw, records.len(), SETTLE, TIMEOUT).await;
    let expected = [
        (1, "invalid_json", "parse"),
        (2, "missing_field", "normalize"),
        (3, "schema_violation", "validate"),
        (5, "panic", "process"),
    ];
    assert_eq!(dlq.len(), expected.len(), "{dlq:#?}");
    for (d, (i, class, stage)) in dlq.iter().zip(expected) {
        let why = &d.headers["hookline-dlq"];
        assert_eq!((why["class"].as_str(), why["stage"].as_str()), (Some(class), Some(stage)), "{why}");
        assert!(why["reason"].as_str().is_some_and(|r| !r.is_empty() && !r.contains("PANIC-MARK")), "{why}");
        assert_eq!(why["attempts"], 1);
        let first = why["first_failure_ms"].as_i64().unwrap();
        assert!(first >= started && first <= now_ms(), "first failure time {first}");
        assert_eq!(why["source"], "shop");
        assert_eq!(why["dedup_key"], format!("p{i}"));
        assert_eq!(why["raw_topic"], topics.raw.as_str());
        assert_eq!(
            (why["raw_partition"].as_i64(), why["raw_offset"].as_i64()),
            (Some(offsets[i].0.into()), Some(offsets[i].1))
        );
        assert_eq!(d.value_bytes().unwrap(), bodies[i].as_bytes(), "the raw value is kept intact");
        assert_eq!(d.headers["hookline-meta"], raw[i].headers["hookline-meta"], "the raw headers are kept intact");
        assert_eq!(d.key, raw[i].key);
    }
    let ids = |records: &[RecordView]| -> Vec<String> {
        records
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.value_bytes().unwrap()).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    // The stream kept flowing past every poison record, in order, routed and fanned out.
    assert_eq!(ids(&read_topic(kafka.brokers(), &orders, 2, SETTLE, TIMEOUT).await), ["p0", "p7"]);
    assert_eq!(ids(&read_topic(kafka.brokers(), &audit, 2, SETTLE, TIMEOUT).await), ["p0", "p7"]);
    assert_eq!(ids(&read_topic(kafka.brokers(), &topics.events, 1, SETTLE, TIMEOUT).await), ["p6"]);
    let m = processor.metrics().await;
    assert_eq!(metric(&m, r#"hookline_processor_records_filtered_total{source="shop"}"#), 1.0, "{m}");
    assert_eq!(metric(&m, r#"hookline_processor_dlq_records_total{source="shop",class="panic"}"#), 1.0);
    assert_eq!(processor.terminate(Duration::from_secs(20)), Some(Some(0)), "SIGTERM exits 0");
}

/// Writes `stream`'s next batches to the raw topic until `stop` is set (at least `min_batches`).
fn spawn_writer(
    brokers: String,
    topic: String,
    stream: Arc<std::sync::Mutex<Stream>>,
    stop: Arc<AtomicBool>,
    min_batches: usize,
) -> tokio::task::JoinHandle<usize> {
    const BATCH: usize = 100;
    tokio::spawn(async move {
        let mut batches = 0;
        while batches < min_batches || !stop.load(Ordering::Relaxed) {
            let batch = stream.lock().unwrap().extend("w", batches * BATCH, BATCH, 24, 10);
            produce_raw(&brokers, &topic, &batch).await;
            batches += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        batches
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_stream_then_restart_loses_and_duplicates_nothing() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    create_raw_topic(&kafka, &topics, 3).await;
    let stream = Arc::new(std::sync::Mutex::new(Stream { records: Vec::new(), unique: BTreeMap::new() }));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(kafka.brokers().into(), topics.raw.clone(), stream.clone(), stop.clone(), 20);
    let state = dir.path().join("state");
    let mut kills = Vec::new();
    for round in 0..3 {
        let (addr, toml) = config(&kafka, &topics, &state, "");
        let p = ProcessorProcess::start(dir.path(), addr, &toml, &[]).await;
        // Once it is working, kill it at a random moment: in the middle of a batch, mid-publish, mid-commit.
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric_sum(&p.metrics().await, "hookline_processor_records_consumed_total") == 0.0 {
            assert!(Instant::now() < deadline, "round {round}: the processor never started working:\n{}", p.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = Duration::from_millis(fastrand::u64(0..1500));
        tokio::time::sleep(after).await;
        let consumed = metric_sum(&p.metrics().await, "hookline_processor_records_consumed_total");
        kills.push((round, after, consumed));
        p.kill();
    }
    stop.store(true, Ordering::Relaxed);
    let (addr, toml) = config(&kafka, &topics, &state, "");
    let last = ProcessorProcess::start(dir.path(), addr, &toml, &[]).await;
    writer.await.unwrap();
    let stream = Arc::try_unwrap(stream).ok().unwrap().into_inner().unwrap();
    eprintln!("killed (round, after, consumed so far): {kills:?}; {} records written", stream.records.len());

    let events = read_topic(kafka.brokers(), &topics.events, stream.unique.len(), SETTLE, TIMEOUT).await;
    assert_exactly_once_in_order(&stream, &events);
    assert!(read_topic(kafka.brokers(), &topics.dlq, 0, SETTLE, TIMEOUT).await.is_empty());
    // SIGHUP, whose default action would end the process, is answered with a log line: the processor reads its
    // config at startup only.
    last.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last.log().contains("reads its config at startup only") {
        assert!(Instant::now() < deadline, "no answer to SIGHUP:\n{}", last.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.terminate(Duration::from_secs(20)), Some(Some(0)), "SIGHUP did not end it; SIGTERM drains it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processors_joining_and_leaving_move_partitions_without_loss_or_duplicates() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    create_raw_topic(&kafka, &topics, 4).await;
    let stream = Arc::new(std::sync::Mutex::new(Stream { records: Vec::new(), unique: BTreeMap::new() }));
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, toml) = config(&kafka, &topics, &dir.path().join("a"), "");
    let a = ProcessorProcess::start(dir.path(), addr, &toml, &[]).await;
    let writer = spawn_writer(kafka.brokers().into(), topics.raw.clone(), stream.clone(), stop.clone(), 10);

    // B joins, takes partitions, works, and leaves gracefully (SIGTERM). C joins, works, and is killed -9;
    // it is restarted on its data folder after its session expired (so its partitions went to A first), as an
    // orchestrator would, and keeps working to the end.
    let mut shares = Vec::new();
    let mut survivor = None;
    for (name, leave) in [("b", Some(true)), ("c", Some(false)), ("c", None)] {
        let (addr, toml) = config(&kafka, &topics, &dir.path().join(name), "");
        let p = ProcessorProcess::start(dir.path(), addr, &toml, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let consumed = loop {
            let n = metric_sum(&p.metrics().await, "hookline_processor_records_consumed_total");
            if n > 0.0 || Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(consumed > 0.0, "processor {name} never got partitions:\n{}", p.log());
        // Let it work a little longer, a random while, before it goes.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        let consumed = metric_sum(&p.metrics().await, "hookline_processor_records_consumed_total");
        shares.push((name, consumed));
        match leave {
            Some(true) => assert_eq!(p.terminate(Duration::from_secs(30)), Some(Some(0)), "{name} leaves on SIGTERM"),
            Some(false) => {
                p.kill();
                tokio::time::sleep(SESSION_TIMEOUT + Duration::from_secs(2)).await;
            }
            None => survivor = Some(p),
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let stream = Arc::try_unwrap(stream).ok().unwrap().into_inner().unwrap();
    eprintln!("records consumed by the joiners: {shares:?}; {} records written", stream.records.len());

    let events = read_topic(kafka.brokers(), &topics.events, stream.unique.len(), SETTLE, TIMEOUT).await;
    assert_exactly_once_in_order(&stream, &events);
    let m = a.metrics().await;
    assert!(metric_sum(&m, "hookline_processor_rebalances_total") >= 4.0, "A saw the group change: {m}");
    assert_eq!(a.terminate(Duration::from_secs(20)), Some(Some(0)));
    assert_eq!(survivor.unwrap().terminate(Duration::from_secs(20)), Some(Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_data_folder_is_rebuilt_and_still_drops_duplicates() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    create_raw_topic(&kafka, &topics, 2).await;
    let mut stream = Stream::new("d", 300, 10, 0);
    produce_raw(kafka.brokers(), &topics.raw, &stream.records).await;
    let first_dir = tempfile::tempdir().unwrap();
    let first = Running::processor(processor_config(&kafka, &topics, first_dir.path(), "")).await;
    assert_eq!(read_topic(kafka.brokers(), &topics.events, 300, SETTLE, TIMEOUT).await.len(), 300);
    first.shutdown().await.unwrap();
    drop(first_dir);

    // A new machine: empty data folder, same group. Every earlier webhook is delivered again, then new ones.
    let again = stream.records.clone();
    let fresh = stream.extend("d", 300, 100, 10, 0);
    let second_dir = tempfile::tempdir().unwrap();
    let second = Running::processor(processor_config(&kafka, &topics, second_dir.path(), "")).await;
    produce_raw(kafka.brokers(), &topics.raw, &again).await;
    produce_raw(kafka.brokers(), &topics.raw, &fresh).await;
    stream.records.extend(again);

    let events = read_topic(kafka.brokers(), &topics.events, 400, SETTLE, TIMEOUT).await;
    assert_exactly_once_in_order(&stream, &events);
    let m = second.metrics().await;
    assert!(metric_sum(&m, "hookline_processor_restored_entries_total") >= 300.0, "state was restored: {m}");
    assert_eq!(metric_sum(&m, "hookline_processor_duplicates_dropped_total"), 300.0);
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_crashing_the_processor_goes_to_the_dlq_instead_of_a_crash_loop() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    create_raw_topic(&kafka, &topics, 1).await;
    let mut stream = Stream::new("c", 20, 4, 0);
    let poison = RawRecord::json("shop", "crash-me", "c-key-0", r#"{"id":"crash-me","x":"ABORT-MARK"}"#.into());
    let mut records = stream.records.clone();
    records.push(poison.clone());
    records.extend(stream.extend("c", 20, 20, 4, 0));
    stream.records = records;
    produce_raw(kafka.brokers(), &topics.raw, &stream.records).await;

    let state = dir.path().join("state");
    let env = [("HOOKLINE_FAULT_ABORT_ON", "ABORT-MARK")];
    let mut crashes = 0;
    let survivor = loop {
        assert!(crashes <= 6, "still crashing after {crashes} restarts");
        // `extra` lands in the `[state]` section.
        let (addr, toml) = config(&kafka, &topics, &state, "crash_loop_attempts = 3");
        let mut p = ProcessorProcess::start_unchecked(dir.path(), addr, &toml, &env);
        match p.wait_exit(Duration::from_secs(20)) {
            Some(code) => {
                assert_ne!(code, Some(0), "it crashed, it did not stop");
                crashes += 1;
            }
            None => break p,
        }
    };
    eprintln!("the processor crashed {crashes} times before setting the record aside");
    assert!(crashes >= 3, "it crashed on the record: {crashes}");

    let dlq = read_topic(kafka.brokers(), &topics.dlq, 1, SETTLE, TIMEOUT).await;
    assert_eq!(dlq.len(), 1, "{dlq:#?}");
    let why = &dlq[0].headers["hookline-dlq"];
    assert_eq!(why["class"], "crash_loop");
    assert_eq!(why["dedup_key"], "crash-me");
    assert_eq!(why["attempts"], 3);
    assert_eq!(dlq[0].value_bytes().unwrap(), poison.body);
    let events = read_topic(kafka.brokers(), &topics.events, stream.unique.len(), SETTLE, TIMEOUT).await;
    assert_exactly_once_in_order(&stream, &events);
    assert_eq!(survivor.terminate(Duration::from_secs(20)), Some(Some(0)));
}

/// The state changelog is the dedup state's source of truth: compacted, keyed by (source, dedup key), one
/// record per webhook, committed with its event; an entry past its window gets a tombstone so compaction
/// drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_changelog_has_one_entry_per_webhook_and_tombstones_expired_ones() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    create_raw_topic(&kafka, &topics, 1).await;
    // `extra` lands in the `[state]` section.
    let (addr, toml) = config(&kafka, &topics, &dir.path().join("state"), "dedup_window_secs = 60");
    let processor = ProcessorProcess::start(dir.path(), addr, &toml, &[]).await;
    let fresh = RawRecord::json("shop", "fresh", "k1", r#"{"id":"fresh"}"#.into());
    let mut old = RawRecord::json("shop", "old", "k2", r#"{"id":"old"}"#.into());
    old.received_at_ms = Some(now_ms() - 3_600_000); // its 60 s window closed an hour ago
    let started = now_ms();
    produce_raw(kafka.brokers(), &topics.raw, &[fresh.clone(), old, fresh]).await;

    let events = read_topic(kafka.brokers(), &topics.events, 2, SETTLE, TIMEOUT).await;
    assert_eq!(events.len(), 2, "fresh once (its redelivery dropped), old once: {events:#?}");
    let state = read_topic(kafka.brokers(), &topics.state, 3, SETTLE, TIMEOUT).await;
    let records: Vec<(Option<String>, Option<serde_json::Value>)> =
        state.iter().map(|r| (r.key.clone(), r.value_bytes().map(|v| serde_json::from_slice(&v).unwrap()))).collect();
    assert_eq!(records.len(), 3, "{records:#?}");
    let fresh_key = Some(r#"["shop","fresh"]"#.to_owned());
    let old_key = Some(r#"["shop","old"]"#.to_owned());
    let put = |key: &Option<String>| records.iter().position(|(k, v)| k == key && v.is_some());
    let (Some(fresh_at), Some(old_at)) = (put(&fresh_key), put(&old_key)) else {
        panic!("one entry per webhook: {records:#?}");
    };
    let expiry = records[fresh_at].1.as_ref().unwrap()["expires_at_ms"].as_i64().unwrap();
    assert!(expiry >= started + 60_000 && expiry <= now_ms() + 60_000, "a window from receipt: {expiry}");
    assert_eq!(records[2], (old_key, None), "then the expired entry's tombstone: {records:#?}");
    assert!(old_at < 2);

    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka.brokers()).create().unwrap();
    let described = admin
        .describe_configs(
            &[rdkafka::admin::ResourceSpecifier::Topic(&topics.state)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = described[0].as_ref().unwrap();
    let policy = config.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"), "the changelog is compacted");
    assert_eq!(processor.terminate(Duration::from_secs(20)), Some(Some(0)), "SIGTERM exits 0");
}
