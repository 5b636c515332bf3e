//! Attacks on the ingress binary at the HTTP level, each while a legitimate sender keeps sending: HTTP/2 rapid
//! reset, CONTINUATION floods, more streams than allowed and oversized header blocks; slowloris over HTTP/1.1
//! and HTTP/2; slow TLS handshakes. Under each, every legitimate webhook gets 202 promptly, the attacker's
//! connections are ended by the server, and the process's peak memory stays bounded (printed for the notes).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookline_e2e::h2::{self, RawH2, Seen};
use hookline_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most the ingress may reach under any of these attacks (it idles at about 30 MiB).
const PEAK_RSS_MIB: u64 = 256;
/// The slowest a legitimate webhook may be answered during an attack.
const PROMPT: Duration = Duration::from_secs(2);

async fn ingress(dir: &std::path::Path, kafka: &Kafka, server: &str) -> Component {
    let topics = Topics::unique();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let options = IngressOptions { server, ..Default::default() };
    let toml =
        ingress_toml(kafka, &topics, &options).replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    Component::ingress(dir, addr, &toml).await
}

/// A legitimate sender: `count` signed webhooks over HTTP/1.1, one after the other, while `attack` runs; each
/// must get 202 within [`PROMPT`].
async fn legitimate_while<F: std::future::Future>(addr: SocketAddr, count: usize, attack: F) -> F::Output {
    let sender = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        for i in 0..count {
            let body = format!(r#"{{"id":"legit-{i}-{}","order":"o"}}"#, fastrand::u64(..));
            let started = Instant::now();
            let reply = post(
                &format!("http://{addr}/webhooks/shop"),
                &[("x-signature", sign(SECRET, body.as_bytes())), ("content-type", "application/json".into())],
                body,
            )
            .await
            .expect("a legitimate sender is answered");
            assert_eq!(reply.status, 202, "a legitimate webhook during the attack: {}", reply.text());
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slowest
    });
    let output = attack.await;
    let slowest = sender.await.expect("the legitimate sender");
    assert!(slowest < PROMPT, "a legitimate webhook took {slowest:?} during the attack");
    output
}

/// The header block of a webhook whose 100-byte body is still to come.
fn body_pending_headers(addr: SocketAddr) -> Vec<u8> {
    h2::post_headers(
        addr,
        "/webhooks/shop",
        &[("content-type", "application/json"), ("content-length", "100"), ("x-signature", "sha256=00")],
    )
}

fn assert_bounded(ingress: &Component, attack: &str) {
    let peak = ingress.peak_rss_mib();
    eprintln!("{attack}: ingress peak RSS {peak} MiB");
    assert!(peak > 0 && peak < PEAK_RSS_MIB, "{attack}: peak RSS {peak} MiB");
}

/// HTTP/2 rapid reset (CVE-2023-44487): streams opened and cancelled at once, thousands in a row. The server
/// stops the connection with GOAWAY instead of doing the work of each stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_gets_goaway_and_legitimate_senders_are_served() {
    let kafka = Kafka::start();
    let dir = tempfile::tempdir().unwrap();
    let ingress = ingress(dir.path(), &kafka, "").await;
    let addr = ingress.addr;
    let seen = legitimate_while(addr, 20, async move {
        let mut seen = Seen::default();
        let mut conn = RawH2::connect(addr).await.unwrap();
        let headers = h2::post_headers(addr, "/webhooks/shop", &[("content-type", "application/json")]);
        let mut sent = 0u32;
        'attack: for batch in 0..100u32 {
            let mut bytes = Vec::new();
            for i in 0..100u32 {
                let stream = 2 * (batch * 100 + i) + 1;
                bytes.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, stream, &headers));
                bytes.extend(h2::frame(h2::RST_STREAM, 0, stream, &h2::CANCEL.to_be_bytes()));
            }
            if conn.send(&bytes).await.is_err() {
                break 'attack;
            }
            sent += 100;
            conn.read_for(Duration::from_millis(10), &mut seen).await;
            if seen.closed {
                break;
            }
        }
        conn.read_for(Duration::from_secs(3), &mut seen).await;
        eprintln!("rapid reset: {sent} streams opened and reset; the server sent {seen:?}");
        seen
    })
    .await;
    assert!(seen.goaway.is_some() || seen.closed, "the server let the resets go on: {seen:?}");
    assert_bounded(&ingress, "rapid reset");
}

/// A CONTINUATION flood: one header block that never ends, 16 KiB frame after frame. The server stops reading it
/// once it is over `max_header_bytes` rather than buffering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_floods_and_oversized_header_blocks_are_cut_off() {
    let kafka = Kafka::start();
    let dir = tempfile::tempdir().unwrap();
    let ingress = ingress(dir.path(), &kafka, "").await;
    let addr = ingress.addr;
    let (flooded, oversized) = legitimate_while(addr, 20, async move {
        let mut flood = Seen::default();
        let mut conn = RawH2::connect(addr).await.unwrap();
        conn.send(&h2::frame(h2::HEADERS, 0, 1, &h2::post_headers(addr, "/webhooks/shop", &[]))).await.unwrap();
        let filler = h2::header_block(&[("x-flood", &"a".repeat(16_000))]);
        let mut sent = 0usize;
        // Up to 256 MiB, far more than the server may hold.
        for _ in 0..16_384 {
            if conn.send(&h2::frame(h2::CONTINUATION, 0, 1, &filler)).await.is_err() {
                break;
            }
            sent += filler.len();
            if sent % (1 << 20) < filler.len() {
                conn.read_for(Duration::from_millis(1), &mut flood).await;
                if flood.closed {
                    break;
                }
            }
        }
        conn.read_for(Duration::from_secs(3), &mut flood).await;
        eprintln!("CONTINUATION flood: {} KiB sent before the server cut it off; it sent {flood:?}", sent / 1024);
        assert!(sent < 64 << 20, "the server kept reading a header block of {} MiB", sent >> 20);

        // A complete header block over the limit: refused (431 or a reset), never a webhook.
        let mut oversized = Seen::default();
        let mut conn = RawH2::connect(addr).await.unwrap();
        let big = "b".repeat(15_000);
        let block =
            h2::post_headers(addr, "/webhooks/shop", &[("x-big-1", &big), ("x-big-2", &big), ("x-big-3", &big)]);
        let (first, rest) = block.split_at(16_000);
        let (second, third) = rest.split_at(16_000);
        let mut bytes = h2::frame(h2::HEADERS, h2::END_STREAM, 1, first);
        bytes.extend(h2::frame(h2::CONTINUATION, 0, 1, second));
        bytes.extend(h2::frame(h2::CONTINUATION, h2::END_HEADERS, 1, third));
        conn.send(&bytes).await.unwrap();
        conn.read_for(Duration::from_secs(3), &mut oversized).await;
        eprintln!("oversized header block: the server sent {oversized:?}");
        (flood, oversized)
    })
    .await;
    assert!(flooded.goaway.is_some() || flooded.closed, "the flood was not cut off: {flooded:?}");
    assert!(
        oversized.responses == 1 || !oversized.resets.is_empty() || oversized.goaway.is_some(),
        "an oversized header block was neither answered nor refused: {oversized:?}"
    );
    let metrics = ingress.metrics().await;
    assert_eq!(metric(&metrics, r#"hookline_ingress_requests_total{source="shop",outcome="accepted"}"#), 20.0);
    assert_bounded(&ingress, "CONTINUATION flood");
}

/// More streams than `SETTINGS_MAX_CONCURRENT_STREAMS` on one connection, each waiting to send its body: the
/// excess is refused at once, the rest get 408 when their bodies stall, and other senders are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_over_the_limit_are_refused_and_stalled_ones_get_408() {
    let kafka = Kafka::start();
    let dir = tempfile::tempdir().unwrap();
    let ingress = ingress(dir.path(), &kafka, "").await;
    let addr = ingress.addr;
    let seen = legitimate_while(addr, 30, async move {
        let mut seen = Seen::default();
        let mut conn = RawH2::connect(addr).await.unwrap();
        let headers = body_pending_headers(addr);
        let mut bytes = Vec::new();
        for i in 0..1000u32 {
            bytes.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, 2 * i + 1, &headers));
        }
        conn.send(&bytes).await.unwrap();
        // The body stall timeout is 2 s: by 5 s every admitted stream has its 408.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) && !seen.closed {
            conn.read_for(Duration::from_millis(500), &mut seen).await;
        }
        seen
    })
    .await;
    let refused = seen.resets.iter().filter(|c| **c == 0x7).count();
    eprintln!(
        "1000 streams: {} answered, {refused} refused (REFUSED_STREAM), GOAWAY {:?}",
        seen.responses, seen.goaway
    );
    assert!(seen.responses >= 200, "the admitted streams get their 408: {seen:?}");
    assert!(seen.responses + seen.resets.len() >= 1000 || seen.goaway.is_some(), "{seen:?}");
    let metrics = ingress.metrics().await;
    assert!(metric(&metrics, r#"hookline_ingress_requests_total{source="shop",outcome="request_timeout"}"#) >= 200.0);
    assert_bounded(&ingress, "too many streams");
}

/// Slowloris: 800 HTTP/1.1 connections trickling their headers and 300 HTTP/2 connections trickling bodies,
/// each byte under the stall timeout. The read timeout ends them all; meanwhile legitimate senders are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_over_http1_and_http2_is_timed_out_and_legitimate_senders_are_served() {
    let kafka = Kafka::start();
    let dir = tempfile::tempdir().unwrap();
    let ingress = ingress(dir.path(), &kafka, "read_timeout_ms = 4000").await;
    let addr = ingress.addr;
    let (h1_closed, (h2_answered, h2_ended)) = legitimate_while(addr, 30, async move {
        let mut attackers = Vec::new();
        for i in 0..800 {
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            attackers.push(tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return false };
                let _ = s.write_all(b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\n").await;
                let started = Instant::now();
                let mut buf = [0u8; 256];
                // One header byte a second until the server closes the connection (or 12 s).
                while started.elapsed() < Duration::from_secs(12) {
                    if s.write_all(if i % 2 == 0 { b"X" } else { b"-" }).await.is_err() {
                        return true;
                    }
                    if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                        return true;
                    }
                }
                false
            }));
        }
        let headers = body_pending_headers(addr);
        let mut slow_bodies = Vec::new();
        for i in 0..300 {
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let headers = headers.clone();
            slow_bodies.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                let Ok(mut conn) = RawH2::connect(addr).await else { return seen };
                let _ = conn.send(&h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &headers)).await;
                let started = Instant::now();
                while seen.responses == 0 && !seen.closed && started.elapsed() < Duration::from_secs(12) {
                    let _ = conn.send(&h2::frame(h2::DATA, 0, 1, b"{")).await;
                    conn.read_for(Duration::from_secs(1), &mut seen).await;
                }
                seen
            }));
        }
        let mut closed = 0;
        for a in attackers {
            closed += usize::from(a.await.unwrap());
        }
        let (mut answered, mut ended) = (0, 0);
        for s in slow_bodies {
            let seen = s.await.unwrap();
            answered += usize::from(seen.responses > 0);
            ended += usize::from(seen.responses > 0 || seen.closed);
        }
        (closed, (answered, ended))
    })
    .await;
    eprintln!(
        "slowloris: {h1_closed}/800 HTTP/1.1 connections closed; of 300 HTTP/2 slow bodies {h2_answered} answered \
         408, {h2_ended} ended"
    );
    assert_eq!(h1_closed, 800, "every trickling head is cut off by the read timeout");
    // A connection of the burst may be dropped by the kernel (listen backlog) before a request is made; every
    // one is ended by the server, and nearly all with their 408.
    assert_eq!(h2_ended, 300, "every trickling body is ended by the read timeout");
    assert!(h2_answered >= 250, "trickling bodies get 408: {h2_answered}/300");
    let metrics = ingress.metrics().await;
    let timeouts = metric(&metrics, r#"hookline_ingress_requests_total{source="shop",outcome="request_timeout"}"#);
    assert_eq!(timeouts, h2_answered as f64);
    assert_bounded(&ingress, "slowloris");
}

/// Slow TLS handshakes: 1000 connections that send the first bytes of a ClientHello and then nothing. They
/// are closed after the read timeout, and a legitimate sender completes its handshake and is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tls_handshakes_are_timed_out_and_legitimate_senders_are_served() {
    let kafka = Kafka::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, root) = tls::self_signed(dir.path());
    let server = format!(
        "read_timeout_ms = 3000\ntls = {{ cert_file = \"{}\", key_file = \"{}\" }}",
        cert.display(),
        key.display()
    );
    let ingress = ingress(dir.path(), &kafka, &server).await;
    let addr = ingress.addr;
    let mut attackers = Vec::new();
    for _ in 0..1000 {
        attackers.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return None };
            // A TLS record header announcing a handshake message that never comes.
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
            let started = Instant::now();
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
            Some(started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let body = format!(r#"{{"id":"tls-legit-{i}-{}","order":"o"}}"#, fastrand::u64(..));
        let headers = vec![
            ("x-signature".to_owned(), sign(SECRET, body.as_bytes())),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let started = Instant::now();
        let (reply, _) = tls::post(addr, &root, tls::Alpn::H2, "/webhooks/shop", &headers, body).await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text());
        slowest = slowest.max(started.elapsed());
    }
    let mut closed_after = Vec::new();
    for a in attackers {
        closed_after.extend(a.await.unwrap());
    }
    let latest = closed_after.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slow TLS: legitimate slowest {slowest:?}; {} attackers closed, the last after {latest:?}",
        closed_after.len()
    );
    assert!(slowest < PROMPT, "a legitimate TLS sender took {slowest:?}");
    assert_eq!(closed_after.len(), 1000);
    assert!(latest < Duration::from_secs(6), "a stalled handshake was held {latest:?} (read timeout 3 s)");
    assert_bounded(&ingress, "slow TLS handshakes");
}
