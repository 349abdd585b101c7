//! The test guest's VNC server: RFB over any byte stream, serving a [`Framebuffer`].
//!
//! Owns one connection's server side, exactly what the gateway expects from QEMU's
//! `-vnc unix:` socket: version 3.8 (3.3 and 3.7 clients accepted), security None
//! only, ClientInit's shared flag ignored, ServerInit with the 640x480 screen in its
//! native 32-bpp little-endian true-colour format and the guest's name, then the
//! message loop. Updates always use Raw in the pixel format the client last set;
//! colour-map formats are refused by closing with an error. An incremental request
//! is answered when some of its area has changed since the client last got it
//! (waiting on the framebuffer's change notification, never polling, never sending
//! empty updates); a non-incremental request is answered at once. Key, pointer,
//! cut-text and QEMU messages are read (within their bounds) and ignored. A message
//! we cannot parse ends the connection with the error. Authentication, access
//! control and share policy are the gateway's business, not this module's.
//!
//! [`Framebuffer`]: super::framebuffer::Framebuffer

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::framebuffer::FramebufferHandle;
use vmgate_rfb::io::RfbStream;
use vmgate_rfb::{
    ClientInit, ClientMessage, MAX_CLIENT_MESSAGE_LEN, PixelConverter, PixelFormat,
    ProtocolVersion, Rect, RfbError, SecurityResult, SecurityType, ServerInit,
    decode_client_message, encode_raw_rect_with, encode_security_type_v3_3, encode_security_types,
    encode_update_header, parse_security_choice,
};

/// The only security type offered: the gateway in front does the authentication.
const OFFERED: [SecurityType; 1] = [SecurityType::None];

/// Serves `fb` on `stream` until the client disconnects (`Ok`) or breaks the
/// protocol (`Err`). There are no timeouts here: to stop serving, the caller drops
/// the future (it holds no state outside itself).
pub async fn serve<S>(stream: S, fb: FramebufferHandle) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = RfbStream::new(stream, MAX_CLIENT_MESSAGE_LEN);
    let version = handshake(&mut conn, &fb).await?;
    tracing::debug!(%version, "RFB client initialised");
    let mut session = Session::new(conn, fb)?;
    session.run().await
}

/// Version, security (None) and initialisation; returns the agreed version.
async fn handshake<S>(
    conn: &mut RfbStream<S>,
    fb: &FramebufferHandle,
) -> Result<ProtocolVersion, RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.send(&ProtocolVersion::V3_8.encode()).await?;
    let version = ProtocolVersion::parse(&conn.read_array("the version exchange").await?)?;

    if version.has_security_list() {
        conn.send(&encode_security_types(&OFFERED)?).await?;
        let [choice] = conn.read_array("the security handshake").await?;
        if let Err(e) = parse_security_choice(choice, &OFFERED) {
            // 3.8 clients get the reason; older ones can only see the connection close.
            if version.has_failure_reason() {
                let failed = SecurityResult::Failed(e.to_string());
                conn.send(&failed.encode(version)).await?;
            }
            return Err(e);
        }
    } else {
        conn.send(&encode_security_type_v3_3(SecurityType::None)?)
            .await?;
    }
    if SecurityResult::follows(version, SecurityType::None) {
        conn.send(&SecurityResult::Ok.encode(version)).await?;
    }

    // The shared flag is ignored: this server serves any number of clients alike.
    let _ = ClientInit::parse(conn.read_array("the initialisation").await?);
    let (width, height, name) = fb.read(|f| (f.width(), f.height(), f.name().as_bytes().to_vec()));
    let init = ServerInit {
        width,
        height,
        pixel_format: PixelFormat::NATIVE,
        name,
    };
    conn.send(&init.encode()?).await?;
    Ok(version)
}

/// One initialised connection.
struct Session<S> {
    conn: RfbStream<S>,
    fb: FramebufferHandle,
    changes: watch::Receiver<u64>,
    /// The client's pixel format, as a ready converter.
    converter: PixelConverter,
    /// The area of the outstanding incremental request, if any.
    pending: Option<Rect>,
    /// Bounding box of what changed since the client last received it.
    stale: Option<Rect>,
    /// The framebuffer generation `stale` is up to date with.
    seen: u64,
    /// Reused output buffer.
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(conn: RfbStream<S>, fb: FramebufferHandle) -> Result<Self, RfbError> {
        let changes = fb.subscribe();
        let (seen, full) = fb.read(|f| (f.generation(), Rect::full(f.width(), f.height())));
        Ok(Self {
            conn,
            fb,
            changes,
            converter: PixelConverter::new(&PixelFormat::NATIVE)?,
            pending: None,
            // The client has nothing yet: an incremental request gets everything.
            stale: Some(full),
            seen,
            out: Vec::new(),
        })
    }

    async fn run(&mut self) -> Result<(), RfbError> {
        loop {
            // Mark the current generation seen *before* looking at the screen, so
            // that a change made after the look always wakes the select below.
            self.changes.borrow_and_update();
            if let Some(area) = self.pending
                && self.send_changes(area).await?
            {
                self.pending = None;
            }
            tokio::select! {
                msg = self.conn.next(decode_client_message) => match msg? {
                    Some(msg) => self.handle(msg).await?,
                    None => return Ok(()),
                },
                changed = self.changes.changed(), if self.pending.is_some() => {
                    // The sender lives in the handle we hold, so this cannot fail;
                    // if it ever did, no change could come any more: stop waiting.
                    if changed.is_err() {
                        self.pending = None;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, msg: ClientMessage) -> Result<(), RfbError> {
        match msg {
            ClientMessage::SetPixelFormat(pf) => {
                self.converter = PixelConverter::new(&pf)?;
                tracing::debug!(?pf, "client set pixel format");
            }
            ClientMessage::SetEncodings(list) => {
                tracing::debug!(?list, "client encodings (Raw is used regardless)");
            }
            ClientMessage::FramebufferUpdateRequest {
                incremental: true,
                rect,
            } => {
                self.pending = Some(rect);
            }
            ClientMessage::FramebufferUpdateRequest {
                incremental: false,
                rect,
            } => {
                self.pending = None;
                self.send_area(rect).await?;
            }
            ClientMessage::KeyEvent { .. }
            | ClientMessage::PointerEvent { .. }
            | ClientMessage::ClientCutText(_)
            | ClientMessage::ClientCutTextExtended(_)
            | ClientMessage::SetDesktopSize { .. }
            | ClientMessage::QemuExtendedKeyEvent { .. }
            | ClientMessage::QemuAudio(_) => {}
        }
        Ok(())
    }

    /// Folds framebuffer changes the client has not seen into `stale`.
    fn absorb(fb: &super::framebuffer::Framebuffer, stale: &mut Option<Rect>, seen: &mut u64) {
        if let Some(changed) = fb.changes_since(*seen) {
            *stale = Some(stale.map_or(changed, |s| s.union(&changed)));
        }
        *seen = fb.generation();
    }

    /// Answers an incremental request for `area` if any of it is stale; returns
    /// whether an update was sent.
    async fn send_changes(&mut self, area: Rect) -> Result<bool, RfbError> {
        let Self {
            fb,
            stale,
            seen,
            out,
            converter,
            ..
        } = self;
        let encoded = fb.read(|f| {
            Self::absorb(f, stale, seen);
            let Some(dirty) = stale.and_then(|s| s.intersect(&area)) else {
                return Ok(false);
            };
            out.clear();
            encode_update_header(out, 1);
            encode_raw_rect_with(out, f.pixels(), f.width(), dirty, converter)?;
            if stale.is_some_and(|s| area.contains(&s)) {
                *stale = None;
            }
            Ok::<_, RfbError>(true)
        })?;
        if encoded {
            self.conn.send(&self.out).await?;
        }
        Ok(encoded)
    }

    /// Answers a non-incremental request: the requested area, clipped to the
    /// screen, now (an update with no rectangle if nothing of it is on screen).
    async fn send_area(&mut self, area: Rect) -> Result<(), RfbError> {
        let Self {
            fb,
            stale,
            seen,
            out,
            converter,
            ..
        } = self;
        fb.read(|f| {
            Self::absorb(f, stale, seen);
            out.clear();
            match area.intersect(&Rect::full(f.width(), f.height())) {
                Some(visible) => {
                    encode_update_header(out, 1);
                    encode_raw_rect_with(out, f.pixels(), f.width(), visible, converter)?;
                    if stale.is_some_and(|s| visible.contains(&s)) {
                        *stale = None;
                    }
                }
                None => encode_update_header(out, 0),
            }
            Ok::<_, RfbError>(())
        })?;
        self.conn.send(&self.out).await
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // Tests index data of known length.
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    use super::super::framebuffer::{BACKGROUND, HEIGHT, TICK_BAND, WIDTH};
    use super::*;
    use vmgate_rfb::io::{ClientSession, client_handshake};
    use vmgate_rfb::{
        ClientConfig, MAX_UPDATE_BYTES, RectPayload, Rectangle, ServerMessage,
        decode_server_message,
    };

    type Client = RfbStream<DuplexStream>;
    type Server = JoinHandle<Result<(), RfbError>>;

    /// How long "no update arrives" is watched for (virtual time where paused).
    const QUIET: Duration = Duration::from_secs(5);

    fn start(fb: &FramebufferHandle) -> (DuplexStream, Server) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        (client, tokio::spawn(serve(server, fb.clone())))
    }

    async fn connect(fb: &FramebufferHandle) -> (Client, ClientSession, Server) {
        let (stream, server) = start(fb);
        let mut client = RfbStream::new(stream, MAX_UPDATE_BYTES);
        let config = ClientConfig {
            password: None,
            shared: true,
        };
        let session = client_handshake(&mut client, &config).await;
        let session = session.unwrap_or_else(|e| panic!("handshake failed: {e}"));
        (client, session, server)
    }

    async fn send(client: &mut Client, msg: ClientMessage) {
        let mut out = Vec::new();
        assert!(msg.encode(&mut out).is_ok());
        assert!(client.send(&out).await.is_ok());
    }

    async fn request(client: &mut Client, incremental: bool, rect: Rect) {
        send(
            client,
            ClientMessage::FramebufferUpdateRequest { incremental, rect },
        )
        .await;
    }

    /// The next update, which must be a single Raw rectangle.
    async fn one_raw_rect(client: &mut Client, pf: PixelFormat) -> (Rect, Vec<u8>) {
        let msg = client.next(|b| decode_server_message(b, &pf)).await;
        match msg {
            Ok(Some(ServerMessage::FramebufferUpdate(mut rects))) if rects.len() == 1 => {
                match rects.pop() {
                    Some(Rectangle {
                        rect,
                        payload: RectPayload::Raw(data),
                    }) => (rect, data),
                    other => panic!("not a Raw rectangle: {other:?}"),
                }
            }
            other => panic!("expected one-rectangle update, got {other:?}"),
        }
    }

    async fn server_result(server: Server) -> Result<(), RfbError> {
        match timeout(QUIET, server).await {
            Ok(Ok(result)) => result,
            other => panic!("server did not finish: {other:?}"),
        }
    }

    #[tokio::test]
    async fn handshake_and_full_updates_in_two_formats() {
        let fb = FramebufferHandle::new("guest-1", "running");
        let (mut client, session, _server) = connect(&fb).await;
        assert_eq!(session.version, ProtocolVersion::V3_8);
        assert_eq!(session.security, SecurityType::None);
        let init = session.server_init;
        assert_eq!((init.width, init.height), (640, 480));
        assert_eq!(init.pixel_format, PixelFormat::NATIVE);
        assert_eq!(init.name, b"guest-1");

        let full = Rect::full(WIDTH, HEIGHT);
        request(&mut client, false, full).await;
        let (rect, data) = one_raw_rect(&mut client, PixelFormat::NATIVE).await;
        assert_eq!(rect, full);
        assert_eq!(data.len(), 640 * 480 * 4);
        // BACKGROUND 0x00202838 as little-endian 0x00RRGGBB: B, G, R, 0.
        assert_eq!(data[..4], [0x38, 0x28, 0x20, 0x00]);
        assert_eq!(PixelFormat::NATIVE.decode_pixel(&data), Some(BACKGROUND));

        send(
            &mut client,
            ClientMessage::SetPixelFormat(PixelFormat::RGB565_BE),
        )
        .await;
        request(&mut client, false, full).await;
        let (rect, data) = one_raw_rect(&mut client, PixelFormat::RGB565_BE).await;
        assert_eq!(rect, full);
        assert_eq!(data.len(), 640 * 480 * 2);
        // r 0x20 -> 4, g 0x28 -> 10, b 0x38 -> 7: 4<<11 | 10<<5 | 7 = 0x2147, big-endian.
        assert_eq!(data[..2], [0x21, 0x47]);
        // The last pixel (bottom right) is background too.
        assert_eq!(data[data.len() - 2..], [0x21, 0x47]);
    }

    #[tokio::test(start_paused = true)]
    async fn incremental_requests_wait_for_changes() {
        let fb = FramebufferHandle::new("guest-2", "running");
        let (mut client, _, server) = connect(&fb).await;
        let full = Rect::full(WIDTH, HEIGHT);
        let pf = PixelFormat::NATIVE;

        // The client has nothing yet: the first incremental request gets everything.
        request(&mut client, true, full).await;
        assert_eq!(one_raw_rect(&mut client, pf).await.0, full);

        // Nothing changed: no answer, however long we wait.
        request(&mut client, true, full).await;
        let quiet = timeout(QUIET, client.next(|b| decode_server_message(b, &pf))).await;
        assert!(quiet.is_err(), "unexpected update {quiet:?}");

        // A tick answers the pending request with exactly the changed band.
        fb.tick();
        let (rect, data) = timeout(QUIET, one_raw_rect(&mut client, pf))
            .await
            .unwrap_or_else(|_| panic!("no update after tick"));
        assert_eq!(rect, TICK_BAND);
        assert_eq!(data.len(), TICK_BAND.area() as usize * 4);

        // A change outside the requested area is not sent for it...
        fb.set_state("paused");
        request(&mut client, true, TICK_BAND).await;
        let quiet = timeout(QUIET, client.next(|b| decode_server_message(b, &pf))).await;
        assert!(quiet.is_err(), "unexpected update {quiet:?}");
        // ...but is still owed to a request that covers it.
        request(&mut client, true, full).await;
        let (rect, _) = timeout(QUIET, one_raw_rect(&mut client, pf))
            .await
            .unwrap_or_else(|_| panic!("state change not sent"));
        assert!(rect.height > 0 && rect.y < TICK_BAND.y);

        drop(client);
        assert!(server_result(server).await.is_ok());
    }

    #[tokio::test]
    async fn clipped_and_empty_requests() {
        let fb = FramebufferHandle::new("g", "running");
        let (mut client, _, _server) = connect(&fb).await;
        let pf = PixelFormat::NATIVE;
        request(&mut client, false, Rect::new(600, 470, 100, 100)).await;
        let (rect, data) = one_raw_rect(&mut client, pf).await;
        assert_eq!(rect, Rect::new(600, 470, 40, 10));
        assert_eq!(data.len(), 40 * 10 * 4);
        request(&mut client, false, Rect::new(700, 0, 10, 10)).await;
        let msg = client
            .next(|b| decode_server_message(b, &pf))
            .await
            .ok()
            .flatten();
        assert_eq!(msg, Some(ServerMessage::FramebufferUpdate(vec![])));
    }

    #[tokio::test]
    async fn input_and_cut_text_are_ignored() {
        let fb = FramebufferHandle::new("g", "running");
        let (mut client, _, _server) = connect(&fb).await;
        send(&mut client, ClientMessage::SetEncodings(vec![0, 1, -223])).await;
        send(
            &mut client,
            ClientMessage::KeyEvent {
                down: true,
                key: 0x61,
            },
        )
        .await;
        send(
            &mut client,
            ClientMessage::PointerEvent {
                buttons: 1,
                x: 5,
                y: 5,
            },
        )
        .await;
        send(
            &mut client,
            ClientMessage::ClientCutText(vec![b'x'; 100_000]),
        )
        .await;
        request(&mut client, false, Rect::new(0, 0, 1, 1)).await;
        let (_, data) = one_raw_rect(&mut client, PixelFormat::NATIVE).await;
        assert_eq!(data, [0x38, 0x28, 0x20, 0x00]);
    }

    /// Raw handshake for the older versions, byte by byte.
    async fn old_client(version: &[u8; 12], expect_security: &[u8], choice: &[u8]) {
        let fb = FramebufferHandle::new("old", "running");
        let (mut stream, _server) = start(&fb);
        let mut buf = [0u8; 12];
        assert!(stream.read_exact(&mut buf).await.is_ok());
        assert_eq!(&buf, b"RFB 003.008\n");
        assert!(stream.write_all(version).await.is_ok());
        let mut security = vec![0u8; expect_security.len()];
        assert!(stream.read_exact(&mut security).await.is_ok());
        assert_eq!(security, expect_security);
        assert!(stream.write_all(choice).await.is_ok());
        // No SecurityResult for None before 3.8: ServerInit follows ClientInit.
        assert!(stream.write_all(&[1]).await.is_ok());
        let mut init = [0u8; 24 + 3];
        assert!(stream.read_exact(&mut init).await.is_ok());
        assert_eq!(init[..4], [0x02, 0x80, 0x01, 0xe0]);
        assert_eq!(init[20..], [0, 0, 0, 3, b'o', b'l', b'd']);
    }

    #[tokio::test]
    async fn accepts_3_3_and_3_7_clients() {
        old_client(b"RFB 003.003\n", &[0, 0, 0, 1], &[]).await;
        old_client(b"RFB 003.005\n", &[0, 0, 0, 1], &[]).await;
        old_client(b"RFB 003.007\n", &[1, 1], &[1]).await;
    }

    #[tokio::test]
    async fn protocol_errors_close_the_connection() {
        let fb = FramebufferHandle::new("g", "running");

        // Garbage message type.
        let (mut client, _, server) = connect(&fb).await;
        assert!(client.send(&[7]).await.is_ok());
        assert!(matches!(
            server_result(server).await,
            Err(RfbError::UnknownClientMessage(7))
        ));

        // A colour-map pixel format.
        let (mut client, _, server) = connect(&fb).await;
        let colour_map = PixelFormat {
            true_colour: false,
            ..PixelFormat::NATIVE
        };
        send(&mut client, ClientMessage::SetPixelFormat(colour_map)).await;
        assert!(matches!(
            server_result(server).await,
            Err(RfbError::InvalidPixelFormat(_))
        ));

        // Cut text over the bound (refused from its header).
        let (mut client, _, server) = connect(&fb).await;
        assert!(client.send(&[6, 0, 0, 0, 0x7f, 0, 0, 0]).await.is_ok());
        assert!(matches!(
            server_result(server).await,
            Err(RfbError::TooLong { .. })
        ));

        // A malformed version.
        let (mut stream, server) = start(&fb);
        let mut buf = [0u8; 12];
        assert!(stream.read_exact(&mut buf).await.is_ok());
        assert!(stream.write_all(b"HELLO WORLD\n").await.is_ok());
        assert!(matches!(
            server_result(server).await,
            Err(RfbError::MalformedVersion(_))
        ));

        // A security type that was not offered: 3.8 gets the reason.
        let (mut stream, server) = start(&fb);
        assert!(stream.read_exact(&mut buf).await.is_ok());
        assert!(stream.write_all(b"RFB 003.008\n").await.is_ok());
        let mut offer = [0u8; 2];
        assert!(stream.read_exact(&mut offer).await.is_ok());
        assert_eq!(offer, [1, 1]);
        assert!(stream.write_all(&[2]).await.is_ok());
        let mut result = Vec::new();
        assert!(stream.read_to_end(&mut result).await.is_ok());
        assert_eq!(result[..4], [0, 0, 0, 1]);
        assert!(String::from_utf8_lossy(&result[8..]).contains("not offered"));
        assert!(matches!(
            server_result(server).await,
            Err(RfbError::SecurityTypeNotOffered(2))
        ));
    }

    #[tokio::test]
    async fn clean_disconnect_is_ok_and_dropping_stops_serving() {
        let fb = FramebufferHandle::new("g", "running");
        let (client, _, server) = connect(&fb).await;
        drop(client);
        assert!(server_result(server).await.is_ok());

        let (_client, server) = start(&fb);
        server.abort();
        assert!(server.await.is_err_and(|e| e.is_cancelled()));
    }
}
