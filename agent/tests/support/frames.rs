//! Builders for the frames the packet tests feed to `BPF_PROG_TEST_RUN` or send raw.

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

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// A valid 20-byte IPv4 header of protocol `proto` (TTL 64, DF, correct checksum) + `payload`.
pub fn ipv4_proto(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = ipv4(src, dst, payload);
    h[9] = proto;
    h[10..12].copy_from_slice(&[0, 0]);
    let csum = checksum(&h[..20]);
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    h
}

/// The RFC 1071 sum of the IPv4 pseudo-header and `segment`, i.e. the L4 checksum field value
/// that makes the segment verify (computed here, independently of the datapath).
pub fn l4_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    let mut buf = Vec::with_capacity(12 + segment.len());
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&[0, proto]);
    buf.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    buf.extend_from_slice(segment);
    checksum(&buf)
}

/// A TCP segment (20-byte header, window 65535) with its checksum for `src` -> `dst`.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(data);
    let c = l4_checksum(src, dst, IPPROTO_TCP, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// A UDP datagram with a real checksum for `src` -> `dst` (0xffff when it sums to 0).
pub fn udp_checked(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = udp(sport, dport, data);
    let c = match l4_checksum(src, dst, IPPROTO_UDP, &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// A frame's IPv4 and L4 fields, read back for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The L4 checksum field.
    pub l4_csum: u16,
    /// Everything after the IPv4 header.
    pub l4: Vec<u8>,
}

/// Parse an Ethernet/IPv4 frame (panics on anything else: tests feed their own frames).
pub fn seen(frame: &[u8]) -> Seen {
    assert!(frame.len() >= 34, "frame too short: {frame:?}");
    let ip = &frame[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let l4 = ip[ihl..total.min(ip.len())].to_vec();
    let word = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let dword = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
    let proto = ip[9];
    let has_ports =
        (proto == IPPROTO_TCP && l4.len() >= 20) || (proto == IPPROTO_UDP && l4.len() >= 8);
    Seen {
        dst_mac: frame[0..6].try_into().unwrap(),
        src_mac: frame[6..12].try_into().unwrap(),
        src: ip[12..16].try_into().unwrap(),
        dst: ip[16..20].try_into().unwrap(),
        proto,
        ttl: ip[8],
        sport: if has_ports { word(0) } else { 0 },
        dport: if has_ports { word(2) } else { 0 },
        tcp_flags: if proto == IPPROTO_TCP && l4.len() >= 20 {
            l4[13]
        } else {
            0
        },
        seq: if proto == IPPROTO_TCP && l4.len() >= 20 {
            dword(4)
        } else {
            0
        },
        ack: if proto == IPPROTO_TCP && l4.len() >= 20 {
            dword(8)
        } else {
            0
        },
        l4_csum: match proto {
            IPPROTO_TCP if l4.len() >= 20 => word(16),
            IPPROTO_UDP if l4.len() >= 8 => word(6),
            IPPROTO_ICMP if l4.len() >= 4 => word(2),
            _ => 0,
        },
        l4,
    }
}

/// Assert that the IPv4 header checksum and the L4 checksum of `frame` verify, recomputed
/// here from the bytes (a UDP checksum of 0 means "none" and is accepted as such).
pub fn assert_checksums(frame: &[u8]) {
    if let Err(e) = checksums_ok(frame) {
        panic!("{e}: {frame:02x?}");
    }
}

/// Whether the IPv4 header checksum and the TCP, UDP or ICMP checksum of `frame` verify.
pub fn checksums_ok(frame: &[u8]) -> Result<(), String> {
    let ip = &frame[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if checksum(&ip[..ihl]) != 0 {
        return Err("IPv4 header checksum is wrong".into());
    }
    let s = seen(frame);
    let ok = match s.proto {
        IPPROTO_TCP => l4_checksum(s.src, s.dst, IPPROTO_TCP, &s.l4) == 0,
        IPPROTO_UDP if s.l4_csum != 0 => l4_checksum(s.src, s.dst, IPPROTO_UDP, &s.l4) == 0,
        IPPROTO_ICMP => checksum(&s.l4) == 0,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("protocol {} checksum is wrong", s.proto))
    }
}

/// Whether the TCP/UDP checksum field of `frame` is right for its current addresses, either
/// complete (the segment verifies) or, for a packet still carrying a CHECKSUM_PARTIAL seed
/// (veth offload: the sender's stack left the sum for the NIC to finish), a seed equal to the
/// pseudo-header sum of the current addresses. A NAT that forgot to move the seed passes on a
/// veth and breaks on the first real NIC.
pub fn l4_checksum_or_seed_ok(frame: &[u8]) -> bool {
    let s = seen(frame);
    if l4_checksum(s.src, s.dst, s.proto, &s.l4) == 0 {
        return true;
    }
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&s.src);
    pseudo.extend_from_slice(&s.dst);
    pseudo.extend_from_slice(&[0, s.proto]);
    pseudo.extend_from_slice(&(s.l4.len() as u16).to_be_bytes());
    s.l4_csum == !checksum(&pseudo)
}
