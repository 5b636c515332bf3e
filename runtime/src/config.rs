//! Loading a binary's config: one TOML file, then `HOOKLINE_*` environment overrides, deserialized with
//! unknown fields refused and validated once at startup. Every error names the field it is about.
//!
//! Overrides: `HOOKLINE_<SECTION>__<FIELD>` sets `<section>.<field>` (lowercased; `__` separates levels, so
//! `HOOKLINE_SOURCES__SHOP__MAX_BODY_BYTES=65536` sets `sources.shop.max_body_bytes`). A value is read as a
//! TOML value when it parses as one (`8080`, `true`, `["a", "b"]`, `"quoted"`) and as a plain string
//! otherwise. `KAFKA_BROKERS` sets `kafka.brokers` unless `HOOKLINE_KAFKA__BROKERS` is set. Variables without
//! `__` (such as `HOOKLINE_LOG`) are not overrides.
//!
//! Written here rather than with a layered-config crate (`figment`, `config`): the overrides are merged into
//! the parsed TOML tree in a few lines, and every error, from the file or from a variable, keeps naming the
//! exact field or variable, which those crates' errors do not always do.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Prefix of override variables.
pub const ENV_PREFIX: &str = "HOOKLINE_";
/// The variable that points every hookline process at a Kafka cluster.
pub const KAFKA_BROKERS_ENV: &str = "KAFKA_BROKERS";

/// A config that cannot be used. The process refuses to start and prints it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is missing, unknown, of the wrong type or has an unusable value.
    #[error("config field `{field}`: {message}")]
    Field {
        /// Dotted path of the field (`sources.shop.verify.secrets[0].env`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An environment override cannot be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// A field error.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Field { field: field.into(), message: message.into() }
    }
}

/// Reads `path`, applies overrides from `env`, and deserializes.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    from_str_with_env(&text, env).map_err(|e| match e {
        ConfigError::Syntax { message, .. } => ConfigError::Syntax { path: path.to_owned(), message },
        other => other,
    })
}

/// Parses TOML text, applies overrides from `env`, and deserializes.
pub fn from_str_with_env<T: DeserializeOwned>(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: PathBuf::new(), message: e.to_string() })?;
    apply_env(&mut root, env)?;
    deserialize(toml::Value::Table(root))
}

/// Deserializes a TOML value, naming the field of the first error. The error hides the values it would
/// quote: a secret written where a table was expected (`token = "tok"`) is not printed back.
pub fn deserialize<T: DeserializeOwned>(value: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = hide_quoted(&e.into_inner().to_string());
        ConfigError::Field { field: if field == "." { "(top level)".to_owned() } else { field }, message }
    })
}

/// A deserializer's message with its double-quoted values replaced (`invalid type: string "…"`); field and
/// variant names are quoted with backticks and stay. `hookline_providers::settings` does the same for
/// `[verify]` tables, which it reads on its own.
fn hide_quoted(message: &str) -> String {
    message.split('"').enumerate().map(|(i, part)| if i % 2 == 1 { "(value hidden)" } else { part }).collect()
}

fn apply_env(root: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__") || k == KAFKA_BROKERS_ENV)
        .collect();
    // Apply KAFKA_BROKERS first so that HOOKLINE_KAFKA__BROKERS wins; otherwise in name order, deterministic.
    overrides.sort_by(|a, b| (a.0 != KAFKA_BROKERS_ENV, &a.0).cmp(&(b.0 != KAFKA_BROKERS_ENV, &b.0)));
    for (var, value) in overrides {
        let path: Vec<String> = if var == KAFKA_BROKERS_ENV {
            vec!["kafka".into(), "brokers".into()]
        } else {
            var[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect()
        };
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env { var, message: "empty path segment".into() });
        }
        set_path(root, &path, parse_env_value(&value)).map_err(|message| ConfigError::Env { var, message })?;
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty path")?;
    let mut cur = table;
    for (i, seg) in parents.iter().enumerate() {
        let entry = cur.entry(seg.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("`{}` is not a table", path[..=i].join(".")))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

/// Checks that a socket address parses, naming the field otherwise.
pub fn socket_addr(field: &str, value: &str) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|e| ConfigError::field(field, format!("`{value}` is not a socket address (host:port): {e}")))
}

/// Checks that a number is within bounds, naming the field otherwise.
pub fn in_range<N: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: N,
    min: N,
    max: N,
) -> Result<N, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::field(field, format!("{value} is out of range ({min}..={max})")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        kafka: Kafka,
        #[serde(default)]
        server: Server,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Kafka {
        brokers: String,
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Server {
        #[serde(default)]
        port: u16,
        #[serde(default)]
        name: String,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = from_str_with_env::<Cfg>("[kafka]\nbrokers = 'a:1'\nbrokerz = 'b'\n", env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("kafka.brokerz") || msg.contains("`brokerz`"), "{msg}");
        assert!(matches!(err, ConfigError::Field { .. }));
    }

    #[test]
    fn missing_fields_and_wrong_types_are_named() {
        let err = from_str_with_env::<Cfg>("[kafka]\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("brokers"), "{err}");
        let err = from_str_with_env::<Cfg>("[kafka]\nbrokers='a'\n[server]\nport='s3cret'\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "a value written in the wrong place is not printed: {err}");
    }

    #[test]
    fn env_overrides_apply_with_types_and_precedence() {
        let text = "[kafka]\nbrokers = 'file:1'\n";
        let cfg: Cfg = from_str_with_env(text, env(&[("HOOKLINE_SERVER__PORT", "8081")])).unwrap();
        assert_eq!(cfg.server.port, 8081);
        assert_eq!(cfg.kafka.brokers, "file:1");
        let cfg: Cfg = from_str_with_env(text, env(&[("KAFKA_BROKERS", "env:2")])).unwrap();
        assert_eq!(cfg.kafka.brokers, "env:2");
        let cfg: Cfg = from_str_with_env(
            text,
            env(&[("HOOKLINE_KAFKA__BROKERS", "hook:3"), ("KAFKA_BROKERS", "env:2"), ("HOOKLINE_LOG", "debug")]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.brokers, "hook:3");
        let cfg: Cfg = from_str_with_env(text, env(&[("HOOKLINE_SERVER__NAME", "\"8080\"")])).unwrap();
        assert_eq!(cfg.server.name, "8080");
    }

    #[test]
    fn an_override_of_an_unknown_field_is_refused() {
        let err =
            from_str_with_env::<Cfg>("[kafka]\nbrokers='a'\n", env(&[("HOOKLINE_KAFKA__BROKER", "x")])).unwrap_err();
        assert!(err.to_string().contains("broker"), "{err}");
        let err = from_str_with_env::<Cfg>("[kafka]\nbrokers='a'\n", env(&[("HOOKLINE_KAFKA__BROKERS__X", "x")]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
    }

    #[test]
    fn syntax_errors_carry_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[kafka\nbrokers = 1\n").unwrap();
        let err = load::<Cfg>(&path, env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.toml") && msg.contains("line 1"), "{msg}");
        let err = load::<Cfg>(&dir.path().join("missing.toml"), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn helpers_name_the_field() {
        assert!(socket_addr("server.listen", "nope").unwrap_err().to_string().contains("server.listen"));
        assert_eq!(socket_addr("x", "127.0.0.1:80").unwrap().port(), 80);
        assert!(in_range("server.max", 0u64, 1, 10).unwrap_err().to_string().contains("server.max"));
    }
}
