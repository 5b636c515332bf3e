//! Generic HMAC-SHA256 over the raw body, sent in one header, hex or base64, with an optional prefix
//! (`X-Signature: sha256=5d41…`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use sha2::Sha256;

use super::{single_header, Secret, VerifyError};

type HmacSha256 = Hmac<Sha256>;

/// How the signature bytes are written in the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Lowercase or uppercase hexadecimal.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// A configured generic HMAC-SHA256 scheme.
#[derive(Debug)]
pub struct HmacScheme {
    header: HeaderName,
    encoding: Encoding,
    prefix: String,
    secrets: Vec<Secret>,
}

impl HmacScheme {
    /// A scheme reading `header`, with at least one secret.
    pub fn new(
        header: HeaderName,
        encoding: Encoding,
        prefix: String,
        secrets: Vec<Secret>,
    ) -> Self {
        HmacScheme {
            header,
            encoding,
            prefix,
            secrets,
        }
    }

    /// The signature header.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The live secrets.
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// Verifies `body` against the signature header; returns the position of the matching secret.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<usize, VerifyError> {
        let malformed = || VerifyError::MalformedSignature(self.header.to_string());
        let value = single_header(headers, &self.header)?;
        let value = std::str::from_utf8(value).map_err(|_| malformed())?.trim();
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(malformed)?;
        let signature = match self.encoding {
            Encoding::Hex => hex::decode(encoded).map_err(|_| malformed())?,
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| malformed())?,
        };
        if signature.len() != 32 {
            return Err(malformed());
        }
        for (i, secret) in self.secrets.iter().enumerate() {
            let mut mac =
                HmacSha256::new_from_slice(secret.expose()).map_err(|_| VerifyError::Mismatch)?;
            mac.update(body);
            // Constant-time comparison.
            if mac.verify_slice(&signature).is_ok() {
                return Ok(i);
            }
        }
        Err(VerifyError::Mismatch)
    }

    /// The header value a sender holding `secret` would send for `body` (for tests and the CLI).
    pub fn sign(&self, secret: &[u8], body: &[u8]) -> String {
        format!("{}{}", self.prefix, sign(self.encoding, secret, body))
    }
}

/// The encoded HMAC-SHA256 of `body` under `secret`, without prefix.
pub fn sign(encoding: Encoding, secret: &[u8], body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    match encoding {
        Encoding::Hex => hex::encode(tag),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn scheme(encoding: Encoding, prefix: &str, secrets: &[&str]) -> HmacScheme {
        HmacScheme::new(
            HeaderName::from_static("x-signature"),
            encoding,
            prefix.to_owned(),
            secrets
                .iter()
                .enumerate()
                .map(|(i, s)| Secret::new(i.to_string(), s.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-signature", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(Encoding::Hex, b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn github_documented_example_verifies() {
        // docs.github.com "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!", X-Hub-Signature-256 below.
        let s = scheme(Encoding::Hex, "sha256=", &["It's a Secret to Everybody"]);
        let h = headers("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert_eq!(s.verify(&h, b"Hello, World!"), Ok(0));
    }

    #[test]
    fn sign_then_verify_in_both_encodings() {
        for enc in [Encoding::Hex, Encoding::Base64] {
            let s = scheme(enc, "", &["k1"]);
            let body = br#"{"id":"evt_1"}"#;
            assert_eq!(s.verify(&headers(&s.sign(b"k1", body)), body), Ok(0));
        }
    }

    #[test]
    fn a_tampered_body_or_wrong_secret_is_a_mismatch() {
        let s = scheme(Encoding::Hex, "sha256=", &["right"]);
        let sig = s.sign(b"right", b"{\"amount\":100}");
        assert_eq!(
            s.verify(&headers(&sig), b"{\"amount\":900}"),
            Err(VerifyError::Mismatch)
        );
        let wrong = s.sign(b"wrong", b"{\"amount\":100}");
        assert_eq!(
            s.verify(&headers(&wrong), b"{\"amount\":100}"),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn any_live_secret_matches_and_its_position_is_reported() {
        let s = scheme(Encoding::Hex, "", &["old", "new"]);
        assert_eq!(s.verify(&headers(&s.sign(b"new", b"x")), b"x"), Ok(1));
        assert_eq!(s.verify(&headers(&s.sign(b"old", b"x")), b"x"), Ok(0));
    }

    #[test]
    fn malformed_missing_and_duplicated_headers_are_rejected() {
        let s = scheme(Encoding::Hex, "sha256=", &["k"]);
        let good = s.sign(b"k", b"x");
        let malformed = |v: &str| s.verify(&headers(v), b"x");
        assert!(matches!(
            malformed("sha1=abcd"),
            Err(VerifyError::MalformedSignature(_))
        ));
        assert!(matches!(
            malformed("sha256=zz"),
            Err(VerifyError::MalformedSignature(_))
        ));
        assert!(matches!(
            malformed("sha256=abcd"),
            Err(VerifyError::MalformedSignature(_))
        ));
        assert!(matches!(
            malformed(&format!("sha256={}", "a".repeat(5000))),
            Err(VerifyError::MalformedSignature(_))
        ));
        assert!(matches!(
            s.verify(&HeaderMap::new(), b"x"),
            Err(VerifyError::MissingSignature(_))
        ));
        let mut twice = headers(&good);
        twice.append("x-signature", HeaderValue::from_str(&good).unwrap());
        assert!(matches!(
            s.verify(&twice, b"x"),
            Err(VerifyError::DuplicateSignature(_))
        ));
        assert_eq!(s.verify(&headers(&good), b"x"), Ok(0));
        // Uppercase hex is accepted.
        assert_eq!(
            s.verify(
                &headers(&good.to_uppercase().replace("SHA256=", "sha256=")),
                b"x"
            ),
            Ok(0)
        );
    }
}
