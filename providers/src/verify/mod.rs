//! Request verification, before anything else looks at the body.
//!
//! Invariant: only a [`Verified`] request can be stored in Kafka, and a [`Verified`] can only be made by
//! [`Verifier::verify`], after the source's scheme checked the request's raw body bytes. Signatures are compared
//! in constant time; timestamps outside the scheme's tolerance are refused in both directions (too old: a
//! replay; too far ahead: a forged or badly skewed clock); a request passes when any live secret of its source
//! matches, so secrets rotate without downtime. Every malformed, duplicated or oversized credential header is a
//! 401, never a panic or a 500.
//!
//! Each provider's scheme lives in the provider's module ([`crate::stripe`], [`crate::github`]…), written from
//! its documentation and checked against its published examples and vectors made by its official library
//! (`tests/vectors/`). Here are the [`Scheme`] trait they implement, the [`Verifier`] of a source, and the
//! schemes a source may use with any sender: the generic [`hmac`] and [`auth`] (bearer token, basic auth).
//!
//! The other direction, for senders (`hookline send`, tests): [`Verifier::sign_request`] signs an [`Outgoing`]
//! request as the source's provider would, with each scheme's own `sign` function, so that what it makes is
//! exactly what [`Verifier::verify`] accepts.
//!
//! Nothing here logs a secret, a signature or a body.

pub mod auth;
pub(crate) mod common;
pub mod hmac;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Uri};
use zeroize::Zeroizing;

use crate::keys::KeySelector;

pub use self::common::{Algorithm, Encoding};

#[cfg(test)]
mod battery;
#[cfg(test)]
pub(crate) mod test_support;

/// Constant-time equality of two credentials of any length (compared as SHA-256 digests, so neither the
/// content nor the length leaks through timing).
pub fn ct_eq_digest(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    common::ct_eq(&Sha256::digest(a), &Sha256::digest(b))
}

/// Longest credential header value accepted; longer ones are malformed (401), never parsed.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 4096;
/// Most signatures accepted in one header (rotation sends two or three).
pub const MAX_SIGNATURES: usize = 16;

/// What a scheme sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI as received (path and query).
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The raw body bytes.
    pub body: &'a [u8],
    /// Now, in seconds since the Unix epoch (one clock reading per request).
    pub now_secs: i64,
}

/// A request a sender is about to send, as a scheme signs it ([`Verifier::sign_request`]).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The method.
    pub method: &'a Method,
    /// The absolute URL the request is sent to, with its query (Twilio and HubSpot sign it).
    pub url: &'a str,
    /// The `Content-Type` sent (Twilio signs form parameters only for a form body).
    pub content_type: &'a str,
    /// The raw body bytes.
    pub body: &'a [u8],
    /// The signing time, in seconds since the Unix epoch.
    pub timestamp_secs: i64,
    /// The webhook's id, for schemes that send one next to the signature (Standard Webhooks, generic `{id}`).
    pub id: &'a str,
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The source has no live secret.
    #[error("the source has no secret to sign with")]
    NoSecret,
    /// A header value is not valid header text (a bearer token with a line break, say); the value is not shown.
    #[error("the value of header `{0}` is not valid header text")]
    InvalidHeader(HeaderName),
}

/// A reply the ingress gives itself, without storing anything: a provider's endpoint-ownership check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `Content-Type` of the answer.
    pub content_type: &'static str,
    /// Body of the answer (status 200).
    pub body: Bytes,
}

impl Handshake {
    /// A JSON answer.
    pub fn json(value: &serde_json::Value) -> Self {
        Handshake { content_type: "application/json", body: Bytes::from(value.to_string()) }
    }

    /// A plain-text answer.
    pub fn text(text: impl Into<Bytes>) -> Self {
        Handshake { content_type: "text/plain; charset=utf-8", body: text.into() }
    }
}

/// What every scheme module provides.
pub trait Scheme: std::fmt::Debug + Send + Sync {
    /// The scheme's config name (`scheme = "..."`), also a metric label.
    fn name(&self) -> &'static str;
    /// Checks a request; returns the position of the secret that matched.
    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError>;
    /// The credential headers (signature, and the timestamp and id headers the signature covers) a sender
    /// holding `secret` sends with `out`: the inverse of [`Scheme::verify`].
    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)>;
    /// Whether the signature covers a timestamp whose window is enforced (a replay an hour later is refused).
    fn signs_timestamp(&self) -> bool {
        false
    }
    /// The live secrets.
    fn secrets(&self) -> &[Secret];
    /// Headers carrying credentials, left out of the stored record.
    fn credential_headers(&self) -> Vec<HeaderName>;
    /// The provider's own dedup key, used when the source configures none.
    fn default_dedup_key(&self) -> Option<KeySelector> {
        None
    }
    /// The provider's entity key, used as ordering key when the source configures none.
    fn default_ordering_key(&self) -> Option<KeySelector> {
        None
    }
    /// The answer to a verified POST that is an endpoint-ownership check, not a webhook.
    fn handshake(&self, _req: &Request<'_>, _matched: usize) -> Option<Handshake> {
        None
    }
    /// The answer to a GET endpoint-ownership check; `None` when the scheme has none.
    fn get_challenge(&self, _req: &Request<'_>) -> Option<Result<Handshake, VerifyError>> {
        None
    }
}

/// How a source's requests are verified: a closed set, one variant per scheme.
#[derive(Debug)]
pub enum Verifier {
    /// A signing scheme or credential check.
    Scheme(Box<dyn Scheme>),
    /// No verification (`scheme = "none"` with `allow_unverified = true`).
    Unverified,
}

impl Verifier {
    fn scheme(&self) -> Option<&dyn Scheme> {
        match self {
            Verifier::Scheme(s) => Some(s.as_ref()),
            Verifier::Unverified => None,
        }
    }

    /// Checks the request. On success the body is wrapped in a [`Verified`].
    pub fn verify(&self, req: &Request<'_>, body: Bytes) -> Result<Verified, VerifyError> {
        let secret = self.scheme().map(|s| s.verify(req)).transpose()?;
        Ok(Verified { body, secret })
    }

    /// The headers the source's provider sends with `out`, signed with the first live secret: exactly what
    /// [`Verifier::verify`] accepts at `out.timestamp_secs`. An unverified source needs none.
    pub fn sign_request(&self, out: &Outgoing<'_>) -> Result<HeaderMap, SignError> {
        let mut headers = HeaderMap::new();
        let Some(scheme) = self.scheme() else { return Ok(headers) };
        let secret = scheme.secrets().first().ok_or(SignError::NoSecret)?;
        for (name, value) in scheme.sign(secret.expose(), out) {
            let value = http::HeaderValue::from_str(&value).map_err(|_| SignError::InvalidHeader(name.clone()))?;
            headers.insert(name, value);
        }
        Ok(headers)
    }

    /// Whether signatures cover a timestamp that must be recent ([`Scheme::signs_timestamp`]).
    pub fn signs_timestamp(&self) -> bool {
        self.scheme().is_some_and(Scheme::signs_timestamp)
    }

    /// The scheme's answer to a verified POST that is an ownership check.
    pub fn handshake(&self, req: &Request<'_>, verified: &Verified) -> Option<Handshake> {
        self.scheme().and_then(|s| s.handshake(req, verified.secret.unwrap_or(0)))
    }

    /// The scheme's answer to a GET ownership check.
    pub fn get_challenge(&self, req: &Request<'_>) -> Option<Result<Handshake, VerifyError>> {
        self.scheme().and_then(|s| s.get_challenge(req))
    }

    /// Header names that carry credentials for this scheme.
    pub fn credential_headers(&self) -> Vec<HeaderName> {
        self.scheme().map(Scheme::credential_headers).unwrap_or_default()
    }

    /// The live secrets (none for an unverified source).
    pub fn secrets(&self) -> &[Secret] {
        self.scheme().map(Scheme::secrets).unwrap_or_default()
    }

    /// The ids of the live secrets, in order (`secret` label of the match metric).
    pub fn secret_ids(&self) -> Vec<String> {
        self.scheme().map(|s| s.secrets().iter().map(|s| s.id().to_owned()).collect()).unwrap_or_default()
    }

    /// The scheme name, a metric label.
    pub fn scheme_name(&self) -> &'static str {
        self.scheme().map_or("none", Scheme::name)
    }

    /// The provider's dedup key selector, if it has one.
    pub fn default_dedup_key(&self) -> Option<KeySelector> {
        self.scheme().and_then(Scheme::default_dedup_key)
    }

    /// The provider's ordering key selector, if it has one.
    pub fn default_ordering_key(&self) -> Option<KeySelector> {
        self.scheme().and_then(Scheme::default_ordering_key)
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

/// Why a request failed verification. Every variant is answered 401; the message names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature or credential header is absent.
    #[error("header `{0}` is missing")]
    MissingSignature(String),
    /// The signature header was sent more than once.
    #[error("header `{0}` is sent more than once")]
    DuplicateSignature(String),
    /// The signature header cannot be parsed (wrong prefix, encoding or length, too long, too many entries).
    #[error("header `{0}` is malformed")]
    MalformedSignature(String),
    /// The timestamp header is absent.
    #[error("timestamp header `{0}` is missing")]
    MissingTimestamp(String),
    /// The timestamp is not a number of the expected form.
    #[error("timestamp `{0}` is malformed")]
    MalformedTimestamp(String),
    /// The timestamp is older than the tolerance: a replay, or a delivery held too long.
    #[error("timestamp is older than the {0} s tolerance")]
    StaleTimestamp(u64),
    /// The timestamp is further ahead than the tolerance.
    #[error("timestamp is more than {0} s in the future")]
    FutureTimestamp(u64),
    /// A signed digest of the body does not match the body (Twilio's `bodySHA256`).
    #[error("the body does not match its signed digest")]
    BodyDigestMismatch,
    /// A header the provider always sends with a webhook is absent (Shopify's topic, shop, API version and
    /// webhook id), as the provider's own library refuses it.
    #[error("required header `{0}` is missing")]
    MissingHeader(String),
    /// The body is empty where the provider never sends an empty one (Shopify).
    #[error("the body is empty")]
    EmptyBody,
    /// The request announces a signing algorithm other than the source's (Twilio's
    /// `X-Twilio-Webhooks-Signature-Settings`), or a source that signs with a shared key got none announced:
    /// refused rather than checked with a weaker algorithm.
    #[error("the signing algorithm announced ({0}) is not this source's")]
    WrongAlgorithm(String),
    /// No live secret produces this signature, or the credentials are wrong.
    #[error("signature does not match")]
    Mismatch,
}

impl VerifyError {
    /// Every reason label, in a fixed order.
    pub const REASONS: [&'static str; 12] = [
        "missing_signature",
        "duplicate_signature",
        "malformed_signature",
        "missing_timestamp",
        "malformed_timestamp",
        "stale_timestamp",
        "future_timestamp",
        "body_digest_mismatch",
        "mismatch",
        "missing_header",
        "empty_body",
        "wrong_algorithm",
    ];

    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        let i = match self {
            VerifyError::MissingSignature(_) => 0,
            VerifyError::DuplicateSignature(_) => 1,
            VerifyError::MalformedSignature(_) => 2,
            VerifyError::MissingTimestamp(_) => 3,
            VerifyError::MalformedTimestamp(_) => 4,
            VerifyError::StaleTimestamp(_) => 5,
            VerifyError::FutureTimestamp(_) => 6,
            VerifyError::BodyDigestMismatch => 7,
            VerifyError::Mismatch => 8,
            VerifyError::MissingHeader(_) => 9,
            VerifyError::EmptyBody => 10,
            VerifyError::WrongAlgorithm(_) => 11,
        };
        Self::REASONS[i]
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
        Secret { id, bytes: Zeroizing::new(bytes) }
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
        f.debug_struct("Secret").field("id", &self.id).field("bytes", &"<redacted>").finish()
    }
}
