//! `CT4` from user space: the flows the datapath translated, for `weft ct list` and metrics.

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapError};
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
/// Each candidate of the walk is read again and deleted at once if still expired: a flow that
/// came back (or a new flow that took the same key) since the walk keeps its entry. What remains
/// is the few microseconds between that read and the delete, as in Cilium's GC.
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
            Ok(v) if ct4_expired(v.last_seen_ns, v.flags, k.proto, monotonic_ns()) => {
                removed += usize::from(remove(ct, &k)?);
            }
            Ok(_) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(removed)
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
