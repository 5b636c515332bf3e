//! What one raw record becomes, decided without I/O: the per-source processing pipeline.
//!
//! ```text
//! parse ─▶ split ─▶ normalize ─▶ transform ─▶ filter ─▶ route (─▶ transform) ─▶ validate ─▶ serialize
//! ```
//!
//! - **parse**: the body as JSON, or as `application/x-www-form-urlencoded` fields turned into a JSON object
//!   (Twilio, Slack slash commands; a Slack interaction's `payload` field is parsed as the JSON it holds);
//! - **split**: a batch webhook (HubSpot posts a JSON array of events) becomes one event per element;
//! - **normalize**: a CloudEvents 1.0 event whose `type`, `subject` and `time` come from the source's provider
//!   ([`hookline_providers::Provider::preset`]) or its configured fields, with the `hookline*` attributes
//!   naming the raw record;
//! - **transform**: the source's VRL program, if it has one, may reshape the event, drop it or fail the
//!   webhook ([`transform`]);
//! - **filter**: event types outside the source's allow list, on its deny list, or for which its VRL
//!   `condition` is not true are dropped and counted;
//! - **route**: the event goes to the topic of every matching `[[routes]]` rule (by source, type glob and VRL
//!   `condition`), or to `topics.events`; a rule's own VRL program then runs on the event it sends;
//! - **validate**: the event against the published event schema (the attributes the webhook decides are
//!   checked, the others are valid by construction), and its `data` against the route's schema.
//!
//! A record is one unit: if any of its events fails a stage, the whole record goes to the DLQ, so a webhook is
//! never half-published. Failures here are permanent (the same record fails the same way every time), which
//! is why they go to the DLQ rather than being retried; the one exception is a VRL run stopped by its time
//! budget, which a redrive on a less busy processor may pass. Nothing here logs a body; a reason may quote
//! what a VRL program's message or a failed VRL function quotes.

mod body;
mod glob;
pub mod transform;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hookline_config::processor::{FieldSelector, Settings, SourceConfig, TimeFormat, TimeSelector};
use hookline_providers::preset::{kind, number, text, Preset};
use hookline_providers::{BodyShape, Provider};
use hookline_runtime::config::ConfigError;
use hookline_schemas::dlq::{ErrorClass, Stage};
use hookline_schemas::event::{rfc3339_millis, CloudEvent, SPEC_VERSION};
use hookline_schemas::raw::RawMeta;
use serde_json::Value;

pub use glob::Glob;
use transform::{Transformed, Vrl};

/// Why a record cannot become events. Permanent: the record goes to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind of failure.
    pub class: ErrorClass,
    /// The stage that failed.
    pub stage: Stage,
    /// A human-readable reason; never contains the body.
    pub reason: String,
}

impl Failure {
    /// A failure.
    pub fn new(class: ErrorClass, stage: Stage, reason: impl Into<String>) -> Self {
        Failure { class, stage, reason: reason.into() }
    }

    /// A VRL program or condition failed on the event.
    fn transform(reason: String) -> Failure {
        Failure::new(ErrorClass::TransformError, Stage::Transform, reason)
    }
}

/// One raw record, as the pipeline sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Its hookline metadata.
    pub meta: &'a RawMeta,
    /// Its key (the ordering key).
    pub key: Option<&'a [u8]>,
    /// The webhook body.
    pub body: &'a [u8],
    /// Raw partition.
    pub partition: i32,
    /// Raw offset.
    pub offset: i64,
    /// The W3C trace context its events carry (`traceparent`), if the webhook is traced.
    pub traceparent: Option<&'a str>,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOut {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its position in a split batch.
    pub index: Option<u32>,
    /// The CloudEvent, serialized.
    pub value: Vec<u8>,
}

/// What a record becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// These events (at least one).
    Publish(Vec<EventOut>),
    /// Nothing: every event of the record was filtered out.
    Filtered,
    /// A DLQ record.
    Fail(Failure),
}

/// A compiled `[[routes]]` rule.
struct Route {
    topic: Arc<str>,
    sources: Option<Vec<String>>,
    types: Option<Vec<Glob>>,
    condition: Option<Vrl>,
    transform: Option<Vrl>,
    data_schema: Option<(String, jsonschema::Validator)>,
}

/// A compiled source pipeline.
#[derive(Debug)]
struct SourcePipeline {
    provider: Option<&'static dyn Provider>,
    body: BodyShape,
    event_type: Option<FieldSelector>,
    subject: Option<FieldSelector>,
    time: Option<TimeSelector>,
    allow: Vec<Glob>,
    deny: Vec<Glob>,
    condition: Option<Vrl>,
    transform: Option<Vrl>,
    validate: bool,
}

impl SourcePipeline {
    /// Compiles the pipeline of source `name`; errors name the config field.
    fn new(name: &str, config: &SourceConfig, budget: Duration) -> Result<Self, ConfigError> {
        let provider = config.provider;
        let compile = |globs: &[String]| globs.iter().map(|g| Glob::new(g)).collect::<Vec<_>>();
        let filter = config.filter.clone().unwrap_or_default();
        let field = |f: &str| format!("sources.{name}.{f}");
        Ok(SourcePipeline {
            provider,
            body: {
                let shape = provider.map_or(BodyShape::JSON, |p| p.body());
                BodyShape { format: config.format.unwrap_or(shape.format), ..shape }
            },
            event_type: config.event_type.clone(),
            subject: config.subject.clone(),
            time: config.time.clone(),
            allow: compile(&filter.allow),
            deny: compile(&filter.deny),
            condition: condition(&field("filter.condition"), filter.condition.as_deref(), budget)?,
            transform: program(&field("transform"), config.transform.as_deref(), budget)?,
            validate: config.validate,
        })
    }

    fn keeps(&self, ty: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(ty))) && !self.deny.iter().any(|g| g.matches(ty))
    }
}

/// Every source's pipeline and the routes, compiled once at startup.
pub struct Pipeline {
    sources: BTreeMap<String, SourcePipeline>,
    generic: SourcePipeline,
    routes: Vec<Route>,
    default_topic: Arc<str>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("routes", &self.routes.iter().map(|r| &*r.topic).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Compiles the pipelines of `settings`: VRL programs and conditions, route schemas. The error names the
    /// config field, with VRL's diagnostic for a program that does not compile.
    pub fn new(settings: &Settings) -> Result<Pipeline, ConfigError> {
        let budget = settings.vrl_time_budget;
        let mut routes = Vec::with_capacity(settings.routes.len());
        for (i, r) in settings.routes.iter().enumerate() {
            let data_schema = match &r.data_schema {
                Some(path) => Some((
                    path.display().to_string(),
                    hookline_config::processor::load_schema(path)
                        .map_err(|e| ConfigError::field(format!("routes[{i}].data_schema"), e))?,
                )),
                None => None,
            };
            routes.push(Route {
                topic: Arc::from(r.topic.as_str()),
                sources: r.sources.clone(),
                types: r.types.as_ref().map(|t| t.iter().map(|g| Glob::new(g)).collect()),
                condition: condition(&format!("routes[{i}].condition"), r.condition.as_deref(), budget)?,
                transform: program(&format!("routes[{i}].transform"), r.transform.as_deref(), budget)?,
                data_schema,
            });
        }
        let mut sources = BTreeMap::new();
        for (name, c) in &settings.sources {
            sources.insert(name.clone(), SourcePipeline::new(name, c, budget)?);
        }
        Ok(Pipeline {
            sources,
            generic: SourcePipeline::new("", &SourceConfig { validate: true, ..SourceConfig::default() }, budget)?,
            routes,
            default_topic: Arc::from(settings.topics.events.as_str()),
        })
    }

    /// Decides what `input` becomes.
    pub fn process(&self, input: &Input<'_>) -> Decision {
        match self.events(input) {
            Ok(events) if events.is_empty() => Decision::Filtered,
            Ok(events) => Decision::Publish(events),
            Err(failure) => Decision::Fail(failure),
        }
    }

    fn events(&self, input: &Input<'_>) -> Result<Vec<EventOut>, Failure> {
        let meta = input.meta;
        let source = self.sources.get(&meta.source).unwrap_or(&self.generic);
        let parsed = body::parse(input.body, &source.body, meta.content_type.as_deref())?;
        let elements: body::Elements = if source.body.batch { body::split(parsed)? } else { vec![(None, parsed)] };
        let ordering_key = input.key.and_then(|k| std::str::from_utf8(k).ok()).filter(|k| !k.is_empty());
        let received = rfc3339_millis(meta.received_at_ms);
        let mut out = Vec::new();
        for (index, data) in elements {
            let mut value: Value = serde_json::from_str(data.get())
                .map_err(|e| Failure::new(ErrorClass::InvalidJson, Stage::Parse, format!("body is not JSON: {e}")))?;
            let fields = Fields::of(source, meta, &value)?;
            let mut event = CloudEvent {
                specversion: SPEC_VERSION.to_owned(),
                id: match index {
                    Some(i) => format!("{}/{i}", meta.dedup_key),
                    None => meta.dedup_key.clone(),
                },
                source: format!("/webhooks/{}", meta.source),
                subject: fields.subject.or_else(|| ordering_key.map(str::to_owned)),
                time: fields.time_ms.map_or_else(|| received.clone(), rfc3339_millis),
                ty: fields.ty,
                datacontenttype: "application/json".to_owned(),
                data,
                hooklinesource: meta.source.clone(),
                hooklinereceivedat: received.clone(),
                hooklinepartition: input.partition,
                hooklineoffset: input.offset.to_string(),
                hooklinededupkey: meta.dedup_key.clone(),
                hooklineindex: index,
                extensions: BTreeMap::new(),
            };
            if let Some(program) = &source.transform {
                if program.transform(&mut event, &mut value).map_err(Failure::transform)? == Transformed::Dropped {
                    continue;
                }
            }
            if !source.keeps(&event.ty) {
                continue;
            }
            if let Some(condition) = &source.condition {
                if !condition.holds(&event, &value).map_err(Failure::transform)? {
                    continue;
                }
            }
            if source.validate {
                Self::check_attributes(&event)?;
            }
            // After the transforms, which may not set it: the processor's trace context, for consumers to continue.
            if let Some(traceparent) = input.traceparent {
                event.extensions.insert("traceparent".to_owned(), Value::String(traceparent.to_owned()));
            }
            // Serialized once for every topic that takes the event as it is.
            let mut plain: Option<Vec<u8>> = None;
            for route in self.route(&meta.source, &event, &value)? {
                let (event, value) = match route.and_then(|r| r.transform.as_ref()) {
                    None => (Cow::Borrowed(&event), Cow::Borrowed(&value)),
                    Some(program) => {
                        let (mut event, mut value) = (event.clone(), value.clone());
                        if program.transform(&mut event, &mut value).map_err(Failure::transform)?
                            == Transformed::Dropped
                        {
                            continue;
                        }
                        if source.validate {
                            Self::check_attributes(&event)?;
                        }
                        (Cow::Owned(event), Cow::Owned(value))
                    }
                };
                if let Some((file, schema)) = route.and_then(|r| r.data_schema.as_ref()) {
                    let violations: Vec<String> = schema
                        .iter_errors(&value)
                        .take(3)
                        .map(|e| format!("at `{}`: {e}", e.instance_path()))
                        .collect();
                    if !violations.is_empty() {
                        return Err(Failure::new(
                            ErrorClass::SchemaViolation,
                            Stage::Validate,
                            format!("data does not satisfy {file}: {}", violations.join("; ")),
                        ));
                    }
                }
                // Every matching rule's transform and schema apply; a topic gets the event once, from the
                // first rule that sends it there.
                let topic = route.map_or_else(|| self.default_topic.clone(), |r| r.topic.clone());
                if out.iter().any(|e: &EventOut| e.topic == topic && e.index == index) {
                    continue;
                }
                let serialize = |event: &CloudEvent| {
                    serde_json::to_vec(event).map_err(|e| {
                        Failure::new(
                            ErrorClass::InvalidJson,
                            Stage::Normalize,
                            format!("cannot serialize the event: {e}"),
                        )
                    })
                };
                let value = match (&event, &plain) {
                    (Cow::Borrowed(_), Some(bytes)) => bytes.clone(),
                    (Cow::Borrowed(event), None) => plain.insert(serialize(event)?).clone(),
                    (Cow::Owned(event), _) => serialize(event)?,
                };
                out.push(EventOut { topic, index, value });
            }
        }
        Ok(out)
    }

    /// The routes an event takes: every matching rule, or the default topic (`None`) when none matches.
    fn route(&self, source: &str, event: &CloudEvent, data: &Value) -> Result<Vec<Option<&Route>>, Failure> {
        let mut matching = Vec::new();
        for r in &self.routes {
            let by_source = r.sources.as_ref().is_none_or(|s| s.iter().any(|s| s == source));
            let by_type = r.types.as_ref().is_none_or(|t| t.iter().any(|g| g.matches(&event.ty)));
            if by_source && by_type {
                let by_condition = match &r.condition {
                    Some(c) => c.holds(event, data).map_err(Failure::transform)?,
                    None => true,
                };
                if by_condition {
                    matching.push(Some(r));
                }
            }
        }
        if matching.is_empty() {
            matching.push(None);
        }
        Ok(matching)
    }

    /// Checks the attributes a webhook's content decides against the published event schema's rules for them
    /// (`schemas/json/event.v1.schema.json`): a `type` of 1 to 256 characters, a non-empty `subject`, and times
    /// in its format (years 0000 to 9999). Every other attribute is valid by construction: the source name and
    /// the dedup key were checked when the raw record was read, partitions and offsets are not negative. The
    /// tests check both claims against the schema file on generated edge cases, so this check and the schema
    /// cannot drift apart unnoticed.
    fn check_attributes(event: &CloudEvent) -> Result<(), Failure> {
        let mut violations = Vec::new();
        let type_chars = event.ty.chars().count();
        if !(1..=MAX_TYPE_CHARS).contains(&type_chars) {
            violations.push(format!("`type` has {type_chars} characters, not 1 to {MAX_TYPE_CHARS}"));
        }
        if event.subject.as_deref().is_some_and(str::is_empty) {
            violations.push("`subject` is empty".to_owned());
        }
        for (name, value) in [("time", &event.time), ("hooklinereceivedat", &event.hooklinereceivedat)] {
            if !is_timestamp(value) {
                violations.push(format!("`{name}` is {value}, outside years 0000 to 9999"));
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(ErrorClass::SchemaViolation, Stage::Validate, violations.join("; ")))
        }
    }
}

/// The longest `type` the event schema allows, in characters.
const MAX_TYPE_CHARS: usize = 256;

/// Whether `s` has the event schema's timestamp format, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_timestamp(s: &str) -> bool {
    const SHAPE: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(b, shape)| if *shape == b'0' { b.is_ascii_digit() } else { b == *shape })
}

/// The event attributes a webhook's content decides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    ty: String,
    subject: Option<String>,
    time_ms: Option<i64>,
}

impl Fields {
    /// The preset's fields, then the source's configured ones on top. A configured type that is absent is a
    /// failure; a configured subject or time that is absent falls back (to the ordering key, to the time of
    /// receipt), but a time that is present and unreadable is a failure.
    fn of(source: &SourcePipeline, meta: &RawMeta, data: &Value) -> Result<Fields, Failure> {
        let preset = source.provider.map_or(Preset::NONE, |p| p.preset(meta, data));
        let ty = match &source.event_type {
            Some(selector) => required_str("event type", selector, meta, data)?,
            None => {
                match preset.ty.map_err(|reason| Failure::new(ErrorClass::MissingField, Stage::Normalize, reason))? {
                    Some(t) => t,
                    None => format!("{}.webhook", meta.source),
                }
            }
        };
        let subject = match &source.subject {
            Some(selector) => optional_str("subject", selector, meta, data)?.or(preset.subject),
            None => preset.subject,
        };
        let time_ms = match &source.time {
            Some(t) => configured_time(t, meta, data)?.or(preset.time_ms),
            None => preset.time_ms,
        };
        Ok(Fields { ty, subject, time_ms })
    }
}

fn selected<'a>(selector: &FieldSelector, meta: &'a RawMeta, data: &'a Value) -> (String, Option<Value>) {
    match selector {
        FieldSelector::Header(h) => (format!("header `{h}`"), meta.http_header(h).map(|v| Value::String(v.to_owned()))),
        FieldSelector::JsonPointer(p) => (format!("field `{p}`"), data.pointer(p).cloned()),
    }
}

fn required_str(what: &str, selector: &FieldSelector, meta: &RawMeta, data: &Value) -> Result<String, Failure> {
    let (name, value) = selected(selector, meta, data);
    match value {
        None => Err(Failure::new(ErrorClass::MissingField, Stage::Normalize, format!("{what} {name} is absent"))),
        Some(v) => v.as_str().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).ok_or_else(|| {
            Failure::new(
                ErrorClass::InvalidField,
                Stage::Normalize,
                format!("{what} {name} is {}, not a non-empty string", kind(&v)),
            )
        }),
    }
}

fn optional_str(what: &str, selector: &FieldSelector, meta: &RawMeta, data: &Value) -> Result<Option<String>, Failure> {
    match selected(selector, meta, data) {
        (_, None) | (_, Some(Value::Null)) => Ok(None),
        (name, Some(v)) => text(&v).map(Some).ok_or_else(|| {
            Failure::new(
                ErrorClass::InvalidField,
                Stage::Normalize,
                format!("{what} {name} is {}, not a non-empty string or a number", kind(&v)),
            )
        }),
    }
}

fn configured_time(t: &TimeSelector, meta: &RawMeta, data: &Value) -> Result<Option<i64>, Failure> {
    let (name, value) = match (&t.json_pointer, &t.header) {
        (Some(p), _) => (format!("field `{p}`"), data.pointer(p).cloned()),
        (None, Some(h)) => (format!("header `{h}`"), meta.http_header(h).map(|v| Value::String(v.to_owned()))),
        (None, None) => return Ok(None),
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let parsed = match t.format {
        TimeFormat::Rfc3339 => value.as_str().and_then(hookline_schemas::event::parse_rfc3339_millis),
        TimeFormat::UnixSeconds => number(&value).and_then(|s| s.checked_mul(1000)),
        TimeFormat::UnixMillis => number(&value),
    };
    parsed.map(Some).ok_or_else(|| {
        Failure::new(
            ErrorClass::InvalidField,
            Stage::Normalize,
            format!("time {name} is not a {} time", t.format.as_str()),
        )
    })
}

/// Compiles the VRL program in the file at `path`, if any; the error names `field`.
fn program(field: &str, path: Option<&std::path::Path>, budget: Duration) -> Result<Option<Vrl>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = hookline_config::processor::load_program(path).map_err(|e| ConfigError::field(field, e))?;
    Vrl::program(&path.display().to_string(), &text, budget).map(Some).map_err(|e| ConfigError::field(field, e))
}

/// Compiles a VRL condition, if any; the error names `field`.
fn condition(field: &str, source: Option<&str>, budget: Duration) -> Result<Option<Vrl>, ConfigError> {
    let Some(source) = source else { return Ok(None) };
    Vrl::condition(field, source, budget).map(Some).map_err(|e| ConfigError::field(field, e))
}

#[cfg(test)]
mod tests;
