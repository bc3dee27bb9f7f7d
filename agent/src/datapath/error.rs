//! Typed errors of the datapath layer, each naming the object it failed on.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use aya::maps::MapError;
use aya::pin::PinError;
use aya::programs::links::LinkError;
use aya::programs::ProgramError;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "{path} is not on a BPF filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`; note \
         that `ip netns exec` remounts /sys and so hides /sys/fs/bpf: use `nsenter --net=…`)"
    )]
    NotBpffs { path: PathBuf },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("switching the kernel's eBPF run-time statistics on (BPF_ENABLE_STATS): {0}")]
    Stats(#[source] std::io::Error),

    #[error("loading the embedded eBPF object: {0}")]
    Load(#[source] Box<aya::EbpfError>),

    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },

    #[error(
        "pinned map {path} does not match this build ({detail}); a layout change needs a new map \
         name, so these are pins of an incompatible build: remove the pin directory (`rm -r`) \
         and restart the agent"
    )]
    PinnedMapMismatch { path: PathBuf, detail: String },

    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },

    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },

    #[error("pinning at {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },

    #[error("interface {ifname} does not exist")]
    NoSuchInterface { ifname: String },

    #[error("invalid interface name {ifname:?} (1-15 bytes, no '/' or NUL)")]
    BadInterfaceName { ifname: String },

    #[error("attaching {program} to {ifname}: {source}")]
    Attach {
        program: &'static str,
        ifname: String,
        #[source]
        source: ProgramError,
    },

    #[error("tc filters of {ifname}: {source}")]
    Tc {
        ifname: String,
        #[source]
        source: crate::netlink::NetlinkError,
    },

    #[error("tc link of {ifname}: {source}")]
    Link {
        ifname: String,
        #[source]
        source: LinkError,
    },

    #[error("invalid endpoint {ip}: {reason}")]
    InvalidEndpoint { ip: Ipv4Addr, reason: &'static str },

    #[error("no free {what} id left")]
    LbIdsExhausted { what: &'static str },

    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<aya::EbpfError> for DatapathError {
    fn from(e: aya::EbpfError) -> Self {
        Self::Load(Box::new(e))
    }
}
