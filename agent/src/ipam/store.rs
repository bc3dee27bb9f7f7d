//! The persistent IPAM store: one JSON file per node, replaced atomically under `flock`.
//!
//! Layout of the store directory:
//! - `lock`: empty file, held with an exclusive `flock` for every read-modify-write;
//! - `allocations.json`: `{"version":1,"pool":{...}}`, written to a temp file, fsynced and
//!   renamed over the old one, so a crash leaves either the old or the new content.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{IpamError, Pool};
use crate::ids::{AttachmentKey, PodRef};

const FORMAT_VERSION: u32 = 1;
const DATA_FILE: &str = "allocations.json";
const LOCK_FILE: &str = "lock";

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    pool: Pool,
}

/// Handle on a store directory. Cheap; every operation takes the lock for its duration.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, IpamError> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|source| IpamError::Io {
            path: dir.clone(),
            source,
        })?;
        let store = Self { dir };
        store.read_only(|_| Ok(()))?; // fail early on an unreadable or corrupt store
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn allocate(&self, key: &AttachmentKey, cidr: Ipv4Network) -> Result<Ipv4Addr, IpamError> {
        self.modify(|pool| pool.allocate(key, cidr))
    }

    /// Allocate as [`Self::allocate`] and record the pod it goes to.
    pub fn allocate_for(
        &self,
        key: &AttachmentKey,
        cidr: Ipv4Network,
        pod: Option<&PodRef>,
    ) -> Result<Ipv4Addr, IpamError> {
        self.modify(|pool| {
            let ip = pool.allocate(key, cidr)?;
            if let Some(pod) = pod {
                pool.set_owner(ip, pod.clone());
            }
            Ok(ip)
        })
    }

    pub fn release(&self, key: &AttachmentKey) -> Result<Option<Ipv4Addr>, IpamError> {
        self.modify(|pool| Ok(pool.release(key)))
    }

    pub fn find(&self, key: &AttachmentKey) -> Result<Option<Ipv4Addr>, IpamError> {
        self.read_only(|pool| Ok(pool.find(key)))
    }

    /// A snapshot of the whole pool.
    pub fn snapshot(&self) -> Result<Pool, IpamError> {
        self.read_only(|pool| Ok(pool.clone()))
    }

    fn lock(&self) -> Result<Flock<File>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| IpamError::Io {
                path: path.clone(),
                source,
            })?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| IpamError::Io {
            path,
            source: errno.into(),
        })
    }

    fn load(&self) -> Result<Pool, IpamError> {
        let path = self.dir.join(DATA_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pool::default()),
            Err(source) => return Err(IpamError::Io { path, source }),
        };
        let corrupt = |source| IpamError::Corrupt {
            path: path.clone(),
            source,
        };
        // The version first: a newer layout must be reported as such, not as corruption.
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(corrupt)?;
        let found = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(IpamError::Version {
                path,
                found,
                expected: FORMAT_VERSION,
            });
        }
        let disk: OnDisk = serde_json::from_value(value).map_err(corrupt)?;
        Ok(disk.pool)
    }

    fn save(&self, pool: &Pool) -> Result<(), IpamError> {
        let path = self.dir.join(DATA_FILE);
        let tmp = self.dir.join(format!("{DATA_FILE}.tmp"));
        let io = |source| IpamError::Io {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(&OnDisk {
            version: FORMAT_VERSION,
            pool: pool.clone(),
        })
        .expect("pool always serializes");
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    fn read_only<T>(&self, f: impl FnOnce(&Pool) -> Result<T, IpamError>) -> Result<T, IpamError> {
        let _lock = self.lock()?;
        f(&self.load()?)
    }

    fn modify<T>(&self, f: impl FnOnce(&mut Pool) -> Result<T, IpamError>) -> Result<T, IpamError> {
        let _lock = self.lock()?;
        let mut pool = self.load()?;
        let before = pool.clone();
        let out = f(&mut pool)?;
        if pool != before {
            self.save(&pool)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A per-test directory under the system temp dir, removed on drop (also on panic).
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("weft-ipam-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    const NET: &str = "10.200.7.0/24";

    #[test]
    fn allocations_survive_reopen() {
        let dir = TempDir::new("reopen");
        let a = Store::open(&dir.0)
            .unwrap()
            .allocate(&key("a"), NET.parse().unwrap())
            .unwrap();
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.find(&key("a")).unwrap(), Some(a));
        assert_eq!(store.allocate(&key("a"), NET.parse().unwrap()).unwrap(), a);
        assert_eq!(store.release(&key("a")).unwrap(), Some(a));
        assert_eq!(
            Store::open(&dir.0)
                .unwrap()
                .snapshot()
                .unwrap()
                .allocations
                .len(),
            0
        );
    }

    #[test]
    fn corrupt_store_is_a_typed_error_not_a_reset() {
        let dir = TempDir::new("corrupt");
        std::fs::write(dir.0.join(DATA_FILE), b"{not json").unwrap();
        assert!(matches!(
            Store::open(&dir.0),
            Err(IpamError::Corrupt { .. })
        ));
        std::fs::write(dir.0.join(DATA_FILE), br#"{"version":9,"pool":{}}"#).unwrap();
        assert!(matches!(
            Store::open(&dir.0),
            Err(IpamError::Version { found: 9, .. })
        ));
    }

    /// Threads hammering one store through separate handles: every address is unique and the
    /// store ends empty after every owner released.
    #[test]
    fn concurrent_threads_never_share_an_address() {
        let dir = TempDir::new("threads");
        let path = dir.0.clone();
        let per_thread = 25;
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&path).unwrap();
                    (0..per_thread)
                        .map(|i| {
                            store
                                .allocate(&key(&format!("t{t}-{i}")), NET.parse().unwrap())
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(
            unique.len(),
            8 * per_thread,
            "duplicate addresses handed out"
        );
        let store = Store::open(&path).unwrap();
        assert_eq!(store.snapshot().unwrap().allocations.len(), 8 * per_thread);
        for t in 0..8 {
            for i in 0..per_thread {
                assert!(store.release(&key(&format!("t{t}-{i}"))).unwrap().is_some());
            }
        }
        assert!(store.snapshot().unwrap().allocations.is_empty());
    }

    const WORKER_ENV: &str = "WEFT_IPAM_TEST_WORKER";

    /// Not a test by itself: the body of the processes spawned by
    /// `concurrent_processes_never_share_an_address`.
    #[test]
    #[ignore = "worker process for concurrent_processes_never_share_an_address"]
    fn ipam_process_worker() {
        let spec = std::env::var(WORKER_ENV).expect("run only as a worker");
        let (dir, tag) = spec.split_once(';').unwrap();
        let store = Store::open(dir).unwrap();
        for i in 0..40 {
            let k = key(&format!("{tag}-{i}"));
            store.allocate(&k, NET.parse().unwrap()).unwrap();
            if i % 2 == 0 {
                store.release(&k).unwrap().expect("own address vanished");
            }
        }
    }

    /// Separate processes (the real concurrency of CNI plugins and a restarted agent) sharing
    /// one store: the flock keeps the file consistent, no address is handed out twice.
    #[test]
    fn concurrent_processes_never_share_an_address() {
        let dir = TempDir::new("procs");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..6)
            .map(|p| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "ipam::store::tests::ipam_process_worker",
                        "--ignored",
                        "--quiet",
                    ])
                    .env(WORKER_ENV, format!("{};p{p}", dir.0.display()))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "a worker process failed");
        }
        let pool = Store::open(&dir.0).unwrap().snapshot().unwrap();
        // Each worker keeps its 20 odd-numbered allocations.
        assert_eq!(pool.allocations.len(), 6 * 20);
        let owners: HashSet<_> = pool.allocations.values().collect();
        assert_eq!(owners.len(), 6 * 20, "one owner holds two addresses");
        for (p, i) in (0..6).flat_map(|p| (1..40).step_by(2).map(move |i| (p, i))) {
            assert!(
                owners.contains(&key(&format!("p{p}-{i}"))),
                "p{p}-{i} lost its address"
            );
        }
    }
}
