//! TLS on the listeners (`--tls-cert`, `--tls-key`): `https://` and `wss://` on the main and
//! admin ports, with certificates rotated without a restart.
//!
//! Why it looks like this:
//!
//! - **One fixed rustls `ServerConfig`, a swappable certificate.** The config's certificate
//!   resolver ([`Rotating`]) hands out whichever [`CertifiedKey`] was loaded last, so a reload
//!   swaps one `Arc` under a lock and every handshake after it presents the new certificate,
//!   while the listeners, their acceptors and the connections already open are left alone.
//! - **TLS 1.2 and 1.3 only** (the versions rustls implements), ring as the crypto provider
//!   (what the rest of the workspace builds), ALPN `http/1.1` only: WebSockets are HTTP/1.1
//!   upgrades, and offering `h2` would make browsers try WebSockets over HTTP/2, which the
//!   server does not announce.
//! - **Handshakes never block the accept loop.** [`TlsListener`] is an
//!   [`axum::serve::Listener`]: it accepts TCP connections and runs each handshake as its own
//!   task, under `--tls-handshake-timeout` ([`DEFAULT_HANDSHAKE_TIMEOUT`]), at most
//!   [`MAX_HANDSHAKES`] at once (beyond that new connections wait in the kernel's backlog);
//!   `axum::serve` gets only finished handshakes. A client that opens a socket and never says
//!   hello costs one task until the timeout, not everybody's progress. This keeps `axum::serve` and its graceful shutdown exactly as
//!   without TLS, which `axum-server` (its own server loop and shutdown handle) would not.
//! - **Reloads are all-or-nothing.** [`Certificates::reload`] reads both files and swaps only
//!   when the chain and key parse and match each other; otherwise the old certificate stays,
//!   and the reason is logged (`warn`) and counted (`hubgate_tls_reloads_total{result="error"}`).
//!   [`watch`] re-reads the files every [`POLL_INTERVAL`] and reloads when their bytes changed
//!   (bytes, not modification times: a Kubernetes Secret update swaps a symlink, and two writes
//!   in one timestamp tick still differ); the binary also reloads on SIGHUP.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::TlsMetrics;

/// How long a client has to complete its TLS handshake after connecting, unless
/// `--tls-handshake-timeout` says otherwise (10 s, as ASP.NET Core's Kestrel).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes one listener runs at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 1024;
/// How often [`watch`] re-reads the certificate and key files.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The two PEM files: `--tls-cert` (the chain, leaf first) and `--tls-key` (its private key:
/// PKCS#8, PKCS#1 RSA or SEC1 EC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate and key could not be loaded; each names the option and the file.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("--{option} {}: cannot read: {source}", path.display())]
    Read { option: &'static str, path: PathBuf, source: io::Error },
    #[error("--tls-cert {}: no PEM certificate in it ({reason})", path.display())]
    NoCertificate { path: PathBuf, reason: String },
    #[error("--tls-key {}: no PEM private key in it ({reason})", path.display())]
    NoKey { path: PathBuf, reason: String },
    /// The key is of an unsupported kind, or is not the key of the certificate.
    #[error("--tls-key {}: not usable with --tls-cert {}: {reason}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// The certificate the listeners present, and how to reload it.
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<Rotating>,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    /// The file contents of the last load attempt, good or bad, so that [`watch`] tries (and
    /// warns about) each new content once, not every poll.
    last_seen: Mutex<Snapshot>,
    metrics: Arc<TlsMetrics>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").field("files", &self.files).finish_non_exhaustive()
    }
}

/// What the two files held when read: their bytes, or why they could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    cert: Result<Vec<u8>, io::ErrorKind>,
    key: Result<Vec<u8>, io::ErrorKind>,
}

impl Certificates {
    /// Loads `files`; fails (for the binary: before binding) when they cannot be used. Clients
    /// of its listeners have `handshake_timeout` to finish their handshake.
    pub fn load(files: TlsFiles, handshake_timeout: Duration, metrics: Arc<TlsMetrics>) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let snapshot = Snapshot::read(&files);
        let loaded = parse(&files, &snapshot, &provider)?;
        let current = Arc::new(Rotating { current: RwLock::new(Arc::new(loaded)) });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let last_seen = Mutex::new(snapshot);
        Ok(Arc::new(Self { files, provider, current, acceptor, handshake_timeout, last_seen, metrics }))
    }

    /// Re-reads both files and, when they hold a usable chain and key, presents them from the
    /// next handshake on. On failure the certificate in use stays and the error says why.
    /// Logged and counted either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.apply(Snapshot::read(&self.files))
    }

    /// Reloads when the files' contents differ from the last attempt; `None` when unchanged.
    fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let snapshot = Snapshot::read(&self.files);
        if *self.lock_last_seen() == snapshot {
            return None;
        }
        Some(self.apply(snapshot))
    }

    fn apply(&self, snapshot: Snapshot) -> Result<(), TlsError> {
        let loaded = parse(&self.files, &snapshot, &self.provider);
        *self.lock_last_seen() = snapshot;
        match loaded {
            Ok(key) => {
                self.current.set(Arc::new(key));
                self.metrics.reloads_ok.inc();
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(error) => {
                self.metrics.reloads_failed.inc();
                warn!(%error, "TLS certificate not reloaded; still serving the previous one");
                Err(error)
            }
        }
    }

    fn lock_last_seen(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.last_seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `tcp` serving TLS with these certificates.
    pub fn listener(&self, tcp: TcpListener) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: self.acceptor.clone(),
            handshake_timeout: self.handshake_timeout,
            handshakes: JoinSet::new(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Re-reads the files every [`POLL_INTERVAL`] and reloads when they changed, until `stop`.
pub async fn watch(certificates: Arc<Certificates>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                // Two small files; not worth a hop to the blocking pool every tick. The outcome
                // is logged and counted inside.
                let _ = certificates.reload_if_changed();
            }
        }
    }
}

impl Snapshot {
    fn read(files: &TlsFiles) -> Self {
        let read = |path: &Path| std::fs::read(path).map_err(|error| error.kind());
        Self { cert: read(&files.cert), key: read(&files.key) }
    }
}

/// The chain and key in `snapshot`, checked to belong together.
fn parse(files: &TlsFiles, snapshot: &Snapshot, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let unreadable = |option, path: &Path, kind: &io::ErrorKind| TlsError::Read {
        option,
        path: path.to_owned(),
        source: io::Error::from(*kind),
    };
    let cert_pem = snapshot.cert.as_ref().map_err(|kind| unreadable("tls-cert", &files.cert, kind))?;
    let key_pem = snapshot.key.as_ref().map_err(|kind| unreadable("tls-key", &files.key, kind))?;
    let no_cert = |reason: String| TlsError::NoCertificate { path: files.cert.clone(), reason };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| no_cert(error.to_string()))?;
    if chain.is_empty() {
        return Err(no_cert("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| TlsError::NoKey { path: files.key.clone(), reason: error.to_string() })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: error.to_string(),
    })
}

/// The certificate resolver of the fixed `ServerConfig`: always the last loaded key.
#[derive(Debug)]
struct Rotating {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Rotating {
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for Rotating {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// A TCP listener whose connections `axum::serve` receives after their TLS handshake.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    /// Handshakes under way; each yields its stream, or `None` when it failed or timed out.
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    metrics: Arc<TlsMetrics>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    /// Cancel-safe, as `axum::serve` needs: a connection accepted before cancellation sits in
    /// `handshakes`, and a finished handshake leaves it only when it is returned.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(accepted)) = done {
                        return accepted;
                    }
                }
                (stream, peer) = axum::serve::Listener::accept(&mut self.tcp),
                    if self.handshakes.len() < MAX_HANDSHAKES =>
                {
                    let (acceptor, metrics) = (self.acceptor.clone(), self.metrics.clone());
                    self.handshakes.spawn(handshake(acceptor, self.handshake_timeout, stream, peer, metrics));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    limit: Duration,
    stream: TcpStream,
    peer: SocketAddr,
    metrics: Arc<TlsMetrics>,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err(error)) => {
            metrics.handshake_errors.inc();
            debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.handshake_timeouts.inc();
            debug!(%peer, timeout = ?limit, "TLS handshake timed out");
            None
        }
    }
}
