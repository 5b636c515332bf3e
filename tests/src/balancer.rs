//! HAProxy (Debian's `haproxy` package) in front of several ingress instances, run with the shipped
//! `deploy/haproxy/haproxy.cfg` (health checks on `/readyz`, a request whose ingress died unanswered retried
//! on another), so the test proves the file operators copy.
//!
//! The runtime state of each backend (UP, DOWN, ...) is read from HAProxy's stats socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{free_port, Process};

/// One ingress behind the balancer: where it takes webhooks and where its `/readyz` is.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// The webhook address.
    pub addr: SocketAddr,
    /// The admin address (`/readyz`).
    pub admin: SocketAddr,
}

/// A running HAProxy, killed when dropped.
#[derive(Debug)]
pub struct Balancer {
    _process: Process,
    /// The public address.
    pub addr: SocketAddr,
    socket: PathBuf,
    log: PathBuf,
}

/// The shipped `deploy/haproxy/haproxy.cfg`, with this test's addresses: its public address, its backends
/// (the `server` lines of its last section, `backend ingresses`) and a stats socket.
fn config(shipped: &str, listen: SocketAddr, socket: &Path, backends: &[Backend]) -> String {
    let sections: Vec<&str> = shipped.lines().filter(|l| !l.is_empty() && !l.starts_with([' ', '#'])).collect();
    assert_eq!(sections.last(), Some(&"backend ingresses"), "haproxy.cfg must end with `backend ingresses`");
    let mut out = String::new();
    for line in shipped.lines() {
        let setting = line.trim_start();
        if setting.starts_with("server ") {
            continue;
        }
        if setting.starts_with("bind ") {
            out.push_str(&format!("    bind {listen}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "global" {
            out.push_str(&format!("    stats socket {} mode 600 level admin\n", socket.display()));
        }
    }
    for (i, b) in backends.iter().enumerate() {
        out.push_str(&format!("    server ingress{i} {} check port {}\n", b.addr, b.admin.port()));
    }
    out
}

/// The shipped configuration.
fn shipped() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Balancer {
    /// Starts HAProxy in `dir` in front of `backends` and waits until it answers on its public address.
    pub async fn start(dir: &Path, backends: &[Backend]) -> Balancer {
        let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let socket = dir.join("haproxy.sock");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config(&shipped(), addr, &socket, backends)).expect("write haproxy.cfg");
        let check = Command::new("haproxy").arg("-c").arg("-q").arg("-f").arg(&path).output().expect(
            "haproxy is not installed: scripts/system-deps.sh installs Debian's haproxy package (make test runs it)",
        );
        assert!(check.status.success(), "haproxy refuses its config: {}", String::from_utf8_lossy(&check.stderr));
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new("haproxy");
        // `-db`: in the foreground, so it is this test's child and dies with it.
        cmd.arg("-db").arg("-f").arg(&path).stdout(out.try_clone().expect("log")).stderr(out);
        let b = Balancer { _process: Process::spawn(cmd), addr, socket, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen on {addr}:\n{}", b.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        b
    }

    /// The public base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What HAProxy logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `show stat`'s fields for `server` of the `ingresses` backend (`BACKEND` for the backend as a whole),
    /// empty if the stats socket does not answer.
    async fn stat(&self, server: &str) -> Vec<String> {
        let Ok(mut s) = tokio::net::UnixStream::connect(&self.socket).await else { return Vec::new() };
        if s.write_all(b"show stat\n").await.is_err() {
            return Vec::new();
        }
        let mut csv = String::new();
        if s.read_to_string(&mut csv).await.is_err() {
            return Vec::new();
        }
        // `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,...`
        csv.lines()
            .map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.len() > 17 && f[0] == "ingresses" && f[1] == server)
            .unwrap_or_default()
    }

    /// The state HAProxy gives backend `i` (`"UP"`, `"DOWN"`, `"UP 1/2"` while going down, ...); empty if the
    /// stats socket does not answer.
    pub async fn backend_state(&self, i: usize) -> String {
        self.stat(&format!("ingress{i}")).await.get(17).cloned().unwrap_or_default()
    }

    /// Requests sent again after their ingress failed them: retried, plus redispatched to another ingress.
    pub async fn retried(&self) -> u64 {
        let f = self.stat("BACKEND").await;
        [15, 16].iter().filter_map(|&i| f.get(i)?.parse::<u64>().ok()).sum()
    }

    /// Waits until backend `i`'s state starts with `state` (`"UP"`, `"DOWN"`); how long it took, or `None`.
    pub async fn wait_backend(&self, i: usize, state: &str, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let now = self.backend_state(i).await;
            // "UP 1/2" is a backend going down, "DOWN 1/2" one coming up: only the settled state counts.
            if now == state {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_run_with_the_tests_addresses_and_backends() {
        let backends = [
            Backend { addr: "127.0.0.1:4001".parse().unwrap(), admin: "127.0.0.1:5001".parse().unwrap() },
            Backend { addr: "127.0.0.1:4002".parse().unwrap(), admin: "127.0.0.1:5002".parse().unwrap() },
        ];
        let cfg = config(&shipped(), "127.0.0.1:3000".parse().unwrap(), Path::new("/tmp/x.sock"), &backends);
        let lines: Vec<&str> = cfg.lines().map(str::trim).collect();
        assert!(lines.contains(&"bind 127.0.0.1:3000"), "{cfg}");
        assert!(!lines.iter().any(|l| l.starts_with("bind :")), "{cfg}");
        assert!(lines.contains(&"stats socket /tmp/x.sock mode 600 level admin"), "{cfg}");
        let servers: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("server ")).collect();
        assert_eq!(
            servers,
            ["server ingress0 127.0.0.1:4001 check port 5001", "server ingress1 127.0.0.1:4002 check port 5002"]
        );
        // What makes an ingress's death invisible to senders is kept.
        for setting in ["retry-on conn-failure empty-response", "option httpchk GET /readyz", "option redispatch 1"] {
            assert!(lines.contains(&setting), "{setting} missing:\n{cfg}");
        }
    }
}
