//! The OTLP/HTTP endpoint of `make bench-tracing`: answers every export `200`, as a collector that keeps up
//! does, and counts what it got (`GET /stats`: `{"requests": n, "bytes": n}`), so that the bench can check the
//! traced runs did export. It decodes nothing: the bench measures the exporting side.
//!
//! Usage: bench-otlp-sink <listen>
#![allow(clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn handle(counts: Arc<Counts>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::GET {
        let stats = format!(
            r#"{{"requests": {}, "bytes": {}}}"#,
            counts.requests.load(Ordering::Relaxed),
            counts.bytes.load(Ordering::Relaxed)
        );
        return Ok(Response::new(Full::new(Bytes::from(stats))));
    }
    let size = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(size as u64, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::new())))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listen = std::env::args().nth(1).expect("usage: bench-otlp-sink <listen>");
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    let counts = Arc::new(Counts::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let counts = counts.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(counts.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
