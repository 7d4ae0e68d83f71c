//! STOMP over WebSocket, TLS and WebSocket over TLS, end to end against the built binary:
//! what a browser (WebSocket), a TLS client and a TCP client see of each other, the
//! handshake's refusals, the limits and heart-beats every transport shares, certificates
//! reloaded on SIGHUP, and client certificates.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rcgen::KeyPair;
use rustls_pki_types::{CertificateDer, ServerName};
use stompbox::codec::{Decoder, Frame};
use stompbox::limits::Limits;
use support::broker::Broker;
use support::frame::connect_frame;
use support::tls::{tls_config, tls_connect, Pki, Tls};
use support::WAIT;
use tokio_rustls::rustls::{ClientConnection, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

// --- a STOMP client over any byte stream's WebSocket -----------------------------------------

/// A STOMP client over a WebSocket: frames decoded from whatever messages arrive.
struct WsClient<S: Read + Write> {
    ws: WebSocket<S>,
    decoder: Decoder,
    buf: BytesMut,
    /// Heart-beat EOLs received (as messages of their own or between frames).
    eols: usize,
    /// Kinds of the data messages received: true = text.
    texts: Vec<bool>,
}

impl<S: Read + Write> WsClient<S> {
    fn over(stream: S, url: &str, protocols: &str, origin: Option<&str>) -> (Self, Option<String>) {
        let mut request = url.into_client_request().expect("request");
        if !protocols.is_empty() {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        }
        if let Some(o) = origin {
            request.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let (ws, response) = tungstenite::client::client(request, stream)
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url}: {e}"));
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_string());
        let client = WsClient {
            ws,
            decoder: Decoder::new(Limits::default()),
            buf: BytesMut::new(),
            eols: 0,
            texts: Vec::new(),
        };
        (client, protocol)
    }

    fn send_text(&mut self, s: &[u8]) {
        let text = String::from_utf8(s.to_vec()).expect("utf-8");
        self.ws.send(Message::text(text)).expect("send text");
    }

    fn send_binary(&mut self, b: &[u8]) {
        self.ws
            .send(Message::binary(b.to_vec()))
            .expect("send binary");
    }

    fn send_frame(&mut self, f: &support::frame::Frame) {
        self.send_text(&f.encode());
    }

    /// The next STOMP frame, or None when the connection ended first.
    fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.buf.first() == Some(&b'\n') && self.decoder.missing(&self.buf).is_some() {
                let _ = self.buf.split_to(1);
                self.eols += 1;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => {}
                Err(e) => panic!("undecodable frame from the broker: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no STOMP frame within {timeout:?}"
            );
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    self.texts.push(true);
                    self.buf.extend_from_slice(t.as_bytes());
                }
                Ok(Message::Binary(b)) => {
                    self.texts.push(false);
                    self.buf.extend_from_slice(&b);
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Io(_)
                    | tungstenite::Error::Protocol(_),
                ) => return None,
                Err(e) => panic!("WebSocket read: {e}"),
            }
        }
    }

    fn expect(&mut self, command: &str) -> Frame {
        let f = self
            .next_frame(WAIT)
            .unwrap_or_else(|| panic!("connection closed while waiting for {command}"));
        assert_eq!(f.command.as_str(), command, "got {f:?}");
        f
    }

    fn connect(&mut self, version: &str) -> Frame {
        self.send_frame(&connect_frame(version, &[]));
        self.expect("CONNECTED")
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

fn ws_client(b: &Broker, protocols: &str) -> WsClient<TcpStream> {
    let addr = b.listener("ws");
    WsClient::over(tcp(addr), &format!("ws://{addr}/stomp"), protocols, None).0
}

fn header<'a>(f: &'a Frame, name: &str) -> &'a str {
    f.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {f:?}"))
}

// --- WebSocket ---------------------------------------------------------------------------------

#[test]
fn websocket_and_tcp_clients_see_each_others_messages_at_every_version() {
    let broker = Broker::start();
    for (protocol, version) in [
        ("v10.stomp", "1.0"),
        ("v11.stomp", "1.1"),
        ("v12.stomp", "1.2"),
    ] {
        let addr = broker.listener("ws");
        let offer = "v10.stomp, v11.stomp, v12.stomp";
        let (_, chosen) = WsClient::over(tcp(addr), &format!("ws://{addr}/"), offer, None);
        assert_eq!(chosen.as_deref(), Some("v12.stomp"), "the best offered");
        let (mut ws, chosen) = WsClient::over(tcp(addr), &format!("ws://{addr}/"), protocol, None);
        assert_eq!(chosen.as_deref(), Some(protocol));
        let connected = ws.connect(version);
        if version != "1.0" {
            assert_eq!(header(&connected, "version"), version);
        }
        let queue = format!("/queue/ws-{version}");
        ws.send_frame(
            &support::frame::Frame::new("SUBSCRIBE")
                .header("destination", &queue)
                .header("id", "s")
                .header("receipt", "sub"),
        );
        ws.expect("RECEIPT");
        let mut tcp_client = broker.connect("1.2");
        tcp_client.send_sync(&queue, "from tcp", &[]);
        let m = ws.expect("MESSAGE");
        assert_eq!(&m.body[..], b"from tcp");
        tcp_client.subscribe("/queue/back", "b", "auto", &[]);
        ws.send_frame(
            &support::frame::Frame::new("SEND")
                .header("destination", "/queue/back")
                .header("receipt", "r")
                .body("from ws"),
        );
        ws.expect("RECEIPT");
        tcp_client.expect_body("from ws");
    }
}

#[test]
fn stomp_frames_cut_anywhere_across_websocket_messages_arrive_whole() {
    let broker = Broker::start();
    let mut consumer = broker.connect("1.2");
    consumer.subscribe("/queue/cut", "c", "auto", &[]);
    let mut ws = ws_client(&broker, "v12.stomp");
    // CONNECT in three messages, cut inside a header.
    let connect = connect_frame("1.2", &[]).encode();
    ws.send_text(&connect[..9]);
    ws.send_text(&connect[9..20]);
    ws.send_text(&connect[20..]);
    ws.expect("CONNECTED");
    // Two SENDs in one binary message, the first with a body that is not UTF-8 and holds a
    // NUL (so it needs content-length), then one SEND cut over a text and a binary message.
    let binary: &[u8] = &[0xff, 0x00, 0xfe, b'x'];
    let mut two = b"SEND\ndestination:/queue/cut\ncontent-length:4\n\n".to_vec();
    two.extend_from_slice(binary);
    two.extend_from_slice(b"\0SEND\ndestination:/queue/cut\n\nsecond\0");
    ws.send_binary(&two);
    ws.send_text(b"SEND\ndestination:/qu");
    ws.send_binary(b"eue/cut\nreceipt:done\n\nthird\0");
    ws.expect("RECEIPT");
    let got = consumer.receive(3, WAIT);
    assert_eq!(got[0].body, binary, "{:?}", got[0]);
    assert_eq!(got[1].text(), "second");
    assert_eq!(got[2].text(), "third");
    // Deliveries: UTF-8 frames in text messages, others in binary ones.
    ws.send_frame(
        &support::frame::Frame::new("SUBSCRIBE")
            .header("destination", "/queue/out")
            .header("id", "o"),
    );
    let mut producer = broker.connect("1.2");
    producer.send_sync("/queue/out", "plain", &[]);
    assert_eq!(&ws.expect("MESSAGE").body[..], b"plain");
    producer.send_frame(
        &support::frame::Frame::new("SEND")
            .header("destination", "/queue/out")
            .header("receipt", "bin")
            .header("content-length", "4")
            .body(binary),
    );
    assert_eq!(&ws.expect("MESSAGE").body[..], binary);
    assert_eq!(
        ws.texts.last(),
        Some(&false),
        "a binary body came in a text message"
    );
    assert!(ws.texts.contains(&true));
}

#[test]
fn websocket_requests_outside_the_policy_are_refused_with_http_statuses() {
    let broker =
        Broker::start_with_config("[websocket]\nallowed_origins = [\"https://app.example.com\"]\n");
    let addr = broker.listener("ws");
    let status = |request: &str| {
        let mut s = tcp(addr);
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_string();
        text.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let upgrade = |path: &str, origin: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
        )
    };
    assert_eq!(status(&upgrade("/elsewhere", "")), "404");
    assert_eq!(
        status(&upgrade("/", "Origin: https://evil.example\r\n")),
        "403"
    );
    assert_eq!(status("CONNECT\naccept-version:1.2\n\n\0"), "400");
    assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "426");
    // Allowed: a listed origin, and a page served from the broker's own address.
    for origin in ["https://app.example.com", "http://127.0.0.1:8161"] {
        let (mut ws, _) = WsClient::over(tcp(addr), &format!("ws://{addr}/"), "", Some(origin));
        ws.connect("1.2");
    }
    // The broker still serves everyone else.
    broker.connect("1.2").disconnect();
}

#[test]
fn limits_and_heart_beats_apply_over_websocket_as_over_tcp() {
    let broker =
        Broker::start_with_config("[limits]\nmax_frame_bytes = 65536\nmax_body_bytes = 65536\n");
    // Heart-beats: the broker's EOLs arrive as WebSocket messages.
    let mut ws = ws_client(&broker, "v12.stomp");
    ws.send_text(b"CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,100\n\n\0");
    ws.expect("CONNECTED");
    let start = Instant::now();
    let mut beats = 0;
    while beats < 3 {
        assert!(start.elapsed() < WAIT, "no heart-beats over WebSocket");
        if let Ok(Message::Text(t)) = ws.ws.read() {
            assert_eq!(
                t.as_str(),
                "\n",
                "a heart-beat is an EOL in a message of its own"
            );
            beats += 1;
        }
    }
    // A frame over max_frame_bytes gets the same ERROR as on TCP, then the close.
    let mut ws = ws_client(&broker, "v12.stomp");
    ws.connect("1.2");
    let body = "x".repeat(70_000);
    ws.send_text(format!("SEND\ndestination:/queue/big\n\n{body}\0").as_bytes());
    let error = ws.expect("ERROR");
    assert!(
        header(&error, "message").contains("65536"),
        "the limit is named: {error:?}"
    );
    assert!(ws.next_frame(WAIT).is_none(), "closed after the ERROR");
    // Bytes that are not WebSocket frames end the connection; the broker carries on.
    let addr = broker.listener("ws");
    let (mut raw, _) = WsClient::over(tcp(addr), &format!("ws://{addr}/"), "", None);
    raw.ws.get_mut().write_all(b"\x81\x05hello").unwrap(); // unmasked: not allowed from clients
    assert!(raw.next_frame(WAIT).is_none());
    let mut ok = ws_client(&broker, "");
    ok.connect("1.2");
}

// --- TLS ---------------------------------------------------------------------------------------

/// CONNECT over `tls` (plain STOMP) and the broker's answer: a frame, or None when the
/// connection ended (or failed) first.
fn stomp_over_tls(tls: &mut Tls) -> Option<Frame> {
    tls.write_all(&connect_frame("1.2", &[]).encode()).ok()?;
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = decoder.decode(&mut buf) {
            return Some(f);
        }
        match tls.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {}
            Err(_) => return None,
        }
    }
}

fn peer_certificate(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().expect("server certificate")[0].clone()
}

#[test]
fn stomp_over_tls_with_the_certificate_reloaded_on_sighup() {
    let pki = Pki::new();
    let first = pki.issue("server", &["127.0.0.1", "localhost"], "first");
    let mut broker = Broker::start_with_config(&pki.config(""));
    let addr = broker.listener("ssl");
    let client = tls_config(&pki.ca_der(), None);
    let mut old = tls_connect(addr, client.clone()).expect("TLS handshake");
    assert_eq!(peer_certificate(&old), first);
    assert_eq!(
        stomp_over_tls(&mut old).map(|f| f.command),
        Some(stompbox::codec::Command::Connected)
    );

    // A TLS client and a TCP client see each other's messages.
    let mut consumer = broker.connect("1.2");
    consumer.subscribe("/queue/tls", "t", "auto", &[]);
    old.write_all(b"SEND\ndestination:/queue/tls\n\nover tls\0")
        .unwrap();
    consumer.expect_body("over tls");

    // Renewed on disk, then SIGHUP: new connections get the new one, the old one carries on.
    let second = pki.issue("server", &["127.0.0.1", "localhost"], "second");
    broker.signal(libc::SIGHUP);
    support::eventually(WAIT, || {
        let tls = tls_connect(addr, client.clone()).map_err(|e| e.to_string())?;
        (peer_certificate(&tls) == second)
            .then_some(())
            .ok_or_else(|| "still the old certificate".to_string())
    });
    old.write_all(b"SEND\ndestination:/queue/tls\n\nstill here\0")
        .unwrap();
    consumer.expect_body("still here");

    // A reload that fails (a key that does not match) keeps what was there.
    std::fs::write(
        pki.path("server.key"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    broker.signal(libc::SIGHUP);
    support::eventually(WAIT, || {
        broker
            .log_text()
            .contains("TLS reload failed")
            .then_some(())
            .ok_or("no reload failure logged")
    });
    let mut tls = tls_connect(addr, client).expect("TLS handshake after a failed reload");
    assert_eq!(peer_certificate(&tls), second);
    assert!(stomp_over_tls(&mut tls).is_some());
    assert!(broker.is_running());
}

#[test]
fn client_certificates_are_checked_when_required() {
    let pki = Pki::new();
    pki.issue("server", &["127.0.0.1"], "server");
    pki.issue("alice", &[], "alice");
    let other = Pki::new();
    other.issue("mallory", &[], "mallory");
    let config = pki.config(&format!(
        "client_auth = \"required\"\nclient_ca = {:?}\n",
        pki.path("ca.pem")
    ));
    let broker = Broker::start_with_config(&config);
    let addr = broker.listener("ssl");
    let refused = |tls: std::io::Result<Tls>| match tls {
        Err(_) => true,
        // TLS 1.3: the client finishes first; the server's alert ends the connection.
        Ok(mut tls) => stomp_over_tls(&mut tls).is_none(),
    };
    assert!(
        refused(tls_connect(addr, tls_config(&pki.ca_der(), None))),
        "no certificate"
    );
    let foreign = (other.path("mallory.pem"), other.path("mallory.key"));
    assert!(
        refused(tls_connect(
            addr,
            tls_config(&pki.ca_der(), Some((&foreign.0, &foreign.1)))
        )),
        "a certificate from another CA"
    );
    let alice = (pki.path("alice.pem"), pki.path("alice.key"));
    let mut tls = tls_connect(addr, tls_config(&pki.ca_der(), Some((&alice.0, &alice.1))))
        .expect("handshake with a valid client certificate");
    let f = stomp_over_tls(&mut tls).expect("an answer");
    assert_eq!(f.command, stompbox::codec::Command::Connected);
}

#[test]
fn websocket_over_tls_and_tls_behind_the_proxy_protocol() {
    let pki = Pki::new();
    pki.issue("server", &["127.0.0.1"], "server");
    let config = format!(
        "proxy_protocol = true\n[websocket]\ntls_bind = \"127.0.0.1:0\"\n{}",
        pki.config("")
    );
    let broker = Broker::start_with_config(&config);
    let client = tls_config(&pki.ca_der(), None);
    // wss: a PROXY header, then TLS, then the WebSocket upgrade.
    let addr = broker.listener("wss");
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 50000 61615\r\n")
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tls = StreamOwned::new(ClientConnection::new(client.clone(), name).unwrap(), sock);
    let (mut ws, protocol) = WsClient::over(tls, &format!("wss://{addr}/stomp"), "v12.stomp", None);
    assert_eq!(protocol.as_deref(), Some("v12.stomp"));
    ws.connect("1.2");
    ws.send_frame(
        &support::frame::Frame::new("SUBSCRIBE")
            .header("destination", "/topic/wss")
            .header("id", "w")
            .header("receipt", "s"),
    );
    ws.expect("RECEIPT");
    // The connection is listed under the client's address from the PROXY header.
    let listed = broker.admin_get("/api/connections").expect("connections");
    assert!(listed.contains("203.0.113.9"), "{listed}");
    let mut tcp_side = {
        let mut s = TcpStream::connect(broker.addr()).unwrap();
        s.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 50001 61613\r\n")
            .unwrap();
        s
    };
    tcp_side
        .write_all(b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/topic/wss\n\nvia proxy\0")
        .unwrap();
    assert_eq!(&ws.expect("MESSAGE").body[..], b"via proxy");
}

#[test]
fn a_client_certificate_logs_its_user_in_over_wss() {
    let pki = Pki::new();
    pki.issue("server", &["127.0.0.1"], "server");
    pki.issue("orders", &[], "orders-svc");
    let config = format!(
        "[websocket]\ntls_bind = \"127.0.0.1:0\"\n{}\
         [security]\nanonymous = false\n\
         users = [ {{ login = \"orders\", certificate_subject = \"CN=orders-svc\" }} ]\n",
        pki.config(&format!(
            "client_auth = \"optional\"\nclient_ca = {:?}\n",
            pki.path("ca.pem")
        ))
    );
    let broker = Broker::start_with_config(&config);
    let addr = broker.listener("wss");
    let tls = tls_connect(addr, pki.client(Some("orders"))).expect("TLS handshake");
    let (mut ws, _) = WsClient::over(tls, &format!("wss://{addr}/stomp"), "v12.stomp", None);
    // CONNECT without login or passcode, anonymous access off: the certificate is the login.
    ws.connect("1.2");
    let listed = broker.admin_get("/api/connections").expect("connections");
    assert!(
        listed.contains("\"login\":\"orders\"") && listed.contains("\"auth\":\"certificate\""),
        "{listed}"
    );
    // Without the certificate, the same CONNECT is refused.
    let tls = tls_connect(addr, pki.client(None)).expect("TLS handshake");
    let (mut ws, _) = WsClient::over(tls, &format!("wss://{addr}/stomp"), "v12.stomp", None);
    ws.send_frame(&connect_frame("1.2", &[]));
    assert_eq!(
        header(&ws.expect("ERROR"), "message"),
        "authentication failed"
    );
}

#[test]
fn a_broken_tls_setup_stops_the_broker_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stompbox.toml");
    let run = |toml: &str| {
        std::fs::write(&config, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stompbox"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--admin-bind",
                "127.0.0.1:0",
            ])
            .args(["--ws-bind", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml} must not start");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let missing = run("[tls]\nbind = \"127.0.0.1:0\"\n");
    assert!(missing.contains("tls.cert and tls.key"), "{missing}");
    let absent = run(&format!(
        "[tls]\nbind = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\n",
        dir.path().join("nope.pem"),
        dir.path().join("nope.key")
    ));
    assert!(
        absent.contains("certificate") && absent.contains("nope.pem"),
        "{absent}"
    );
    let no_ca = run("[tls]\nclient_auth = \"required\"\n");
    assert!(no_ca.contains("tls.client_ca"), "{no_ca}");
    let origin = run("[websocket]\nallowed_origins = [\"app.example.com\"]\n");
    assert!(origin.contains("websocket.allowed_origins"), "{origin}");
}
