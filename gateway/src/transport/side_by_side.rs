//! Two futures driven by one task: a busy one polled on every wake-up, and a quiet one
//! polled only when its own waker fired.
//!
//! A WebSocket connection runs its writer and its reader (the session) in one task, so that
//! an idle connection costs one task rather than two (docs/benchmarks.md, "Idle WebSocket
//! connections"). The writer is woken for every message sent to the connection; the session
//! only when the client sends something or one of its timers fires. `tokio::select!` would
//! poll both on every wake-up, so every message written would also poll the session, its
//! socket read and its timers, for nothing. Here the quiet side has a waker of its own that
//! marks it, and a wake-up that did not mark it leaves it alone. (One mark, not one per side:
//! each costs an allocation per connection, and polling the writer when the session was woken
//! is cheap and rare.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Which of the two futures finished first, with its output.
pub(crate) enum FirstDone<A, B> {
    Quiet(A),
    Busy(B),
}

/// Runs `quiet` and `busy` until one finishes (see the module docs).
pub(crate) struct SideBySide<A, B> {
    quiet: A,
    busy: B,
    mark: Arc<Mark>,
    quiet_waker: Waker,
}

/// Set when the quiet side was woken; wakes the task that runs both.
struct Mark {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<A, B> SideBySide<A, B> {
    pub(crate) fn new(quiet: A, busy: B) -> Self {
        // Marked at first: the quiet side is polled once before it has registered interest.
        let mark = Arc::new(Mark { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let quiet_waker = Waker::from(mark.clone());
        Self { quiet, busy, mark, quiet_waker }
    }
}

impl<A: Future + Unpin, B: Future + Unpin> Future for SideBySide<A, B> {
    type Output = FirstDone<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.mark.task.register(cx.waker());
        if this.mark.woken.swap(false, Ordering::AcqRel) {
            let mut quiet_cx = Context::from_waker(&this.quiet_waker);
            if let Poll::Ready(done) = Pin::new(&mut this.quiet).poll(&mut quiet_cx) {
                return Poll::Ready(FirstDone::Quiet(done));
            }
        }
        match Pin::new(&mut this.busy).poll(cx) {
            Poll::Ready(done) => Poll::Ready(FirstDone::Busy(done)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// The last waker a future was polled with.
    type Registered = Arc<std::sync::Mutex<Option<Waker>>>;

    /// A future that counts its polls and finishes when `ready` is set and it is woken.
    struct Counted {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Registered,
    }

    impl Future for Counted {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(polls)
            } else {
                Poll::Pending
            }
        }
    }

    fn counted() -> (Counted, Arc<AtomicUsize>, Arc<AtomicBool>, Registered) {
        let (polls, ready, waker) = (Arc::default(), Arc::new(AtomicBool::new(false)), Arc::default());
        (
            Counted { polls: Arc::clone(&polls), ready: Arc::clone(&ready), waker: Arc::clone(&waker) },
            polls,
            ready,
            waker,
        )
    }

    #[tokio::test]
    async fn waking_the_busy_side_leaves_the_quiet_one_alone() {
        let (quiet, quiet_polls, quiet_ready, quiet_waker) = counted();
        let (busy, busy_polls, _, busy_waker) = counted();
        let mut both = std::pin::pin!(SideBySide::new(quiet, busy));
        assert!(futures_util::poll!(both.as_mut()).is_pending());
        let polls = || (quiet_polls.load(Ordering::SeqCst), busy_polls.load(Ordering::SeqCst));
        assert_eq!(polls(), (1, 1), "both once at first");

        for _ in 0..10 {
            busy_waker.lock().unwrap().take().expect("busy registered").wake();
            assert!(futures_util::poll!(both.as_mut()).is_pending());
        }
        assert_eq!(polls(), (1, 11), "the quiet side was never woken, so never polled");

        quiet_ready.store(true, Ordering::SeqCst);
        quiet_waker.lock().unwrap().take().expect("quiet registered").wake();
        match futures_util::poll!(both.as_mut()) {
            Poll::Ready(FirstDone::Quiet(polls)) => assert_eq!(polls, 2),
            other => panic!("the quiet side finished: {:?}", other.is_ready()),
        }
    }

    #[tokio::test]
    async fn a_wake_of_the_quiet_side_reaches_the_task_that_runs_both() {
        // The quiet side is the left one.
        let (left, _, left_ready, left_waker) = counted();
        let (right, _, _, _) = counted();
        let both = tokio::spawn(async move {
            match SideBySide::new(left, right).await {
                FirstDone::Quiet(_) => "left",
                FirstDone::Busy(_) => "right",
            }
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let waker = loop {
            if let Some(waker) = left_waker.lock().unwrap().take() {
                break waker;
            }
            assert!(tokio::time::Instant::now() < deadline, "the task polled the left side");
            tokio::task::yield_now().await;
        };
        left_ready.store(true, Ordering::SeqCst);
        waker.wake();
        let done = tokio::time::timeout(std::time::Duration::from_secs(5), both).await.expect("in time").expect("task");
        assert_eq!(done, "left");
    }
}
