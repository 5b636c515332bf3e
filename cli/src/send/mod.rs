//! `hookline send`: signed webhooks, as a provider sends them, to a running ingress — a sandbox for
//! integrators and a load replayer.
//!
//! The source's verifier is built from the ingress config exactly as the ingress builds it, and every request
//! is signed by [`hookline_providers::verify::Verifier::sign_request`] (the schemes' own `sign` functions), so a
//! request this sends is one the ingress accepts unless something is really wrong. Secrets and signatures are
//! never printed.

pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookline_config::ingress::Source;
use hookline_providers::keys::LazyJson;
use hookline_providers::sample::{self, Run, Webhook};
use hookline_providers::verify::Outgoing;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use self::plan::{Delivery, Plan, Shares};
use crate::Error;

/// Attempts per delivery, the first included, when the ingress answers 429 or 503.
pub const MAX_ATTEMPTS: u32 = 5;
/// How old a stale signature is.
pub const STALE_BY_SECS: i64 = 3600;
/// Longest wait honoured from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Deadline of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Response bytes kept for the summary.
const BODY_EXCERPT: usize = 300;

/// `hookline send`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Send signed webhooks, as the source's provider would, to a running ingress",
    long_about = "Send signed webhooks, as the source's provider would, to a running ingress.\n\n\
        Loads the ingress config as the ingress does (HOOKLINE_* overrides, secrets from value, env or file), \
        builds a realistic payload for the source's provider and --event type (Stripe event object, GitHub \
        delivery with X-GitHub-Event, Shopify order with X-Shopify-Topic, Slack event_callback, Standard \
        Webhooks/Svix, Twilio form, Meta, Zoom, HubSpot batch, Paddle notification, or {id, type, created_at, \
        data} for hmac/bearer/basic/none) with ids unique to each webhook, and signs it with the source's first \
        secret using the ingress's own signing code. Twilio and HubSpot sign the URL: --url must be the one \
        configured as the source's public_url.\n\n\
        429 and 503 answers are retried after Retry-After, at most 5 attempts in all. Progress is printed to \
        stderr every second; a summary (answers by status, duplicates, stale refusals, retries, p50/p99 \
        latency) to stdout at the end. Secrets and signatures are never printed.",
    after_help = "Exit codes: 0 every webhook was accepted (2xx) and every stale one refused with 401; 1 otherwise \
                  (the summary names the failures and the first answers), or the config is invalid, or the \
                  source is unknown; 2 usage error."
)]
pub struct SendArgs {
    /// The ingress config file (TOML), read as the ingress reads it.
    #[arg(long, value_name = "INGRESS_TOML")]
    pub config: PathBuf,
    /// The source to send to (`[sources.NAME]`); requests go to URL/webhooks/NAME.
    #[arg(long, value_name = "NAME")]
    pub source: String,
    /// The ingress's base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The event type (`invoice.paid`, `pull_request` or `pull_request.closed`, `orders/create`…). Default: a
    /// typical one for the provider.
    #[arg(long, value_name = "TYPE")]
    pub event: Option<String>,
    /// Webhooks to send.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// Requests started per second (paced by a timer). Default: unlimited.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Share (0 to 1) of webhooks delivered a second time, same id and body, freshly signed, as a provider retry.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_share)]
    pub dup_rate: f64,
    /// Share (0 to 1) of webhooks sent swapped with the next webhook about the same entity (ordering key).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_share)]
    pub reorder: f64,
    /// Share (0 to 1) of webhooks signed with a timestamp an hour old; the ingress must refuse them with 401.
    /// Only for schemes that sign a timestamp (ignored, with a warning, for the others).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_share)]
    pub stale_timestamps: f64,
    /// Seed of the random choices (duplicates, reordering, stale webhooks, amounts), for a repeatable plan.
    /// Ids stay unique per run. Default: random, printed in the summary.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
}

fn parse_share(text: &str) -> Result<f64, String> {
    let v: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is not between 0 and 1"));
    }
    Ok(v)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let v: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if !(v > 0.0 && v <= 1_000_000.0) {
        return Err(format!("{v} is not a rate between 0 (excluded) and 1000000 per second"));
    }
    Ok(v)
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The last status and the start of its body.
    Status(u16, String),
    /// No answer: connection or timeout, after the attempts.
    Error(String),
}

/// One delivery and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was sent.
    pub delivery: Delivery,
    /// The webhook's id.
    pub id: String,
    /// The final answer.
    pub answer: Answer,
}

impl Outcome {
    /// Whether the answer is the expected one: 2xx, or 401 for a stale delivery.
    pub fn as_expected(&self) -> bool {
        match self.answer {
            Answer::Status(s, _) if self.delivery.stale => s == 401,
            Answer::Status(s, _) => (200..300).contains(&s),
            Answer::Error(_) => false,
        }
    }
}

/// Counters shared by the requests, read by the progress line and the summary.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    retried: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    latencies: Vec<Duration>,
}

struct Ctx {
    source: Arc<Source>,
    url: String,
    client: Client<HttpConnector, Full<Bytes>>,
    tally: Mutex<Tally>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("source", &self.source.name).field("url", &self.url).finish()
    }
}

impl Ctx {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn now_secs() -> i64 {
    hookline_runtime::now_ms() / 1000
}

/// Runs `hookline send`.
pub fn run(args: &SendArgs) -> Result<(), Error> {
    let settings = hookline_config::ingress::Config::load(&args.config)
        .and_then(hookline_config::ingress::Config::validate)
        .map_err(|source| Error::InvalidConfig { path: args.config.clone(), source })?;
    let Some(source) = settings.sources.get(&args.source).cloned() else {
        return Err(Error::UnknownSource {
            path: args.config.clone(),
            name: args.source.clone(),
            configured: settings.sources.keys().cloned().collect(),
        });
    };
    let base = args.url.trim_end_matches('/');
    if !base.starts_with("http://") || url_host(base).is_none() {
        return Err(Error::Usage(format!("--url `{}` is not an http:// URL (https is not supported)", args.url)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime)?;
    let report = runtime.block_on(send(args, source, format!("{base}/webhooks/{}", args.source)));
    println!("{}", report.text);
    if report.ok {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}

fn url_host(base: &str) -> Option<String> {
    base.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_owned))
}

/// The summary and whether everything went as expected.
#[derive(Debug)]
struct Report {
    text: String,
    ok: bool,
}

async fn send(args: &SendArgs, source: Arc<Source>, url: String) -> Report {
    let provider = hookline_providers::find(source.verifier.scheme_name());
    let event =
        args.event.clone().unwrap_or_else(|| provider.map_or(sample::GENERIC_EVENT, |p| p.default_event()).to_owned());
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = Run::new(now_secs());
    let count = usize::try_from(args.count).unwrap_or(usize::MAX);
    let webhooks: Vec<Arc<Webhook>> = (0..args.count)
        .map(|n| {
            Arc::new(match provider {
                Some(p) => p.sample(&event, &run, n, &mut rng),
                None => sample::generic(&event, &run, n, &mut rng),
            })
        })
        .collect();
    let entities: Vec<String> = webhooks.iter().map(|w| ordering_key(&source, w)).collect();
    let mut stale_share = args.stale_timestamps;
    let mut notes = Vec::new();
    if stale_share > 0.0 && !source.verifier.signs_timestamp() {
        eprintln!(
            "hookline send: scheme {} signs no timestamp: --stale-timestamps is ignored",
            source.verifier.scheme_name()
        );
        notes.push(format!("--stale-timestamps ignored: scheme {} signs no timestamp", source.verifier.scheme_name()));
        stale_share = 0.0;
    }
    let shares = Shares { duplicate: args.dup_rate, reorder: args.reorder, stale: stale_share };
    let plan = plan::plan(&entities, shares, &mut rng);

    let ctx = Arc::new(Ctx {
        source: source.clone(),
        url: url.clone(),
        client: Client::builder(TokioExecutor::new()).build_http(),
        tally: Mutex::new(Tally::default()),
    });
    let started = Instant::now();
    let progress = tokio::spawn(progress(ctx.clone(), started));
    let outcomes = drive(&ctx, &webhooks, &plan, args).await;
    progress.abort();
    let elapsed = started.elapsed();

    let tally = std::mem::take(&mut *ctx.tally());
    let mut text = format!(
        "hookline send: source {} ({}) -> {url}, event {event}, seed {seed}\n",
        source.name,
        source.verifier.scheme_name()
    );
    text.push_str(&summary(count, &plan, &outcomes, &tally, elapsed));
    for n in notes {
        text.push_str(&format!("  note:        {n}\n"));
    }
    let failures = failures(&outcomes);
    let ok = failures.is_empty();
    if ok {
        text.push_str("  result:      ok (every webhook accepted, every stale one refused)");
    } else {
        text.push_str(&format!("  result:      FAILED ({} deliveries not answered as expected)", failures.len()));
        for f in failures.iter().take(5) {
            text.push_str(&format!("\n    {f}"));
        }
    }
    Report { text, ok }
}

/// The ordering key the ingress will give the webhook (the source's selector, over the same headers and
/// body), else the provider's entity.
fn ordering_key(source: &Source, w: &Webhook) -> String {
    let mut headers = HeaderMap::new();
    for (k, v) in &w.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(k.clone(), v);
        }
    }
    source
        .ordering_key
        .as_ref()
        .and_then(|sel| sel.extract(&headers, &mut LazyJson::new(&w.body)))
        .unwrap_or_else(|| w.entity.clone())
}

async fn drive(ctx: &Arc<Ctx>, webhooks: &[Arc<Webhook>], plan: &Plan, args: &SendArgs) -> Vec<Outcome> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let mut ticker = plan::period(args.rate).map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut outcomes = Vec::with_capacity(plan.deliveries.len());
    for &d in &plan.deliveries {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let Ok(permit) = semaphore.clone().acquire_owned().await else { break };
        while let Some(done) = tasks.try_join_next() {
            outcomes.extend(done.ok());
        }
        let ctx = ctx.clone();
        let webhook = webhooks[d.webhook].clone();
        tasks.spawn(async move {
            let answer = deliver(&ctx, &webhook, d).await;
            drop(permit);
            Outcome { delivery: d, id: webhook.id.clone(), answer }
        });
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(done.ok());
    }
    outcomes
}

/// One delivery: signs at send time (a retry is signed afresh), retries 429/503 after `Retry-After`.
async fn deliver(ctx: &Ctx, w: &Webhook, d: Delivery) -> Answer {
    let mut last = Answer::Error("not sent".into());
    for attempt in 1..=MAX_ATTEMPTS {
        let timestamp = now_secs() - if d.stale { STALE_BY_SECS } else { 0 };
        let out = Outgoing {
            method: &Method::POST,
            url: &ctx.url,
            content_type: w.content_type,
            body: &w.body,
            timestamp_secs: timestamp,
            id: &w.id,
        };
        let signed = match ctx.source.verifier.sign_request(&out) {
            Ok(h) => h,
            Err(e) => return Answer::Error(format!("cannot sign: {e}")),
        };
        let mut req = http::Request::post(&ctx.url)
            .header(http::header::CONTENT_TYPE, w.content_type)
            .header(http::header::USER_AGENT, concat!("hookline-send/", env!("CARGO_PKG_VERSION")));
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        if d.duplicate && ctx.source.verifier.scheme_name() == "slack" {
            req = req.header("x-slack-retry-num", "1").header("x-slack-retry-reason", "http_timeout");
        }
        let Some(headers) = req.headers_mut() else { return Answer::Error("invalid request".into()) };
        headers.extend(signed);
        let req = match req.body(Full::new(w.body.clone())) {
            Ok(r) => r,
            Err(e) => return Answer::Error(format!("invalid request: {e}")),
        };
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, ctx.client.request(req)).await;
        let wait = match result {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let retry_after = retry_after(resp.headers());
                let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let latency = started.elapsed();
                {
                    let mut t = ctx.tally();
                    t.requests += 1;
                    *t.statuses.entry(status).or_default() += 1;
                    t.latencies.push(latency);
                }
                last = Answer::Status(status, excerpt(&body));
                if !matches!(status, 429 | 503) {
                    return last;
                }
                retry_after.unwrap_or(Duration::from_secs(1))
            }
            Ok(Err(e)) => {
                ctx.tally().errors += 1;
                last = Answer::Error(error_chain(&e));
                Duration::from_millis(200 << attempt)
            }
            Err(_) => {
                ctx.tally().errors += 1;
                last = Answer::Error(format!("no answer within {REQUEST_TIMEOUT:?}"));
                Duration::from_millis(200 << attempt)
            }
        };
        if attempt < MAX_ATTEMPTS {
            ctx.tally().retried += 1;
            tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
        }
    }
    last
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// `Retry-After` in seconds (the ingress's form).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(BODY_EXCERPT).collect();
    if text.chars().count() > BODY_EXCERPT {
        out.push('…');
    }
    out.replace('\n', " ")
}

async fn progress(ctx: Arc<Ctx>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut before = 0;
    loop {
        tick.tick().await;
        let (requests, answers) = {
            let t = ctx.tally();
            (t.requests, statuses_line(&t.statuses, t.errors))
        };
        eprintln!(
            "[{:>4}s] {requests} requests ({}/s); answers: {answers}",
            started.elapsed().as_secs(),
            requests - before
        );
        before = requests;
    }
}

fn statuses_line(statuses: &BTreeMap<u16, u64>, errors: u64) -> String {
    let mut parts: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} x{n}")).collect();
    if errors > 0 {
        parts.push(format!("no answer x{errors}"));
    }
    if parts.is_empty() {
        "none yet".into()
    } else {
        parts.join(", ")
    }
}

/// The `q` quantile (0 to 1) of `values`, by nearest rank.
pub fn percentile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (q * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank.min(values.len()) - 1).copied()
}

fn summary(count: usize, plan: &Plan, outcomes: &[Outcome], tally: &Tally, elapsed: Duration) -> String {
    let mut latencies = tally.latencies.clone();
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0));
    let stale_refused = outcomes.iter().filter(|o| o.delivery.stale && o.as_expected()).count();
    let accepted = outcomes.iter().filter(|o| !o.delivery.stale && o.as_expected()).count();
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { tally.requests as f64 / secs } else { 0.0 };
    format!(
        "  webhooks:    {count} ({} duplicates sent, {} pairs reordered, {} stale)\n\
         \x20 requests:    {} in {secs:.2} s ({rate:.0}/s), {} retried after 429/503 or no answer\n\
         \x20 answers:     {}\n\
         \x20 accepted:    {accepted} of {} deliveries expected 2xx\n\
         \x20 stale:       {stale_refused} of {} refused as expected (401)\n\
         \x20 latency:     p50 {}, p99 {}\n",
        plan.duplicates,
        plan.swapped,
        plan.stale,
        tally.requests,
        tally.retried,
        statuses_line(&tally.statuses, tally.errors),
        outcomes.iter().filter(|o| !o.delivery.stale).count(),
        plan.stale,
        ms(percentile(&mut latencies, 0.5)),
        ms(percentile(&mut latencies, 0.99)),
    )
}

/// The deliveries not answered as expected, described (webhook, id, what was expected, the answer).
pub fn failures(outcomes: &[Outcome]) -> Vec<String> {
    let mut sorted: Vec<&Outcome> = outcomes.iter().filter(|o| !o.as_expected()).collect();
    sorted.sort_by_key(|o| (o.delivery.webhook, o.delivery.duplicate));
    sorted
        .into_iter()
        .map(|o| {
            let what = match (o.delivery.stale, o.delivery.duplicate) {
                (true, _) => "stale, expected 401",
                (false, true) => "redelivery, expected 2xx",
                (false, false) => "expected 2xx",
            };
            let answer = match &o.answer {
                Answer::Status(s, body) => format!("{s} {body}"),
                Answer::Error(e) => format!("no answer: {e}"),
            };
            format!("webhook {} ({}; {what}): {answer}", o.delivery.webhook, o.id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<SendArgs, clap::Error> {
        let mut argv = vec!["hookline", "send", "--config", "i.toml", "--source", "stripe"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Command::Send(a) => a,
            _ => panic!("not send"),
        })
    }

    #[test]
    fn arguments_parse_with_documented_defaults_and_bounds() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.count, a.concurrency, a.rate, a.seed), (1, 8, None, None));
        assert_eq!(a.url, "http://127.0.0.1:8080");
        assert_eq!((a.dup_rate, a.reorder, a.stale_timestamps), (0.0, 0.0, 0.0));
        let a =
            parse(&["--count", "40", "--rate", "12.5", "--dup-rate", "0.5", "--reorder", "1", "--seed", "7"]).unwrap();
        assert_eq!((a.count, a.rate, a.dup_rate, a.reorder, a.seed), (40, Some(12.5), 0.5, 1.0, Some(7)));
        for bad in [
            &["--dup-rate", "1.5"][..],
            &["--reorder", "-0.1"],
            &["--stale-timestamps", "x"],
            &["--rate", "0"],
            &["--count", "0"],
            &["--concurrency", "0"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        assert!(Cli::try_parse_from(["hookline", "send", "--config", "i.toml"]).is_err(), "--source is required");
    }

    fn outcome(stale: bool, answer: Answer) -> Outcome {
        Outcome { delivery: Delivery { webhook: 0, duplicate: false, stale }, id: "evt_1".into(), answer }
    }

    #[test]
    fn the_exit_code_needs_every_webhook_accepted_and_every_stale_one_refused() {
        let ok = |s| Answer::Status(s, String::new());
        assert!(failures(&[outcome(false, ok(202)), outcome(true, ok(401)), outcome(false, ok(200))]).is_empty());
        assert_eq!(failures(&[outcome(false, ok(401))]).len(), 1);
        assert_eq!(failures(&[outcome(true, ok(202))]).len(), 1, "a stale webhook accepted is a failure");
        assert_eq!(failures(&[outcome(false, ok(503))]).len(), 1, "503 after the last attempt");
        let f = failures(&[outcome(false, Answer::Status(401, r#"{"error":"signature does not match"}"#.into()))]);
        assert_eq!(f, [r#"webhook 0 (evt_1; expected 2xx): 401 {"error":"signature does not match"}"#]);
        assert_eq!(failures(&[outcome(false, Answer::Error("refused".into()))]).len(), 1);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&mut v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&mut [Duration::from_millis(3)], 0.99), Some(Duration::from_millis(3)));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }
}
