//! `hookline dlq list|show|redrive`: inspect the DLQ and send chosen records back through the processor.
//!
//! A redrive writes the DLQ record's webhook (key, body, headers) back to the raw partition it was first
//! stored in, marked as a redrive of that DLQ record ([`crate::reprocess`]): the processor runs it again even
//! though the webhook already has an output (the DLQ record itself), at most once per DLQ record within the
//! source's dedup window, so redriving the same records twice publishes nothing twice. Records whose raw
//! metadata was unreadable (`invalid_envelope`) have nothing to send back and are reported as skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hookline_schemas::dlq::{DlqMeta, ErrorClass};
use hookline_schemas::raw::{Reprocess, ReprocessKind};
use hookline_schemas::view::{RecordView, ValueAs};

use crate::reprocess::{marked, parse_time, processor_settings, read, show_time, Progress, Record, Start, Writer};
use crate::Error;

/// `hookline dlq …`.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// One line per DLQ record (position, first failure, source, class, stage, dedup key, reason), oldest
    /// first per partition, then a count per source and class.
    List(ListArgs),
    /// Print DLQ records in full, as JSON (headers parsed, the body as JSON or base64).
    Show(ShowArgs),
    /// Send the chosen DLQ records back through the processor (after fixing what made them fail). Each is
    /// processed once more: redriving a record again publishes nothing twice.
    Redrive(RedriveArgs),
}

/// Which cluster and DLQ topic.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The processor config (`HOOKLINE_*` overrides apply); its `kafka` and `topics.dlq` are used. Default:
    /// the processor's defaults (hookline.dlq on 127.0.0.1:9092).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Bootstrap brokers. Default: `KAFKA_BROKERS`, else the config's `kafka.brokers`.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// The DLQ topic. Default: the config's `topics.dlq`.
    #[arg(long)]
    pub topic: Option<String>,
}

/// Which records.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only records of this error class (invalid_json, missing_field, schema_violation, panic, crash_loop…);
    /// repeat for several.
    #[arg(long = "reason", value_name = "CLASS", value_parser = error_class)]
    pub reasons: Vec<ErrorClass>,
    /// Only records of this source; repeat for several.
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Only records that first failed at or after this time: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<i64>,
}

/// `hookline dlq list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub filter: Filter,
    /// Print each record as a JSON line (the shape of dlq-record.v1) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `hookline dlq show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: Target,
    /// Records by position, `PARTITION:OFFSET` as `list` prints it.
    #[arg(required = true, value_name = "PARTITION:OFFSET", value_parser = position)]
    pub records: Vec<(i32, i64)>,
}

/// `hookline dlq redrive`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("choice").required(true).multiple(true).args(["reasons", "sources", "since", "records", "all"]))]
pub struct RedriveArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub filter: Filter,
    /// Only this record, `PARTITION:OFFSET`; repeat for several.
    #[arg(long = "record", value_name = "PARTITION:OFFSET", value_parser = position)]
    pub records: Vec<(i32, i64)>,
    /// Every record of the DLQ (one of --all, --record or a filter is required).
    #[arg(long)]
    pub all: bool,
    /// Print what would be sent back, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `hookline dlq …`.
pub fn run(cmd: &DlqCommand) -> Result<(), Error> {
    match cmd {
        DlqCommand::List(a) => list(a),
        DlqCommand::Show(a) => show(a),
        DlqCommand::Redrive(a) => redrive(a),
    }
}

/// The processor settings of `target`, brokers overridden.
fn settings(target: &Target) -> Result<hookline_config::processor::Settings, Error> {
    let mut settings = processor_settings(target.config.as_deref(), target.brokers.as_deref())?;
    if let Some(topic) = &target.topic {
        settings.topics.dlq.clone_from(topic);
    }
    Ok(settings)
}

/// A compiled [`Filter`].
#[derive(Debug)]
struct Select {
    classes: Vec<ErrorClass>,
    sources: Vec<String>,
    since_ms: Option<i64>,
    records: Vec<(i32, i64)>,
}

impl Select {
    fn new(filter: &Filter, records: &[(i32, i64)]) -> Select {
        Select {
            classes: filter.reasons.clone(),
            sources: filter.sources.clone(),
            since_ms: filter.since,
            records: records.to_vec(),
        }
    }

    fn matches(&self, record: &Record, meta: Option<&DlqMeta>) -> bool {
        if !self.records.is_empty() && !self.records.contains(&(record.partition, record.offset)) {
            return false;
        }
        let Some(meta) = meta else {
            // A record without DLQ metadata matches no filter on it.
            return self.classes.is_empty() && self.sources.is_empty() && self.since_ms.is_none();
        };
        (self.classes.is_empty() || self.classes.contains(&meta.class))
            && (self.sources.is_empty() || self.sources.contains(&meta.source))
            && self.since_ms.is_none_or(|since| meta.first_failure_ms >= since)
    }

    /// Where to start reading: a record cannot have been written to the DLQ before it first failed.
    fn start(&self) -> Start {
        match self.since_ms {
            Some(ms) => Start::At(ms),
            None => Start::Beginning,
        }
    }
}

/// An error class by name (a usage error otherwise).
fn error_class(text: &str) -> Result<ErrorClass, String> {
    ErrorClass::ALL.iter().copied().find(|c| c.as_str() == text).ok_or_else(|| {
        let known: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown class `{text}` (classes: {})", known.join(", "))
    })
}

/// `PARTITION:OFFSET`.
fn position(text: &str) -> Result<(i32, i64), String> {
    let bad = || format!("`{text}` is not PARTITION:OFFSET (for example 3:1200)");
    let (p, o) = text.split_once(':').ok_or_else(bad)?;
    Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?))
}

fn dlq_meta(record: &Record) -> Option<DlqMeta> {
    DlqMeta::from_headers(record.header_pairs()).ok()
}

/// The table line of a DLQ record.
fn line(record: &Record, meta: Option<&DlqMeta>) -> String {
    match meta {
        Some(m) => format!(
            "{:<10} {:<24} {:<16} {:<16} {:<9} {:<28} {}",
            record.position(),
            show_time(m.first_failure_ms),
            m.source,
            m.class.as_str(),
            m.stage.as_str(),
            m.dedup_key,
            m.reason
        ),
        None => format!("{:<10} (no hookline-dlq header: not written by a hookline processor)", record.position()),
    }
}

const HEADER: &str = "POSITION   FIRST FAILURE            SOURCE           CLASS            STAGE     DEDUP KEY                    REASON";

fn view(record: &Record) -> serde_json::Value {
    let v = RecordView::new(
        &record.topic,
        record.partition,
        record.offset,
        record.timestamp_ms,
        record.key.as_deref(),
        record.header_pairs(),
        record.value.as_deref(),
        ValueAs::Json,
    );
    // A view is strings, numbers and JSON values: it always serializes.
    serde_json::to_value(v).unwrap_or_default()
}

fn list(args: &ListArgs) -> Result<(), Error> {
    let settings = settings(&args.target)?;
    let select = Select::new(&args.filter, &[]);
    let mut counts: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    if !args.json {
        println!("{HEADER}");
    }
    let mut shown = 0usize;
    read(&settings.kafka, &settings.topics.dlq, select.start(), None, |record| {
        let meta = dlq_meta(&record);
        if !select.matches(&record, meta.as_ref()) {
            return Ok(());
        }
        shown += 1;
        let key = meta.as_ref().map_or(("?".to_owned(), "?"), |m| (m.source.clone(), m.class.as_str()));
        *counts.entry(key).or_default() += 1;
        if args.json {
            println!("{}", view(&record));
        } else {
            println!("{}", line(&record, meta.as_ref()));
        }
        Ok(())
    })?;
    if !args.json {
        println!("\n{shown} records");
        for ((source, class), n) in counts {
            println!("  {n:>8}  {source} {class}");
        }
    }
    Ok(())
}

fn show(args: &ShowArgs) -> Result<(), Error> {
    let settings = settings(&args.target)?;
    let wanted = &args.records;
    let mut found: BTreeMap<(i32, i64), serde_json::Value> = BTreeMap::new();
    read(&settings.kafka, &settings.topics.dlq, Start::Beginning, None, |record| {
        if wanted.contains(&(record.partition, record.offset)) {
            found.insert((record.partition, record.offset), view(&record));
        }
        Ok(())
    })?;
    let mut missing = Vec::new();
    for w in wanted {
        match found.get(w) {
            Some(v) => println!("{v:#}"),
            None => missing.push(format!("{}:{}", w.0, w.1)),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotFound { topic: settings.topics.dlq, filtered: false, positions: missing })
    }
}

fn redrive(args: &RedriveArgs) -> Result<(), Error> {
    let settings = settings(&args.target)?;
    let select = Select::new(&args.filter, &args.records);
    let mut matched: Vec<(i32, i64)> = Vec::new();
    let dlq_topic = settings.topics.dlq.clone();
    let writer = if args.dry_run { None } else { Some(Writer::new(&settings.kafka)?) };
    let now = hookline_runtime::now_ms();
    let (mut selected, mut sent, mut skipped) = (0usize, 0usize, Vec::new());
    let mut progress = Progress::new();
    read(&settings.kafka, &dlq_topic, select.start(), None, |record| {
        let meta = dlq_meta(&record);
        if !select.matches(&record, meta.as_ref()) {
            return Ok(());
        }
        selected += 1;
        matched.push((record.partition, record.offset));
        let Some(meta) = meta else {
            skipped.push(format!("{}: no hookline-dlq header", record.position()));
            return Ok(());
        };
        let redrive = Reprocess {
            kind: ReprocessKind::Redrive,
            id: format!("{dlq_topic}:{}:{}", record.partition, record.offset),
            at_ms: now,
        };
        let headers = match marked(&record, redrive) {
            Ok((_, headers)) => headers,
            Err(e) => {
                skipped.push(format!("{} ({}): {e}", record.position(), meta.class.as_str()));
                return Ok(());
            }
        };
        match &writer {
            None => println!(
                "would redrive {} to {}/{}: {}",
                record.position(),
                meta.raw_topic,
                meta.raw_partition,
                line(&record, Some(&meta))
            ),
            Some(w) => {
                w.write(&meta.raw_topic, meta.raw_partition, record.key.as_deref(), record.value.as_deref(), &headers)
                    .map_err(|e| Error::kafka(format!("redriving {} ({sent} sent before it)", record.position()), e))?;
                sent += 1;
                progress.tick(|| format!("redriven {sent} of {selected} so far"));
            }
        }
        Ok(())
    })?;
    let verb = if args.dry_run { "would redrive" } else { "redriven" };
    let redrivable = selected - skipped.len();
    println!("{verb} {redrivable} of {selected} selected DLQ records from {dlq_topic}");
    for s in &skipped {
        println!("  skipped {s}");
    }
    let missing: Vec<String> =
        args.records.iter().filter(|r| !matched.contains(r)).map(|(p, o)| format!("{p}:{o}")).collect();
    if !missing.is_empty() {
        return Err(Error::NotFound { topic: dlq_topic, filtered: true, positions: missing });
    }
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(Error::NotRedriven(skipped.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        dlq: DlqCommand,
    }

    #[test]
    fn a_redrive_must_say_which_records() {
        let e = Cli::try_parse_from(["dlq", "redrive"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        for choice in
            [&["--all"][..], &["--reason", "panic"], &["--record", "1:2"], &["--source", "shop"], &["--since", "2h"]]
        {
            let argv: Vec<&str> = ["dlq", "redrive"].iter().chain(choice).copied().collect();
            assert!(Cli::try_parse_from(&argv).is_ok(), "{argv:?}");
        }
        assert!(Cli::try_parse_from(["dlq", "show"]).is_err(), "show needs a position");
        for bad in [&["--reason", "oops"][..], &["--since", "yesterday"], &["--record", "3-7"]] {
            let argv: Vec<&str> = ["dlq", "redrive"].iter().chain(bad).copied().collect();
            assert_eq!(Cli::try_parse_from(&argv).unwrap_err().exit_code(), 2, "{argv:?} is a usage error");
        }
    }

    #[test]
    fn filters_select_by_class_source_time_and_position() {
        let meta = DlqMeta {
            v: 1,
            source: "shop".into(),
            dedup_key: "k".into(),
            raw_topic: "hookline.raw".into(),
            raw_partition: 0,
            raw_offset: 1,
            class: ErrorClass::InvalidJson,
            stage: hookline_schemas::dlq::Stage::Parse,
            reason: "r".into(),
            attempts: 1,
            first_failure_ms: 1_000,
        };
        let record = Record {
            topic: "hookline.dlq".into(),
            partition: 3,
            offset: 7,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![],
        };
        let select = |reasons: &[&str], sources: &[&str], since: Option<&str>, records: &[&str]| {
            let filter = Filter {
                reasons: reasons.iter().map(|s| error_class(s).unwrap()).collect(),
                sources: sources.iter().map(|s| (*s).to_owned()).collect(),
                since: since.map(|s| parse_time(s).unwrap()),
            };
            Select::new(&filter, &records.iter().map(|s| position(s).unwrap()).collect::<Vec<_>>())
        };
        assert!(select(&[], &[], None, &[]).matches(&record, Some(&meta)));
        assert!(select(&["invalid_json"], &["shop"], None, &["3:7"]).matches(&record, Some(&meta)));
        assert!(!select(&["panic"], &[], None, &[]).matches(&record, Some(&meta)));
        assert!(!select(&[], &["github"], None, &[]).matches(&record, Some(&meta)));
        assert!(!select(&[], &[], Some("1h"), &[]).matches(&record, Some(&meta)), "failed long ago");
        assert!(!select(&[], &[], None, &["3:8"]).matches(&record, Some(&meta)));
        assert!(!select(&["panic"], &[], None, &[]).matches(&record, None));
        assert!(error_class("oops").unwrap_err().contains("crash_loop"));
        assert!(position("3-7").unwrap_err().contains("PARTITION:OFFSET"));
    }
}
