//! `make bench-pipeline`: what a VRL transform costs per event, as a ratio against the same pipeline without
//! it, in one run on one core. The pipeline (`hookline-pipeline`) is what the processor runs per raw record
//! between its dedup lookup and its outputs; it is measured alone, in-process, so that the ratio is the
//! transform's and not the broker's or the machine's. Each variant runs `--rounds` times, alternating, and the
//! median of its rounds is reported.
//!
//! Variants, on the README's Stripe charge (`examples/stripe-redact/samples/charge.succeeded.json`, 1.3 KB):
//! - `none`: provider preset only;
//! - `trivial`: plus a one-line transform (`.transformed = true`);
//! - `readme`: plus the README's e-mail redaction (`examples/stripe-redact/redact-emails.vrl`);
//! - `condition`: plus a VRL filter condition (`.data.livemode == false`), no transform.

use std::time::{Duration, Instant};

use clap::Parser;
use hookline_pipeline::{Decision, Input, Pipeline};
use hookline_schemas::raw::{KeyOrigin, RawMeta};

/// The processor's allocator, so that the per-event figures are the processor's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Events per round.
    #[arg(long, default_value_t = 100_000)]
    events: u32,
    /// Rounds per variant.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The repository's root (for the example files).
    #[arg(long, default_value = ".")]
    root: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let example = args.root.join("examples/stripe-redact");
    let body = std::fs::read(example.join("samples/charge.succeeded.json"))?;
    let dir = std::env::temp_dir().join(format!("hookline-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let trivial = dir.join("trivial.vrl");
    std::fs::write(&trivial, ".transformed = true\n")?;
    let readme = example.join("redact-emails.vrl").canonicalize()?;
    let stripe = "[sources.stripe]\nprovider = \"stripe\"\n";
    let variants = [
        ("none", stripe.to_owned()),
        ("trivial", format!("{stripe}transform = \"{}\"\n", trivial.display())),
        ("readme", format!("{stripe}transform = \"{}\"\n", readme.display())),
        ("condition", format!("{stripe}filter = {{ condition = '.data.livemode == false' }}\n")),
    ];
    let pipelines: Vec<(&str, Pipeline)> = variants
        .iter()
        .map(|(name, toml)| {
            let settings =
                hookline_runtime::config::from_str_with_env::<hookline_config::processor::Config>(toml, Vec::new())
                    .and_then(hookline_config::processor::Config::validate)?;
            Ok((*name, Pipeline::new(&settings)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let _ = std::fs::remove_dir_all(&dir);

    let meta = RawMeta {
        v: hookline_schemas::header::VERSION,
        source: "stripe".into(),
        received_at_ms: 1_767_225_600_000,
        dedup_key: "evt_3QkZ1C2eZvKYlo2C1Lw5Qm4f".into(),
        dedup_key_origin: KeyOrigin::Provider,
        content_type: Some("application/json".into()),
        request_id: "bench".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        traceparent: None,
        reprocess: None,
    };
    let input = Input {
        meta: &meta,
        key: Some(b"ch_3QkZ1C2eZvKYlo2C1Xv0Ap7T"),
        body: &body,
        partition: 0,
        offset: 0,
        traceparent: None,
    };
    for (name, p) in &pipelines {
        anyhow::ensure!(
            matches!(p.process(&input), Decision::Publish(_)),
            "variant {name} does not publish the sample"
        );
    }

    let mut rounds: Vec<Vec<Duration>> = vec![Vec::new(); pipelines.len()];
    for _ in 0..args.rounds {
        for (i, (_, p)) in pipelines.iter().enumerate() {
            let started = Instant::now();
            let mut bytes = 0usize;
            for _ in 0..args.events {
                if let Decision::Publish(events) = p.process(std::hint::black_box(&input)) {
                    bytes += events.iter().map(|e| e.value.len()).sum::<usize>();
                }
            }
            std::hint::black_box(bytes);
            rounds[i].push(started.elapsed());
        }
    }
    let median = |d: &mut Vec<Duration>| {
        d.sort();
        d[d.len() / 2]
    };
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(args.events);
    let base = per_event(median(&mut rounds[0]));
    println!(
        "pipeline per event, {} events x {} rounds per variant (median round), {} byte body",
        args.events,
        args.rounds,
        body.len()
    );
    println!("| variant | us/event | events/s | throughput vs none | added us/event |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _)) in pipelines.iter().enumerate() {
        let us = per_event(median(&mut rounds[i]));
        println!("| {name} | {us:.2} | {:.0} | {:.2}x | {:+.2} |", 1e6 / us, base / us, us - base);
    }
    Ok(())
}
