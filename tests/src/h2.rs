//! A raw HTTP/2 client (prior knowledge, h2c) that writes frames as an attacker would: streams opened and
//! reset at once, header blocks that never end, more streams than allowed. It decodes nothing but frame
//! headers: what the tests look at is how the server ends streams and the connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame types.
pub const DATA: u8 = 0x0;
/// Frame types.
pub const HEADERS: u8 = 0x1;
/// Frame types.
pub const RST_STREAM: u8 = 0x3;
/// Frame types.
pub const SETTINGS: u8 = 0x4;
/// Frame types.
pub const PING: u8 = 0x6;
/// Frame types.
pub const GOAWAY: u8 = 0x7;
/// Frame types.
pub const CONTINUATION: u8 = 0x9;
/// Flags.
pub const END_STREAM: u8 = 0x1;
/// Flags.
pub const END_HEADERS: u8 = 0x4;
/// `RST_STREAM` / `GOAWAY` error codes.
pub const CANCEL: u32 = 0x8;

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK header block of literal fields (no indexing, no Huffman coding).
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        integer(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        integer(&mut out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// An HPACK integer with a 7-bit prefix (a string length, not Huffman-coded).
fn integer(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(u8::try_from(n).unwrap_or(0));
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push(u8::try_from(n % 128).unwrap_or(0) | 0x80);
        n /= 128;
    }
    out.push(u8::try_from(n).unwrap_or(0));
}

/// The header block of a `POST` to `path` on `addr`, with `extra` headers.
pub fn post_headers(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let authority = addr.to_string();
    let mut fields =
        vec![(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority.as_str())];
    fields.extend_from_slice(extra);
    header_block(&fields)
}

/// How the server treated a connection, from the frames it sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `HEADERS` frames (responses).
    pub responses: usize,
    /// `RST_STREAM` frames, by error code.
    pub resets: Vec<u32>,
    /// The `GOAWAY` error code, if one came.
    pub goaway: Option<u32>,
    /// The server closed the connection (or reset it).
    pub closed: bool,
}

/// An HTTP/2 connection written frame by frame.
#[derive(Debug)]
pub struct RawH2 {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawH2 {
    /// Connects and sends the preface and an empty `SETTINGS`.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawH2> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
        Ok(RawH2 { stream, buf: Vec::new() })
    }

    /// Writes bytes (frames); an error once the server has closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads frames for up to `wait` (or until the connection ends), answering `SETTINGS` and `PING` as a
    /// client must, and adds what it saw to `seen`.
    pub async fn read_for(&mut self, wait: Duration, seen: &mut Seen) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 64 * 1024];
        while !seen.closed {
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return,
                Ok(Ok(0) | Err(_)) => {
                    seen.closed = true;
                    return;
                }
                Ok(Ok(n)) => n,
            };
            self.buf.extend_from_slice(&chunk[..n]);
            while self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16 | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]);
                if self.buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (self.buf[3], self.buf[4]);
                let payload = self.buf[9..9 + len].to_vec();
                self.buf.drain(..9 + len);
                let code = |at: usize| payload.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                match kind {
                    HEADERS => seen.responses += 1,
                    RST_STREAM => seen.resets.extend(code(0)),
                    GOAWAY => seen.goaway = code(4),
                    SETTINGS if flags & 0x1 == 0 => {
                        let _ = self.stream.write_all(&frame(SETTINGS, 0x1, 0, &[])).await;
                    }
                    PING if flags & 0x1 == 0 => {
                        let _ = self.stream.write_all(&frame(PING, 0x1, 0, &payload)).await;
                    }
                    _ => {}
                }
            }
        }
    }
}
