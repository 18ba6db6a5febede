//! How a run is cut into one part per worker process: pure arithmetic, tested alone.
//!
//! Whole numbers (VUs, pre-allocated and most VUs, subscribers, ramp targets) are dealt out
//! like cards: each worker gets `total / workers`, and the first `total % workers` one more,
//! so the parts add up to the whole. Rates (iterations per time unit) are divided exactly. A
//! worker with a share of an arrival rate keeps at least one VU to run it.

use crate::model::executor::{Executor, Stage};
use crate::scenarios::{Settings, Slice};

/// Descriptors a worker keeps for things other than its hub connections (stdio, the event
/// loop, the HTTP client's pool, negotiate requests in flight).
pub const OPEN_FILES_RESERVE: u64 = 200;

/// Worker `worker`'s part of `total` among `workers`.
pub fn share(total: u32, worker: u32, workers: u32) -> u32 {
    let workers = workers.max(1);
    total / workers + u32::from(worker < total % workers)
}

/// The sum of the parts of the workers before `worker`: where its numbering starts.
pub fn offset(total: u32, worker: u32, workers: u32) -> u32 {
    (0..worker).map(|w| share(total, w, workers)).sum()
}

/// Worker `worker`'s executor: the same schedule with its share of the VUs or of the rate.
pub fn executor(executor: &Executor, worker: u32, workers: u32) -> Executor {
    let part = |total: u32| share(total, worker, workers);
    let rate = |total: f64| total / f64::from(workers.max(1));
    let pool = |pre: u32, max: Option<u32>, busy: bool| {
        let pre = part(pre).max(u32::from(busy));
        (pre, max.map(|m| part(m).max(pre)))
    };
    match executor {
        Executor::ConstantVus { vus, duration } => Executor::ConstantVus { vus: part(*vus), duration: *duration },
        Executor::RampingVus { start_vus, stages } => Executor::RampingVus {
            start_vus: part(*start_vus),
            stages: stages
                .iter()
                .map(|s| Stage { duration: s.duration, target: f64::from(part(s.target.round() as u32)) })
                .collect(),
        },
        Executor::ConstantArrivalRate { rate: r, time_unit, duration, pre_allocated_vus, max_vus } => {
            let (pre_allocated_vus, max_vus) = pool(*pre_allocated_vus, *max_vus, *r > 0.0);
            Executor::ConstantArrivalRate {
                rate: rate(*r),
                time_unit: *time_unit,
                duration: *duration,
                pre_allocated_vus,
                max_vus,
            }
        }
        Executor::RampingArrivalRate { start_rate, time_unit, stages, pre_allocated_vus, max_vus } => {
            let busy = *start_rate > 0.0 || stages.iter().any(|s| s.target > 0.0);
            let (pre_allocated_vus, max_vus) = pool(*pre_allocated_vus, *max_vus, busy);
            Executor::RampingArrivalRate {
                start_rate: rate(*start_rate),
                time_unit: *time_unit,
                stages: stages.iter().map(|s| Stage { duration: s.duration, target: rate(s.target) }).collect(),
                pre_allocated_vus,
                max_vus,
            }
        }
    }
}

/// Worker `worker`'s settings: its share of the subscribers, and where its numbers start.
pub fn settings(settings: &Settings, executor: &Executor, worker: u32, workers: u32) -> Settings {
    let slice = Slice {
        worker,
        workers,
        vu_offset: offset(executor.max_vus(), worker, workers),
        subscriber_offset: offset(settings.subscribers, worker, workers),
    };
    // Every worker has a share of the rate, so each keeps a publisher when there are any.
    let publishers = share(settings.publishers, worker, workers).max(u32::from(settings.publishers > 0));
    Settings { subscribers: share(settings.subscribers, worker, workers), publishers, slice, ..settings.clone() }
}

/// Most hub connections one process opens for `executor` and `settings` (one per VU, or per
/// dedicated publisher, plus the subscribers; only the fan-out scenarios, `fanout`, have those).
pub fn connections(executor: &Executor, settings: &Settings, fanout: bool) -> u64 {
    if !fanout {
        return u64::from(executor.max_vus());
    }
    let senders = match settings.publishers {
        0 => executor.max_vus(),
        publishers => publishers,
    };
    u64::from(senders) + u64::from(settings.subscribers)
}

/// Fewest workers that keep each under `limit` open files for `connections` in all.
pub fn workers_needed(connections: u64, limit: u64) -> u32 {
    let room = limit.saturating_sub(OPEN_FILES_RESERVE).max(1);
    u32::try_from(connections.div_ceil(room)).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn shares_add_up_to_the_whole_and_offsets_follow_them() {
        for (total, workers) in [(10, 3), (2, 5), (50_000, 3), (0, 2)] {
            let parts: Vec<u32> = (0..workers).map(|w| share(total, w, workers)).collect();
            assert_eq!(parts.iter().sum::<u32>(), total, "{total} over {workers}");
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
            for w in 0..workers {
                assert_eq!(offset(total, w, workers), parts[..w as usize].iter().sum::<u32>());
            }
        }
    }

    #[test]
    fn an_arrival_rate_is_divided_exactly_and_every_worker_keeps_a_vu() {
        let whole = Executor::ConstantArrivalRate {
            rate: 100.0,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            pre_allocated_vus: 1,
            max_vus: Some(5),
        };
        let parts: Vec<Executor> = (0..2).map(|w| executor(&whole, w, 2)).collect();
        let total: u64 = parts.iter().map(|p| p.total_iterations().unwrap()).sum();
        assert_eq!(total, whole.total_iterations().unwrap());
        assert_eq!((parts[0].vus_at(Duration::ZERO), parts[1].vus_at(Duration::ZERO)), (1, 1));
        assert_eq!((parts[0].max_vus(), parts[1].max_vus()), (3, 2));
    }

    #[test]
    fn ramps_split_their_targets() {
        let stage = |target| Stage { duration: Duration::from_secs(10), target };
        let whole = Executor::RampingVus { start_vus: 3, stages: vec![stage(100.0), stage(0.0)] };
        let parts: Vec<Executor> = (0..3).map(|w| executor(&whole, w, 3)).collect();
        let at = |t| parts.iter().map(|p| p.vus_at(Duration::from_secs(t))).sum::<u32>();
        assert_eq!((at(0), at(10)), (3, 100));
        let rates = Executor::RampingArrivalRate {
            start_rate: 0.0,
            time_unit: Duration::from_secs(1),
            stages: vec![stage(90.0)],
            pre_allocated_vus: 2,
            max_vus: None,
        };
        let part = executor(&rates, 2, 3);
        assert_eq!(part.total_iterations(), Some(150));
        assert_eq!(part.max_vus(), 1);
    }

    #[test]
    fn subscribers_are_numbered_across_workers() {
        let whole = Settings { subscribers: 5, ..Settings::default() };
        let vus = Executor::ConstantVus { vus: 4, duration: Duration::from_secs(1) };
        let second = settings(&whole, &vus, 1, 2);
        assert_eq!(second.subscribers, 2);
        assert_eq!(second.slice, Slice { worker: 1, workers: 2, vu_offset: 2, subscriber_offset: 3 });
        assert_eq!(second.slice.sequence(10), 21);
    }

    #[test]
    fn fifty_thousand_connections_need_three_workers_under_twenty_thousand_files() {
        assert_eq!(workers_needed(50_000, 20_000), 3);
        assert_eq!(workers_needed(19_800, 20_000), 1);
        assert_eq!(workers_needed(0, 20_000), 1);
    }
}
