//! The kernel's run-time statistics of this agent's eBPF programs (runs and nanoseconds per
//! program, counted while `BPF_ENABLE_STATS` is held), for `weft bpf-stats`.

use std::os::fd::OwnedFd;

use aya::sys::{enable_stats, Stats};
use dataplane_common::maps::PROG_NETDEV_LB;

use super::{Datapath, DatapathError, Prog, SOCK_PROGRAMS};
use crate::api::ProgStatRow;

/// Switch the kernel's run-time statistics on for as long as the returned descriptor lives
/// (they cost two clock reads per program run, so they are off by default).
pub fn enable() -> Result<OwnedFd, DatapathError> {
    enable_stats(Stats::RunTime).map_err(|e| DatapathError::Stats(e.io_error))
}

impl Datapath {
    /// Runs and run time of each program this agent loaded, as the kernel counts them.
    pub fn run_stats(&self) -> Result<Vec<ProgStatRow>, DatapathError> {
        let names = Prog::ALL
            .iter()
            .map(|p| p.name())
            .chain([PROG_NETDEV_LB])
            .chain(SOCK_PROGRAMS);
        let mut rows = Vec::new();
        for name in names {
            let Some(prog) = self.ebpf.program(name) else {
                return Err(DatapathError::Missing { kind: "program", name });
            };
            let info = prog
                .info()
                .map_err(|source| DatapathError::Program { name, source })?;
            rows.push(ProgStatRow {
                program: name.to_string(),
                id: info.id(),
                runs: info.run_count(),
                run_ns: info.run_time().as_nanos() as u64,
            });
        }
        Ok(rows)
    }
}
