//! Network namespaces for the veth packet tests: a node namespace holding the host sides of
//! pod veths, pod namespaces wired the way the CNI plugin wires them. Everything is deleted on
//! drop (deleting a namespace deletes the veths in it), also when the test fails.

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{setns, CloneFlags};

/// Run `cmd`, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `wdp-<pid>-<n>-<role>`: unique per test process and call, so parallel tests never meet.
    pub fn new(role: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("wdp-{}-{n}-{role}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Whether a command inside the namespace succeeds.
    pub fn try_exec(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Run `f` on a thread that has entered this namespace (BPF attach and AF_PACKET sockets
    /// act in the calling thread's network namespace).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
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

    /// ifindex and MAC of `ifname` in this namespace.
    pub fn link(&self, ifname: &str) -> (u32, [u8; 6]) {
        let json = sh(&["ip", "-n", &self.name, "-j", "link", "show", "dev", ifname]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
        let ifindex = v[0]["ifindex"].as_u64().expect("ifindex") as u32;
        let mac = parse_mac(v[0]["address"].as_str().expect("address"));
        (ifindex, mac)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in s.split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

/// A pod as the CNI plugin makes it: `eth0` in its own namespace with a /32, a default route
/// via 169.254.1.1 and a permanent neighbour entry for that gateway pointing at the host-side
/// veth's MAC; the host side `host_if` in the node namespace, up, without an address, and a
/// /32 route to the pod through it.
pub struct Pod {
    pub ns: Netns,
    pub ip: String,
    pub host_if: String,
    pub host_ifindex: u32,
    pub host_mac: [u8; 6],
    pub pod_mac: [u8; 6],
}

impl Pod {
    pub fn new(node: &Netns, role: &str, host_if: &str, ip: &str) -> Self {
        let ns = Netns::new(role);
        node.exec(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        node.exec(&["ip", "link", "set", host_if, "up"]);
        let (host_ifindex, host_mac) = node.link(host_if);
        let host_mac_s = fmt_mac(host_mac);
        ns.exec(&["ip", "link", "set", "eth0", "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        ns.exec(&[
            "ip",
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        ns.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        ns.exec(&[
            "ip",
            "neigh",
            "add",
            "169.254.1.1",
            "lladdr",
            &host_mac_s,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        node.exec(&["ip", "route", "add", &format!("{ip}/32"), "dev", host_if]);
        let (_, pod_mac) = ns.link("eth0");
        Self {
            ns,
            ip: ip.to_owned(),
            host_if: host_if.to_owned(),
            host_ifindex,
            host_mac,
            pod_mac,
        }
    }

    /// `ping -c <count>` from this pod; true if every echo got a reply.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        let c = count.to_string();
        self.ns
            .try_exec(&["ping", "-q", "-n", "-c", &c, "-i", "0.2", "-W", "1", ip])
    }

    /// Send one raw Ethernet frame out of the pod's eth0 (AF_PACKET), bypassing its IP stack.
    pub fn send_raw(&self, frame: &[u8]) {
        self.ns.run(|| send_raw_frame("eth0", frame));
    }
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn send_raw_frame(ifname: &str, frame: &[u8]) {
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: plain libc calls on a socket this function owns and closes; `sll` is a zeroed
    // sockaddr_ll filled with valid values.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0, "no interface {ifname}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(n, frame.len() as isize, "sendto: {err}");
    }
}
