//! A TLS client for tests: a self-signed certificate for `localhost`, and requests over HTTP/1.1 or HTTP/2
//! chosen by ALPN, so the test sees which protocol the server agreed to.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::Reply;

/// A self-signed certificate and key for `localhost`, written as PEM files in `dir`.
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    (cert_path, key_path, cert.cert.der().clone())
}

/// Which protocol to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` only.
    H2,
    /// `http/1.1` only.
    Http1,
}

/// POSTs over TLS to `addr`, trusting `root`; returns the answer and the negotiated ALPN protocol.
pub async fn post(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    alpn: Alpn,
    path: &str,
    headers: &[(String, String)],
    body: String,
) -> anyhow::Result<(Reply, Vec<u8>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![match alpn {
        Alpn::H2 => b"h2".to_vec(),
        Alpn::Http1 => b"http/1.1".to_vec(),
    }];
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost")?, stream).await?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec).unwrap_or_default();
    let mut req = http::Request::post(format!("https://localhost:{}{path}", addr.port()));
    if negotiated != b"h2" {
        // HTTP/1.1 names the host in `Host` (HTTP/2 in `:authority`, from the URI); hyper's connection-level
        // client adds neither header.
        req = req.header(http::header::HOST, format!("localhost:{}", addr.port()));
    }
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    let resp = if negotiated == b"h2" {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((Reply { status: parts.status.as_u16(), headers: parts.headers, body }, negotiated))
}

/// POSTs over plain HTTP/2 (prior knowledge, h2c).
pub async fn post_h2c(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: String,
) -> anyhow::Result<Reply> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body)))?).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
}
