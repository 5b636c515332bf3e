//! Pieces every scheme uses: reading one header, decoding, HMAC, constant-time comparison, timestamp windows.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Secret, VerifyError, MAX_SIGNATURE_HEADER_BYTES};

/// An HMAC hash function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// HMAC-SHA1 (GitHub's legacy header, Twilio).
    Sha1,
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The MAC length in bytes.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// HMAC of the concatenated `parts` under `key`.
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length, so this cannot fail.
            let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else { return Vec::new() };
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
            Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
        }
    }
}

/// How signature bytes are written in a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    /// Decodes `text`; `None` if it is not valid in this encoding.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }

    /// Encodes `bytes`.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// The one value of a header as text, or why there is not exactly one usable value.
pub fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, VerifyError> {
    optional_header(headers, name)?.ok_or_else(|| VerifyError::MissingSignature(name.to_string()))
}

/// Like [`single_header`], but absent is `Ok(None)`.
pub fn optional_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(VerifyError::DuplicateSignature(name.to_string()));
    }
    let bytes = first.as_bytes();
    if bytes.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(VerifyError::MalformedSignature(name.to_string()));
    }
    std::str::from_utf8(bytes).map(|s| Some(s.trim())).map_err(|_| VerifyError::MalformedSignature(name.to_string()))
}

/// A timestamp header: exactly one value of 1 to `max_digits` ASCII digits. Returns the number and the text
/// as sent (what the sender signed).
pub fn timestamp_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    max_digits: usize,
) -> Result<(i64, &'a str), VerifyError> {
    let value = match optional_header(headers, name) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(VerifyError::MissingTimestamp(name.to_string())),
        Err(_) => return Err(VerifyError::MalformedTimestamp(name.to_string())),
    };
    let ts = parse_timestamp(value, max_digits).ok_or_else(|| VerifyError::MalformedTimestamp(name.to_string()))?;
    Ok((ts, value))
}

/// Parses 1 to `max_digits` ASCII digits.
pub fn parse_timestamp(text: &str, max_digits: usize) -> Option<i64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `len` bytes written as lower-case hex, the only form the providers' official libraries accept (they compare
/// the lower-case hex text of the expected MAC with what was sent): upper-case hex is refused, not decoded.
pub fn lower_hex(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != 2 * len || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(text).ok()
}

/// Refuses a timestamp (seconds) more than `tolerance` seconds away from `now`, in either direction.
pub fn check_window(timestamp: i64, now: i64, tolerance: u64) -> Result<(), VerifyError> {
    let tol = i64::try_from(tolerance).unwrap_or(i64::MAX);
    if timestamp < now.saturating_sub(tol) {
        return Err(VerifyError::StaleTimestamp(tolerance));
    }
    if timestamp > now.saturating_add(tol) {
        return Err(VerifyError::FutureTimestamp(tolerance));
    }
    Ok(())
}

/// Checks a public URL for the schemes that sign it (Twilio, HubSpot): absolute http(s), no query or fragment
/// (the request's own query is appended to it).
pub fn check_public_url(public_url: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(public_url).map_err(|e| format!("`{public_url}` is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{public_url}` is not an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{public_url}` must not have a query or fragment: the request's query is appended"));
    }
    Ok(url)
}

/// `base`, with `?query` when the request had one, exactly as received.
pub fn with_query(base: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base.to_owned(),
    }
}

/// Constant-time equality (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The position of the first secret whose expected signature equals one of `candidates`.
///
/// Every candidate is compared with every secret's expected value in constant time, so the time taken does
/// not depend on how much of a forged signature is right.
pub fn matching_secret(
    secrets: &[Secret],
    candidates: &[Vec<u8>],
    expected: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<usize, VerifyError> {
    for (i, secret) in secrets.iter().enumerate() {
        let want = expected(secret.expose());
        let mut hit = false;
        for c in candidates {
            hit |= ct_eq(&want, c);
        }
        if hit {
            return Ok(i);
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn rfc_4231_vectors() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let data: &[&[u8]] = &[b"what do ya ", b"want for nothing?"];
        assert_eq!(
            hex::encode(Algorithm::Sha256.mac(b"Jefe", data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(Algorithm::Sha512.mac(b"Jefe", data)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        // RFC 2202 §3: HMAC-SHA1, key "Jefe".
        assert_eq!(hex::encode(Algorithm::Sha1.mac(b"Jefe", data)), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn windows_refuse_both_directions() {
        assert_eq!(check_window(1000, 1000, 300), Ok(()));
        assert_eq!(check_window(700, 1000, 300), Ok(()));
        assert_eq!(check_window(1300, 1000, 300), Ok(()));
        assert_eq!(check_window(699, 1000, 300), Err(VerifyError::StaleTimestamp(300)));
        assert_eq!(check_window(1301, 1000, 300), Err(VerifyError::FutureTimestamp(300)));
        assert_eq!(check_window(i64::MAX, 0, u64::MAX), Ok(()));
    }

    #[test]
    fn timestamps_are_plain_digits() {
        assert_eq!(parse_timestamp("1700000000", 12), Some(1_700_000_000));
        for bad in ["", "-1", "1e9", " 1", "17000000000000", "0x10"] {
            assert_eq!(parse_timestamp(bad, 12), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        let name = HeaderName::from_static("x-ts");
        assert!(matches!(timestamp_header(&h, &name, 12), Err(VerifyError::MissingTimestamp(_))));
        h.append("x-ts", HeaderValue::from_static("1"));
        h.append("x-ts", HeaderValue::from_static("2"));
        assert!(matches!(timestamp_header(&h, &name, 12), Err(VerifyError::MalformedTimestamp(_))));
    }

    #[test]
    fn headers_must_be_single_and_bounded() {
        let name = HeaderName::from_static("x-sig");
        let mut h = HeaderMap::new();
        assert!(matches!(single_header(&h, &name), Err(VerifyError::MissingSignature(_))));
        h.insert("x-sig", HeaderValue::from_str(&"a".repeat(MAX_SIGNATURE_HEADER_BYTES + 1)).unwrap());
        assert!(matches!(single_header(&h, &name), Err(VerifyError::MalformedSignature(_))));
        h.insert("x-sig", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert!(matches!(single_header(&h, &name), Err(VerifyError::MalformedSignature(_))));
        h.insert("x-sig", HeaderValue::from_static(" ok "));
        assert_eq!(single_header(&h, &name), Ok("ok"));
        h.append("x-sig", HeaderValue::from_static("again"));
        assert!(matches!(single_header(&h, &name), Err(VerifyError::DuplicateSignature(_))));
    }

    #[test]
    fn secrets_match_by_position_and_only_exactly() {
        let secrets = vec![Secret::new("old".into(), b"a".to_vec()), Secret::new("new".into(), b"b".to_vec())];
        let mac = |k: &[u8]| Algorithm::Sha256.mac(k, &[b"body"]);
        assert_eq!(matching_secret(&secrets, &[mac(b"b")], mac), Ok(1));
        assert_eq!(matching_secret(&secrets, &[vec![0; 32], mac(b"a")], mac), Ok(0));
        let mut almost = mac(b"a");
        almost[31] ^= 1;
        assert_eq!(matching_secret(&secrets, &[almost], mac), Err(VerifyError::Mismatch));
        assert_eq!(matching_secret(&secrets, &[], mac), Err(VerifyError::Mismatch));
    }
}
