//! The highly available topology of `deploy/`, on one machine: HAProxy in front of two ingresses, a
//! three-node Apache Kafka cluster, three processors, provider-signed load through the balancer. During the
//! load one ingress is killed -9, then one processor, then one broker; each comes back after a while, as an
//! orchestrator would bring it back. Besides the invariant (every 202'd webhook is exactly one event), the
//! run measures what each fault cost, from the time of the fault until the next one:
//!
//! - what the senders saw: their answers, how many were not 2xx (errors included), and until when;
//! - what the data teams saw, through a read_committed consumer reading the events as they come: for the
//!   webhooks accepted in that time, the delay from the 202 to their event becoming visible; and, of the
//!   webhooks held up in that time (not visible 3 s after their 202), when the last one became visible
//!   ("processing recovered after").
//!
//! `make chaos` runs it at full size; `make test` a short version (`tests/e2e/chaos.rs`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chaos::{self, Cluster, Row, Scale};
use crate::checker::{self, TopicNames};
use crate::driver::Driven;
use crate::{now_ms, Kafka, KafkaOptions};

/// A webhook whose event is not visible this long after its 202 is held up: above the p99 without a fault
/// (under 1 s here once the brokers are warm; a single late event then does not count as an outage).
const HELD_UP_MS: i64 = 3_000;

/// Partitions of the raw topic: two per processor.
const PARTITIONS: i32 = 6;

/// A stretch of the run: a fault (or none, for the first) and the time until the next one.
#[derive(Debug, Clone)]
struct Phase {
    what: String,
    from_ms: i64,
    /// Every webhook held up in this phase must be visible by this long after the fault.
    recovered_in: Option<Duration>,
}

/// What a phase looked like.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    answers: usize,
    not_2xx: usize,
    /// The last non-2xx answer, in ms after the phase began.
    errors_until_ms: Option<i64>,
    accepted: usize,
    /// 202 → visible, ms: p50, p99, max, of the webhooks accepted in this phase, except those held up in the
    /// next one, plus those accepted in the previous one and held up in this one.
    delay_ms: (i64, i64, i64),
    /// When the last webhook held up in this phase (see [`HELD_UP_MS`]) became visible, in ms after it began.
    recovered_ms: Option<i64>,
}

/// When each event and DLQ record became visible to a read_committed consumer (Unix ms, by
/// `source/dedup key`), as a data team's consumer sees them: after the transaction that wrote them committed,
/// and after every transaction open before it on the same partition ended. Its thread stops when it is
/// dropped, if the scenario ends early.
struct Visibility {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<HashMap<String, i64>>>>,
}

impl Visibility {
    fn watch(brokers: &str, topics: &TopicNames) -> anyhow::Result<Visibility> {
        let consumer = checker::read_committed_from_start(brokers, "ha-watcher", &[&topics.events, &topics.dlq])?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, topics) = (stop.clone(), topics.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = HashMap::new();
            while !flag.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
                let out = checker::webhook_of(&m, &topics)?;
                seen.entry(format!("{}/{}", out.source, out.dedup_key)).or_insert_with(now_ms);
            }
            Ok(seen)
        });
        Ok(Visibility { stop, thread: Some(thread) })
    }

    /// What it saw until now.
    fn stop(mut self) -> anyhow::Result<HashMap<String, i64>> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().ok_or_else(|| anyhow::anyhow!("the visibility watcher was stopped"))?;
        thread.join().map_err(|_| anyhow::anyhow!("the visibility watcher panicked"))?
    }
}

impl Drop for Visibility {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Cuts the run into `phases` and measures each from the driver's answers and when the events became
/// `visible`.
fn measure(phases: &[Phase], driven: &Driven, visible: &HashMap<String, i64>) -> Vec<Seen> {
    let mut first_2xx: HashMap<&str, i64> = HashMap::new();
    for r in driven.responses.iter().filter(|r| r.status.starts_with('2')) {
        let at = driven.started_ms + i64::try_from(r.at_ms).unwrap_or(i64::MAX);
        let first = first_2xx.entry(r.webhook.as_str()).or_insert(at);
        *first = (*first).min(at);
    }
    let phase_of = |at: i64| phases.iter().rposition(|p| p.from_ms <= at);
    let mut seen = vec![Seen::default(); phases.len()];
    let mut delays = vec![Vec::new(); phases.len()];
    for r in &driven.responses {
        let at = driven.started_ms + i64::try_from(r.at_ms).unwrap_or(i64::MAX);
        let Some(i) = phase_of(at) else { continue };
        seen[i].answers += 1;
        if !r.status.starts_with('2') {
            seen[i].not_2xx += 1;
            let after = at - phases[i].from_ms;
            seen[i].errors_until_ms = Some(seen[i].errors_until_ms.unwrap_or(0).max(after));
        }
    }
    for (webhook, &accepted_at) in &first_2xx {
        let Some(i) = phase_of(accepted_at) else { continue };
        seen[i].accepted += 1;
        // One never visible is lost, which the invariant reports.
        let Some(&at) = visible.get(*webhook) else { continue };
        let delay = at - accepted_at;
        // A webhook is held up in the phase it was held up in (one accepted just before a fault is held up by
        // that fault), and its delay counts there.
        let Some(h) = phase_of(accepted_at + delay.min(HELD_UP_MS)) else { continue };
        delays[h].push(delay);
        if delay > HELD_UP_MS {
            let after = at - phases[h].from_ms;
            seen[h].recovered_ms = Some(seen[h].recovered_ms.unwrap_or(0).max(after));
        }
    }
    for (s, d) in seen.iter_mut().zip(&mut delays) {
        d.sort_unstable();
        // Nearest rank.
        let q = |f: f64| d.get(((d.len() as f64 * f).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
        s.delay_ms = (q(0.5), q(0.99), d.last().copied().unwrap_or_default());
    }
    seen
}

fn secs(ms: Option<i64>) -> String {
    ms.map_or_else(|| "none".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

/// The figures as a markdown table, and what broke a bound.
fn report(phases: &[Phase], seen: &[Seen]) -> (String, Vec<String>) {
    let mut table = String::from(
        "| phase | answers | not 2xx | share | last non-2xx after | accepted | 202 → visible p50 / p99 / max | processing recovered after |\n\
         |---|---:|---:|---:|---:|---:|---|---:|\n",
    );
    let mut failures = Vec::new();
    for (p, s) in phases.iter().zip(seen) {
        let share = if s.answers == 0 { 0.0 } else { 100.0 * s.not_2xx as f64 / s.answers as f64 };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {share:.1} % | {} | {} | {} / {} / {} ms | {} |",
            p.what,
            s.answers,
            s.not_2xx,
            secs(s.errors_until_ms),
            s.accepted,
            s.delay_ms.0,
            s.delay_ms.1,
            s.delay_ms.2,
            secs(s.recovered_ms),
        );
        let bound = p.recovered_in.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if let (Some(recovered), Some(bound)) = (s.recovered_ms, bound) {
            if recovered > bound {
                failures.push(format!(
                    "{}: processing recovered only {} after it (bound {:.0} s)",
                    p.what,
                    secs(Some(recovered)),
                    bound as f64 / 1000.0
                ));
            }
        }
        if s.accepted == 0 {
            failures.push(format!("{}: no webhook accepted in this phase", p.what));
        }
    }
    (table, failures)
}

/// The running ingresses' answers other than 202 by outcome (`overloaded`: shed at once because Kafka's
/// acknowledgements were slow or capacity was spent; `unavailable`: not stored), and why webhooks were not
/// stored, by kind.
async fn refusals(c: &Cluster) -> String {
    let mut counts = std::collections::BTreeMap::<String, f64>::new();
    for i in 0..2 {
        let Some(admin) = c.ingress_admin(i) else { continue };
        let text = crate::get(&format!("http://{admin}/metrics")).await.map(|r| r.text()).unwrap_or_default();
        for (family, label) in
            [("hookline_ingress_requests_total{", "outcome"), ("hookline_ingress_store_failures_total{", "kind")]
        {
            for line in text.lines().filter(|l| l.starts_with(family)) {
                let value = line.split(&format!("{label}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
                let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                if value != "accepted" && n > 0.0 {
                    *counts.entry(format!("{label} {value}")).or_default() += n;
                }
            }
        }
    }
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts.iter().map(|(o, n)| format!("{o}: {n}")).collect::<Vec<_>>().join(", ")
}

/// Sleeps until `d` after `since`.
async fn until(since: Instant, d: Duration) {
    tokio::time::sleep(d.saturating_sub(since.elapsed())).await;
}

/// The scenario (see the module's documentation).
pub async fn run(scale: Scale) -> anyhow::Result<Row> {
    let kafka = tokio::task::block_in_place(|| Kafka::with(KafkaOptions { nodes: 3, ..KafkaOptions::default() }));
    let mut c = Cluster::start_balanced(kafka, PARTITIONS, 2, 3).await;
    let rate = scale.pick(50.0, 100.0);
    let calm = Duration::from_secs(scale.pick(15, 20));
    let (ingress_down, ingress_phase) =
        (Duration::from_secs(scale.pick(5, 15)), Duration::from_secs(scale.pick(15, 30)));
    let (processor_down, processor_phase) = (Duration::from_secs(3), Duration::from_secs(scale.pick(20, 30)));
    // Longer than the leader elections and a coordinator move take, so recovery happens without the broker.
    let (broker_down, broker_phase) =
        (Duration::from_secs(scale.pick(35, 40)), Duration::from_secs(scale.pick(45, 60)));
    let tail = Duration::from_secs(5);
    let seconds = (calm + ingress_phase + processor_phase + broker_phase + tail).as_secs_f64();
    let l = chaos::load("ha", (seconds * rate) as usize, rate);
    chaos::wait_settled(&c, PARTITIONS as usize, Duration::from_secs(60)).await;
    let visibility = Visibility::watch(c.kafka.brokers(), &c.topic_names())?;
    let driver = c.load_in_background(l);
    // The reference for the phases after it; the brokers' first transactions are in it too.
    let mut phases = vec![Phase { what: "no fault".into(), from_ms: now_ms(), recovered_in: None }];
    let mut failures = Vec::new();
    tokio::time::sleep(calm).await;

    // An ingress: the balancer takes it out after two failed health checks (1 s) and retries on the other
    // ingress a request whose connection failed or closed unanswered, so no sender sees a failed request.
    let i = fastrand::usize(..2);
    let killed = Instant::now();
    c.kill_ingress(i);
    phases.push(Phase { what: format!("kill -9 of ingress {}", i + 1), from_ms: now_ms(), recovered_in: None });
    let out = c.balancer().expect("balanced").wait_backend(i, "DOWN", Duration::from_secs(10)).await;
    match out {
        Some(d) => c.note(&format!("kill -9 of ingress {}; HAProxy took it out after {:.1} s", i + 1, d.as_secs_f64())),
        None => failures.push(format!("HAProxy did not take the killed ingress {} out within 10 s", i + 1)),
    }
    until(killed, ingress_down).await;
    let restarted = Instant::now();
    c.start_ingress(i).await;
    let ready = restarted.elapsed();
    match c.balancer().expect("balanced").wait_backend(i, "UP", Duration::from_secs(10)).await {
        Some(d) => c.note(&format!(
            "ingress {} restarted, ready after {:.1} s, back in HAProxy {:.1} s later",
            i + 1,
            ready.as_secs_f64(),
            d.as_secs_f64()
        )),
        None => failures.push(format!("HAProxy did not put the restarted ingress {} back within 10 s", i + 1)),
    }
    let retried = c.balancer().expect("balanced").retried().await;
    c.note(&format!("HAProxy sent {retried} requests again after ingress {} failed them", i + 1));
    if retried == 0 {
        failures.push("HAProxy sent no request again: the kill missed the load".to_owned());
    }
    until(killed, ingress_phase).await;

    // A processor, restarted on its data folder 3 s later: its partitions wait for the group to notice
    // (the session timeout, 6 s) and for their next owner to start on them.
    let p = fastrand::usize(..3);
    chaos::wait_working(&mut c, p, Duration::from_secs(30)).await;
    let killed = Instant::now();
    c.kill_processor(p);
    phases.push(Phase {
        what: format!("kill -9 of processor {}", p + 1),
        from_ms: now_ms(),
        recovered_in: Some(Duration::from_secs(30)),
    });
    c.note(&format!("kill -9 of processor {}", p + 1));
    until(killed, processor_down).await;
    let restarted = Instant::now();
    c.start_processor(p).await;
    c.note(&format!("processor {} restarted, in the group after {:.1} s", p + 1, restarted.elapsed().as_secs_f64()));
    until(killed, processor_phase).await;

    // A broker (replication factor 3, min.insync.replicas 2): the controller fences it after its session
    // (9 s) and moves its leaderships; if it was a group or transaction coordinator, that moves too.
    let node = fastrand::usize(..3);
    let killed = Instant::now();
    c.kafka.nodes().kill_node(node);
    phases.push(Phase {
        what: format!("kill -9 of broker {}", node + 1),
        from_ms: now_ms(),
        recovered_in: Some(broker_down),
    });
    c.note(&format!("kill -9 of broker {}", node + 1));
    until(killed, broker_down).await;
    tokio::task::block_in_place(|| c.kafka.nodes().restart_node(node))?;
    c.note(&format!("broker {} restarted", node + 1));

    let driven = driver.await?;
    let unanswered = driven.statuses.get("error").copied().unwrap_or(0);
    if unanswered > 0 {
        failures.push(format!("{unanswered} requests got no HTTP answer through the balancer"));
    }
    let refused = refusals(&c).await;
    c.note(&format!("what the running ingresses refused: {refused}"));
    c.finish_with("ha-topology", driven, failures, |driven, failures| match visibility.stop() {
        Ok(visible) => {
            let (table, broken) = report(&phases, &measure(&phases, driven, &visible));
            failures.extend(broken);
            table
        }
        Err(e) => {
            failures.push(format!("{e:#}"));
            String::new()
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Response;

    fn answer(webhook: &str, status: &str, at_ms: u64) -> Response {
        Response { webhook: webhook.into(), status: status.into(), at_ms }
    }

    #[test]
    fn each_phase_counts_its_answers_the_delays_of_the_webhooks_it_accepted_and_the_ones_it_held_up() {
        let phases = [
            Phase { what: "calm".into(), from_ms: 10_000, recovered_in: None },
            Phase { what: "fault".into(), from_ms: 20_000, recovered_in: Some(Duration::from_secs(5)) },
        ];
        let driven = Driven {
            started_ms: 10_000,
            responses: vec![
                answer("stripe/a", "202", 1_000),
                // Accepted just before the fault, held up by it.
                answer("stripe/f", "202", 9_500),
                answer("stripe/b", "error", 10_500),
                answer("stripe/b", "503", 12_000),
                answer("stripe/b", "202", 13_000),
                answer("stripe/c", "202", 14_000),
                answer("stripe/c", "202", 14_500),
                answer("stripe/d", "202", 15_000),
            ],
            ..Driven::default()
        };
        let visible = [("stripe/a", 11_100), ("stripe/b", 23_100), ("stripe/c", 30_000), ("stripe/f", 32_000)]
            .into_iter()
            .map(|(id, at)| (id.to_owned(), at))
            .collect();
        let seen = measure(&phases, &driven, &visible);
        assert_eq!(seen[0], Seen { answers: 2, accepted: 2, delay_ms: (100, 100, 100), ..Seen::default() });
        assert_eq!(
            seen[1],
            Seen {
                answers: 6,
                not_2xx: 2,
                errors_until_ms: Some(2_000),
                accepted: 3,
                delay_ms: (6_000, 12_500, 12_500),
                recovered_ms: Some(12_000),
            }
        );
        let (table, failures) = report(&phases, &seen);
        assert!(table.contains("| fault | 6 | 2 | 33.3 % | 2.0 s | 3 | 6000 / 12500 / 12500 ms | 12.0 s |"), "{table}");
        assert_eq!(failures, ["fault: processing recovered only 12.0 s after it (bound 5 s)"]);
    }
}
