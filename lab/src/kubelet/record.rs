//! Pod records on disk (`<state_dir>/pods/<ns>_<name>/`): what `lab exec` and `lab logs` read,
//! and what a restarted stand-in uses to clean up after its predecessor.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// One pod that this node runs (or ran until the stand-in stopped).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Name under /run/netns, empty if host network.
    pub netns: String,
    pub host_network: bool,
    pub ip: Option<Ipv4Addr>,
    /// The main (first) container's log.
    pub log: PathBuf,
    /// The main container's current process, if it runs.
    pub pid: Option<u32>,
    /// Every container of the pod, in spec order (what `kubectl exec -c NAME` enters).
    #[serde(default)]
    pub containers: Vec<ContainerRecord>,
}

/// One container of a recorded pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// Its current process, if it runs.
    pub pid: Option<u32>,
    /// PATH of its image.
    pub path_env: String,
    /// Programs of its image that shadow the machine's (busybox applets), if any.
    pub image_bin_dir: Option<PathBuf>,
}

/// Sandbox details kept beside the record (not part of the public record).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SandboxRecord {
    /// 64-hex sandbox ("infra container") id used as CNI_CONTAINERID.
    pub id: String,
    /// The sandbox ("pause") process holding the pod's mount and UTS namespaces.
    pub pause_pid: Option<u32>,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22), to rule out reuse.
    pub pause_start: Option<u64>,
    /// PATH of the main container's image, for `lab exec`.
    pub path_env: String,
    /// Name of the default CNI network the pod was attached to (for DEL after a restart).
    pub network: Option<String>,
    /// Inodes of the sandbox's net and UTS namespaces: every process of the pod is in them,
    /// which finds the pod's processes even after its netns mount is gone.
    #[serde(default)]
    pub net_ns_inode: Option<u64>,
    #[serde(default)]
    pub uts_ns_inode: Option<u64>,
}

/// The directory of one pod.
pub fn pod_dir(state_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    state_dir.join("pods").join(format!("{namespace}_{name}"))
}

/// Writes a record atomically (write + rename), so readers never see half a file.
pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

pub fn record_path(dir: &Path) -> PathBuf {
    dir.join("record.json")
}

pub fn sandbox_path(dir: &Path) -> PathBuf {
    dir.join("sandbox.json")
}

/// The record of pod `namespace/name` on this node.
pub fn find_pod(state_dir: &Path, namespace: &str, name: &str) -> anyhow::Result<PodRecord> {
    let path = record_path(&pod_dir(state_dir, namespace, name));
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "pod {namespace}/{name} is not running on this node ({})",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

/// All pod records of this node, sorted by namespace and name.
pub fn list_pods(state_dir: &Path) -> anyhow::Result<Vec<PodRecord>> {
    let dir = state_dir.join("pods");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = vec![];
    for entry in entries {
        let path = record_path(&entry?.path());
        match std::fs::read(&path) {
            Ok(text) => out.push(
                serde_json::from_slice(&text)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    out.sort_by(|a: &PodRecord, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// The sandbox details of a pod, if recorded.
pub fn read_sandbox(dir: &Path) -> Option<SandboxRecord> {
    serde_json::from_slice(&std::fs::read(sandbox_path(dir)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::testutil::tempdir;

    #[test]
    fn records_round_trip_and_list_sorted() {
        let state = tempdir("wk-rec");
        assert!(list_pods(&state).unwrap().is_empty());
        for (ns, name, ip) in [
            (
                "kube-system",
                "coredns-1",
                Some(Ipv4Addr::new(10, 200, 1, 3)),
            ),
            ("default", "web", None),
        ] {
            let dir = pod_dir(&state, ns, name);
            std::fs::create_dir_all(&dir).unwrap();
            let rec = PodRecord {
                namespace: ns.into(),
                name: name.into(),
                uid: "u".into(),
                netns: format!("wl-n1-{name}"),
                host_network: false,
                ip,
                log: dir.join("c.log"),
                pid: Some(42),
                containers: vec![],
            };
            save(&record_path(&dir), &rec).unwrap();
        }
        let all = list_pods(&state).unwrap();
        assert_eq!(
            all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["web", "coredns-1"]
        );
        assert_eq!(
            find_pod(&state, "kube-system", "coredns-1").unwrap().ip,
            Some(Ipv4Addr::new(10, 200, 1, 3))
        );
        let err = find_pod(&state, "default", "nope").unwrap_err().to_string();
        assert!(
            err.contains("default/nope is not running on this node"),
            "{err}"
        );
        std::fs::remove_dir_all(&state).unwrap();
    }
}
