//! Pods for the veth packet tests, wired the way the CNI plugin wires them, and raw frames
//! sent from inside a pod (AF_PACKET).

use weft::datapath::{Datapath, EndpointEntry};
use weft::netlink::SyncNetlink;

use super::netns::{fmt_mac, Netns};
use super::require_tools;

/// Prefix of every namespace of the veth packet tests.
pub const NETNS_PREFIX: &str = "wdp";

/// The node namespace of a veth packet test (holds the host sides of the pod veths). Fails,
/// never skips, without `ip` or `ping`.
pub fn node_netns() -> Netns {
    require_tools(&["ip", "ping"]);
    Netns::unique(NETNS_PREFIX, "node")
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
        let ns = Netns::unique(NETNS_PREFIX, role);
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

    /// What the CNI plugin registers for this pod.
    pub fn endpoint(&self) -> EndpointEntry {
        EndpointEntry { ifindex: self.host_ifindex, host_mac: self.host_mac, pod_mac: self.pod_mac }
    }

    /// `ping -c <count>` from this pod; true if every echo got a reply.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        let c = count.to_string();
        self.ns
            .try_exec(&["ping", "-q", "-n", "-c", &c, "-i", "0.2", "-W", "1", ip])
            .0
    }

    /// Ping `ip` `count` times, `interval` seconds apart; how many went unanswered.
    pub fn pings_lost(&self, ip: &str, count: u32, interval: &str) -> u32 {
        let c = count.to_string();
        let (_, out) = self
            .ns
            .try_exec(&["ping", "-q", "-n", "-c", &c, "-i", interval, "-W", "1", ip]);
        let received = out
            .split(',')
            .find_map(|part| part.trim().strip_suffix(" received"))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no ping summary in {out:?}"));
        count - received
    }

    /// Send one raw Ethernet frame out of the pod's eth0 (AF_PACKET), bypassing its IP stack.
    pub fn send_raw(&self, frame: &[u8]) {
        self.ns.run(|| send_raw_frame("eth0", frame));
    }
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

/// Capture the frames `ifname` (in `ns`) receives for `duration` (AF_PACKET, inbound only),
/// on a thread started now; `join()` the handle for the frames.
pub fn capture(
    ns: &Netns,
    ifname: &str,
    duration: std::time::Duration,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let path = ns.path();
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        // SAFETY: plain libc calls on a socket this closure owns and closes.
        unsafe {
            let ifindex = libc::if_nametoindex(ifname.as_ptr());
            assert_ne!(ifindex, 0, "no interface {ifname:?}");
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
            assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto as u16;
            sll.sll_ifindex = ifindex as i32;
            let r = libc::bind(
                fd,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            ready_tx.send(()).unwrap();
            let end = std::time::Instant::now() + duration;
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65536];
            while std::time::Instant::now() < end {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut len,
                );
                if n > 0 && from.sll_pkttype != libc::PACKET_OUTGOING {
                    frames.push(buf[..n as usize].to_vec());
                }
            }
            libc::close(fd);
            frames
        }
    });
    ready_rx.recv().expect("capture thread started");
    handle
}

/// Register `pods` in the datapath and attach `from_pod` to their host veths (inside `node`),
/// as the agent does for a CNI ADD.
pub fn register_and_attach(dp: &mut Datapath, node: &Netns, pods: &[&Pod]) {
    for pod in pods {
        dp.upsert_endpoint(pod.ip.parse().unwrap(), &pod.endpoint()).expect("register endpoint");
    }
    node.run(|| {
        let nl = SyncNetlink::connect(None).expect("netlink in the node");
        for pod in pods {
            dp.attach_from_pod(&nl, &pod.host_if).expect("attach from_pod");
        }
    });
}
