//! The invariant checker: what a load run sent, against what is on the raw, events and DLQ topics.
//!
//! hookline promises that every webhook answered 2xx ends as exactly one normalized event or exactly one DLQ
//! record, that a re-delivery never yields a second output, and that each ordering key's events come out in
//! the order they were accepted. [`check`] turns that promise into counts: **lost** (accepted, no output),
//! **duplicated** (more than one output for one dedup key), **phantom** (an output no accepted request
//! explains), **out of order** (an ordering key whose events are not in acceptance order, or are spread over
//! partitions), plus **misrouted** (an event for a webhook that had to go to the DLQ, or the reverse). Any
//! non-zero count is a failure, and [`Report::violations`] names the offending keys.
//!
//! [`observe`] reads the three topics (read_committed, from the beginning) until every accepted webhook has
//! an output and nothing new arrived for a while, so late duplicates are seen too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Where a webhook should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One normalized event.
    Event,
    /// One DLQ record (a poison webhook).
    Dlq,
}

/// One distinct webhook of a load run (all its deliveries together).
#[derive(Debug, Clone)]
pub struct Sent {
    /// Source name.
    pub source: String,
    /// The dedup key the ingress derives for it.
    pub dedup_key: String,
    /// The ordering key (the entity it is about), as the driver names it.
    pub ordering_key: String,
    /// Its position among its ordering key's webhooks, in the order they were accepted.
    pub seq: u64,
    /// Where it should end.
    pub expect: Expect,
    /// Whether any delivery of it was answered 2xx.
    pub accepted: bool,
}

/// One record on a topic, by the webhook it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Source name.
    pub source: String,
    /// Dedup key.
    pub dedup_key: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// What the topics hold.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Raw records (re-deliveries included).
    pub raw: Vec<Output>,
    /// Normalized events.
    pub events: Vec<Output>,
    /// DLQ records.
    pub dlq: Vec<Output>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Distinct webhooks sent.
    pub sent: usize,
    /// Distinct webhooks answered 2xx at least once.
    pub accepted: usize,
    /// Raw records.
    pub raw: usize,
    /// Events.
    pub events: usize,
    /// DLQ records.
    pub dlq: usize,
    /// Accepted webhooks without any output (with "not on the raw topic" when the ingress lost it).
    pub lost: Vec<String>,
    /// Webhooks with more than one output.
    pub duplicated: Vec<String>,
    /// Outputs no accepted webhook explains.
    pub phantom: Vec<String>,
    /// Ordering keys whose events are out of acceptance order or in several partitions.
    pub out_of_order: Vec<String>,
    /// Webhooks that ended on the wrong topic (an event for a poison webhook, a DLQ record for a good one).
    pub misrouted: Vec<String>,
}

impl Report {
    /// True when the invariant held.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.phantom.is_empty()
            && self.out_of_order.is_empty()
            && self.misrouted.is_empty()
    }

    /// The offending keys of each violated property (at most `limit` each), empty when [`Report::ok`].
    pub fn violations(&self, limit: usize) -> String {
        let mut out = String::new();
        for (name, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("phantom", &self.phantom),
            ("out of order", &self.out_of_order),
            ("misrouted", &self.misrouted),
        ] {
            if !list.is_empty() {
                let shown: Vec<&str> = list.iter().take(limit).map(String::as_str).collect();
                let more = if list.len() > limit { format!(" (+{} more)", list.len() - limit) } else { String::new() };
                let _ = writeln!(out, "{name} {}: {}{more}", list.len(), shown.join(", "));
            }
        }
        out
    }
}

fn id(source: &str, dedup_key: &str) -> String {
    format!("{source}/{dedup_key}")
}

/// Checks the invariant of `sent` against `observed`.
pub fn check(sent: &[Sent], observed: &Observed) -> Report {
    let mut report = Report {
        sent: sent.len(),
        accepted: sent.iter().filter(|s| s.accepted).count(),
        raw: observed.raw.len(),
        events: observed.events.len(),
        dlq: observed.dlq.len(),
        ..Report::default()
    };
    let by_id: HashMap<String, &Sent> = sent.iter().map(|s| (id(&s.source, &s.dedup_key), s)).collect();
    let on_raw: BTreeSet<String> = observed.raw.iter().map(|o| id(&o.source, &o.dedup_key)).collect();
    let mut outputs: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut places: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (topic, list) in [("events", &observed.events), ("dlq", &observed.dlq)] {
        for o in list {
            let key = id(&o.source, &o.dedup_key);
            let counts = outputs.entry(key.clone()).or_default();
            if topic == "events" {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            places.entry(key).or_default().push(format!("{topic} {}@{}", o.partition, o.offset));
        }
    }
    for s in sent.iter().filter(|s| s.accepted) {
        let key = id(&s.source, &s.dedup_key);
        match outputs.get(&key) {
            None if on_raw.contains(&key) => report.lost.push(key),
            None => report.lost.push(format!("{key} (not on the raw topic)")),
            Some(&(events, dlq)) => {
                let wrong = match s.expect {
                    Expect::Event => dlq > 0,
                    Expect::Dlq => events > 0,
                };
                if wrong {
                    report.misrouted.push(format!("{key} ({events} events, {dlq} DLQ, expected {:?})", s.expect));
                }
            }
        }
    }
    for (key, &(events, dlq)) in &outputs {
        if events + dlq > 1 {
            let at = places.get(key).map(|p| p.join(", ")).unwrap_or_default();
            report.duplicated.push(format!("{key} ({events} events, {dlq} DLQ: {at})"));
        }
        if !by_id.get(key).is_some_and(|s| s.accepted) {
            report.phantom.push(key.clone());
        }
    }
    // Each ordering key's events, in partition order: one partition, and acceptance order.
    let mut by_key: BTreeMap<&str, Vec<(i32, i64, u64)>> = BTreeMap::new();
    for o in &observed.events {
        if let Some(s) = by_id.get(&id(&o.source, &o.dedup_key)) {
            by_key.entry(&s.ordering_key).or_default().push((o.partition, o.offset, s.seq));
        }
    }
    for (key, mut events) in by_key {
        events.sort_unstable();
        let partitions: BTreeSet<i32> = events.iter().map(|e| e.0).collect();
        if partitions.len() > 1 {
            report.out_of_order.push(format!("{key} (in partitions {partitions:?})"));
            continue;
        }
        if let Some(w) = events.windows(2).find(|w| w[1].2 < w[0].2) {
            report.out_of_order.push(format!("{key} (seq {} after seq {}, offset {})", w[1].2, w[0].2, w[1].1));
        }
    }
    report
}

/// The topics [`observe`] reads.
#[derive(Debug, Clone)]
pub struct TopicNames {
    /// Raw topic.
    pub raw: String,
    /// Events topic.
    pub events: String,
    /// DLQ topic.
    pub dlq: String,
}

/// Reads the raw, events and DLQ topics from the beginning (read_committed) until every accepted webhook of
/// `sent` has an output and then `quiet` passes with no new output, or `timeout` passes.
pub async fn observe(
    brokers: &str,
    topics: &TopicNames,
    sent: &[Sent],
    quiet: Duration,
    timeout: Duration,
) -> anyhow::Result<Observed> {
    let brokers = brokers.to_owned();
    let topics = topics.clone();
    let wanted: BTreeSet<String> = sent.iter().filter(|s| s.accepted).map(|s| id(&s.source, &s.dedup_key)).collect();
    tokio::task::spawn_blocking(move || observe_blocking(&brokers, &topics, &wanted, quiet, timeout)).await?
}

fn observe_blocking(
    brokers: &str,
    topics: &TopicNames,
    wanted: &BTreeSet<String>,
    quiet: Duration,
    timeout: Duration,
) -> anyhow::Result<Observed> {
    let consumer = read_committed_from_start(brokers, "checker", &[&topics.raw, &topics.events, &topics.dlq])?;
    let mut observed = Observed::default();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    let mut last_output = Instant::now();
    while Instant::now() < deadline {
        if answered.len() >= wanted.len() && last_output.elapsed() >= quiet {
            break;
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = match result {
            Ok(m) => m,
            Err(e) => {
                eprintln!("checker: {e}");
                continue;
            }
        };
        let out = webhook_of(&m, topics)?;
        if m.topic() == topics.raw {
            observed.raw.push(out);
            continue;
        }
        let key = id(&out.source, &out.dedup_key);
        if wanted.contains(&key) {
            answered.insert(key);
        }
        last_output = Instant::now();
        if m.topic() == topics.events {
            observed.events.push(out);
        } else {
            observed.dlq.push(out);
        }
    }
    Ok(observed)
}

/// A consumer (in a group of its own, named after `name`) reading every partition of `topics` from the
/// beginning, read_committed, as the data teams' consumers do.
pub(crate) fn read_committed_from_start(brokers: &str, name: &str, topics: &[&str]) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", crate::unique(name))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "20")
        .set("log_level", "3")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// [`output_of`], or an error naming the record when it names no webhook.
pub(crate) fn webhook_of(m: &rdkafka::message::BorrowedMessage<'_>, topics: &TopicNames) -> anyhow::Result<Output> {
    output_of(m, topics)
        .ok_or_else(|| anyhow::anyhow!("{} record at {}:{} names no webhook", m.topic(), m.partition(), m.offset()))
}

/// The webhook a record belongs to: the raw `hookline-meta` header, the event's `hookline*` attributes, the
/// DLQ's `hookline-dlq` header.
fn output_of(m: &rdkafka::message::BorrowedMessage<'_>, topics: &TopicNames) -> Option<Output> {
    let header = |name: &str| -> Option<serde_json::Value> {
        let headers = m.headers()?;
        let h = headers.iter().find(|h| h.key == name)?;
        serde_json::from_slice(h.value?).ok()
    };
    let fields = if m.topic() == topics.events {
        serde_json::from_slice::<serde_json::Value>(m.payload()?).ok()?
    } else if m.topic() == topics.raw {
        header(hookline_schemas::header::META)?
    } else {
        header(hookline_schemas::header::DLQ)?
    };
    let (source, dedup) = if m.topic() == topics.events {
        (fields["hooklinesource"].as_str()?, fields["hooklinededupkey"].as_str()?)
    } else {
        (fields["source"].as_str()?, fields["dedup_key"].as_str()?)
    };
    Some(Output {
        source: source.to_owned(),
        dedup_key: dedup.to_owned(),
        partition: m.partition(),
        offset: m.offset(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u64, key: &str, expect: Expect) -> Sent {
        Sent {
            source: "stripe".into(),
            dedup_key: format!("evt_{key}_{n}"),
            ordering_key: key.into(),
            seq: n,
            expect,
            accepted: true,
        }
    }

    fn out(s: &Sent, partition: i32, offset: i64) -> Output {
        Output { source: s.source.clone(), dedup_key: s.dedup_key.clone(), partition, offset }
    }

    /// Three webhooks of key `a` and one of `b`, each with its raw record and its one event.
    fn clean() -> (Vec<Sent>, Observed) {
        let sent = vec![sent(0, "a", Expect::Event), sent(1, "a", Expect::Event), sent(2, "a", Expect::Event)];
        let mut sent = sent;
        sent.push(self::sent(0, "b", Expect::Dlq));
        let raw = sent.iter().enumerate().map(|(i, s)| out(s, 0, i as i64)).collect();
        let events = sent[..3].iter().enumerate().map(|(i, s)| out(s, 0, i as i64)).collect();
        let dlq = vec![out(&sent[3], 1, 0)];
        (sent, Observed { raw, events, dlq })
    }

    #[test]
    fn a_clean_run_passes() {
        let (sent, observed) = clean();
        let r = check(&sent, &observed);
        assert!(r.ok(), "{}", r.violations(10));
        assert_eq!((r.sent, r.accepted, r.raw, r.events, r.dlq), (4, 4, 4, 3, 1));
        assert_eq!(r.violations(10), "");
    }

    #[test]
    fn a_lost_record_is_reported_with_where_it_was_lost() {
        let (sent, mut observed) = clean();
        observed.events.remove(1);
        let r = check(&sent, &observed);
        assert_eq!(r.lost, vec!["stripe/evt_a_1".to_owned()]);
        observed.raw.remove(1);
        let r = check(&sent, &observed);
        assert_eq!(r.lost, vec!["stripe/evt_a_1 (not on the raw topic)".to_owned()]);
        assert!(!r.ok() && r.violations(10).starts_with("lost 1: stripe/evt_a_1"), "{}", r.violations(10));
    }

    #[test]
    fn a_duplicated_record_is_reported_on_either_topic() {
        let (sent, observed) = clean();
        let mut twice = observed.clone();
        twice.events.push(out(&sent[0], 0, 3));
        let r = check(&sent, &twice);
        assert_eq!(r.duplicated, vec!["stripe/evt_a_0 (2 events, 0 DLQ: events 0@0, events 0@3)".to_owned()]);
        assert!(r.out_of_order.len() == 1 && !r.ok(), "a replay after seq 2 also breaks the order: {r:?}");
        let mut both = observed;
        both.dlq.push(out(&sent[2], 0, 9));
        let r = check(&sent, &both);
        assert_eq!(r.duplicated, vec!["stripe/evt_a_2 (1 events, 1 DLQ: events 0@2, dlq 0@9)".to_owned()]);
        assert_eq!(r.misrouted.len(), 1, "{r:?}");
    }

    #[test]
    fn a_phantom_output_is_reported_whether_unknown_or_never_accepted() {
        let (mut sent, mut observed) = clean();
        observed.events.push(Output {
            source: "stripe".into(),
            dedup_key: "evt_ghost".into(),
            partition: 0,
            offset: 7,
        });
        sent[3].accepted = false;
        let r = check(&sent, &observed);
        assert_eq!(r.phantom, vec!["stripe/evt_b_0".to_owned(), "stripe/evt_ghost".to_owned()]);
        assert!(r.lost.is_empty(), "a webhook never accepted is not lost: {r:?}");
        assert_eq!(r.accepted, 3);
    }

    #[test]
    fn reordered_events_are_reported_by_key() {
        let (sent, mut observed) = clean();
        observed.events.swap(1, 2);
        observed.events[1].offset = 1;
        observed.events[2].offset = 2;
        let r = check(&sent, &observed);
        assert_eq!(r.out_of_order, vec!["a (seq 1 after seq 2, offset 2)".to_owned()]);
        assert!(r.lost.is_empty() && r.duplicated.is_empty() && r.phantom.is_empty());
        // A key's events spread over two partitions have no order at all.
        let (sent, mut observed) = clean();
        observed.events[2].partition = 1;
        let r = check(&sent, &observed);
        assert_eq!(r.out_of_order, vec!["a (in partitions {0, 1})".to_owned()]);
    }

    #[test]
    fn a_poison_webhook_published_as_an_event_is_misrouted() {
        let (sent, mut observed) = clean();
        let dlq = observed.dlq.pop().unwrap();
        observed.events.push(dlq);
        let r = check(&sent, &observed);
        assert_eq!(r.misrouted, vec!["stripe/evt_b_0 (1 events, 0 DLQ, expected Dlq)".to_owned()]);
        assert!(!r.ok());
    }
}
