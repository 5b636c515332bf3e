//! The `hookline` binary against a real broker: `config check` on the shipped examples and on a broken config,
//! `topics create` run twice (the second reports every topic as existing), and `topics describe` showing the
//! partitions, the raw topic's high watermarks and the processor group's lag after records are produced and
//! some offsets committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hookline_e2e::{bin, processor_toml, produce_raw, Kafka, RawRecord, Topics};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Runs `hookline ARGS` to completion.
pub(crate) fn hookline(args: &[&str]) -> Output {
    let out = Command::new(bin("hookline")).args(args).output().expect("run hookline");
    eprintln!(
        "$ hookline {}\n{}{}(exit {:?})",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `deploy/`, found at run time next to this crate's manifest.
fn deploy(file: &str) -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run through cargo test)");
    Path::new(&manifest).join("../deploy").join(file)
}

#[test]
fn config_check_describes_the_deploy_examples_and_names_the_field_of_a_broken_config() {
    let ingress = deploy("ingress.example.toml");
    let out = hookline(&["config", "check", ingress.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("ok (ingress, 1 source)"), "{text}");
    assert!(text.contains("source demo\n  accepts:       POST /webhooks/demo\n  scheme:        hmac\n"), "{text}");
    assert!(text.contains("  secret ids:    demo\n"), "{text}");
    assert!(!text.contains("demo-secret-change-me"), "the example's secret value was printed:\n{text}");

    let processor = deploy("processor.example.toml");
    let out = hookline(&["config", "check", processor.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("ok (processor, 1 source)"), "{text}");
    assert!(text.contains("consumer group: hookline-processor\n"), "{text}");
    assert!(text.contains("source demo\n  provider:      generic\n"), "{text}");

    // --kind overrides the detection: the ingress example is not a processor config.
    let out = hookline(&["config", "check", ingress.to_str().unwrap(), "--kind", "processor"]);
    assert_eq!(out.status.code(), Some(1));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&ingress).unwrap().replace("ack_budget_ms = 500", "ack_budget_ms = 999999");
    std::fs::write(&broken, text).unwrap();
    let out = hookline(&["config", "check", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "an invalid config exits 1");
    let err = stderr(&out);
    assert!(err.starts_with(&format!("hookline: {}: invalid: ", broken.display())), "{err}");
    assert!(err.contains("sources.demo.ack_budget_ms"), "the field is named: {err}");
    assert!(stdout(&out).is_empty());

    let out = hookline(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "a usage error exits 2");
}

/// The data lines of `topic`'s block of `describe` output, by their first column (partition or `total`).
fn rows(text: &str, topic: &str) -> BTreeMap<String, Vec<String>> {
    let block = text.split(&format!("{topic}: ")).nth(1).unwrap_or_else(|| panic!("no block for {topic}:\n{text}"));
    block
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (cols[0].clone(), cols[1..].to_vec())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_create_is_idempotent_and_describe_shows_watermarks_and_lag() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let toml = processor_toml(kafka.brokers(), &topics, &dir.path().join("state"), "127.0.0.1:0", "")
        .replace("[topics]", "[topics]\nraw_partitions = 2");
    let config = dir.path().join("processor.toml");
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();
    let all = [&topics.raw, &topics.events, &topics.dlq, &topics.state];

    let out = hookline(&["topics", "describe", "--config", config]);
    assert_eq!(out.status.code(), Some(1), "missing topics exit 1");
    assert!(stdout(&out).contains(&format!("{}: does not exist\n", topics.raw)));
    assert!(stderr(&out).contains("do not exist"), "{}", stderr(&out));

    let out = hookline(&["topics", "create", "--config", config]);
    assert_eq!(out.status.code(), Some(0));
    for t in all {
        assert!(stdout(&out).contains(&format!("{t}: created (2 partitions)\n")), "{t}:\n{}", stdout(&out));
    }
    let out = hookline(&["topics", "create", "--config", config, "--brokers", kafka.brokers()]);
    assert_eq!(out.status.code(), Some(0), "creating again is not an error");
    for t in all {
        assert!(stdout(&out).contains(&format!("{t}: exists (2 partitions)\n")), "{t}:\n{}", stdout(&out));
    }

    let out = hookline(&["topics", "describe", "--config", config]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains(&format!("{}: 2 partitions, group {}\n", topics.raw, topics.group)), "{text}");
    for t in [&topics.events, &topics.dlq, &topics.state] {
        assert!(text.contains(&format!("{t}: 2 partitions\n")), "{text}");
        let r = rows(&text, t);
        assert_eq!(r.keys().collect::<Vec<_>>(), ["0", "1", "total"], "{text}");
    }
    assert_eq!(rows(&text, &topics.raw)["total"], ["0", "0", "0"], "empty: low 0, high 0, lag 0\n{text}");

    // N records, then the group commits offset 1 (one record done) in every partition that has records.
    const N: usize = 7;
    let records: Vec<RawRecord> = (0..N)
        .map(|i| RawRecord::json("shop", &format!("evt-{i}"), &format!("order-{i}"), format!(r#"{{"id":{i}}}"#)))
        .collect();
    let stored = produce_raw(kafka.brokers(), &topics.raw, &records).await;
    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, _) in &stored {
        *per_partition.entry(*p).or_default() += 1;
    }
    let (brokers, raw, group) = (kafka.brokers().to_owned(), topics.raw.clone(), topics.group.clone());
    let used: Vec<i32> = per_partition.keys().copied().collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in used {
            tpl.add_partition_offset(&raw, p, Offset::Offset(1)).unwrap();
        }
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    let committed = per_partition.len();

    let out = hookline(&["topics", "describe", "--config", config]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let raw_rows = rows(&text, &topics.raw);
    for p in 0..2 {
        let high = per_partition.get(&p).copied().unwrap_or(0);
        let expected = if high > 0 {
            vec!["0".to_owned(), high.to_string(), "1".to_owned(), (high - 1).to_string()]
        } else {
            vec!["0".to_owned(), "0".to_owned(), "-".to_owned(), "0".to_owned()]
        };
        assert_eq!(raw_rows[&p.to_string()], expected, "partition {p}:\n{text}");
    }
    assert_eq!(raw_rows["total"], ["0", &N.to_string(), &(N - committed).to_string()], "{text}");

    // Another group has committed nothing: its lag is every record.
    let out = hookline(&["topics", "describe", "--config", config, "--group", "nobody"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains(&format!("{}: 2 partitions, group nobody\n", topics.raw)), "{text}");
    assert_eq!(rows(&text, &topics.raw)["total"], ["0", &N.to_string(), &N.to_string()], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_a_topics_records_as_json_lines_in_the_published_record_shape() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let records: Vec<RawRecord> = (0..5)
        .map(|i| RawRecord::json("shop", &format!("evt-{i}"), &format!("order-{i}"), format!(r#"{{"id":{i}}}"#)))
        .collect();
    hookline_e2e::create_raw_topic(&kafka, &topics, 2).await;
    produce_raw(kafka.brokers(), &topics.raw, &records).await;

    let out = hookline(&["tail", &topics.raw, "--brokers", kafka.brokers()]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 5, "{}", stdout(&out));
    let validator = hookline_schemas::json_schema::Contract::RawRecord.validator().unwrap();
    for line in &lines {
        assert_eq!(validator.violations(line), Vec::<String>::new(), "{line}");
    }
    let mut ids: Vec<i64> = lines.iter().map(|l| l["value"]["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert_eq!(lines[0]["headers"]["hookline-meta"]["source"], "shop", "hookline's headers are shown parsed");

    let out = hookline(&["tail", &topics.raw, "--brokers", kafka.brokers(), "-n", "2"]);
    assert_eq!(stdout(&out).lines().count(), 2);
    let out = hookline(&["tail", &topics.raw, "--brokers", kafka.brokers(), "--value", "base64", "-n", "1"]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(line["value_base64"].is_string() && line.get("value").is_none(), "{line}");
    let out = hookline(&["tail", "no-such-topic", "--brokers", kafka.brokers()]);
    assert_eq!(out.status.code(), Some(1), "a missing topic fails");
}
