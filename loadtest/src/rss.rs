//! Resident memory of a process, read from `/proc/PID/status`.
//!
//! `VmRSS` is what the benchmark reports; `RssAnon` (heap, stacks) is printed beside it
//! because it excludes the file-backed pages of the executable, which do not grow with
//! connections.

use std::path::PathBuf;

use anyhow::Context;

/// Resident memory of one process at one moment, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    pub total_kib: u64,
    pub anon_kib: u64,
}

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    This,
    Pid(u32),
}

impl Process {
    fn status_path(self) -> PathBuf {
        match self {
            Self::This => PathBuf::from("/proc/self/status"),
            Self::Pid(pid) => PathBuf::from(format!("/proc/{pid}/status")),
        }
    }

    /// Reads the process's current resident memory.
    pub fn rss(self) -> anyhow::Result<Rss> {
        let path = self.status_path();
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        parse_status(&status).with_context(|| format!("{} has no VmRSS line", path.display()))
    }
}

fn parse_status(status: &str) -> Option<Rss> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
    };
    let total_kib = field("VmRSS")?;
    Some(Rss { total_kib, anon_kib: field("RssAnon").unwrap_or(total_kib) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_and_rss_anon_are_read_in_kib() {
        let status = "Name:\tgateway\nVmHWM:\t   9000 kB\nVmRSS:\t    8192 kB\nRssAnon:\t    4096 kB\n";
        assert_eq!(parse_status(status), Some(Rss { total_kib: 8192, anon_kib: 4096 }));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(Process::This.rss().unwrap().total_kib > 0);
    }
}
