//! The public listener against clients that stall, over raw sockets: each
//! kind of stalled connection is closed within its timeout, hundreds of
//! them do not keep a real lead out, and they do not hold up shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::*;

/// Generous bounds on "within the timeout": the timeouts are 0.5–0.8 s,
/// and a loaded CI machine must not make these tests flaky.
const WITHIN: Duration = Duration::from_secs(5);

fn short_timeouts() -> TestConfig {
    TestConfig {
        server_toml: "header_read_timeout = \"500ms\"\nbody_read_timeout = \"500ms\"\nidle_timeout = \"800ms\""
            .into(),
        ..TestConfig::default()
    }
}

async fn connect(t: &TestApp) -> TcpStream {
    let addr = t.base.trim_start_matches("http://").to_owned();
    TcpStream::connect(addr).await.unwrap()
}

/// Everything the server sends until it closes the connection; panics if
/// it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let result = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    assert!(
        result.is_ok(),
        "connection still open after {within:?}; got {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_connection_stalled_in_its_headers_is_closed() {
    let t = TestApp::spawn_with(short_timeouts()).await;
    let mut s = connect(&t).await;
    s.write_all(
        format!("POST /leads/contoso?code={SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: app")
            .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut s, WITHIN).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before its timeout"
    );
    assert!(!got.contains("202"), "{got}");
    assert_eq!(t.count("leads").await, 0);
}

#[tokio::test]
async fn a_connection_stalled_in_its_body_gets_408_and_is_closed() {
    let t = TestApp::spawn_with(short_timeouts()).await;
    let mut s = connect(&t).await;
    let head = format!(
        "POST /leads/contoso?code={SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"OfferTitle\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut s, WITHIN).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains(r#""error":"request_timeout""#), "{got}");
    assert_eq!(t.count("leads").await, 0);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let t = TestApp::spawn_with(short_timeouts()).await;
    let mut s = connect(&t).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, WITHIN).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains(r#"{"status":"ok"}"#), "{got}");
}

#[tokio::test]
async fn hundreds_of_stalled_connections_do_not_keep_a_lead_out_or_hold_up_shutdown() {
    // Default timeouts (10 s for headers): the stalled ones stay open
    // throughout the lead's request.
    let mut t = TestApp::spawn().await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut s = connect(&t).await;
        s.write_all(b"POST /leads/contoso HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let lead = tokio::time::timeout(WITHIN, t.post_lead(sample_2020()))
        .await
        .expect("answered while 300 connections stall");
    assert_eq!(lead.status(), 202);
    assert_eq!(t.count("leads").await, 1);

    // Shutdown closes them instead of waiting for their timeouts.
    let started = Instant::now();
    t.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WITHIN, stalled[0].read(&mut buf))
        .await
        .expect("closed by the shutdown");
    // End of stream, or a reset: either way, closed.
    assert!(!matches!(n, Ok(n) if n > 0), "{n:?}");
}

#[tokio::test]
async fn an_ordinary_client_sending_5_mb_reads_the_413() {
    let t = TestApp::spawn().await;
    for chunked in [false, true] {
        let body = vec![b'x'; 5 * 1024 * 1024];
        let req = t
            .http
            .post(t.lead_url("contoso", SECRET))
            .header("Content-Type", "application/json");
        let req = if chunked {
            let stream = futures_util::stream::iter(
                body.chunks(64 * 1024)
                    .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                    .collect::<Vec<_>>(),
            );
            req.body(reqwest::Body::wrap_stream(stream))
        } else {
            req.body(body)
        };
        let r = req.send().await.expect("the answer, not a broken pipe");
        assert_eq!(r.status(), 413, "chunked: {chunked}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "payload_too_large");
    }
    assert_eq!(t.count("leads").await, 0);
}
