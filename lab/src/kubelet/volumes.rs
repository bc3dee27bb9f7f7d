//! Pod volumes, materialised as files under the pod directory (configMap, secret, projected
//! service-account tokens, downwardAPI, emptyDir) or taken from the node (hostPath), and the
//! per-container plan of bind mounts, falling back to rewriting paths in argv where a mount
//! point does not exist on this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, Pod, Secret, ServiceAccount, Volume, VolumeMount,
};
use kube::api::{Api, PostParams};

/// A volume that could not be set up (reported as FailedMount).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: {kind} {name:?} not found")]
    Missing {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("volume {volume:?}: {source}")]
    Api { volume: String, source: kube::Error },
    #[error("volume {volume:?}: {source}")]
    Io {
        volume: String,
        source: std::io::Error,
    },
    #[error("volume {volume:?}: type not supported by the lab kubelet")]
    Unsupported { volume: String },
    #[error("volume mount {mount:?} names no volume of the pod")]
    NoSuchVolume { mount: String },
}

/// Volume name -> directory (or file) on this machine.
pub type Volumes = BTreeMap<String, PathBuf>;

/// Where hostPath volumes come from: the node's filesystem, and the registry of mount points
/// created on the machine.
pub struct HostVolumes<'a> {
    pub fs: &'a super::hostfs::HostFs,
    pub registry: &'a Path,
}

/// Materialises every volume of the pod under `<pod_dir>/volumes/<name>`.
pub async fn materialise(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    host_ip: &str,
    host: &HostVolumes<'_>,
) -> Result<Volumes, VolumeError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out = Volumes::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let path = materialise_one(client, pod, &ns, v, pod_dir, host_ip, host).await?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

async fn materialise_one(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    v: &Volume,
    pod_dir: &Path,
    host_ip: &str,
    host: &HostVolumes<'_>,
) -> Result<PathBuf, VolumeError> {
    let vol = v.name.clone();
    let ioe = |source| VolumeError::Io {
        volume: vol.clone(),
        source,
    };
    if let Some(hp) = &v.host_path {
        let p = host.fs.source(&hp.path);
        if matches!(hp.type_.as_deref(), Some("DirectoryOrCreate")) {
            std::fs::create_dir_all(&p).map_err(ioe)?;
        }
        if p.is_dir() {
            host.fs.expose(&hp.path, &p, host.registry).map_err(ioe)?;
        }
        return Ok(p);
    }
    let dir = pod_dir.join("volumes").join(&v.name);
    // Re-materialise from scratch so a restart never serves stale keys.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(ioe)?;
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    if v.empty_dir.is_some() {
        return Ok(dir);
    } else if let Some(cm) = &v.config_map {
        files = config_map_files(
            client,
            ns,
            &vol,
            &cm.name,
            cm.items.as_deref(),
            cm.optional.unwrap_or(false),
        )
        .await?;
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        files = secret_files(
            client,
            ns,
            &vol,
            &name,
            s.items.as_deref(),
            s.optional.unwrap_or(false),
        )
        .await?;
    } else if let Some(d) = &v.downward_api {
        for item in d.items.iter().flatten() {
            if let Some(f) = &item.field_ref {
                let value =
                    super::env::field_ref(pod, &f.field_path, None, host_ip).unwrap_or_default();
                files.push((item.path.clone(), value.into_bytes()));
            }
        }
    } else if let Some(p) = &v.projected {
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let token = request_token(
                    client,
                    pod,
                    ns,
                    &vol,
                    t.audience.as_deref(),
                    t.expiration_seconds,
                )
                .await?;
                files.push((t.path.clone(), token.into_bytes()));
            }
            if let Some(cm) = &src.config_map {
                files.extend(
                    config_map_files(
                        client,
                        ns,
                        &vol,
                        &cm.name,
                        cm.items.as_deref(),
                        cm.optional.unwrap_or(false),
                    )
                    .await?,
                );
            }
            if let Some(s) = &src.secret {
                files.extend(
                    secret_files(
                        client,
                        ns,
                        &vol,
                        &s.name,
                        s.items.as_deref(),
                        s.optional.unwrap_or(false),
                    )
                    .await?,
                );
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        let value = super::env::field_ref(pod, &f.field_path, None, host_ip)
                            .unwrap_or_default();
                        files.push((item.path.clone(), value.into_bytes()));
                    }
                }
            }
        }
    } else {
        return Err(VolumeError::Unsupported { volume: vol });
    }
    for (rel, data) in files {
        let target = dir.join(rel.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(ioe)?;
        }
        std::fs::write(&target, data).map_err(ioe)?;
    }
    Ok(dir)
}

fn select(data: BTreeMap<String, Vec<u8>>, items: Option<&[KeyToPath]>) -> Vec<(String, Vec<u8>)> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|d| (i.path.clone(), d.clone())))
            .collect(),
        _ => data.into_iter().collect(),
    }
}

/// The ConfigMap or Secret a volume names; `None` when it is missing and the volume is optional.
async fn fetch<K>(
    client: &kube::Client,
    ns: &str,
    vol: &str,
    kind: &'static str,
    name: &str,
    optional: bool,
) -> Result<Option<K>, VolumeError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(obj)) => Ok(Some(obj)),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(VolumeError::Missing {
            volume: vol.into(),
            kind,
            name: name.into(),
        }),
        Err(source) => Err(VolumeError::Api {
            volume: vol.into(),
            source,
        }),
    }
}

async fn config_map_files(
    client: &kube::Client,
    ns: &str,
    vol: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let Some(cm) = fetch::<ConfigMap>(client, ns, vol, "configmap", name, optional).await? else {
        return Ok(vec![]);
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    Ok(select(data, items))
}

async fn secret_files(
    client: &kube::Client,
    ns: &str,
    vol: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let Some(s) = fetch::<Secret>(client, ns, vol, "secret", name, optional).await? else {
        return Ok(vec![]);
    };
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    data.extend(
        s.string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    Ok(select(data, items))
}

/// A bound service-account token for the pod (TokenRequest, as kubelet's token manager asks).
async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    vol: &str,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<String, VolumeError> {
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let resp = api
        .create_token_request(&sa, &PostParams::default(), &req)
        .await
        .map_err(|source| VolumeError::Api {
            volume: vol.into(),
            source,
        })?;
    Ok(resp.status.and_then(|s| s.token).unwrap_or_default())
}

/// How one container sees its volumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountPlan {
    /// Bind mounts (source on this machine, mountPath) made in the container's mount namespace.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Directories created to serve as mount points (a container runtime creates mount points
    /// too): under /run (a tmpfs), or new top-level directories such as `/results`; each is
    /// removed when no mount namespace uses it any more.
    pub mkdirs: Vec<PathBuf>,
    /// mountPath -> source, for paths that cannot be mount points here: argv is rewritten.
    pub rewrites: Vec<(String, String)>,
}

/// Plans the mounts of one container. `exists` tells whether a path exists on this machine.
pub fn plan_mounts(
    mounts: &[VolumeMount],
    volumes: &Volumes,
    exists: impl Fn(&Path) -> bool,
) -> Result<MountPlan, VolumeError> {
    let mut plan = MountPlan::default();
    for m in mounts {
        let src = volumes
            .get(&m.name)
            .ok_or_else(|| VolumeError::NoSuchVolume {
                mount: m.name.clone(),
            })?;
        let src = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => src.join(sub),
            None => src.clone(),
        };
        let target = PathBuf::from(&m.mount_path);
        if src == target {
            continue;
        }
        // The first directory under / of the mount path (`/results` of `/results/x`).
        let top = target.components().take(2).collect::<PathBuf>();
        if exists(&target) {
            plan.binds.push((src, target));
        } else if m.mount_path.starts_with("/run/")
            || m.mount_path.starts_with("/var/run/")
            || !exists(&top)
        {
            // Under /run (a tmpfs), or a directory of its own at the top (an emptyDir at
            // `/results`): the mount point is made, and removed again when unused.
            plan.mkdirs.push(target.clone());
            plan.binds.push((src, target));
        } else {
            plan.rewrites.push((
                m.mount_path.trim_end_matches('/').to_string(),
                src.display().to_string(),
            ));
        }
    }
    Ok(plan)
}

/// Creates a mount point that does not exist on the machine (under /run, a tmpfs), noting in
/// `registry` the directories that were missing so they can be removed when unused.
pub fn create_mount_point(path: &Path, registry: &Path) -> std::io::Result<()> {
    let mut missing = vec![];
    let mut existing = path;
    while !existing.exists() {
        missing.push(existing.file_name().map(PathBuf::from).unwrap_or_default());
        existing = match existing.parent() {
            Some(p) => p,
            None => break,
        };
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    // Record real paths (/var/run is a symlink to /run), outermost first.
    let mut dir = std::fs::canonicalize(existing)?;
    let mut lines = String::new();
    for part in missing.iter().rev() {
        dir.push(part);
        lines.push_str(&format!("{}\n", dir.display()));
    }
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(registry)?
        .write_all(lines.as_bytes())
}

/// Removes the directories `create_mount_point` made, deepest first, where no mount namespace
/// on the machine still mounts anything at or below them and they are empty.
pub fn remove_unused_mount_points(registry: &Path) {
    let Ok(text) = std::fs::read_to_string(registry) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs.dedup();
    let in_use = mount_points_in_use();
    let mut kept = vec![];
    for d in dirs {
        let used = in_use.iter().any(|m| m.starts_with(&d));
        if used || (d.exists() && std::fs::remove_dir(&d).is_err()) {
            kept.push(d);
        }
    }
    if kept.is_empty() {
        let _ = std::fs::remove_file(registry);
    } else {
        kept.reverse();
        let text: String = kept.iter().map(|d| format!("{}\n", d.display())).collect();
        let _ = std::fs::write(registry, text);
    }
}

/// Every mount point of every mount namespace on the machine (one process per namespace).
fn mount_points_in_use() -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let Some(ns) = super::nsexec::ns_inode(&entry.path().join("ns/mnt")) else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(entry.path().join("mountinfo")) else {
            continue;
        };
        out.extend(
            info.lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .map(PathBuf::from),
        );
    }
    out
}

/// Rewrites paths under a rewritten mountPath in one argument (`/etc/coredns/Corefile`,
/// `-conf=/etc/coredns/Corefile`).
pub fn rewrite_arg(arg: &str, rewrites: &[(String, String)]) -> String {
    for (from, to) in rewrites {
        for (i, _) in arg.match_indices(from.as_str()) {
            let at_start = i == 0 || matches!(arg.as_bytes()[i - 1], b'=' | b':' | b' ' | b',');
            let rest = &arg[i + from.len()..];
            if at_start && (rest.is_empty() || rest.starts_with('/')) {
                return format!("{}{to}{rest}", &arg[..i]);
            }
        }
    }
    arg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn coredns_style_mounts_bind_or_rewrite() {
        let vols: Volumes = [
            (
                "config-volume".to_string(),
                PathBuf::from("/s/pods/kube-system_coredns/volumes/config-volume"),
            ),
            (
                "kube-api-access-x".to_string(),
                PathBuf::from("/s/pods/kube-system_coredns/volumes/kube-api-access-x"),
            ),
            ("data".to_string(), PathBuf::from("/s/data")),
        ]
        .into();
        let mounts = vec![
            vm("config-volume", "/etc/coredns"),
            vm(
                "kube-api-access-x",
                "/var/run/secrets/kubernetes.io/serviceaccount",
            ),
            vm("data", "/tmp"),
            vm("data", "/results"),
        ];
        let on_machine = ["/tmp", "/etc", "/var", "/var/run"];
        let plan = plan_mounts(&mounts, &vols, |p| on_machine.iter().any(|m| p == Path::new(m))).unwrap();
        assert_eq!(
            plan.binds,
            vec![
                (
                    PathBuf::from("/s/pods/kube-system_coredns/volumes/kube-api-access-x"),
                    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount")
                ),
                (PathBuf::from("/s/data"), PathBuf::from("/tmp")),
                (PathBuf::from("/s/data"), PathBuf::from("/results")),
            ]
        );
        assert_eq!(
            plan.mkdirs,
            vec![
                PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount"),
                PathBuf::from("/results"),
            ]
        );
        assert_eq!(
            plan.rewrites,
            vec![(
                "/etc/coredns".to_string(),
                "/s/pods/kube-system_coredns/volumes/config-volume".to_string()
            )]
        );
        assert!(matches!(
            plan_mounts(&[vm("nope", "/x")], &vols, |_| true),
            Err(VolumeError::NoSuchVolume { .. })
        ));
    }

    #[test]
    fn args_are_rewritten_only_at_path_boundaries() {
        let rw = vec![("/etc/coredns".to_string(), "/v/config".to_string())];
        assert_eq!(
            rewrite_arg("/etc/coredns/Corefile", &rw),
            "/v/config/Corefile"
        );
        assert_eq!(
            rewrite_arg("-conf=/etc/coredns/Corefile", &rw),
            "-conf=/v/config/Corefile"
        );
        assert_eq!(rewrite_arg("/etc/coredns", &rw), "/v/config");
        assert_eq!(rewrite_arg("/etc/corednsx/a", &rw), "/etc/corednsx/a");
        assert_eq!(rewrite_arg("-conf", &rw), "-conf");
    }

    #[test]
    fn created_mount_points_are_recorded_and_removed_when_unused() {
        let tmp = crate::kubelet::testutil::tempdir("wk-mp");
        let registry = tmp.join("host-mount-points");
        let target = tmp.join("secrets/kubernetes.io/serviceaccount");
        create_mount_point(&target, &registry).unwrap();
        assert!(target.is_dir());
        let real = std::fs::canonicalize(&tmp).unwrap();
        let recorded = std::fs::read_to_string(&registry).unwrap();
        assert_eq!(
            recorded,
            format!(
                "{0}/secrets\n{0}/secrets/kubernetes.io\n{0}/secrets/kubernetes.io/serviceaccount\n",
                real.display()
            )
        );
        // An existing directory is not recorded again.
        create_mount_point(&target, &registry).unwrap();
        assert_eq!(std::fs::read_to_string(&registry).unwrap(), recorded);
        // A file someone put there keeps its directory (and the parents).
        std::fs::write(target.join("token"), "x").unwrap();
        remove_unused_mount_points(&registry);
        assert!(target.is_dir() && registry.exists());
        std::fs::remove_file(target.join("token")).unwrap();
        remove_unused_mount_points(&registry);
        assert!(
            !tmp.join("secrets").exists(),
            "all three created directories removed"
        );
        assert!(!registry.exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn items_select_and_rename_keys() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("Corefile".to_string(), b"x".to_vec()),
            ("other".into(), b"y".to_vec()),
        ]
        .into();
        let items = vec![KeyToPath {
            key: "Corefile".into(),
            path: "Corefile.conf".into(),
            mode: None,
        }];
        assert_eq!(
            select(data.clone(), Some(&items)),
            vec![("Corefile.conf".to_string(), b"x".to_vec())]
        );
        assert_eq!(select(data, None).len(), 2);
    }
}
