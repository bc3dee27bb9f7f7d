//! The Service conformance suite: one body, run against kube-proxy (iptables, nftables) with
//! the reference bridge CNI and against weft replacing kube-proxy, checking what a user of
//! kube-proxy expects the way users check it: client pods running nc, dig, busybox and a small
//! UDP client, the outside host (203.0.113.10) as an external client, echo backends that
//! answer their hostname and the client address they saw.
//!
//! Every check runs even when an earlier one failed (each makes its own Services); the run
//! ends with a table of all checks, then fails if any did. Where weft and kube-proxy
//! legitimately differ, the check says so and accepts each one's behaviour by name.

pub mod fixture;

mod churn;
mod clusterip;
mod external;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::lab::Lab;
use fixture::*;

/// Who implements Services in the lab under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    KubeProxyIptables,
    KubeProxyNftables,
    /// weft's eBPF Service translation, no kube-proxy.
    Weft,
}

impl Proxy {
    pub fn is_kube_proxy(self) -> bool {
        self != Proxy::Weft
    }
}

/// What every check gets: the lab, who proxies, the nodes and the standing workload.
pub struct Ctx<'a> {
    pub lab: &'a Lab,
    pub proxy: Proxy,
    /// (name, InternalIP), node-1 first.
    pub nodes: Vec<(String, String)>,
    /// Echo backends labelled `app: echo`: two on node-1 (`side: n1`), one on node-2.
    pub echo: Vec<Backend>,
    /// Toolbox clients on node-1 and node-2.
    pub cli1: Backend,
    pub cli2: Backend,
}

impl Ctx<'_> {
    pub fn node_ip(&self, i: usize) -> &str {
        &self.nodes[i].1
    }

    pub fn echo_hosts(&self) -> std::collections::BTreeSet<String> {
        self.echo.iter().map(|b| b.name.clone()).collect()
    }

    pub fn echo_on(&self, node: usize) -> std::collections::BTreeSet<String> {
        self.echo.iter().filter(|b| b.node == self.nodes[node].0).map(|b| b.name.clone()).collect()
    }
}

/// The address the lab's switch routes to node-1 for the LoadBalancer's ingress IP (what a
/// load balancer announcing it would do).
pub const LB_IP: &str = "198.51.100.10";
/// The externalIP, routed by the switch to node-2.
pub const EXTERNAL_IP: &str = "198.51.100.20";
/// The outside host.
pub const OUTSIDE: &str = "203.0.113.10";

/// The standing workload: echo backends, clients, and a busybox for the seeds' nslookup.
fn workload(nodes: &[(String, String)]) -> String {
    let (n1, n2) = (&nodes[0].0, &nodes[1].0);
    let mut m = String::new();
    m.push_str(&echo_pod("echo-1a", n1, &[("app", "echo"), ("side", "n1")]));
    m.push_str(&echo_pod("echo-1b", n1, &[("app", "echo"), ("side", "n1")]));
    m.push_str(&echo_pod("echo-2a", n2, &[("app", "echo"), ("side", "n2"), ("solo", "yes")]));
    m.push_str(&client_pod("cli-1", n1, NETSHOOT));
    m.push_str(&client_pod("cli-2", n2, NETSHOOT));
    m.push_str(&client_pod("bb", n1, "busybox:1.28"));
    m
}

type Check = fn(&Ctx<'_>);

/// Brings a lab up with `up_args` under `state`, runs every check, brings it down and checks
/// what it left; fails listing every failed check.
pub fn run(state: &str, up_args: &[&str], proxy: Proxy) {
    let mut lab = Lab::new(state);
    let t_up = Instant::now();
    lab.up(up_args, Duration::from_secs(120 * 60));
    let up = t_up.elapsed();

    let nodes = crate::weft::nodes(&lab);
    assert!(nodes.len() >= 2, "the suite needs two nodes: {nodes:?}");
    lab.kubectl_stdin(&["apply", "-f", "-"], &workload(&nodes));
    lab.kubectl(&[
        "wait", "--for=condition=Ready", "--timeout=180s",
        "pod/echo-1a", "pod/echo-1b", "pod/echo-2a", "pod/cli-1", "pod/cli-2", "pod/bb",
    ]);
    let echo = pods_with(&lab, "app=echo");
    let client = |name: &str| pods_with(&lab, "role=client").into_iter().find(|p| p.name == name).expect("client pod");
    let ctx = Ctx { lab: &lab, proxy, cli1: client("cli-1"), cli2: client("cli-2"), nodes, echo };
    assert_eq!(ctx.echo.len(), 3, "{:?}", ctx.echo);

    let checks: &[(&str, Check)] = &[
        ("ClusterIP TCP reaches every backend, client address kept", clusterip::tcp_spreads_over_every_backend),
        ("ClusterIP UDP", clusterip::udp_answers),
        ("several ports, named targetPorts, one numeric port", clusterip::several_ports_and_named_target_ports),
        ("headless: DNS A records of the pods, no ClusterIP", clusterip::headless_lists_the_pods),
        ("ExternalName: DNS CNAME", clusterip::external_name_is_a_cname),
        ("no endpoints: refused at once (TCP and UDP)", clusterip::no_endpoints_is_refused_at_once),
        ("sessionAffinity ClientIP keeps a client on one backend", clusterip::session_affinity_keeps_a_client),
        ("internalTrafficPolicy Local stays on the client's node", clusterip::internal_traffic_policy_local),
        ("hairpin: a pod reaches itself through its Service", clusterip::hairpin),
        ("DNS through kube-dns 10.32.0.10, UDP and TCP", clusterip::dns_udp_and_tcp),
        ("NodePort from the outside host and another node; Cluster SNATs", external::node_port_cluster),
        ("externalTrafficPolicy Local keeps the client IP, local nodes only", external::external_traffic_policy_local),
        ("externalIPs", external::external_ips),
        ("LoadBalancer status ingress IP", external::load_balancer_ingress),
        ("Deployment 0 -> 5 -> 1 under load: no failed request", churn::scale_under_load),
        ("UDP flow leaves a removed backend at once", churn::udp_moves_off_a_removed_backend),
    ];

    let t_checks = Instant::now();
    let mut results = vec![];
    for (name, check) in checks {
        eprintln!("--> {name}");
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| check(&ctx)));
        let took = t.elapsed();
        let failure = r.err().map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())
        });
        eprintln!("{} {name} ({:.1} s)", if failure.is_none() { "✓" } else { "✗" }, took.as_secs_f64());
        results.push((*name, took, failure));
    }
    let checks_took = t_checks.elapsed();

    let t_down = Instant::now();
    let left = lab.down();
    let down = t_down.elapsed();

    eprintln!("\nService suite, {proxy:?} ({}):", up_args.join(" "));
    for (name, took, failure) in &results {
        eprintln!("  {} {name:<70} {:>6.1} s", if failure.is_none() { "✓" } else { "✗" }, took.as_secs_f64());
    }
    eprintln!(
        "lab timing: up {:.1} s, checks {:.1} s, down {:.1} s",
        up.as_secs_f64(),
        checks_took.as_secs_f64(),
        down.as_secs_f64()
    );
    let failed: Vec<String> =
        results.iter().filter_map(|(n, _, f)| f.as_ref().map(|f| format!("{n}: {f}"))).collect();
    assert!(failed.is_empty(), "{} of {} checks failed:\n{}", failed.len(), results.len(), failed.join("\n\n"));
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
}
