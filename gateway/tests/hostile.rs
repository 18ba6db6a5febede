//! Hostile clients (issue 19, section 3): each case says what the server does to the attacker
//! and checks that a healthy client is served meanwhile. So far: slowloris on request headers
//! and on a REST request body.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TestGateway;
use gateway::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Short timeouts so the attacks end quickly.
fn config() -> Config {
    Config {
        request_header_timeout: Duration::from_millis(600),
        request_body_timeout: Duration::from_millis(600),
        rest_api_open: true,
        ..Config::default()
    }
}

/// Sends `head` and then `trickle` a byte every 100 ms, reading what the server answers, until
/// the server closes the socket. Returns what it answered and when it closed (since the start).
async fn trickle(addr: SocketAddr, head: &str, trickle: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let trickle = trickle.to_vec();
    let attacker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for byte in trickle {
            tick.tick().await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read = timeout(Duration::from_secs(10), reader.read_to_end(&mut answer)).await;
    attacker.abort();
    assert!(read.is_ok(), "the server never closed the socket");
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

/// A healthy client: `GET /healthz` answers 200 within a second.
async fn healthy(addr: SocketAddr) {
    let started = Instant::now();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(1), "healthy client took {:?}", started.elapsed());
}

#[tokio::test]
async fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let gateway = TestGateway::start(config()).await;
    let addr = gateway.addr;
    let attack = tokio::spawn(async move { trickle(addr, "GET /healthz HTTP/1.1\r\n", &[b'X'; 100]).await });
    healthy(addr).await;
    let (answer, closed) = attack.await.unwrap();
    println!("slowloris headers: closed after {closed:?}, answer {answer:?}");
    assert!(!answer.contains("200"), "the trickled request was served: {answer}");
    assert!(closed >= Duration::from_millis(500), "closed before the timeout: {closed:?}");
    assert!(closed < Duration::from_secs(5), "closed long after the 600 ms timeout: {closed:?}");
}

#[tokio::test]
async fn a_slow_rest_body_is_answered_408_at_the_body_timeout() {
    let gateway = TestGateway::start(config()).await;
    let addr = gateway.addr;
    let head = "POST /api/hubs/chat/:send?api-version=2022-06-01 HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let attack = tokio::spawn(async move { trickle(addr, head, &[b' '; 100]).await });
    healthy(addr).await;
    let (answer, closed) = attack.await.unwrap();
    println!("slow REST body: closed after {closed:?}, answer {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed >= Duration::from_millis(500), "closed before the timeout: {closed:?}");
    assert!(closed < Duration::from_secs(5), "closed long after the 600 ms timeout: {closed:?}");
}
