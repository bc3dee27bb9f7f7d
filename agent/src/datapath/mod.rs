//! Loading, attaching and pinning the eBPF programs; typed access to their maps.
//!
//! Pin layout under the agent's bpffs directory (`pin_dir`, e.g. `/sys/fs/bpf/weft`):
//!
//! ```text
//! <pin_dir>/ENDPOINTS4              hash map, local pod IPv4 -> delivery (reused across restarts)
//! <pin_dir>/DROP_STATS              per-CPU array, drops by DropReason number
//! <pin_dir>/from_pod                the currently loaded from_pod program (replaced on open)
//! <pin_dir>/links/from_pod_<ifname> TCX ingress link of a host-side veth ('.' written as ':')
//! <pin_dir>/LB4_SERVICES, LB4_SLOTS, LB4_BACKENDS, LB4_REVNAT    Service maps (agent-written)
//! <pin_dir>/LB4_AFFINITY, LB4_SOCK_REVNAT, CT4                   datapath-written LRU maps
//! <pin_dir>/links/sock4_<hook>_cg<id> socket-LB link of a cgroup v2 directory (its inode)
//! ```
//!
//! The links hold the traffic: while a link pin exists the program stays attached, whether or
//! not an agent runs. A new agent re-opens the maps, loads its program and, on
//! [`Datapath::attach_from_pod`], swaps it into the existing link atomically.

mod attach;
mod bpffs;
mod ct;
mod drop;
mod endpoint;
mod error;
pub mod lb;
mod object;
mod pinned_maps;
mod sock;
mod test_run;

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use dataplane_common::maps::{
    CT4, DROP_STATS, ENDPOINTS4, LB4_STATS, PROG_FROM_POD, PROG_NETDEV_LB,
};
use dataplane_common::{Ct4Key, Ct4Value, Endpoint4Key, Endpoint4Value};
use tracing::{debug, info};

pub use attach::{FromPodLink, LINKS_DIR};
pub use ct::CtEntry;
pub use endpoint::EndpointEntry;
pub use error::DatapathError;
pub use sock::{SockLbState, SOCK_PROGRAMS};
pub use test_run::TestRunOutput;

/// The loaded eBPF object, its pinned maps and the tc links it owns.
pub struct Datapath {
    pin_dir: PathBuf,
    ebpf: Ebpf,
    endpoints: HashMap<MapData, Endpoint4Key, Endpoint4Value>,
    drop_stats: PerCpuArray<MapData, u64>,
    lb_stats: PerCpuArray<MapData, u64>,
    ct: HashMap<MapData, Ct4Key, Ct4Value>,
    lb_maps: lb::LbMaps,
    /// The only writer of the Service maps.
    lb: lb::Reconciler,
    /// The kernel's id of the `from_pod` this agent loaded (fixed for the agent's lifetime).
    from_pod_id: u32,
}

impl Datapath {
    /// Load the embedded object; reuse maps already pinned under `pin_dir` (else create and pin
    /// them there); programs/links also pinned there so an agent restart keeps traffic.
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        bpffs::ensure_dir(pin_dir)?;
        pinned_maps::check_compatible(pin_dir)?;

        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(object::bytes())?;

        let prog = from_pod_mut(&mut ebpf)?;
        prog.load().map_err(|source| DatapathError::Program {
            name: PROG_FROM_POD,
            source,
        })?;
        let prog_pin = pin_dir.join(PROG_FROM_POD);
        bpffs::remove_pin(&prog_pin)?;
        prog.pin(&prog_pin).map_err(|source| DatapathError::Pin {
            path: prog_pin.clone(),
            source,
        })?;
        let from_pod_id = prog
            .info()
            .map_err(|source| DatapathError::Program {
                name: PROG_FROM_POD,
                source,
            })?
            .id();

        // Loaded (and so verified) at every start even when unused: the uplink's Service path
        // and the socket hooks must not wait for their first use to find a verifier error.
        let netdev: &mut SchedClassifier = as_classifier(ebpf.program_mut(PROG_NETDEV_LB), PROG_NETDEV_LB)?;
        netdev.load().map_err(|source| DatapathError::Program {
            name: PROG_NETDEV_LB,
            source,
        })?;
        for name in SOCK_PROGRAMS {
            sock::sock_program(&mut ebpf, name)?
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }

        let endpoints = take_map(&mut ebpf, ENDPOINTS4)?;
        let drop_stats = take_map(&mut ebpf, DROP_STATS)?;
        let ct = take_map(&mut ebpf, CT4)?;
        let lb_stats = take_map(&mut ebpf, LB4_STATS)?;
        let mut lb_maps = lb::LbMaps::take(&mut ebpf)?;
        let lb = lb::Reconciler::resume(&mut lb_maps)?;
        bpffs::ensure_dir(&pin_dir.join(LINKS_DIR))?;
        info!(pin_dir = %pin_dir.display(), "datapath loaded");
        Ok(Self {
            pin_dir: pin_dir.to_path_buf(),
            ebpf,
            endpoints,
            drop_stats,
            lb_stats,
            ct,
            lb_maps,
            lb,
            from_pod_id,
        })
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

fn from_pod_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DatapathError> {
    as_classifier(ebpf.program_mut(PROG_FROM_POD), PROG_FROM_POD)
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
