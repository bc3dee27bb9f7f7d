//! Property tests: random packets (well-formed and mangled, to frontends, backends, the hairpin
//! address and elsewhere) through `from_pod` and the uplink path must never fail to run, never
//! be dropped without a counted reason, never leave a wrong checksum on a well-formed packet,
//! never touch traffic that is neither for a frontend nor a reply, and always translate a
//! well-formed new flow to a frontend with backends. Root only.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::bpf::*;
use support::frames::*;
use support::lb::*;
use weft::datapath::Datapath;
use weft::lb::{FrontendKind, Protocol};

const VIP_TCP: [u8; 4] = [10, 32, 0, 10];
const VIP_UDP: [u8; 4] = [10, 32, 0, 11];
const VIP_EMPTY: [u8; 4] = [10, 32, 0, 12];
const NODE_IP: [u8; 4] = [192, 168, 50, 11];
const REMOTE: [u8; 4] = [10, 200, 1, 9];
const OUTSIDE: [u8; 4] = [203, 0, 113, 10];
const HAIRPIN: [u8; 4] = [169, 254, 42, 1];

fn pods() -> [Pod; 3] {
    [pod(5), pod(7), pod(8)]
}

fn setup(test: &str) -> (PinDir, Datapath) {
    let (pins, mut dp) = datapath(test, &pods());
    let two = [active(pod(7).ip, 8080), active(pod(8).ip, 8080)];
    dp.upsert_service(&clusterip("tcp", VIP_TCP, 80, Protocol::Tcp, &two))
        .unwrap();
    dp.upsert_service(&clusterip("udp", VIP_UDP, 53, Protocol::Udp, &[active(pod(7).ip, 53)]))
        .unwrap();
    dp.upsert_service(&clusterip("empty", VIP_EMPTY, 80, Protocol::Tcp, &[]))
        .unwrap();
    let mut np = frontend(
        FrontendKind::NodePort,
        NODE_IP,
        30080,
        Protocol::Tcp,
        &[active(REMOTE, 8080), active(pod(8).ip, 8080)],
    );
    np.snat_remote = Some(NODE_IP.into());
    dp.upsert_service(&service("np", vec![np])).unwrap();
    (pins, dp)
}

/// A generated packet and what is known about it.
#[derive(Debug, Clone)]
struct Case {
    frame: Vec<u8>,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    dport: u16,
    tcp_flags: u8,
    /// Unmangled: correct lengths and checksums, no options, not a fragment.
    well_formed: bool,
}

fn addr() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        Just(VIP_TCP),
        Just(VIP_UDP),
        Just(VIP_EMPTY),
        Just(NODE_IP),
        Just(REMOTE),
        Just(OUTSIDE),
        Just(HAIRPIN),
        Just(pod(5).ip),
        Just(pod(7).ip),
        Just(pod(8).ip),
        any::<[u8; 4]>(),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(80u16), Just(53), Just(8080), Just(30080), Just(22), any::<u16>()]
}

/// How to mangle a well-formed packet.
#[derive(Debug, Clone)]
enum Mangle {
    None,
    Truncate(usize),
    Ihl(u8),
    Version(u8),
    Fragment(u16),
    Byte(usize, u8),
    ZeroUdpChecksum,
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        4 => Just(Mangle::None),
        1 => (34usize..80).prop_map(Mangle::Truncate),
        1 => (0u8..16).prop_map(Mangle::Ihl),
        1 => (0u8..16).prop_map(Mangle::Version),
        1 => any::<u16>().prop_map(Mangle::Fragment),
        1 => (14usize..80, any::<u8>()).prop_map(|(i, b)| Mangle::Byte(i, b)),
        1 => Just(Mangle::ZeroUdpChecksum),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        addr(),
        addr(),
        prop_oneof![4 => Just(IPPROTO_TCP), 4 => Just(IPPROTO_UDP), 1 => Just(IPPROTO_ICMP), 1 => any::<u8>()],
        port(),
        port(),
        any::<u8>(),
        any::<(u32, u32)>(),
        proptest::collection::vec(any::<u8>(), 0..48),
        mangle(),
    )
        .prop_map(|(src, dst, proto, sport, dport, flags, (seq, ack), data, m)| {
            let l4 = match proto {
                IPPROTO_TCP => tcp(src, dst, sport, dport, seq, ack, flags, &data),
                IPPROTO_UDP => udp_checked(src, dst, sport, dport, &data),
                _ => data.clone(),
            };
            let mut ip = ipv4_proto(src, dst, proto, &l4);
            let mut well_formed = true;
            match m {
                Mangle::None => {}
                Mangle::Truncate(n) => {
                    let n = n.saturating_sub(14).max(20);
                    well_formed = n >= ip.len();
                    ip.truncate(n);
                }
                Mangle::Ihl(v) => {
                    well_formed = v == 5;
                    ip[0] = 0x40 | v;
                }
                Mangle::Version(v) => {
                    well_formed = v == 4;
                    ip[0] = (v << 4) | 5;
                }
                Mangle::Fragment(f) => {
                    well_formed = f & 0x3fff == 0;
                    ip[6..8].copy_from_slice(&f.to_be_bytes());
                    // New flags, same header otherwise: its checksum follows, so a packet that
                    // is no fragment (DF or reserved bit only) is still well-formed.
                    ip[10..12].copy_from_slice(&[0, 0]);
                    let c = checksum(&ip[..20]);
                    ip[10..12].copy_from_slice(&c.to_be_bytes());
                }
                Mangle::Byte(i, b) => {
                    let i = i - 14;
                    if i < ip.len() {
                        well_formed = ip[i] == b;
                        ip[i] = b;
                    }
                }
                Mangle::ZeroUdpChecksum => {
                    if proto == IPPROTO_UDP {
                        ip[26..28].copy_from_slice(&[0, 0]);
                    }
                }
            }
            let frame = ethernet([2, 0xee, 0, 0, 0, 5], [2, 0xaa, 0, 0, 0, 5], ETH_P_IP, &ip);
            Case {
                frame,
                src,
                dst,
                proto,
                dport,
                tcp_flags: flags,
                well_formed,
            }
        })
}

fn drops(dp: &Datapath) -> Vec<(&'static str, u64)> {
    dp.drop_counters().expect("read DROP_STATS")
}

fn total(d: &[(&'static str, u64)]) -> u64 {
    d.iter().map(|(_, n)| n).sum()
}

/// Check one run of `program` on `c` against every property.
fn check(dp: &Datapath, program: &'static str, c: &Case) -> Result<(), TestCaseError> {
    let before = drops(dp);
    let out = dp
        .test_run(program, &c.frame, 1)
        .map_err(|e| TestCaseError::fail(format!("test_run failed: {e}")))?;
    let after = drops(dp);
    let counted = total(&after) - total(&before);
    let moved: Vec<_> = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    prop_assert!(
        [TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&out.verdict),
        "verdict {}",
        out.verdict
    );
    if out.verdict == TC_ACT_SHOT {
        prop_assert!(counted >= 1, "dropped without a counted reason");
        return Ok(());
    }
    // Not dropped: nothing counted, except a refusal (answered, counted once).
    let refused = moved == ["service_no_backend"];
    prop_assert!(counted == 0 || (refused && counted == 1), "counted {moved:?} without a drop");
    let is_frontend = [VIP_TCP, VIP_UDP, VIP_EMPTY, NODE_IP].contains(&c.dst);
    let may_be_reply =
        [pod(7).ip, pod(8).ip, pod(5).ip, REMOTE].contains(&c.src) || c.dst == HAIRPIN || c.dst == NODE_IP;
    if !is_frontend && !may_be_reply {
        prop_assert_eq!(&out.frame[12..], &c.frame[12..], "touched a packet that is no Service's");
    }
    // Generated TCP and UDP carry correct checksums (other protocols random bytes).
    let checked_input = c.proto == IPPROTO_TCP || c.proto == IPPROTO_UDP;
    if c.well_formed && checked_input {
        if let Err(e) = checksums_ok(&out.frame) {
            prop_assert!(false, "{e} after a well-formed packet: {:02x?}", out.frame);
        }
        if c.proto == IPPROTO_UDP && seen(&c.frame).l4_csum == 0 && seen(&out.frame).proto == IPPROTO_UDP {
            prop_assert_eq!(seen(&out.frame).l4_csum, 0, "a zero UDP checksum must stay zero");
        }
    }
    let new_tcp_flow = c.proto == IPPROTO_TCP && c.tcp_flags & TCP_RST == 0;
    if c.well_formed && c.dst == VIP_TCP && c.dport == 80 && new_tcp_flow {
        let s = seen(&out.frame);
        prop_assert!([pod(7).ip, pod(8).ip].contains(&s.dst) && s.dport == 8080, "not translated: {s:?}");
    }
    Ok(())
}

fn run(program: &'static str, test: &str) {
    let (_pins, dp) = setup(test);
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| check(&dp, program, &c))
        .unwrap_or_else(|e| panic!("{program}: {e}"));
}

#[test]
fn random_packets_through_from_pod_are_never_dropped_silently_or_mistranslated() {
    run("from_pod", "props-pod");
}

#[test]
fn random_packets_through_the_uplink_path_are_never_dropped_silently_or_mistranslated() {
    run("netdev_lb", "props-netdev");
}

/// With every local pod isolated in both directions and no rule allowing anything, no random
/// packet reaches a local pod (nothing is redirected but a refusal back to its sender), and every one still keeps the
/// properties above (a drop is counted, nothing is touched that is no Service's).
#[test]
fn random_packets_never_reach_a_pod_that_network_policy_isolates() {
    use weft::datapath::{PolicyEndpoint, PolicyMaps};
    for program in ["from_pod", "netdev_lb"] {
        let (pins, dp) = setup(&format!("props-policy-{program}"));
        let mut maps = PolicyMaps::open(pins.path()).unwrap();
        for (i, p) in pods().iter().enumerate() {
            let ep = PolicyEndpoint { policy_id: 10 + i as u32, ingress_isolated: true, egress_isolated: true };
            maps.set_endpoint(p.ip.into(), &ep).unwrap();
        }
        let mut runner = TestRunner::new(Config { cases: 2000, failure_persistence: None, ..Config::default() });
        runner
            .run(&case(), |c| {
                check(&dp, program, &c)?;
                let refused = |d: &[(&str, u64)]| d.iter().find(|(n, _)| *n == "service_no_backend").map_or(0, |x| x.1);
                let before = refused(&drops(&dp));
                let out = dp.test_run(program, &c.frame, 1).map_err(|e| TestCaseError::fail(e.to_string()))?;
                // The one redirect allowed: a refusal bounced back to the sender.
                let bounced = refused(&drops(&dp)) > before;
                prop_assert!(
                    out.verdict != TC_ACT_REDIRECT || bounced,
                    "delivered into an isolated pod: {:?}",
                    seen(&out.frame)
                );
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{program}: {e}"));
    }
}
