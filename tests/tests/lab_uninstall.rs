//! weft installed on a running cluster and uninstalled again, as a user does it: a one-node lab
//! with the bridge plugin and kube-proxy; weft applied from `deploy/` (its DaemonSet runs from
//! the image `cargo xtask image` writes, loaded onto the node); a pod wired by weft; then
//! `kubectl delete -k` and the clean-up DaemonSet `deploy/uninstall` (`weft uninstall` in its
//! init container). Everything weft puts on a node is listed before install, while weft runs
//! (each must show weft, so the check cannot pass by looking at nothing) and after uninstall,
//! which must equal the listing before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_tests::lab::{eventually, weft_image_archive, Lab};

const STATE: &str = "/run/weft-lab-e2e-uninstall";
const NODE: &str = "node-1";

/// Everything on the node weft may touch, one listing per kind.
fn node_state(lab: &Lab) -> BTreeMap<&'static str, String> {
    let on_node = |cmd: &[&str]| {
        lab.ok(
            &[&["node-exec", NODE, "--"], cmd].concat(),
            Duration::from_secs(30),
        )
    };
    let root = lab.state_dir().join("nodes").join(NODE).join("root");
    let ls = |p: PathBuf| {
        let mut names: Vec<String> = std::fs::read_dir(&p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.join("\n")
    };
    let exists = |p: &str| format!("{p}: {}", root.join(p).exists());
    // Program names only: ids and load times change with every load.
    let progs = on_node(&["bpftool", "prog", "list", "--json"]);
    let progs: serde_json::Value = serde_json::from_str(&progs).expect("bpftool prog list --json");
    let mut names: Vec<String> = progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    names.sort();
    let links: Vec<String> = on_node(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect();
    BTreeMap::from([
        ("bpf pins", on_node(&["ls", "-A", "/sys/fs/bpf"])),
        ("bpf programs", names.join(" ")),
        (
            "cgroup programs",
            on_node(&["bpftool", "cgroup", "tree", "/sys/fs/cgroup"]),
        ),
        ("nftables", on_node(&["nft", "list", "tables"])),
        ("routes", on_node(&["ip", "route", "show", "table", "all"])),
        ("devices", links.join(" ")),
        ("cni config", ls(root.join("etc/cni/net.d"))),
        ("cni plugins", ls(root.join("opt/cni/bin"))),
        (
            "weft directories",
            [exists("var/lib/weft"), exists("run/weft")].join(", "),
        ),
    ])
}

/// `deploy/` as the lab applies it (its API server; the node's stack forwards, so kube-proxy's
/// rules see every packet; weft's socket-level LB on as well, so its cgroup programs are part
/// of what is installed and removed), in `dir`.
fn overlay(dir: &Path) -> PathBuf {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for part in ["base", "lab", "uninstall"] {
        let to = dir.join(part);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(deploy.join(part)).unwrap().flatten() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../lab\npatches:\n  - target:\n      kind: ConfigMap\n      name: weft-config\n    patch: |-\n      - op: replace\n        path: /data/host-routing\n        value: kernel\n",
    )
    .unwrap();
    run
}

#[test]
fn weft_installed_and_uninstalled_leaves_the_node_as_it_was() {
    let archive = weft_image_archive();
    let mut lab = Lab::new(STATE);
    lab.up(
        &[
            "--nodes",
            "1",
            "--cni",
            "bridge",
            "--proxy",
            "iptables",
            "--image",
            archive.to_str().unwrap(),
        ],
        Duration::from_secs(120 * 60),
    );
    let before = node_state(&lab);

    let manifests =
        std::env::temp_dir().join(format!("weft-uninstall-test-{}", std::process::id()));
    let run = overlay(&manifests);
    let run_s = run.to_str().unwrap();
    lab.kubectl(&["apply", "-k", run_s]);
    let kubectl = |args: &[&str], secs: u64| {
        lab.ok(&[&["kubectl"], args].concat(), Duration::from_secs(secs))
    };
    kubectl(
        &[
            "-n",
            "weft-system",
            "rollout",
            "status",
            "ds/weft",
            "--timeout=180s",
        ],
        200,
    );
    // A pod wired by weft (its conflist sorts before the bridge's), so the pod path is installed too.
    lab.kubectl(&[
        "run",
        "wired",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ]);
    kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "pod/wired",
            "--timeout=120s",
        ],
        130,
    );
    let during = node_state(&lab);
    for (what, listing) in &during {
        assert_ne!(
            listing, &before[what],
            "weft running shows nothing in `{what}`: the check would see nothing"
        );
    }

    kubectl(
        &["delete", "pod", "wired", "--wait=true", "--timeout=60s"],
        70,
    );
    kubectl(
        &["delete", "-k", run_s, "--wait=true", "--timeout=180s"],
        200,
    );
    eventually("weft's agent to be gone", Duration::from_secs(120), || {
        weft_tests::weft::agent_pids(NODE).is_empty().then_some(())
    });
    let uninstall = manifests.join("uninstall");
    let uninstall_s = uninstall.to_str().unwrap();
    lab.kubectl(&["apply", "-k", uninstall_s]);
    kubectl(
        &[
            "-n",
            "weft-uninstall",
            "rollout",
            "status",
            "ds/weft-uninstall",
            "--timeout=120s",
        ],
        130,
    );
    let log = lab.kubectl(&[
        "-n",
        "weft-uninstall",
        "logs",
        "ds/weft-uninstall",
        "-c",
        "uninstall",
    ]);
    assert!(log.contains("weft is uninstalled from this node"), "{log}");
    for item in ["cni config", "cni plugin", "pins", "nftables", "route"] {
        assert!(
            log.lines().any(|l| l.starts_with(item)),
            "`weft uninstall` removed no {item}:\n{log}"
        );
    }
    kubectl(
        &["delete", "-k", uninstall_s, "--wait=true", "--timeout=120s"],
        130,
    );
    let after = node_state(&lab);
    for (what, listing) in &before {
        assert_eq!(
            &after[what], listing,
            "`{what}` after uninstall differs from before install"
        );
    }
    let _ = std::fs::remove_dir_all(&manifests);
    let left = lab.down();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
}
