//! NetworkPolicy at scale, for `cargo xtask bench policy`: the per-packet cost of `from_pod`
//! (BPF_PROG_TEST_RUN) on a new flow into a pod selected by 1 or 100 policies, on an
//! established flow, and on plain pod-to-pod traffic of unselected pods, with 0, 100, 1,000
//! and 10,000 other NetworkPolicies in a cluster of 10,000 pods; and the control plane's cost
//! of that cluster: parsing and translating every policy, the full sync into the maps, and the
//! memory the agent's trimmed pods and state take. Every size has its own pin dir and the
//! samples interleave. Prints one JSON document.
//!
//! `policy_cost --policies 0,100,1000,10000 --pods 10000 --selecting 1 --rounds 3 --samples 3000`

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use weft::k8s::pod::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;

#[path = "../tests/support/frames.rs"]
#[allow(dead_code, reason = "the example builds TCP frames only")]
mod frames;
use weft::datapath::policy::{Desired, PolicyReconciler};
use weft::datapath::{Datapath, EndpointEntry, PolicyMaps};
use weft::policy::{self, Identities, Inputs, PodInfo};

const CLIENT: [u8; 4] = [10, 200, 0, 5];
const SERVER: [u8; 4] = [10, 200, 0, 7];
const OTHER: [u8; 4] = [10, 200, 0, 9];
const NODE: &str = "node-1";
const NAMESPACES: usize = 100;

struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = Datapath::unpin_all(&self.0);
    }
}

fn endpoint(n: u8) -> EndpointEntry {
    EndpointEntry {
        ifindex: 100 + n as u32,
        host_mac: [2, 0xee, 0, 0, 0, n],
        pod_mac: [2, 0xaa, 0, 0, 0, n],
    }
}

/// A pod as the API server sends it (then trimmed as the agent's watch trims it).
fn pod(ns: &str, name: &str, node: &str, ip: Ipv4Addr, app: &str) -> Pod {
    let mut p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{ns}-{name}"),
            "labels": {"app": app, "pod-template-hash": "5d4f8c7b9"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-07T00:00:00Z"}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "registry.example/app:1.2.3",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "MODE", "value": "production"}, {"name": "LOG", "value": "info"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]},
        "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
            "conditions": [{"type": "Ready", "status": "True"}], "hostIP": "172.30.0.12"}
    }))
    .expect("a pod");
    weft::k8s::pod::trim(&mut p);
    p
}

/// The cluster's pods: the three local ones and `n - 3` on other nodes, 100 namespaces.
fn pods(n: usize) -> Vec<Pod> {
    let mut v = vec![
        pod("ns-0", "client", NODE, CLIENT.into(), "client"),
        pod("ns-0", "server", NODE, SERVER.into(), "server"),
        pod("ns-0", "other", NODE, OTHER.into(), "other"),
    ];
    for i in 3..n {
        let ip = Ipv4Addr::new(10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
        v.push(pod(
            &format!("ns-{}", i % NAMESPACES),
            &format!("p{i}"),
            "node-2",
            ip,
            &format!("app-{}", i % 50),
        ));
    }
    v
}

fn np(json: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json).expect("a NetworkPolicy")
}

/// Policies that do not select the server: each selects one app in its namespace and admits
/// another app, with an egress ipBlock rule on every third.
fn unrelated(j: usize) -> NetworkPolicy {
    let mut egress = serde_json::json!([]);
    if j.is_multiple_of(3) {
        egress = serde_json::json!([{"to": [{"ipBlock": {"cidr": format!("10.100.{}.0/24", j % 256), "except": [format!("10.100.{}.128/25", j % 256)]}}]}]);
    }
    np(serde_json::json!({
        "metadata": {"namespace": format!("ns-{}", j % NAMESPACES), "name": format!("np-{j}")},
        "spec": {"podSelector": {"matchLabels": {"app": format!("app-{}", j % 50)}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app-{}", (j + 1) % 50)}}}],
                "ports": [{"port": 80 + (j % 20) as i32}]}],
            "egress": egress}
    }))
}

/// `k` policies selecting the server; the last admits the client on the named port.
fn selecting(k: usize) -> Vec<NetworkPolicy> {
    (0..k)
        .map(|i| {
            let from = if i + 1 == k { "client".to_string() } else { format!("app-{}", i % 50) };
            np(serde_json::json!({
                "metadata": {"namespace": "ns-0", "name": format!("server-{i}")},
                "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": from}}}],
                        "ports": [{"port": if i + 1 == k { serde_json::json!("http") } else { serde_json::json!(9000 + i) }}]}]}
            }))
        })
        .collect()
}

/// Resident memory, after handing freed heap back to the kernel (so transient allocations of
/// building the objects do not count).
fn rss_kib() -> u64 {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })?
        })
        .unwrap_or(0)
}

struct Size {
    policies: usize,
    _pins: Pins,
    dp: Datapath,
    sync_s: f64,
    translate_s: f64,
    entries: usize,
    established_ns: Vec<u32>,
    new_flow_ns: Vec<u32>,
    pod_ns: Vec<u32>,
    next_port: u16,
}

fn frame(sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let seg = frames::tcp(CLIENT, dst, sport, dport, 1, 0, flags, &[]);
    frames::ethernet(
        [2, 0xee, 0, 0, 0, 5],
        [2, 0xaa, 0, 0, 0, 5],
        frames::ETH_P_IP,
        &frames::ipv4_proto(CLIENT, dst, frames::IPPROTO_TCP, &seg),
    )
}

fn main() -> Result<()> {
    let (mut sizes_arg, mut n_pods, mut k_sel, mut rounds, mut samples) = (
        "0,100,1000,10000".to_owned(),
        10_000usize,
        1usize,
        3usize,
        3000usize,
    );
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context("missing value");
        match a.as_str() {
            "--policies" => sizes_arg = value()?,
            "--pods" => n_pods = value()?.parse()?,
            "--selecting" => k_sel = value()?.parse()?,
            "--rounds" => rounds = value()?.parse()?,
            "--samples" => samples = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let counts: Vec<usize> = sizes_arg
        .split(',')
        .map(|s| s.parse().context("--policies takes counts like 0,100"))
        .collect::<Result<_>>()?;
    if k_sel == 0 || n_pods < 4 {
        bail!("--selecting must be at least 1 and --pods at least 4");
    }

    // The agent's memory for the pods: trimmed objects as its store holds them, plus the
    // parsed snapshot the policy task keeps.
    let rss0 = rss_kib();
    let t = Instant::now();
    let pod_objects = pods(n_pods);
    let infos: Vec<PodInfo> = pod_objects.iter().filter_map(PodInfo::from_pod).collect();
    let pods_s = t.elapsed().as_secs_f64();
    let pods_kib = rss_kib().saturating_sub(rss0);
    eprintln!("{n_pods} pods built and trimmed in {pods_s:.2}s: {pods_kib} KiB");
    let namespaces: BTreeMap<String, policy::Labels> = (0..NAMESPACES)
        .map(|i| {
            let n = format!("ns-{i}");
            (
                n.clone(),
                policy::Labels::from([("kubernetes.io/metadata.name".to_owned(), n)]),
            )
        })
        .collect();

    let mut sizes = Vec::new();
    let mut largest = (0usize, 0u64);
    for &m in &counts {
        let rss_before = rss_kib();
        let objects: Vec<NetworkPolicy> = (0..m).map(unrelated).chain(selecting(k_sel)).collect();
        let t = Instant::now();
        let parsed: Vec<policy::Policy> = objects.iter().map(policy::Policy::parse).collect();
        let inputs = Inputs {
            namespaces: &namespaces,
            pods: &infos,
            policies: &parsed,
            node_addresses: &[Ipv4Addr::new(172, 30, 0, 11)],
        };
        let mut ids = Identities::default();
        let state = policy::translate(&inputs, &mut ids, |p| p.node == NODE);
        let translate_s = t.elapsed().as_secs_f64();
        let pins = Pins(PathBuf::from(format!(
            "/sys/fs/bpf/weft-bench-policy-{}-{m}",
            std::process::id()
        )));
        let mut dp = Datapath::open(&pins.0).context("opening a datapath (root and bpffs?)")?;
        for (ip, n) in [(CLIENT, 5), (SERVER, 7), (OTHER, 9)] {
            dp.upsert_endpoint(ip.into(), &endpoint(n))?;
        }
        let mut rec = PolicyReconciler::new(PolicyMaps::open(&pins.0)?);
        let endpoints: BTreeMap<Ipv4Addr, Desired> = state
            .endpoints
            .iter()
            .filter_map(|(ip, e)| Some((*ip, Desired::of(e)?)))
            .collect();
        let t2 = Instant::now();
        let stats = rec.apply(&state.ipcache, &endpoints)?;
        let sync_s = translate_s + t2.elapsed().as_secs_f64();
        let held = rss_kib().saturating_sub(rss_before);
        if m >= largest.0 {
            largest = (m, held);
        }
        eprintln!(
            "{m:>6} other policies: parsed+translated in {translate_s:.3}s, full sync {sync_s:.3}s ({} map entries), state {held} KiB",
            stats.written
        );
        // The measured flow must be admitted by the server's policy and nothing else.
        let syn = dp.test_run_from_pod(&frame(40000, SERVER, 8080, 0x02))?;
        if syn.verdict != 7 {
            bail!(
                "the client's SYN to the server was not delivered (verdict {})",
                syn.verdict
            );
        }
        if dp
            .test_run_from_pod(&frame(40001, SERVER, 8081, 0x02))?
            .verdict
            != 2
        {
            bail!("a SYN to a port no rule opens was not dropped");
        }
        drop(state);
        sizes.push(Size {
            policies: m,
            _pins: pins,
            dp,
            sync_s,
            translate_s,
            entries: stats.written,
            established_ns: vec![],
            new_flow_ns: vec![],
            pod_ns: vec![],
            next_port: 1024,
        });
    }
    let median = |v: &mut Vec<u32>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    for round in 1..=rounds {
        let mut raw: Vec<[Vec<u32>; 3]> = sizes.iter().map(|_| Default::default()).collect();
        let n = sizes.len();
        for k in 0..samples {
            for i in (0..n).map(|i| (i + k) % n) {
                let (s, raw) = (&mut sizes[i], &mut raw[i]);
                let ack = frame(40000, SERVER, 8080, 0x10);
                let syn = frame(s.next_port, SERVER, 8080, 0x02);
                let plain = frame(40000, OTHER, 8080, 0x10);
                s.next_port = s.next_port.checked_add(1).unwrap_or(1024);
                raw[0].push(s.dp.test_run("from_pod", &ack, 1)?.duration_ns);
                raw[1].push(s.dp.test_run("from_pod", &syn, 1)?.duration_ns);
                raw[2].push(s.dp.test_run("from_pod", &plain, 1)?.duration_ns);
            }
        }
        for (s, [est, new, pod]) in sizes.iter_mut().zip(raw.iter_mut()) {
            let (est, new, pod) = (median(est), median(new), median(pod));
            s.established_ns.push(est);
            s.new_flow_ns.push(new);
            s.pod_ns.push(pod);
            eprintln!("[round {round}/{rounds}] {:>6} policies: established {est:>4} ns, new flow {new:>4} ns, unselected pod to pod {pod:>4} ns", s.policies);
        }
    }
    let out: Vec<serde_json::Value> = sizes
        .iter()
        .map(|s| serde_json::json!({
            "policies": s.policies, "translate_s": s.translate_s, "sync_s": s.sync_s, "entries": s.entries,
            "established_ns": s.established_ns, "new_flow_ns": s.new_flow_ns, "pod_ns": s.pod_ns,
        }))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "pods": n_pods, "selecting": k_sel, "samples": samples, "rounds": rounds,
            "pods_kib": pods_kib, "largest_state_kib": largest.1, "rss_kib": rss_kib(), "sizes": out,
        })
    );
    Ok(())
}
