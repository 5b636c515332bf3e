//! A source's `[verify]` table as a provider reads it: its settings, its secrets (from a value, an environment
//! variable or a file), and errors that name the field, relative to the table.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::verify::Secret;

/// A field of a `[verify]` table that cannot be used. The config prefixes `field` with the table's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct SettingError {
    /// The field, relative to the table (`secrets[1].env`, `public_url`); empty for the table itself.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl SettingError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SettingError { field: field.into(), message: message.into() }
    }
}

/// The settings of a `[verify]` table, without its `scheme`.
#[derive(Clone, Default)]
pub struct Settings(toml::Table);

/// Shows the settings' names only: their values may be secrets.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Settings {
    /// Wraps a table.
    pub fn new(table: toml::Table) -> Self {
        Settings(table)
    }

    /// Parses TOML lines (`secrets = [...]`).
    pub fn from_toml(text: &str) -> Result<Self, SettingError> {
        text.parse().map(Settings).map_err(|e: toml::de::Error| SettingError::new("", e.message()))
    }

    /// Reads the table as a provider's settings type (which should refuse unknown fields), naming the field
    /// of the first error.
    pub fn read<T: DeserializeOwned>(self) -> Result<T, SettingError> {
        serde_path_to_error::deserialize(toml::Value::Table(self.0)).map_err(|e| {
            let field = e.path().to_string();
            let message = hide_quoted(&e.into_inner().to_string());
            SettingError::new(if field == "." { String::new() } else { field }, message)
        })
    }
}

/// A deserializer's message with its quoted values hidden: `secrets = "whsec_…"` would otherwise be printed as
/// `invalid type: string "whsec_…", expected a sequence`. Field names are quoted with backticks and stay. (The
/// same as `hookline_runtime::config` does for the rest of a config; this crate does not depend on it.)
fn hide_quoted(message: &str) -> String {
    message.split('"').enumerate().map(|(i, part)| if i % 2 == 1 { "(value hidden)" } else { part }).collect()
}

/// One secret: exactly one of `value`, `env` or `file`.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The secret itself (avoid in files that are committed).
    pub value: Option<String>,
    /// The name of an environment variable holding the secret.
    pub env: Option<String>,
    /// A file holding the secret (a trailing newline is ignored), such as a mounted Kubernetes secret.
    pub file: Option<PathBuf>,
    /// A name for this secret in metrics (`secret="2026-q4"`); default its position in the list.
    pub id: Option<String>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .field("file", &self.file)
            .field("id", &self.id)
            .finish()
    }
}

impl SecretSource {
    /// Reads the secret; `field` names it in errors and `position` is its default metrics id.
    pub fn resolve(self, field: &str, position: usize) -> Result<Secret, SettingError> {
        let id = self.id.unwrap_or_else(|| position.to_string());
        let bytes = match (self.value, self.env, self.file) {
            (Some(v), None, None) => v.into_bytes(),
            (None, Some(var), None) => std::env::var(&var)
                .map_err(|_| {
                    SettingError::new(format!("{field}.env"), format!("environment variable {var} is not set"))
                })?
                .into_bytes(),
            (None, None, Some(path)) => {
                let mut bytes = read_secret_file(&path).map_err(|e| {
                    SettingError::new(format!("{field}.file"), format!("cannot read {}: {e}", path.display()))
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            _ => return Err(SettingError::new(field, "set exactly one of `value`, `env` or `file`")),
        };
        if bytes.is_empty() {
            return Err(SettingError::new(field, "the secret is empty"));
        }
        Ok(Secret::new(id, bytes))
    }
}

/// The largest secret file read: a secret is a few dozen bytes, so a larger file is the wrong file (or a
/// device such as `/dev/zero`, which would otherwise be read until memory runs out).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

fn read_secret_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other("it is larger than 64 KiB, which no secret is"));
    }
    Ok(bytes)
}

/// Reads the live secrets of a `secrets` list; at least one is required.
pub fn secrets(list: Vec<SecretSource>) -> Result<Vec<Secret>, SettingError> {
    if list.is_empty() {
        return Err(SettingError::new("secrets", "at least one secret is required"));
    }
    list.into_iter().enumerate().map(|(i, s)| s.resolve(&format!("secrets[{i}]"), i)).collect()
}

/// A timestamp tolerance in seconds, `default` when unset; 1 s to one day.
pub fn tolerance(value: Option<u64>, default: u64) -> Result<u64, SettingError> {
    let value = value.unwrap_or(default);
    if !(1..=86_400).contains(&value) {
        return Err(SettingError::new("tolerance_secs", format!("{value} is out of range (1..=86400)")));
    }
    Ok(value)
}

/// A header name, from a setting.
pub fn header_name(field: &str, value: &str) -> Result<http::HeaderName, SettingError> {
    http::HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| SettingError::new(field, format!("`{value}` is not a valid HTTP header name")))
}

/// The settings of a provider that signs with a timestamp and has nothing else to set: its live secrets and
/// its tolerance (`default` when unset).
pub fn timestamped(settings: Settings, default: u64) -> Result<(Vec<Secret>, u64), SettingError> {
    let s: Timestamped = settings.read()?;
    Ok((secrets(s.secrets)?, tolerance(s.tolerance_secs, default)?))
}

/// `secrets` and `tolerance_secs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timestamped {
    /// Live secrets.
    secrets: Vec<SecretSource>,
    /// Allowed clock distance of the timestamp, seconds.
    tolerance_secs: Option<u64>,
}

/// The settings of a provider with nothing to set but its secrets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsOnly {
    /// Live secrets.
    pub secrets: Vec<SecretSource>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = Settings::from_toml("secrets = [{ value = 'a', env = 'B' }]")
            .unwrap()
            .read::<SecretsOnly>()
            .and_then(|s| secrets(s.secrets))
            .unwrap_err();
        assert_eq!(e.field, "secrets[0]");
        let e = Settings::from_toml("secrets = []\nnope = 1").unwrap().read::<SecretsOnly>().unwrap_err();
        assert!(e.message.contains("nope"), "{e}");
        let e = Settings::from_toml("secrets = \"whsec_do_not_print\"").unwrap().read::<SecretsOnly>().unwrap_err();
        assert!(!e.message.contains("do_not_print") && e.message.contains("expected"), "{e}");
        let e = secrets(Vec::new()).unwrap_err();
        assert_eq!(e.field, "secrets");
        assert_eq!(tolerance(Some(0), 300).unwrap_err().field, "tolerance_secs");
        assert_eq!(tolerance(None, 300), Ok(300));
    }

    #[test]
    fn secrets_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = SecretSource { file: Some(path), id: Some("q4".into()), ..Default::default() }.resolve("x", 0).unwrap();
        assert_eq!((s.id(), s.expose()), ("q4", &b"from-file"[..]));
        let e = SecretSource { file: Some("/dev/zero".into()), ..Default::default() }.resolve("secrets[0]", 0);
        let e = e.unwrap_err();
        assert_eq!(e.field, "secrets[0].file");
        assert!(e.message.contains("larger than 64 KiB"), "{e}");
        let e = SecretSource { env: Some("HOOKLINE_TEST_UNSET_SECRET".into()), ..Default::default() }
            .resolve("secrets[0]", 0)
            .unwrap_err();
        assert_eq!(e.field, "secrets[0].env");
        assert!(format!("{:?}", SecretSource { value: Some("hunter2".into()), ..Default::default() })
            .contains("<redacted>"));
    }
}
