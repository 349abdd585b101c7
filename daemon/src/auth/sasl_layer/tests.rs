//! LayeredStream against a stand-in layer (a keyed XOR with a fixed-size trailer), so
//! framing, bounds and buffering are checked without Kerberos; the real layer is tested
//! end to end against a KDC.

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::*;

/// Adds an 8-byte trailer and flips every byte, so a token is never the plain text.
struct XorLayer {
    peer_max: usize,
    own_max: usize,
}

const TRAILER: [u8; 8] = *b"trailer!";

impl SecurityLayer for XorLayer {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, LayerError> {
        let mut token: Vec<u8> = plain.iter().map(|b| b ^ 0x5a).collect();
        token.extend_from_slice(&TRAILER);
        Ok(token)
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, LayerError> {
        let body = token
            .strip_suffix(&TRAILER)
            .ok_or_else(|| LayerError::Unwrap("bad trailer".into()))?;
        Ok(body.iter().map(|b| b ^ 0x5a).collect())
    }

    fn peer_max(&self) -> usize {
        self.peer_max
    }

    fn own_max(&self) -> usize {
        self.own_max
    }
}

fn layer(peer_max: usize, own_max: usize) -> Box<dyn SecurityLayer> {
    Box::new(XorLayer { peer_max, own_max })
}

#[tokio::test]
async fn data_round_trips_in_packets_that_fit_the_peer() {
    let (a, b) = duplex(1 << 20);
    let mut sender = LayeredStream::new(a, layer(1024, 1024), Vec::new());
    let (mut wire, mut wire_out) = tokio::io::split(b);
    let data: Vec<u8> = (0..200_000_u32).map(|i| (i % 251) as u8).collect();
    let send = data.clone();
    let writer = tokio::spawn(async move {
        sender.write_all(&send).await.expect("write");
        sender.flush().await.expect("flush");
        sender
    });
    // Read the raw wire: every packet fits 1024 bytes and none is plain text.
    let mut raw = Vec::new();
    let mut got = Vec::new();
    while got.len() < data.len() {
        let len = wire.read_u32().await.expect("len") as usize;
        assert!(len <= 1024 && len > TRAILER.len(), "packet of {len}");
        let mut token = vec![0; len];
        wire.read_exact(&mut token).await.expect("token");
        raw.extend_from_slice(&token);
        got.extend(
            XorLayer {
                peer_max: 0,
                own_max: 0,
            }
            .unwrap(&token)
            .expect("unwrap"),
        );
    }
    assert_eq!(got, data);
    assert!(
        !raw.windows(64)
            .any(|w| data.windows(64).take(10).any(|d| d == w))
    );
    writer.await.expect("join");
    wire_out.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn reads_unwrap_packets_and_take_early_bytes_first() {
    let mut framed = Vec::new();
    for part in [&b"hello "[..], b"world"] {
        let token = XorLayer {
            peer_max: 0,
            own_max: 0,
        }
        .wrap(part)
        .expect("wrap");
        framed.extend_from_slice(&(token.len() as u32).to_be_bytes());
        framed.extend_from_slice(&token);
    }
    let (early, rest) = framed.split_at(7);
    let (a, mut b) = duplex(4096);
    let mut reader = LayeredStream::new(a, layer(1024, 1024), early.to_vec());
    b.write_all(rest).await.expect("write");
    drop(b);
    let mut text = String::new();
    reader.read_to_string(&mut text).await.expect("read");
    assert_eq!(text, "hello world");
}

#[tokio::test]
async fn a_packet_over_the_advertised_size_is_refused() {
    let (a, mut b) = duplex(4096);
    let mut reader = LayeredStream::new(a, layer(1024, 512), Vec::new());
    b.write_u32(513).await.expect("len");
    let err = reader.read_u8().await.expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("513"), "{err}");
}

#[tokio::test]
async fn a_connection_closed_inside_a_packet_is_an_error_and_between_packets_eof() {
    let (a, mut b) = duplex(4096);
    let mut reader = LayeredStream::new(a, layer(1024, 1024), Vec::new());
    b.write_u32(100).await.expect("len");
    b.write_all(b"partial").await.expect("data");
    drop(b);
    let err = reader.read_u8().await.expect_err("cut");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    let (a, b) = duplex(4096);
    let mut reader = LayeredStream::new(a, layer(1024, 1024), Vec::new());
    drop(b);
    let mut rest = Vec::new();
    assert_eq!(reader.read_to_end(&mut rest).await.expect("eof"), 0);
}

#[tokio::test]
async fn a_token_that_cannot_fit_the_peer_buffer_fails_the_write() {
    let (a, _b) = duplex(4096);
    let mut writer = LayeredStream::new(a, layer(TRAILER.len(), 1024), Vec::new());
    let err = writer.write_all(b"x").await.expect_err("cannot fit");
    assert!(err.to_string().contains("cannot hold"), "{err}");
}
