//! `[sources.NAME.verify]`: a source's verification scheme and its settings. `scheme` names a provider of
//! [`hookline_providers::ALL`] (which reads its own settings) or one of the schemes for any sender: `hmac`,
//! `bearer`, `basic`, `none`. Every error names the field.

use hookline_providers::settings::{SettingError, Settings};
use hookline_providers::verify::{auth, hmac, Scheme};
use hookline_runtime::config::ConfigError;
use serde::Deserialize;

/// The schemes that are not a provider's.
const GENERIC: [&str; 4] = ["hmac", "bearer", "basic", "none"];

/// `[sources.NAME.verify]`: `scheme`, and the scheme's settings (`secrets` and more, by scheme).
#[derive(Clone, Deserialize)]
pub struct VerifyConfig {
    /// `stripe`, `github`… (a provider), or `hmac`, `bearer`, `basic`, `none`.
    pub scheme: String,
    /// The other fields, read by the scheme.
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// Shows the settings' names only: their values may be secrets.
impl std::fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("scheme", &self.scheme)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl VerifyConfig {
    /// Whether the source is unverified (`scheme = "none"`).
    pub fn is_none(&self) -> bool {
        self.scheme == "none"
    }
}

/// Builds the scheme of a `[sources.NAME.verify]` table other than `none`; `field` is the table's path.
pub(super) fn scheme(config: VerifyConfig, field: &str) -> Result<Box<dyn Scheme>, ConfigError> {
    let settings = Settings::new(config.settings);
    let at = |e: SettingError| match e.field.as_str() {
        "" => ConfigError::field(field, e.message),
        relative => ConfigError::field(format!("{field}.{relative}"), e.message),
    };
    match config.scheme.as_str() {
        "hmac" => hmac::verifier(settings).map_err(at),
        "bearer" => auth::bearer(settings).map_err(at),
        "basic" => auth::basic(settings).map_err(at),
        name => match hookline_providers::find(name) {
            Some(provider) => provider.verifier(settings).map_err(at),
            None => Err(ConfigError::field(
                format!("{field}.scheme"),
                format!("unknown scheme `{name}`; one of {}, {}", hookline_providers::names(), GENERIC.join(", ")),
            )),
        },
    }
}

/// Checks that a `none` table sets nothing else.
pub(super) fn none(config: &VerifyConfig, field: &str) -> Result<(), ConfigError> {
    match config.settings.keys().next() {
        Some(key) => Err(ConfigError::field(format!("{field}.{key}"), "scheme \"none\" takes no settings")),
        None => Ok(()),
    }
}
