//! The shipped conflist driven by libcni itself (the reference `cnitool`): the library a
//! container runtime uses parses our results, caches them and feeds them back to CHECK.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::guards::TempDir;
use support::netns::Netns;
use support::node::{Node, WEFT};

/// `cnitool`: `$WEFT_CNITOOL`, else the lab's build (`$WEFT_LAB_CACHE`, default
/// ~/.cache/weft/lab), else PATH.
fn cnitool() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_CNITOOL") {
        return PathBuf::from(p);
    }
    fn find(dir: &Path, depth: u32) -> Option<PathBuf> {
        let entries = std::fs::read_dir(dir).ok()?;
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "cnitool") && p.is_file() {
                return Some(p);
            }
            if depth > 0 && p.is_dir() {
                if let Some(found) = find(&p, depth - 1) {
                    return Some(found);
                }
            }
        }
        None
    }
    // The lab's cache, as `weft-lab` finds it.
    let cache = std::env::var_os("WEFT_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weft/lab")
        });
    find(&cache, 6)
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("cnitool")).find(|p| p.is_file()))
        .expect("cnitool not found: build it with the lab (cargo xtask lab …) or set WEFT_CNITOOL=/path/to/cnitool")
}

/// Runs cnitool in the node netns, in a private mount namespace whose /var/lib is a temp dir,
/// so libcni's result cache (/var/lib/cni) never touches the machine.
struct Runtime<'a> {
    node: &'a Node,
    tool: PathBuf,
    dir: TempDir,
}

impl<'a> Runtime<'a> {
    fn new(node: &'a Node) -> Self {
        let dir = TempDir::new(&format!("{}-libcni", node.id));
        for sub in ["bin", "net.d", "varlib"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(WEFT, dir.0.join("bin/weft")).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/10-weft.conflist");
        let mut conflist: Value =
            serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
        conflist["plugins"][0]["agentSocket"] = node.socket().to_str().unwrap().into();
        conflist["plugins"][0]["logFile"] = node.dir.0.join("cni.log").to_str().unwrap().into();
        std::fs::write(dir.0.join("net.d/10-weft.conflist"), conflist.to_string()).unwrap();
        Self {
            node,
            tool: cnitool(),
            dir,
        }
    }

    fn run(&self, verb: &str, pod: &Netns) -> (bool, String) {
        let script = r#"mount --bind "$VARLIB" /var/lib && exec "$@""#;
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node.ns.name,
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&self.tool)
            .args([verb, "weft", &pod.path()])
            .env("VARLIB", self.dir.0.join("varlib"))
            .env("NETCONFPATH", self.dir.0.join("net.d"))
            .env("CNI_PATH", self.dir.0.join("bin"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

#[test]
fn libcni_runs_the_shipped_conflist_through_add_check_status_del() {
    let node = Node::start();
    let rt = Runtime::new(&node);
    let pods: Vec<_> = (0..2).map(|i| node.pod(i)).collect();
    let mut ips = Vec::new();
    for pod in &pods {
        let (ok, out) = rt.run("add", pod);
        assert!(ok, "cnitool add: {out}");
        let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(result["cniVersion"], "1.1.0");
        ips.push(
            result["ips"][0]["address"]
                .as_str()
                .unwrap()
                .trim_end_matches("/32")
                .to_owned(),
        );
    }
    let (ok, out) = pods[0].try_exec(&["ping", "-c", "1", "-W", "2", &ips[1]]);
    assert!(ok, "ping between libcni-attached pods: {out}");

    // CHECK gets libcni's cached result as prevResult.
    let (ok, out) = rt.run("check", &pods[0]);
    assert!(ok, "cnitool check: {out}");
    let (ok, out) = rt.run("status", &pods[0]);
    assert!(ok, "cnitool status: {out}");
    pods[0].exec(&["ip", "link", "set", "eth0", "down"]);
    let (ok, out) = rt.run("check", &pods[0]);
    assert!(
        !ok && out.contains("eth0 is down"),
        "CHECK missed a downed interface: {out}"
    );

    for pod in &pods {
        let (ok, out) = rt.run("del", pod);
        assert!(ok, "cnitool del: {out}");
    }
    node.assert_empty();
}
