//! Admission: the checks a webhook request passes before its body is read, each refusing it at once with
//! what to answer. [`App::allowed`] checks the sender's address; [`App::admit`] hands out a [`Permit`] (the
//! capacity the request holds until it is answered) or a [`Refusal`], checking in order:
//!
//! 1. the global in-flight budget, then the adaptive limit that follows Kafka's acknowledgement latency, then
//!    the source's own in-flight budget (503 with `Retry-After`);
//! 2. the source's rate limit (429 with `Retry-After`: when a token is next available);
//! 3. the source's accepted content types (415);
//! 4. the declared `Content-Length` against the source's body limit (413; the bytes read are checked again
//!    as the body arrives).

use std::borrow::Cow;
use std::net::SocketAddr;

use http::header;
use http::request::Parts;
use tokio::sync::OwnedSemaphorePermit;

use super::{App, Route};
use crate::limits::{retry_after_secs, LimitPermit};
use crate::net::client_ip;
use crate::telemetry::{Gauged, Outcome};

/// Why a request is refused: what is counted, recorded on the quarantine topic and answered.
#[derive(Debug)]
pub(super) struct Refusal {
    /// The outcome counted; its status is the answer's.
    pub outcome: Outcome,
    /// The machine-readable reason (`error` in the answer, `reason` on the quarantine topic).
    pub reason: &'static str,
    /// The message for the sender.
    pub message: Cow<'static, str>,
    /// Seconds to send as `Retry-After`, if any.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal without `Retry-After`.
    pub fn new(outcome: Outcome, reason: &'static str, message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal { outcome, reason, message: message.into(), retry_after: None }
    }

    fn retry_after(mut self, secs: u64) -> Refusal {
        self.retry_after = Some(secs);
        self
    }
}

/// The capacity an admitted request holds until it is answered: released when dropped.
#[derive(Debug)]
pub(super) struct Permit {
    _in_flight: Gauged,
    _global: OwnedSemaphorePermit,
    _adaptive: LimitPermit,
    _source: Option<OwnedSemaphorePermit>,
}

impl App {
    /// Whether the sender's address may send to `route` (its `allowed_ips`, behind the trusted proxies).
    pub(super) fn allowed(&self, route: &Route, parts: &Parts, peer: SocketAddr) -> Result<(), Refusal> {
        let Some(allowed) = &route.source.allowed_ips else { return Ok(()) };
        let ip = client_ip(peer.ip(), &parts.headers, &self.settings.trusted_proxies);
        if allowed.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(Refusal::new(Outcome::Forbidden, "ip_not_allowed", "this address may not send to this source"))
        }
    }

    /// Admits a webhook request to `route`, or refuses it before its body is read.
    pub(super) fn admit(&self, route: &Route, parts: &Parts) -> Result<Permit, Refusal> {
        let source = &route.source;
        let overloaded = |message: &'static str| {
            Refusal::new(Outcome::Overloaded, "overloaded", message)
                .retry_after(u64::from(self.settings.producer.retry_after_secs))
        };
        let in_flight = self.metrics.in_flight();
        let global = self.in_flight.try_acquire().ok_or_else(|| overloaded("hookline is at capacity; retry later"))?;
        let adaptive =
            self.adaptive.try_acquire().ok_or_else(|| overloaded("Kafka is slow to acknowledge; retry later"))?;
        let own = match &route.budget {
            Some(budget) => {
                Some(budget.try_acquire().ok_or_else(|| overloaded("this source is at capacity; retry later"))?)
            }
            None => None,
        };
        if let Some(bucket) = &route.rate_limit {
            bucket.try_take().map_err(|wait| {
                Refusal::new(Outcome::RateLimited, "rate_limited", "rate limit exceeded; retry later")
                    .retry_after(retry_after_secs(wait))
            })?;
        }
        if let Some(types) = &source.content_types {
            let media = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
            if !media.is_some_and(|media| types.contains(&media)) {
                let message = format!("this source accepts {}", types.join(", "));
                return Err(Refusal::new(Outcome::UnsupportedMediaType, "unsupported_media_type", message));
            }
        }
        if declared_length(&parts.headers).is_some_and(|len| len > source.max_body_bytes as u64) {
            return Err(too_large(source.max_body_bytes));
        }
        Ok(Permit { _in_flight: in_flight, _global: global, _adaptive: adaptive, _source: own })
    }
}

/// The refusal of a body larger than `limit` bytes, declared or read.
pub(super) fn too_large(limit: usize) -> Refusal {
    Refusal::new(Outcome::PayloadTooLarge, "payload_too_large", format!("the body is larger than {limit} bytes"))
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
