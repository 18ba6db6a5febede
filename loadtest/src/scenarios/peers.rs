//! What a fan-out scenario shares with the other processes of one run (`loadtest run
//! --workers`): a publisher in one worker addresses subscribers in all of them, so the
//! subscribers' directory and the end of the drain are decided for the run, not per process.
//!
//! [`Alone`], the single-process case, trades with nobody: the directory is this process's
//! subscribers and the drain ends when this ledger has everything. The worker side of
//! `--workers` implements [`Peers`] over its pipe to the parent.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::ledger::{Ledger, Totals};

/// One subscriber as the publishers address it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its number in the run (unique across workers); the directory is in this order.
    pub index: u32,
    pub user: String,
    pub connection_id: String,
    /// Its group (`group` route).
    pub group: u64,
    /// Leaves and rejoins its group; not in the accounting.
    pub churning: bool,
}

/// The run's other processes, as a fan-out scenario sees them.
pub trait Peers: Send + Sync + 'static {
    /// Trades this process's connected subscribers for the run's (every process's), ordered
    /// by [`Member::index`]. Called once per run by every process, after its subscribers
    /// connected (with none, if none could).
    fn exchange(&self, mine: Vec<Member>) -> BoxFuture<'_, Vec<Member>>;

    /// Waits until the run's expected deliveries (every process's ledger) arrived, or
    /// `grace` passed.
    fn settle<'a>(&'a self, ledger: &'a Ledger, grace: Duration) -> BoxFuture<'a, ()>;
}

/// A run in one process.
#[derive(Debug, Default)]
pub struct Alone;

impl Peers for Alone {
    fn exchange(&self, mine: Vec<Member>) -> BoxFuture<'_, Vec<Member>> {
        Box::pin(async move { mine })
    }

    fn settle<'a>(&'a self, ledger: &'a Ledger, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(ledger.settle(grace))
    }
}

/// Whether the run's deliveries are all in, given every process's ledger totals.
pub fn settled<'a>(totals: impl IntoIterator<Item = &'a Totals>) -> bool {
    let (expected, received) = totals.into_iter().fold((0, 0), |(e, r), t| (e + t.expected, r + t.received));
    received >= expected
}
