//! weft's image in a real container runtime: Debian's containerd (its CRI plugin off, its own
//! root, state and socket under a temporary directory) imports the archive `cargo xtask image`
//! writes, as `ctr import` and `kind load image-archive` do, and runc runs it: weft and nft
//! from the image, and the agent's entrypoint on a machine without what it needs (no bpffs in
//! the container) stops with the reason rather than crashing. Each container gets a network
//! namespace of its own; nothing is left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use weft_tests::lab::{require_root, run_with_timeout, weft_image_archive};

/// A containerd of its own, stopped and cleaned up on drop.
struct Containerd {
    dir: PathBuf,
    child: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = std::env::temp_dir().join(format!("weft-ctd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{0}/containerd.sock\"\n",
            dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (installed by `cargo xtask setup`)");
        let c = Containerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let sock = self.dir.join("containerd.sock");
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&sock)
            .args(["--namespace", "k8s.io"])
            .args(args);
        run_with_timeout(&mut cmd, Duration::from_secs(60))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Snapshots or task roots a failed run left mounted.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn containerd_imports_weft_s_image_and_runc_runs_it() {
    require_root();
    let archive = weft_image_archive();
    let ctd = Containerd::start();
    let imported = ctd.ctr(&[
        "images",
        "import",
        "--all-platforms",
        archive.to_str().unwrap(),
    ]);
    assert!(
        imported.status.success(),
        "ctr images import: {}",
        text(&imported)
    );
    let listed = text(&ctd.ctr(&["images", "ls", "-q"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("ghcr.io/weft-net/weft:")),
        "imported under the DaemonSet's name: {listed}"
    );
    let image = listed
        .lines()
        .find(|l| l.starts_with("ghcr.io/weft-net/weft:"))
        .unwrap()
        .to_string();

    let version = ctd.ctr(&[
        "run",
        "--rm",
        &image,
        "weft-version",
        "/usr/local/bin/weft",
        "--version",
    ]);
    assert!(
        text(&version).starts_with("weft "),
        "weft in the image: {}",
        text(&version)
    );
    // nft from the image reads the (empty) rule set of the container's own network namespace.
    let nft = ctd.ctr(&[
        "run",
        "--rm",
        "--privileged",
        &image,
        "weft-nft",
        "nft",
        "list",
        "ruleset",
    ]);
    assert!(nft.status.success(), "nft in the image: {}", text(&nft));

    // The image's own entrypoint and command (`weft agent`) where no bpffs is mounted.
    let agent = ctd.ctr(&["run", "--rm", &image, "weft-agent"]);
    let said = text(&agent);
    assert!(
        !agent.status.success(),
        "the agent ran without a bpffs: {said}"
    );
    assert!(
        said.contains("is not on a BPF filesystem"),
        "the agent says what is missing: {said}"
    );
    let left = text(&ctd.ctr(&["containers", "ls", "-q"]));
    assert!(left.trim().is_empty(), "containers left: {left}");
}
