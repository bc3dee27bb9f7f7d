//! Service fixtures for the LB packet tests: pods registered in ENDPOINTS4 and Services
//! programmed through the real reconciler (`Datapath::upsert_service`), and frames as pods
//! and outside clients send them.

use std::net::Ipv4Addr;

use weft::datapath::{Datapath, EndpointEntry};
use weft::lb::{
    Backend, BackendState, Frontend, FrontendKind, FrontendSpec, Protocol, Scope, Service,
    ServiceName,
};

use super::bpf::PinDir;
use super::frames::*;

/// A pod on this node.
#[derive(Clone, Copy, Debug)]
pub struct Pod {
    pub ip: [u8; 4],
    pub ep: EndpointEntry,
}

/// Pod `10.200.0.<n>`, its host veth ifindex 100+n, MACs 02:ee:..:n (host side) and
/// 02:aa:..:n (pod side).
pub fn pod(n: u8) -> Pod {
    Pod {
        ip: [10, 200, 0, n],
        ep: EndpointEntry {
            ifindex: 100 + n as u32,
            host_mac: [0x02, 0xee, 0, 0, 0, n],
            pod_mac: [0x02, 0xaa, 0, 0, 0, n],
        },
    }
}

/// A datapath on a fresh pin dir with `pods` registered.
pub fn datapath(test: &str, pods: &[Pod]) -> (PinDir, Datapath) {
    let pins = PinDir::new(test);
    let mut dp = Datapath::open(pins.path()).expect("open datapath");
    for p in pods {
        dp.upsert_endpoint(Ipv4Addr::from(p.ip), &p.ep)
            .expect("register pod");
    }
    (pins, dp)
}

pub fn active(ip: [u8; 4], port: u16) -> Backend {
    Backend {
        addr: Ipv4Addr::from(ip),
        port,
        state: BackendState::Active,
        terminating: false,
        local: ip[2] == 0,
    }
}

pub fn with_state(b: Backend, state: BackendState) -> Backend {
    Backend { state, ..b }
}

/// One frontend spec of kind `kind`.
pub fn frontend(
    kind: FrontendKind,
    addr: [u8; 4],
    port: u16,
    protocol: Protocol,
    backends: &[Backend],
) -> FrontendSpec {
    FrontendSpec {
        frontend: Frontend {
            addr: Ipv4Addr::from(addr),
            port,
            protocol,
            scope: Scope::External,
        },
        kind,
        port_name: String::new(),
        backends: backends.to_vec(),
        affinity_timeout_s: None,
        two_scopes: false,
        snat_remote: None,
    }
}

/// `default/<name>` with these frontends.
pub fn service(name: &str, frontends: Vec<FrontendSpec>) -> Service {
    Service {
        name: ServiceName {
            namespace: "default".into(),
            name: name.into(),
        },
        frontends,
        skipped: Vec::new(),
    }
}

/// A ClusterIP Service with one port.
pub fn clusterip(
    name: &str,
    vip: [u8; 4],
    port: u16,
    protocol: Protocol,
    backends: &[Backend],
) -> Service {
    service(
        name,
        vec![frontend(
            FrontendKind::ClusterIp,
            vip,
            port,
            protocol,
            backends,
        )],
    )
}

/// A frame as `from` sends it out of its eth0 (to its gateway, the host veth).
pub fn from_pod(from: &Pod, ip_packet: &[u8]) -> Vec<u8> {
    ethernet(from.ep.host_mac, from.ep.pod_mac, ETH_P_IP, ip_packet)
}

/// A TCP segment from `src:sport` to `dst:dport` as an IPv4 packet.
#[allow(clippy::too_many_arguments)]
pub fn tcp_packet(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    ipv4_proto(
        src,
        dst,
        IPPROTO_TCP,
        &tcp(src, dst, sport, dport, seq, ack, flags, data),
    )
}

/// A UDP datagram with a real checksum as an IPv4 packet.
pub fn udp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, data: &[u8]) -> Vec<u8> {
    ipv4_proto(
        src,
        dst,
        IPPROTO_UDP,
        &udp_checked(src, dst, sport, dport, data),
    )
}

/// A UDP datagram without checksum (0) as an IPv4 packet.
pub fn udp0_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, data: &[u8]) -> Vec<u8> {
    ipv4_proto(src, dst, IPPROTO_UDP, &udp(sport, dport, data))
}
