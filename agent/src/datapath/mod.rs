//! Loading, attaching and pinning the eBPF programs; typed access to their maps.
//!
//! Pin layout under the agent's bpffs directory (`pin_dir`, e.g. `/sys/fs/bpf/weft`):
//!
//! ```text
//! <pin_dir>/ENDPOINTS4              hash map, local pod IPv4 -> delivery (reused across restarts)
//! <pin_dir>/DROP_STATS              per-CPU array, drops by DropReason number
//! <pin_dir>/NODE_ROUTES4            LPM trie, other nodes' pod CIDRs -> node (routing reconciler)
//! <pin_dir>/DP_CONFIG               array[1], node-wide settings
//! <pin_dir>/<program>               each loaded program (from_pod, from_netdev, from_overlay,
//!                                   to_overlay), replaced on open
//! <pin_dir>/links/<program>_<ifname> TCX link of an interface ('.' written as ':')
//! ```
//!
//! The links hold the traffic: while a link pin exists the program stays attached, whether or
//! not an agent runs. A new agent re-opens the maps, loads its program and, on
//! [`Datapath::attach_from_pod`], swaps it into the existing link atomically.

mod attach;
mod bpffs;
mod config;
mod drop;
mod endpoint;
mod error;
mod node_routes;
mod object;
mod pinned_maps;
mod programs;
mod stats;

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use dataplane_common::maps::{DP_CONFIG, DROP_STATS, ENDPOINTS4, NODE_ROUTES4};
use dataplane_common::{DpConfig, Endpoint4Key, Endpoint4Value};
use tracing::{debug, info};

pub use attach::{FromPodLink, LINKS_DIR};
pub use config::DatapathSettings;
pub use endpoint::EndpointEntry;
pub use error::DatapathError;
pub use node_routes::{NodeHop, NodeRoutes};
pub use programs::Prog;
pub use stats::{read_stats, Figures};

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
    config: Array<MapData, DpConfig>,
    /// The kernel's id of each program this agent loaded (fixed for the agent's lifetime),
    /// indexed by [`Prog::index`].
    prog_ids: [u32; Prog::ALL.len()],
    /// Reader of the programs' aya-log ring buffer, until the agent takes it to poll.
    logger: Option<BpfLogger>,
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

        let endpoints = take_map(&mut ebpf, ENDPOINTS4)?;
        let drop_stats = take_map(&mut ebpf, DROP_STATS)?;
        let mut config = take_map(&mut ebpf, DP_CONFIG)?;
        config::write(&mut config, settings)?;
        // NODE_ROUTES4 stays pinned for its own writer (`NodeRoutes::open`).
        drop(ebpf.take_map(NODE_ROUTES4));
        bpffs::ensure_dir(&pin_dir.join(LINKS_DIR))?;
        info!(pin_dir = %pin_dir.display(), ?settings, "datapath loaded");
        Ok(Self {
            pin_dir: pin_dir.to_path_buf(),
            ebpf,
            endpoints,
            drop_stats,
            config,
            prog_ids,
            logger,
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

    /// The programs' log reader, for a task that polls it (once; `None` afterwards).
    pub fn take_logger(&mut self) -> Option<BpfLogger> {
        self.logger.take()
    }

    /// The bpffs directory holding this datapath's pins.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Run `from_pod` once on `frame` with `BPF_PROG_TEST_RUN` (no interface involved): the
    /// verdict and the packet as the program left it. Maps are the real, pinned ones, so
    /// endpoints and drop counters apply. For tests and `weft` self-checks.
    pub fn test_run_from_pod(&self, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
        self.test_run(Prog::FromPod, frame)
    }

    /// Run one program once on `frame` with `BPF_PROG_TEST_RUN` (see [`Self::test_run_from_pod`]).
    pub fn test_run(&self, which: Prog, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
        use aya::programs::{TestRun, TestRunOptions};

        let prog: &SchedClassifier = as_classifier(which, self.ebpf.program(which.name()))?;
        // Room for the frame plus the headroom a program could add.
        let mut out = vec![0u8; frame.len() + 256];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .map_err(|source| DatapathError::Program {
                name: which.name(),
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutput {
            verdict: result.return_value,
            frame: out,
        })
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
    prog.load().map_err(prog_err)?;
    let prog_pin = pin_dir.join(which.name());
    bpffs::remove_pin(&prog_pin)?;
    prog.pin(&prog_pin).map_err(|source| DatapathError::Pin {
        path: prog_pin.clone(),
        source,
    })?;
    Ok(prog.info().map_err(prog_err)?.id())
}

fn classifier_mut(ebpf: &mut Ebpf, which: Prog) -> Result<&mut SchedClassifier, DatapathError> {
    as_classifier(which, ebpf.program_mut(which.name()))
}

/// The program `which` (as found by `Ebpf::program` or `program_mut`) as a classifier, or why
/// not.
fn as_classifier<P, C>(which: Prog, program: Option<P>) -> Result<C, DatapathError>
where
    C: TryFrom<P, Error = ProgramError>,
{
    program
        .ok_or(DatapathError::Missing {
            kind: "program",
            name: which.name(),
        })?
        .try_into()
        .map_err(|source| DatapathError::Program {
            name: which.name(),
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
