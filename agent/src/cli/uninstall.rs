//! `weft uninstall`: removes from a node what the agent put there, once the DaemonSet is gone
//! (`kubectl delete -k deploy/`): the CNI configuration first (no new pod is wired by weft),
//! then the CNI binary, the pins (the node devices' tc programs and the cgroup programs are
//! pinned links, so they detach with their pins), the nftables table, weft's routes (`proto
//! 201`), weft's devices (the VXLAN device and the host side of pod veths left by pods that
//! still run, whose tc filters go with them), the IPAM store
//! and the socket directory. Refuses while an agent answers on the socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::agent::options::NodePaths;
use crate::api::{Client, Request};
use crate::cni::naming::HOST_IF_PREFIX;
use crate::datapath::bpffs;
use crate::netlink::{Blocking, MAIN_TABLE};
use crate::routing::table::RTPROT_WEFT;

use super::Output;

/// One thing removed (or found absent).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Removed {
    pub what: &'static str,
    pub item: String,
}

/// Removes a file or directory tree; true if there was one.
fn remove_path(path: &Path) -> anyhow::Result<bool> {
    let r = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    r.with_context(|| format!("removing {}", path.display()))?;
    Ok(true)
}

/// Removes `path` (a file or a tree), noting it in `out` if it was there.
fn remove_file_into(out: &mut Vec<Removed>, what: &'static str, path: PathBuf) -> anyhow::Result<()> {
    if remove_path(&path)? {
        out.push(Removed {
            what,
            item: path.display().to_string(),
        });
    }
    Ok(())
}

/// Whether an agent answers on `socket` (a live agent would put everything back).
fn agent_answers(socket: &Path) -> bool {
    socket.exists()
        && Client::new(socket, Duration::from_secs(2))
            .call(Request::Status)
            .is_ok()
}

/// Removes weft's routes and devices in this network namespace.
fn remove_links_and_routes(out: &mut Vec<Removed>) -> anyhow::Result<()> {
    let rt = Blocking::new()?;
    let nl = rt.connect(None)?;
    rt.run(async {
        for route in nl
            .routes(MAIN_TABLE)
            .await?
            .into_iter()
            .filter(|r| r.protocol == RTPROT_WEFT)
        {
            if nl.delete_route(&route).await? {
                out.push(Removed {
                    what: "route",
                    item: route.to_string(),
                });
            }
        }
        for link in nl.links_with_prefix(HOST_IF_PREFIX).await? {
            if nl.delete_link(&link.name).await? {
                out.push(Removed {
                    what: "device",
                    item: link.name,
                });
            }
        }
        Ok::<_, anyhow::Error>(())
    })
}

/// Removes everything; returns what was there.
pub fn uninstall(o: &NodePaths) -> anyhow::Result<Vec<Removed>> {
    if agent_answers(&o.socket) {
        bail!(
            "an agent answers on {}: remove the DaemonSet first (`kubectl delete -k deploy/`), or it puts everything back",
            o.socket.display()
        );
    }
    let mut out = Vec::new();
    remove_file_into(&mut out, "cni config", o.cni_conf_dir.join(&o.cni_conf_name))?;
    remove_file_into(&mut out, "cni plugin", o.cni_bin_dir.join("weft"))?;
    if o.pin_dir.exists() {
        bpffs::remove_tree(&o.pin_dir)
            .context("removing the pins (tc and cgroup programs, maps)")?;
        out.push(Removed {
            what: "pins",
            item: o.pin_dir.display().to_string(),
        });
    }
    let had_table = crate::egress::exists().context("reading nftables")?;
    crate::egress::remove().context("removing nftables table ip weft")?;
    if had_table {
        out.push(Removed {
            what: "nftables",
            item: "table ip weft".into(),
        });
    }
    remove_links_and_routes(&mut out)?;
    remove_file_into(&mut out, "ipam store", o.state_dir.clone())?;
    remove_file_into(&mut out, "socket", o.socket.clone())?;
    // Its directory too (`/run/weft`), but only when nothing else is in it: the socket may
    // have been put in a shared one.
    if let Some(dir) = o.socket.parent() {
        if std::fs::remove_dir(dir).is_ok() {
            out.push(Removed {
                what: "socket directory",
                item: dir.display().to_string(),
            });
        }
    }
    Ok(out)
}

/// `weft uninstall [-o json]`.
pub fn run(o: &NodePaths, output: Output) -> anyhow::Result<()> {
    let removed = uninstall(o)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&removed)?),
        Output::Table => {
            let rows: Vec<Vec<String>> = removed
                .iter()
                .map(|r| vec![r.what.to_string(), r.item.clone()])
                .collect();
            print!("{}", super::table(&["REMOVED", "ITEM"], &rows));
            println!(
                "weft is uninstalled from this node ({} items removed)",
                removed.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_path_removes_files_and_trees_and_tells_whether_they_were_there() {
        let dir = std::env::temp_dir().join(format!("weft-uninstall-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
        std::fs::write(dir.join("tree/sub/f"), "x").unwrap();
        std::fs::write(dir.join("file"), "x").unwrap();
        assert!(remove_path(&dir.join("file")).unwrap());
        assert!(remove_path(&dir.join("tree")).unwrap());
        assert!(
            !remove_path(&dir.join("tree")).unwrap(),
            "absent is fine, and said"
        );
        assert!(!dir.join("tree").exists() && !dir.join("file").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
