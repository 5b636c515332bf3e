//! Issue 17's VRL transforms end to end: the README's Stripe example on a Stripe-signed webhook through
//! ingress, broker and processor; a runtime error into the DLQ; a program that does not compile stopping the
//! processor binary; `hookline pipeline test` on the README's example.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookline_e2e::sign::Signer;
use hookline_e2e::*;

use crate::{SETTLE, TIMEOUT};

const PUBLIC: &str = "https://hooks.example.com";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_transform_publishes_stripe_events_without_the_e_mail_and_a_failing_program_dead_letters() {
    init_logs();
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let stripe = hookline_providers::find("stripe").unwrap();
    let verify = format!(
        "[sources.stripe.verify]\nscheme = \"stripe\"\n{}\n",
        stripe.sample_settings(&format!("{PUBLIC}/webhooks/stripe"))
    );
    let signer = Signer::new(&verify, PUBLIC);
    let ingress = Running::ingress(ingress_settings(
        &kafka,
        &topics,
        &IngressOptions { extra: &verify, ..IngressOptions::default() },
    ))
    .await;
    let checked = dir.path().join("checked.vrl");
    std::fs::write(&checked, "assert!(is_integer(.data.amount), \"amount must be an integer\")\n").unwrap();
    let extra = format!(
        "[sources.stripe]\nprovider = \"stripe\"\ntransform = \"{}\"\n[sources.shop]\ntransform = \"{}\"\n",
        repo().join("examples/stripe-redact/redact-emails.vrl").display(),
        checked.display()
    );
    let processor = Running::processor(processor_config(&kafka, &topics, &dir.path().join("state"), &extra)).await;

    // The README's sample charge, signed as Stripe signs it.
    let body = std::fs::read(repo().join("examples/stripe-redact/samples/charge.succeeded.json")).unwrap();
    let mut headers = signer.sign("stripe", &body, "application/json", "", now_ms() / 1000);
    headers.push(("user-agent".into(), "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into()));
    let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let reply = post(&format!("http://{}/webhooks/stripe", ingress.addr), &headers, body.clone()).await.unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());
    let failing = post_signed(&ingress, r#"{"id":"o-1","order":"o","amount":"12.50"}"#).await;
    assert_eq!(failing.status, 202, "{}", failing.text());
    let passing = post_signed(&ingress, r#"{"id":"o-2","order":"o","amount":1250}"#).await;
    assert_eq!(passing.status, 202, "{}", passing.text());

    let events = read_topic(kafka.brokers(), &topics.events, 2, SETTLE, TIMEOUT).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let charge = events.iter().filter_map(|e| e.value.as_ref()).find(|v| v["source"] == "/webhooks/stripe").unwrap();
    let mut expected: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let object = &mut expected["data"]["object"];
    object.as_object_mut().unwrap().remove("receipt_email");
    object["billing_details"].as_object_mut().unwrap().remove("email");
    assert_eq!(charge["data"], expected, "the e-mail fields are gone and nothing else changed");
    assert!(!charge.to_string().contains('@'), "no e-mail address anywhere: {charge}");
    assert_eq!(charge["redacted"], true);
    assert_eq!(charge["type"], "charge.succeeded");
    assert_eq!(charge["id"], "evt_3QkZ1C2eZvKYlo2C1Lw5Qm4f", "the event id is still the webhook's");
    assert!(hookline_schemas::json_schema::Contract::Event.validator().unwrap().violations(charge).is_empty());
    let order = events.iter().filter_map(|e| e.value.as_ref()).find(|v| v["source"] == "/webhooks/shop").unwrap();
    assert_eq!(order["id"], "o-2");

    let dlq = read_topic(kafka.brokers(), &topics.dlq, 1, SETTLE, TIMEOUT).await;
    assert_eq!(dlq.len(), 1, "{dlq:#?}");
    let why = &dlq[0].headers["hookline-dlq"];
    assert_eq!((why["class"].as_str(), why["stage"].as_str()), (Some("transform_error"), Some("transform")), "{why}");
    let reason = why["reason"].as_str().unwrap();
    assert!(reason.contains("checked.vrl") && reason.contains("amount must be an integer"), "{reason}");
    assert_eq!(why["dedup_key"], "o-1");
    assert_eq!(dlq[0].value_bytes().unwrap(), br#"{"id":"o-1","order":"o","amount":"12.50"}"#, "the body is kept");
    let m = processor.metrics().await;
    assert_eq!(metric(&m, r#"hookline_processor_dlq_records_total{source="shop",class="transform_error"}"#), 1.0);
    processor.shutdown().await.unwrap();
}

#[test]
fn a_program_that_does_not_compile_stops_the_processor_with_vrls_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("broken.vrl");
    std::fs::write(&program, "# rename a field\n.data.total = .data.amount\n.data.note = upcase(.data.note)\n")
        .unwrap();
    let config = dir.path().join("processor.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[state]\ndir = \"{}\"\n[sources.shop]\ntransform = \"{}\"\n",
            state.display(),
            program.display()
        ),
    )
    .unwrap();
    let out = Command::new(bin("hookline-processor")).arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refuses to start, as on any invalid config: {stderr}");
    assert!(stderr.contains("sources.shop.transform"), "names the field: {stderr}");
    assert!(stderr.contains(&format!("{}:3:", program.display())), "names the file and line: {stderr}");
    assert!(stderr.contains("error[E"), "VRL's own diagnostic: {stderr}");
    assert!(!state.exists(), "stopped before the data folder was made");

    let out = Command::new(bin("hookline")).args(["config", "check"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{}:3:", program.display())));
}

#[test]
fn hookline_pipeline_test_passes_on_the_readme_example_and_run_prints_what_would_be_published() {
    let out = Command::new(bin("hookline"))
        .args(["pipeline", "test", "examples/stripe-redact/pipeline.test.toml"])
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 passed; 0 failed"), "{stdout}");

    let mut child = Command::new(bin("hookline"))
        .args(["pipeline", "run", "--config", "examples/stripe-redact/processor.toml", "--source", "stripe"])
        .current_dir(repo())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let body = std::fs::read(repo().join("examples/stripe-redact/samples/invoice.paid.json")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("examples/stripe-redact/samples/invoice.paid.expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, expected, "run prints what the test expects");
    assert_eq!(printed[0]["event"]["data"]["data"]["object"].get("customer_email"), None);
}
