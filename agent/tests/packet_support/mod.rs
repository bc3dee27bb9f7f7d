//! Shared by the packet tests: a per-test bpffs pin dir guard, root/bpffs preconditions that
//! fail loudly, and builders for the frames the tests feed to `BPF_PROG_TEST_RUN`.
#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use weft::datapath::Datapath;

pub mod netns;

/// tc verdicts (include/uapi/linux/pkt_cls.h).
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

const BPFFS: &str = "/sys/fs/bpf";

/// A fresh pin dir `/sys/fs/bpf/weft-test-<pid>-<n>-<name>`, removed (with every pin in it) on
/// drop, also when the test fails.
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Panics with a clear message if the test cannot run here (not root, no bpffs).
    pub fn new(test: &str) -> Self {
        require_root_and_bpffs();
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(BPFFS).join(format!("weft-test-{}-{n}-{test}", std::process::id()));
        Datapath::unpin_all(&path).expect("clearing a leftover pin dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = Datapath::unpin_all(&self.path) {
            eprintln!("cleanup of {} failed: {e}", self.path.display());
        }
    }
}

/// These tests load BPF programs: they need root and a mounted bpffs. Not a skip: a failure
/// that says what is missing.
pub fn require_root_and_bpffs() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "packet tests load BPF programs and must run as root (euid is {euid})"
    );
    let st = nix::sys::statfs::statfs(BPFFS)
        .unwrap_or_else(|e| panic!("packet tests need bpffs at {BPFFS}: statfs failed: {e}"));
    assert!(
        st.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC,
        "packet tests need bpffs mounted at {BPFFS} (mount -t bpf bpf {BPFFS})"
    );
}

pub type Mac = [u8; 6];

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// An Ethernet header followed by `payload`.
pub fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A valid 20-byte IPv4 header (UDP, TTL 64, correct checksum) followed by `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let csum = checksum(&h);
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram (checksum 0 = none, valid for IPv4) with `data`.
pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// An ARP request "who has `target`? tell `sender`".
pub fn arp_request(sender_mac: Mac, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&sender_mac);
    a.extend_from_slice(&sender_ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip);
    a
}

/// A minimal IPv6 header (no payload, next header "no next header").
pub fn ipv6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// RFC 1071 Internet checksum.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
