//! Sockets whose peer stops reading are closed: a write that can make no progress for the
//! send timeout (`--send-timeout`) fails, on every transport.
//!
//! The WebSocket writer bounds each of its writes itself, but an HTTP response body is written
//! by hyper: when a Server-Sent Events client stops reading, hyper waits for the socket and
//! stops polling the body, so nothing the event stream does can end it. The session ends when
//! its outbound queue overflows, but the socket, and the response with it, stayed open until
//! the kernel gave up (with the client's window at zero that is never). [`StalledWrites`] wraps
//! every accepted connection: while a write returns `Pending` a timer runs, any progress stops
//! it, and when it fires the write fails with `TimedOut`. hyper then drops the connection, the
//! response body with it, and that ends the connection's session.
//!
//! Cost: a timer only while a write is blocked (allocated then, dropped on progress); nothing
//! per write otherwise.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A listener whose connections fail a write blocked for longer than `limit`.
#[derive(Debug)]
pub struct StalledWrites<L> {
    listener: L,
    limit: Duration,
}

impl<L> StalledWrites<L> {
    pub fn new(listener: L, limit: Duration) -> Self {
        Self { listener, limit }
    }
}

impl<L: Listener> Listener for StalledWrites<L> {
    type Io = WriteDeadline<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.listener.accept().await;
        (WriteDeadline { io, limit: self.limit, stalled: None }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection whose writes fail once blocked for longer than `limit`.
#[derive(Debug)]
pub struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    /// Runs while writes are blocked; `None` after any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    /// What a blocked write returns: `Pending` until the limit, then `TimedOut`.
    fn blocked<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {limit:?} (--send-timeout)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write, flush or shutdown that completed (or failed): the stall, if any, is over.
    fn progressed<R>(&mut self, done: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        self.stalled = None;
        done
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.blocked(cx),
            ready => this.progressed(ready),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.blocked(cx),
            ready => this.progressed(ready),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.blocked(cx),
            ready => this.progressed(ready),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.blocked(cx),
            ready => this.progressed(ready),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn guarded(limit: Duration) -> (WriteDeadline<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, peer) = tokio::io::duplex(64);
        (WriteDeadline { io: ours, limit, stalled: None }, peer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_for_the_limit_fails() {
        let (mut io, _peer) = guarded(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let error = io.write_all(&[0; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_never_cut_off() {
        let (mut io, mut peer) = guarded(Duration::from_secs(1));
        let reader = tokio::spawn(async move {
            let mut buffer = [0; 64];
            let mut total = 0;
            while total < 4096 {
                // Less than the limit between reads, more than it in all.
                tokio::time::sleep(Duration::from_millis(900)).await;
                total += peer.read(&mut buffer).await.unwrap();
            }
        });
        io.write_all(&[0; 4096]).await.expect("progress resets the timer");
        reader.await.unwrap();
    }
}
