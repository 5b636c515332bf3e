//! Credentials instead of signatures: a bearer token (`Authorization: Bearer <token>`, or the token alone in
//! another header) or HTTP basic auth (`Authorization: Basic base64(user:password)`, secrets configured as
//! `user:password`). Compared in constant time over SHA-256 digests ([`super::ct_eq_digest`]), so neither
//! content nor length leaks.

use super::common::single_header;
use super::{Outgoing, Request, Scheme, Secret, VerifyError};
use crate::settings::{self, header_name, SecretSource, SecretsOnly, SettingError, Settings};
use base64::Engine as _;
use http::HeaderName;

/// `[verify]` of a `bearer` source.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BearerSettings {
    /// Live tokens.
    secrets: Vec<SecretSource>,
    /// A header other than `Authorization` carrying the bare token.
    header: Option<String>,
}

/// The scheme of a `bearer` source: `secrets` (tokens) and `header` (default `Authorization`, as
/// `Bearer <token>`; another header carries the bare token).
pub fn bearer(settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
    let s: BearerSettings = settings.read()?;
    Ok(Box::new(Credentials {
        kind: Kind::Bearer,
        header: s.header.map(|h| header_name("header", &h)).transpose()?.unwrap_or(http::header::AUTHORIZATION),
        secrets: settings::secrets(s.secrets)?,
    }))
}

/// The scheme of a `basic` source: `secrets` are `user:password`.
pub fn basic(settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
    let s: SecretsOnly = settings.read()?;
    let secrets = settings::secrets(s.secrets)?;
    if let Some(i) = secrets.iter().position(|s| !s.expose().contains(&b':')) {
        return Err(SettingError::new(format!("secrets[{i}]"), "basic auth secrets are `user:password`"));
    }
    Ok(Box::new(Credentials { kind: Kind::Basic, header: http::header::AUTHORIZATION, secrets }))
}

/// Which credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bearer token.
    Bearer,
    /// HTTP basic auth.
    Basic,
}

/// A configured credential check.
#[derive(Debug)]
pub struct Credentials {
    /// Bearer or basic.
    pub kind: Kind,
    /// The header carrying it (`Authorization` unless configured otherwise for a bearer token).
    pub header: HeaderName,
    /// Live tokens, or `user:password` pairs.
    pub secrets: Vec<Secret>,
}

impl Scheme for Credentials {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Bearer => "bearer",
            Kind::Basic => "basic",
        }
    }

    fn sign(&self, secret: &[u8], _out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        let text = String::from_utf8_lossy(secret);
        let value = match self.kind {
            Kind::Bearer if self.header == http::header::AUTHORIZATION => format!("Bearer {text}"),
            Kind::Bearer => text.into_owned(),
            Kind::Basic => format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(secret)),
        };
        vec![(self.header.clone(), value)]
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(self.header.to_string());
        let value = single_header(req.headers, &self.header)?;
        let presented: Vec<u8> = match self.kind {
            Kind::Bearer if self.header == http::header::AUTHORIZATION => {
                let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
                if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                    return Err(malformed());
                }
                token.trim().as_bytes().to_vec()
            }
            Kind::Bearer => value.as_bytes().to_vec(),
            Kind::Basic => {
                let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(malformed());
                }
                base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| malformed())?
            }
        };
        // Every secret is compared, so the time taken does not say which one matched.
        let mut found = None;
        for (i, secret) in self.secrets.iter().enumerate() {
            if super::ct_eq_digest(&presented, secret.expose()) && found.is_none() {
                found = Some(i);
            }
        }
        found.ok_or(VerifyError::Mismatch)
    }

    fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    fn credential_headers(&self) -> Vec<HeaderName> {
        vec![self.header.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{request, secrets};

    fn bearer() -> Credentials {
        Credentials {
            kind: Kind::Bearer,
            header: http::header::AUTHORIZATION,
            secrets: secrets(&["old-token", "new-token"]),
        }
    }

    #[test]
    fn bearer_tokens_rotate_and_are_exact() {
        let b = bearer();
        let check = |v: &str| b.verify(&request(&[("authorization", v)], b"{}", 0).req());
        assert_eq!(check("Bearer new-token"), Ok(1));
        assert_eq!(check("bearer old-token"), Ok(0));
        assert_eq!(check("Bearer new-toke"), Err(VerifyError::Mismatch));
        assert_eq!(check("Bearer new-tokenX"), Err(VerifyError::Mismatch));
        assert!(matches!(check("Basic bmV3LXRva2Vu"), Err(VerifyError::MalformedSignature(_))));
        assert!(matches!(check("new-token"), Err(VerifyError::MalformedSignature(_))));
        assert!(matches!(b.verify(&request(&[], b"{}", 0).req()), Err(VerifyError::MissingSignature(_))));
        let custom = Credentials {
            kind: Kind::Bearer,
            header: HeaderName::from_static("x-api-token"),
            secrets: secrets(&["t"]),
        };
        assert_eq!(custom.verify(&request(&[("x-api-token", "t")], b"", 0).req()), Ok(0));
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let b =
            Credentials { kind: Kind::Basic, header: http::header::AUTHORIZATION, secrets: secrets(&["hooks:s3cret"]) };
        let check = |v: &str| b.verify(&request(&[("authorization", v)], b"", 0).req());
        let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("hooks:s3cret"));
        assert_eq!(check(&good), Ok(0));
        let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("hooks:guess"));
        assert_eq!(check(&wrong), Err(VerifyError::Mismatch));
        assert!(matches!(check("Basic !!!"), Err(VerifyError::MalformedSignature(_))));
        assert!(matches!(check("Bearer x"), Err(VerifyError::MalformedSignature(_))));
    }
}
