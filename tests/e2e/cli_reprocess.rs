//! `hookline dlq` and `hookline replay` against a real pipeline: poison webhooks that made the processor panic
//! (a hookline bug, injected) are listed and shown, then redriven once the processor is fixed: each yields
//! exactly one event, and redriving them again yields none. A replay re-derives a source's events once per
//! run, with the same event ids, however many times the provider delivered each webhook.

use std::collections::BTreeMap;
use std::time::Duration;

use hookline_e2e::chaos::Cluster;
use hookline_e2e::checker::{self, Expect};
use hookline_e2e::driver::{self, Load, PANIC_MARKER};
use hookline_e2e::{processor_toml, read_topic, unique, Kafka};

use crate::cli::{hookline, stdout};

/// A processor config file naming the cluster's topics, for the CLI.
fn cli_config(c: &Cluster, dir: &std::path::Path) -> String {
    let path = dir.join("processor.toml");
    let text = processor_toml(c.kafka.brokers(), &c.topics, &dir.join("unused-state"), "127.0.0.1:0", "");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Event ids on the events topic once `expected` events are in (and 3 s pass without more), with their counts.
async fn event_ids(c: &Cluster, expected: usize) -> BTreeMap<String, usize> {
    let records =
        read_topic(c.kafka.brokers(), &c.topics.events, expected, Duration::from_secs(3), Duration::from_secs(90))
            .await;
    let mut ids = BTreeMap::new();
    for r in records {
        let id = r.value.as_ref().and_then(|v| v["id"].as_str()).expect("an event id").to_owned();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_redrive_of_fixed_records_yields_exactly_one_event_each_and_a_second_redrive_none() {
    let mut c = Cluster::start(Kafka::start(), 2, 1, &[("HOOKLINE_FAULT_PANIC_ON", PANIC_MARKER)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(&c, dir.path());
    let mut load = Load::new(&unique("dlq"), 90, 6, 40.0);
    load.poison = 0.6;
    let driven = driver::drive(&c.base_url(), &load).await;
    assert!(driven.sent.iter().all(|s| s.accepted), "{:?}", driven.statuses);
    let observed = checker::observe(
        c.kafka.brokers(),
        &c.topic_names(),
        &driven.sent,
        Duration::from_secs(2),
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    let good = driven.sent.iter().filter(|s| s.expect == Expect::Event).count();
    assert_eq!(observed.events.len(), good);

    // list: the panics are there, with their class, source and key.
    let out = hookline(&["dlq", "list", "--config", &config, "--reason", "panic"]);
    assert_eq!(out.status.code(), Some(0));
    let listed = stdout(&out);
    let panics: Vec<&str> = listed.lines().filter(|l| l.contains(" panic ")).collect();
    assert!(!panics.is_empty(), "no panic record listed:\n{listed}");
    assert!(listed.contains(&format!("{} records", panics.len())), "{listed}");
    assert!(panics.iter().all(|l| l.contains(driver::STANDARD)), "{listed}");
    // The DEDUP KEY column, each one a DLQ record of the run.
    let panicked_keys: Vec<String> = panics.iter().map(|l| l.split_whitespace().nth(5).unwrap().to_owned()).collect();
    for key in &panicked_keys {
        assert!(observed.dlq.iter().any(|o| &o.dedup_key == key), "{key} is not a DLQ record of the run");
    }

    // show: the first one in full.
    let position = panics[0].split_whitespace().next().unwrap();
    let out = hookline(&["dlq", "show", "--config", &config, position]);
    assert_eq!(out.status.code(), Some(0));
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["headers"]["hookline-dlq"]["class"], "panic");
    assert!(shown["value"].to_string().contains(PANIC_MARKER), "the body is shown: {shown}");
    assert_eq!(hookline(&["dlq", "show", "--config", &config, "0:999999"]).status.code(), Some(1));

    // A dry run sends nothing.
    let out = hookline(&["dlq", "redrive", "--config", &config, "--reason", "panic", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!("would redrive {n} of {n} selected", n = panics.len())), "{}", stdout(&out));

    // Fix the bug (the processor without the injected panic), then redrive.
    c.stop_processor(0);
    c.set_processor_env(&[]);
    c.start_processor(0).await;
    let out = hookline(&["dlq", "redrive", "--config", &config, "--reason", "panic"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!("redriven {n} of {n} selected", n = panics.len())), "{}", stdout(&out));
    let ids = event_ids(&c, good + panics.len()).await;
    for key in &panicked_keys {
        assert_eq!(ids.get(key), Some(&1), "redriven {key}: {ids:?}");
    }
    assert_eq!(ids.values().sum::<usize>(), good + panics.len(), "nothing else was published: {ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");

    // Redriving the same records again publishes nothing: each DLQ record is redriven once.
    let duplicates_before = c.processor_metric("hookline_processor_duplicates_dropped_total").await;
    let out = hookline(&["dlq", "redrive", "--config", &config, "--reason", "panic"]);
    assert_eq!(out.status.code(), Some(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while c.processor_metric("hookline_processor_duplicates_dropped_total").await
        < duplicates_before + panics.len() as f64
    {
        assert!(std::time::Instant::now() < deadline, "the second redrive was not dropped as duplicates");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = event_ids(&c, good + panics.len()).await;
    assert_eq!(again, ids, "a second redrive published events");

    // Records that fail again (invalid JSON is not fixed by the fix) go back to the DLQ, once each.
    let dlq_before =
        read_topic(c.kafka.brokers(), &c.topics.dlq, 0, Duration::from_secs(2), Duration::from_secs(30)).await.len();
    let out = hookline(&["dlq", "redrive", "--config", &config, "--reason", "invalid_json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let invalid = stdout(&out)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap();
    assert!(invalid > 0, "{}", stdout(&out));
    let dlq_after = read_topic(
        c.kafka.brokers(),
        &c.topics.dlq,
        dlq_before + invalid,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await
    .len();
    assert_eq!(dlq_after, dlq_before + invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rederives_a_sources_events_once_per_run_with_the_same_ids() {
    let c = Cluster::start(Kafka::start(), 2, 1, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(&c, dir.path());
    let mut load = Load::new(&unique("replay"), 60, 6, 40.0);
    load.late_dups = 0.5;
    load.late_delay = (Duration::from_millis(200), Duration::from_secs(1));
    let driven = driver::drive(&c.base_url(), &load).await;
    assert!(driven.sent.iter().all(|s| s.accepted), "{:?}", driven.statuses);
    let before = event_ids(&c, 60).await;
    assert_eq!(before.len(), 60);
    let stripe = driver::SOURCES[0];
    let stripe_keys: Vec<&str> =
        driven.sent.iter().filter(|s| s.source == stripe).map(|s| s.dedup_key.as_str()).collect();
    assert!(!stripe_keys.is_empty());

    let out = hookline(&["replay", "--config", &config, "--source", stripe, "--from", "10m", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains(&format!("would replay {} webhooks", stripe_keys.len())), "{}", stdout(&out));

    let out = hookline(&["replay", "--config", &config, "--source", stripe, "--from", "10m"]);
    assert_eq!(out.status.code(), Some(0));
    let summary = stdout(&out);
    assert!(summary.contains(&format!("replayed {} webhooks", stripe_keys.len())), "{summary}");
    let after = event_ids(&c, 60 + stripe_keys.len()).await;
    for (id, n) in &after {
        let expected = if stripe_keys.contains(&id.as_str()) { 2 } else { 1 };
        assert_eq!(*n, expected, "{id}: {after:?}");
    }
    assert_eq!(after.len(), 60, "same ids, no new ones");

    // A window with nothing in it replays nothing.
    let out = hookline(&["replay", "--config", &config, "--source", stripe, "--from", "2h", "--to", "1h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("replayed 0 webhooks"), "{}", stdout(&out));
}
