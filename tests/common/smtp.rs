//! A real SMTP server on loopback, in process: RFC 5321 over TCP (EHLO,
//! AUTH PLAIN and LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP,
//! QUIT), several connections at once, as lettre's pool opens them. It
//! keeps each message with its envelope, so a test sees what a mail server
//! would take: the recipients the client named, and the bytes it sent.
//! Needs nothing else from `tests/common`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One message as the server took it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The DATA bytes, CRLF line ends, dot-unstuffed.
    pub data: Vec<u8>,
    pub authenticated_as: Option<String>,
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

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// `(user, password)` the server accepts; `None`: no AUTH offered.
    login: Option<(String, String)>,
    connections: std::sync::atomic::AtomicUsize,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), None).await
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
        let listener = TcpListener::bind(addr).await.expect("bind SMTP");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            login,
            ..Default::default()
        });
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    shared
                        .connections
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::spawn(session(stream, Arc::clone(&shared)));
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
        format!("smtp://{}", self.addr)
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
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
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

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if write
        .write_all(&reply("220 localhost ESMTP leadbridge-test".into()))
        .await
        .is_err()
    {
        return;
    }
    let mut user: Option<String> = None;
    let mut from = String::new();
    let mut rcpt = Vec::new();
    loop {
        let Some(line) = read_line(&mut lines).await else {
            return;
        };
        let upper = line.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut a = String::from("250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8");
            if shared.login.is_some() {
                a.push_str("\r\n250-AUTH PLAIN LOGIN");
            }
            a.push_str("\r\n250 SIZE 10485760");
            a
        } else if upper.starts_with("AUTH PLAIN") {
            let given = match line.get(10..).map(str::trim).filter(|s| !s.is_empty()) {
                Some(b64) => b64.to_owned(),
                None => {
                    let _ = write.write_all(&reply("334 ".into())).await;
                    read_line(&mut lines).await.unwrap_or_default()
                }
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(given.trim())
                .unwrap_or_default();
            let parts: Vec<String> = decoded
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            check_login(&shared, parts.get(1), parts.get(2), &mut user)
        } else if upper.starts_with("AUTH LOGIN") {
            let _ = write.write_all(&reply("334 VXNlcm5hbWU6".into())).await;
            let u = decode(&read_line(&mut lines).await.unwrap_or_default());
            let _ = write.write_all(&reply("334 UGFzc3dvcmQ6".into())).await;
            let p = decode(&read_line(&mut lines).await.unwrap_or_default());
            check_login(&shared, Some(&u), Some(&p), &mut user)
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
            if write
                .write_all(&reply("354 End data with <CR><LF>.<CR><LF>".into()))
                .await
                .is_err()
            {
                return;
            }
            let mut data = Vec::new();
            loop {
                let Some(l) = read_line(&mut lines).await else {
                    return;
                };
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
            let _ = write.write_all(&reply("221 2.0.0 Bye".into())).await;
            return;
        } else {
            "502 5.5.2 Command not recognized".into()
        };
        if write.write_all(&reply(answer)).await.is_err() {
            return;
        }
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
async fn read_line(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut buf = Vec::new();
    match lines.read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}
