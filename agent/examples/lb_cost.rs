//! Per-packet cost of the Service path at several Service counts, for
//! `cargo xtask bench lb-scale`: `from_pod` run with BPF_PROG_TEST_RUN on a packet of an
//! established flow to one ClusterIP and on the first packet of new flows, with 1, 1k, 10k,
//! 50k Services programmed through the reconciler, and a pod-to-pod packet on the same
//! datapath as the floor. Every size has its own pin dir, all loaded at once so the rounds
//! interleave. Prints one JSON document.
//!
//! Each sample is one run (`repeat` 1, timed by the kernel): with `repeat` N the kernel runs
//! the program N times on the same skb, which the first run has already translated, so runs
//! 2..N would measure a pod-to-pod packet. `--samples` single runs per round give the median.
//!
//! `lb_cost --services 1,1000,10000,50000 --rounds 5 --samples 4000` (root, bpffs).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The packet tests' frame builders (one definition of a valid TCP/IPv4 frame).
#[path = "../tests/support/frames.rs"]
#[allow(dead_code, reason = "the example builds TCP frames only")]
mod frames;
use weft::datapath::{Datapath, EndpointEntry};
use weft::lb::{
    Backend, BackendState, Frontend, FrontendKind, FrontendSpec, Protocol, Scope, Service,
    ServiceName,
};

const CLIENT: [u8; 4] = [10, 200, 0, 5];
const BACKEND: [u8; 4] = [10, 200, 0, 7];

/// A pin dir removed (with every pin) when dropped, also on error.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = Datapath::unpin_all(&self.0);
    }
}

struct Size {
    services: usize,
    _pins: Pins,
    dp: Datapath,
    program_s: f64,
    /// Medians per round, nanoseconds.
    service_ns: Vec<u32>,
    new_flow_ns: Vec<u32>,
    pod_ns: Vec<u32>,
    /// Next source port for a new flow.
    next_port: u16,
}

fn endpoint(n: u8) -> EndpointEntry {
    EndpointEntry {
        ifindex: 100 + n as u32,
        host_mac: [2, 0xee, 0, 0, 0, n],
        pod_mac: [2, 0xaa, 0, 0, 0, n],
    }
}

/// ClusterIP `i`: 10.32.x.y:80 -> 10.201.x.y:8080; the measured one's backend is the local pod.
fn service(i: usize, measured: usize) -> Service {
    let (hi, lo) = ((i >> 8) as u8, (i & 0xff) as u8);
    let vip = Ipv4Addr::new(10, 32 + (i >> 16) as u8, hi, lo);
    let backend = if i == measured {
        Ipv4Addr::from(BACKEND)
    } else {
        Ipv4Addr::new(10, 201 + (i >> 16) as u8, hi, lo)
    };
    Service {
        name: ServiceName {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
        },
        frontends: vec![FrontendSpec {
            frontend: Frontend {
                addr: vip,
                port: 80,
                protocol: Protocol::Tcp,
                scope: Scope::External,
            },
            kind: FrontendKind::ClusterIp,
            port_name: "http".into(),
            backends: vec![Backend {
                addr: backend,
                port: 8080,
                state: BackendState::Active,
                terminating: false,
                local: i == measured,
            }],
            affinity_timeout_s: None,
            two_scopes: false,
            snat_remote: None,
        }],
        skipped: Vec::new(),
    }
}

/// A TCP segment from the client pod (`sport`) to `dst:dport` with valid checksums.
fn frame(sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let seg = frames::tcp(CLIENT, dst, sport, dport, 1, 0, flags, &[]);
    frames::ethernet(
        [2, 0xee, 0, 0, 0, 5],
        [2, 0xaa, 0, 0, 0, 5],
        frames::ETH_P_IP,
        &frames::ipv4_proto(CLIENT, dst, frames::IPPROTO_TCP, &seg),
    )
}

fn vip(i: usize) -> [u8; 4] {
    [10, 32 + (i >> 16) as u8, (i >> 8) as u8, (i & 0xff) as u8]
}

fn main() -> Result<()> {
    let mut sizes_arg = "1,1000,10000,50000".to_owned();
    let mut rounds = 5usize;
    let mut samples = 4000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("missing value");
        match a.as_str() {
            "--services" => sizes_arg = value()?,
            "--rounds" => rounds = value()?.parse()?,
            "--samples" => samples = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let counts: Vec<usize> = sizes_arg
        .split(',')
        .map(|s| s.parse().context("--services takes counts like 1,1000"))
        .collect::<Result<_>>()?;
    if counts.iter().any(|&n| n == 0 || n > 60_000) {
        bail!("Service counts must be 1..=60000 (one frontend id each)");
    }

    let mut sizes = Vec::new();
    for &n in &counts {
        let pins = Pins(PathBuf::from(format!(
            "/sys/fs/bpf/weft-bench-lb-{}-{n}",
            std::process::id()
        )));
        let mut dp = Datapath::open(&pins.0).context("opening a datapath (root and bpffs?)")?;
        dp.upsert_endpoint(CLIENT.into(), &endpoint(5))?;
        dp.upsert_endpoint(BACKEND.into(), &endpoint(7))?;
        let measured = n / 2;
        let services: Vec<Service> = (0..n).map(|i| service(i, measured)).collect();
        let t = Instant::now();
        dp.sync_services(&services)?;
        let program_s = t.elapsed().as_secs_f64();
        eprintln!("{n} Services programmed in {program_s:.2}s");
        // Open the flow once: the measured packets then take the established path.
        let syn = dp.test_run_from_pod(&frame(40000, vip(measured), 80, 0x02))?;
        if syn.verdict != 7 || syn.frame[30..34] != BACKEND {
            bail!("the SYN to the measured Service was not translated to its backend");
        }
        sizes.push(Size {
            services: n,
            _pins: pins,
            dp,
            program_s,
            service_ns: Vec::new(),
            new_flow_ns: Vec::new(),
            pod_ns: Vec::new(),
            next_port: 1024,
        });
    }
    let median = |v: &mut Vec<u32>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    // Sizes interleave sample by sample, so load from elsewhere on the machine hits all alike,
    // and the order rotates, so no size always runs first (cold) or last.
    for round in 1..=rounds {
        let mut raw: Vec<[Vec<u32>; 3]> = sizes.iter().map(|_| Default::default()).collect();
        let n = sizes.len();
        for k in 0..samples {
            for i in (0..n).map(|i| (i + k) % n) {
                let (s, raw) = (&mut sizes[i], &mut raw[i]);
                let target = vip(s.services / 2);
                let ack = frame(40000, target, 80, 0x10);
                let direct = frame(40000, BACKEND, 8080, 0x10);
                let syn = frame(s.next_port, target, 80, 0x02);
                s.next_port = s.next_port.checked_add(1).unwrap_or(1024);
                raw[0].push(s.dp.test_run("from_pod", &ack, 1)?.duration_ns);
                raw[1].push(s.dp.test_run("from_pod", &syn, 1)?.duration_ns);
                raw[2].push(s.dp.test_run("from_pod", &direct, 1)?.duration_ns);
            }
        }
        for (s, [svc, new, pod]) in sizes.iter_mut().zip(raw.iter_mut()) {
            let (svc, new, pod) = (median(svc), median(new), median(pod));
            s.service_ns.push(svc);
            s.new_flow_ns.push(new);
            s.pod_ns.push(pod);
            eprintln!(
                "[round {round}/{rounds}] {:>6} Services: established {svc:>4} ns, new flow {new:>4} ns, pod to pod {pod:>4} ns",
                s.services
            );
        }
    }
    let out: Vec<serde_json::Value> = sizes
        .iter()
        .map(|s| {
            serde_json::json!({
                "services": s.services,
                "program_s": s.program_s,
                "service_ns": s.service_ns,
                "new_flow_ns": s.new_flow_ns,
                "pod_ns": s.pod_ns,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "samples": samples, "rounds": rounds, "sizes": out })
    );
    Ok(())
}
