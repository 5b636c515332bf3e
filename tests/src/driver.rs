//! The load driver: correctly signed webhooks of several providers at a set rate, with re-deliveries, retried
//! on 429, 503 and connection errors the way providers retry, every response recorded.
//!
//! Webhook `i` is about ordering key `i % keys` (its entity: a Stripe invoice, a GitHub pull request, a
//! Standard Webhooks order, by key) and is that key's number `i / keys`. A key's webhooks are sent one after
//! the other, the next only once the previous one was answered 2xx, so acceptance order is send order and the
//! checker can demand it of the events. Re-deliveries are the same webhook again (same id, same body, a fresh
//! signature): a second copy at the same moment (concurrently), or copies some time later (a provider retry
//! after a lost answer). Poison webhooks (Standard Webhooks source only) are correctly signed but go to the
//! DLQ: invalid JSON, no `type`, or a body that makes the mapping code panic (with the processor's fault
//! injection on [`PANIC_MARKER`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::checker::{Expect, Sent};
use crate::sign::Signer;

/// The body marker the processors of a poison run are told to panic on (`HOOKLINE_FAULT_PANIC_ON`).
pub const PANIC_MARKER: &str = "chaos-panic-marker";

/// The sources the driver sends as, in key order (key `k` belongs to `SOURCES[k % 3]`): a Stripe source, a
/// GitHub source, and a Standard Webhooks source (the only one poison webhooks are sent to).
pub const SOURCES: [&str; 3] = ["stripe", "github", "standard"];

/// The Standard Webhooks source.
pub const STANDARD: &str = SOURCES[2];

/// The ingress `[sources.*]` TOML of the driver's sources (each provider's own scheme and keys; the Standard
/// Webhooks source takes its ordering key from `X-Order-Key`, as a sender configured for it would), with the
/// GitHub source rate limited to `github_per_second` if given.
pub fn ingress_sources_toml(github_per_second: Option<u32>) -> String {
    let limit = github_per_second.map(|n| format!("rate_limit = {{ per_second = {n}, burst = {n} }}\n"));
    format!(
        "[sources.stripe.verify]\nscheme = \"stripe\"\nsecrets = [{{ value = \"whsec_chaos_stripe\" }}]\n\
         [sources.github]\n{}[sources.github.verify]\nscheme = \"github\"\nsecrets = [{{ value = \"chaos-github\" }}]\n\
         [sources.standard]\nordering_key = {{ header = \"x-order-key\" }}\n[sources.standard.verify]\n\
         scheme = \"standard_webhooks\"\nsecrets = [{{ value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }}]\n",
        limit.unwrap_or_default()
    )
}

/// The processor `[sources.*]` TOML of the driver's sources (provider presets).
pub fn processor_sources_toml() -> String {
    "[sources.stripe]\nprovider = \"stripe\"\n[sources.github]\nprovider = \"github\"\n\
     [sources.standard]\nprovider = \"standard_webhooks\"\n"
        .to_owned()
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Load {
    /// Prefix of every id, unique per run.
    pub run: String,
    /// Distinct webhooks.
    pub webhooks: usize,
    /// Ordering keys they are spread over (at least 3: one per source).
    pub keys: usize,
    /// New webhooks per second.
    pub rate: f64,
    /// Share of webhooks delivered twice at the same moment.
    pub concurrent_dups: f64,
    /// Share of webhooks delivered once more, later.
    pub late_dups: f64,
    /// How much later (uniform in the range).
    pub late_delay: (Duration, Duration),
    /// When above 1: every webhook is delivered this many times (two at once, the rest later), overriding the
    /// two shares.
    pub copies: usize,
    /// Share of the Standard Webhooks source's webhooks that are poison.
    pub poison: f64,
    /// How long one delivery keeps being retried before the driver gives up on it.
    pub patience: Duration,
    /// Random seed (the same seed sends the same webhooks).
    pub seed: u64,
    /// When the run's events happened (Unix seconds; Stripe's `created`), so a run sent again is the same
    /// bytes, as a provider's redelivery is.
    pub created_s: i64,
}

impl Load {
    /// `webhooks` webhooks over `keys` keys at `rate`/s, with no re-deliveries or poison.
    pub fn new(run: &str, webhooks: usize, keys: usize, rate: f64) -> Load {
        Load {
            run: run.to_owned(),
            webhooks,
            keys: keys.max(SOURCES.len()),
            rate,
            concurrent_dups: 0.0,
            late_dups: 0.0,
            late_delay: (Duration::from_secs(1), Duration::from_secs(5)),
            copies: 1,
            poison: 0.0,
            patience: Duration::from_secs(180),
            seed: 7,
            created_s: crate::now_ms() / 1000,
        }
    }
}

/// What a run sent and how it was answered.
#[derive(Debug, Default)]
pub struct Driven {
    /// One entry per distinct webhook.
    pub sent: Vec<Sent>,
    /// HTTP requests made (re-deliveries and retries included).
    pub requests: u64,
    /// Answers by status code, `"error"` for a request that got no answer (refused, reset, timed out).
    pub statuses: BTreeMap<String, u64>,
    /// Every request's answer, in the order they came.
    pub responses: Vec<Response>,
    /// Deliveries answered with a status a provider would not retry (4xx other than 429), with the status.
    pub refused: Vec<String>,
    /// Deliveries given up after [`Load::patience`].
    pub given_up: usize,
    /// When the run started (Unix ms): [`Response::at_ms`] counts from here.
    pub started_ms: i64,
}

impl Driven {
    /// Adds what another run (to the same ingress) sent; its responses' times still count from its own start.
    pub fn absorb(&mut self, other: Driven) {
        self.sent.extend(other.sent);
        self.requests += other.requests;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.responses.extend(other.responses);
        self.refused.extend(other.refused);
        self.given_up += other.given_up;
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Response {
    /// `source/dedup key` of the webhook.
    pub webhook: String,
    /// Status code, or `"error"` when no answer came.
    pub status: String,
    /// Milliseconds since the run started ([`Driven::started_ms`]), when the answer came.
    pub at_ms: u64,
}

/// One webhook, ready to be signed and sent.
#[derive(Debug, Clone)]
struct Webhook {
    source: &'static str,
    dedup_key: String,
    ordering_key: String,
    seq: u64,
    body: Bytes,
    expect: Expect,
}

#[derive(Debug, Clone, Copy)]
enum Poison {
    InvalidJson,
    MissingType,
    Panic,
}

fn webhook(load: &Load, i: usize, poison: Option<Poison>) -> Webhook {
    let k = i % load.keys;
    let seq = (i / load.keys) as u64;
    let run = &load.run;
    let source = SOURCES[k % SOURCES.len()];
    let ordering_key = format!("{run}-k{k}");
    let (dedup_key, body) = match source {
        "stripe" => {
            let id = format!("evt_{run}_{i}");
            // The moment it was scheduled, in the run's own clock.
            #[allow(clippy::cast_possible_truncation)]
            let created = load.created_s + (i as f64 / load.rate) as i64;
            let body = format!(
                r#"{{"id":"{id}","object":"event","type":"invoice.paid","created":{created},"data":{{"object":{{"id":"in_{run}_{k}","object":"invoice","seq":{seq}}}}}}}"#
            );
            (id, body)
        }
        "github" => {
            let body = format!(
                r#"{{"action":"synchronize","number":{k},"pull_request":{{"number":{k},"seq":{seq}}},"repository":{{"full_name":"acme/{run}"}}}}"#
            );
            (format!("d-{run}-{i}"), body)
        }
        _ => {
            let body = match poison {
                None => format!(r#"{{"type":"order.updated","data":{{"order":"{ordering_key}","seq":{seq}}}}}"#),
                Some(Poison::InvalidJson) => format!(r#"{{"type":"order.updated","data":{{"seq":{seq}"#),
                Some(Poison::MissingType) => format!(r#"{{"data":{{"order":"{ordering_key}","seq":{seq}}}}}"#),
                Some(Poison::Panic) => {
                    format!(r#"{{"type":"order.updated","data":{{"seq":{seq},"note":"{PANIC_MARKER}"}}}}"#)
                }
            };
            (format!("msg_{run}_{i}"), body)
        }
    };
    let expect = if poison.is_some() { Expect::Dlq } else { Expect::Event };
    Webhook { source, dedup_key, ordering_key, seq, body: Bytes::from(body), expect }
}

/// The request the provider sends for `w` now.
fn request(signer: &Signer, base: &str, w: &Webhook) -> http::Request<Full<Bytes>> {
    let now = crate::now_ms() / 1000;
    let mut req = http::Request::post(format!("{base}/webhooks/{}", w.source));
    for (name, value) in signer.sign(w.source, &w.body, "application/json", &w.dedup_key, now) {
        req = req.header(name, value);
    }
    req = match w.source {
        "github" => req.header("x-github-delivery", &w.dedup_key).header("x-github-event", "pull_request"),
        "standard" => req.header("x-order-key", &w.ordering_key),
        _ => req,
    };
    req.body(Full::new(w.body.clone())).unwrap_or_default()
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    statuses: BTreeMap<String, u64>,
    responses: Vec<Response>,
    refused: Vec<String>,
    given_up: usize,
}

struct Sender {
    base: String,
    signer: Signer,
    started: Instant,
    client: HttpClient,
    patience: Duration,
    tally: Mutex<Tally>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Accepted,
    Refused,
    GaveUp,
}

impl Sender {
    fn count(&self, w: &Webhook, status: &str) {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut t = self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.requests += 1;
        *t.statuses.entry(status.to_owned()).or_default() += 1;
        let webhook = format!("{}/{}", w.source, w.dedup_key);
        t.responses.push(Response { webhook, status: status.to_owned(), at_ms });
    }

    /// Delivers `w` until it is answered 2xx, retrying as a provider does: after `Retry-After` on 429 and
    /// 503, with backoff on other 5xx and on connection errors; a 4xx other than 429 is final.
    async fn deliver(&self, w: &Webhook) -> Delivery {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let answer = tokio::time::timeout(
                Duration::from_secs(15),
                self.client.request(request(&self.signer, &self.base, w)),
            )
            .await;
            let wait = match answer {
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    self.count(w, &status.to_string());
                    let retry_after = resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let text = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    match status {
                        200..=299 => return Delivery::Accepted,
                        429 | 503 => Duration::from_secs(retry_after.unwrap_or(1)).min(Duration::from_secs(2)),
                        400..=499 => {
                            let mut t = self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            let why = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
                            t.refused.push(format!("{}/{}: {status} {why}", w.source, w.dedup_key));
                            return Delivery::Refused;
                        }
                        _ => backoff,
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    self.count(w, "error");
                    backoff
                }
            };
            if started.elapsed() >= self.patience {
                self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).given_up += 1;
                return Delivery::GaveUp;
            }
            tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Sends `load` to the ingress at `base` (`http://host:port`) and returns what was sent and how it was
/// answered, once every delivery, re-deliveries included, got its final answer.
pub async fn drive(base: &str, load: &Load) -> Driven {
    let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http();
    let started_ms = crate::now_ms();
    let sender = Arc::new(Sender {
        base: base.trim_end_matches('/').to_owned(),
        signer: Signer::new(&ingress_sources_toml(None), base),
        started: Instant::now(),
        client,
        patience: load.patience,
        tally: Mutex::new(Tally::default()),
    });
    let mut rng = fastrand::Rng::with_seed(load.seed);
    // Decide every webhook's fate up front, so a seed is a reproducible run.
    let plans: Vec<(Option<Poison>, usize, Vec<Duration>)> = (0..load.webhooks)
        .map(|i| {
            let standard = SOURCES[(i % load.keys) % SOURCES.len()] == STANDARD;
            let poison = (standard && rng.f64() < load.poison)
                .then(|| [Poison::InvalidJson, Poison::MissingType, Poison::Panic][rng.usize(..3)]);
            let delay = |rng: &mut fastrand::Rng| {
                let (lo, hi) = load.late_delay;
                lo + (hi.saturating_sub(lo)).mul_f64(rng.f64())
            };
            if load.copies > 1 {
                let late = (0..load.copies - 2).map(|_| delay(&mut rng)).collect();
                (poison, 2, late)
            } else {
                let now = if rng.f64() < load.concurrent_dups { 2 } else { 1 };
                let late = if rng.f64() < load.late_dups { vec![delay(&mut rng)] } else { Vec::new() };
                (poison, now, late)
            }
        })
        .collect();
    let plans = Arc::new(plans);
    let start = tokio::time::Instant::now();
    let mut keys = tokio::task::JoinSet::new();
    let late = Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new()));
    for k in 0..load.keys {
        let (sender, plans, late, load) = (sender.clone(), plans.clone(), late.clone(), load.clone());
        keys.spawn(async move {
            let mut sent = Vec::new();
            for i in (k..load.webhooks).step_by(load.keys) {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / load.rate)).await;
                let (poison, now, delays) = &plans[i];
                let w = Arc::new(webhook(&load, i, *poison));
                let mut copies = tokio::task::JoinSet::new();
                for _ in 0..*now {
                    let (sender, w) = (sender.clone(), w.clone());
                    copies.spawn(async move { sender.deliver(&w).await });
                }
                let outcomes = copies.join_all().await;
                let accepted = outcomes.contains(&Delivery::Accepted);
                if accepted {
                    // Later copies only of a webhook the provider saw accepted, so acceptance order stays
                    // send order.
                    let mut late = late.lock().await;
                    for delay in delays.clone() {
                        let (sender, w) = (sender.clone(), w.clone());
                        late.spawn(async move {
                            tokio::time::sleep(delay).await;
                            sender.deliver(&w).await;
                        });
                    }
                }
                sent.push(Sent {
                    source: w.source.to_owned(),
                    dedup_key: w.dedup_key.clone(),
                    ordering_key: w.ordering_key.clone(),
                    seq: w.seq,
                    expect: w.expect,
                    accepted,
                });
            }
            sent
        });
    }
    let mut driven = Driven::default();
    while let Some(sent) = keys.join_next().await {
        driven.sent.extend(sent.unwrap_or_default());
    }
    let mut late = late.lock().await;
    while late.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *sender.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    driven.requests = tally.requests;
    driven.statuses = tally.statuses;
    driven.responses = tally.responses;
    driven.refused = tally.refused;
    driven.given_up = tally.given_up;
    driven.started_ms = started_ms;
    driven
}
