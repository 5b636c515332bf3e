//! `hookline config check FILE`: loads a config exactly as `hookline-ingress` or `hookline-processor` loads it
//! (the file, then the `HOOKLINE_*` and `KAFKA_BROKERS` environment overrides, then validation) and prints
//! what it means: for an ingress, what each source accepts; for a processor, its topics, group, state and
//! routes.
//!
//! Secret values are never printed, only their ids: the description is built from the validated settings,
//! where a secret is only reachable through [`hookline_providers::verify::Verifier::secret_ids`], and never
//! includes the pass-through `kafka.client` properties (which may hold SASL passwords).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use hookline_runtime::config::ConfigError;

use crate::Error;

/// `hookline config …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file as the binaries would, and print what each source will accept. Exits 1 when the
    /// config is invalid, printing `FILE: invalid: <error naming the field>` to stderr.
    Check(CheckArgs),
}

/// `hookline config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file. `HOOKLINE_*` variables override its fields, as for the binaries.
    pub file: PathBuf,
    /// Which binary's config it is. Default: `ingress` if it has `[sources.NAME.verify]` tables, else
    /// `processor`.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
}

/// Which binary a config file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// `hookline-ingress`.
    Ingress,
    /// `hookline-processor`.
    Processor,
}

/// A validated config of either binary.
#[derive(Debug)]
pub enum Loaded {
    /// An ingress config.
    Ingress(hookline_config::ingress::Settings),
    /// A processor config.
    Processor(hookline_config::processor::Settings),
}

/// `hookline config …`.
pub fn run(cmd: &ConfigCommand) -> Result<(), Error> {
    let ConfigCommand::Check(args) = cmd;
    let loaded =
        load(&args.file, args.kind).map_err(|source| Error::InvalidConfig { path: args.file.clone(), source })?;
    print!("{}", describe(&args.file, &loaded));
    Ok(())
}

/// Loads and validates `path` as the binary of `kind` does (detected when `None`, see [`detect`]).
pub fn load(path: &Path, kind: Option<Kind>) -> Result<Loaded, ConfigError> {
    let kind = match kind {
        Some(k) => k,
        None => detect(&hookline_runtime::config::load::<toml::Table>(path, std::env::vars())?),
    };
    Ok(match kind {
        Kind::Ingress => Loaded::Ingress(hookline_config::ingress::Config::load(path)?.validate()?),
        Kind::Processor => {
            let settings = hookline_config::processor::Config::load(path)?.validate()?;
            // As the processor does at startup: its VRL programs and conditions must compile.
            hookline_pipeline::Pipeline::new(&settings)?;
            Loaded::Processor(settings)
        }
    })
}

/// `ingress` if any `[sources.NAME]` has a `verify` table (every ingress source must), else `processor`.
pub fn detect(config: &toml::Table) -> Kind {
    let has_verify = config
        .get("sources")
        .and_then(toml::Value::as_table)
        .is_some_and(|sources| sources.values().any(|s| s.get("verify").is_some()));
    if has_verify {
        Kind::Ingress
    } else {
        Kind::Processor
    }
}

/// What `config check` prints for a valid config.
pub fn describe(path: &Path, loaded: &Loaded) -> String {
    match loaded {
        Loaded::Ingress(s) => describe_ingress(path, s),
        Loaded::Processor(s) => describe_processor(path, s),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn list_or(items: Option<Vec<String>>, none: &str) -> String {
    match items {
        Some(items) if !items.is_empty() => items.join(", "),
        _ => none.to_owned(),
    }
}

// `write!` to a String cannot fail; the results are ignored with `let _`.
fn describe_ingress(path: &Path, s: &hookline_config::ingress::Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: ok (ingress, {})", path.display(), plural(s.sources.len(), "source", "sources"));
    let _ = writeln!(out, "raw topic: {} ({} partitions when created)", s.raw_topic, s.raw_partitions);
    if let Some(q) = &s.quarantine {
        let _ = writeln!(out, "quarantine topic: {} ({} partitions when created)", q.topic, q.partitions);
    }
    for (name, src) in &s.sources {
        let _ = writeln!(out);
        let _ = writeln!(out, "source {name}");
        let mut field = |label: &str, value: String| {
            let _ = writeln!(out, "  {:<15}{value}", format!("{label}:"));
        };
        field("accepts", format!("POST /webhooks/{name}"));
        if let Some(c) = &src.challenge {
            field("challenge", format!("GET /webhooks/{name}?{}=…", c.param));
        }
        field("scheme", src.verifier.scheme_name().to_owned());
        field("secret ids", list_or(Some(src.verifier.secret_ids()), "(none)"));
        field("body limit", format!("{} bytes", src.max_body_bytes));
        field("dedup key", src.dedup_key.as_ref().map_or("sha256 of the body".to_owned(), ToString::to_string));
        field("ordering key", src.ordering_key.as_ref().map_or("the dedup key".to_owned(), ToString::to_string));
        field("content types", list_or(src.content_types.clone(), "any"));
        field(
            "rate limit",
            src.rate_limit.as_ref().map_or("none".to_owned(), |r| format!("{}/s, burst {}", r.per_second, r.burst)),
        );
        field(
            "in flight",
            src.max_in_flight.map_or(format!("{} (server.max_in_flight)", s.max_in_flight), |n| n.to_string()),
        );
        field(
            "allowed IPs",
            list_or(src.allowed_ips.as_ref().map(|l| l.iter().map(ToString::to_string).collect()), "any"),
        );
        field("ack budget", format!("{} ms", src.ack_budget.as_millis()));
        field("raw topic", s.raw_topic.clone());
    }
    out
}

fn describe_processor(path: &Path, s: &hookline_config::processor::Settings) -> String {
    let mut out = String::new();
    let t = &s.topics;
    let _ = writeln!(out, "{}: ok (processor, {})", path.display(), plural(s.sources.len(), "source", "sources"));
    let _ = writeln!(out, "topics:");
    let _ = writeln!(out, "  raw:     {} ({} partitions when created)", t.raw, t.raw_partitions);
    let _ = writeln!(out, "  events:  {}", s.event_topics().join(", "));
    let _ = writeln!(out, "  dlq:     {}", t.dlq);
    let _ = writeln!(out, "  state:   {}", t.state);
    let _ = writeln!(out, "consumer group: {}", s.consumer.group_id);
    let _ = writeln!(out, "state dir:      {}", s.state_dir.display());
    let _ = writeln!(out, "dedup window:   {} s (sources not listed)", s.dedup_window.as_secs());
    for (name, src) in &s.sources {
        let _ = writeln!(out);
        let _ = writeln!(out, "source {name}");
        let _ = writeln!(
            out,
            "  provider:      {}",
            src.provider.map_or(hookline_config::processor::GENERIC, |p| p.name())
        );
        let _ = writeln!(out, "  dedup window:  {} s", s.window_of(name).as_secs());
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "routes:");
    for r in &s.routes {
        let sources = r.sources.as_ref().map_or("any source".to_owned(), |l| format!("sources {}", l.join(", ")));
        let types = r.types.as_ref().map_or("any type".to_owned(), |l| format!("types {}", l.join(", ")));
        let schema = r.data_schema.as_ref().map(|p| format!("; data schema {}", p.display())).unwrap_or_default();
        let _ = writeln!(out, "  {} ← {sources}; {types}{schema}", r.topic);
    }
    let _ = writeln!(out, "  {} ← events no route matches", t.events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::{Cli, Command};

    const SECRET: &str = "whsec_DISTINCTIVE-s3cr3t-9f2c";
    const TOKEN: &str = "verify-token-DISTINCTIVE-77aa";
    const PASSWORD: &str = "sasl-password-DISTINCTIVE-31e0";

    fn ingress_toml() -> String {
        format!(
            r#"
            [kafka]
            brokers = "127.0.0.1:9092"
            client = {{ "sasl.password" = "{PASSWORD}" }}
            [topics]
            raw = "acme.raw"
            raw_partitions = 6
            [sources.shop]
            max_body_bytes = 4096
            dedup_key = {{ header = "X-Event-Id" }}
            content_types = ["application/json"]
            rate_limit = {{ per_second = 50, burst = 100 }}
            max_in_flight = 8
            ack_budget_ms = 300
            allowed_ips = ["203.0.113.0/24"]
            challenge = {{ param = "challenge", token_param = "token", token = {{ value = "{TOKEN}" }} }}
            [sources.shop.verify]
            scheme = "hmac"
            header = "X-Signature"
            secrets = [{{ value = "{SECRET}", id = "2025-q3" }}, {{ value = "{SECRET}-old" }}]
            [sources.gh.verify]
            scheme = "github"
            secrets = [{{ value = "{SECRET}" }}]
            "#
        )
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn check_parses_the_file_and_the_kind() {
        let cli = Cli::try_parse_from(["hookline", "config", "check", "a.toml", "--kind", "processor"]).unwrap();
        let Command::Config(ConfigCommand::Check(args)) = cli.command else { panic!("not config check") };
        assert_eq!(args.file, PathBuf::from("a.toml"));
        assert_eq!(args.kind, Some(Kind::Processor));
        let cli = Cli::try_parse_from(["hookline", "config", "check", "a.toml"]).unwrap();
        let Command::Config(ConfigCommand::Check(args)) = cli.command else { panic!("not config check") };
        assert_eq!(args.kind, None);
    }

    #[test]
    fn the_kind_is_detected_from_verify_tables() {
        let t = |s: &str| s.parse::<toml::Table>().unwrap();
        assert_eq!(detect(&t(&ingress_toml())), Kind::Ingress);
        assert_eq!(detect(&t("[sources.shop]\nprovider = 'shopify'\n")), Kind::Processor);
        assert_eq!(detect(&t("")), Kind::Processor);
    }

    #[test]
    fn an_ingress_config_is_described_per_source_and_never_prints_secrets() {
        let f = write(&ingress_toml());
        let loaded = load(f.path(), None).unwrap();
        assert!(matches!(loaded, Loaded::Ingress(_)));
        let out = describe(Path::new("ingress.toml"), &loaded);
        for secret in [SECRET, TOKEN, PASSWORD, "DISTINCTIVE"] {
            assert!(!out.contains(secret), "a secret was printed:\n{out}");
        }
        assert!(!format!("{loaded:?}").contains("s3cr3t"), "Debug of the settings shows a secret");
        let expected_shop = "\
source shop
  accepts:       POST /webhooks/shop
  challenge:     GET /webhooks/shop?challenge=…
  scheme:        hmac
  secret ids:    2025-q3, 1
  body limit:    4096 bytes
  dedup key:     header x-event-id
  ordering key:  the dedup key
  content types: application/json
  rate limit:    50/s, burst 100
  in flight:     8
  allowed IPs:   203.0.113.0/24
  ack budget:    300 ms
  raw topic:     acme.raw
";
        assert!(
            out.starts_with("ingress.toml: ok (ingress, 2 sources)\nraw topic: acme.raw (6 partitions when created)\n")
        );
        assert!(out.contains(expected_shop), "{out}");
        assert!(out.contains("source gh\n  accepts:       POST /webhooks/gh\n  scheme:        github\n"), "{out}");
        assert!(out.contains("  dedup key:     provider header x-github-delivery\n"), "{out}");
        assert!(out.contains("  ordering key:  preset github entity\n"), "{out}");
        assert!(out.contains("  in flight:     1024 (server.max_in_flight)\n"), "{out}");
    }

    #[test]
    fn a_processor_config_lists_topics_group_windows_and_routes() {
        let f = write(
            r#"
            [topics]
            raw = "acme.raw"
            raw_partitions = 4
            [consumer]
            group_id = "acme-processor"
            [state]
            dir = "/var/lib/hookline"
            [sources.stripe]
            provider = "stripe"
            [sources.hooks]
            provider = "standard_webhooks"
            dedup_window_secs = 3600
            [[routes]]
            topic = "billing"
            sources = ["stripe"]
            types = ["invoice.*", "charge.*"]
            "#,
        );
        let loaded = load(f.path(), None).unwrap();
        let out = describe(Path::new("processor.toml"), &loaded);
        assert_eq!(
            out,
            "\
processor.toml: ok (processor, 2 sources)
topics:
  raw:     acme.raw (4 partitions when created)
  events:  hookline.events, billing
  dlq:     hookline.dlq
  state:   hookline.state
consumer group: acme-processor
state dir:      /var/lib/hookline
dedup window:   604800 s (sources not listed)

source hooks
  provider:      standard_webhooks
  dedup window:  3600 s

source stripe
  provider:      stripe
  dedup window:  604800 s

routes:
  billing ← sources stripe; types invoice.*, charge.*
  hookline.events ← events no route matches
"
        );
    }

    #[test]
    fn an_invalid_config_fails_naming_the_field_without_its_secret() {
        let f = write(&ingress_toml().replace("max_body_bytes = 4096", "max_body_bytes = 0"));
        let cmd = ConfigCommand::Check(CheckArgs { file: f.path().to_owned(), kind: None });
        let line = match run(&cmd) {
            Err(e @ Error::InvalidConfig { .. }) => e.to_string(),
            other => panic!("an invalid config fails: {other:?}"),
        };
        let shown = format!("{}: invalid: config field `sources.shop.max_body_bytes`", f.path().display());
        assert!(line.starts_with(&shown), "{line}");
        assert!(!line.contains("DISTINCTIVE"), "{line}");
        // The same file read as a processor config: refused on the first ingress-only field.
        let e = load(f.path(), Some(Kind::Processor)).unwrap_err().to_string();
        assert!(e.contains("sources.gh.verify") && !e.contains("DISTINCTIVE"), "{e}");
        // A missing file is a failure too (exit 1), not a usage error.
        let cmd = ConfigCommand::Check(CheckArgs { file: PathBuf::from("/nonexistent/hookline.toml"), kind: None });
        assert!(matches!(run(&cmd), Err(Error::InvalidConfig { .. })));
    }
}
