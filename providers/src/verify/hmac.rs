//! Generic HMAC, for any sender that signs with a shared secret: the algorithm (SHA-1/256/512), the header
//! and its encoding and prefix, and what is signed, as a template of the body and of other headers'
//! values — `{body}`, `{timestamp}.{body}`, `{id}.{timestamp}.{body}` — with a timestamp tolerance.
//!
//! ```toml
//! [sources.acme.verify]
//! scheme = "hmac"
//! header = "X-Acme-Signature"
//! algorithm = "sha256"
//! encoding = "hex"
//! prefix = "sha256="
//! template = "{timestamp}.{body}"
//! timestamp_header = "X-Acme-Timestamp"
//! tolerance_secs = 300
//! secrets = [{ env = "ACME_SECRET" }]
//! ```

use http::HeaderName;
use serde::Deserialize;

use super::common::{check_window, matching_secret, single_header, timestamp_header, Algorithm, Encoding};
use super::{Outgoing, Request, Scheme, Secret, VerifyError, MAX_SIGNATURES};
use crate::settings::{self, header_name, SecretSource, SettingError, Settings};

/// One piece of a signed-content template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Literal(String),
    /// The raw body.
    Body,
    /// The timestamp header's value.
    Timestamp,
    /// The id header's value.
    Id,
}

/// Parses a template such as `{id}.{timestamp}.{body}`. It must hold `{body}` exactly once; `{timestamp}`
/// and `{id}` at most once each. Braces are only allowed around those three names.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}').ok_or("an opening `{` has no closing `}`")?;
                out.push(match &rest[1..end] {
                    "body" => Segment::Body,
                    "timestamp" => Segment::Timestamp,
                    "id" => Segment::Id,
                    other => {
                        return Err(format!("unknown placeholder `{{{other}}}` (use {{body}}, {{timestamp}}, {{id}})"))
                    }
                });
                rest = &rest[end + 1..];
            }
            Some(i) => {
                out.push(Segment::Literal(rest[..i].to_owned()));
                rest = &rest[i..];
            }
            None => {
                out.push(Segment::Literal(rest.to_owned()));
                rest = "";
            }
        }
    }
    if out.iter().any(|s| matches!(s, Segment::Literal(l) if l.contains('}'))) {
        return Err("a closing `}` has no opening `{`".into());
    }
    let count = |seg: &Segment| out.iter().filter(|s| *s == seg).count();
    if count(&Segment::Body) != 1 {
        return Err("the template must contain {body} exactly once".into());
    }
    if count(&Segment::Timestamp) > 1 || count(&Segment::Id) > 1 {
        return Err("{timestamp} and {id} may appear at most once".into());
    }
    Ok(out)
}

/// Unit of the timestamp header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    /// Seconds since the Unix epoch.
    #[default]
    Seconds,
    /// Milliseconds since the Unix epoch.
    Milliseconds,
}

/// A configured generic HMAC scheme.
#[derive(Debug)]
pub struct HmacScheme {
    /// Signature header.
    pub header: HeaderName,
    /// Hash function.
    pub algorithm: Algorithm,
    /// Encoding of the signature.
    pub encoding: Encoding,
    /// Text before the signature in the header (`sha256=`).
    pub prefix: String,
    /// What is signed.
    pub template: Vec<Segment>,
    /// Header of `{timestamp}`; when set, the timestamp window is enforced.
    pub timestamp_header: Option<HeaderName>,
    /// Unit of the timestamp.
    pub timestamp_unit: TimestampUnit,
    /// Header of `{id}`.
    pub id_header: Option<HeaderName>,
    /// Allowed distance from now of the timestamp, in seconds.
    pub tolerance_secs: u64,
    /// Live secrets.
    pub secrets: Vec<Secret>,
}

/// `[verify]` of an `hmac` source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HmacSettings {
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
    template: Option<String>,
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
    secrets: Vec<SecretSource>,
}

/// The scheme of an `hmac` source: any HMAC sender, described by its settings.
pub fn verifier(settings: Settings) -> Result<Box<dyn Scheme>, SettingError> {
    let s: HmacSettings = settings.read()?;
    let template =
        parse_template(s.template.as_deref().unwrap_or("{body}")).map_err(|e| SettingError::new("template", e))?;
    let timestamp_header = s.timestamp_header.map(|h| header_name("timestamp_header", &h)).transpose()?;
    let id_header = s.id_header.map(|h| header_name("id_header", &h)).transpose()?;
    if template.contains(&Segment::Timestamp) && timestamp_header.is_none() {
        return Err(SettingError::new("timestamp_header", "the template uses {timestamp}: name its header"));
    }
    if template.contains(&Segment::Id) && id_header.is_none() {
        return Err(SettingError::new("id_header", "the template uses {id}: name its header"));
    }
    Ok(Box::new(HmacScheme {
        header: header_name("header", &s.header)?,
        algorithm: s.algorithm,
        encoding: s.encoding,
        prefix: s.prefix,
        template,
        timestamp_header,
        timestamp_unit: s.timestamp_unit,
        id_header,
        tolerance_secs: settings::tolerance(s.tolerance_secs, 300)?,
        secrets: settings::secrets(s.secrets)?,
    }))
}

impl HmacScheme {
    /// A scheme signing the body alone, hex, with the given prefix (the simplest configuration).
    pub fn body_only(header: HeaderName, encoding: Encoding, prefix: &str, secrets: Vec<Secret>) -> Self {
        HmacScheme {
            header,
            algorithm: Algorithm::Sha256,
            encoding,
            prefix: prefix.to_owned(),
            template: vec![Segment::Body],
            timestamp_header: None,
            timestamp_unit: TimestampUnit::Seconds,
            id_header: None,
            tolerance_secs: 300,
            secrets,
        }
    }

    /// The header value a sender holding `secret` sends (for tests and the CLI).
    pub fn sign(&self, secret: &[u8], body: &[u8], timestamp: Option<&str>, id: Option<&str>) -> String {
        let parts = self.parts(body, timestamp.unwrap_or_default(), id.unwrap_or_default());
        format!("{}{}", self.prefix, self.encoding.encode(&self.algorithm.mac(secret, &parts)))
    }

    fn parts<'a>(&'a self, body: &'a [u8], timestamp: &'a str, id: &'a str) -> Vec<&'a [u8]> {
        self.template
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_bytes(),
                Segment::Body => body,
                Segment::Timestamp => timestamp.as_bytes(),
                Segment::Id => id.as_bytes(),
            })
            .collect()
    }
}

impl Scheme for HmacScheme {
    fn name(&self) -> &'static str {
        "hmac"
    }

    fn sign(&self, secret: &[u8], out: &Outgoing<'_>) -> Vec<(HeaderName, String)> {
        let mut headers = Vec::new();
        let timestamp = self.timestamp_header.as_ref().map(|name| {
            let ts = match self.timestamp_unit {
                TimestampUnit::Seconds => out.timestamp_secs,
                TimestampUnit::Milliseconds => out.timestamp_secs.saturating_mul(1000),
            };
            headers.push((name.clone(), ts.to_string()));
            ts.to_string()
        });
        let id = self.id_header.as_ref().map(|name| {
            headers.push((name.clone(), out.id.to_owned()));
            out.id
        });
        headers.push((self.header.clone(), self.sign(secret, out.body, timestamp.as_deref(), id)));
        headers
    }

    fn signs_timestamp(&self) -> bool {
        self.timestamp_header.is_some()
    }

    fn verify(&self, req: &Request<'_>) -> Result<usize, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(self.header.to_string());
        let timestamp = match &self.timestamp_header {
            None => "",
            Some(name) => {
                let max_digits = if self.timestamp_unit == TimestampUnit::Seconds { 12 } else { 15 };
                let (ts, text) = timestamp_header(req.headers, name, max_digits)?;
                let secs = if self.timestamp_unit == TimestampUnit::Seconds { ts } else { ts / 1000 };
                check_window(secs, req.now_secs, self.tolerance_secs)?;
                text
            }
        };
        let id = match &self.id_header {
            None => "",
            Some(name) => single_header(req.headers, name)?,
        };
        let value = single_header(req.headers, &self.header)?;
        // Several signatures may be sent during a rotation, separated by spaces or commas.
        let mut candidates = Vec::new();
        for entry in value.split([' ', ',']).filter(|e| !e.is_empty()) {
            let encoded = entry.strip_prefix(self.prefix.as_str()).ok_or_else(malformed)?;
            let sig =
                self.encoding.decode(encoded).filter(|s| s.len() == self.algorithm.mac_len()).ok_or_else(malformed)?;
            candidates.push(sig);
            if candidates.len() > MAX_SIGNATURES {
                return Err(malformed());
            }
        }
        if candidates.is_empty() {
            return Err(malformed());
        }
        let parts = self.parts(req.body, timestamp, id);
        matching_secret(&self.secrets, &candidates, |key| self.algorithm.mac(key, &parts))
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
    use http::{HeaderMap, HeaderValue, Method, Uri};

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().enumerate().map(|(i, s)| Secret::new(i.to_string(), s.as_bytes().to_vec())).collect()
    }

    fn check(
        scheme: &HmacScheme,
        headers: &[(&'static str, String)],
        body: &[u8],
        now: i64,
    ) -> Result<usize, VerifyError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let uri = Uri::from_static("/webhooks/x");
        scheme.verify(&Request { method: &Method::POST, uri: &uri, headers: &h, body, now_secs: now })
    }

    #[test]
    fn templates_parse_and_refuse_nonsense() {
        assert_eq!(parse_template("{body}").unwrap(), vec![Segment::Body]);
        assert_eq!(
            parse_template("v0:{timestamp}:{body}").unwrap(),
            vec![Segment::Literal("v0:".into()), Segment::Timestamp, Segment::Literal(":".into()), Segment::Body]
        );
        for bad in ["", "{timestamp}", "{body}{body}", "{bodY}", "{body", "x}{body}", "{id}{id}{body}"] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn github_documented_example_verifies_as_generic_hmac() {
        // docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let s = HmacScheme::body_only(
            HeaderName::from_static("x-hub-signature-256"),
            Encoding::Hex,
            "sha256=",
            secrets(&["It's a Secret to Everybody"]),
        );
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_owned();
        assert_eq!(check(&s, &[("x-hub-signature-256", sig)], b"Hello, World!", 0), Ok(0));
    }

    fn timed(algorithm: Algorithm, encoding: Encoding) -> HmacScheme {
        HmacScheme {
            header: HeaderName::from_static("x-sig"),
            algorithm,
            encoding,
            prefix: String::new(),
            template: parse_template("{id}.{timestamp}.{body}").unwrap(),
            timestamp_header: Some(HeaderName::from_static("x-ts")),
            timestamp_unit: TimestampUnit::Seconds,
            id_header: Some(HeaderName::from_static("x-id")),
            tolerance_secs: 300,
            secrets: secrets(&["old", "new"]),
        }
    }

    #[test]
    fn sign_then_verify_every_algorithm_and_encoding_with_a_template() {
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            for enc in [Encoding::Hex, Encoding::Base64] {
                let s = timed(alg, enc);
                let sig = s.sign(b"new", b"{}", Some("1000"), Some("msg_1"));
                let h = [("x-sig", sig), ("x-ts", "1000".into()), ("x-id", "msg_1".into())];
                assert_eq!(check(&s, &h, b"{}", 1000), Ok(1), "{alg:?} {enc:?}");
                // Tampering with any signed part fails.
                assert_eq!(check(&s, &h, b"{ }", 1000), Err(VerifyError::Mismatch));
                let mut other_id = h.clone();
                other_id[2].1 = "msg_2".into();
                assert_eq!(check(&s, &other_id, b"{}", 1000), Err(VerifyError::Mismatch));
            }
        }
    }

    #[test]
    fn stale_future_and_missing_timestamps_are_refused() {
        let s = timed(Algorithm::Sha256, Encoding::Hex);
        let sig = s.sign(b"old", b"{}", Some("1000"), Some("m"));
        let h = |ts: &str| vec![("x-sig", sig.clone()), ("x-ts", ts.to_owned()), ("x-id", "m".to_owned())];
        assert_eq!(check(&s, &h("1000"), b"{}", 1301), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(check(&s, &h("1000"), b"{}", 699), Err(VerifyError::FutureTimestamp(300)));
        assert!(matches!(check(&s, &h("10e2"), b"{}", 1000), Err(VerifyError::MalformedTimestamp(_))));
        let no_ts = vec![("x-sig", sig.clone()), ("x-id", "m".to_owned())];
        assert!(matches!(check(&s, &no_ts, b"{}", 1000), Err(VerifyError::MissingTimestamp(_))));
    }

    #[test]
    fn millisecond_timestamps_are_windowed_in_seconds() {
        let mut s = timed(Algorithm::Sha256, Encoding::Hex);
        s.timestamp_unit = TimestampUnit::Milliseconds;
        let sig = s.sign(b"old", b"{}", Some("1000999"), Some("m"));
        let h = vec![("x-sig", sig), ("x-ts", "1000999".to_owned()), ("x-id", "m".to_owned())];
        assert_eq!(check(&s, &h, b"{}", 1000), Ok(0));
        assert_eq!(check(&s, &h, b"{}", 1301), Err(VerifyError::StaleTimestamp(300)));
    }

    #[test]
    fn malformed_signatures_are_refused_not_panicked_on() {
        let s = HmacScheme::body_only(HeaderName::from_static("x-sig"), Encoding::Hex, "sha256=", secrets(&["k"]));
        for bad in ["sha1=abcd", "sha256=zz", "sha256=abcd", "", "sha256=", &format!("sha256={}", "0".repeat(5000))] {
            let r = check(&s, &[("x-sig", bad.to_owned())], b"x", 0);
            assert!(matches!(r, Err(VerifyError::MalformedSignature(_))), "{bad:?}: {r:?}");
        }
        let many = vec![format!("sha256={}", "0".repeat(64)); MAX_SIGNATURES + 1].join(" ");
        assert!(matches!(check(&s, &[("x-sig", many)], b"x", 0), Err(VerifyError::MalformedSignature(_))));
        let good = s.sign(b"k", b"x", None, None);
        let two = vec![("x-sig", good.clone()), ("x-sig", good.clone())];
        assert!(matches!(check(&s, &two, b"x", 0), Err(VerifyError::DuplicateSignature(_))));
        // A rotation may send the old and the new signature together.
        let both = format!("sha256={} {good}", "0".repeat(64));
        assert_eq!(check(&s, &[("x-sig", both)], b"x", 0), Ok(0));
        assert_eq!(check(&s, &[("x-sig", good.to_uppercase().replace("SHA256=", "sha256="))], b"x", 0), Ok(0));
    }
}
