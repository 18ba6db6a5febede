//! TLS on the listeners (`--tls-cert`, `--tls-key`): a test CA issues the gateway's
//! certificate; clients that trust the CA get `https://` (negotiate, `/healthz` on the admin
//! port) and `wss://` (a SignalR session); clients refuse an unknown CA, an expired certificate
//! and a wrong name; the server refuses TLS 1.1; rewritten files rotate the certificate without
//! a restart, and broken ones keep the old certificate serving.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, TestGateway, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use gateway::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Self { cert: params.self_signed(&key).unwrap(), key }
    }

    /// A leaf for `names` with `serial`, valid now unless `expired`: (chain PEM, key PEM).
    fn issue(&self, names: &[&str], serial: u64, expired: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.serial_number = Some(serial.into());
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The gateway's certificate and key files in a directory of their own.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(test: &str, (cert, key): &(String, String)) -> Self {
        let dir = std::env::temp_dir().join(format!("hubgate-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = Self { dir };
        files.write(cert, key);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Replaces both files, each in one rename (as a deployment tool would).
    fn write(&self, cert: &str, key: &str) {
        for (path, text) in [(self.cert(), cert), (self.key(), key)] {
            let staging = path.with_extension("new");
            std::fs::write(&staging, text).unwrap();
            std::fs::rename(&staging, &path).unwrap();
        }
    }

    fn config(&self) -> Config {
        Config { tls_cert: Some(self.cert()), tls_key: Some(self.key()), ..common::fast_config() }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(trusted: &[&Ca], versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in trusted {
        roots.add(ca.cert.der().clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn trusting(ca: &Ca) -> Arc<ClientConfig> {
    client_config(&[ca], rustls::ALL_VERSIONS)
}

async fn connect(addr: SocketAddr, name: &str, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    timeout(DEADLINE, TlsConnector::from(config).connect(name, tcp)).await.expect("TLS handshake in time")
}

/// The certificate error a refused handshake ended with.
fn certificate_error(error: &std::io::Error) -> CertificateError {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(error)) => error.clone(),
        _ => panic!("not a certificate error: {error:?}"),
    }
}

/// The leaf certificate (DER) the server presented.
fn served(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
}

/// The DER of the first certificate in `pem`.
fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec()
}

/// One HTTP/1.1 request over `stream`: (status, body).
async fn http(mut stream: TlsStream<TcpStream>, method: &str, path: &str) -> (u16, String) {
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(DEADLINE, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// The counter `name{label}` in the gateway's metrics.
fn counter(gateway: &TestGateway, series: &str) -> u64 {
    let text = gateway.gateway.metrics().render();
    let line = text.lines().find(|line| line.starts_with(series)).unwrap_or_else(|| panic!("{series} missing"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_negotiates_over_https_and_talks_signalr_over_wss() {
    let ca = Ca::new("hubgate test CA");
    let files = Files::new("session", &ca.issue(&["localhost", "127.0.0.1"], 7, false));
    let gateway = TestGateway::start(files.config()).await;

    let stream = connect(gateway.addr, "127.0.0.1", trusting(&ca)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = http(stream, "POST", "/hubs/chat/negotiate?negotiateVersion=1").await;
    assert_eq!(status, 200, "{body}");
    let negotiated: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = negotiated["connectionToken"].as_str().unwrap();

    let stream = connect(gateway.addr, "localhost", trusting(&ca)).await.unwrap();
    let url = format!("wss://localhost:{}/hubs/chat?id={token}", gateway.addr.port());
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    socket.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await.unwrap();
    socket
        .send(Message::text(
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"over wss\"]}\u{1e}",
        ))
        .await
        .unwrap();
    let mut frames = Vec::new();
    let completion = timeout(DEADLINE, async {
        while let Some(message) = socket.next().await {
            let text = message.unwrap().into_text().unwrap().to_string();
            for frame in text.split('\u{1e}').filter(|frame| !frame.is_empty()) {
                let value: serde_json::Value = serde_json::from_str(frame).unwrap();
                frames.push(value.clone());
                if value["type"] == 3 {
                    return value;
                }
            }
        }
        panic!("the socket closed before the completion: {frames:?}")
    })
    .await
    .expect("a completion in time");
    assert_eq!(completion["result"], "over wss");
    assert!(frames.first().is_some_and(|first| first.as_object().is_some_and(|o| o.is_empty())), "{frames:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn unknown_ca_expired_certificate_and_wrong_name_are_refused_by_a_verifying_client() {
    let (ca, other) = (Ca::new("hubgate test CA"), Ca::new("someone else"));
    let good = Files::new("refusals-good", &ca.issue(&["localhost"], 1, false));
    let gateway = TestGateway::start(good.config()).await;
    let refused = connect(gateway.addr, "localhost", trusting(&other)).await.unwrap_err();
    assert_eq!(certificate_error(&refused), CertificateError::UnknownIssuer);
    let wrong_name = connect(gateway.addr, "elsewhere.example", trusting(&ca)).await.unwrap_err();
    assert!(
        matches!(
            certificate_error(&wrong_name),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{wrong_name:?}"
    );
    // The server sees the clients' alerts as failed handshakes.
    eventually("failed handshakes counted", || {
        counter(&gateway, "hubgate_tls_handshake_failures_total{reason=\"error\"}") >= 2
    })
    .await;

    let expired = Files::new("refusals-expired", &ca.issue(&["localhost"], 2, true));
    let old = TestGateway::start(expired.config()).await;
    let refused = connect(old.addr, "localhost", trusting(&ca)).await.unwrap_err();
    assert!(
        matches!(certificate_error(&refused), CertificateError::Expired | CertificateError::ExpiredContext { .. }),
        "{refused:?}"
    );
    gateway.stop().await;
    old.stop().await;
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let ca = Ca::new("hubgate test CA");
    let files = Files::new("versions", &ca.issue(&["localhost"], 1, false));
    let gateway = TestGateway::start(files.config()).await;
    let newest = connect(gateway.addr, "localhost", trusting(&ca)).await.unwrap();
    assert_eq!(newest.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let tls12 = connect(gateway.addr, "localhost", client_config(&[&ca], &[&rustls::version::TLS12])).await.unwrap();
    assert_eq!(tls12.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    let (status, body) = http(tls12, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // No rustls client speaks TLS 1.1; a hand-made TLS 1.1 ClientHello (no supported_versions
    // extension) gets an alert, never a ServerHello.
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut first = [0u8; 1];
    let answer = timeout(DEADLINE, tcp.read(&mut first)).await.expect("an answer in time");
    match answer {
        Ok(0) | Err(_) => {}
        Ok(_) => assert_eq!(first[0], 0x15, "a TLS alert record, not a handshake (0x16)"),
    }
    gateway.stop().await;
}

/// A ClientHello offering only TLS 1.1 (0x0302) with two TLS 1.0/1.1 cipher suites.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([0x11; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend([0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0, 0, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
    record.extend(handshake);
    record
}

#[tokio::test]
async fn a_client_that_never_says_hello_does_not_stall_the_others() {
    let ca = Ca::new("hubgate test CA");
    let files = Files::new("silent", &ca.issue(&["localhost"], 1, false));
    let gateway = TestGateway::start(files.config()).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    let stream = connect(gateway.addr, "localhost", trusting(&ca)).await.unwrap();
    let (status, _) = http(stream, "GET", "/healthz").await;
    assert_eq!(status, 200);
    drop(silent);
    gateway.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_handshake_in_time_is_cut_off_and_counted() {
    let ca = Ca::new("hubgate test CA");
    let files = Files::new("slow-hello", &ca.issue(&["localhost"], 1, false));
    let config = Config { tls_handshake_timeout: Duration::from_millis(300), ..files.config() };
    let gateway = TestGateway::start(config).await;
    let timeouts = "hubgate_tls_handshake_failures_total{reason=\"timeout\"}";
    assert_eq!(counter(&gateway, timeouts), 0);

    // Half a ClientHello, then nothing: the gateway closes the socket after the timeout.
    let mut slow = TcpStream::connect(gateway.addr).await.unwrap();
    let hello = tls11_client_hello();
    slow.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let mut rest = Vec::new();
    // Closed or reset: either way the read ends, with nothing sent back.
    // Well before the 10 s default, which would mean the setting was ignored.
    let _ = timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await.expect("the gateway closes the socket");
    assert!(rest.is_empty(), "no answer to half a hello: {rest:?}");
    common::eventually("the timeout to be counted", || counter(&gateway, timeouts) == 1).await;

    // A client that completes its handshake in time is served as usual.
    let stream = connect(gateway.addr, "localhost", trusting(&ca)).await.unwrap();
    assert_eq!(http(stream, "GET", "/healthz").await.0, 200);
    assert_eq!(counter(&gateway, timeouts), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn rewritten_files_rotate_the_certificate_and_broken_ones_keep_the_old() {
    let (first_ca, second_ca) = (Ca::new("first CA"), Ca::new("second CA"));
    let first = first_ca.issue(&["localhost"], 1001, false);
    let files = Files::new("rotation", &first);
    let gateway = TestGateway::start(files.config()).await;
    let before = connect(gateway.addr, "localhost", trusting(&first_ca)).await.unwrap();
    assert_eq!(served(&before), der(&first.0));

    // A new certificate from another CA: new handshakes present it once the watcher read it.
    let (cert, key) = second_ca.issue(&["localhost"], 2002, false);
    files.write(&cert, &key);
    let reloads = |result: &str| counter(&gateway, &format!("hubgate_tls_reloads_total{{result=\"{result}\"}}"));
    eventually("the new files are loaded", || reloads("ok") == 1).await;
    let after = connect(gateway.addr, "localhost", trusting(&second_ca)).await.unwrap();
    assert_eq!(served(&after), der(&cert));
    assert!(connect(gateway.addr, "localhost", trusting(&first_ca)).await.is_err(), "the old CA's is gone");
    // The connection opened before the rotation still works.
    assert_eq!(http(before, "GET", "/healthz").await.0, 200);

    // A broken certificate file: the watcher tries it once, and the second certificate stays.
    let failed = reloads("error");
    files.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", &key);
    eventually("the broken file was tried", || reloads("error") == failed + 1).await;
    let after = connect(gateway.addr, "localhost", trusting(&second_ca)).await.unwrap();
    assert_eq!(served(&after), der(&cert));
    assert_eq!(http(after, "GET", "/healthz").await.0, 200);

    // A key that is not the certificate's, through the reload function (what SIGHUP calls).
    let (_, other_key) = second_ca.issue(&["localhost"], 3003, false);
    files.write(&cert, &other_key);
    let error = gateway.gateway.reload_tls().unwrap().unwrap_err().to_string();
    assert!(error.starts_with("--tls-key ") && error.contains("--tls-cert"), "{error}");
    let after = connect(gateway.addr, "localhost", trusting(&second_ca)).await.unwrap();
    assert_eq!(served(&after), der(&cert));
    files.write(&cert, &key);
    gateway.gateway.reload_tls().unwrap().unwrap();
    gateway.stop().await;
}

#[tokio::test]
async fn the_admin_port_serves_healthz_over_tls_too() {
    let ca = Ca::new("hubgate test CA");
    let files = Files::new("admin", &ca.issue(&["localhost"], 1, false));
    let gateway = TestGateway::start(files.config()).await;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(gateway::serve_admin(admin, gateway.gateway.clone()));
    let stream = connect(admin_addr, "localhost", trusting(&ca)).await.unwrap();
    assert_eq!(http(stream, "GET", "/healthz").await, (200, "ok".to_owned()));
    let mut plain = TcpStream::connect(admin_addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = timeout(DEADLINE, plain.read_to_end(&mut answer)).await.expect("the plain request ends");
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "plain HTTP is not served");
    gateway.stop().await;
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_missing_or_unusable_files_and_announces_https() {
    let ca = Ca::new("hubgate test CA");
    let files = Files::new("binary", &ca.issue(&["localhost"], 1, false));
    let bin = env!("CARGO_BIN_EXE_gateway");
    let run = |args: Vec<String>| {
        std::process::Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HUBGATE_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let path = |p: PathBuf| p.display().to_string();
    let missing = run(vec!["--tls-cert".into(), "/nonexistent/cert.pem".into(), "--tls-key".into(), path(files.key())]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-cert /nonexistent/cert.pem: cannot read"), "{stderr}");
    let swapped = run(vec!["--tls-cert".into(), path(files.key()), "--tls-key".into(), path(files.cert())]);
    let stderr = String::from_utf8_lossy(&swapped.stderr);
    assert_eq!(swapped.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-cert") && stderr.contains("no PEM certificate"), "{stderr}");
    let alone = run(vec!["--tls-cert".into(), path(files.cert())]);
    assert_eq!(alone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&alone.stderr).contains("--tls-key"));

    let mut child = tokio::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--tls-cert", &path(files.cert()), "--tls-key", &path(files.key())])
        .env_remove("HUBGATE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    timeout(DEADLINE, tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)).await.unwrap().unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("listening on https://").expect(&line).parse().unwrap();
    let stream = connect(addr, "localhost", trusting(&ca)).await.unwrap();
    assert_eq!(http(stream, "GET", "/healthz").await.0, 200);
    child.kill().await.unwrap();
}
