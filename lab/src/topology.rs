//! The lab's network: a switch namespace (bridge + router to the outside host), the
//! control-plane namespace, one namespace per node and the outside host. Nothing is created in
//! the machine's root namespace: every veth is created inside a lab namespace with its peer
//! placed straight into another.

use anyhow::Context;
use ipnetwork::Ipv4Network;
use std::net::Ipv4Addr;

use crate::sh::{self, ip_in, sysctl_in};
use crate::spec::{
    NodePlan, CP_IP, CP_NS, OUTSIDE_GW, OUTSIDE_IP, OUTSIDE_NET, OUTSIDE_NS, SWITCH_NS, UNDERLAY,
    UNDERLAY_GW,
};

/// Creates switch, outside host, control-plane namespace and the node namespaces.
pub fn create(nodes: &[NodePlan]) -> anyhow::Result<()> {
    create_switch().context("creating the switch namespace")?;
    create_outside().context("creating the outside host")?;
    attach(CP_NS, "p-cp", CP_IP).context("attaching the control plane")?;
    for n in nodes {
        add_node(n)?;
    }
    Ok(())
}

/// Creates one node's namespace and wires it to the switch (also for a node added later).
pub fn add_node(n: &NodePlan) -> anyhow::Result<()> {
    let port = format!("p-{}", n.name);
    if n.subnet == UNDERLAY {
        attach(&n.netns, &port, n.ip).with_context(|| format!("attaching {}", n.name))?;
    } else {
        route_in(n, &port).with_context(|| format!("attaching {} on its own subnet", n.name))?;
    }
    // Nodes forward pod traffic; bridged pod traffic must traverse iptables so that
    // kube-proxy's rules see same-node Service traffic (per-netns since Linux 5.3).
    sysctl_in(&n.netns, "net.ipv4.ip_forward", "1")?;
    sysctl_in(&n.netns, "net.bridge.bridge-nf-call-iptables", "1")?;
    Ok(())
}

/// Removes a node's namespace (its link to the switch goes with it).
pub fn remove_node(n: &NodePlan) -> anyhow::Result<()> {
    sh::ip(["netns", "del", &n.netns])?;
    Ok(())
}

/// A routed node: a point-to-point link to the switch, which routes its subnet (no bridge).
fn route_in(n: &NodePlan, port: &str) -> anyhow::Result<()> {
    add_netns(&n.netns)?;
    ip_in(SWITCH_NS, &["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &n.netns])?;
    ip_in(SWITCH_NS, &["addr", "add", &cidr(n.gateway, n.subnet), "dev", port])?;
    ip_in(SWITCH_NS, &["link", "set", port, "up"])?;
    ip_in(&n.netns, &["addr", "add", &cidr(n.ip, n.subnet), "dev", "eth0"])?;
    ip_in(&n.netns, &["link", "set", "eth0", "up"])?;
    ip_in(&n.netns, &["route", "add", "default", "via", &n.gateway.to_string()])?;
    Ok(())
}

fn add_netns(ns: &str) -> anyhow::Result<()> {
    sh::ip(["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    Ok(())
}

fn cidr(addr: Ipv4Addr, net: Ipv4Network) -> String {
    format!("{addr}/{}", net.prefix())
}

fn create_switch() -> anyhow::Result<()> {
    add_netns(SWITCH_NS)?;
    ip_in(SWITCH_NS, &["link", "add", "br0", "type", "bridge"])?;
    ip_in(SWITCH_NS, &["addr", "add", &cidr(UNDERLAY_GW, UNDERLAY), "dev", "br0"])?;
    ip_in(SWITCH_NS, &["link", "set", "br0", "up"])?;
    // The switch is also the router between the underlay and the outside host's subnet.
    sysctl_in(SWITCH_NS, "net.ipv4.ip_forward", "1")?;
    // A plain L2 switch: bridged underlay frames must not go through the switch's netfilter.
    sysctl_in(SWITCH_NS, "net.bridge.bridge-nf-call-iptables", "0")?;
    Ok(())
}

fn create_outside() -> anyhow::Result<()> {
    add_netns(OUTSIDE_NS)?;
    ip_in(SWITCH_NS, &["link", "add", "p-out", "type", "veth", "peer", "name", "eth0", "netns", OUTSIDE_NS])?;
    ip_in(SWITCH_NS, &["addr", "add", &cidr(OUTSIDE_GW, OUTSIDE_NET), "dev", "p-out"])?;
    ip_in(SWITCH_NS, &["link", "set", "p-out", "up"])?;
    ip_in(OUTSIDE_NS, &["addr", "add", &cidr(OUTSIDE_IP, OUTSIDE_NET), "dev", "eth0"])?;
    ip_in(OUTSIDE_NS, &["link", "set", "eth0", "up"])?;
    ip_in(OUTSIDE_NS, &["route", "add", "default", "via", &OUTSIDE_GW.to_string()])?;
    Ok(())
}

/// Creates `ns` and plugs it into the switch: `eth0` with `addr` on the underlay, default
/// route via the switch.
fn attach(ns: &str, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
    add_netns(ns)?;
    ip_in(SWITCH_NS, &["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
    ip_in(SWITCH_NS, &["link", "set", port, "master", "br0", "up"])?;
    ip_in(ns, &["addr", "add", &cidr(addr, UNDERLAY), "dev", "eth0"])?;
    ip_in(ns, &["link", "set", "eth0", "up"])?;
    ip_in(ns, &["route", "add", "default", "via", &UNDERLAY_GW.to_string()])?;
    Ok(())
}

/// Routes the control plane to every node's pod CIDR via that node's underlay address. The
/// lab's control plane is no node (no CNI runs there), yet it must reach pods as a cluster's
/// control-plane node does: the API server's pod and service proxy dials pod IPs (the e2e DNS
/// and proxy tests read through it). With either CNI. A node on its own routed subnet gets no
/// such route: it is not on-link, and nothing between it and the control plane routes pod
/// addresses (that topology exists to prove only the tunnel carries them).
pub fn route_cp_to_pods(nodes: &[(NodePlan, Ipv4Network)]) -> anyhow::Result<()> {
    for (node, cidr) in nodes.iter().filter(|(n, _)| n.subnet == UNDERLAY) {
        ip_in(CP_NS, &["route", "replace", &cidr.to_string(), "via", &node.ip.to_string()])
            .with_context(|| format!("route on the control plane to {}'s pods", node.name))?;
    }
    Ok(())
}

/// Removes the control plane's route to a removed node's pods.
pub fn unroute_cp_from_pods(cidr: Ipv4Network) -> anyhow::Result<()> {
    ip_in(CP_NS, &["route", "del", &cidr.to_string()])?;
    Ok(())
}

/// Routes each node, and the control plane, to every other node's pod CIDR via that node's
/// underlay address (the bridge CNI's "host-gw" style), and masquerades pod traffic leaving
/// the cluster network.
pub fn route_pod_cidrs(nodes: &[(NodePlan, Ipv4Network)]) -> anyhow::Result<()> {
    route_cp_to_pods(nodes)?;
    for (me, my_cidr) in nodes {
        for (other, cidr) in nodes {
            if other.name == me.name {
                continue;
            }
            ip_in(&me.netns, &["route", "replace", &cidr.to_string(), "via", &other.ip.to_string()])
                .with_context(|| format!("route on {} to {}'s pods", me.name, other.name))?;
        }
        masquerade_egress(&me.netns, *my_cidr)?;
    }
    Ok(())
}

/// Pod-to-pod traffic keeps its addresses; traffic to anything else leaves with the node's.
fn masquerade_egress(ns: &str, pod_cidr: Ipv4Network) -> anyhow::Result<()> {
    let rule = pod_masquerade_rule(pod_cidr);
    // -C first so a repeated call does not stack duplicates.
    let mut check = sh::in_netns(ns, "iptables");
    check.args(["-t", "nat", "-C"]).args(&rule);
    if sh::run(&mut check).is_err() {
        let mut add = sh::in_netns(ns, "iptables");
        add.args(["-t", "nat", "-A"]).args(&rule);
        sh::run(&mut add).with_context(|| format!("masquerade rule in {ns}"))?;
    }
    Ok(())
}

fn pod_masquerade_rule(pod_cidr: Ipv4Network) -> Vec<String> {
    [
        "POSTROUTING", "-s", &pod_cidr.to_string(), "!", "-d",
        &crate::spec::CLUSTER_CIDR.to_string(), "-m", "comment", "--comment",
        "weft-lab: pod egress", "-j", "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerade_spares_pod_to_pod_traffic() {
        let r = pod_masquerade_rule("10.200.1.0/24".parse().unwrap()).join(" ");
        assert!(r.starts_with("POSTROUTING -s 10.200.1.0/24 ! -d 10.200.0.0/16"), "{r}");
        assert!(r.ends_with("-j MASQUERADE"));
    }
}
