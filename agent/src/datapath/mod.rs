//! Loading, attaching and pinning the eBPF programs; typed access to their maps.
//!
//! Pin layout under the agent's bpffs directory (`pin_dir`, e.g. `/sys/fs/bpf/weft`):
//!
//! ```text
//! <pin_dir>/ENDPOINTS4              hash map, local pod IPv4 -> delivery (reused across restarts)
//! <pin_dir>/DROP_STATS              per-CPU array, drops by DropReason number
//! <pin_dir>/NODE_ROUTES4            LPM trie, other nodes' pod CIDRs -> node (routing reconciler)
//! <pin_dir>/DP_CONFIG               array[1], node-wide settings
//! <pin_dir>/LB4_SERVICES, LB4_SLOTS, LB4_BACKENDS, LB4_REVNAT    Service maps (agent-written)
//! <pin_dir>/LB4_AFFINITY, LB4_SOCK_REVNAT, CT4                   datapath-written LRU maps
//! <pin_dir>/IPCACHE4, POLICY4, POLICY_EP4                         NetworkPolicy (policy reconciler)
//! <pin_dir>/<program>               each tc program (from_pod, from_netdev, from_overlay,
//!                                   to_overlay), replaced on open
//! <pin_dir>/links/<program>_<ifname> TCX link of an interface ('.' written as ':')
//! <pin_dir>/links/sock4_<hook>_cg<id> socket-LB link of a cgroup v2 directory (its inode)
//! ```
//!
//! The links hold the traffic: while a link pin exists the program stays attached, whether or
//! not an agent runs. A new agent re-opens the maps, loads its programs and, on
//! [`Datapath::attach`], swaps them into the existing links atomically.

mod attach;
pub(crate) mod bpffs;
mod config;
mod ct;
mod drop;
mod endpoint;
mod error;
pub mod lb;
mod node_routes;
mod object;
mod migrate;
mod pinned_maps;
pub mod policy;
mod programs;
pub mod run_stats;
mod sock;
mod stats;
mod test_run;

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use dataplane_common::maps::{
    CT4, DP_CONFIG, DROP_STATS, ENDPOINTS4, IPCACHE4, LB4_STATS, NODE_ROUTES4, POLICY4, POLICY_EP4,
    PROG_NETDEV_LB,
};
use dataplane_common::{Ct4Key, Ct4Value, DpConfig, Endpoint4Key, Endpoint4Value};
use tracing::{debug, info};

pub use attach::{FromPodLink, LINKS_DIR};
pub use config::{DatapathSettings, ServiceHandoff};
pub use ct::sweep_pinned as conntrack_sweep_pinned;
pub use endpoint::EndpointEntry;
pub use error::DatapathError;
pub use node_routes::{NodeHop, NodeRoutes};
pub use policy::{PolicyEndpoint, PolicyMaps, PolicyReconciler};
pub use programs::Prog;
pub use sock::{SockLbState, SOCK_PROGRAMS};
pub use stats::{read_stats, Figures};
pub use test_run::TestRunOutput;

/// The loaded eBPF object, its pinned maps and the tc links it owns.
pub struct Datapath {
    pin_dir: PathBuf,
    ebpf: Ebpf,
    endpoints: HashMap<MapData, Endpoint4Key, Endpoint4Value>,
    drop_stats: PerCpuArray<MapData, u64>,
    config: Array<MapData, DpConfig>,
    lb_stats: PerCpuArray<MapData, u64>,
    ct: HashMap<MapData, Ct4Key, Ct4Value>,
    lb_maps: lb::LbMaps,
    /// The only writer of the Service maps.
    lb: lb::Reconciler,
    /// The kernel's id of each tc program this agent loaded (fixed for the agent's lifetime),
    /// indexed by [`Prog::index`].
    prog_ids: [u32; Prog::ALL.len()],
    /// Reader of the programs' aya-log ring buffer, until the agent takes it to poll.
    logger: Option<BpfLogger>,
    /// Maps of another layout found pinned at start, until [`Datapath::finish_migrations`].
    migrations: Vec<migrate::Pending>,
}

/// Reader of the eBPF programs' log lines (aya-log), forwarding them to the `log` facade.
pub type BpfLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

impl Datapath {
    /// Load the embedded object with the default settings (eBPF host routing, no tunnel).
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        Self::open_with(pin_dir, &DatapathSettings::default())
    }

    /// Load the embedded object; reuse maps already pinned under `pin_dir` (else create and pin
    /// them there); programs/links also pinned there so an agent restart keeps traffic. The
    /// settings are written before any program of this agent is attached anywhere.
    pub fn open_with(pin_dir: &Path, settings: &DatapathSettings) -> Result<Self, DatapathError> {
        bpffs::ensure_dir(pin_dir)?;
        pinned_maps::check_compatible(pin_dir)?;
        let migrations = migrate::pending(pin_dir);

        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(object::bytes())?;
        // Take the log ring buffer before the programs load: the logger holds the map's fd,
        // which the verifier needs while loading (a logger dropped too early fails the load).
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "eBPF log lines unavailable");
                None
            }
        };

        let mut prog_ids = [0; Prog::ALL.len()];
        for which in Prog::ALL {
            prog_ids[which.index()] = load_and_pin(&mut ebpf, which, pin_dir)?;
        }
        // Loaded (and so verified) at every start even when unused: the test entry of the
        // uplink's Service path and the socket hooks must not wait for their first use to find
        // a verifier error.
        let netdev: &mut SchedClassifier =
            as_classifier(ebpf.program_mut(PROG_NETDEV_LB), PROG_NETDEV_LB)?;
        load_retrying(|| netdev.load()).map_err(|source| DatapathError::Program {
            name: PROG_NETDEV_LB,
            source,
        })?;
        for name in SOCK_PROGRAMS {
            let prog = sock::sock_program(&mut ebpf, name)?;
            load_retrying(|| prog.load()).map_err(|source| DatapathError::Program { name, source })?;
        }

        let endpoints = take_map(&mut ebpf, ENDPOINTS4)?;
        let drop_stats = take_map(&mut ebpf, DROP_STATS)?;
        let mut config = take_map(&mut ebpf, DP_CONFIG)?;
        config::write(&mut config, settings, !migrations.is_empty())?;
        if migrations.is_empty() {
            // The loader pinned an empty placeholder for the other layout's map.
            migrate::unpin_placeholder(pin_dir)?;
        }
        // NODE_ROUTES4 and the policy maps stay pinned for their own writers
        // (`NodeRoutes::open`, `PolicyMaps::open`).
        for name in [NODE_ROUTES4, IPCACHE4, POLICY4, POLICY_EP4] {
            drop(ebpf.take_map(name));
        }
        let ct = take_map(&mut ebpf, CT4)?;
        for m in &migrations {
            migrate::copy(pin_dir, m)?;
        }
        let lb_stats = take_map(&mut ebpf, LB4_STATS)?;
        let mut lb_maps = lb::LbMaps::take(&mut ebpf)?;
        let lb = lb::Reconciler::resume(&mut lb_maps)?;
        bpffs::ensure_dir(&pin_dir.join(LINKS_DIR))?;
        info!(pin_dir = %pin_dir.display(), ?settings, "datapath loaded");
        Ok(Self {
            pin_dir: pin_dir.to_path_buf(),
            ebpf,
            endpoints,
            drop_stats,
            config,
            lb_stats,
            ct,
            lb_maps,
            lb,
            prog_ids,
            logger,
            migrations,
        })
    }

    /// After every link runs this build's programs: carries over what the other layout's map
    /// gained meanwhile and removes its pin (see [`migrate`]). Returns the maps migrated.
    pub fn finish_migrations(&mut self) -> Result<Vec<&'static str>, DatapathError> {
        let mut done = vec![];
        let pending = std::mem::take(&mut self.migrations);
        if !pending.is_empty() {
            migrate::wait_for_running_programs();
        }
        for m in &pending {
            migrate::copy(&self.pin_dir, m)?;
        }
        if !pending.is_empty() {
            // No program of the other build runs any more: misses stop looking at its map.
            let settings = self.settings()?;
            config::write(&mut self.config, &settings, false)?;
        }
        for m in pending {
            migrate::retire(&m)?;
            info!(map = m.map, retired = %m.other.display(), "layout migration finished");
            done.push(m.map);
        }
        Ok(done)
    }

    /// The programs' log reader, for a task that polls it (once; `None` afterwards).
    pub fn take_logger(&mut self) -> Option<BpfLogger> {
        self.logger.take()
    }

    /// Remove every pin under `pin_dir` (tests; meant for `weft agent --cleanup`). Removing
    /// the link pins detaches the programs from their interfaces. Ok if `pin_dir` is absent;
    /// refuses to remove anything that is not on bpffs.
    pub fn unpin_all(pin_dir: &Path) -> Result<(), DatapathError> {
        bpffs::remove_tree(pin_dir)?;
        debug!(pin_dir = %pin_dir.display(), "removed all pins");
        Ok(())
    }

    /// The bpffs directory holding this datapath's pins.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
}

/// Load `which` (verifier) and pin it as `<pin_dir>/<name>`, replacing an earlier agent's
/// pin; returns the kernel's program id.
fn load_and_pin(ebpf: &mut Ebpf, which: Prog, pin_dir: &Path) -> Result<u32, DatapathError> {
    let prog = classifier_mut(ebpf, which)?;
    let prog_err = |source| DatapathError::Program {
        name: which.name(),
        source,
    };
    load_retrying(|| prog.load()).map_err(prog_err)?;
    let prog_pin = pin_dir.join(which.name());
    bpffs::remove_pin(&prog_pin)?;
    prog.pin(&prog_pin).map_err(|source| DatapathError::Pin {
        path: prog_pin.clone(),
        source,
    })?;
    Ok(prog.info().map_err(prog_err)?.id())
}

/// Run `load` (a program's `BPF_PROG_LOAD`) again, up to five times in all, while the verifier
/// gives up with `EAGAIN`: it does when a signal reaches the loading thread mid-verification (a
/// child process exiting is enough). libbpf retries the same way.
fn load_retrying(load: impl FnMut() -> Result<(), ProgramError>) -> Result<(), ProgramError> {
    retry_while(5, load, |e| {
        matches!(e, ProgramError::LoadError { io_error, .. }
            if io_error.raw_os_error() == Some(libc::EAGAIN))
    })
}

/// Call `f` until it succeeds, fails with an error `again` does not accept, or has been called
/// `tries` times.
fn retry_while<E>(
    tries: u32,
    mut f: impl FnMut() -> Result<(), E>,
    again: impl Fn(&E) -> bool,
) -> Result<(), E> {
    let mut n = 1;
    loop {
        match f() {
            Err(e) if again(&e) && n < tries => {
                n += 1;
                debug!(try_ = n, "program load interrupted (EAGAIN), trying again");
            }
            other => return other,
        }
    }
}

fn classifier_mut(ebpf: &mut Ebpf, which: Prog) -> Result<&mut SchedClassifier, DatapathError> {
    as_classifier(ebpf.program_mut(which.name()), which.name())
}

/// A tc program (as found by `Ebpf::program` or `program_mut`) as a classifier, or why not.
fn as_classifier<P, C>(program: Option<P>, name: &'static str) -> Result<C, DatapathError>
where
    C: TryFrom<P, Error = ProgramError>,
{
    program
        .ok_or(DatapathError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

pub(crate) fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, DatapathError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    M::try_from(map).map_err(|source| DatapathError::Map { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_interrupted_by_a_signal_is_tried_again_up_to_five_times() {
        let eagain = || std::io::Error::from_raw_os_error(libc::EAGAIN);
        let is_eagain = |e: &std::io::Error| e.raw_os_error() == Some(libc::EAGAIN);
        let mut calls = 0;
        let two_interrupts = retry_while(
            5,
            || {
                calls += 1;
                if calls < 3 {
                    Err(eagain())
                } else {
                    Ok(())
                }
            },
            is_eagain,
        );
        assert!(two_interrupts.is_ok());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let always = retry_while(
            5,
            || {
                calls += 1;
                Err(eagain())
            },
            is_eagain,
        );
        assert!(always.is_err());
        assert_eq!(calls, 5, "gives up after five");

        let mut calls = 0;
        let other = retry_while(
            5,
            || {
                calls += 1;
                Err(std::io::Error::from_raw_os_error(libc::EINVAL))
            },
            is_eagain,
        );
        assert!(other.is_err());
        assert_eq!(calls, 1, "other errors are not retried");
    }
}
