//! A network cut between one client and a Kafka cluster: TCP proxies in front of each broker's second listener
//! ([`crate::KafkaOptions::proxied`]), which a test can cut and heal.
//!
//! A cut behaves like a partition, not like a crash: connections stay open but nothing crosses them in either
//! direction, and new connections are accepted but carry nothing, so the client's own timeouts fire (heartbeats,
//! requests, the session), not connection resets. Healing closes every connection that lived through the cut
//! (a real one would have timed out on TCP retransmissions) and forwards new connections again.

use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kafka::ProxiedListener;

/// Proxies in front of every node of a cluster; dropped, they stop.
#[derive(Debug)]
pub struct NetCut {
    cut: Arc<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
    bootstrap: String,
}

impl NetCut {
    /// Starts one proxy per listener, each listening on its advertised port.
    pub async fn start(listeners: &[ProxiedListener]) -> std::io::Result<NetCut> {
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let mut tasks = Vec::new();
        for l in listeners {
            let listener = TcpListener::bind(("127.0.0.1", l.advertised)).await?;
            tasks.push(tokio::spawn(accept(listener, l.port, cut.clone())));
        }
        let bootstrap = listeners.iter().map(|l| format!("127.0.0.1:{}", l.advertised)).collect::<Vec<_>>().join(",");
        Ok(NetCut { cut, tasks, bootstrap })
    }

    /// Bootstrap servers that lead through the proxies only.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Cuts: nothing crosses any proxy until [`NetCut::heal`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals: connections that lived through the cut are closed, new ones are forwarded.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept(listener: TcpListener, target: u16, cut: Arc<watch::Sender<bool>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let _ = client.set_nodelay(true);
        tokio::spawn(relay(client, target, cut.subscribe()));
    }
}

/// Forwards one connection until either side closes it, or until the end of a cut it lived through.
async fn relay(mut client: TcpStream, target: u16, mut cut: watch::Receiver<bool>) {
    if *cut.borrow_and_update() {
        // Accepted during the cut: it carries nothing, and is closed when the cut heals.
        let _ = cut.wait_for(|c| !*c).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
        let _ = client.shutdown().await;
        return;
    };
    let _ = server.set_nodelay(true);
    let cut_began = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if cut_began {
        // Both sockets stay open, silent, until the cut heals; then they close.
        let _ = cut.wait_for(|c| !*c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt as _;

    /// An echo server on a free port.
    async fn echo() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    async fn roundtrip(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_cut_silences_open_and_new_connections_and_healing_closes_them_and_forwards_again() {
        let target = echo().await;
        let advertised = crate::free_port();
        let net = NetCut::start(&[ProxiedListener { advertised, port: target }]).await.unwrap();
        let mut before = TcpStream::connect(net.bootstrap()).await.unwrap();
        assert_eq!(roundtrip(&mut before, Duration::from_secs(5)).await.as_deref(), Some(&b"ping"[..]));

        net.cut();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(roundtrip(&mut before, Duration::from_millis(300)).await, None, "silent, not reset");
        let mut during = TcpStream::connect(net.bootstrap()).await.unwrap();
        assert_eq!(roundtrip(&mut during, Duration::from_millis(300)).await, None);

        net.heal();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), before.read(&mut buf)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "a connection that lived through the cut is closed: {closed:?}");
        let mut after = TcpStream::connect(net.bootstrap()).await.unwrap();
        assert_eq!(roundtrip(&mut after, Duration::from_secs(5)).await.as_deref(), Some(&b"ping"[..]));
    }
}
