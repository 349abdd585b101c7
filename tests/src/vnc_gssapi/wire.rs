//! What crosses the wire of a console: a recording TCP proxy on loopback ([`Recorder`]),
//! where a type-20 (SASL) transcript's security layer starts ([`sasl_end`]), and markers
//! that show RFB in plaintext ([`plaintext_markers`]), so a test can assert that a login's
//! confidentiality layer hides what a console without one shows.
//!
//! The markers are chosen from what the test driver serves (`driver/test/framebuffer.rs`):
//! the guest's name (the desktop name in ServerInit), the full-screen rectangle `x 0, y 0,
//! 640 x 480` (in the client's FramebufferUpdateRequest and the server's rectangle header),
//! and a run of one repeated pixel (the plain background fills most of each Raw frame,
//! whatever the client's pixel format: a run with period 4 covers 8, 16 and 32 bits per
//! pixel). Ciphertext holds none of them by chance.

use std::{
    net::{Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, ensure};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    runtime::Runtime,
};

use crate::wait_until;

/// A periodic run this long (64 pixels of 32 bits) counts as plaintext pixels.
pub const PIXEL_RUN: usize = 256;

/// One proxied connection, as read from each side.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// What the client sent.
    pub to_server: Vec<u8>,
    /// What the server sent.
    pub to_client: Vec<u8>,
    /// Both directions have ended.
    pub closed: bool,
}

type Log = Arc<Mutex<Vec<Transcript>>>;

/// A TCP proxy on 127.0.0.1 in front of a console that records every connection; stopped
/// when dropped.
pub struct Recorder {
    runtime: Option<Runtime>,
    port: u16,
    log: Log,
}

impl Recorder {
    /// Listens on the first free port of `ports` and forwards to `target`.
    pub fn start(ports: RangeInclusive<u16>, target: SocketAddr) -> anyhow::Result<Recorder> {
        let listener = ports
            .clone()
            .find_map(|p| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok())
            .with_context(|| format!("no free port in {ports:?} for the recorder"))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let log = Log::default();
        runtime.spawn(accept(listener, target, log.clone()));
        Ok(Recorder {
            runtime: Some(runtime),
            port,
            log,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every connection so far, once all have closed (or `deadline` passed: then the
    /// open ones as far as they got, `closed` false).
    pub fn transcripts(&self, deadline: Duration) -> Vec<Transcript> {
        let log = || self.log.lock().unwrap_or_else(PoisonError::into_inner);
        wait_until(deadline, || log().iter().all(|t| t.closed));
        log().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, log: Log) {
    while let Ok((client, _)) = listener.accept().await {
        let index = {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.push(Transcript::default());
            log.len() - 1
        };
        let log = log.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(target).await {
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pump(client_read, server_write, &log, index, true),
                    pump(server_read, client_write, &log, index, false),
                );
            }
            log.lock().unwrap_or_else(PoisonError::into_inner)[index].closed = true;
        });
    }
}

/// Copies one direction until EOF or an error, recording what it reads.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, log: &Log, i: usize, up: bool) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            let t = &mut log[i];
            let side = if up {
                &mut t.to_server
            } else {
                &mut t.to_client
            };
            side.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Reads a transcript field by field.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl Fields<'_> {
    fn take(&mut self, n: usize, field: &str) -> anyhow::Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.with_context(|| format!("{} ends inside {field}", self.what))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, field: &str) -> anyhow::Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &str) -> anyhow::Result<usize> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// A `u32` length and that many bytes.
    fn sized(&mut self, field: &str) -> anyhow::Result<&[u8]> {
        let len = self.u32(field)?;
        self.take(len, field)
    }
}

/// Where the security layer starts in a successful RFB 3.8 type-20 login's transcript:
/// the offsets, in what the server sent and in what the client sent, of the first byte
/// after the SecurityResult and after the client's last SASL message.
pub fn sasl_end(t: &Transcript) -> anyhow::Result<(usize, usize)> {
    let what = "what the server sent";
    let mut server = Fields {
        bytes: &t.to_client,
        at: 0,
        what,
    };
    server.take(12, "the version")?;
    let types = server.u8("the security types")?;
    let types = server.take(types.into(), "the security types")?;
    ensure!(
        types == [20],
        "the server offered {types:?}, not SASL alone"
    );
    server.sized("the mechanism list")?;
    let mut answered = 0;
    loop {
        let len = server.u32("a SASL step")?;
        ensure!(
            len != 1,
            "a failed SecurityResult where a SASL step was due"
        );
        server.take(len, "a SASL step")?;
        if server.u8("a complete flag")? == 1 {
            break;
        }
        answered += 1;
        ensure!(answered < 8, "more than 8 SASL steps");
    }
    ensure!(server.u32("the SecurityResult")? == 0, "the login failed");

    let what = "what the client sent";
    let mut client = Fields {
        bytes: &t.to_server,
        at: 0,
        what,
    };
    let version = client.take(12, "the version")?;
    ensure!(version == b"RFB 003.008\n", "the client speaks {version:?}");
    ensure!(
        client.u8("the security type")? == 20,
        "the client chose no SASL"
    );
    let mech = client.sized("the mechanism name")?;
    ensure!(mech == b"GSSAPI", "the client chose {mech:?}");
    for _ in 0..=answered {
        client.sized("a SASL message")?;
    }
    Ok((server.at, client.at))
}

/// How many whole `u32 len, token` packets `bytes` holds (a last one cut short by the
/// close is allowed); an error when a length is 0 or over 16 MiB, i.e. not a layer.
pub fn layer_packets(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut fields = Fields {
        bytes,
        at: 0,
        what: "the layered stream",
    };
    let mut count = 0;
    while fields.at + 4 <= bytes.len() {
        let len = fields.u32("a packet length")?;
        ensure!((1..=16 << 20).contains(&len), "a packet of {len} bytes");
        if fields.take(len, "a packet").is_err() {
            break;
        }
        count += 1;
    }
    Ok(count)
}

/// The plaintext markers (see the module doc) found in `bytes`, for a guest named
/// `name` with a `width` x `height` screen; empty when none is there.
pub fn plaintext_markers(bytes: &[u8], name: &str, width: u16, height: u16) -> Vec<&'static str> {
    let mut rect = vec![0; 4];
    rect.extend_from_slice(&width.to_be_bytes());
    rect.extend_from_slice(&height.to_be_bytes());
    let found = [
        ("the guest name", contains(bytes, name.as_bytes())),
        ("the full-screen rectangle", contains(bytes, &rect)),
        ("a run of one repeated pixel", has_pixel_run(bytes)),
    ];
    found
        .into_iter()
        .filter(|(_, f)| *f)
        .map(|(m, _)| m)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `PIXEL_RUN` bytes in a row repeat with period 4.
fn has_pixel_run(bytes: &[u8]) -> bool {
    let mut run = 0;
    for i in 4..bytes.len() {
        run = if bytes[i] == bytes[i - 4] { run + 1 } else { 0 };
        if run + 4 >= PIXEL_RUN {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_in_plaintext_only() {
        let mut plain = b"..canary-guest..\0\0\0\0\x02\x80\x01\xe0".to_vec();
        plain.extend([0x38, 0x28, 0x20, 0].repeat(64));
        let found = plaintext_markers(&plain, "canary-guest", 640, 480);
        assert_eq!(found.len(), 3, "{found:?}");
        let noise: Vec<u8> = (0..4096_u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(plaintext_markers(&noise, "canary-guest", 640, 480).is_empty());
    }

    #[test]
    fn the_layer_starts_after_the_result_and_the_clients_last_message() {
        let mut to_client = b"RFB 003.008\n\x01\x14".to_vec();
        to_client.extend(b"\0\0\0\x06GSSAPI");
        to_client.extend(b"\0\0\0\x03ap\0\0"); // a step, not complete
        to_client.extend(b"\0\0\0\0\x01\0\0\0\0"); // complete, SecurityResult OK
        to_client.extend(b"\0\0\0\x02xy");
        let mut to_server = b"RFB 003.008\n\x14\0\0\0\x06GSSAPI".to_vec();
        to_server.extend(b"\0\0\0\x04tok\0\0\0\0\0");
        to_server.extend(b"\0\0\0\x01z");
        let t = Transcript {
            to_server,
            to_client,
            closed: true,
        };
        let (server, client) = sasl_end(&t).expect("a login");
        assert_eq!(&t.to_client[server..], b"\0\0\0\x02xy");
        assert_eq!(&t.to_server[client..], b"\0\0\0\x01z");
        assert_eq!(layer_packets(&t.to_client[server..]).expect("framed"), 1);
    }
}
