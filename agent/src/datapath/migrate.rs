//! Carrying a pinned map's entries across a layout change: a build whose map has another layout
//! pins it under another name (`CT4` / `CT4_V2`), creates its own, copies the entries over
//! (converting each value: the leading bytes both layouts share, the rest zero or dropped),
//! and retires the other build's pin once every link runs its own programs. Works both ways,
//! so an upgrade and the rollback after it both keep established flows.
//!
//! Order, so that no entry is lost: the first copy runs right after this build's maps are
//! created and before any of its programs is attached (the other build's programs still run,
//! on their map). Until every link runs this build's programs, `DP_F_CT4_MIGRATING` makes a
//! `CT4` miss look in the other map (`CT4_PREV` in the programs) and carry the entry over: a
//! handshake whose SYN the other build's program translated and whose SYN-ACK meets this
//! build's keeps its reverse NAT. Then, once the other build's programs have finished the runs
//! they were in when their links switched ([`wait_for_running_programs`]), a second copy takes
//! what they added meanwhile (entries already present keep this build's value), the flag goes,
//! and the other map is emptied and unpinned.

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData, MapError};
use dataplane_common::ct::{Ct4Key, Ct4Value};
use dataplane_common::maps::{CT4, CT4_OTHER_LAYOUT};
use tracing::info;

use super::DatapathError;

/// `BPF_NOEXIST`: insert only where the key is absent.
const NOEXIST: u64 = 1;

/// A pin of another layout found at start, whose entries this build carries over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// This build's map name.
    pub map: &'static str,
    /// The other build's pin.
    pub other: PathBuf,
}

/// What one copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Entries written.
    pub copied: usize,
    /// Entries this build's map already had (kept).
    pub kept: usize,
    /// Entries that could not be written (map full): counted, never silently lost.
    pub failed: usize,
}

/// The other-layout pins under `pin_dir` (before this build's maps are created).
pub fn pending(pin_dir: &Path) -> Vec<Pending> {
    let other = pin_dir.join(CT4_OTHER_LAYOUT.0);
    if other.exists() {
        vec![Pending { map: CT4, other }]
    } else {
        vec![]
    }
}

/// Removes the placeholder the loader pinned under the other layout's name when no map of
/// that layout was there (the programs keep it; it stays empty).
pub fn unpin_placeholder(pin_dir: &Path) -> Result<(), DatapathError> {
    let path = pin_dir.join(CT4_OTHER_LAYOUT.0);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DatapathError::Io { op: "removing the placeholder of the other layout's map", path, source }),
    }
}

/// Wait until every eBPF program run that began before now has ended. Switching a link's
/// program (`bpf_link_update`, a tc filter's replace) does not wait for runs of the old program
/// already under way on other CPUs; those run under RCU, so one grace period covers them, and
/// `membarrier(MEMBARRIER_CMD_GLOBAL)` is the system call that waits for one. Without it, a SYN
/// the other build was translating while the links switched could write its entry to the other
/// map after the second copy had passed, and the handshake's next packet, meeting this build's
/// program with the flag gone, would be balanced afresh (seen once under load: a reset).
pub fn wait_for_running_programs() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier takes no pointers; with this command it only waits.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // Refused on nohz_full kernels: no program run lasts anywhere near this long.
        tracing::warn!(error = %e, "membarrier unavailable; waiting 100 ms for running programs instead");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Copies the entries of `p.other` into this build's pinned map of that name.
pub fn copy(pin_dir: &Path, p: &Pending) -> Result<Copied, DatapathError> {
    // One layout change is known: `CT4`'s values, 32 bytes in this build's predecessor and
    // 40 in the test build, or the reverse.
    const OTHER: usize = CT4_OTHER_LAYOUT.1;
    copy_resized::<Ct4Key, OTHER, { size_of::<Ct4Value>() }>(&p.other, &pin_dir.join(p.map), p.map)
}

/// Empties the other build's map (this build's programs keep a reference to it: nothing must
/// be found there any more) and removes its pin (its programs are gone from every link).
pub fn retire(p: &Pending) -> Result<(), DatapathError> {
    let mut other = open_pinned::<Ct4Key, { CT4_OTHER_LAYOUT.1 }>(&p.other, p.map)?;
    let keys: Vec<Ct4Key> = other.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = other.remove(&k);
    }
    std::fs::remove_file(&p.other).map_err(|source| DatapathError::Io {
        op: "removing the other layout's pin",
        path: p.other.clone(),
        source,
    })
}

/// The hash map pinned at `path`, with values of `N` bytes (aya checks the sizes).
fn open_pinned<K: aya::Pod, const N: usize>(
    path: &Path,
    name: &'static str,
) -> Result<HashMap<MapData, K, [u8; N]>, DatapathError> {
    let err = |source: MapError| DatapathError::Map { name, source };
    let data = MapData::from_pin(path).map_err(err)?;
    HashMap::try_from(Map::LruHashMap(data)).map_err(err)
}

/// Copies every entry of the hash map pinned at `from` (values `FROM` bytes) into the one at
/// `to` (values `TO` bytes): the shared leading bytes, zero after them; present keys are kept
/// (`BPF_NOEXIST`).
fn copy_resized<K: aya::Pod, const FROM: usize, const TO: usize>(
    from: &Path,
    to: &Path,
    name: &'static str,
) -> Result<Copied, DatapathError> {
    let src = open_pinned::<K, FROM>(from, name)?;
    let mut dst = open_pinned::<K, TO>(to, name)?;
    let mut done = Copied::default();
    for item in src.iter() {
        let (k, v) = item.map_err(|source| DatapathError::Map { name, source })?;
        let mut value = [0u8; TO];
        let n = FROM.min(TO);
        value[..n].copy_from_slice(&v[..n]);
        match dst.insert(k, value, NOEXIST) {
            Ok(()) => done.copied += 1,
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => done.kept += 1,
            Err(_) => done.failed += 1,
        }
    }
    info!(from = %from.display(), to = %to.display(), copied = done.copied, kept = done.kept,
          failed = done.failed, "pinned map entries carried over from another layout");
    Ok(done)
}
