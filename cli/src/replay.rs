//! `hookline replay --source S --from TIME [--to TIME]`: re-derive a source's events from the raw topic, for
//! example after fixing its mapping.
//!
//! The raw records of the source stored between the two times (found by offsets-for-times) are written back to
//! their raw partitions marked as one replay run ([`crate::reprocess`]); the processors run them through the
//! current pipeline and publish their events again, with the same event ids (the webhook's dedup key), so a
//! consumer that upserts by id gets the corrected events. Each webhook is replayed once per run, however many
//! times its provider delivered it; the replayed events come after newer events of the same key.

use std::collections::HashSet;
use std::path::PathBuf;

use hookline_schemas::raw::{RawMeta, Reprocess, ReprocessKind};

use crate::reprocess::{marked, parse_time, processor_settings, read, show_time, Progress, Start, Writer};
use crate::Error;

/// `hookline replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The source whose webhooks are replayed.
    #[arg(long)]
    pub source: String,
    /// Replay webhooks stored at or after this time: RFC 3339 (2026-11-23T10:00:00Z) or an age (2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: i64,
    /// ... and at or before this time. Default: now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<i64>,
    /// The processor config (`HOOKLINE_*` overrides apply); its `kafka` and `topics.raw` are used. Default:
    /// the processor's defaults.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Bootstrap brokers. Default: `KAFKA_BROKERS`, else the config's `kafka.brokers`.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Count what would be replayed, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `hookline replay`.
pub fn run(args: &ReplayArgs) -> Result<(), Error> {
    let settings = processor_settings(args.config.as_deref(), args.brokers.as_deref())?;
    let from = args.from;
    let to = args.to.unwrap_or_else(hookline_runtime::now_ms);
    if to < from {
        return Err(Error::Usage(format!("--to ({}) is before --from ({})", show_time(to), show_time(from))));
    }
    let now = hookline_runtime::now_ms();
    let run_id = format!("{}-{}", show_time(now), std::process::id());
    let raw_topic = settings.topics.raw.clone();
    eprintln!(
        "replaying source {} from {} to {} on {raw_topic} (run {run_id}){}",
        args.source,
        show_time(from),
        show_time(to),
        if args.dry_run { ", dry run" } else { "" }
    );
    let writer = if args.dry_run { None } else { Some(Writer::new(&settings.kafka)?) };
    let mut seen: HashSet<String> = HashSet::new();
    let (mut scanned, mut copies, mut unreadable, mut replayed) = (0usize, 0usize, 0usize, 0usize);
    let mut progress = Progress::new();
    read(&settings.kafka, &raw_topic, Start::At(from), Some(to), |record| {
        scanned += 1;
        progress.tick(|| format!("scanned {scanned} raw records, replayed {replayed}"));
        let Ok(meta) = RawMeta::from_headers(record.header_pairs()) else {
            unreadable += 1;
            return Ok(());
        };
        // Records written back by an earlier redrive or replay are copies of webhooks already counted.
        if meta.source != args.source || meta.reprocess.is_some() {
            return Ok(());
        }
        if !seen.insert(meta.dedup_key.clone()) {
            copies += 1;
            return Ok(());
        }
        let reprocess = Reprocess { kind: ReprocessKind::Replay, id: run_id.clone(), at_ms: now };
        let (_, headers) = marked(&record, reprocess)?;
        if let Some(w) = &writer {
            w.write(&raw_topic, record.partition, record.key.as_deref(), record.value.as_deref(), &headers).map_err(
                |e| Error::kafka(format!("replaying {} ({replayed} replayed before it)", record.position()), e),
            )?;
        }
        replayed += 1;
        Ok(())
    })?;
    let verb = if args.dry_run { "would replay" } else { "replayed" };
    println!(
        "{verb} {replayed} webhooks of source {} (run {run_id}): {scanned} raw records scanned, {copies} \
         redeliveries of the same webhooks skipped, {unreadable} without hookline metadata",
        args.source
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        replay: ReplayArgs,
    }

    #[test]
    fn a_replay_needs_a_source_and_a_start() {
        assert_eq!(Cli::try_parse_from(["replay", "--from", "2h"]).unwrap_err().exit_code(), 2);
        assert_eq!(Cli::try_parse_from(["replay", "--source", "shop"]).unwrap_err().exit_code(), 2);
        let cli =
            Cli::try_parse_from(["replay", "--source", "shop", "--from", "2h", "--to", "1h", "--dry-run"]).unwrap();
        assert!(cli.replay.dry_run);
        assert!(cli.replay.to.is_some_and(|to| to < hookline_runtime::now_ms() - 3_500_000));
        assert_eq!(Cli::try_parse_from(["replay", "--source", "s", "--from", "soon"]).unwrap_err().exit_code(), 2);
    }
}
