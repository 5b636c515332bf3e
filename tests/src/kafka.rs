//! Apache Kafka on loopback, as the tests, `make run`, `make chaos` and `make bench` run it: one KRaft node
//! (broker and controller in one JVM) or a cluster of three (replication factor 3, `min.insync.replicas=2`),
//! from the install of `scripts/ensure-kafka.sh`, on free loopback ports, storage formatted in a data folder.
//!
//! Invariant: no JVM started here outlives what started it. A [`LocalKafka`] kills its nodes when dropped,
//! and every node dies with its process even when that process is killed ([`crate::spawn_owned`]).

use std::io::{self, BufRead as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How a local cluster is laid out.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Nodes, each a broker and a controller: 1, or 3 for fault tests.
    pub nodes: usize,
    /// The data folder, kept after the cluster stops (`make run`); a temporary one (deleted) when `None`.
    pub dir: Option<PathBuf>,
    /// Client port of the first node (the others take free ports); a free port when `None`.
    pub port: Option<u16>,
    /// Java heap of each node, in MB.
    pub heap_mb: u32,
    /// Give each node a second client listener, advertised at the port of a proxy in front of it
    /// ([`LocalKafka::proxied`]): clients bootstrapped there reach the cluster only through the proxies, which
    /// a test can cut ([`crate::netcut`]).
    pub proxied: bool,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions { nodes: 1, dir: None, port: None, heap_mb: 512, proxied: false }
    }
}

/// A node's second listener: the broker binds `port`, clients are told to use `advertised` (a proxy's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedListener {
    /// Where the proxy listens (what metadata answers name).
    pub advertised: u16,
    /// Where the broker listens (where the proxy forwards to).
    pub port: u16,
}

#[derive(Debug)]
struct Node {
    id: usize,
    port: u16,
    controller_port: u16,
    proxied: Option<ProxiedListener>,
    dir: PathBuf,
    child: Option<Child>,
}

/// A local Apache Kafka cluster; its nodes are killed when it is dropped.
#[derive(Debug)]
pub struct LocalKafka {
    nodes: Vec<Node>,
    options: KafkaOptions,
    home: PathBuf,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// How long a node may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(90);

impl LocalKafka {
    /// Formats and starts a cluster and waits until every node serves metadata.
    pub fn start(options: KafkaOptions) -> io::Result<LocalKafka> {
        if !matches!(options.nodes, 1 | 3) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a local cluster has 1 or 3 nodes"));
        }
        let home = kafka_home()?;
        let (dir, temp) = match &options.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.canonicalize()?, None)
            }
            None => {
                sweep_stale_temp_dirs();
                let t = tempfile::Builder::new().prefix("hookline-kafka-").tempdir()?;
                std::fs::write(t.path().join("owner.pid"), std::process::id().to_string())?;
                (t.path().to_owned(), Some(t))
            }
        };
        // Ports picked free can be taken by someone else before the JVM binds them: try again with others.
        let mut last = None;
        for _ in 0..3 {
            let mut k = LocalKafka {
                nodes: Vec::new(),
                options: options.clone(),
                home: home.clone(),
                dir: dir.clone(),
                _temp: None,
            };
            k.nodes = (0..options.nodes)
                .map(|i| Node {
                    id: i + 1,
                    port: if i == 0 { options.port.unwrap_or_else(crate::free_port) } else { crate::free_port() },
                    controller_port: crate::free_port(),
                    proxied: options
                        .proxied
                        .then(|| ProxiedListener { advertised: crate::free_port(), port: crate::free_port() }),
                    dir: dir.join(format!("node-{}", i + 1)),
                    child: None,
                })
                .collect();
            match k.format().and_then(|()| k.start_all()) {
                Ok(()) => {
                    k._temp = temp;
                    return Ok(k);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("the cluster did not start")))
    }

    /// Bootstrap servers: every node's client listener, comma-separated.
    pub fn brokers(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// The second listeners (with [`KafkaOptions::proxied`]), in node order.
    pub fn proxied(&self) -> Vec<ProxiedListener> {
        self.nodes.iter().filter_map(|n| n.proxied).collect()
    }

    /// How many nodes it has.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Kills node `i` (0-based) with SIGKILL: nothing is flushed, on purpose.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.kill();
        }
    }

    /// Starts node `i` again on its ports and storage, and waits until it serves metadata again.
    pub fn restart_node(&mut self, i: usize) -> io::Result<()> {
        self.spawn_node(i)?;
        self.wait_ready(&[i])
    }

    /// Kills every node.
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Starts every node again on their ports and storage.
    pub fn restart_all(&mut self) -> io::Result<()> {
        self.start_all()
    }

    /// Stops every node with SIGTERM (a controlled shutdown that keeps the data consistent), waiting up to
    /// `timeout` before killing what is left.
    pub fn stop(&mut self, timeout: Duration) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            }
        }
        let deadline = Instant::now() + timeout;
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            node.kill();
        }
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = self.nodes.get(i).map(|n| std::fs::read_to_string(n.log())).and_then(Result::ok);
        let text = text.unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn format(&self) -> io::Result<()> {
        let cluster_id = self.cluster_id()?;
        let mut formatting = Vec::new();
        for node in &self.nodes {
            std::fs::create_dir_all(&node.dir)?;
            std::fs::write(node.config_path(), self.node_config(node))?;
            if node.dir.join("data/meta.properties").exists() {
                continue; // formatted by an earlier run (a kept data folder)
            }
            let mut cmd = self.java(node);
            cmd.args(["kafka.tools.StorageTool", "format", "-t", &cluster_id, "-c"]).arg(node.config_path());
            cmd.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(node.dir.join("format.log"))?));
            formatting.push((node.id, cmd.spawn()?));
        }
        for (id, mut child) in formatting {
            let status = child.wait()?;
            if !status.success() {
                let log = std::fs::read_to_string(self.dir.join(format!("node-{id}/format.log"))).unwrap_or_default();
                return Err(io::Error::other(format!("formatting node {id} failed: {log}")));
            }
        }
        Ok(())
    }

    /// The cluster id, kept in the data folder so a kept folder is started with the one it was formatted with.
    fn cluster_id(&self) -> io::Result<String> {
        let path = self.dir.join("cluster.id");
        if let Ok(id) = std::fs::read_to_string(&path) {
            return Ok(id.trim().to_owned());
        }
        let id = random_cluster_id();
        std::fs::write(&path, &id)?;
        Ok(id)
    }

    fn node_config(&self, node: &Node) -> String {
        let n = self.nodes.len();
        // With three nodes, an acknowledged record is on at least two of them: one may die without loss.
        let min_isr = if n >= 3 { 2 } else { 1 };
        let voters: Vec<String> =
            self.nodes.iter().map(|o| format!("{}@127.0.0.1:{}", o.id, o.controller_port)).collect();
        let (mut listeners, mut advertised) = (
            format!("PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}", node.port, node.controller_port),
            format!("PLAINTEXT://127.0.0.1:{}", node.port),
        );
        if let Some(p) = node.proxied {
            listeners.push_str(&format!(",PROXIED://127.0.0.1:{}", p.port));
            advertised.push_str(&format!(",PROXIED://127.0.0.1:{}", p.advertised));
        }
        format!(
            "# Written by hookline's local Kafka runner (tests/src/kafka.rs).
process.roles=broker,controller
node.id={id}
controller.quorum.voters={voters}
listeners={listeners}
advertised.listeners={advertised}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
default.replication.factor={n}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={n}
offsets.topic.num.partitions=12
transaction.state.log.replication.factor={n}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor={n}
share.coordinator.state.topic.min.isr={min_isr}
# hookline creates its topics itself; a missing one is a bug to see, not to paper over.
auto.create.topics.enable=false
# Tests join groups all the time: do not hold the first join of a group for 3 s.
group.initial.rebalance.delay.ms=0
",
            id = node.id,
            voters = voters.join(","),
            data = node.dir.join("data").display(),
        )
    }

    fn java(&self, node: &Node) -> Command {
        let mut cmd = Command::new("java");
        cmd.arg(format!("-Xmx{}m", self.options.heap_mb))
            .arg(format!("-Xms{}m", self.options.heap_mb.min(256)))
            .args(["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35"])
            .args(["-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"])
            // Compiler threads that live as long as the JVM, so `make bench` can count the CPU spent compiling.
            .arg("-XX:-UseDynamicNumberOfCompilerThreads")
            .arg(format!("-Dlog4j2.configurationFile={}", self.home.join("log4j2.properties").display()))
            .arg("-cp")
            .arg(format!("{}/*", self.home.join("libs").display()))
            .current_dir(&node.dir)
            .stdin(Stdio::null());
        cmd
    }

    fn spawn_node(&mut self, i: usize) -> io::Result<()> {
        let node = &self.nodes[i];
        let mut cmd = self.java(node);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.log())?;
        cmd.arg("kafka.Kafka").arg(node.config_path()).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        let child = crate::spawn_owned(cmd)?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    fn start_all(&mut self) -> io::Result<()> {
        for i in 0..self.nodes.len() {
            self.spawn_node(i)?;
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        match self.wait_ready(&all) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill_all();
                Err(e)
            }
        }
    }

    /// Waits until each of `nodes` answers metadata listing all of them as brokers.
    fn wait_ready(&mut self, nodes: &[usize]) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let want: Vec<i32> = nodes.iter().map(|&i| i32::try_from(self.nodes[i].id).unwrap_or(0)).collect();
        let mut pending: Vec<usize> = nodes.to_vec();
        while !pending.is_empty() {
            for &i in nodes {
                let exited = self.nodes[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    self.nodes[i].child = None;
                    return Err(io::Error::other(format!(
                        "Kafka node {} exited ({status}) while starting; its log ends:\n{}",
                        self.nodes[i].id,
                        self.log_tail(i, 40)
                    )));
                }
            }
            pending.retain(|&i| !serves_metadata(self.nodes[i].port, &want));
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let i = pending[0];
                return Err(io::Error::other(format!(
                    "Kafka node {} did not serve metadata within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.nodes[i].id,
                    self.log_tail(i, 40)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalKafka {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with `-` (which the
/// storage tool's argument parser takes for an option, as Kafka's own `Uuid.randomUuid` avoids too).
fn random_cluster_id() -> String {
    use base64::Engine as _;
    loop {
        let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Whether the broker on `port` answers metadata that lists every broker of `ids`.
fn serves_metadata(port: u16, ids: &[i32]) -> bool {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("log_level", "0")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    match consumer.fetch_metadata(None, Duration::from_millis(1000)) {
        Ok(md) => ids.iter().all(|id| md.brokers().iter().any(|b| b.id() == *id)),
        Err(_) => false,
    }
}

/// The Kafka install folder: `HOOKLINE_KAFKA_HOME`, else what `scripts/ensure-kafka.sh` prints (installing it
/// into the cache folder the first time).
pub fn kafka_home() -> io::Result<PathBuf> {
    if let Some(home) = std::env::var_os("HOOKLINE_KAFKA_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    static HOME: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    HOME.get_or_init(|| {
        let script = crate::workspace_root().join("scripts/ensure-kafka.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed ({})", script.display(), out.status));
        }
        let home = out.stdout.lines().map_while(Result::ok).last().unwrap_or_default();
        Ok(PathBuf::from(home.trim()))
    })
    .clone()
    .map_err(io::Error::other)
}

/// Removes the temporary data folders of clusters whose process died without cleaning up (killed).
fn sweep_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("hookline-kafka-"));
        if !is_ours {
            continue;
        }
        let owner = std::fs::read_to_string(path.join("owner.pid")).ok().and_then(|p| p.trim().parse::<u32>().ok());
        if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The cluster every [`crate::Kafka::start`] of this process shares (topic and group names are unique per
/// test): started on first use, stopped when the process exits.
pub(crate) fn shared_brokers() -> &'static str {
    static SHARED: OnceLock<String> = OnceLock::new();
    static CLUSTER: Mutex<Option<LocalKafka>> = Mutex::new(None);
    extern "C" fn stop_shared() {
        if let Ok(mut cluster) = CLUSTER.lock() {
            drop(cluster.take());
        }
    }
    SHARED.get_or_init(|| {
        let cluster = LocalKafka::start(KafkaOptions::default())
            .unwrap_or_else(|e| panic!("could not start a local Apache Kafka: {e}"));
        let brokers = cluster.brokers();
        if let Ok(mut slot) = CLUSTER.lock() {
            *slot = Some(cluster);
        }
        // SAFETY: registers a plain function with no arguments; it only kills children and removes a folder.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(stop_shared);
        }
        brokers
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: usize, proxied: bool) -> LocalKafka {
        let options = KafkaOptions { nodes, proxied, ..KafkaOptions::default() };
        LocalKafka {
            nodes: (0..nodes)
                .map(|i| Node {
                    id: i + 1,
                    port: 9000 + u16::try_from(i).unwrap(),
                    controller_port: 9100 + u16::try_from(i).unwrap(),
                    proxied: proxied.then_some(ProxiedListener { advertised: 9200, port: 9300 }),
                    dir: PathBuf::from(format!("/data/node-{}", i + 1)),
                    child: None,
                })
                .collect(),
            options,
            home: PathBuf::from("/kafka"),
            dir: PathBuf::from("/data"),
            _temp: None,
        }
    }

    fn property<'a>(config: &'a str, key: &str) -> Option<&'a str> {
        config.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }

    /// Regression: a cluster id starting with `-` (1 in 64) made `kafka-storage format -t ID` fail.
    #[test]
    fn cluster_ids_never_start_with_a_dash() {
        for _ in 0..2000 {
            let id = random_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn three_nodes_replicate_everything_three_times_and_acknowledge_on_two() {
        let k = cluster(3, false);
        let config = k.node_config(&k.nodes[1]);
        assert_eq!(property(&config, "node.id"), Some("2"));
        assert_eq!(
            property(&config, "controller.quorum.voters"),
            Some("1@127.0.0.1:9100,2@127.0.0.1:9101,3@127.0.0.1:9102")
        );
        for key in [
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
        ] {
            assert_eq!(property(&config, key), Some("3"), "{key}");
        }
        for key in ["min.insync.replicas", "transaction.state.log.min.isr"] {
            assert_eq!(property(&config, key), Some("2"), "{key}");
        }
        assert_eq!(property(&config, "auto.create.topics.enable"), Some("false"));
        assert_eq!(k.brokers(), "127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002");
    }

    #[test]
    fn one_node_needs_no_replicas_and_a_proxied_listener_is_advertised_at_the_proxy() {
        let k = cluster(1, true);
        let config = k.node_config(&k.nodes[0]);
        assert_eq!(property(&config, "min.insync.replicas"), Some("1"));
        assert_eq!(property(&config, "default.replication.factor"), Some("1"));
        assert_eq!(
            property(&config, "listeners"),
            Some("PLAINTEXT://127.0.0.1:9000,CONTROLLER://127.0.0.1:9100,PROXIED://127.0.0.1:9300")
        );
        assert_eq!(
            property(&config, "advertised.listeners"),
            Some("PLAINTEXT://127.0.0.1:9000,PROXIED://127.0.0.1:9200")
        );
    }
}
