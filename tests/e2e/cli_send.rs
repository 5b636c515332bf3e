//! `hookline send` against a real ingress (the built binary) and broker: every scheme's webhooks accepted and
//! stored, stale signatures refused as expected, a wrong secret exiting 1, and duplicates through the whole
//! pipeline giving exactly one event per webhook.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hookline_e2e::sign::{all_sources, all_sources_toml, secrets_in};
use hookline_e2e::*;

use crate::{SETTLE, TIMEOUT};

/// Runs `hookline send ARGS` to completion, off the runtime's threads.
async fn send(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin("hookline")).arg("send").args(&args).output().expect("run hookline");
        eprintln!(
            "$ hookline send {}\n{}{}(exit {:?})",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    })
    .await
    .unwrap()
}

fn args(config: &Path, base: &str, source: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--config".into(), config.display().to_string(), "--url".into(), base.into()];
    v.extend(["--source".into(), source.into()]);
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// An ingress binary with one source per scheme whose Twilio and HubSpot public URLs are its own address,
/// and the config file it reads.
async fn ingress(kafka: &Kafka, topics: &Topics, dir: &Path) -> (Component, PathBuf, String) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let base = format!("http://{addr}");
    let sources = all_sources_toml(&base);
    let toml = ingress_toml(kafka, topics, &IngressOptions { extra: &sources, shop: false, ..Default::default() })
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    let config = dir.join("send-ingress.toml");
    std::fs::write(&config, &toml).unwrap();
    let ingress = Component::ingress(dir, addr, &toml).await;
    (ingress, config, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_is_accepted_stale_ones_are_refused_and_a_wrong_secret_fails() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let (_ingress, config, base) = ingress(&kafka, &topics, dir.path()).await;

    let secrets = secrets_in(&std::fs::read_to_string(&config).unwrap());
    assert!(secrets.len() >= all_sources().len());
    for source in all_sources() {
        let out = send(args(&config, &base, source, &["--count", "3"])).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{source}: {text}");
        assert!(text.contains("answers:     202 x3\n"), "{source}: {text}");
        let errors = String::from_utf8_lossy(&out.stderr);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()) && !errors.contains(secret.as_str()),
                "{source}: a secret was printed"
            );
        }
    }
    let raw = read_topic(kafka.brokers(), &topics.raw, 3 * all_sources().len(), SETTLE, TIMEOUT).await;
    let mut per_source: BTreeMap<String, usize> = BTreeMap::new();
    for r in &raw {
        *per_source.entry(r.headers["hookline-meta"]["source"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for source in all_sources() {
        assert_eq!(per_source.get(source), Some(&3), "{source}: {per_source:?}");
    }

    // Signed an hour ago: refused with 401, which is what was expected.
    for source in ["stripe", "slack", "acme"] {
        let out = send(args(&config, &base, source, &["--count", "3", "--stale-timestamps", "1.0"])).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{source}: {text}");
        assert!(text.contains("stale:       3 of 3 refused as expected (401)"), "{source}: {text}");
        assert!(text.contains("answers:     401 x3\n"), "{source}: {text}");
    }

    // A config with another secret than the ingress's: refused, exit 1, the answer shown.
    let wrong = dir.path().join("wrong-secret.toml");
    let stripe_secret = secrets_in(&hookline_providers::find("stripe").unwrap().sample_settings("")).remove(0);
    std::fs::write(&wrong, std::fs::read_to_string(&config).unwrap().replace(&stripe_secret, "whsec_not_it")).unwrap();
    let out = send(args(&wrong, &base, "stripe", &["--count", "2"])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED (2 deliveries not answered as expected)"), "{text}");
    assert!(text.contains("expected 2xx): 401"), "{text}");

    // An unknown source names the configured ones.
    let out = send(args(&config, &base, "nope", &[])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no source `nope`") && err.contains("stripe"), "{err}");

    let raw = read_topic(kafka.brokers(), &topics.raw, 3 * all_sources().len(), SETTLE, TIMEOUT).await;
    assert_eq!(raw.len(), 3 * all_sources().len(), "stale and wrongly signed webhooks are not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_through_the_pipeline_give_exactly_one_event_per_webhook() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (_ingress, config, base) = ingress(&kafka, &topics, dir.path()).await;
    let _processor = Running::processor(processor_config(
        &kafka,
        &topics,
        state.path(),
        "[sources.stripe]\nprovider = \"stripe\"\n",
    ))
    .await;

    let extra = ["--count", "40", "--dup-rate", "0.5", "--reorder", "0.5", "--rate", "100", "--seed", "42"];
    let out = send(args(&config, &base, "stripe", &extra)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let dups: usize = text
        .split(" duplicates sent")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(dups > 5, "{text}");

    let raw = read_topic(kafka.brokers(), &topics.raw, 40 + dups, SETTLE, TIMEOUT).await;
    assert_eq!(raw.len(), 40 + dups, "every delivery is stored");
    let events = read_topic(kafka.brokers(), &topics.events, 40, SETTLE, TIMEOUT).await;
    let ids: BTreeSet<String> =
        events.iter().map(|e| e.value.as_ref().unwrap()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events.len(), 40, "exactly one event per webhook");
    assert_eq!(ids.len(), 40);
}
