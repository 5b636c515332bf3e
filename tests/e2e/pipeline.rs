//! Issue 2's scenarios: a signed webhook through ingress, broker and processor to the events or DLQ topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hookline_e2e::*;
use hookline_schemas::json_schema::Contract;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{SETTLE, TIMEOUT};

/// Ingress + processor on fresh topics of `partitions` partitions.
struct Pipeline {
    kafka: Kafka,
    topics: Topics,
    ingress: Running,
    processor: Running,
    _state: tempfile::TempDir,
}

impl Pipeline {
    async fn start(partitions: i32, processor_extra: &str) -> Pipeline {
        let kafka = Kafka::start();
        let topics = Topics::unique();
        let state = tempfile::tempdir().unwrap();
        let ingress = Running::ingress(ingress_config(&kafka, &topics, partitions, "")).await;
        let processor = Running::processor(processor_config(&kafka, &topics, state.path(), processor_extra)).await;
        Pipeline { kafka, topics, ingress, processor, _state: state }
    }

    async fn read(&self, topic: &str, expected: usize) -> Vec<hookline_schemas::view::RecordView> {
        read_topic(self.kafka.brokers(), topic, expected, SETTLE, TIMEOUT).await
    }
}

const TYPE_FROM_BODY: &str = "[sources.shop]\nevent_type = { json_pointer = \"/type\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_becomes_exactly_one_cloudevent() {
    let p = Pipeline::start(3, TYPE_FROM_BODY).await;
    let body = r#"{"id":"evt_1","type":"order.created","order":"ord_7","amount":12345678901234567890}"#;

    let reply = post_signed(&p.ingress, body).await;

    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json()["dedup_key"], "evt_1");
    assert!(reply.json()["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    let events = p.read(&p.topics.events, 1).await;
    assert_eq!(events.len(), 1, "exactly one event: {events:#?}");
    let e = &events[0];
    let ce = e.value.as_ref().expect("event value is JSON");
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], "evt_1");
    assert_eq!(ce["source"], "/webhooks/shop");
    assert_eq!(ce["type"], "order.created");
    assert_eq!(ce["subject"], "ord_7");
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["data"], serde_json::from_str::<serde_json::Value>(body).unwrap());
    assert_eq!(e.key.as_deref(), Some("ord_7"), "events are keyed by the ordering key");
    assert_eq!(e.headers["content-type"], "application/cloudevents+json; charset=UTF-8");

    let raw = p.read(&p.topics.raw, 1).await;
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].value_bytes().unwrap(), body.as_bytes(), "the raw record holds the exact body bytes");
    assert_eq!(raw[0].key.as_deref(), Some("ord_7"));
    let meta = &raw[0].headers["hookline-meta"];
    assert_eq!(meta["source"], "shop");
    assert_eq!(meta["dedup_key"], "evt_1");
    assert_eq!(meta["content_type"], "application/json");
    assert_eq!(raw[0].headers.len(), 1, "one header: hookline-meta");
    let kept: Vec<&str> = meta["headers"].as_array().unwrap().iter().filter_map(|p| p[0].as_str()).collect();
    assert!(kept.contains(&"content-type") && !kept.contains(&"x-signature"), "the signature is not stored: {kept:?}");
    assert_eq!(e.partition, raw[0].partition, "outputs are partition-aligned with the raw record");
    assert_eq!(ce["hooklineoffset"], raw[0].offset.to_string());
    let received = meta["received_at_ms"].as_i64().unwrap();
    assert_eq!(ce["time"], hookline_schemas::event::rfc3339_millis(received));

    assert!(p.read(&p.topics.dlq, 0).await.is_empty());
    // Lag is exported per assigned partition and drops to zero once everything is processed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let lag_line = format!(r#"hookline_processor_consumer_lag_records{{partition="{}"}} 0"#, raw[0].partition);
    loop {
        let metrics = p.processor.metrics().await;
        if metrics.contains(&lag_line) {
            break;
        }
        assert!(Instant::now() < deadline, "no `{lag_line}` in {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The raw value was verbatim, so big numbers survive into `data` unchanged.
    let event_text = serde_json::to_string(ce).unwrap();
    assert!(event_text.contains("12345678901234567890"), "{event_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_sent_three_times_gives_three_202s_and_one_event() {
    let p = Pipeline::start(3, "").await;
    let body = r#"{"id":"evt_dup","order":"ord_1"}"#;
    for _ in 0..3 {
        let reply = post_signed(&p.ingress, body).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    assert_eq!(p.read(&p.topics.raw, 3).await.len(), 3, "every delivery is stored");
    let events = p.read(&p.topics.events, 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].value.as_ref().unwrap()["id"], "evt_dup");
    assert!(p.read(&p.topics.dlq, 0).await.is_empty());
    let metrics = p.processor.metrics().await;
    assert!(
        metrics.contains(r#"hookline_processor_duplicates_dropped_total{source="_unknown"} 2"#),
        "duplicates are counted: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_401_and_nothing_is_stored() {
    let p = Pipeline::start(2, "").await;
    let url = format!("http://{}/webhooks/shop", p.ingress.addr);
    let body = r#"{"id":"evt_forged","order":"o"}"#;
    let forged = post(&url, &[("x-signature", sign("wrong-secret", body.as_bytes()))], body).await.unwrap();
    assert_eq!(forged.status, 401, "{}", forged.text());
    let tampered =
        post(&url, &[("x-signature", sign(SECRET, br#"{"id":"evt_forged","order":"x"}"#))], body).await.unwrap();
    assert_eq!(tampered.status, 401);
    let missing = post(&url, &[], body).await.unwrap();
    assert_eq!(missing.status, 401);
    let garbage = post(&url, &[("x-signature", "sha256=zz".into())], body).await.unwrap();
    assert_eq!(garbage.status, 401);

    for topic in [&p.topics.raw, &p.topics.events, &p.topics.dlq] {
        assert!(p.read(topic, 0).await.is_empty(), "{topic} must stay empty");
    }
    let metrics = p.ingress.metrics().await;
    assert!(
        metrics.contains(r#"hookline_ingress_requests_total{source="shop",outcome="unauthorized"} 4"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"hookline_ingress_verification_failures_total{source="shop",reason="mismatch"} 2"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_json_body_becomes_one_dlq_record_with_its_reason() {
    let p = Pipeline::start(2, "").await;
    let body = "<xml>not json</xml>";
    let reply = post_signed(&p.ingress, body).await;
    assert_eq!(reply.status, 202, "a verified webhook is accepted whatever its content: {}", reply.text());

    let dlq = p.read(&p.topics.dlq, 1).await;
    assert_eq!(dlq.len(), 1, "{dlq:#?}");
    let d = &dlq[0];
    assert_eq!(d.value_bytes().unwrap(), body.as_bytes(), "the original bytes are kept");
    let why = &d.headers["hookline-dlq"];
    assert_eq!(why["class"], "invalid_json");
    assert_eq!(why["stage"], "parse");
    assert!(why["reason"].as_str().unwrap().contains("not JSON"), "{why}");
    assert_eq!(why["attempts"], 1);
    let raw = p.read(&p.topics.raw, 1).await;
    assert_eq!(why["raw_topic"], p.topics.raw.as_str());
    assert_eq!(why["raw_partition"], raw[0].partition);
    assert_eq!(why["raw_offset"], raw[0].offset);
    assert_eq!(d.headers["hookline-meta"], raw[0].headers["hookline-meta"], "the raw headers are kept");
    assert!(p.read(&p.topics.events, 0).await.is_empty());
    let metrics = p.processor.metrics().await;
    assert!(
        metrics.contains(r#"hookline_processor_dlq_records_total{source="_unknown",class="invalid_json"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_each_key_come_out_in_the_order_they_were_accepted() {
    const KEYS: usize = 5;
    const PER_KEY: usize = 20;
    let p = Pipeline::start(4, "").await;
    let ingress = std::sync::Arc::new(p.ingress.addr);
    let mut senders = Vec::new();
    for k in 0..KEYS {
        let addr = ingress.clone();
        senders.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..PER_KEY {
                let body = format!(r#"{{"id":"k{k}-{i}","order":"key-{k}","seq":{i}}}"#);
                let url = format!("http://{addr}/webhooks/shop");
                let reply = post(&url, &[("x-signature", sign(SECRET, body.as_bytes()))], body).await.unwrap();
                assert_eq!(reply.status, 202, "{}", reply.text());
                accepted.push(i);
            }
            accepted
        }));
    }
    for s in senders {
        assert_eq!(s.await.unwrap().len(), PER_KEY);
    }

    let events = p.read(&p.topics.events, KEYS * PER_KEY).await;
    assert_eq!(events.len(), KEYS * PER_KEY);
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for e in &events {
        let key = e.key.clone().unwrap();
        by_key.entry(key.clone()).or_default().push(e.value.as_ref().unwrap()["data"]["seq"].as_i64().unwrap());
        partitions.entry(key).or_default().insert(e.partition);
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, seqs) in &by_key {
        assert_eq!(seqs, &(0..PER_KEY as i64).collect::<Vec<_>>(), "order of {key}");
        assert_eq!(partitions[key].len(), 1, "{key} stays in one partition");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_gives_503_within_the_bounded_wait_and_every_202_is_stored() {
    // This stops and restarts its broker, so it always runs its own, with persistent storage.
    let mut kafka = Kafka::local();
    let topics = Topics::unique();
    let ingress = Running::ingress(ingress_config(&kafka, &topics, 2, "")).await;
    let mut accepted = BTreeSet::new();
    let mut n = 0;
    let mut next_body = || {
        n += 1;
        format!(r#"{{"id":"evt_{n}","order":"o{}"}}"#, n % 3)
    };
    for _ in 0..5 {
        let reply = post_signed(&ingress, &next_body()).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        accepted.insert(reply.json()["dedup_key"].as_str().unwrap().to_owned());
    }

    kafka.stop();
    let ack_timeout = Duration::from_millis(3000);
    for _ in 0..4 {
        let started = Instant::now();
        let reply = post_signed(&ingress, &next_body()).await;
        let took = started.elapsed();
        assert_eq!(reply.status, 503, "never 202 while the broker is down: {}", reply.text());
        assert!(took <= ack_timeout + Duration::from_millis(1500), "answered after {took:?}");
        assert!(reply.headers.contains_key("retry-after"), "503 carries Retry-After");
    }

    kafka.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut recovered = false;
    while Instant::now() < deadline {
        let reply = post_signed(&ingress, &next_body()).await;
        match reply.status {
            202 => {
                accepted.insert(reply.json()["dedup_key"].as_str().unwrap().to_owned());
                recovered = true;
                break;
            }
            503 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert!(recovered, "the ingress recovers by itself once the broker is back");
    for _ in 0..5 {
        let reply = post_signed(&ingress, &next_body()).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        accepted.insert(reply.json()["dedup_key"].as_str().unwrap().to_owned());
    }

    let raw = read_topic(kafka.brokers(), &topics.raw, accepted.len(), SETTLE, TIMEOUT).await;
    let stored: BTreeSet<String> = raw.iter().map(dedup_key).collect();
    let lost: Vec<&String> = accepted.difference(&stored).collect();
    assert!(lost.is_empty(), "every 202'd webhook is on the raw topic; lost: {lost:?}");
    ingress.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_the_pipeline_match_the_published_schemas() {
    let p = Pipeline::start(2, TYPE_FROM_BODY).await;
    let url = format!("http://{}/webhooks/shop", p.ingress.addr);
    let bodies = [r#"{"id":"a","type":"order.created","order":"o1"}"#, r#"{"id":"b","order":"o1"}"#, "plain text"];
    for body in bodies {
        let reply = post(
            &url,
            &[("x-signature", sign(SECRET, body.as_bytes())), ("authorization", "Bearer secret-token".into())],
            body,
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 202);
    }
    let raw = p.read(&p.topics.raw, 3).await;
    let events = p.read(&p.topics.events, 1).await;
    let dlq = p.read(&p.topics.dlq, 2).await;
    assert_eq!((raw.len(), events.len(), dlq.len()), (3, 1, 2));
    let check = |contract: Contract, records: &[hookline_schemas::view::RecordView]| {
        let v = contract.validator().unwrap();
        for r in records {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(v.violations(&json), Vec::<String>::new(), "{json:#}");
        }
    };
    check(Contract::RawRecord, &raw);
    check(Contract::EventRecord, &events);
    check(Contract::DlqRecord, &dlq);
    let event_schema = Contract::Event.validator().unwrap();
    assert_eq!(event_schema.violations(events[0].value.as_ref().unwrap()), Vec::<String>::new());
    let classes: BTreeSet<&str> = dlq.iter().filter_map(|d| d.headers["hookline-dlq"]["class"].as_str()).collect();
    assert_eq!(classes, BTreeSet::from(["invalid_json", "missing_field"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sources_oversized_bodies_and_wrong_methods_are_refused_and_not_stored() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let ingress = Running::ingress(ingress_config(
        &kafka,
        &topics,
        1,
        "[sources.small]\nmax_body_bytes = 64\nallow_unverified = true\nverify = { scheme = \"none\" }\n",
    ))
    .await;
    let base = format!("http://{}", ingress.addr);

    let unknown = post(&format!("{base}/webhooks/nope"), &[], "{}").await.unwrap();
    assert_eq!(unknown.status, 404);
    let get = get(&format!("{base}/webhooks/small")).await.unwrap();
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");
    let big = post(&format!("{base}/webhooks/small"), &[], "x".repeat(65)).await.unwrap();
    assert_eq!(big.status, 413, "declared Content-Length over the limit");

    // A chunked body declares no length: the limit is enforced on the bytes read.
    let mut stream = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    let chunk = "y".repeat(40);
    let request = format!(
        "POST /webhooks/small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let ok = post(&format!("{base}/webhooks/small"), &[], "x".repeat(64)).await.unwrap();
    assert_eq!(ok.status, 202, "{}", ok.text());
    let raw = read_topic(kafka.brokers(), &topics.raw, 1, SETTLE, TIMEOUT).await;
    assert_eq!(raw.len(), 1, "only the accepted webhook is stored");
    assert_eq!(raw[0].value_bytes().unwrap(), "x".repeat(64).as_bytes());
    assert_eq!(raw[0].headers["hookline-meta"]["dedup_key_origin"], "body_sha256");

    let metrics = ingress.metrics().await;
    assert!(
        metrics.contains(r#"hookline_ingress_requests_total{source="small",outcome="payload_too_large"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"hookline_ingress_requests_total{source="_unknown",outcome="not_found"} 1"#));
    // The operator endpoints answer on the admin address only: nothing about the configuration (source
    // names, secret ids) on the public webhook port.
    let admin = format!("http://{}", ingress.admin);
    assert_eq!(get_status(&format!("{admin}/livez")).await, 200);
    assert_eq!(get_status(&format!("{admin}/readyz")).await, 200);
    for path in ["/metrics", "/livez", "/readyz", "/", "/webhooks"] {
        let reply = hookline_e2e::get(&format!("{base}{path}")).await.unwrap();
        assert_eq!(reply.status, 404, "{path} on the webhook port");
        assert!(!reply.text().contains("small"), "{path}: {}", reply.text());
    }
    assert!(!hookline_e2e::get(&format!("{base}/metrics")).await.unwrap().text().contains("hookline_"));
}

async fn get_status(url: &str) -> u16 {
    get(url).await.map(|r| r.status).unwrap_or(0)
}

/// `make run` relies on the local Kafka keeping topics, records and committed group offsets across a
/// kill -9 and restart on its data folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_broker_keeps_records_and_committed_offsets_across_a_restart() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let mut kafka = Kafka::local();
    let topic = unique("persist");
    let group = unique("persist-group");
    hookline_runtime::kafka::ensure_topics(
        &hookline_runtime::kafka::KafkaConfig { brokers: kafka.brokers().to_owned(), ..Default::default() },
        &[hookline_runtime::kafka::TopicSpec { name: topic.clone(), partitions: 1, config: vec![] }],
    )
    .await
    .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..3 {
        let payload = format!("r{i}");
        producer.send(FutureRecord::<(), _>::to(&topic).payload(&payload), Duration::from_secs(5)).await.unwrap();
    }
    drop(producer);
    let committed = |brokers: String, topic: String, group: String, commit: Option<i64>| {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", &group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        if let Some(offset) = commit {
            tpl.add_partition_offset(&topic, 0, Offset::Offset(offset)).unwrap();
            // A new group's coordinator may not be known yet (NotCoordinator): commit as a consumer would,
            // again until the broker takes it.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                assert!(std::time::Instant::now() < deadline, "commit: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let mut query = TopicPartitionList::new();
        query.add_partition(&topic, 0);
        let got = consumer.committed_offsets(query, Duration::from_secs(10)).unwrap();
        got.find_partition(&topic, 0).unwrap().offset()
    };
    let (b, t, g) = (kafka.brokers().to_owned(), topic.clone(), group.clone());
    let before = tokio::task::spawn_blocking(move || committed(b, t, g, Some(2))).await.unwrap();
    assert_eq!(before, rdkafka::Offset::Offset(2));

    kafka.stop();
    kafka.restart();

    let (b, t, g) = (kafka.brokers().to_owned(), topic.clone(), group.clone());
    let after = tokio::task::spawn_blocking(move || committed(b, t, g, None)).await.unwrap();
    assert_eq!(after, rdkafka::Offset::Offset(2), "the committed offset survived");
    let records = read_topic(kafka.brokers(), &topic, 3, SETTLE, TIMEOUT).await;
    let values: Vec<Vec<u8>> = records.iter().map(|r| r.value_bytes().unwrap()).collect();
    assert_eq!(values, vec![b"r0".to_vec(), b"r1".to_vec(), b"r2".to_vec()], "the records survived");
}
