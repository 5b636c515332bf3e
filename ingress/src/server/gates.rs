//! Admission: the checks a webhook request passes before its body is read, each refusing it at once with
//! what to answer. [`host`] refuses a missing, repeated or invalid `Host`, as RFC 9112 requires of a server
//! (hyper deals with the body framing before a request reaches here: it answers 400 to two different
//! lengths and to obsolete folded header lines, and reads a request with both `Content-Length` and
//! `Transfer-Encoding` by its chunks alone and then closes the connection, as RFC 9112 §6.1 allows, so
//! nothing can be smuggled after it);
//! [`App::allowed`] checks the sender's address. Then two budgets, kept apart so that senders of slow bodies
//! cannot take the capacity meant for storing: [`App::admit`] lets a request receive its body, or refuses it,
//! checking in order:
//!
//! 1. room to store it now (the global in-flight budget, the adaptive limit that follows Kafka's
//!    acknowledgement latency, the source's own budget: a look, nothing taken), so that under overload a
//!    request is shed before its body is read (503 with `Retry-After`);
//! 2. the budget for receiving bodies, overall and for the client's address (503 with `Retry-After`);
//! 3. the source's rate limit (429 with `Retry-After`: when a token is next available);
//! 4. the source's accepted content types (415);
//! 5. the declared `Content-Length` against the source's body limit (413; the bytes read are checked again
//!    as the body arrives).
//!
//! Once the body is read and verified, [`App::admit_store`] takes the storing capacity for real (a
//! [`Permit`], held until the request is answered), or refuses with 503 if it filled up meanwhile.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use http::header;
use http::request::Parts;
use tokio::sync::OwnedSemaphorePermit;

use super::{App, Route};
use crate::limits::{retry_after_secs, Budget, ClientPermit, LimitPermit};
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

/// The capacity a request holds while its body is received: released when dropped.
#[derive(Debug)]
pub(super) struct Reading {
    _reading: OwnedSemaphorePermit,
    _client: ClientPermit,
}

/// The capacity a verified request holds while it is stored and answered: released when dropped.
#[derive(Debug)]
pub(super) struct Permit {
    _in_flight: Gauged,
    _global: OwnedSemaphorePermit,
    _adaptive: LimitPermit,
    _source: Option<OwnedSemaphorePermit>,
}

/// RFC 9112 §3.2: a server answers 400 to an HTTP/1.1 request without a `Host` header, and to any request
/// with more than one, or with one whose value is not a host (and port). An HTTP/2 request names its
/// authority in `:authority` and may send no `Host`.
pub(super) fn host(parts: &Parts) -> Result<(), Refusal> {
    let bad = |message: &'static str| Err(Refusal::new(Outcome::BadRequest, "bad_host", message));
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if parts.version == http::Version::HTTP_11 => bad("an HTTP/1.1 request has a Host header"),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => bad("a request has one Host header, not several"),
        (Some(value), None) => match value.as_bytes() {
            [] => Ok(()),
            text if is_host_and_port(text) => Ok(()),
            _ => bad("the Host header is not a host and port"),
        },
    }
}

/// `host` or `host:port` (userinfo is not part of a `Host`; a port is digits).
fn is_host_and_port(text: &[u8]) -> bool {
    if text.contains(&b'@') {
        return false;
    }
    let Ok(authority) = http::uri::Authority::try_from(text) else { return false };
    // Without userinfo, the authority is the host, then `:port` if any.
    let port = &authority.as_str()[authority.host().len()..];
    port.is_empty() || port.strip_prefix(':').is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
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

    fn overloaded(&self, message: &'static str) -> Refusal {
        Refusal::new(Outcome::Overloaded, "overloaded", message)
            .retry_after(u64::from(self.settings.producer.retry_after_secs))
    }

    /// Lets a webhook request from `client` to `route` receive its body ([`Reading`], held until the body is
    /// read), or refuses it before its body is read.
    pub(super) fn admit(&self, route: &Route, parts: &Parts, client: IpAddr) -> Result<Reading, Refusal> {
        let source = &route.source;
        if self.in_flight.is_spent() {
            return Err(self.overloaded("hookline is at capacity; retry later"));
        }
        if !self.adaptive.has_room() {
            return Err(self.overloaded("Kafka is slow to acknowledge; retry later"));
        }
        if route.budget.as_ref().is_some_and(Budget::is_spent) {
            return Err(self.overloaded("this source is at capacity; retry later"));
        }
        let busy = |reason, message| {
            Refusal::new(Outcome::Overloaded, reason, message)
                .retry_after(u64::from(self.settings.producer.retry_after_secs))
        };
        let reading = self
            .reading
            .try_acquire()
            .ok_or_else(|| busy("too_many_bodies", "too many bodies in progress; retry later"))?;
        let client = self.reading_per_client.try_acquire(client).ok_or_else(|| {
            busy("too_many_bodies_from_client", "too many bodies in progress from this address; retry later")
        })?;
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
        Ok(Reading { _reading: reading, _client: client })
    }

    /// Takes the capacity to store a verified webhook of `route` until it is answered, or refuses it (503).
    pub(super) fn admit_store(&self, route: &Route) -> Result<Permit, Refusal> {
        let in_flight = self.metrics.in_flight();
        let global =
            self.in_flight.try_acquire().ok_or_else(|| self.overloaded("hookline is at capacity; retry later"))?;
        let adaptive =
            self.adaptive.try_acquire().ok_or_else(|| self.overloaded("Kafka is slow to acknowledge; retry later"))?;
        let own = match &route.budget {
            Some(budget) => {
                Some(budget.try_acquire().ok_or_else(|| self.overloaded("this source is at capacity; retry later"))?)
            }
            None => None,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;

    fn parts(version: Version, hosts: &[&str]) -> Parts {
        let mut req = http::Request::builder().method("POST").uri("/webhooks/shop").version(version);
        for h in hosts {
            req = req.header(header::HOST, *h);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_is_checked_as_rfc_9112_says() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        for (version, hosts, ok) in [
            (HTTP_11, &[][..], false),
            (HTTP_11, &["hooks.example.com"][..], true),
            (HTTP_11, &["hooks.example.com:8443"][..], true),
            (HTTP_11, &["[::1]:8080"][..], true),
            (HTTP_11, &[""][..], true),
            (HTTP_11, &["a.example", "b.example"][..], false),
            (HTTP_11, &["a.example", "a.example"][..], false),
            (HTTP_11, &["user@a.example"][..], false),
            (HTTP_11, &["a.example/path"][..], false),
            (HTTP_11, &["a.example:port"][..], false),
            (HTTP_11, &["[::1]a12"][..], false),
            (HTTP_11, &["a.example:"][..], true),
            (HTTP_10, &[][..], true),
            (HTTP_2, &[][..], true),
            (HTTP_2, &["a.example", "b.example"][..], false),
        ] {
            let r = host(&parts(version, hosts));
            assert_eq!(r.is_ok(), ok, "{version:?} {hosts:?}: {r:?}");
            if let Err(refusal) = r {
                assert_eq!((refusal.outcome, refusal.reason), (Outcome::BadRequest, "bad_host"));
            }
        }
    }
}
