//! Request verification, before anything else looks at the body.
//!
//! Invariant: only a [`Verified`] request can be stored in Kafka, and [`Verified`] can only be made here, by a
//! verifier that checked the request's raw body bytes. Signatures are compared in constant time; a request
//! passes when any live secret of its source matches, so secrets can be rotated without downtime.
//!
//! Nothing here logs a secret, a signature or a body.

mod hmac;

use bytes::Bytes;
use http::HeaderMap;
use zeroize::Zeroizing;

pub use self::hmac::{Encoding, HmacScheme};

/// Longest signature header value accepted; longer ones are malformed (401), never parsed.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 4096;

/// How a source's requests are verified. A closed set: one variant per scheme.
#[derive(Debug)]
pub enum Verifier {
    /// HMAC of the raw body in a header.
    Hmac(HmacScheme),
    /// No verification (`scheme = "none"` with `allow_unverified = true`).
    Unverified,
}

impl Verifier {
    /// Checks the request. On success the body is wrapped in a [`Verified`].
    pub fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<Verified, VerifyError> {
        let secret = match self {
            Verifier::Hmac(scheme) => Some(scheme.verify(headers, &body)?),
            Verifier::Unverified => None,
        };
        Ok(Verified { body, secret })
    }

    /// Header names that carry credentials for this scheme, to be left out of the stored record.
    pub fn credential_headers(&self) -> Vec<http::HeaderName> {
        match self {
            Verifier::Hmac(scheme) => vec![scheme.header().clone()],
            Verifier::Unverified => Vec::new(),
        }
    }

    /// The ids of the live secrets, in order (`secret` label of the match metric).
    pub fn secret_ids(&self) -> Vec<String> {
        match self {
            Verifier::Hmac(scheme) => scheme.secrets().iter().map(|s| s.id().to_owned()).collect(),
            Verifier::Unverified => Vec::new(),
        }
    }

    /// A label for metrics.
    pub fn scheme_name(&self) -> &'static str {
        match self {
            Verifier::Hmac(_) => "hmac",
            Verifier::Unverified => "none",
        }
    }
}

/// A request whose body passed verification.
#[derive(Debug)]
pub struct Verified {
    body: Bytes,
    secret: Option<usize>,
}

impl Verified {
    /// The verified body, byte for byte as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The position of the secret that matched, or `None` for an unverified source.
    pub fn matched_secret(&self) -> Option<usize> {
        self.secret
    }
}

/// Why a request failed verification. Every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature header is absent.
    #[error("signature header `{0}` is missing")]
    MissingSignature(String),
    /// The signature header was sent more than once.
    #[error("signature header `{0}` is sent more than once")]
    DuplicateSignature(String),
    /// The signature header cannot be parsed (wrong prefix, encoding or length, too long).
    #[error("signature header `{0}` is malformed")]
    MalformedSignature(String),
    /// No live secret produces this signature.
    #[error("signature does not match")]
    Mismatch,
}

impl VerifyError {
    /// Every reason label, in a fixed order.
    pub const REASONS: [&'static str; 4] = [
        "missing_signature",
        "duplicate_signature",
        "malformed_signature",
        "mismatch",
    ];

    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingSignature(_) => Self::REASONS[0],
            VerifyError::DuplicateSignature(_) => Self::REASONS[1],
            VerifyError::MalformedSignature(_) => Self::REASONS[2],
            VerifyError::Mismatch => Self::REASONS[3],
        }
    }
}

/// A secret, zeroed when dropped and never printed.
pub struct Secret {
    id: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl Secret {
    /// A secret with a metrics id.
    pub fn new(id: String, bytes: Vec<u8>) -> Self {
        Secret {
            id,
            bytes: Zeroizing::new(bytes),
        }
    }

    /// Its id (position or configured name): safe to show.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its bytes.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// The one value of a header, or why there is not exactly one usable value.
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &http::HeaderName,
) -> Result<&'a [u8], VerifyError> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or_else(|| VerifyError::MissingSignature(name.to_string()))?;
    if values.next().is_some() {
        return Err(VerifyError::DuplicateSignature(name.to_string()));
    }
    let bytes = first.as_bytes();
    if bytes.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(VerifyError::MalformedSignature(name.to_string()));
    }
    Ok(bytes)
}
