//! Fault scenarios: hookline's real binaries and Apache Kafka, a load driver sending signed webhooks, and
//! faults injected while it runs (kill -9, broker kills in a three-node cluster, network cuts, group changes,
//! duplicate storms, poison, lost or full state). Each scenario ends with the invariant checker over the topics and returns a [`Row`] of the
//! `make chaos` table; `tests/e2e/chaos.rs` runs short versions in `make test`.
//!
//! Every scenario is bounded: a fixed number of webhooks at a fixed rate, a fixed number of faults, and a
//! deadline on every wait. Processes are children killed on drop (and with the test process).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::balancer::{Backend, Balancer};
use crate::checker::{self, Report, Sent, TopicNames};
use crate::driver::{self, Driven, Load};
use crate::{create_raw_topic, free_port, get, metric_sum, Component, Kafka, KafkaOptions, Topics};

/// How big a run is: `Short` for `make test`, `Full` for `make chaos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Seconds of load, a few faults.
    Short,
    /// A minute or more of load, the issue's fault counts.
    Full,
}

impl Scale {
    pub(crate) fn pick<T>(self, short: T, full: T) -> T {
        match self {
            Scale::Short => short,
            Scale::Full => full,
        }
    }
}

/// One line of the chaos table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub name: &'static str,
    /// The checker's report.
    pub report: Report,
    /// HTTP requests the driver made.
    pub requests: u64,
    /// Answers by status.
    pub statuses: BTreeMap<String, u64>,
    /// Wall time of the whole scenario.
    pub wall: Duration,
    /// Scenario-specific expectations that failed (besides the invariant).
    pub failures: Vec<String>,
    /// What the scenario did (faults and their timing), for the table's notes.
    pub notes: Vec<String>,
    /// A table of the scenario's own figures (markdown), or empty.
    pub figures: String,
}

impl Row {
    /// True when the invariant held and every scenario expectation did.
    pub fn passed(&self) -> bool {
        self.report.ok() && self.failures.is_empty()
    }

    /// Everything that went wrong, for a failure message.
    pub fn explain(&self) -> String {
        let mut out = self.report.violations(10);
        for f in &self.failures {
            let _ = writeln!(out, "{f}");
        }
        let _ = writeln!(out, "statuses: {:?}; notes: {}", self.statuses, self.notes.join("; "));
        out
    }
}

/// The table header of [`row_line`].
pub const TABLE_HEADER: &str = "| scenario | sent | requests | accepted | events | DLQ | lost | duplicated | phantom | out-of-order | wall | result |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

/// One markdown table line.
pub fn row_line(r: &Row) -> String {
    let p = &r.report;
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s | {} |",
        r.name,
        p.sent,
        r.requests,
        p.accepted,
        p.events,
        p.dlq,
        p.lost.len(),
        p.duplicated.len(),
        p.phantom.len(),
        p.out_of_order.len(),
        r.wall.as_secs_f64(),
        if r.passed() { "pass" } else { "FAIL" }
    )
}

/// Every scenario's name, in the order `make chaos` runs them.
pub const SCENARIOS: [&str; 13] = [
    "processor-kill-9",
    "processor-frozen",
    "ingress-kill-9",
    "broker-restart",
    "broker-kill-9",
    "processor-gone",
    "network-cut",
    "processors-join-leave",
    "duplicate-storm",
    "poison-mix",
    "state-deleted",
    "state-disk-full",
    "ha-topology",
];

/// Runs scenario `name`.
pub async fn run(name: &str, scale: Scale) -> anyhow::Result<Row> {
    match name {
        "processor-kill-9" => processor_kill_9(scale).await,
        "processor-frozen" => processor_frozen(scale).await,
        "ingress-kill-9" => ingress_kill_9(scale).await,
        "broker-restart" => broker_restart(scale).await,
        "broker-kill-9" => broker_kill_9(scale).await,
        "processor-gone" => processor_gone(scale).await,
        "network-cut" => network_cut(scale).await,
        "processors-join-leave" => join_leave(scale).await,
        "duplicate-storm" => duplicate_storm(scale).await,
        "poison-mix" => poison_mix(scale).await,
        "state-deleted" => state_deleted(scale).await,
        "state-disk-full" => disk_full(scale).await,
        "ha-topology" => crate::ha::run(scale).await,
        other => anyhow::bail!("unknown scenario {other:?} (known: {})", SCENARIOS.join(", ")),
    }
}

/// A running pipeline: brokers, ingresses on fixed ports (so they can be restarted at the same address), behind
/// HAProxy when there are several, and processors in slots, each with its own data folder.
#[derive(Debug)]
pub struct Cluster {
    /// The broker.
    pub kafka: Kafka,
    /// Topic and group names.
    pub topics: Topics,
    dir: tempfile::TempDir,
    partitions: i32,
    ingresses: Vec<IngressSlot>,
    balancer: Option<Balancer>,
    processors: Vec<Slot>,
    processor_env: Vec<(String, String)>,
    ingress_sources: String,
    started: Instant,
    notes: Vec<String>,
}

/// An ingress on fixed addresses, so it can be restarted where its clients and the balancer's health checks
/// expect it.
#[derive(Debug)]
struct IngressSlot {
    addr: SocketAddr,
    admin: SocketAddr,
    process: Option<Component>,
}

#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    state: PathBuf,
    /// Bootstrap servers of this processor when not the cluster's (through a [`crate::netcut::NetCut`]).
    brokers: Option<String>,
    process: Option<Component>,
}

impl Cluster {
    /// Starts an ingress and `processors` processors on `kafka`, raw topic of `partitions` partitions.
    pub async fn start(kafka: Kafka, partitions: i32, processors: usize, processor_env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(kafka, partitions, processors, processor_env, driver::ingress_sources_toml(None)).await
    }

    /// [`Cluster::start`] with the ingress's `[sources.*]` TOML.
    pub async fn start_with(
        kafka: Kafka,
        partitions: i32,
        processors: usize,
        processor_env: &[(&str, &str)],
        ingress_sources: String,
    ) -> Cluster {
        Cluster::launch(kafka, partitions, 1, processors, processor_env, ingress_sources).await
    }

    /// `ingresses` ingresses behind HAProxy ([`Balancer`]) and `processors` processors on `kafka`, raw topic of
    /// `partitions` partitions: the topology `deploy/` describes.
    pub async fn start_balanced(kafka: Kafka, partitions: i32, ingresses: usize, processors: usize) -> Cluster {
        Cluster::launch(kafka, partitions, ingresses, processors, &[], driver::ingress_sources_toml(None)).await
    }

    async fn launch(
        kafka: Kafka,
        partitions: i32,
        ingresses: usize,
        processors: usize,
        processor_env: &[(&str, &str)],
        ingress_sources: String,
    ) -> Cluster {
        let topics = Topics::unique();
        create_raw_topic(&kafka, &topics, partitions).await;
        // With `HOOKLINE_CHAOS_KEEP` set, the folder (configs, logs, data folders) is kept for a post-mortem.
        let keep = std::env::var_os("HOOKLINE_CHAOS_KEEP").is_some();
        let dir = tempfile::Builder::new().prefix("hookline-chaos-").disable_cleanup(keep).tempdir().expect("temp dir");
        if keep {
            eprintln!("chaos: configs, logs and data folders kept in {}", dir.path().display());
        }
        let mut c = Cluster {
            kafka,
            topics,
            dir,
            partitions,
            ingresses: (0..ingresses)
                .map(|_| IngressSlot {
                    addr: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
                    admin: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
                    process: None,
                })
                .collect(),
            balancer: None,
            processors: Vec::new(),
            processor_env: processor_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ingress_sources,
            started: Instant::now(),
            notes: Vec::new(),
        };
        let mut backends = Vec::new();
        for i in 0..ingresses {
            c.start_ingress(i).await;
            backends.push(Backend { addr: c.ingresses[i].addr, admin: c.ingresses[i].admin });
        }
        if ingresses > 1 {
            c.balancer = Some(Balancer::start(c.dir.path(), &backends).await);
        }
        for i in 0..processors {
            c.start_processor(i).await;
        }
        c
    }

    /// Where webhooks go: the balancer, or the only ingress.
    pub fn base_url(&self) -> String {
        match &self.balancer {
            Some(b) => b.base_url(),
            None => format!("http://{}", self.ingresses[0].addr),
        }
    }

    /// The balancer in front of the ingresses, if there are several.
    pub fn balancer(&self) -> Option<&Balancer> {
        self.balancer.as_ref()
    }

    /// Running ingress `i`'s admin address (`/metrics`, `/readyz`).
    pub fn ingress_admin(&self, i: usize) -> Option<SocketAddr> {
        self.ingresses.get(i).and_then(|s| s.process.as_ref()).map(|c| c.admin)
    }

    /// Processor `i`'s admin address (`/metrics`, `/readyz`).
    pub fn processor_addr(&mut self, i: usize) -> SocketAddr {
        self.slot(i).addr
    }

    /// Seconds since the cluster started, for notes.
    fn at(&self) -> String {
        format!("{:.1}s", self.started.elapsed().as_secs_f64())
    }

    /// Records what happened when.
    pub fn note(&mut self, what: &str) {
        let line = format!("{} {what}", self.at());
        eprintln!("chaos: {line}");
        self.notes.push(line);
    }

    fn ingress_toml(&self, i: usize) -> String {
        format!(
            "[server]\nlisten = \"{addr}\"\n[kafka]\nbrokers = \"{brokers}\"\n[topics]\nraw = \"{raw}\"\nraw_partitions = {p}\n[producer]\nack_timeout_ms = 3000\nlinger_ms = 1\n{sources}",
            addr = self.ingresses[i].addr,
            brokers = self.kafka.brokers(),
            raw = self.topics.raw,
            p = self.partitions,
            sources = self.ingress_sources,
        )
    }

    /// Starts (or restarts) ingress `i` and waits until it is ready.
    pub async fn start_ingress(&mut self, i: usize) {
        let toml = self.ingress_toml(i);
        let (addr, admin) = (self.ingresses[i].addr, self.ingresses[i].admin);
        self.ingresses[i].process = Some(Component::ingress_at(self.dir.path(), addr, admin, &toml).await);
    }

    /// kill -9 of ingress `i`.
    pub fn kill_ingress(&mut self, i: usize) {
        if let Some(p) = self.ingresses[i].process.take() {
            p.kill();
        }
    }

    fn slot(&mut self, i: usize) -> &mut Slot {
        while self.processors.len() <= i {
            let n = self.processors.len();
            self.processors.push(Slot {
                addr: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
                state: self.dir.path().join(format!("state-{n}")),
                brokers: None,
                process: None,
            });
        }
        &mut self.processors[i]
    }

    /// The environment of processors started from now on (fault injection on or off).
    pub fn set_processor_env(&mut self, env: &[(&str, &str)]) {
        self.processor_env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    }

    /// Uses `dir` as processor `i`'s data folder.
    pub fn set_state_dir(&mut self, i: usize, dir: &Path) {
        self.slot(i).state = dir.to_owned();
    }

    /// Processor `i` reaches Kafka through `brokers` (a [`crate::netcut::NetCut`]'s bootstrap) from its next start.
    pub fn set_processor_brokers(&mut self, i: usize, brokers: &str) {
        self.slot(i).brokers = Some(brokers.to_owned());
    }

    fn processor_toml(&mut self, i: usize) -> String {
        let (addr, state, brokers) = {
            let s = self.slot(i);
            (s.addr, s.state.clone(), s.brokers.clone())
        };
        let brokers = brokers.unwrap_or_else(|| self.kafka.brokers().to_owned());
        let extra = format!("\n{}", driver::processor_sources_toml());
        crate::processor_toml(&brokers, &self.topics, &state, &addr.to_string(), &extra)
    }

    /// Starts processor `i` on its data folder and waits until it has joined the group.
    pub async fn start_processor(&mut self, i: usize) {
        let toml = self.processor_toml(i);
        let addr = self.slot(i).addr;
        let env: Vec<(&str, &str)> = self.processor_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = Component::start(self.dir.path(), addr, &toml, &env).await;
        self.slot(i).process = Some(p);
    }

    /// Starts processor `i` without waiting for it.
    pub fn launch_processor(&mut self, i: usize) {
        let toml = self.processor_toml(i);
        let addr = self.slot(i).addr;
        let env: Vec<(&str, &str)> = self.processor_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = Component::start_unchecked(self.dir.path(), addr, &toml, &env);
        self.slot(i).process = Some(p);
    }

    /// The running processor `i`.
    pub fn processor(&mut self, i: usize) -> Option<&mut Component> {
        self.slot(i).process.as_mut()
    }

    /// kill -9 of processor `i`.
    pub fn kill_processor(&mut self, i: usize) {
        if let Some(p) = self.slot(i).process.take() {
            p.kill();
        }
    }

    /// SIGTERM to processor `i`; its exit code.
    pub fn stop_processor(&mut self, i: usize) -> Option<Option<i32>> {
        self.slot(i).process.take().and_then(|p| p.terminate(Duration::from_secs(30)))
    }

    /// Processor `i`'s data folder.
    pub fn state_dir(&mut self, i: usize) -> PathBuf {
        self.slot(i).state.clone()
    }

    /// How processor `i` exited by itself (`Some(code)`, `None` inside for a signal), or `None` while it runs.
    pub fn processor_exit(&mut self, i: usize) -> Option<Option<i32>> {
        self.slot(i).process.as_mut().and_then(|p| p.wait_exit(Duration::ZERO))
    }

    /// Restarts, on its data folder, every processor that stopped by itself, as an orchestrator would (a
    /// processor stops only on an error it cannot recover from, which no scenario should cause: each one it
    /// finds is noted).
    pub async fn restart_exited_processors(&mut self) {
        for i in 0..self.processors.len() {
            if let Some(code) = self.processor_exit(i) {
                self.note(&format!("processor {i} had stopped itself (exit {code:?}); restarted"));
                self.start_processor(i).await;
            }
        }
    }

    /// Sum of metric `name` over the running processors.
    pub async fn processor_metric(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for s in self.processors.iter().filter(|s| s.process.is_some()) {
            sum += metric_sum(
                &get(&format!("http://{}/metrics", s.addr)).await.map(|r| r.text()).unwrap_or_default(),
                name,
            );
        }
        sum
    }

    /// Sum of one series (`name{labels}`, exact label text) over the running processors.
    pub async fn processor_metric_series(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for s in self.processors.iter().filter(|s| s.process.is_some()) {
            let text = get(&format!("http://{}/metrics", s.addr)).await.map(|r| r.text()).unwrap_or_default();
            sum += crate::metric(&text, series);
        }
        sum
    }

    /// Starts sending `load` to the ingress; the handle gives what was sent once every delivery is answered.
    pub fn load_in_background(&self, load: Load) -> tokio::task::JoinHandle<Driven> {
        let base = self.base_url();
        tokio::spawn(async move { driver::drive(&base, &load).await })
    }

    /// The topics the checker reads.
    pub fn topic_names(&self) -> TopicNames {
        TopicNames { raw: self.topics.raw.clone(), events: self.topics.events.clone(), dlq: self.topics.dlq.clone() }
    }

    /// Waits for the outputs of `sent`, checks the invariant, and makes the table row.
    pub async fn finish(self, name: &'static str, driven: Driven, failures: Vec<String>) -> anyhow::Result<Row> {
        self.finish_with(name, driven, failures, |_, _| String::new()).await
    }

    /// [`Cluster::finish`], with the row's figures made by `figures` from the run's answers once every output
    /// is on the topics (it may add failures).
    pub(crate) async fn finish_with(
        mut self,
        name: &'static str,
        mut driven: Driven,
        mut failures: Vec<String>,
        figures: impl FnOnce(&Driven, &mut Vec<String>) -> String,
    ) -> anyhow::Result<Row> {
        // A processor that stopped by itself and was not restarted explains missing events: say so.
        for i in 0..self.processors.len() {
            if let Some(code) = self.processor_exit(i) {
                self.note(&format!("processor {i} had stopped itself (exit {code:?})"));
            }
        }
        let sent = merge(std::mem::take(&mut driven.sent));
        let topics = self.topic_names();
        let observed =
            checker::observe(self.kafka.brokers(), &topics, &sent, Duration::from_secs(5), Duration::from_secs(240))
                .await?;
        let report = checker::check(&sent, &observed);
        if report.accepted < report.sent {
            failures.push(format!(
                "{} webhooks never accepted (given up: {})",
                report.sent - report.accepted,
                driven.given_up
            ));
        }
        for r in driven.refused.iter().take(5) {
            failures.push(format!("refused: {r}"));
        }
        let figures = figures(&driven, &mut failures);
        Ok(Row {
            name,
            report,
            requests: driven.requests,
            statuses: driven.statuses,
            wall: self.started.elapsed(),
            failures,
            notes: self.notes,
            figures,
        })
    }
}

/// One entry per webhook: a webhook sent in two runs (a redelivery after a restart) is accepted if either
/// run got it accepted.
fn merge(sent: Vec<Sent>) -> Vec<Sent> {
    let mut by_id: BTreeMap<(String, String), Sent> = BTreeMap::new();
    for s in sent {
        by_id.entry((s.source.clone(), s.dedup_key.clone())).and_modify(|e| e.accepted |= s.accepted).or_insert(s);
    }
    by_id.into_values().collect()
}

/// Polls `{base}/readyz` until it answers `status` (its body), or `None` after `timeout`.
async fn readyz_becomes(base: &str, status: u16, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = get(&format!("{base}/readyz")).await {
            if r.status == status {
                return Some(r.text());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A random duration in `lo..hi`.
fn between(lo: Duration, hi: Duration) -> Duration {
    lo + hi.saturating_sub(lo).mul_f64(fastrand::f64())
}

pub(crate) fn load(name: &str, webhooks: usize, rate: f64) -> Load {
    let mut l = Load::new(&crate::unique(name), webhooks, 24, rate);
    l.seed = fastrand::u64(..);
    l.concurrent_dups = 0.1;
    l.late_dups = 0.1;
    l.late_delay = (Duration::from_secs(1), Duration::from_secs(8));
    l
}

/// Waits until processor `i` holds partitions and has consumed records since it started (so a fault lands
/// mid-work, on a member that has partitions to lose).
pub(crate) async fn wait_working(c: &mut Cluster, i: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(p) = c.processor(i) else { return };
        let m = p.metrics().await;
        if metric_sum(&m, "hookline_processor_assigned_partitions") >= 1.0
            && metric_sum(&m, "hookline_processor_records_consumed_total") > 0.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the running processors hold `partitions` partitions between them, each some (the group's
/// rebalances after they joined are over).
pub(crate) async fn wait_settled(c: &Cluster, partitions: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut held = Vec::new();
        for s in c.processors.iter().filter(|s| s.process.is_some()) {
            let text = get(&format!("http://{}/metrics", s.addr)).await.map(|r| r.text()).unwrap_or_default();
            held.push(metric_sum(&text, "hookline_processor_assigned_partitions"));
        }
        if held.iter().all(|&h| h >= 1.0) && held.iter().sum::<f64>() >= partitions as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kill -9 of the processor at random moments while webhooks flow, restarting it each time.
async fn processor_kill_9(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::start(), 4, 1, &[]).await;
    let kills = scale.pick(3, 10);
    let l = load("pk", scale.pick(800, 4000), 40.0);
    let driver = c.load_in_background(l);
    for n in 0..kills {
        wait_working(&mut c, 0, Duration::from_secs(30)).await;
        tokio::time::sleep(between(Duration::from_millis(200), Duration::from_secs(4))).await;
        c.kill_processor(0);
        c.note(&format!("kill -9 processor ({}/{kills})", n + 1));
        c.start_processor(0).await;
    }
    let driven = driver.await?;
    c.finish("processor-kill-9", driven, Vec::new()).await
}

/// kill -9 of the ingress during load: clients see errors and retry; every 2xx is on the topics.
async fn ingress_kill_9(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::start(), 4, 1, &[]).await;
    let kills = scale.pick(2, 4);
    let l = load("ik", scale.pick(600, 2000), 50.0);
    let driver = c.load_in_background(l);
    for n in 0..kills {
        tokio::time::sleep(between(Duration::from_secs(2), Duration::from_secs(6))).await;
        c.kill_ingress(0);
        c.note(&format!("kill -9 ingress ({}/{kills})", n + 1));
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.start_ingress(0).await;
    }
    let driven = driver.await?;
    let mut failures = Vec::new();
    if driven.statuses.get("error").copied().unwrap_or(0) == 0 {
        failures.push("no client saw a connection error: the kills missed the load".into());
    }
    c.finish("ingress-kill-9", driven, failures).await
}

/// A one-node Kafka killed -9 during load and restarted on its data folder: the ingress answers 503
/// while it is down and recovers by itself; the processor resumes.
async fn broker_restart(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::local(), 4, 1, &[]).await;
    let l = load("br", scale.pick(900, 2400), 40.0);
    let driver = c.load_in_background(l);
    let mut failures = Vec::new();
    for n in 0..scale.pick(1, 2) {
        tokio::time::sleep(between(Duration::from_secs(5), Duration::from_secs(10))).await;
        c.kafka.stop();
        c.note(&format!("broker killed ({})", n + 1));
        let down = Duration::from_secs(scale.pick(5, 10));
        let started = Instant::now();
        let admin = c.ingress_admin(0).map(|a| format!("http://{a}")).unwrap_or_default();
        if readyz_becomes(&admin, 503, down).await.is_none() {
            failures.push("the ingress never reported not ready while the broker was down".into());
        }
        tokio::time::sleep(down.saturating_sub(started.elapsed())).await;
        tokio::task::block_in_place(|| c.kafka.restart());
        c.note("broker restarted");
        c.restart_exited_processors().await;
    }
    let driven = driver.await?;
    if driven.statuses.get("503").copied().unwrap_or(0) == 0 {
        failures.push("no 503 while the broker was down".into());
    }
    c.finish("broker-restart", driven, failures).await
}

/// A second and a third processor join during load and leave again (SIGTERM); partitions and their dedup
/// state move with them.
async fn join_leave(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::start(), 6, 1, &[]).await;
    let l = load("jl", scale.pick(900, 2400), 40.0);
    let driver = c.load_in_background(l);
    let step = Duration::from_secs(scale.pick(4, 10));
    let mut failures = Vec::new();
    for (i, action) in [(1, "join"), (2, "join"), (1, "leave"), (2, "leave")] {
        tokio::time::sleep(step).await;
        if action == "join" {
            c.start_processor(i).await;
        } else {
            let code = c.stop_processor(i);
            if code != Some(Some(0)) {
                failures.push(format!("processor {i} did not exit 0 on SIGTERM: {code:?}"));
            }
        }
        let aborted = c.processor_metric_series(r#"hookline_processor_transactions_total{kind="aborted"}"#).await;
        c.note(&format!("processor {i} {action}s (transactions aborted so far, running processors: {aborted})"));
    }
    let driven = driver.await?;
    c.finish("processors-join-leave", driven, failures).await
}

/// Every webhook delivered 5 times: two at once, three later (seconds to minutes, within the dedup window),
/// while a processor is killed once; the GitHub source's rate limit (20/s) turns part of the storm into 429s
/// that the driver retries.
async fn duplicate_storm(scale: Scale) -> anyhow::Result<Row> {
    let sources = driver::ingress_sources_toml(Some(20));
    let mut c = Cluster::start_with(Kafka::start(), 4, 1, &[], sources).await;
    let mut l = load("ds", scale.pick(400, 1500), 25.0);
    l.copies = 5;
    l.late_delay = scale
        .pick((Duration::from_secs(1), Duration::from_secs(10)), (Duration::from_secs(5), Duration::from_secs(150)));
    let driver = c.load_in_background(l);
    tokio::time::sleep(Duration::from_secs(scale.pick(8, 30))).await;
    c.kill_processor(0);
    c.note("kill -9 processor");
    c.start_processor(0).await;
    let driven = driver.await?;
    let mut failures = Vec::new();
    if driven.statuses.get("429").copied().unwrap_or(0) == 0 {
        failures.push("no delivery was rate limited (429): the storm stayed under the GitHub source's limit".into());
    }
    let accepted_deliveries: u64 = driven.statuses.iter().filter(|(s, _)| s.starts_with('2')).map(|(_, n)| n).sum();
    let unique = driven.sent.iter().filter(|s| s.accepted).count() as u64;
    if accepted_deliveries < unique * 4 {
        failures.push(format!("only {accepted_deliveries} deliveries accepted for {unique} webhooks: not a storm"));
    }
    c.finish("duplicate-storm", driven, failures).await
}

/// Poison webhooks (invalid JSON, no type, a body that makes the mapping code panic) mixed into the stream:
/// each is one DLQ record, the stream keeps flowing.
async fn poison_mix(scale: Scale) -> anyhow::Result<Row> {
    let c = Cluster::start(Kafka::start(), 4, 1, &[("HOOKLINE_FAULT_PANIC_ON", driver::PANIC_MARKER)]).await;
    let mut l = load("pm", scale.pick(600, 2000), 50.0);
    l.poison = 0.3;
    let base = c.base_url();
    let driven = driver::drive(&base, &l).await;
    let mut failures = Vec::new();
    if !driven.sent.iter().any(|s| s.expect == checker::Expect::Dlq) {
        failures.push("no poison webhook was sent".into());
    }
    c.finish("poison-mix", driven, failures).await
}

/// The processor's data folder deleted between runs: every earlier webhook is redelivered after the restart
/// and none yields a second event (the state is rebuilt from the changelog, not silently empty).
async fn state_deleted(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::start(), 4, 1, &[]).await;
    let first = load("sd", scale.pick(400, 1500), 50.0);
    let mut driven = driver::drive(&c.base_url(), &first).await;
    // Let the processor finish the first run before it stops.
    let accepted = driven.sent.iter().filter(|s| s.accepted).count() as f64;
    checker::observe(
        c.kafka.brokers(),
        &c.topic_names(),
        &driven.sent,
        Duration::from_secs(1),
        Duration::from_secs(120),
    )
    .await?;
    let mut failures = Vec::new();
    let code = c.stop_processor(0);
    if code != Some(Some(0)) {
        failures.push(format!("the processor did not exit 0 on SIGTERM: {code:?}"));
    }
    let dir = c.state_dir(0);
    std::fs::remove_dir_all(&dir)?;
    c.note("processor stopped, data folder deleted");
    c.start_processor(0).await;
    // The provider redelivers everything (same ids, same bodies), then new webhooks come.
    let again = driver::drive(&c.base_url(), &first).await;
    let mut next = load("sd2", scale.pick(200, 600), 50.0);
    next.late_dups = 0.0;
    let more = driver::drive(&c.base_url(), &next).await;
    let dropped = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let d = c.processor_metric("hookline_processor_duplicates_dropped_total").await;
            if d >= accepted || Instant::now() >= deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    if dropped < accepted {
        failures.push(format!("after the state was deleted only {dropped} of {accepted} redeliveries were dropped"));
    }
    driven.absorb(again);
    driven.absorb(more);
    c.finish("state-deleted", driven, failures).await
}

/// A small tmpfs mounted on a folder; unmounted on drop.
#[derive(Debug)]
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_mb: u32) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .status()?;
        anyhow::ensure!(status.success(), "mount tmpfs on {} failed (needs root)", path.display());
        Ok(Tmpfs { path: path.to_owned() })
    }

    /// `mount -o remount,{mode}` (`ro`, `rw`).
    fn remount(&self, mode: &str) -> anyhow::Result<()> {
        let status = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.path).status()?;
        anyhow::ensure!(status.success(), "remount {mode} of {} failed", self.path.display());
        Ok(())
    }

    /// Fills the file system with one file; returns its path.
    fn fill(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write as _;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler)?;
        let block = vec![0u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        Ok(filler)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Whether this process may mount a file system (the disk-full scenario needs it).
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

/// A read-only data folder: the processor refuses to start and names it. Then the data folder fills up during
/// load: the processor stops advancing and reports unhealthy rather than skipping records, and carries on by
/// itself once there is room again (regression: RocksDB refused every write after the first failed one until
/// reopened, so the processor stayed stuck after space was freed).
async fn disk_full(scale: Scale) -> anyhow::Result<Row> {
    anyhow::ensure!(can_mount(), "state-disk-full needs root to mount a small tmpfs as the data folder");
    let mut c = Cluster::start(Kafka::start(), 4, 0, &[]).await;
    let mount = tempfile::tempdir()?;
    let disk = Tmpfs::mount(mount.path(), 64)?;
    let state = mount.path().join("state");
    std::fs::create_dir_all(&state)?;
    c.set_state_dir(0, &state);
    // A read-only data folder: the processor refuses to start and names it.
    let mut failures = Vec::new();
    disk.remount("ro")?;
    c.launch_processor(0);
    let exit = c.processor(0).and_then(|p| p.wait_exit(Duration::from_secs(60)));
    let log = c.processor(0).map(|p| p.log()).unwrap_or_default();
    if !matches!(exit, Some(Some(code)) if code != 0) || !log.contains(&state.display().to_string()) {
        failures.push(format!(
            "with a read-only data folder the processor did not refuse to start naming it: exit {exit:?}, log: {log}"
        ));
    }
    c.kill_processor(0);
    c.note(&format!("read-only data folder: processor exited {exit:?}"));
    disk.remount("rw")?;
    c.start_processor(0).await;
    let l = load("df", scale.pick(900, 2400), 40.0);
    let driver = c.load_in_background(l);
    for n in 0..scale.pick(1, 2) {
        tokio::time::sleep(between(Duration::from_secs(3), Duration::from_secs(6))).await;
        let filler = disk.fill()?;
        c.note(&format!("data folder full ({})", n + 1));
        let admin = format!("http://{}", c.slot(0).addr);
        if let Some(unhealthy) = readyz_becomes(&admin, 503, Duration::from_secs(30)).await {
            c.note(&format!("processor unhealthy: {}", unhealthy.trim().replace('\n', " ")));
            // While unhealthy it must not advance: its committed outputs stay put.
            let before = c.processor_metric("hookline_processor_events_produced_total").await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after = c.processor_metric("hookline_processor_events_produced_total").await;
            if after > before + 64.0 * 4.0 {
                failures.push(format!("the processor kept publishing with a full disk ({before} → {after})"));
            }
        } else {
            failures.push("the processor never reported unhealthy with a full data folder".into());
        }
        std::fs::remove_file(&filler)?;
        c.note("room again");
        if readyz_becomes(&admin, 200, Duration::from_secs(60)).await.is_none() {
            failures.push("the processor did not recover by itself once the disk had room".into());
            if let Some(p) = c.processor(0) {
                let log = p.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                failures.push(format!("processor log tail: {}", tail.join(" | ")));
            }
        } else {
            c.note("processor ready again");
        }
    }
    let driven = driver.await?;
    let row = c.finish("state-disk-full", driven, failures).await;
    drop(disk);
    row
}

/// kill -9 of one node of a three-node cluster (replication factor 3, `min.insync.replicas=2`) during load,
/// restarted after a while: every 202'd webhook survives, and after the leader elections the ingress accepts
/// and the processors publish again while the node is still down.
async fn broker_kill_9(scale: Scale) -> anyhow::Result<Row> {
    // Starting and restarting JVMs blocks for seconds: not on a runtime worker the load driver needs.
    let kafka = tokio::task::block_in_place(|| Kafka::with(KafkaOptions { nodes: 3, ..KafkaOptions::default() }));
    let mut c = Cluster::start(kafka, 6, 2, &[]).await;
    // Load outlasts every kill and downtime, so progress without the dead broker can be seen.
    let l = load("bk", scale.pick(2000, 5200), 40.0);
    let driver = c.load_in_background(l);
    let mut failures = Vec::new();
    for n in 0..scale.pick(1, 2) {
        tokio::time::sleep(between(Duration::from_secs(4), Duration::from_secs(8))).await;
        let node = fastrand::usize(..c.kafka.nodes().node_count());
        c.kafka.nodes().kill_node(node);
        c.note(&format!("kill -9 of broker {} ({})", node + 1, n + 1));
        // Leaders move once the controller fences the dead broker (broker.session.timeout.ms, 9 s); if it was
        // the group coordinator, the processors' sessions expire first and they rejoin and restore (seen: 17 s
        // without publishing, starting 9 s after the kill). Either way both sides must be working again,
        // without it, by the end of its 35 s downtime.
        let (pause, flowing) = publishing_while(&c, Duration::from_secs(35)).await;
        if !flowing {
            failures.push(format!("nothing published in the last 5 s with broker {} down", node + 1));
        }
        c.note(&format!("longest pause in publishing with broker {} down: {:.1}s", node + 1, pause.as_secs_f64()));
        tokio::task::block_in_place(|| c.kafka.nodes().restart_node(node))?;
        c.note(&format!("broker {} restarted", node + 1));
    }
    let driven = driver.await?;
    // No processor died: a record they retry alone as a crash suspect is one wrongly suspected (regression:
    // partitions lost when the group coordinator's broker died left completed records marked as running).
    let suspects = c.processor_metric("hookline_processor_crash_suspects_total").await;
    if suspects > 0.0 {
        failures.push(format!("{suspects} records treated as crash suspects although no processor died"));
    }
    c.finish("broker-kill-9", driven, failures).await
}

/// Watches the processors' published events for `window`: the longest time without a new one, and whether
/// some were published in the window's last 5 s.
async fn publishing_while(c: &Cluster, window: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let mut last = c.processor_metric("hookline_processor_events_produced_total").await;
    let (mut last_change, mut longest) = (started, Duration::ZERO);
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = c.processor_metric("hookline_processor_events_produced_total").await;
        if now > last {
            last = now;
            last_change = Instant::now();
        }
        longest = longest.max(last_change.elapsed());
    }
    (longest, last_change.elapsed() < Duration::from_secs(5))
}

/// kill -9 of one processor of a group of three, not restarted, in the middle of a transaction (it commits
/// every 100 ms under load): after the session timeout the group gives its partitions to the two others,
/// which carry on from its last commit. Its open transaction is aborted by the transaction coordinator (the
/// transaction timeout), so nothing of it becomes visible, and the read_committed readers behind it move on.
async fn processor_gone(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::start(), 6, 3, &[]).await;
    let l = load("pg", scale.pick(900, 3000), 40.0);
    let driver = c.load_in_background(l);
    wait_working(&mut c, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(between(Duration::from_secs(2), Duration::from_secs(scale.pick(4, 10)))).await;
    let committed = match c.processor(2) {
        Some(p) => metric_sum(&p.metrics().await, "hookline_processor_transactions_total"),
        None => 0.0,
    };
    c.kill_processor(2);
    let killed = Instant::now();
    c.note(&format!("kill -9 of processor 2 (not restarted) after {committed} transactions"));
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let taken_over = loop {
        let assigned = c.processor_metric("hookline_processor_assigned_partitions").await;
        if assigned >= 6.0 || Instant::now() >= deadline {
            break assigned;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if taken_over < 6.0 {
        failures.push(format!("the survivors hold {taken_over} of 6 partitions 60 s after the kill"));
    }
    c.note(&format!("survivors hold {taken_over} partitions {:.1} s after the kill", killed.elapsed().as_secs_f64()));
    let driven = driver.await?;
    c.finish("processor-gone", driven, failures).await
}

/// A processor frozen (SIGSTOP) during load for longer than its session timeout while the other one takes
/// its partitions, then resumed (SIGCONT). Nothing it publishes after waking may become visible twice: no
/// duplicate, no phantom, no reordering.
///
/// 1. It stops itself (fault injection) at the worst instant: after the group coordinator accepted its
///    transaction's offsets, before it commits, and wakes before the transaction timeout. It then commits,
///    legitimately (its offsets were accepted while it was a member): the other processor must wait for that
///    commit before restoring the dedup state, or a redelivery of a webhook of that transaction would get
///    through again. So every webhook sent before the freeze is delivered once more while it is frozen.
/// 2. (full scale) Frozen at a random instant, shorter than the transaction timeout: it wakes with its
///    transaction open and must be fenced by its stale group generation.
/// 3. (full scale) Frozen at a random instant, longer than the transaction timeout: the coordinator has
///    aborted its transaction and fences its producer.
async fn processor_frozen(scale: Scale) -> anyhow::Result<Row> {
    let mut c = Cluster::start(Kafka::start(), 4, 0, &[]).await;
    c.set_processor_env(&[("HOOKLINE_FAULT_STOP_AFTER_OFFSETS", "30")]);
    c.start_processor(0).await;
    c.set_processor_env(&[]);
    c.start_processor(1).await;
    let series = "hookline_processor_session_restarts_total";
    // Measured while processor 0 answers: it commits nothing before the load starts.
    let mut restarts = c.processor_metric_series(series).await;
    let rate = 40.0;
    let l = load("pf", scale.pick(1200, 3000), rate);
    let load_started = Instant::now();
    let driver = c.load_in_background(l.clone());
    let mut failures = Vec::new();
    let mut redelivered = None;
    let freezes = [Duration::from_secs(9), Duration::from_secs(9), Duration::from_secs(16)];
    for (n, frozen) in freezes.into_iter().take(scale.pick(1, 3)).enumerate() {
        let frozen_at;
        if n == 0 {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !c.processor(0).is_some_and(|p| p.stopped()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !c.processor(0).is_some_and(|p| p.stopped()) {
                failures.push("processor 0 did not stop itself in its 30th transaction".to_owned());
            }
            frozen_at = Instant::now();
            c.note("processor 0 stopped itself between sending its offsets and committing");
            let mut again = l.clone();
            // Every webhook sent before the freeze (and a few more: the load keeps each key in order), fast,
            // once each.
            again.webhooks = ((load_started.elapsed().as_secs_f64() + 0.5) * rate) as usize;
            again.webhooks = again.webhooks.min(l.webhooks);
            (again.rate, again.concurrent_dups, again.late_dups) = (400.0, 0.0, 0.0);
            let driven = driver::drive(&c.base_url(), &again).await;
            c.note(&format!("{} webhooks sent before the freeze delivered again", again.webhooks));
            redelivered = Some(driven);
        } else {
            // While it works on partitions of its own (after the previous freeze it rejoins the group first).
            wait_working(&mut c, 0, Duration::from_secs(60)).await;
            restarts = c.processor_metric_series(series).await;
            tokio::time::sleep(between(Duration::from_secs(1), Duration::from_secs(4))).await;
            if let Some(p) = c.processor(0) {
                p.signal("STOP");
            }
            frozen_at = Instant::now();
            c.note(&format!("processor 0 frozen at a random instant ({})", n + 1));
        }
        tokio::time::sleep(frozen.saturating_sub(frozen_at.elapsed())).await;
        let held = match c.processor(1) {
            Some(p) => metric_sum(&p.metrics().await, "hookline_processor_assigned_partitions"),
            None => 0.0,
        };
        if held < 4.0 {
            failures.push(format!("at the end of freeze {} processor 1 held {held} of the 4 partitions", n + 1));
        }
        if let Some(p) = c.processor(0) {
            p.signal("CONT");
        }
        // The woken processor finds out it was expelled (or fenced) and starts a new session.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut after = restarts;
        while after <= restarts && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            after = c.processor_metric_series(series).await;
        }
        c.note(&format!(
            "resumed after {frozen:?}; processor 1 held {held} partitions; processor 0 started a new session: {}",
            after > restarts
        ));
        if n == 0 {
            // Its 30th transaction committed when it woke (it was not aborted for its age instead): the case
            // this freeze is for.
            let committed = match c.processor(0) {
                Some(p) => {
                    crate::metric(&p.metrics().await, "hookline_processor_transactions_total{kind=\"committed\"}")
                }
                None => 0.0,
            };
            if committed < 30.0 {
                failures.push(format!(
                    "processor 0 committed {committed} transactions: the one it froze in was aborted, not committed"
                ));
            }
        }
    }
    let mut driven = driver.await?;
    driven.absorb(redelivered.unwrap_or_default());
    c.finish("processor-frozen", driven, failures).await
}

/// The network between one processor and the cluster cut for longer than the session timeout, then healed:
/// the group hands the cut processor's partitions to the other one; the cut processor's open transaction
/// can never commit (its generation is stale, and the coordinator aborts it after the transaction timeout),
/// and after the heal it starts a new session and rejoins. Nothing is lost and nothing is published twice.
async fn network_cut(scale: Scale) -> anyhow::Result<Row> {
    let kafka = tokio::task::block_in_place(|| Kafka::with(KafkaOptions { proxied: true, ..KafkaOptions::default() }));
    let net = crate::netcut::NetCut::start(&kafka.local_proxied()).await?;
    let mut c = Cluster::start(kafka, 4, 0, &[]).await;
    c.set_processor_brokers(0, net.bootstrap());
    c.start_processor(0).await;
    c.start_processor(1).await;
    let l = load("nc", scale.pick(1200, 3000), 40.0);
    let driver = c.load_in_background(l);
    let mut failures = Vec::new();
    for n in 0..scale.pick(1, 2) {
        wait_working(&mut c, 0, Duration::from_secs(30)).await;
        tokio::time::sleep(between(Duration::from_secs(3), Duration::from_secs(8))).await;
        net.cut();
        let cut = Duration::from_secs(scale.pick(20, 30));
        c.note(&format!("network between processor 0 and Kafka cut for {cut:?} ({})", n + 1));
        tokio::time::sleep(cut).await;
        // By now the group has expelled processor 0 and processor 1 works on every partition.
        let other = c.processor(1).map(|p| p.addr);
        let held = match other {
            Some(addr) => metric_sum(
                &get(&format!("http://{addr}/metrics")).await.map(|r| r.text()).unwrap_or_default(),
                "hookline_processor_assigned_partitions",
            ),
            None => 0.0,
        };
        if held < 4.0 {
            failures.push(format!("at the end of cut {} processor 1 held {held} of the 4 partitions", n + 1));
        }
        net.heal();
        c.note(&format!("healed; processor 1 held {held} partitions"));
        c.restart_exited_processors().await;
    }
    let driven = driver.await?;
    let row = c.finish("network-cut", driven, failures).await;
    drop(net);
    row
}
