//! The end-to-end harness: a real Kafka broker, hookline's processes, an HTTP client and topic readers.
//!
//! The tests of one process share one local Apache Kafka node ([`kafka`]), unless `KAFKA_BROKERS` names a
//! cluster to use instead; topic and group names are unique per test either way. A test that kills brokers
//! starts a private cluster. Brokers and hookline's processes are killed when their handles are dropped, even
//! when the test fails, and die with the test process if it is killed (`PR_SET_PDEATHSIG`).
//!
//! This is test code: a failed setup step panics, which fails the test that called it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod balancer;
pub mod chaos;
pub mod checker;
pub mod driver;
pub mod h2;
pub mod ha;
pub mod kafka;
pub mod netcut;
pub mod observability;
pub mod otlp;
pub mod sign;
pub mod tls;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookline_schemas::view::{RecordView, ValueAs};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use kafka::{KafkaOptions, LocalKafka};

/// Installs a log subscriber once when `HOOKLINE_TEST_LOG` holds a filter (for example `info,librdkafka=debug`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("HOOKLINE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// The repository's root folder, looked up when the tests run, not when they are built: the build cache is
/// shared by clones in other folders.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let dir = PathBuf::from(manifest);
    // This crate's manifest is in `tests/`; a binary run from the workspace root sees the root's.
    if dir.join("scripts").is_dir() {
        dir
    } else {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    }
}

/// A name unique to this test process and call: `{prefix}-{pid}-{n}-{millis}`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{}", std::process::id(), hookline_runtime::now_ms() % 1_000_000)
}

/// A free loopback port (bound then released; a race with other processes is retried by callers).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

/// The Kafka cluster of a test: the local Apache Kafka this test process shares, a private local cluster, or
/// the cluster named by `KAFKA_BROKERS`.
#[derive(Debug)]
pub struct Kafka {
    brokers: String,
    local: Option<LocalKafka>,
}

impl Kafka {
    /// The cluster of `KAFKA_BROKERS` if set, else the local single-node Apache Kafka shared by this test
    /// process (started on first use; topic and group names are unique per test).
    pub fn start() -> Kafka {
        init_logs();
        match std::env::var("KAFKA_BROKERS") {
            Ok(b) if !b.is_empty() => Kafka { brokers: b, local: None },
            _ => Kafka { brokers: kafka::shared_brokers().to_owned(), local: None },
        }
    }

    /// A private single-node Apache Kafka, whatever `KAFKA_BROKERS` says (for tests that kill and restart it).
    pub fn local() -> Kafka {
        Kafka::with(KafkaOptions::default())
    }

    /// A private local cluster laid out as `options` says (three nodes for fault tests).
    pub fn with(options: KafkaOptions) -> Kafka {
        init_logs();
        let cluster =
            LocalKafka::start(options).unwrap_or_else(|e| panic!("could not start a local Apache Kafka: {e}"));
        Kafka { brokers: cluster.brokers(), local: Some(cluster) }
    }

    /// `host:port` of the bootstrap brokers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The private local cluster, to kill and restart its nodes.
    pub fn nodes(&mut self) -> &mut LocalKafka {
        self.local.as_mut().expect("only a private local cluster (Kafka::local, Kafka::with) can be controlled")
    }

    /// The proxied listeners of the private cluster ([`KafkaOptions::proxied`]).
    pub fn local_proxied(&self) -> Vec<kafka::ProxiedListener> {
        self.local.as_ref().map(LocalKafka::proxied).unwrap_or_default()
    }

    /// Kills every node of the private cluster (SIGKILL: nothing is flushed, on purpose).
    pub fn stop(&mut self) {
        self.nodes().kill_all();
    }

    /// Starts the private cluster's nodes again on the same ports, with the same storage.
    pub fn restart(&mut self) {
        self.nodes().restart_all().unwrap_or_else(|e| panic!("the local Kafka did not come back: {e}"));
    }
}

/// Spawns `cmd` so that the child dies with this process, however it dies, and not before: the child gets
/// `PR_SET_PDEATHSIG`, and since that signal follows the *thread* that forked it, every child is forked by one
/// thread that lives as long as the process.
pub fn spawn_owned(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Request>>> =
        std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        // The sender lives in this static, so the loop (and the thread) never ends.
        let _ = std::thread::Builder::new().name("child-spawner".into()).spawn(move || {
            for (mut cmd, reply) in rx {
                die_with_parent(&mut cmd);
                let _ = reply.send(cmd.spawn());
            }
        });
        std::sync::Mutex::new(tx)
    });
    let gone = || std::io::Error::other("the child spawner thread is gone");
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    spawner.lock().map_err(|_| gone())?.send((cmd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Topic names unique to one test.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Raw topic.
    pub raw: String,
    /// Events topic.
    pub events: String,
    /// DLQ topic.
    pub dlq: String,
    /// The processor's state changelog topic.
    pub state: String,
    /// Consumer group of the processor.
    pub group: String,
}

impl Topics {
    /// Fresh names.
    pub fn unique() -> Topics {
        let id = unique("t");
        Topics {
            raw: format!("{id}.raw"),
            events: format!("{id}.events"),
            dlq: format!("{id}.dlq"),
            state: format!("{id}.state"),
            group: format!("{id}.group"),
        }
    }
}

/// The demo secret test sources use.
pub const SECRET: &str = "test-secret";

/// The `[producer]` section of test ingresses: a 3 s bounded wait.
pub const TEST_PRODUCER: &str = "ack_timeout_ms = 3000\nlinger_ms = 1\n";

/// What varies between test ingresses.
#[derive(Debug, Clone)]
pub struct IngressOptions<'a> {
    /// Raw topic partitions.
    pub partitions: i32,
    /// Lines added to `[server]`.
    pub server: &'a str,
    /// The `[producer]` section's lines.
    pub producer: &'a str,
    /// TOML appended at the end (more sources, `[quarantine]`…).
    pub extra: &'a str,
    /// Include the `shop` source.
    pub shop: bool,
}

impl Default for IngressOptions<'_> {
    fn default() -> Self {
        IngressOptions { partitions: 2, server: "", producer: TEST_PRODUCER, extra: "", shop: true }
    }
}

/// An ingress config for tests: source `shop` (HMAC-SHA256, `X-Signature: sha256=…`, dedup key `/id`,
/// ordering key `/order`), plus `extra` TOML appended.
pub fn ingress_config(
    kafka: &Kafka,
    topics: &Topics,
    partitions: i32,
    extra: &str,
) -> hookline_config::ingress::Settings {
    ingress_settings(kafka, topics, &IngressOptions { partitions, extra, ..IngressOptions::default() })
}

/// The TOML text of a test ingress config.
pub fn ingress_toml(kafka: &Kafka, topics: &Topics, o: &IngressOptions<'_>) -> String {
    let shop = if o.shop {
        format!(
            r#"
        [sources.shop]
        dedup_key = {{ json_pointer = "/id" }}
        ordering_key = {{ json_pointer = "/order" }}
        [sources.shop.verify]
        scheme = "hmac"
        header = "X-Signature"
        prefix = "sha256="
        secrets = [{{ value = "{SECRET}" }}]
        "#
        )
    } else {
        String::new()
    };
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        {server}
        [kafka]
        brokers = "{brokers}"
        [topics]
        raw = "{raw}"
        raw_partitions = {partitions}
        [producer]
        {producer}
        {shop}
        {extra}
        "#,
        server = o.server,
        brokers = kafka.brokers(),
        raw = topics.raw,
        partitions = o.partitions,
        producer = o.producer,
        extra = o.extra,
    )
}

/// A validated test ingress config.
pub fn ingress_settings(kafka: &Kafka, topics: &Topics, o: &IngressOptions<'_>) -> hookline_config::ingress::Settings {
    hookline_runtime::config::from_str_with_env::<hookline_config::ingress::Config>(
        &ingress_toml(kafka, topics, o),
        Vec::new(),
    )
    .and_then(hookline_config::ingress::Config::validate)
    .expect("test ingress config")
}

/// A binary of this workspace, built next to the test executable (`make test` builds them first), or in
/// `HOOKLINE_BIN_DIR`.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var("HOOKLINE_BIN_DIR").map(PathBuf::from).unwrap_or_else(|_| {
        // A test executable is in target/debug/deps, `hookline-chaos` in target/debug, next to the binaries.
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().expect("executable dir");
        if dir.ends_with("deps") { dir.parent().unwrap_or(dir) } else { dir }.to_path_buf()
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --bins` (make test does)", path.display());
    path
}

/// A child process of a test, killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// Starts `cmd`; it dies with the test process.
    pub fn spawn(cmd: Command) -> Process {
        Process { child: Some(spawn_owned(cmd).expect("spawn")) }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends a signal (`"TERM"`, `"KILL"`); nothing once it has exited (pid 0 would be the whole group).
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        }
    }

    /// Waits up to `timeout` for it to exit; its exit code (`None` if killed by a signal or still running).
    pub fn wait(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A processor config for tests, state in `state_dir`, plus `extra` TOML appended.
pub fn processor_config(
    kafka: &Kafka,
    topics: &Topics,
    state_dir: &Path,
    extra: &str,
) -> hookline_config::processor::Settings {
    let text = processor_toml(kafka.brokers(), topics, state_dir, "127.0.0.1:0", extra);
    hookline_runtime::config::from_str_with_env::<hookline_config::processor::Config>(&text, Vec::new())
        .and_then(hookline_config::processor::Config::validate)
        .expect("test processor config")
}

/// The TOML text of a test processor config listening on `listen`.
pub fn processor_toml(brokers: &str, topics: &Topics, state_dir: &Path, listen: &str, extra: &str) -> String {
    format!(
        r#"
        [server]
        listen = "{listen}"
        [kafka]
        brokers = "{brokers}"
        [topics]
        raw = "{raw}"
        events = "{events}"
        dlq = "{dlq}"
        state = "{state}"
        [consumer]
        group_id = "{group}"
        stats_interval_ms = 500
        [state]
        dir = "{dir}"
        {extra}
        "#,
        raw = topics.raw,
        events = topics.events,
        dlq = topics.dlq,
        state = topics.state,
        group = topics.group,
        dir = state_dir.display(),
    )
}

/// A `hookline-processor` or `hookline-ingress` process (the built binary), killed when dropped. Its log is
/// kept in its folder and printed when a test using it fails.
#[derive(Debug)]
pub struct Component {
    process: Process,
    name: &'static str,
    /// Its HTTP address: the ingress's webhooks, the processor's admin endpoints.
    pub addr: SocketAddr,
    /// Its admin address (`/metrics`, `/livez`, `/readyz`): the processor's `addr`, the ingress's own.
    pub admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

/// The processor binary, as [`Component`]'s constructors for it are named.
pub type ProcessorProcess = Component;

impl Component {
    /// Starts the binary with `config_toml` (which must listen on `addr`) and `env`, and waits until it is
    /// ready (topics checked, state open, group joined).
    pub async fn start(dir: &Path, addr: SocketAddr, config_toml: &str, env: &[(&str, &str)]) -> ProcessorProcess {
        let mut p = ProcessorProcess::start_unchecked(dir, addr, config_toml, env);
        p.wait_ready(Duration::from_secs(60)).await;
        p
    }

    /// Starts the processor binary without waiting for it.
    pub fn start_unchecked(dir: &Path, addr: SocketAddr, config_toml: &str, env: &[(&str, &str)]) -> ProcessorProcess {
        Component::launch("hookline-processor", dir, addr, addr, config_toml, env)
    }

    /// Starts the ingress binary with `config_toml` (which must listen on `addr`; its admin endpoints get a free
    /// port of their own) and waits until it is ready.
    pub async fn ingress(dir: &Path, addr: SocketAddr, config_toml: &str) -> Component {
        Component::ingress_at(dir, addr, SocketAddr::from(([127, 0, 0, 1], free_port())), config_toml).await
    }

    /// [`Component::ingress`] with its admin endpoints on `admin` (a restart keeps its health-check address).
    pub async fn ingress_at(dir: &Path, addr: SocketAddr, admin: SocketAddr, config_toml: &str) -> Component {
        let env = [("HOOKLINE_SERVER__ADMIN_LISTEN", admin.to_string())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut p = Component::launch("hookline-ingress", dir, addr, admin, config_toml, &env);
        p.wait_ready(Duration::from_secs(60)).await;
        p
    }

    /// Starts binary `name` of this workspace with `--config` (written into `dir`) and `env`.
    pub fn launch(
        name: &'static str,
        dir: &Path,
        addr: SocketAddr,
        admin: SocketAddr,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> Component {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let config = dir.join(format!("{name}-{n}.toml"));
        std::fs::write(&config, config_toml).expect("write config");
        let log = dir.join(format!("{name}-{n}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin(name));
        cmd.arg("--config").arg(&config).stdout(out.try_clone().expect("log")).stderr(out);
        cmd.env("RUST_LOG", std::env::var("HOOKLINE_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Component { process: Process::spawn(cmd), name, addr, admin, config, log }
    }

    /// Polls `/readyz` until it answers 200; panics with the process's log otherwise.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if get(&format!("http://{}/readyz", self.admin)).await.is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Some(code) = self.process.wait(Duration::ZERO) {
                panic!("{} exited ({code:?}) before becoming ready:\n{}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} not ready after {timeout:?}:\n{}", self.name, self.log());
    }

    /// Its `/metrics` text (empty if it does not answer).
    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin)).await.map(|r| r.text()).unwrap_or_default()
    }

    /// Its config file (rewrite it, then send SIGHUP, to reload).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends it a signal (`"STOP"`, `"CONT"`, ...).
    pub fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// Its peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid())).unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_default();
        kib / 1024
    }

    /// Whether it is stopped (by SIGSTOP, from outside or by itself).
    pub fn stopped(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.pid())).unwrap_or_default();
        // `pid (comm) state ...`: the state follows the last `)`.
        stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    }

    /// kill -9.
    pub fn kill(mut self) {
        self.process.signal("KILL");
        let _ = self.process.wait(Duration::from_secs(10));
    }

    /// SIGTERM, then waits for it to exit; its exit code.
    pub fn terminate(mut self, timeout: Duration) -> Option<Option<i32>> {
        self.process.signal("TERM");
        self.process.wait(timeout)
    }

    /// Waits for it to exit by itself (a crash); its exit code, `None` for a signal, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        self.process.wait(timeout)
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        // A failing test shows what the processes it still holds logged (the folder is deleted with it).
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(300)..].join("\n");
            eprintln!("--- {} {} log (last 300 lines) ---\n{tail}\n---", self.name, self.addr);
        }
    }
}

/// One raw record, as the ingress writes it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The source name.
    pub source: String,
    /// The dedup key.
    pub dedup_key: String,
    /// The ordering key (the record key).
    pub key: String,
    /// The exact body.
    pub body: Vec<u8>,
    /// Request headers kept on the record.
    pub headers: Vec<(String, String)>,
    /// When the ingress received it (ms); now when `None`.
    pub received_at_ms: Option<i64>,
}

impl RawRecord {
    /// A JSON webhook of `source`.
    pub fn json(source: &str, dedup_key: &str, key: &str, body: String) -> RawRecord {
        RawRecord {
            source: source.to_owned(),
            dedup_key: dedup_key.to_owned(),
            key: key.to_owned(),
            body: body.into_bytes(),
            headers: vec![("content-type".into(), "application/json".into())],
            received_at_ms: None,
        }
    }
}

/// Creates `topics.raw` with `partitions` partitions if it does not exist.
pub async fn create_raw_topic(kafka: &Kafka, topics: &Topics, partitions: i32) {
    hookline_runtime::kafka::ensure_topics(
        &hookline_runtime::kafka::KafkaConfig { brokers: kafka.brokers().to_owned(), ..Default::default() },
        &[hookline_runtime::kafka::TopicSpec { name: topics.raw.clone(), partitions, config: vec![] }],
    )
    .await
    .expect("create the raw topic");
}

/// Writes `records` to `topic` in order as the ingress does (idempotent, acks=all, the same partitioner) and
/// waits for every acknowledgement. Returns each record's (partition, offset).
pub async fn produce_raw(brokers: &str, topic: &str, records: &[RawRecord]) -> Vec<(i32, i64)> {
    use rdkafka::message::OwnedHeaders;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("log_level", "3")
        .create()
        .expect("raw producer");
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let meta = hookline_schemas::raw::RawMeta {
            v: hookline_schemas::header::VERSION,
            source: r.source.clone(),
            received_at_ms: r.received_at_ms.unwrap_or_else(now_ms),
            dedup_key: r.dedup_key.clone(),
            dedup_key_origin: hookline_schemas::raw::KeyOrigin::Header,
            content_type: r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone()),
            request_id: unique("req"),
            headers: r.headers.clone(),
            traceparent: None,
            reprocess: None,
        };
        let (name, value) = meta.to_header();
        let headers = OwnedHeaders::new().insert(rdkafka::message::Header { key: name, value: Some(&value) });
        let record = FutureRecord::to(topic).key(&r.key).payload(&r.body).headers(headers);
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => panic!("enqueue a raw record: {e}"),
        }
    }
    let mut out = Vec::with_capacity(pending.len());
    for d in pending {
        match d.await {
            Ok(Ok(delivery)) => out.push((delivery.partition, delivery.offset)),
            other => panic!("raw record not stored: {other:?}"),
        }
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The value of metric line `name{labels}` (exact label text) in a `/metrics` text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every series of metric `name` (any labels) in a `/metrics` text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let base = series.split('{').next()?;
            (base == name).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A component running in this process, stopped on drop.
#[derive(Debug)]
pub struct Running {
    /// Its HTTP address: the ingress's webhooks, the processor's admin endpoints.
    pub addr: SocketAddr,
    /// Its admin address (`/metrics`, `/livez`, `/readyz`).
    pub admin: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Running {
    /// Starts an ingress and waits until `/readyz` answers 200.
    pub async fn ingress(settings: hookline_config::ingress::Settings) -> Running {
        let webhooks = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (addr, admin_addr) = (webhooks.local_addr().expect("addr"), admin.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            let (_, reloads) = hookline_runtime::reload::Reloads::channel();
            async move { hookline_ingress::run(settings, webhooks, admin, stop, reloads).await.map_err(|e| e.to_string()) }
        });
        let running = Running { addr, admin: admin_addr, stop, task: Some(task) };
        running.wait_ready(Duration::from_secs(30)).await;
        running
    }

    /// Starts a processor and waits until it has joined its group.
    pub async fn processor(settings: hookline_config::processor::Settings) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { hookline_processor::run(settings, listener, stop).await.map_err(|e| e.to_string()) }
        });
        let running = Running { addr, admin: addr, stop, task: Some(task) };
        running.wait_ready(Duration::from_secs(60)).await;
        running
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(r) = get(&format!("http://{}/readyz", self.admin)).await {
                if r.status == 200 {
                    return;
                }
                last = r.text();
            }
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("component exited before becoming ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not ready after {timeout:?}: {last}");
    }

    /// Begins a graceful shutdown (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Stops it gracefully and returns how `run` ended.
    pub async fn shutdown(mut self) -> Result<(), String> {
        self.stop.cancel();
        match self.task.take() {
            Some(t) => t.await.map_err(|e| e.to_string())?,
            None => Ok(()),
        }
    }

    /// The metrics text.
    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin)).await.map(|r| r.text()).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET url`.
pub async fn get(url: &str) -> anyhow::Result<Reply> {
    send(http::Request::get(url).body(Full::new(Bytes::new()))?).await
}

/// `POST url` with headers and body.
pub async fn post(url: &str, headers: &[(&str, String)], body: impl Into<Bytes>) -> anyhow::Result<Reply> {
    let mut req = http::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    send(req.body(Full::new(body.into()))?).await
}

/// Sends a request.
pub async fn send(req: http::Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    let resp = client().request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// The dedup key of a raw record (from its `hookline-meta` header).
pub fn dedup_key(record: &RecordView) -> String {
    record.headers["hookline-meta"]["dedup_key"].as_str().unwrap_or_default().to_owned()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`, computed independently of the ingress.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a correctly signed webhook to source `shop`.
pub async fn post_signed(ingress: &Running, body: &str) -> Reply {
    let url = format!("http://{}/webhooks/shop", ingress.addr);
    post(
        &url,
        &[("content-type", "application/json".into()), ("x-signature", sign(SECRET, body.as_bytes()))],
        body.to_owned(),
    )
    .await
    .expect("request")
}

/// Reads every record of `topic` (all partitions, from the beginning) until `expected` records are in and
/// then `settle` passes without more, or `timeout` passes. Returns the records in (partition, offset) order.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
    timeout: Duration,
) -> Vec<RecordView> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic, expected, settle, timeout))
        .await
        .expect("reader task")
}

fn read_topic_blocking(
    brokers: &str,
    topic: &str,
    expected: usize,
    settle: Duration,
    timeout: Duration,
) -> Vec<RecordView> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "20")
        .set("log_level", "3")
        .create()
        .expect("reader");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(md) => {
                let n = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
                if n > 0 {
                    break n;
                }
            }
            Err(_) if Instant::now() < deadline => {}
            Err(e) => panic!("metadata of {topic}: {e}"),
        }
        if Instant::now() >= deadline {
            return Vec::new();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, i32::try_from(p).unwrap_or(0), Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let value_as = if topic.ends_with("events") { ValueAs::Json } else { ValueAs::Base64 };
    let mut out = Vec::new();
    let mut complete_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if let Some(since) = complete_since {
            if since.elapsed() >= settle {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers: Vec<(&str, Option<&[u8]>)> =
                    m.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default();
                out.push(RecordView::new(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    headers,
                    m.payload(),
                    value_as,
                ));
                if out.len() >= expected && complete_since.is_none() {
                    complete_since = Some(Instant::now());
                }
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {
                if out.len() >= expected && complete_since.is_none() {
                    complete_since = Some(Instant::now());
                }
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}
