//! Two futures driven by one task, each polled only when its own waker fired.
//!
//! A WebSocket connection runs its reader (the session) and its writer in one task, so that an
//! idle connection costs one task rather than two (docs/benchmarks.md, "Idle WebSocket
//! connections"). `tokio::select!` would poll both whenever either is woken: every message
//! written would also poll the session, its socket read and its timers, for nothing. Here each
//! side gets a waker of its own that marks it, and a wake-up polls only the marked side.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Which of the two futures finished first, with its output.
pub(crate) enum FirstDone<A, B> {
    Left(A),
    Right(B),
}

/// Runs `left` and `right` until one finishes (see the module docs).
pub(crate) struct SideBySide<A, B> {
    left: A,
    right: B,
    marks: [Arc<Mark>; 2],
    wakers: [Waker; 2],
}

/// Set when its side was woken; wakes the task that runs both.
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
    pub(crate) fn new(left: A, right: B) -> Self {
        // Both start marked: each is polled once before it has registered any interest.
        let mark = || Arc::new(Mark { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let marks = [mark(), mark()];
        let wakers = [Waker::from(marks[0].clone()), Waker::from(marks[1].clone())];
        Self { left, right, marks, wakers }
    }
}

impl<A: Future + Unpin, B: Future + Unpin> Future for SideBySide<A, B> {
    type Output = FirstDone<A::Output, B::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        for mark in &this.marks {
            mark.task.register(cx.waker());
        }
        if this.marks[0].woken.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(done) = Pin::new(&mut this.left).poll(&mut Context::from_waker(&this.wakers[0])) {
                return Poll::Ready(FirstDone::Left(done));
            }
        }
        if this.marks[1].woken.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(done) = Pin::new(&mut this.right).poll(&mut Context::from_waker(&this.wakers[1])) {
                return Poll::Ready(FirstDone::Right(done));
            }
        }
        Poll::Pending
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
    async fn waking_one_side_polls_only_that_side() {
        let (left, left_polls, _, left_waker) = counted();
        let (right, right_polls, right_ready, right_waker) = counted();
        let mut both = std::pin::pin!(SideBySide::new(left, right));
        assert!(futures_util::poll!(both.as_mut()).is_pending());
        assert_eq!(
            (left_polls.load(Ordering::SeqCst), right_polls.load(Ordering::SeqCst)),
            (1, 1),
            "both once at first"
        );

        for _ in 0..10 {
            left_waker.lock().unwrap().take().expect("left registered").wake();
            assert!(futures_util::poll!(both.as_mut()).is_pending());
        }
        assert_eq!(left_polls.load(Ordering::SeqCst), 11);
        assert_eq!(right_polls.load(Ordering::SeqCst), 1, "the right side was never woken, so never polled");

        right_ready.store(true, Ordering::SeqCst);
        right_waker.lock().unwrap().take().expect("right registered").wake();
        match futures_util::poll!(both.as_mut()) {
            Poll::Ready(FirstDone::Right(polls)) => assert_eq!(polls, 2),
            other => panic!("the right side finished: {:?}", other.is_ready()),
        }
    }

    #[tokio::test]
    async fn a_wake_reaches_the_task_that_runs_both() {
        let (left, _, left_ready, left_waker) = counted();
        let (right, _, _, _) = counted();
        let both = tokio::spawn(async move {
            match SideBySide::new(left, right).await {
                FirstDone::Left(_) => "left",
                FirstDone::Right(_) => "right",
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
