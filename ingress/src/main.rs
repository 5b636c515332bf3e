//! `hookline-ingress`: its arguments, over [`hookline_runtime::binary`] and [`hookline_ingress::run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hookline_ingress::{Config, Settings};
use hookline_runtime::binary::{self, Binary};
use tokio::net::TcpListener;

/// hookline's webhook ingress: verifies webhooks and stores them in Kafka before answering 202.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The config file (see deploy/ingress.example.toml). `HOOKLINE_*` variables override its fields.
    #[arg(long, short, env = "HOOKLINE_INGRESS_CONFIG", default_value = "hookline-ingress.toml")]
    config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
}

/// mimalloc rather than glibc's malloc: the request path allocates many small, short-lived buffers on both
/// worker threads, and `make bench` measured 10-25% more accepted webhooks/s with it at 256 and 1,024
/// connections, A/B on the same broker. (librdkafka keeps glibc's malloc: see `hookline_runtime::malloc`.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    binary::main(Binary {
        name: "hookline-ingress",
        config: &args.config,
        check: args.check,
        load: |path: &Path| Config::load(path).and_then(Config::validate),
        summary: |s: &Settings| format!("{} sources", s.sources.len()),
        traces: |s: &Settings| s.tracing.clone(),
        listen: |s: &Settings| [(s.listen, "server.listen"), (s.admin_listen, "server.admin_listen")],
        serve: |s, [webhooks, admin]: [TcpListener; 2], stop, reloads| {
            hookline_ingress::run(s, webhooks, admin, stop, reloads)
        },
    })
}
