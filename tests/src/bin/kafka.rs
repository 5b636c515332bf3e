//! `hookline-kafka`: a local Apache Kafka for `make run` and `make bench` (the tests and `make chaos` start
//! theirs in-process, through the same [`hookline_e2e::kafka`] code). Prints the bootstrap servers on stdout
//! once every node serves, then runs until SIGINT or SIGTERM and stops the nodes with a controlled shutdown.
//! Killed, it takes its nodes with it.
//!
//! ```text
//! hookline-kafka [--nodes 1|3] [--dir DIR] [--port PORT] [--heap-mb MB]
//! ```
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hookline_e2e::kafka::{KafkaOptions, LocalKafka};

/// A local Apache Kafka (KRaft: every node is a broker and a controller) on loopback.
#[derive(Debug, Parser)]
#[command(name = "hookline-kafka")]
struct Args {
    /// Nodes: 1, or 3 (replication factor 3, min.insync.replicas 2).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Data folder, kept after it stops and reused by the next start; a temporary one when not given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Client port of the first node; a free one when not given.
    #[arg(long)]
    port: Option<u16>,
    /// Java heap of each node, in MB.
    #[arg(long, default_value_t = 512)]
    heap_mb: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options =
        KafkaOptions { nodes: args.nodes, dir: args.dir, port: args.port, heap_mb: args.heap_mb, proxied: false };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookline-kafka: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Listen for SIGINT/SIGTERM before starting, so a stop during the start is not lost: it stops the nodes
    // as soon as they are up (a killed runner would leave a temporary data folder behind).
    let signals = runtime.block_on(async {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        Ok::<_, std::io::Error>((term, int))
    });
    let (mut term, mut int) = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hookline-kafka: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cluster = match LocalKafka::start(options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hookline-kafka: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", cluster.brokers());
    let _ = std::io::stdout().flush();
    runtime.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    cluster.stop(Duration::from_secs(30));
    ExitCode::SUCCESS
}
