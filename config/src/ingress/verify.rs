//! `[sources.NAME.verify]`: a source's verification scheme and its secrets, turned into a scheme of
//! [`hookline_providers::verify`] at startup. Every error names the field.

use std::path::PathBuf;

use hookline_runtime::config::{in_range, ConfigError};
use serde::Deserialize;

use super::header_name;
use hookline_providers::verify::auth::{Credentials, Kind as CredentialKind};
use hookline_providers::verify::github::{HubSignature, Provider};
use hookline_providers::verify::hmac::{parse_template, HmacScheme, Segment, TimestampUnit};
use hookline_providers::verify::hubspot::HubSpot;
use hookline_providers::verify::paddle::Paddle;
use hookline_providers::verify::shopify::Shopify;
use hookline_providers::verify::slack::Slack;
use hookline_providers::verify::standard_webhooks::{self, Flavor, StandardWebhooks};
use hookline_providers::verify::stripe::Stripe;
use hookline_providers::verify::twilio::Twilio;
use hookline_providers::verify::zoom::Zoom;
use hookline_providers::verify::{check_public_url, Algorithm, Encoding, Scheme, Secret};

/// `[sources.NAME.verify]`, keyed by `scheme`. Every signing scheme takes `secrets`, a list of live secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifyConfig {
    /// Any HMAC sender: header, algorithm, encoding, prefix, signed-content template, timestamp.
    Hmac {
        /// The signature header.
        header: String,
        /// `sha1`, `sha256` (default) or `sha512`.
        #[serde(default)]
        algorithm: Algorithm,
        /// `hex` (default) or `base64`.
        #[serde(default)]
        encoding: Encoding,
        /// Text before the signature in the header, such as `sha256=`. Default none.
        #[serde(default)]
        prefix: String,
        /// What is signed: `{body}` (default), `{timestamp}.{body}`, `{id}.{timestamp}.{body}`…
        #[serde(default = "default_template")]
        template: String,
        /// The header `{timestamp}` comes from; when set, its window is enforced.
        timestamp_header: Option<String>,
        /// `seconds` (default) or `milliseconds`.
        #[serde(default)]
        timestamp_unit: TimestampUnit,
        /// The header `{id}` comes from.
        id_header: Option<String>,
        /// Allowed clock distance of the timestamp, seconds. Default 300.
        tolerance_secs: Option<u64>,
        /// Live secrets.
        secrets: Vec<SecretConfig>,
    },
    /// Stripe (`Stripe-Signature`), endpoint signing secrets `whsec_…`.
    Stripe {
        /// Live secrets.
        secrets: Vec<SecretConfig>,
        /// Default 300.
        tolerance_secs: Option<u64>,
    },
    /// Standard Webhooks (`webhook-*` headers), secrets `whsec_<base64>`.
    StandardWebhooks {
        /// Live secrets.
        secrets: Vec<SecretConfig>,
        /// Default 300.
        tolerance_secs: Option<u64>,
    },
    /// Svix (`svix-*` headers, or `webhook-*`), secrets `whsec_<base64>`.
    Svix {
        /// Live secrets.
        secrets: Vec<SecretConfig>,
        /// Default 300.
        tolerance_secs: Option<u64>,
    },
    /// GitHub (`X-Hub-Signature-256`).
    Github {
        /// Live secrets.
        secrets: Vec<SecretConfig>,
        /// Accept the legacy SHA-1 `X-Hub-Signature` when no SHA-256 header is sent. Default false.
        #[serde(default)]
        allow_sha1: bool,
    },
    /// Meta: Facebook, Instagram, WhatsApp (`X-Hub-Signature-256`, app secret; GET `hub.challenge`).
    Meta {
        /// Live app secrets.
        secrets: Vec<SecretConfig>,
        /// The verify token of the subscription check; without it, GET checks are refused.
        verify_token: Option<SecretConfig>,
    },
    /// Shopify (`X-Shopify-Hmac-Sha256`).
    Shopify {
        /// Live secrets.
        secrets: Vec<SecretConfig>,
    },
    /// Slack (`X-Slack-Signature`, `X-Slack-Request-Timestamp`; answers `url_verification`).
    Slack {
        /// Live signing secrets.
        secrets: Vec<SecretConfig>,
        /// Default 300.
        tolerance_secs: Option<u64>,
    },
    /// Zoom (`x-zm-signature`; answers `endpoint.url_validation`).
    Zoom {
        /// Live secret tokens.
        secrets: Vec<SecretConfig>,
        /// Default 300.
        tolerance_secs: Option<u64>,
    },
    /// Twilio (`X-Twilio-Signature`).
    Twilio {
        /// Live auth tokens (or SharedKey secrets with `algorithm = "sha256"`).
        secrets: Vec<SecretConfig>,
        /// The URL configured at Twilio, without query: `https://hooks.example.com/webhooks/twilio`.
        public_url: String,
        /// `sha1` (default, auth token) or `sha256` (SharedKey).
        #[serde(default = "sha1")]
        algorithm: Algorithm,
    },
    /// HubSpot signature v3 (`X-HubSpot-Signature-v3`).
    Hubspot {
        /// Live client secrets.
        secrets: Vec<SecretConfig>,
        /// The URL configured at HubSpot, without query.
        public_url: String,
        /// Default 300.
        tolerance_secs: Option<u64>,
    },
    /// Paddle Billing (`Paddle-Signature`).
    Paddle {
        /// Live secret keys.
        secrets: Vec<SecretConfig>,
        /// Default 5, as Paddle's SDKs.
        tolerance_secs: Option<u64>,
    },
    /// `Authorization: Bearer <token>` (or the token alone in `header`).
    Bearer {
        /// Live tokens.
        secrets: Vec<SecretConfig>,
        /// A header other than `Authorization` carrying the bare token.
        header: Option<String>,
    },
    /// HTTP basic auth; secrets are `user:password`.
    Basic {
        /// Live `user:password` pairs.
        secrets: Vec<SecretConfig>,
    },
    /// No verification. Requires `allow_unverified = true` on the source.
    None,
}

fn default_template() -> String {
    "{body}".to_owned()
}

fn sha1() -> Algorithm {
    Algorithm::Sha1
}

/// One secret: exactly one of `value`, `env` or `file`.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// The secret itself (avoid in files that are committed).
    pub value: Option<String>,
    /// The name of an environment variable holding the secret.
    pub env: Option<String>,
    /// A file holding the secret (a trailing newline is ignored), such as a mounted Kubernetes secret.
    pub file: Option<PathBuf>,
    /// A name for this secret in metrics (`secret="2026-q4"`); default its position in the list.
    pub id: Option<String>,
}

impl std::fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretConfig")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .field("file", &self.file)
            .field("id", &self.id)
            .finish()
    }
}

fn tolerance(field: &str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    in_range(&format!("{field}.tolerance_secs"), value.unwrap_or(default), 1, 86_400)
}

/// Builds the scheme of a `[sources.NAME.verify]` table other than `none`; `field` is the table's path.
pub(super) fn scheme(config: VerifyConfig, field: &str) -> Result<Box<dyn Scheme>, ConfigError> {
    let secrets_field = format!("{field}.secrets");
    let secrets = |list| resolve_secrets(&secrets_field, list);
    Ok(match config {
        VerifyConfig::None => return Err(ConfigError::field(field, "scheme \"none\" has no verifier")),
        VerifyConfig::Hmac {
            header,
            algorithm,
            encoding,
            prefix,
            template,
            timestamp_header,
            timestamp_unit,
            id_header,
            tolerance_secs,
            secrets: list,
        } => {
            let template = parse_template(&template).map_err(|e| ConfigError::field(format!("{field}.template"), e))?;
            let timestamp_header =
                timestamp_header.map(|h| header_name(&format!("{field}.timestamp_header"), &h)).transpose()?;
            let id_header = id_header.map(|h| header_name(&format!("{field}.id_header"), &h)).transpose()?;
            if template.contains(&Segment::Timestamp) && timestamp_header.is_none() {
                return Err(ConfigError::field(
                    format!("{field}.timestamp_header"),
                    "the template uses {timestamp}: name its header",
                ));
            }
            if template.contains(&Segment::Id) && id_header.is_none() {
                return Err(ConfigError::field(
                    format!("{field}.id_header"),
                    "the template uses {id}: name its header",
                ));
            }
            Box::new(HmacScheme {
                header: header_name(&format!("{field}.header"), &header)?,
                algorithm,
                encoding,
                prefix,
                template,
                timestamp_header,
                timestamp_unit,
                id_header,
                tolerance_secs: tolerance(field, tolerance_secs, 300)?,
                secrets: secrets(list)?,
            })
        }
        VerifyConfig::Stripe { secrets: list, tolerance_secs } => Box::new(Stripe {
            secrets: secrets(list)?,
            tolerance_secs: tolerance(
                field,
                tolerance_secs,
                hookline_providers::verify::stripe::DEFAULT_TOLERANCE_SECS,
            )?,
        }),
        VerifyConfig::StandardWebhooks { secrets: list, tolerance_secs } => {
            standard(Flavor::Standard, field, secrets(list)?, tolerance_secs)?
        }
        VerifyConfig::Svix { secrets: list, tolerance_secs } => {
            standard(Flavor::Svix, field, secrets(list)?, tolerance_secs)?
        }
        VerifyConfig::Github { secrets: list, allow_sha1 } => Box::new(HubSignature {
            provider: Provider::GitHub,
            secrets: secrets(list)?,
            allow_sha1,
            verify_token: None,
        }),
        VerifyConfig::Meta { secrets: list, verify_token } => Box::new(HubSignature {
            provider: Provider::Meta,
            secrets: secrets(list)?,
            allow_sha1: false,
            verify_token: verify_token.map(|t| resolve_secret(&format!("{field}.verify_token"), t, 0)).transpose()?,
        }),
        VerifyConfig::Shopify { secrets: list } => Box::new(Shopify { secrets: secrets(list)? }),
        VerifyConfig::Slack { secrets: list, tolerance_secs } => Box::new(Slack {
            secrets: secrets(list)?,
            tolerance_secs: tolerance(
                field,
                tolerance_secs,
                hookline_providers::verify::slack::DEFAULT_TOLERANCE_SECS,
            )?,
        }),
        VerifyConfig::Zoom { secrets: list, tolerance_secs } => {
            Box::new(Zoom { secrets: secrets(list)?, tolerance_secs: tolerance(field, tolerance_secs, 300)? })
        }
        VerifyConfig::Twilio { secrets: list, public_url, algorithm } => {
            if algorithm == Algorithm::Sha512 {
                return Err(ConfigError::field(format!("{field}.algorithm"), "Twilio signs with sha1 or sha256"));
            }
            Box::new(
                Twilio::new(secrets(list)?, algorithm, &public_url)
                    .map_err(|e| ConfigError::field(format!("{field}.public_url"), e))?,
            )
        }
        VerifyConfig::Hubspot { secrets: list, public_url, tolerance_secs } => {
            check_public_url(&public_url).map_err(|e| ConfigError::field(format!("{field}.public_url"), e))?;
            Box::new(HubSpot {
                secrets: secrets(list)?,
                public_url,
                tolerance_secs: tolerance(
                    field,
                    tolerance_secs,
                    hookline_providers::verify::hubspot::DEFAULT_TOLERANCE_SECS,
                )?,
            })
        }
        VerifyConfig::Paddle { secrets: list, tolerance_secs } => Box::new(Paddle {
            secrets: secrets(list)?,
            tolerance_secs: tolerance(
                field,
                tolerance_secs,
                hookline_providers::verify::paddle::DEFAULT_TOLERANCE_SECS,
            )?,
        }),
        VerifyConfig::Bearer { secrets: list, header } => Box::new(Credentials {
            kind: CredentialKind::Bearer,
            header: match header {
                Some(h) => header_name(&format!("{field}.header"), &h)?,
                None => http::header::AUTHORIZATION,
            },
            secrets: secrets(list)?,
        }),
        VerifyConfig::Basic { secrets: list } => {
            let list = secrets(list)?;
            if let Some(i) = list.iter().position(|s| !s.expose().contains(&b':')) {
                return Err(ConfigError::field(
                    format!("{secrets_field}[{i}]"),
                    "basic auth secrets are `user:password`",
                ));
            }
            Box::new(Credentials { kind: CredentialKind::Basic, header: http::header::AUTHORIZATION, secrets: list })
        }
    })
}

fn standard(
    flavor: Flavor,
    field: &str,
    raw: Vec<Secret>,
    tolerance_secs: Option<u64>,
) -> Result<Box<dyn Scheme>, ConfigError> {
    let decoded = raw
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{field}.secrets[{i}]");
            let text = std::str::from_utf8(s.expose()).map_err(|_| ConfigError::field(&at, "is not text"))?;
            let bytes = standard_webhooks::decode_secret(text).map_err(|e| ConfigError::field(&at, e))?;
            Ok(Secret::new(s.id().to_owned(), bytes))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(Box::new(StandardWebhooks {
        flavor,
        secrets: decoded,
        tolerance_secs: tolerance(field, tolerance_secs, standard_webhooks::DEFAULT_TOLERANCE_SECS)?,
    }))
}

fn resolve_secrets(field: &str, secrets: Vec<SecretConfig>) -> Result<Vec<Secret>, ConfigError> {
    if secrets.is_empty() {
        return Err(ConfigError::field(field, "at least one secret is required"));
    }
    secrets.into_iter().enumerate().map(|(i, s)| resolve_secret(&format!("{field}[{i}]"), s, i)).collect()
}

/// Reads one secret from its value, environment variable or file; `position` is its default metrics id.
pub(super) fn resolve_secret(field: &str, s: SecretConfig, position: usize) -> Result<Secret, ConfigError> {
    let id = s.id.clone().unwrap_or_else(|| position.to_string());
    let bytes = match (s.value, s.env, s.file) {
        (Some(v), None, None) => v.into_bytes(),
        (None, Some(var), None) => std::env::var(&var)
            .map_err(|_| ConfigError::field(format!("{field}.env"), format!("environment variable {var} is not set")))?
            .into_bytes(),
        (None, None, Some(path)) => {
            let mut bytes = std::fs::read(&path).map_err(|e| {
                ConfigError::field(format!("{field}.file"), format!("cannot read {}: {e}", path.display()))
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        }
        _ => return Err(ConfigError::field(field, "set exactly one of `value`, `env` or `file`")),
    };
    if bytes.is_empty() {
        return Err(ConfigError::field(field, "the secret is empty"));
    }
    Ok(Secret::new(id, bytes))
}
