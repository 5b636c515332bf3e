//! What the fuzz targets share: the format their request inputs are written in, and the ingress sources and
//! processor pipeline they drive, each built from a config the way the binaries build theirs.
//!
//! A request input is byte 0, which picks the source (modulo their number), then an HTTP/1.1-like message:
//! `METHOD TARGET` on the first line, `Name: value` lines, an empty line, and the body (every byte left, as it
//! is). The seeds in `fuzz/seeds/` are real signed requests in this format (`examples/seeds.rs` writes them), so
//! the fuzzer starts from requests that pass verification and mutates them from there.

use std::sync::{Arc, LazyLock};

use hookline_config::ingress::Source;
use hookline_providers::ALL;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

/// The clock of every verification: the samples' time, so that the seeds' timestamps are fresh.
pub const NOW_SECS: i64 = 1_700_000_000;

/// The public URL sources are reached at (Twilio signs it).
pub const BASE_URL: &str = "https://hooks.example.com";

/// A request, parsed from a fuzz input.
#[derive(Debug)]
pub struct Request {
    /// Picks the source.
    pub selector: u8,
    /// Its method.
    pub method: Method,
    /// Its target.
    pub uri: Uri,
    /// Its headers, in order, repeated ones included.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

impl Request {
    /// Reads a fuzz input; `None` when the request line is unusable (hyper would refuse such a request before
    /// any of hookline's code runs). Header lines whose name or value HTTP does not allow are skipped for the
    /// same reason.
    pub fn parse(data: &[u8]) -> Option<Request> {
        let (&selector, rest) = data.split_first()?;
        let (line, mut rest) = split_line(rest)?;
        let line = std::str::from_utf8(line).ok()?;
        let (method, target) = line.split_once(' ')?;
        let method = Method::from_bytes(method.as_bytes()).ok()?;
        let uri: Uri = target.parse().ok()?;
        let mut headers = HeaderMap::new();
        loop {
            let (line, after) = split_line(rest)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                headers.append(name, value);
            }
        }
        Some(Request { selector, method, uri, headers, body: rest.to_vec() })
    }

    /// Writes a request in the input format.
    pub fn encode(selector: u8, method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
        let mut out = vec![selector];
        out.extend_from_slice(format!("{method} {target}\n").as_bytes());
        for (name, value) in headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    /// The request as a verifier sees it, at [`NOW_SECS`].
    pub fn view(&self) -> hookline_providers::verify::Request<'_> {
        hookline_providers::verify::Request {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: &self.body,
            now_secs: NOW_SECS,
        }
    }

    /// The source this request goes to.
    pub fn source(&self) -> &'static Source {
        let sources = &*SOURCES;
        &sources[usize::from(self.selector) % sources.len()]
    }
}

fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|b| *b == b'\n')?;
    Some((&data[..end], &data[end + 1..]))
}

/// The ingress sources the targets verify against: one per provider (with its sample settings) and the generic
/// `hmac` (signing a timestamp and an id), `bearer` and `basic` schemes, in the order of their names.
pub static SOURCES: LazyLock<Vec<Arc<Source>>> = LazyLock::new(|| {
    let settings =
        hookline_runtime::config::from_str_with_env::<hookline_config::ingress::Config>(&ingress_config(), Vec::new())
            .and_then(hookline_config::ingress::Config::validate)
            .unwrap_or_else(|e| panic!("the fuzz ingress config is invalid: {e}"));
    settings.sources.into_values().collect()
});

/// The TOML of [`SOURCES`].
pub fn ingress_config() -> String {
    let mut toml = String::new();
    for p in ALL {
        let name = p.name();
        let settings = p.sample_settings(&format!("{BASE_URL}/webhooks/{name}"));
        toml.push_str(&format!("[sources.{name}.verify]\nscheme = \"{name}\"\n{settings}\n\n"));
    }
    toml.push_str(
        r#"
[sources.hmac.verify]
scheme = "hmac"
header = "X-Signature"
prefix = "sha256="
template = "{id}.{timestamp}.{body}"
timestamp_header = "X-Timestamp"
id_header = "X-Id"
secrets = [{ value = "fuzz-secret" }, { value = "fuzz-secret-2" }]

[sources.bearer.verify]
scheme = "bearer"
secrets = [{ value = "fuzz-token" }]

[sources.basic.verify]
scheme = "basic"
secrets = [{ value = "hookline:fuzz-password" }]
"#,
    );
    toml
}

/// The processor's pipeline the `pipeline` target runs: one source per provider (`provider = NAME`), and
/// `generic`, which takes its type, subject and time from JSON pointers, with a route and a filter.
pub static PIPELINE: LazyLock<hookline_processor::fuzzing::Pipeline> = LazyLock::new(|| {
    let settings = hookline_runtime::config::from_str_with_env::<hookline_config::processor::Config>(
        &processor_config(),
        Vec::new(),
    )
    .and_then(hookline_config::processor::Config::validate)
    .unwrap_or_else(|e| panic!("the fuzz processor config is invalid: {e}"));
    hookline_processor::fuzzing::Pipeline::new(&settings)
        .unwrap_or_else(|e| panic!("the fuzz processor pipeline does not compile: {e}"))
});

/// The processor's source names, in the order a pipeline input's first byte picks them.
pub static PIPELINE_SOURCES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| ALL.iter().map(|p| p.name()).chain(["generic"]).collect());

/// The TOML of [`PIPELINE`].
pub fn processor_config() -> String {
    let mut toml = String::from("[state]\ndir = \"/nonexistent/hookline-fuzz\"\n\n");
    for p in ALL {
        toml.push_str(&format!("[sources.{0}]\nprovider = \"{0}\"\n\n", p.name()));
    }
    toml.push_str(
        r#"
[sources.generic]
event_type = { json_pointer = "/type" }
subject = { json_pointer = "/data/id" }
time = { json_pointer = "/created", format = "unix_seconds" }
filter = { deny = ["*.ignored"] }

[[routes]]
topic = "hookline.fuzz.routed"
sources = ["generic", "stripe"]
types = ["charge.*"]
"#,
    );
    toml
}

impl Request {
    /// The processor source a pipeline input goes to (byte 0 picks it among [`PIPELINE_SOURCES`]).
    pub fn pipeline_source(&self) -> &'static str {
        let sources = &*PIPELINE_SOURCES;
        sources[usize::from(self.selector) % sources.len()]
    }

    /// The `hookline-meta` header the ingress would write on the raw record of this request to `source`: its
    /// content type and its headers (those that are text) come from the request.
    pub fn raw_meta(&self, source: &str) -> Vec<u8> {
        let text = |v: &HeaderValue| v.to_str().ok().map(str::to_owned);
        let meta = hookline_schemas::raw::RawMeta {
            v: hookline_schemas::header::VERSION,
            source: source.to_owned(),
            received_at_ms: NOW_SECS * 1000,
            dedup_key: "fuzz-dedup-key".to_owned(),
            dedup_key_origin: hookline_schemas::raw::KeyOrigin::Provider,
            content_type: self.headers.get(http::header::CONTENT_TYPE).and_then(text),
            request_id: "fuzz-request".to_owned(),
            headers: self.headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), text(v)?))).collect(),
            traceparent: None,
            reprocess: None,
        };
        meta.to_header().1
    }
}
