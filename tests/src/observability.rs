//! What the SRE surfaces in `deploy/` depend on: the metric names and label names used by the alert rules and
//! the Grafana dashboards, checked against a live `/metrics` scrape, and a real Prometheus server to run them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, get, Process};

/// Labels Prometheus adds to every scraped series (or histograms have), not exported under these names.
const TARGET_LABELS: [&str; 3] = ["job", "instance", "le"];

/// The repository's `deploy/` folder (found at run time: the test binaries are shared by clones).
pub fn deploy_dir() -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    Path::new(&manifest).join("../deploy")
}

/// The alert rules file.
pub fn rules_file() -> PathBuf {
    deploy_dir().join("prometheus/rules/hookline.rules.yml")
}

/// The Grafana dashboards, by file name.
pub fn dashboards() -> BTreeMap<String, serde_json::Value> {
    let dir = deploy_dir().join("grafana/dashboards");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("dashboard");
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.insert(path.file_name().expect("name").to_string_lossy().into_owned(), json);
        }
    }
    out
}

/// Every `expr` of a dashboard (panel targets, nested rows included), as written.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// A dashboard expression with Grafana's variables replaced by values a plain Prometheus accepts: every
/// `$var` / `${var}` selector value by `.*`, `$__rate_interval` and `$__interval` by `1m`.
pub fn substitute_variables(expr: &str) -> String {
    let mut out = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m");
    out = out.replace("$__interval", "1m").replace("${__interval}", "1m").replace("$__range", "1h");
    let mut result = String::with_capacity(out.len());
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            result.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
            }
        } else {
            while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                chars.next();
            }
        }
        result.push_str(".*");
    }
    result
}

/// The hookline metric names an expression (or a rule file's text) refers to, each with the label names it
/// matches on right after the name (`name{label="…"}`).
pub fn referenced_metrics(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("hookline_") {
        let start = i + found;
        // Not a suffix of a longer identifier, and not a recording rule (`hookline:`).
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            i = start + 1;
            continue;
        }
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let labels = out.entry(name.to_owned()).or_default();
        if bytes.get(end) == Some(&b'{') {
            if let Some(close) = closing_brace(&text[end..]) {
                labels.extend(matcher_labels(&text[end + 1..end + close]));
            }
        }
        i = end;
    }
    out
}

/// Where the `}` closing a selector that starts `text` is, quoted values skipped.
fn closing_brace(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (in_quotes, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_quotes = false,
            (true, _, _) => escaped = false,
            (false, _, '"') => in_quotes = true,
            (false, _, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Label names of a selector's matchers (`a="x", b=~"y|z"`), quoted values skipped.
fn matcher_labels(matchers: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut name = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in matchers.chars() {
        if in_quotes {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '=' | '!' | '~' => {
                if !name.is_empty() {
                    out.push(std::mem::take(&mut name));
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
            _ => name.clear(),
        }
    }
    out
}

/// The series of a `/metrics` text: sample name → label names seen on it.
pub fn exported(metrics_text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics_text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        out.entry(name.to_owned()).or_default().extend(matcher_labels(labels));
    }
    out
}

/// What is wrong with `used` (metric → labels) given the `exported` series: names with no sample, and label
/// names the metric's samples never carry. A name matches its own samples or its histogram/counter samples
/// (`_bucket`, `_count`, `_sum`, `_total`), so a description may name a histogram by its family name.
pub fn missing(
    used: &BTreeMap<String, BTreeSet<String>>,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, labels) in used {
        let candidates: Vec<&BTreeSet<String>> = ["", "_bucket", "_count", "_sum", "_total"]
            .iter()
            .filter_map(|suffix| exported.get(&format!("{name}{suffix}")))
            .collect();
        if candidates.is_empty() {
            problems.push(format!("{name}: not exported"));
            continue;
        }
        for label in labels.iter().filter(|l| !TARGET_LABELS.contains(&l.as_str())) {
            if !candidates.iter().any(|set| set.contains(label)) {
                problems.push(format!("{name}: exported without the label `{label}`"));
            }
        }
    }
    problems
}

/// A Prometheus server for one test, on a free loopback port, storage in a temporary folder; killed when
/// dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// `http://127.0.0.1:port`.
    pub url: String,
    _dir: tempfile::TempDir,
    _process: Process,
    log: PathBuf,
}

/// The Prometheus binary: `HOOKLINE_PROMETHEUS`, else `prometheus` on the PATH (Debian's package).
pub fn prometheus_binary() -> PathBuf {
    std::env::var_os("HOOKLINE_PROMETHEUS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("prometheus"))
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text) and waits until it is ready.
    pub async fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("prometheus.log");
        let port = free_port();
        let mut cmd = Command::new(prometheus_binary());
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let process = Process::spawn(cmd);
        let p = Prometheus { url: format!("http://127.0.0.1:{port}"), _dir: dir, _process: process, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if get(&format!("{}/-/ready", p.url)).await.is_ok_and(|r| r.status == 200) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus did not become ready:\n{}", p.log());
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`: its `data`, or the error Prometheus gave.
    pub async fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let reply = get(&format!("{}/api/v1/{path}", self.url)).await.map_err(|e| e.to_string())?;
        let body: serde_json::Value = serde_json::from_str(&reply.text()).map_err(|e| e.to_string())?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query: its result vector (or the error).
    pub async fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("query", promql).finish();
        let data = self.api(&format!("query?{q}")).await?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![serde_json::json!({ "metric": {}, "value": data["result"] })]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }
}

/// The numeric value of a query result sample.
pub fn sample_value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP hookline_ingress_requests Webhook requests\n\
        # TYPE hookline_ingress_requests counter\n\
        hookline_ingress_requests_total{source=\"stripe\",outcome=\"accepted\"} 3\n\
        hookline_processor_latency_seconds_bucket{source=\"stripe\",le=\"0.005\"} 1\n\
        hookline_processor_assigned_partitions 4\n";

    #[test]
    fn names_and_matcher_labels_are_found_in_promql() {
        let used = referenced_metrics(
            r#"sum by (source) (rate(hookline_ingress_requests_total{job="x",outcome=~"a|b\"}"}[5m])) / hookline_processor_assigned_partitions and hookline:recorded"#,
        );
        assert_eq!(
            used.keys().collect::<Vec<_>>(),
            ["hookline_ingress_requests_total", "hookline_processor_assigned_partitions"]
        );
        assert_eq!(used["hookline_ingress_requests_total"], BTreeSet::from(["job".to_owned(), "outcome".to_owned()]));
    }

    #[test]
    fn an_unexported_name_or_label_is_reported_and_exported_ones_are_not() {
        let exported = exported(METRICS);
        let ok = referenced_metrics(
            r#"rate(hookline_ingress_requests_total{outcome="accepted",instance="i"}[1m]) hookline_processor_latency_seconds{source="s"} hookline_processor_assigned_partitions"#,
        );
        assert_eq!(missing(&ok, &exported), Vec::<String>::new());
        let bad = referenced_metrics(
            r#"hookline_ingress_request_total hookline_ingress_requests_total{reason="x"} hookline_processor_assigned_partitions_total"#,
        );
        assert_eq!(
            missing(&bad, &exported),
            [
                "hookline_ingress_request_total: not exported",
                "hookline_ingress_requests_total: exported without the label `reason`",
                "hookline_processor_assigned_partitions_total: not exported",
            ]
        );
    }

    #[test]
    fn grafana_variables_become_values_prometheus_accepts() {
        assert_eq!(
            substitute_variables(r#"rate(x{source=~"$source",instance=~"${instance}"}[$__rate_interval])"#),
            r#"rate(x{source=~".*",instance=~".*"}[1m])"#
        );
    }
}
