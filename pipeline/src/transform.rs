//! VRL (the Vector Remap Language, <https://vrl.dev>) in the pipeline: a source's or route's `transform`
//! program, and the `condition` expressions of filters and routes.
//!
//! A program sees the event as `.`, as it would be published: its CloudEvents attributes (`type`, `subject`,
//! `id`, `time`, the `hookline*` ones…) and `data`, the parsed webhook. What it leaves in `.` is the event:
//!
//! - `data`, `type` and `subject` are taken as it left them (`type` a non-empty string; `subject` a string,
//!   or removed);
//! - any other member it adds is an extension attribute: a name of 1 to 32 characters `a-z0-9` not starting
//!   with `hookline`, a string, boolean, integer (32-bit, as CloudEvents has it) or timestamp value; one set to
//!   `null` is left out;
//! - the attributes hookline sets (`specversion`, `id`, `source`, `time`, `datacontenttype`, `hookline*`, and
//!   `traceparent` on a traced event) must come out as they went in: they tie the event to its webhook, and consumers deduplicate on `id`;
//! - `abort` drops the event; any runtime error (a failed `!` call, `assert!(false, "why")`) fails the
//!   webhook into the DLQ with VRL's message.
//!
//! Programs are compiled once, at startup; an error is VRL's own diagnostic, naming the file, line and column.
//! A run is checked against its time budget between expressions and stopped when the budget is spent. VRL has
//! no loops and no recursion, so a run is bounded by the program and the event's size anyway; the budget
//! turns an expensive program into DLQ records rather than a stalled partition. The functions that reach the
//! network, the environment or the host are not compiled into hookline (`http_request`, `dns_lookup`,
//! `get_env_var`, `get_hostname`…), and `log` is left out so that a body cannot reach the logs.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use hookline_schemas::event::CloudEvent;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{ExpressionError, Function, Program, TargetValue, TimeZone};
use vrl::value::{KeyString, ObjectMap, Secrets, Value};

/// Standard-library functions a program may not call, although compiled in: `log` writes to the processor's
/// log, where bodies must not go.
const LEFT_OUT: &[&str] = &["log"];

/// VRL's standard library, less [`LEFT_OUT`].
fn functions() -> Vec<Box<dyn Function>> {
    vrl::stdlib::all().into_iter().filter(|f| !LEFT_OUT.contains(&f.identifier())).collect()
}

/// A compiled VRL program or condition.
pub struct Vrl {
    /// Where it comes from, in messages: its file, or the config field of a condition.
    origin: String,
    program: Program,
    budget: Duration,
    /// Times without an offset are read as UTC, whatever the host's time zone.
    utc: TimeZone,
}

impl std::fmt::Debug for Vrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vrl").field("origin", &self.origin).field("budget", &self.budget).finish_non_exhaustive()
    }
}

/// How a run ended.
enum Ended {
    /// It finished: the value of its last expression, and `.`.
    Done { result: Value, event: Value },
    /// It called `abort`.
    Aborted,
}

/// What a transform made of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Transformed {
    /// The event, changed as the program left it.
    Kept,
    /// The program called `abort`.
    Dropped,
}

impl Vrl {
    /// Compiles a program read from `origin`. The error is VRL's diagnostic, with `origin:line:column`.
    pub fn program(origin: &str, source: &str, budget: Duration) -> Result<Vrl, String> {
        let functions = functions();
        let compiled = vrl::compiler::compile(source, &functions).map_err(|diagnostics| {
            let report = vrl::diagnostic::Formatter::new(source, diagnostics).to_string();
            format!("{origin} does not compile:{}", report.replace("┌─ :", &format!("┌─ {origin}:")))
        })?;
        let utc = TimeZone::parse("UTC").ok_or("VRL does not know the time zone UTC")?;
        Ok(Vrl { origin: origin.to_owned(), program: compiled.program, budget, utc })
    }

    /// Compiles a condition, an expression that must give a boolean.
    pub fn condition(origin: &str, source: &str, budget: Duration) -> Result<Vrl, String> {
        let vrl = Vrl::program(origin, source, budget)?;
        let kind = vrl.program.final_type_info().result.kind().clone();
        if kind.contains_boolean() {
            Ok(vrl)
        } else {
            Err(format!("{origin} gives {kind}, not a boolean: a condition must be true or false"))
        }
    }

    /// Runs the program on `event` (whose parsed `data` is `data`), and applies what it left in `.`.
    pub fn transform(&self, event: &mut CloudEvent, data: &mut serde_json::Value) -> Result<Transformed, String> {
        match self.run(to_vrl(event, data))? {
            Ended::Aborted => Ok(Transformed::Dropped),
            Ended::Done { event: out, .. } => {
                apply(event, data, out).map_err(|e| format!("{}: {e}", self.origin))?;
                Ok(Transformed::Kept)
            }
        }
    }

    /// Evaluates the condition on `event`. A condition that aborts is false; one that does not give a boolean
    /// is an error.
    pub fn holds(&self, event: &CloudEvent, data: &serde_json::Value) -> Result<bool, String> {
        match self.run(to_vrl(event, data))? {
            Ended::Aborted => Ok(false),
            Ended::Done { result: Value::Boolean(b), .. } => Ok(b),
            Ended::Done { result, .. } => Err(format!("{} gave {}, not a boolean", self.origin, result.kind_str())),
        }
    }

    fn run(&self, event: Value) -> Result<Ended, String> {
        let deadline = Instant::now() + self.budget;
        let mut control = || if Instant::now() < deadline { ControlFlow::Continue(()) } else { ControlFlow::Break(()) };
        let mut target =
            TargetValue { value: event, metadata: Value::Object(ObjectMap::new()), secrets: Secrets::new() };
        let ran = catch_unwind(AssertUnwindSafe(|| {
            Runtime::default().resolve_with_control(&mut target, &self.program, &self.utc, &mut control)
        }));
        match ran {
            Ok(Ok(result)) => Ok(Ended::Done { result, event: target.value }),
            Ok(Err(Terminate::Abort(ExpressionError::Abort { .. }))) => Ok(Ended::Aborted),
            Ok(Err(Terminate::Interrupted)) => Err(format!(
                "{}: stopped: it ran past its time budget of {:?} (`vrl.time_budget_ms`)",
                self.origin, self.budget
            )),
            Ok(Err(e)) => Err(format!("{}: {e}", self.origin)),
            Err(_) => Err(format!("{}: VRL failed inside a function on this event (a panic)", self.origin)),
        }
    }
}

/// The attributes hookline sets and a program must leave as they are, with their values on `event`.
fn fixed_attributes(event: &CloudEvent) -> [(&'static str, Value); 11] {
    let text = |s: &str| Value::from(s);
    [
        ("specversion", text(&event.specversion)),
        ("id", text(&event.id)),
        ("source", text(&event.source)),
        ("time", text(&event.time)),
        ("datacontenttype", text(&event.datacontenttype)),
        ("hooklinesource", text(&event.hooklinesource)),
        ("hooklinereceivedat", text(&event.hooklinereceivedat)),
        ("hooklinepartition", Value::from(i64::from(event.hooklinepartition))),
        ("hooklineoffset", text(&event.hooklineoffset)),
        ("hooklinededupkey", text(&event.hooklinededupkey)),
        ("hooklineindex", event.hooklineindex.map_or(Value::Null, |i| Value::from(i64::from(i)))),
    ]
}

/// `event` as a VRL object, `data` included.
fn to_vrl(event: &CloudEvent, data: &serde_json::Value) -> Value {
    let mut object = ObjectMap::new();
    for (name, value) in fixed_attributes(event) {
        if !value.is_null() {
            object.insert(KeyString::from(name), value);
        }
    }
    object.insert(KeyString::from("type"), Value::from(event.ty.as_str()));
    if let Some(subject) = &event.subject {
        object.insert(KeyString::from("subject"), Value::from(subject.as_str()));
    }
    for (name, value) in &event.extensions {
        object.insert(KeyString::from(name.as_str()), Value::from(value));
    }
    object.insert(KeyString::from("data"), from_json(data));
    Value::Object(object)
}

/// A JSON value as VRL's, with VRL's own rules (an integer beyond `i64` becomes a string), without the
/// intermediate copy `Value::from` makes.
fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.is_f64()) {
            (Some(i), _) => Value::Integer(i),
            (None, true) => Value::from_f64_or_zero(n.as_f64().unwrap_or_default()),
            (None, false) => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(members) => {
            Value::Object(members.iter().map(|(k, v)| (KeyString::from(k.as_str()), from_json(v))).collect())
        }
    }
}

/// A VRL value as JSON: text as text (lossy for bytes that are not UTF-8), timestamps in VRL's RFC 3339.
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => {
            serde_json::Number::from_f64(f.into_inner()).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Object(members) => {
            serde_json::Value::Object(members.iter().map(|(k, v)| (k.as_str().to_owned(), to_json(v))).collect())
        }
        Value::Bytes(_) | Value::String(_) => {
            serde_json::Value::String(v.to_str_lossy().map(std::borrow::Cow::into_owned).unwrap_or_default())
        }
        Value::Regex(_) | Value::Timestamp(_) => serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
    }
}

/// Makes `event` and `data` what the program left in `.`, or says why that is not an event.
fn apply(event: &mut CloudEvent, data: &mut serde_json::Value, out: Value) -> Result<(), String> {
    let Value::Object(mut out) = out else {
        return Err(format!("it left `.` as {}, not an object", out.kind_str()));
    };
    for (name, before) in fixed_attributes(event) {
        let after = out.remove(name).unwrap_or(Value::Null);
        let same = match (after.to_str(), before.to_str()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => after == before,
            _ => false,
        };
        if !same {
            return Err(format!("it changed `{name}`, which hookline sets"));
        }
    }
    let ty = out.remove("type").and_then(|t| t.to_str().filter(|t| !t.trim().is_empty()).map(str::to_owned));
    let Some(ty) = ty else {
        return Err("it left `type` other than a non-empty string".to_owned());
    };
    let subject = match out.remove("subject") {
        None | Some(Value::Null) => None,
        Some(other) => match other.to_str() {
            Some(s) if !s.is_empty() => Some(s.to_owned()),
            _ => return Err("it left `subject` other than a non-empty string".to_owned()),
        },
    };
    let new_data = match out.remove("data") {
        Some(d) => to_json(&d),
        None => return Err("it removed `data` (set it to null for an event without data)".to_owned()),
    };
    let mut extensions = std::collections::BTreeMap::new();
    for (name, value) in out {
        let name = name.as_str();
        if !(1..=32).contains(&name.len()) || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(format!("it set `{name}`: an extension attribute's name is 1 to 32 characters of a-z and 0-9"));
        }
        if name.starts_with("hookline") {
            return Err(format!("it set `{name}`: `hookline*` attributes are hookline's"));
        }
        let value = match value {
            Value::Null => continue,
            Value::Boolean(b) => serde_json::Value::Bool(b),
            Value::Integer(i) if i32::try_from(i).is_ok() => serde_json::Value::from(i),
            v @ (Value::Bytes(_) | Value::String(_) | Value::Timestamp(_)) => {
                serde_json::to_value(&v).map_err(|e| format!("its `{name}` is not JSON: {e}"))?
            }
            other => {
                return Err(format!(
                    "it set `{name}` to {}: an extension attribute is a string, boolean, 32-bit integer or timestamp",
                    other.kind_str()
                ))
            }
        };
        extensions.insert(name.to_owned(), value);
    }
    // The distributed-tracing extension is hookline's too: it ties the event to the webhook's trace.
    for name in ["traceparent", "tracestate"] {
        if extensions.get(name) != event.extensions.get(name) {
            return Err(format!("it changed `{name}`, which hookline sets"));
        }
    }
    let raw = serde_json::value::to_raw_value(&new_data).map_err(|e| format!("its `data` is not JSON: {e}"))?;
    event.ty = ty;
    event.subject = subject;
    event.data = raw;
    event.extensions = extensions;
    *data = new_data;
    Ok(())
}
