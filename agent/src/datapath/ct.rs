//! `CT4` from user space: the flows the datapath translated, for `weft ct list` and metrics.

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError};
use dataplane_common::ct::{
    ct4_expired, ct4_lifetime_s, Ct4Key, Ct4Value, CT4_F_CLOSING, CT4_F_EXTERNAL, CT4_F_HAIRPIN, CT4_F_SNAT,
    CT4_KIND_POLICY_EGRESS, CT4_KIND_POLICY_INGRESS, CT4_KIND_REPLY, CT4_KIND_SERVICE,
};
use dataplane_common::maps::CT4;

use super::{Datapath, DatapathError};
use crate::api::CtEntry;
use crate::lb::Protocol;

/// A handle on `CT4`.
type Ct4Map = HashMap<MapData, Ct4Key, Ct4Value>;

fn err(source: MapError) -> DatapathError {
    DatapathError::Map { name: CT4, source }
}

/// CLOCK_MONOTONIC in nanoseconds: what `bpf_ktime_get_ns()` stamps entries with.
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into `t`; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Datapath {
    /// Every `CT4` entry, service entries first, then by source.
    pub fn conntrack(&self) -> Result<Vec<CtEntry>, DatapathError> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for item in self.ct.iter() {
            let (k, v) = item.map_err(err)?;
            let protocol = Protocol::from_number(k.proto)
                .map(|p| p.to_string())
                .unwrap_or_else(|| k.proto.to_string());
            let mut flags = Vec::new();
            for (bit, name) in [
                (CT4_F_SNAT, "snat"),
                (CT4_F_CLOSING, "closing"),
                (CT4_F_HAIRPIN, "hairpin"),
                (CT4_F_EXTERNAL, "external"),
            ] {
                if v.flags & bit != 0 {
                    flags.push(name.to_owned());
                }
            }
            let lifetime = ct4_lifetime_s(v.flags, k.proto);
            let idle_s = now.saturating_sub(v.last_seen_ns) / 1_000_000_000;
            let service = k.kind == CT4_KIND_SERVICE;
            out.push(CtEntry {
                kind: match k.kind {
                    CT4_KIND_SERVICE => "service",
                    CT4_KIND_REPLY => "reply",
                    CT4_KIND_POLICY_EGRESS => "policy-egress",
                    CT4_KIND_POLICY_INGRESS => "policy-ingress",
                    _ => "unknown",
                }
                .into(),
                protocol,
                src: Ipv4Addr::from(k.saddr_be),
                sport: u16::from_be(k.sport_be),
                dst: Ipv4Addr::from(k.daddr_be),
                dport: u16::from_be(k.dport_be),
                nat_addr: Ipv4Addr::from(v.addr_be),
                nat_port: u16::from_be(v.port_be),
                snat: (service && v.flags & CT4_F_SNAT != 0).then(|| {
                    (Ipv4Addr::from(v.snat_addr_be), u16::from_be(v.snat_port_be))
                }),
                backend_id: v.backend_id,
                rev_nat_id: v.rev_nat_id,
                flags,
                idle_s,
                expires_in_s: lifetime.saturating_sub(idle_s),
            });
        }
        out.sort_by(|a, b| {
            (a.kind != "service", a.src, a.sport, a.dst, a.dport)
                .cmp(&(b.kind != "service", b.src, b.sport, b.dst, b.dport))
        });
        Ok(out)
    }

    /// Remove every `CT4` entry (established flows then choose a backend again); returns how
    /// many went. For operators (`cilium-dbg bpf ct flush` does the same) and tests.
    pub fn conntrack_flush(&mut self) -> Result<usize, DatapathError> {
        let keys: Vec<_> = self.ct.keys().collect::<Result<_, _>>().map_err(err)?;
        let mut n = 0;
        for k in &keys {
            n += usize::from(remove(&mut self.ct, k)?);
        }
        Ok(n)
    }

    /// Number of `CT4` entries (walks the keys).
    pub fn conntrack_len(&self) -> Result<usize, DatapathError> {
        let mut n = 0;
        for k in self.ct.keys() {
            k.map_err(err)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Delete `k`; `false` if it was already gone (evicted or removed meanwhile).
fn remove(ct: &mut Ct4Map, k: &Ct4Key) -> Result<bool, DatapathError> {
    match ct.remove(k) {
        Ok(()) => Ok(true),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(err(e)),
    }
}

/// Remove the `CT4` entries that have outlived their lifetime (the datapath already treats
/// them as absent; otherwise they wait for LRU eviction and show in `weft ct list` and the
/// occupancy metric as if live). Returns how many went. The agent runs this periodically, as
/// Cilium's conntrack GC does.
///
/// A walk's candidate may have been taken by a new flow since (a client port is reused within
/// seconds), and the datapath writes the new entry under the same key. A delete by key would
/// remove the new flow's entry: its backend's answers then get no reverse NAT. So each candidate
/// is re-read, then taken with one atomic lookup-and-delete, and an entry that turns out live is
/// written back unless the datapath has written the key again meanwhile.
fn sweep(ct: &mut Ct4Map) -> Result<usize, DatapathError> {
    let walked = monotonic_ns();
    let mut candidates = Vec::new();
    for item in ct.iter() {
        let (k, v) = item.map_err(err)?;
        if ct4_expired(v.last_seen_ns, v.flags, k.proto, walked) {
            candidates.push(k);
        }
    }
    let mut removed = 0;
    for k in candidates {
        match ct.get(&k, 0) {
            Ok(v) if ct4_expired(v.last_seen_ns, v.flags, k.proto, monotonic_ns()) => {}
            Ok(_) | Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(err(e)),
        }
        match take(ct, &k)? {
            Some(v) if ct4_expired(v.last_seen_ns, v.flags, k.proto, monotonic_ns()) => removed += 1,
            Some(live) => put_back(ct, &k, &live)?,
            None => {}
        }
    }
    Ok(removed)
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps since Linux 5.14): the value that was deleted,
/// under the bucket's lock, or `None` when the key was gone. aya keeps its wrapper of this
/// command to itself (queues and stacks), hence the syscall here.
fn take(ct: &Ct4Map, k: &Ct4Key) -> Result<Option<Ct4Value>, DatapathError> {
    use std::os::fd::{AsFd, AsRawFd};
    const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut value = Ct4Value::default();
    let attr = MapElemAttr {
        map_fd: IterableMap::map(ct).fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: k as *const Ct4Key as u64,
        value: &mut value as *mut Ct4Value as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for this command; `key` and `value` point at
    // live buffers of the map's key and value sizes for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &attr as *const MapElemAttr,
            size_of::<MapElemAttr>() as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(Some(value));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        return Ok(None);
    }
    Err(err(MapError::SyscallError(aya::sys::SyscallError {
        call: "bpf_map_lookup_and_delete_elem",
        io_error: e,
    })))
}

/// Write back a live entry [`take`] removed, unless the datapath wrote the key again meanwhile
/// (`BPF_NOEXIST`: its entry is newer).
fn put_back(ct: &mut Ct4Map, k: &Ct4Key, v: &Ct4Value) -> Result<(), DatapathError> {
    const BPF_NOEXIST: u64 = 1;
    match ct.insert(k, v, BPF_NOEXIST) {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// [`sweep`] of the `CT4` pinned under `pin_dir`, through a handle of its own. `CT4` is the
/// datapath's map and the sweep deletes only what the datapath already ignores, so it needs no
/// turn on the agent's owner thread, whose queue serves CNI requests: a walk of a full `CT4`
/// (one syscall per entry) must not delay a pod's ADD.
pub fn sweep_pinned(pin_dir: &Path) -> Result<usize, DatapathError> {
    let data = MapData::from_pin(pin_dir.join(CT4)).map_err(|source| DatapathError::Map { name: CT4, source })?;
    let mut ct = Ct4Map::try_from(Map::LruHashMap(data)).map_err(err)?;
    sweep(&mut ct)
}
