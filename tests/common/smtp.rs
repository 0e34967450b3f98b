//! A real SMTP server on loopback, in process: RFC 5321 over TCP (EHLO,
//! AUTH PLAIN and LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP,
//! QUIT), several connections at once, as lettre's pool opens them; and,
//! when asked, STARTTLS (RFC 3207) or TLS from the first byte, with the
//! test certificate in `tests/fixtures/` (`smtp-ca.pem` signs it). It
//! keeps each message with its envelope, so a test sees what a mail server
//! would take: the recipients the client named, the bytes it sent, and
//! whether they came encrypted. Needs nothing else from `tests/common`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One message as the server took it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The DATA bytes, CRLF line ends, dot-unstuffed.
    pub data: Vec<u8>,
    pub authenticated_as: Option<String>,
    /// Whether the session was encrypted when the message came.
    pub tls: bool,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parsable message")
    }

    /// The header block as sent (before the first empty line).
    pub fn raw_headers(&self) -> String {
        let text = String::from_utf8_lossy(&self.data);
        text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }
}

/// How the server encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain SMTP; STARTTLS is not offered.
    #[default]
    None,
    /// STARTTLS offered after EHLO (port 587 style).
    StartTls,
    /// TLS from the first byte (port 465 style, `smtps://`).
    Wrapper,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// `(user, password)` the server accepts; `None`: no AUTH offered.
    login: Option<(String, String)>,
    tls: SmtpTls,
    acceptor: Option<TlsAcceptor>,
    connections: AtomicUsize,
    /// AUTH commands that came over an unencrypted session.
    auth_in_clear: AtomicUsize,
}

/// The test CA's certificate, which a client trusts to reach this server.
pub fn test_ca_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp-ca.pem")
}

fn acceptor() -> TlsAcceptor {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let certs = CertificateDer::pem_file_iter(dir.join("smtp-server-cert.pem"))
        .expect("server certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_file(dir.join("smtp-server-key.pem")).expect("server key");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate and key");
    TlsAcceptor::from(Arc::new(config))
}

/// A connection, plain or encrypted.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = BufReader<Box<dyn Io>>;

pub struct SmtpServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), None).await
    }

    /// Encrypting as `tls` says, and requiring AUTH with this user and
    /// password.
    pub async fn with_tls(tls: SmtpTls, user: &str, password: &str) -> Self {
        Self::listen(
            "127.0.0.1:0".parse().expect("addr"),
            Some((user.to_owned(), password.to_owned())),
            tls,
        )
        .await
    }

    /// Requiring AUTH with this user and password.
    pub async fn with_login(user: &str, password: &str) -> Self {
        Self::start_on(
            "127.0.0.1:0".parse().expect("addr"),
            Some((user.to_owned(), password.to_owned())),
        )
        .await
    }

    /// On a given address (a server that comes back on its port).
    pub async fn start_on(addr: SocketAddr, login: Option<(String, String)>) -> Self {
        Self::listen(addr, login, SmtpTls::None).await
    }

    async fn listen(addr: SocketAddr, login: Option<(String, String)>, tls: SmtpTls) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind SMTP");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            login,
            tls,
            acceptor: (tls != SmtpTls::None).then(acceptor),
            ..Default::default()
        });
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(connection(Box::new(stream), Arc::clone(&shared)));
                }
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// A loopback address nothing listens on (yet).
    pub async fn free_addr() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    }

    pub fn url(&self) -> String {
        match self.shared.tls {
            SmtpTls::Wrapper => format!("smtps://{}", self.addr),
            SmtpTls::None | SmtpTls::StartTls => format!("smtp://{}", self.addr),
        }
    }

    /// AUTH commands sent over an unencrypted session.
    pub fn auth_in_clear(&self) -> usize {
        self.shared.auth_in_clear.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages have arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.shared.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "{} message(s) arrived within {within:?}, {n} expected",
                    self.received().len()
                );
            }
        }
    }

    /// Stops listening (sessions in progress are cut too).
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One TCP connection: TLS first if the server wraps, then SMTP sessions,
/// a new one over TLS after each STARTTLS; `None` once it ends.
async fn connection(stream: Box<dyn Io>, shared: Arc<Shared>) -> Option<()> {
    let mut tls = shared.tls == SmtpTls::Wrapper;
    let mut stream = if tls {
        encrypt(&shared, stream).await?
    } else {
        stream
    };
    let mut greet = true;
    loop {
        // Back from a session only for STARTTLS: the handshake, then the
        // client starts over with EHLO.
        let plain = session(BufReader::new(stream), &shared, tls, greet).await?;
        stream = encrypt(&shared, plain).await?;
        tls = true;
        greet = false;
    }
}

/// The server's side of the TLS handshake; `None` if it fails.
async fn encrypt(shared: &Shared, stream: Box<dyn Io>) -> Option<Box<dyn Io>> {
    let encrypted = shared.acceptor.as_ref()?.accept(stream).await.ok()?;
    Some(Box::new(encrypted))
}

/// Serves commands until QUIT or the end of the connection (`None`), or
/// until STARTTLS, whose stream it hands back for the handshake.
async fn session(mut conn: Conn, shared: &Shared, tls: bool, greet: bool) -> Option<Box<dyn Io>> {
    if greet
        && conn
            .write_all(&reply("220 localhost ESMTP leadbridge-test".into()))
            .await
            .is_err()
    {
        return None;
    }
    let mut user: Option<String> = None;
    let mut from = String::new();
    let mut rcpt = Vec::new();
    loop {
        let line = read_line(&mut conn).await?;
        let upper = line.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut a = String::from("250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8");
            if shared.tls == SmtpTls::StartTls && !tls {
                a.push_str("\r\n250-STARTTLS");
            }
            if shared.login.is_some() {
                a.push_str("\r\n250-AUTH PLAIN LOGIN");
            }
            a.push_str("\r\n250 SIZE 10485760");
            a
        } else if upper == "STARTTLS" && shared.tls == SmtpTls::StartTls && !tls {
            conn.write_all(&reply("220 2.0.0 Ready to start TLS".into()))
                .await
                .ok()?;
            return Some(conn.into_inner());
        } else if upper.starts_with("AUTH") {
            if !tls {
                shared.auth_in_clear.fetch_add(1, Ordering::SeqCst);
            }
            auth(&mut conn, shared, &line, &upper, &mut user).await?
        } else if upper.starts_with("MAIL FROM:") {
            if shared.login.is_some() && user.is_none() {
                "530 5.7.0 Authentication required".into()
            } else {
                from = angle(&line);
                rcpt.clear();
                "250 2.1.0 Ok".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(angle(&line));
            "250 2.1.5 Ok".into()
        } else if upper == "DATA" {
            if conn
                .write_all(&reply("354 End data with <CR><LF>.<CR><LF>".into()))
                .await
                .is_err()
            {
                return None;
            }
            let mut data = Vec::new();
            loop {
                let l = read_line(&mut conn).await?;
                if l == "." {
                    break;
                }
                let l = l.strip_prefix('.').unwrap_or(&l);
                data.extend_from_slice(l.as_bytes());
                data.extend_from_slice(b"\r\n");
            }
            shared
                .received
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Received {
                    mail_from: std::mem::take(&mut from),
                    rcpt_to: std::mem::take(&mut rcpt),
                    data,
                    authenticated_as: user.clone(),
                    tls,
                });
            shared.arrived.notify_waiters();
            "250 2.0.0 Ok: queued as TEST".into()
        } else if upper == "RSET" {
            from.clear();
            rcpt.clear();
            "250 2.0.0 Ok".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            let _ = conn.write_all(&reply("221 2.0.0 Bye".into())).await;
            return None;
        } else {
            "502 5.5.2 Command not recognized".into()
        };
        if conn.write_all(&reply(answer)).await.is_err() {
            return None;
        }
    }
}

/// AUTH PLAIN (with or without the initial response) or AUTH LOGIN; the
/// answer to give, or `None` if the client went away.
async fn auth(
    conn: &mut Conn,
    shared: &Shared,
    line: &str,
    upper: &str,
    user: &mut Option<String>,
) -> Option<String> {
    if upper.starts_with("AUTH PLAIN") {
        let given = match line.get(10..).map(str::trim).filter(|s| !s.is_empty()) {
            Some(b64) => b64.to_owned(),
            None => {
                conn.write_all(&reply("334 ".into())).await.ok()?;
                read_line(conn).await?
            }
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(given.trim())
            .unwrap_or_default();
        let parts: Vec<String> = decoded
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        Some(check_login(shared, parts.get(1), parts.get(2), user))
    } else if upper.starts_with("AUTH LOGIN") {
        conn.write_all(&reply("334 VXNlcm5hbWU6".into()))
            .await
            .ok()?;
        let u = decode(&read_line(conn).await?);
        conn.write_all(&reply("334 UGFzc3dvcmQ6".into()))
            .await
            .ok()?;
        let p = decode(&read_line(conn).await?);
        Some(check_login(shared, Some(&u), Some(&p), user))
    } else {
        Some("504 5.5.4 Unrecognized authentication type".into())
    }
}

fn reply(text: String) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn check_login(
    shared: &Shared,
    u: Option<&String>,
    p: Option<&String>,
    user: &mut Option<String>,
) -> String {
    match &shared.login {
        Some((want_u, want_p)) if Some(want_u) == u && Some(want_p) == p => {
            *user = u.cloned();
            "235 2.7.0 Authentication successful".into()
        }
        _ => "535 5.7.8 Authentication credentials invalid".into(),
    }
}

fn decode(b64: &str) -> String {
    String::from_utf8_lossy(
        &base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap_or_default(),
    )
    .into_owned()
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn angle(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(addr, _)| addr.to_owned())
        .unwrap_or_default()
}

/// One CRLF-terminated line without its end; `None` at EOF.
async fn read_line(conn: &mut Conn) -> Option<String> {
    let mut buf = Vec::new();
    match conn.read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}
