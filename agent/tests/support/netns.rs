//! A named network namespace (`ip netns add`) with `lo` up: commands and threads inside it,
//! its links, routes and addresses read back from `ip -j`. Deleted on drop with every process
//! still in it (deleting a namespace deletes the veths in it), also when the test fails.

use std::fs::File;
use std::process::Command;

use nix::sched::{setns, CloneFlags};
use serde_json::Value;

use super::{sh, unique_id};

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace named exactly `name`.
    pub fn new(name: String) -> Self {
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `<prefix>-<unique id>-<role>`: a fresh name, so parallel tests never meet.
    pub fn unique(prefix: &str, role: &str) -> Self {
        Self::new(format!("{prefix}-{}-{role}", unique_id()))
    }

    /// Path a runtime would pass as CNI_NETNS.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Run `cmd` inside this netns; panic on failure.
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut args = vec!["ip", "netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        sh(&args)
    }

    /// Run `cmd` inside this netns; return success and combined output.
    pub fn try_exec(&self, cmd: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {cmd:?}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Run `f` on a thread that has entered this namespace (BPF attach and AF_PACKET sockets
    /// act in the calling thread's network namespace).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                setns(file, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("netns thread panicked")
        })
    }

    /// The JSON array `ip -j <args>` prints for this netns.
    pub fn ip_json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["ip", "-n", &self.name, "-j"];
        full.extend_from_slice(args);
        match serde_json::from_str(&sh(&full)) {
            Ok(Value::Array(items)) => items,
            other => panic!("{full:?}: not a JSON array: {other:?}"),
        }
    }

    /// ifindex and MAC of `ifname` in this namespace.
    pub fn link(&self, ifname: &str) -> (u32, [u8; 6]) {
        let v = self.ip_json(&["link", "show", "dev", ifname]);
        let ifindex = v[0]["ifindex"].as_u64().expect("ifindex") as u32;
        let mac = parse_mac(v[0]["address"].as_str().expect("address"));
        (ifindex, mac)
    }

    /// Names of the links in this netns.
    pub fn links(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `dst` of every IPv4 route of the main table.
    pub fn route_dsts(&self) -> Vec<String> {
        self.ip_json(&["-4", "route", "show"])
            .iter()
            .map(|r| r["dst"].as_str().unwrap().to_owned())
            .collect()
    }

    /// IPv4 addresses (a.b.c.d/len) on any interface.
    pub fn addresses(&self) -> Vec<String> {
        self.ip_json(&["-4", "addr", "show"])
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in s.split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

/// Bytes as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
