//! The network edge: the client address behind trusted proxies, and TLS.
//!
//! The client of a request is its peer, unless the peer is a trusted proxy: then the forwarding headers are
//! read from the right (the hop nearest to us) and the first address that is not a trusted proxy is the
//! client. `X-Forwarded-For` is read when present, else `Forwarded` (RFC 7239). Headers from untrusted peers
//! are ignored: anyone can write them.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

/// The client address of a request from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Walk from the nearest hop outwards; the first untrusted one is the client. An unparsable hop
    // (`unknown`, an obfuscated name) or no untrusted hop at all leaves the proxy itself as the client, which
    // an allowlist of sender networks then refuses: unknown means not allowed.
    for hop in forwarded_for(headers).iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return *ip,
            None => break,
        }
    }
    peer
}

fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if !xff.is_empty() {
        return xff.iter().flat_map(|v| v.split(',')).map(|h| parse_addr(h.trim())).collect();
    }
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| parse_addr(v.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':').and_then(|(host, _port)| host.parse().ok())
}

/// A TLS acceptor for the configured certificate chain and key, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_file).and_then(|it| it.collect::<Result<_, _>>()).map_err(|e| {
            format!("config field `server.tls.cert_file`: cannot read certificates from {}: {e}", cert_file.display())
        })?;
    if certs.is_empty() {
        return Err(format!("config field `server.tls.cert_file`: no certificate in {}", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!("config field `server.tls.key_file`: cannot read a private key from {}: {e}", key_file.display())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("config field `server.tls`: the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarding_headers_are_ignored_from_untrusted_peers() {
        let peer: IpAddr = "198.51.100.7".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_ip(peer, &h, &[]), peer);
        assert_eq!(client_ip(peer, &h, &nets(&["10.0.0.0/8"])), peer);
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        // A client can prepend anything; only what our proxies appended counts.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.4")]);
        assert_eq!(client_ip(proxy, &h, &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_ip(proxy, &h, &trusted), "203.0.113.9".parse::<IpAddr>().unwrap());
        let h = headers(&[("forwarded", r#"for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711""#)]);
        assert_eq!(client_ip(proxy, &h, &trusted), "2001:db8:cafe::17".parse::<IpAddr>().unwrap());
        let none = HeaderMap::new();
        assert_eq!(client_ip(proxy, &none, &trusted), proxy, "no header: the proxy itself");
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(client_ip(proxy, &garbage, &trusted), proxy);
    }

    #[test]
    fn addresses_with_ports_and_brackets_parse() {
        assert_eq!(parse_addr("1.2.3.4:80"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_addr("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(parse_addr("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_addr("_hidden"), None);
    }
}
