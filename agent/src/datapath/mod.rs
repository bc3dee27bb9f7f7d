//! Loading, attaching and pinning the eBPF programs; typed access to their maps.
//!
//! Pin layout under the agent's bpffs directory (`pin_dir`, e.g. `/sys/fs/bpf/weft`):
//!
//! ```text
//! <pin_dir>/ENDPOINTS4              hash map, local pod IPv4 -> delivery (reused across restarts)
//! <pin_dir>/DROP_STATS              per-CPU array, drops by DropReason number
//! <pin_dir>/from_pod                the currently loaded from_pod program (replaced on open)
//! <pin_dir>/links/from_pod_<ifname> TCX ingress link of a host-side veth ('.' written as ':')
//! ```
//!
//! The links hold the traffic: while a link pin exists the program stays attached, whether or
//! not an agent runs. A new agent re-opens the maps, loads its program and, on
//! [`Datapath::attach_from_pod`], swaps it into the existing link atomically.

mod attach;
mod bpffs;
mod drop;
mod endpoint;
mod error;
mod object;
mod pinned_maps;

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use dataplane_common::maps::{DROP_STATS, ENDPOINTS4, PROG_FROM_POD};
use dataplane_common::{Endpoint4Key, Endpoint4Value};
use tracing::{debug, info};

pub use attach::{FromPodLink, LINKS_DIR};
pub use endpoint::EndpointEntry;
pub use error::DatapathError;

/// Verdict and output of one `BPF_PROG_TEST_RUN` of a program (see [`Datapath::test_run_from_pod`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (a `TC_ACT_*` verdict).
    pub verdict: u32,
    /// The packet as the program left it.
    pub frame: Vec<u8>,
}

/// The loaded eBPF object, its pinned maps and the tc links it owns.
pub struct Datapath {
    pin_dir: PathBuf,
    ebpf: Ebpf,
    endpoints: HashMap<MapData, Endpoint4Key, Endpoint4Value>,
    drop_stats: PerCpuArray<MapData, u64>,
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

        let endpoints = take_map(&mut ebpf, ENDPOINTS4)?;
        let drop_stats = take_map(&mut ebpf, DROP_STATS)?;
        bpffs::ensure_dir(&pin_dir.join(LINKS_DIR))?;
        info!(pin_dir = %pin_dir.display(), "datapath loaded");
        Ok(Self {
            pin_dir: pin_dir.to_path_buf(),
            ebpf,
            endpoints,
            drop_stats,
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

    /// Run `from_pod` once on `frame` with `BPF_PROG_TEST_RUN` (no interface involved): the
    /// verdict and the packet as the program left it. Maps are the real, pinned ones, so
    /// endpoints and drop counters apply. For tests and `weft` self-checks.
    pub fn test_run_from_pod(&self, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
        use aya::programs::{TestRun, TestRunOptions};

        let prog: &SchedClassifier = as_from_pod(self.ebpf.program(PROG_FROM_POD))?;
        // Room for the frame plus the headroom a program could add.
        let mut out = vec![0u8; frame.len() + 256];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .map_err(|source| DatapathError::Program {
                name: PROG_FROM_POD,
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutput {
            verdict: result.return_value,
            frame: out,
        })
    }
}

fn from_pod_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DatapathError> {
    as_from_pod(ebpf.program_mut(PROG_FROM_POD))
}

/// `from_pod` (as found by `Ebpf::program` or `program_mut`) as a classifier, or why not.
fn as_from_pod<P, C>(program: Option<P>) -> Result<C, DatapathError>
where
    C: TryFrom<P, Error = ProgramError>,
{
    program
        .ok_or(DatapathError::Missing {
            kind: "program",
            name: PROG_FROM_POD,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program {
            name: PROG_FROM_POD,
            source,
        })
}

fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, DatapathError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    M::try_from(map).map_err(|source| DatapathError::Map { name, source })
}
