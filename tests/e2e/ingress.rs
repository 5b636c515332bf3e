//! Issue 3's scenarios: every provider's scheme through the real ingress and broker, admission control
//! (429, 503, 413, 415, slow clients), the network edge (IP allowlist, TLS, HTTP/2), handshakes, the
//! quarantine, and a SIGTERM drain of the real binary under load.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use hookline_e2e::sign::{all_sources, all_sources_toml, Signer};
use hookline_e2e::*;
use hookline_schemas::json_schema::Contract;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{SETTLE, TIMEOUT};

const PUBLIC: &str = "https://hooks.example.com";

fn now() -> i64 {
    hookline_runtime::now_ms() / 1000
}

async fn ingress_with(kafka: &Kafka, topics: &Topics, o: IngressOptions<'_>) -> Running {
    Running::ingress(ingress_settings(kafka, topics, &o)).await
}

async fn post_pairs(ingress: &Running, source: &str, headers: &[(String, String)], body: String) -> Reply {
    let pairs: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    post(&format!("http://{}/webhooks/{source}", ingress.addr), &pairs, body).await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_providers_scheme_is_accepted_end_to_end_with_its_own_keys() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let sources = all_sources_toml(PUBLIC);
    let signer = Signer::new(&sources, PUBLIC);
    let ingress =
        ingress_with(&kafka, &topics, IngressOptions { extra: &sources, shop: false, ..Default::default() }).await;

    let mut expected = Vec::new();
    let mut expected_records = 0;
    for (i, source) in all_sources().into_iter().enumerate() {
        let w = signer.webhook(source, 100 + i as u64);
        let body = String::from_utf8(w.body.to_vec()).unwrap();
        let headers = signer.headers(source, &w, now());
        let reply = post_pairs(&ingress, source, &headers, body.clone()).await;
        assert_eq!(reply.status, 202, "{source}: {}", reply.text());
        // The same request with the body changed (a trailing space) is refused.
        let reply = post_pairs(&ingress, source, &headers, format!("{body} ")).await;
        if signer.signs_body(source) {
            assert_eq!(reply.status, 401, "{source} accepted a tampered body: {}", reply.text());
        } else {
            assert_eq!(reply.status, 202, "{source}: {}", reply.text());
            expected_records += 1;
        }
        expected_records += 1;
        expected.push((source, w, body));
    }
    let raw = read_topic(kafka.brokers(), &topics.raw, expected_records, SETTLE, TIMEOUT).await;
    assert_eq!(raw.len(), expected_records);
    for (source, w, body) in &expected {
        let record = raw
            .iter()
            .find(|r| r.headers["hookline-meta"]["source"] == *source && r.value_bytes().unwrap() == body.as_bytes())
            .unwrap_or_else(|| panic!("{source}: no raw record"));
        let meta = &record.headers["hookline-meta"];
        match &w.dedup_key {
            Some(key) => {
                assert_eq!(meta["dedup_key"], *key, "{source}");
                assert_eq!(meta["dedup_key_origin"], "provider", "{source}");
            }
            None => assert_eq!(meta["dedup_key_origin"], "body_sha256", "{source}"),
        }
        let key = record.key.clone().unwrap();
        if signer.orders_by_entity(source) {
            assert_eq!(key, w.entity, "{source}: the provider's entity is the ordering key");
        } else {
            assert_eq!(meta["dedup_key"], key, "{source}: no entity key, so the dedup key");
        }
        let kept: Vec<&str> = record.headers["hookline-meta"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|pair| pair[0].as_str())
            .collect();
        for credential in [
            "stripe-signature",
            "x-hub-signature-256",
            "authorization",
            "paddle-signature",
            "x-slack-signature",
            "webhook-signature",
            "svix-signature",
            "x-twilio-signature",
            "x-hubspot-signature-v3",
            "x-shopify-hmac-sha256",
            "x-acme-signature",
            "x-zm-signature",
        ] {
            assert!(!kept.contains(&credential), "{source}: credential header {credential} stored");
        }
    }
    let metrics = ingress.metrics().await;
    assert!(metrics.contains(r#"hookline_ingress_secret_matches_total{source="stripe",secret="0"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_future_timestamps_are_refused() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let sources = all_sources_toml(PUBLIC);
    let signer = Signer::new(&sources, PUBLIC);
    let ingress =
        ingress_with(&kafka, &topics, IngressOptions { extra: &sources, shop: false, ..Default::default() }).await;
    for source in ["stripe", "slack", "standard_webhooks", "hubspot", "acme"] {
        for skew in [-3600, 3600] {
            let w = signer.webhook(source, 1);
            let headers = signer.headers(source, &w, now() + skew);
            let reply = post_pairs(&ingress, source, &headers, String::from_utf8(w.body.to_vec()).unwrap()).await;
            assert_eq!(reply.status, 401, "{source} skew {skew}: {}", reply.text());
        }
    }
    let metrics = ingress.metrics().await;
    assert!(
        metrics.contains(r#"hookline_ingress_verification_failures_total{source="stripe",reason="stale_timestamp"} 1"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"hookline_ingress_verification_failures_total{source="stripe",reason="future_timestamp"} 1"#));
    assert!(read_topic(kafka.brokers(), &topics.raw, 0, SETTLE, TIMEOUT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_and_spent_budgets_503_both_with_retry_after() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let extra = "[sources.limited]\nrate_limit = { per_second = 0.5, burst = 2 }\nallow_unverified = true\nverify = { scheme = \"none\" }\n\
                 [sources.narrow]\nmax_in_flight = 1\nallow_unverified = true\nverify = { scheme = \"none\" }\n";
    let server = "max_reading_per_client = 2\ntrusted_proxies = [\"127.0.0.1/32\"]";
    let ingress = ingress_with(&kafka, &topics, IngressOptions { extra, server, ..Default::default() }).await;
    let base = format!("http://{}", ingress.addr);

    let statuses: Vec<Reply> = {
        let mut out = Vec::new();
        for i in 0..3 {
            out.push(post(&format!("{base}/webhooks/limited"), &[], format!("{{\"n\":{i}}}")).await.unwrap());
        }
        out
    };
    assert_eq!(statuses.iter().map(|r| r.status).collect::<Vec<_>>(), vec![202, 202, 429]);
    let retry: u64 = statuses[2].headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "a token comes back within 2 s: {retry}");

    // Bodies that never finish, from one client (behind the trusted proxy): they do not hold the capacity
    // meant for storing, so `narrow` (one request stored at once) still takes a webhook from anyone...
    let slow_from = |client: &'static str| async move {
        let mut slow = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
        let head = format!(
            "POST /webhooks/narrow HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\nContent-Length: 100\r\n\r\n{{\"partial\":"
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        slow
    };
    let slow = [slow_from("203.0.113.9").await, slow_from("203.0.113.9").await];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok =
        post(&format!("{base}/webhooks/narrow"), &[("x-forwarded-for", "198.51.100.7".into())], "{}").await.unwrap();
    assert_eq!(ok.status, 202, "slow bodies hold no storing capacity: {}", ok.text());
    // ...while that client gets 503 at once for a third body in progress.
    let started = Instant::now();
    let shed =
        post(&format!("{base}/webhooks/narrow"), &[("x-forwarded-for", "203.0.113.9".into())], "{}").await.unwrap();
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert!(started.elapsed() < Duration::from_secs(1), "shed at once, not queued: {:?}", started.elapsed());
    assert!(shed.headers.contains_key("retry-after"));
    drop(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok =
        post(&format!("{base}/webhooks/narrow"), &[("x-forwarded-for", "203.0.113.9".into())], "{}").await.unwrap();
    assert_eq!(ok.status, 202, "its places are free again once the slow requests are gone: {}", ok.text());
    let metrics = ingress.metrics().await;
    assert!(
        metrics.contains(r#"hookline_ingress_requests_total{source="limited",outcome="rate_limited"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"hookline_ingress_requests_total{source="narrow",outcome="overloaded"} 1"#));
}

/// A body that stops arriving gets 408 once it has sent nothing for `body_stall_timeout_ms`, well before
/// the read timeout that bounds a whole body: a sender cannot hold a place by sending nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_after_the_stall_timeout_not_the_read_timeout() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let server = "read_timeout_ms = 30000\nbody_stall_timeout_ms = 500";
    let ingress = ingress_with(&kafka, &topics, IngressOptions { server, ..Default::default() }).await;
    let mut stalled = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    stalled.write_all(b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":").await.unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "408 after the stall timeout: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_sizes_and_slow_clients_are_refused() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let extra = "[sources.typed]\ncontent_types = [\"application/json\"]\nmax_body_bytes = 64\nallow_unverified = true\nverify = { scheme = \"none\" }\n";
    let ingress = ingress_with(
        &kafka,
        &topics,
        IngressOptions { extra, server: "read_timeout_ms = 1000\nidle_timeout_ms = 1000", ..Default::default() },
    )
    .await;
    let url = format!("http://{}/webhooks/typed", ingress.addr);
    let xml = post(&url, &[("content-type", "application/xml".into())], "<a/>").await.unwrap();
    assert_eq!(xml.status, 415);
    let none = post(&url, &[], "{}").await.unwrap();
    assert_eq!(none.status, 415, "no content type is not an accepted one");
    let json = post(&url, &[("content-type", "application/json; charset=utf-8".into())], "{}").await.unwrap();
    assert_eq!(json.status, 202, "{}", json.text());

    // An oversized request head is refused before anything else.
    let huge = post(&url, &[("content-type", "application/json".into()), ("x-padding", "p".repeat(20_000))], "{}")
        .await
        .unwrap();
    assert_eq!(huge.status, 431, "{}", huge.text());

    // Oversized chunked body: no Content-Length, the limit counts the bytes read.
    let mut stream = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    let chunk = "y".repeat(40);
    let request = format!(
        "POST /webhooks/typed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Slowloris: headers that never finish are cut off after the read timeout.
    let mut slow = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    slow.write_all(b"POST /webhooks/typed HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server must close a connection whose headers never complete");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());

    // A body trickled slower than the read timeout gets 408.
    let mut trickle = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    trickle
        .write_all(b"POST /webhooks/typed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // An idle keep-alive connection is not held open forever either.
    let mut idle = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "an idle connection is closed");

    let raw = read_topic(kafka.brokers(), &topics.raw, 1, SETTLE, TIMEOUT).await;
    assert_eq!(raw.len(), 1, "only the accepted webhook is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ip_allowlist_believes_forwarding_headers_only_from_trusted_proxies() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let extra = "[sources.office]\nallowed_ips = [\"203.0.113.0/24\"]\nallow_unverified = true\nverify = { scheme = \"none\" }\n";
    let direct = ingress_with(&kafka, &topics, IngressOptions { extra, ..Default::default() }).await;
    let url = format!("http://{}/webhooks/office", direct.addr);
    assert_eq!(post(&url, &[], "{}").await.unwrap().status, 403, "127.0.0.1 is not allowed");
    let spoofed = post(&url, &[("x-forwarded-for", "203.0.113.7".into())], "{}").await.unwrap();
    assert_eq!(spoofed.status, 403, "forwarding headers from an untrusted peer are ignored");

    let behind_proxy = ingress_with(
        &kafka,
        &topics,
        IngressOptions { extra, server: "trusted_proxies = [\"127.0.0.0/8\"]", ..Default::default() },
    )
    .await;
    let url = format!("http://{}/webhooks/office", behind_proxy.addr);
    let via_proxy = post(&url, &[("x-forwarded-for", "198.51.100.1, 203.0.113.7".into())], "{}").await.unwrap();
    assert_eq!(via_proxy.status, 202, "{}", via_proxy.text());
    let forwarded = post(&url, &[("forwarded", "for=203.0.113.8;proto=https".into())], "{}").await.unwrap();
    assert_eq!(forwarded.status, 202);
    let outsider = post(&url, &[("x-forwarded-for", "203.0.113.7, 198.51.100.1".into())], "{}").await.unwrap();
    assert_eq!(outsider.status, 403, "the nearest untrusted hop is the client");
    let metrics = behind_proxy.metrics().await;
    assert!(metrics.contains(r#"hookline_ingress_requests_total{source="office",outcome="forbidden"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http2_and_http1_and_plain_http_serves_h2c() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, root) = tls::self_signed(dir.path());
    let server = format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    );
    // `[server.tls]` must come after the plain `[server]` keys, so it goes at the end.
    let ingress =
        Running::ingress(ingress_settings(&kafka, &topics, &IngressOptions { extra: &server, ..Default::default() }))
            .await;
    let body = r#"{"id":"tls-1","order":"o"}"#.to_owned();
    let headers = vec![("x-signature".to_owned(), sign(SECRET, body.as_bytes()))];
    let (reply, alpn) =
        tls::post(ingress.addr, &root, tls::Alpn::H2, "/webhooks/shop", &headers, body.clone()).await.unwrap();
    assert_eq!((reply.status, alpn.as_slice()), (202, &b"h2"[..]), "{}", reply.text());
    let body1 = r#"{"id":"tls-2","order":"o"}"#.to_owned();
    let headers1 = vec![("x-signature".to_owned(), sign(SECRET, body1.as_bytes()))];
    let (reply, alpn) =
        tls::post(ingress.addr, &root, tls::Alpn::Http1, "/webhooks/shop", &headers1, body1).await.unwrap();
    assert_eq!((reply.status, alpn.as_slice()), (202, &b"http/1.1"[..]));
    assert!(
        get(&format!("http://{}/webhooks/shop", ingress.addr)).await.is_err(),
        "plain HTTP is not served on a TLS port"
    );

    let plain = Running::ingress(ingress_config(&kafka, &topics, 2, "")).await;
    let body2 = r#"{"id":"h2c-1","order":"o"}"#.to_owned();
    let headers2 = vec![("x-signature".to_owned(), sign(SECRET, body2.as_bytes()))];
    let reply = tls::post_h2c(plain.addr, "/webhooks/shop", &headers2, body2).await.unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());
    let raw = read_topic(kafka.brokers(), &topics.raw, 3, SETTLE, TIMEOUT).await;
    let keys: BTreeSet<&str> = raw.iter().filter_map(|r| r.headers["hookline-meta"]["dedup_key"].as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["tls-1", "tls-2", "h2c-1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_handshakes_are_answered_and_never_stored() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let mut sources = all_sources_toml(PUBLIC);
    let signer = Signer::new(&sources, PUBLIC);
    sources.push_str("[sources.generic]\nallow_unverified = true\nverify = { scheme = \"none\" }\nchallenge = { param = \"challenge\", token_param = \"token\", token = { value = \"tok\" } }\n");
    let ingress =
        ingress_with(&kafka, &topics, IngressOptions { extra: &sources, shop: false, ..Default::default() }).await;
    let base = format!("http://{}", ingress.addr);

    let slack_body =
        r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let headers = signer.sign("slack", slack_body.as_bytes(), "application/json", "", now());
    let reply = post_pairs(&ingress, "slack", &headers, slack_body.to_owned()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    let forged = post(&format!("{base}/webhooks/slack"), &[("content-type", "application/json".into())], slack_body)
        .await
        .unwrap();
    assert_eq!(forged.status, 401, "an unsigned url_verification is refused");

    let zoom_body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let headers = signer.sign("zoom", zoom_body.as_bytes(), "application/json", "", now());
    let reply = post_pairs(&ingress, "zoom", &headers, zoom_body.to_owned()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(reply.json()["encryptedToken"].as_str().unwrap().len(), 64);

    let meta = get(&format!(
        "{base}/webhooks/meta?hub.mode=subscribe&hub.verify_token=sandbox-verify-token&hub.challenge=1158201444"
    ))
    .await
    .unwrap();
    assert_eq!((meta.status, meta.text().as_str()), (200, "1158201444"));
    let wrong =
        get(&format!("{base}/webhooks/meta?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1")).await.unwrap();
    assert_eq!(wrong.status, 401);
    let generic = get(&format!("{base}/webhooks/generic?challenge=abc&token=tok")).await.unwrap();
    assert_eq!((generic.status, generic.text().as_str()), (200, "abc"));
    assert_eq!(get(&format!("{base}/webhooks/stripe")).await.unwrap().status, 405, "no GET check for Stripe");

    assert!(read_topic(kafka.brokers(), &topics.raw, 0, SETTLE, TIMEOUT).await.is_empty(), "handshakes are not stored");
    let metrics = ingress.metrics().await;
    assert!(metrics.contains(r#"hookline_ingress_requests_total{source="slack",outcome="handshake"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_quarantined_with_their_cause_and_without_credentials() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let quarantine = format!("{}.rejected", topics.raw);
    let extra = format!("[quarantine]\ntopic = \"{quarantine}\"\npartitions = 1\n");
    let ingress = ingress_with(&kafka, &topics, IngressOptions { extra: &extra, ..Default::default() }).await;
    let url = format!("http://{}/webhooks/shop", ingress.addr);
    let body = r#"{"id":"evt_q","order":"o","card":"4242424242424242"}"#;
    let wrong_secret = sign("an-old-secret", body.as_bytes());
    assert_eq!(post(&url, &[("x-signature", wrong_secret.clone())], body).await.unwrap().status, 401);
    assert_eq!(post(&format!("http://{}/webhooks/nowhere", ingress.addr), &[], "{}").await.unwrap().status, 404);

    let records = read_topic(kafka.brokers(), &quarantine, 2, SETTLE, TIMEOUT).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let validator = Contract::Rejected.validator().unwrap();
    let values: Vec<serde_json::Value> =
        records.iter().map(|r| serde_json::from_slice(&r.value_bytes().unwrap()).unwrap()).collect();
    for v in &values {
        assert_eq!(validator.violations(v), Vec::<String>::new(), "{v:#}");
        let text = v.to_string();
        assert!(!text.contains(&wrong_secret[7..]) && !text.contains("4242424242424242"), "leaked: {text}");
    }
    let mismatch = values.iter().find(|v| v["reason"] == "mismatch").expect("a mismatch record");
    assert_eq!(mismatch["source"], "shop");
    assert_eq!(mismatch["status"], 401);
    assert!(mismatch["headers"]["x-signature"].as_str().unwrap().starts_with("<redacted"));
    assert_eq!(mismatch["body_bytes"], body.len());
    let unknown = values.iter().find(|v| v["reason"] == "unknown_source").expect("an unknown-source record");
    assert_eq!(unknown["requested_source"], "nowhere");
    let metrics = ingress.metrics().await;
    assert!(metrics.contains(r#"hookline_ingress_quarantined_total{reason="mismatch"} 1"#), "{metrics}");
}

/// The status line of the answer to `request`, written as is on a fresh connection ("" if the connection was
/// closed without one).
async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

/// Requests RFC 9112 says a server must refuse, and request-smuggling shapes: each is answered 400 (or, for
/// `Content-Length` with `Transfer-Encoding`, read by its chunks and the connection closed) and nothing
/// smuggled is stored, while a well-formed request on the same ingress is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_framing_and_host_headers_get_400_and_nothing_smuggled_is_stored() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let ingress = Running::ingress(ingress_config(&kafka, &topics, 2, "")).await;
    let body = r#"{"id":"framing-ok","order":"o"}"#;
    let sig = sign(SECRET, body.as_bytes());
    let head = |extra: &str| {
        format!("POST /webhooks/shop HTTP/1.1\r\ncontent-type: application/json\r\nx-signature: {sig}\r\n{extra}")
    };
    let cases = [
        ("no Host", format!("{}content-length: {}\r\nconnection: close\r\n\r\n{body}", head(""), body.len())),
        (
            "two Host headers",
            format!(
                "{}host: a.example\r\nhost: b.example\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                head(""),
                body.len()
            ),
        ),
        (
            "a Host with userinfo",
            format!(
                "{}host: user@a.example\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                head(""),
                body.len()
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "{}host: a.example\r\ncontent-length: {}\r\ncontent-length: 4\r\nconnection: close\r\n\r\n{body}",
                head(""),
                body.len()
            ),
        ),
        (
            "an obsolete folded header line",
            format!(
                "{}host: a.example\r\nx-note: one\r\n two\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                head(""),
                body.len()
            ),
        ),
    ];
    for (what, request) in &cases {
        let status = raw_status(ingress.addr, request.as_bytes()).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{what}: {status:?}");
    }
    // Content-Length with Transfer-Encoding: read by its chunks alone, then the connection is closed (RFC 9112
    // §6.1), so a request smuggled behind it (what a proxy reading by the length would see) is never answered.
    let smuggled = format!("{}host: a.example\r\ncontent-length: {}\r\n\r\n{body}", head(""), body.len());
    let both = format!(
        "{}host: a.example\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n{smuggled}",
        head(""),
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(ingress.addr).await.unwrap();
    conn.write_all(both.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .expect("the connection is closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "one answer, then the connection closed: {answer}");
    let no_host = "GET /metrics HTTP/1.1\r\nconnection: close\r\n\r\n";
    assert!(raw_status(ingress.addr, no_host.as_bytes()).await.starts_with("HTTP/1.1 400"), "any path");
    let good =
        format!("{}host: a.example\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", head(""), body.len());
    assert!(raw_status(ingress.addr, good.as_bytes()).await.starts_with("HTTP/1.1 202"));
    // The chunked one and the well-formed one (one webhook, two deliveries); nothing smuggled, nothing refused.
    let raw = read_topic(kafka.brokers(), &topics.raw, 2, SETTLE, TIMEOUT).await;
    assert_eq!(raw.len(), 2, "only the chunked request and the well-formed one are stored");
}

/// A certificate or key that cannot be used stops the ingress with an error at once, instead of leaving it
/// up, ready on its admin address and serving nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_tls_certificate_stops_the_ingress_at_once() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let server = format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let settings = ingress_settings(&kafka, &topics, &IngressOptions { extra: &server, ..Default::default() });
    let (webhooks, admin) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let (_, reloads) = hookline_runtime::reload::Reloads::channel();
    let run = hookline_ingress::run(settings, webhooks, admin, tokio_util::sync::CancellationToken::new(), reloads);
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await.expect("the ingress stops at once");
    let e = ended.unwrap_err().to_string();
    assert!(e.contains("cannot start TLS"), "{e}");
}

/// From the moment shutdown begins, `/readyz` on the admin address answers 503 (`accepting`), while the
/// webhook port still takes webhooks for `server.shutdown_grace_ms`, so a load balancer stops sending before
/// the port goes away; then it stops accepting and drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_as_soon_as_shutdown_begins_and_webhooks_are_taken_through_the_grace() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let options = IngressOptions { server: "shutdown_grace_ms = 2000", ..Default::default() };
    let ingress = Running::ingress(ingress_settings(&kafka, &topics, &options)).await;
    let readyz = format!("http://{}/readyz", ingress.admin);
    assert_eq!(get(&readyz).await.unwrap().status, 200);
    let started = Instant::now();
    ingress.begin_shutdown();
    loop {
        let reply = get(&readyz).await.expect("the admin address answers through the shutdown");
        if reply.status == 503 {
            assert!(reply.text().contains("accepting: shutting down"), "{}", reply.text());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "/readyz still {} after shutdown began", reply.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Within the grace period, a webhook sent on a new connection is still taken.
    let body = r#"{"id":"during-grace","order":"o"}"#;
    let reply = post(
        &format!("http://{}/webhooks/shop", ingress.addr),
        &[("x-signature", sign(SECRET, body.as_bytes()))],
        body.to_owned(),
    )
    .await
    .expect("the webhook port still accepts during the grace period");
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_millis(2000), "the grace was not over yet: {:?}", started.elapsed());
    ingress.shutdown().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(2000), "the port was kept for the grace period");
}

/// The real binary under load gets SIGTERM: it stops accepting, finishes what it had, flushes, exits 0, and
/// every webhook it answered 202 is on the raw topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_loses_no_accepted_webhook() {
    let kafka = Kafka::start();
    let topics = Topics::unique();
    let (port, admin_port) = (free_port(), free_port());
    let toml = ingress_toml(&kafka, &topics, &IngressOptions::default()).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\""),
    );
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    let mut cmd = Command::new(bin("hookline-ingress"));
    cmd.arg("--config").arg(file.path()).env_remove("KAFKA_BROKERS").env("HOOKLINE_LOG", "warn");
    let mut ingress = Process::spawn(cmd);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("http://127.0.0.1:{admin_port}/readyz")).await.map(|r| r.status).ok() != Some(200) {
        assert!(Instant::now() < deadline, "the ingress binary did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut senders = Vec::new();
    for worker in 0..16 {
        let base = base.clone();
        senders.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for i in 0.. {
                let body = format!(r#"{{"id":"w{worker}-{i}","order":"o{worker}"}}"#);
                let url = format!("{base}/webhooks/shop");
                match post(&url, &[("x-signature", sign(SECRET, body.as_bytes()))], body).await {
                    Ok(r) if r.status == 202 => accepted.push(r.json()["dedup_key"].as_str().unwrap().to_owned()),
                    Ok(r) => assert!(r.status == 503, "only 202 or 503 while draining, got {}", r.status),
                    Err(_) => refused += 1,
                }
                if refused > 3 || Instant::now() > stop_at + Duration::from_secs(5) {
                    break;
                }
            }
            accepted
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    ingress.signal("TERM");
    let code = tokio::task::spawn_blocking(move || ingress.wait(Duration::from_secs(15))).await.unwrap();
    assert_eq!(code, Some(Some(0)), "the binary exits 0 within the drain timeout");
    let mut accepted = BTreeSet::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    assert!(accepted.len() > 20, "the load ran before the signal: {}", accepted.len());
    let raw = read_topic(kafka.brokers(), &topics.raw, accepted.len(), SETTLE, TIMEOUT).await;
    let stored: BTreeSet<String> = raw.iter().map(dedup_key).collect();
    let lost: Vec<&String> = accepted.difference(&stored).collect();
    assert!(lost.is_empty(), "202'd but not stored: {lost:?}");
}

/// Secrets rotate without a restart: the real binary, with its secrets in files, gets SIGHUP after each edit of
/// its config or of a secret file. Every request goes over one keep-alive connection, which stays open
/// throughout; each reload is live once the generation metric says so; an invalid config is refused and the
/// live one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_secrets_on_an_open_connection_and_an_invalid_config_leaves_the_live_one() {
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;

    let kafka = Kafka::start();
    let topics = Topics::unique();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = |name: &str, secret: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        path
    };
    let (old, new) = (secret_file("old.secret", "old-secret"), secret_file("new.secret", "new-secret"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = |secrets: &[(&std::path::Path, &str)]| {
        let list: Vec<String> =
            secrets.iter().map(|(file, id)| format!(r#"{{ file = "{}", id = "{id}" }}"#, file.display())).collect();
        let extra = format!(
            "[sources.rotating]\ndedup_key = {{ json_pointer = \"/id\" }}\n[sources.rotating.verify]\n\
             scheme = \"hmac\"\nheader = \"X-Signature\"\nprefix = \"sha256=\"\nsecrets = [{}]\n",
            list.join(", ")
        );
        let options = IngressOptions { shop: false, extra: &extra, ..Default::default() };
        ingress_toml(&kafka, &topics, &options).replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""))
    };
    let ingress = Component::ingress(dir.path(), addr, &config(&[(&old, "old")])).await;

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut sent = 0;
    let mut post_signed = async |secret: &str| -> u16 {
        sent += 1;
        let body = format!(r#"{{"id":"rotation-{sent}"}}"#);
        let request = http::Request::post("/webhooks/rotating")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("x-signature", sign(secret, body.as_bytes()))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        sender.ready().await.expect("the connection stays open across reloads");
        let response = sender.send_request(request).await.expect("the connection stays open across reloads");
        response.status().as_u16()
    };
    let reload = async |ingress: &Component, toml: Option<String>, series: &str, value: f64| {
        if let Some(toml) = toml {
            std::fs::write(ingress.config_path(), toml).unwrap();
        }
        ingress.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&ingress.metrics().await, series) != value {
            assert!(Instant::now() < deadline, "{series} never reached {value}:\n{}", ingress.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    const GENERATION: &str = "hookline_ingress_config_generation";
    assert_eq!(metric(&ingress.metrics().await, GENERATION), 1.0);
    assert_eq!(post_signed("old-secret").await, 202);
    assert_eq!(post_signed("new-secret").await, 401, "the new secret is not configured yet");

    // Rotation, step 1: both secrets are live.
    reload(&ingress, Some(config(&[(&new, "new"), (&old, "old")])), GENERATION, 2.0).await;
    assert_eq!(post_signed("new-secret").await, 202);
    assert_eq!(post_signed("old-secret").await, 202, "the old secret keeps working during the rotation");
    // Step 2: the old one is removed.
    reload(&ingress, Some(config(&[(&new, "new")])), GENERATION, 3.0).await;
    assert_eq!(post_signed("old-secret").await, 401, "a removed secret is refused at once");
    assert_eq!(post_signed("new-secret").await, 202);
    // A secret file rewritten in place (a mounted Kubernetes secret) is read again on SIGHUP.
    std::fs::write(&new, "newer-secret\n").unwrap();
    reload(&ingress, None, GENERATION, 4.0).await;
    assert_eq!(post_signed("newer-secret").await, 202);
    assert_eq!(post_signed("new-secret").await, 401);

    // An invalid config (its secret file is gone) is refused; generation 4 stays live.
    let gone = dir.path().join("gone.secret");
    const SUCCESSFUL: &str = "hookline_ingress_config_last_reload_successful";
    assert_eq!(metric(&ingress.metrics().await, SUCCESSFUL), 1.0);
    reload(&ingress, Some(config(&[(&gone, "gone")])), SUCCESSFUL, 0.0).await;
    let metrics = ingress.metrics().await;
    assert_eq!(metric(&metrics, GENERATION), 4.0);
    assert_eq!(metric(&metrics, r#"hookline_ingress_secret_matches_total{source="rotating",secret="new"}"#), 3.0);
    assert_eq!(post_signed("newer-secret").await, 202, "the live config keeps serving");
    let log = ingress.log();
    assert!(log.contains("config reload refused") && log.contains("sources.rotating.verify.secrets[0].file"), "{log}");
    assert!(!log.contains("newer-secret") && !log.contains("old-secret"), "secrets are never logged:\n{log}");
    assert!(!connection.is_finished(), "the keep-alive connection was never closed");
}
