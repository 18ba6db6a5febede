//! CPU time of processes and of the whole machine, read from `/proc`.
//!
//! A process's CPU time is `utime + stime` from `/proc/PID/stat` (fields 14 and 15), which
//! the kernel keeps for the whole thread group, threads that already exited included. It is
//! counted in clock ticks (`getconf CLK_TCK`, 100 on Linux), so it has a 10 ms resolution:
//! measure over windows of seconds. The machine's busy time comes from the `cpu` line of
//! `/proc/stat`, in the same ticks.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::rss::Process;

/// Clock ticks per second of `/proc` CPU counters.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

impl Process {
    fn stat_path(self) -> PathBuf {
        match self {
            Self::This => PathBuf::from("/proc/self/stat"),
            Self::Pid(pid) => PathBuf::from(format!("/proc/{pid}/stat")),
        }
    }

    /// User plus system CPU time consumed so far, in clock ticks.
    pub fn cpu_ticks(self) -> anyhow::Result<u64> {
        let path = self.stat_path();
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        parse_stat_ticks(&stat).with_context(|| format!("{} has no utime/stime", path.display()))
    }
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state (field 3) is the first; utime and stime are fields 14 and 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total time of all CPUs together, in clock ticks, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub total: u64,
}

impl MachineTicks {
    pub fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        parse_machine(&stat).context("/proc/stat has no cpu line")
    }
}

fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // part of user time.
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some(MachineTicks { busy: total.saturating_sub(idle), total })
}

/// Converts ticks to a duration.
pub fn ticks_to_duration(ticks: u64, ticks_per_second: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_second.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_found_after_an_odd_command_name() {
        let stat = "1234 (tokio (worker) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 99 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 20 1 4 0 0 0\ncpu0 50 2 25 400 10 0 2 0 0 0\n";
        assert_eq!(parse_machine(stat), Some(MachineTicks { busy: 160, total: 980 }));
    }

    #[test]
    fn this_process_has_used_some_cpu_time_and_ticks_convert() {
        assert!(Process::This.cpu_ticks().is_ok());
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
    }
}
