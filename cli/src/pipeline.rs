//! `hookline pipeline test FILE` and `hookline pipeline run --source S`: a processor config's pipeline (parse,
//! preset, VRL transform, filter, route, validate) run offline on sample webhooks, as `vector test` and
//! `benthos test` do for their users. No Kafka, no state: what one webhook would become, and nothing else.
//!
//! Both print an outcome as one JSON document, so that what `run` prints is what a test expects:
//!
//! - the events the webhook becomes: `[{"topic": "hookline.events", "event": {…}}, …]` (`[]` when filtered);
//! - or its DLQ record's reason: `{"dlq": {"class": "transform_error", "stage": "transform", "reason": "…"}}`.
//!
//! The metadata a webhook gets at the ingress is fixed, so that outcomes are reproducible: received at
//! [`RECEIVED_AT`], stored at partition 0 offset 0, dedup key `sample` unless given.
//!
//! A test file is TOML; its paths are relative to its own folder:
//!
//! ```toml
//! config = "processor.toml"                         # the processor config whose pipeline is tested
//!
//! [[tests]]
//! name = "a charge loses the customer's e-mail"
//! source = "stripe"
//! input = "samples/charge.succeeded.json"           # the webhook body
//! expect = "samples/charge.succeeded.expected.json" # the outcome, as `hookline pipeline run` prints it
//! headers = { "content-type" = "application/json" } # optional: request headers the raw record keeps
//! key = "cus_123"                                   # optional: the ordering key
//! dedup_key = "evt_123"                             # optional
//! ```

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use hookline_pipeline::{Decision, Input, Pipeline};
use hookline_schemas::raw::{KeyOrigin, RawMeta};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::Error;

/// When every sample webhook was received: 2026-01-01T00:00:00.000Z.
pub const RECEIVED_AT: i64 = 1_767_225_600_000;

/// `hookline pipeline …`.
#[derive(Debug, clap::Subcommand)]
pub enum PipelineCommand {
    /// Run the cases of a test file through their config's pipeline and compare each outcome with the expected
    /// one, printing a diff. Exits 1 when any differs.
    Test(TestArgs),
    /// Print what the pipeline would publish for the webhook body read from stdin.
    Run(RunArgs),
}

/// `hookline pipeline test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The test file (TOML: `config`, then `[[tests]]` with `name`, `source`, `input`, `expect`).
    pub file: PathBuf,
}

/// `hookline pipeline run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The processor config. `HOOKLINE_*` variables override its fields, as for the processor.
    #[arg(long, short, env = "HOOKLINE_PROCESSOR_CONFIG", default_value = "hookline-processor.toml")]
    pub config: PathBuf,
    /// The source the webhook came to (`/webhooks/SOURCE`).
    #[arg(long)]
    pub source: String,
    /// A request header the raw record keeps, as `Name: value` (repeatable), such as `-H 'X-GitHub-Event: push'`
    /// or the `Content-Type` of a form body.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The ordering key (by default none: the event's subject comes from the preset only).
    #[arg(long)]
    pub key: Option<String>,
    /// The dedup key, which becomes the event's `id`.
    #[arg(long, default_value = "sample")]
    pub dedup_key: String,
}

/// `hookline pipeline …`.
pub fn run(cmd: &PipelineCommand) -> Result<(), Error> {
    match cmd {
        PipelineCommand::Test(args) => test(&args.file),
        PipelineCommand::Run(args) => {
            let pipeline = load(&args.config)?;
            let mut headers = Vec::new();
            for h in &args.headers {
                let (name, value) =
                    h.split_once(':').ok_or_else(|| Error::Usage(format!("`{h}` is not a header (`Name: value`)")))?;
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).map_err(|e| Error::Usage(format!("cannot read stdin: {e}")))?;
            let sample = Sample { source: &args.source, headers, key: args.key.as_deref(), dedup_key: &args.dedup_key };
            let outcome = outcome(&pipeline, &sample, &body)?;
            print!("{}", pretty(&outcome));
            Ok(())
        }
    }
}

/// A processor config's pipeline, compiled as the processor compiles it.
fn load(path: &Path) -> Result<Pipeline, Error> {
    let invalid = |source| Error::InvalidConfig { path: path.to_owned(), source };
    let settings = hookline_config::processor::Config::load(path).and_then(|c| c.validate()).map_err(invalid)?;
    Pipeline::new(&settings).map_err(invalid)
}

/// What a sample webhook carries besides its body.
#[derive(Debug)]
struct Sample<'a> {
    source: &'a str,
    headers: Vec<(String, String)>,
    key: Option<&'a str>,
    dedup_key: &'a str,
}

/// What `body`, received as `sample`, becomes.
fn outcome(pipeline: &Pipeline, sample: &Sample<'_>, body: &[u8]) -> Result<Value, Error> {
    if !hookline_schemas::is_valid_source_name(sample.source) {
        return Err(Error::Usage(format!("`{}` is not a source name", sample.source)));
    }
    let headers: Vec<(String, String)> =
        sample.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.clone())).collect();
    let meta = RawMeta {
        v: hookline_schemas::header::VERSION,
        source: sample.source.to_owned(),
        received_at_ms: RECEIVED_AT,
        dedup_key: sample.dedup_key.to_owned(),
        dedup_key_origin: KeyOrigin::Provider,
        content_type: headers.iter().find(|(name, _)| name == "content-type").map(|(_, v)| v.clone()),
        request_id: "sample".to_owned(),
        headers,
        traceparent: None,
        reprocess: None,
    };
    let input =
        Input { meta: &meta, key: sample.key.map(str::as_bytes), body, partition: 0, offset: 0, traceparent: None };
    Ok(match pipeline.process(&input) {
        Decision::Publish(events) => Value::Array(
            events
                .into_iter()
                .map(|e| {
                    let event: Value = serde_json::from_slice(&e.value).unwrap_or(Value::Null);
                    json!({ "topic": &*e.topic, "event": event })
                })
                .collect(),
        ),
        Decision::Filtered => json!([]),
        Decision::Fail(f) => {
            json!({ "dlq": { "class": f.class.as_str(), "stage": f.stage.as_str(), "reason": f.reason } })
        }
    })
}

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    config: PathBuf,
    #[serde(default)]
    tests: Vec<Case>,
}

/// One `[[tests]]` case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    input: PathBuf,
    expect: PathBuf,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    key: Option<String>,
    dedup_key: Option<String>,
}

fn test(file: &Path) -> Result<(), Error> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
    let tests: TestFile = toml::from_str(&text)
        .map_err(|e| Error::Usage(format!("{} is not a pipeline test file: {e}", file.display())))?;
    if tests.tests.is_empty() {
        return Err(Error::Usage(format!("{} has no [[tests]]", file.display())));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let pipeline = load(&dir.join(&tests.config))?;
    let mut failed = Vec::new();
    for case in &tests.tests {
        match check(&pipeline, dir, case) {
            Ok(()) => println!("test {} ... ok", case.name),
            Err(why) => {
                println!("test {} ... FAILED\n{why}", case.name);
                failed.push(case.name.as_str());
            }
        }
    }
    let passed = tests.tests.len() - failed.len();
    println!("\n{passed} passed; {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}

/// Runs one case: `Err` says how its outcome differs from the expected one.
fn check(pipeline: &Pipeline, dir: &Path, case: &Case) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(dir.join(p)).map_err(|e| format!("cannot read {}: {e}", dir.join(p).display()));
    let body = read(&case.input)?;
    let expected: Value = serde_json::from_slice(&read(&case.expect)?)
        .map_err(|e| format!("{} is not JSON: {e}", dir.join(&case.expect).display()))?;
    let sample = Sample {
        source: &case.source,
        headers: case.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        key: case.key.as_deref(),
        dedup_key: case.dedup_key.as_deref().unwrap_or("sample"),
    };
    let actual = outcome(pipeline, &sample, &body).map_err(|e| e.to_string())?;
    if actual == expected {
        return Ok(());
    }
    let (expected, actual) = (pretty(&sorted(expected)), pretty(&sorted(actual)));
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    Err(diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("expected ({})", case.expect.display()), "actual")
        .to_string())
}

/// `value` with every object's keys in order, so that a diff shows only what differs.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case passes when its outcome is the expected one, and fails with a diff naming what differs.
    #[test]
    fn a_case_passes_on_its_outcome_and_fails_with_a_diff() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        file("drop-secret.vrl", "del(.data.secret)\n.team = \"payments\"\n");
        let program = dir.path().join("drop-secret.vrl");
        file("processor.toml", &format!("[sources.shop]\ntransform = '{}'\n", program.display()));
        file("order.json", r#"{"id": 7, "secret": "s3cr3t", "total": 12}"#);
        let pipeline = load(&dir.path().join("processor.toml")).unwrap();
        let sample = Sample { source: "shop", headers: Vec::new(), key: Some("order-7"), dedup_key: "d-7" };
        let outcome = outcome(&pipeline, &sample, br#"{"id": 7, "secret": "s3cr3t", "total": 12}"#).unwrap();
        assert_eq!(outcome[0]["topic"], "hookline.events");
        assert_eq!(outcome[0]["event"]["data"], json!({"id": 7, "total": 12}));
        assert_eq!(outcome[0]["event"]["team"], "payments");
        assert_eq!(outcome[0]["event"]["id"], "d-7");
        assert_eq!(outcome[0]["event"]["hooklinereceivedat"], "2026-01-01T00:00:00.000Z");

        let case = Case {
            name: "order".into(),
            source: "shop".into(),
            input: "order.json".into(),
            expect: "expected.json".into(),
            headers: BTreeMap::new(),
            key: Some("order-7".into()),
            dedup_key: Some("d-7".into()),
        };
        file("expected.json", &outcome.to_string());
        assert_eq!(check(&pipeline, dir.path(), &case), Ok(()));

        let mut wrong = outcome.clone();
        wrong[0]["event"]["data"]["total"] = json!(13);
        file("expected.json", &wrong.to_string());
        let diff = check(&pipeline, dir.path(), &case).unwrap_err();
        assert!(diff.contains("-        \"total\": 13") && diff.contains("+        \"total\": 12"), "{diff}");
        assert_eq!(
            diff.lines()
                .filter(|l| l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++"))
                .count(),
            2,
            "{diff}"
        );
    }

    /// A webhook the pipeline fails is its DLQ reason; one it filters out is no event.
    #[test]
    fn failures_and_filtered_webhooks_have_their_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("processor.toml");
        std::fs::write(&config, "[sources.shop]\nfilter = { condition = 'to_int!(.data.total) > 10' }\n").unwrap();
        let pipeline = load(&config).unwrap();
        let sample = Sample { source: "shop", headers: Vec::new(), key: None, dedup_key: "d" };
        assert_eq!(outcome(&pipeline, &sample, br#"{"total": 3}"#).unwrap(), json!([]));
        let failed = outcome(&pipeline, &sample, b"not json").unwrap();
        assert_eq!(
            (failed["dlq"]["class"].as_str(), failed["dlq"]["stage"].as_str()),
            (Some("invalid_json"), Some("parse"))
        );
        let failed = outcome(&pipeline, &sample, br#"{"total": "many"}"#).unwrap();
        assert_eq!(failed["dlq"]["class"], "transform_error", "{failed}");
    }
}
