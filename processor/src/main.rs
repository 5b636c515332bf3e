//! `hookline-processor`: its arguments, over [`hookline_runtime::binary`] and [`hookline_processor::run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hookline_processor::{Config, Settings};
use hookline_runtime::binary::{self, Binary};
use hookline_runtime::reload::Reloads;
use tokio::net::TcpListener;

/// hookline's processor: deduplicates raw webhooks and publishes them as ordered CloudEvents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The config file (see deploy/processor.example.toml). `HOOKLINE_*` variables override its fields.
    #[arg(long, short, env = "HOOKLINE_PROCESSOR_CONFIG", default_value = "hookline-processor.toml")]
    config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
}

/// mimalloc rather than glibc's malloc for hookline's own allocations (librdkafka and RocksDB keep glibc's,
/// tuned by `keep_freed_memory`): each record's parse, pipeline and outputs make many small allocations;
/// malloc and free were 15-20% of the processor's CPU behind a backlog (perf), and mimalloc gave about 10%
/// more records/s in A/B runs (48k -> 52-56k/s, in runs that vary by about 10%).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    binary::main(Binary {
        name: "hookline-processor",
        config: &args.config,
        check: args.check,
        // The pipeline is compiled here too, so that a VRL program that does not compile stops `--check` and
        // startup with its diagnostic, before the data folder or the cluster is touched.
        load: |path: &Path| {
            let settings = Config::load(path).and_then(Config::validate)?;
            hookline_pipeline::Pipeline::new(&settings)?;
            Ok(settings)
        },
        summary: |s: &Settings| format!("group {}", s.consumer.group_id),
        traces: |s: &Settings| s.tracing.clone(),
        listen: |s: &Settings| [(s.listen, "server.listen")],
        serve: |s, [admin]: [TcpListener; 1], stop, reloads: Reloads<Settings>| {
            reloads.refuse("hookline-processor");
            hookline_processor::run(s, admin, stop)
        },
    })
}
