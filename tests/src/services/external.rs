//! Traffic from outside the cluster: NodePort from the outside host and from nodes,
//! externalTrafficPolicy Cluster (source translated so replies return) and Local (client
//! address kept, only nodes with a local endpoint answer), externalIPs and LoadBalancer
//! ingress IPs (routed to a node by the lab's switch, as a load balancer would announce them).

use std::collections::BTreeSet;
use std::time::Duration;

use super::fixture::*;
use super::{Ctx, Proxy, EXTERNAL_IP, LB_IP, OUTSIDE};

fn apply(ctx: &Ctx<'_>, yaml: &str) {
    ctx.lab.kubectl_stdin(&["apply", "-f", "-"], yaml);
}

fn service(name: &str, selector: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{{selector}}}\n{extra}  \
         ports: [{{port: 80, targetPort: tcp-echo}}]\n"
    )
}

/// The lab's switch routes `addr` to a node, as a load balancer announcing it would.
fn route_on_switch(ctx: &Ctx<'_>, addr: &str, node: usize) {
    ctx.lab.ok(
        &["node-exec", "switch", "--", "ip", "route", "replace", &format!("{addr}/32"), "via", ctx.node_ip(node)],
        Duration::from_secs(30),
    );
}

const OUT: From<'static> = From::Host("outside");

pub fn node_port_cluster(ctx: &Ctx<'_>) {
    apply(ctx, &service("np-cluster", "side: n1", "  type: NodePort\n"));
    let np = node_port(ctx.lab, "np-cluster");
    let n1 = ctx.echo_on(0);
    // Into node-1, whose pods are the backends.
    let r = first_tcp_reply(ctx.lab, OUT, ctx.node_ip(0), np);
    assert!(n1.contains(&r.host), "{r:?}");
    // Into node-2, which has no backend: the request goes on to node-1 with node-2's address
    // as its source, so the reply comes back through node-2.
    for _ in 0..4 {
        let r = first_tcp_reply(ctx.lab, OUT, ctx.node_ip(1), np);
        assert!(n1.contains(&r.host), "{r:?}");
        assert_eq!(r.peer_ip, ctx.node_ip(1), "externalTrafficPolicy Cluster: the backend sees node-2's address");
    }
    // From the nodes themselves: another node's NodePort, and the node's own.
    let n2 = &ctx.nodes[1].0;
    for target in [ctx.node_ip(0), ctx.node_ip(1)] {
        let r = first_tcp_reply(ctx.lab, From::Host(n2), target, np);
        assert!(n1.contains(&r.host), "{n2} -> {target}:{np}: {r:?}");
    }
}

pub fn external_traffic_policy_local(ctx: &Ctx<'_>) {
    apply(ctx, &service("np-local", "side: n1", "  type: NodePort\n  externalTrafficPolicy: Local\n"));
    let np = node_port(ctx.lab, "np-local");
    let n1 = ctx.echo_on(0);
    let mut seen = BTreeSet::new();
    first_tcp_reply(ctx.lab, OUT, ctx.node_ip(0), np);
    for _ in 0..8 {
        let r = tcp_reply(ctx.lab, OUT, ctx.node_ip(0), np);
        assert!(n1.contains(&r.host), "{r:?}");
        assert_eq!(r.peer_ip, OUTSIDE, "externalTrafficPolicy Local keeps the client's address");
        seen.insert(r.host);
    }
    assert_eq!(seen, n1, "both local backends take outside clients");
    // node-2 has no local endpoint: it does not answer outside clients. kube-proxy drops
    // (the client times out); weft refuses with a RST (nothing to forward to here).
    let o = tcp(ctx.lab, OUT, ctx.node_ip(1), np);
    assert!(!o.ok, "node-2 answered without a local endpoint: {}", o.text);
    match ctx.proxy {
        Proxy::Weft => assert!(o.refused(), "weft refuses: {} ({:?})", o.text, o.took),
        _ => assert!(!o.refused() && o.took >= Duration::from_secs(3), "kube-proxy drops: {} ({:?})", o.text, o.took),
    }
    // Traffic from node-2 itself still reaches the Service (every endpoint, as kube-proxy
    // short-circuits in-node traffic to a Local NodePort).
    let r = first_tcp_reply(ctx.lab, From::Host(&ctx.nodes[1].0), ctx.node_ip(1), np);
    assert!(n1.contains(&r.host), "{r:?}");
}

pub fn external_ips(ctx: &Ctx<'_>) {
    apply(ctx, &service("ext-ip", "side: n1", &format!("  externalIPs: [{EXTERNAL_IP}]\n")));
    route_on_switch(ctx, EXTERNAL_IP, 1);
    let n1 = ctx.echo_on(0);
    // From outside, in through node-2, on to node-1's backends.
    let r = first_tcp_reply(ctx.lab, OUT, EXTERNAL_IP, 80);
    assert!(n1.contains(&r.host), "{r:?}");
    // Pods reach the externalIP too (translated for in-cluster clients). kube-proxy
    // masquerades such traffic to the node's address, weft keeps the pod's: both reach it.
    let r = first_tcp_reply(ctx.lab, From::Pod(&ctx.cli2.name), EXTERNAL_IP, 80);
    assert!(n1.contains(&r.host), "{r:?}");
}

pub fn load_balancer_ingress(ctx: &Ctx<'_>) {
    apply(ctx, &service("lb", "app: echo", "  type: LoadBalancer\n"));
    // No cloud: set the status a load-balancer controller would, and route the address.
    ctx.lab.kubectl(&[
        "patch",
        "service",
        "lb",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!("{{\"status\":{{\"loadBalancer\":{{\"ingress\":[{{\"ip\":\"{LB_IP}\"}}]}}}}}}"),
    ]);
    route_on_switch(ctx, LB_IP, 0);
    first_tcp_reply(ctx.lab, OUT, LB_IP, 80);
    let mut seen = BTreeSet::new();
    for _ in 0..16 {
        let r = tcp_reply(ctx.lab, OUT, LB_IP, 80);
        assert!(ctx.echo_hosts().contains(&r.host), "{r:?}");
        seen.insert(r.host);
    }
    assert!(seen.len() >= 2, "16 connections to the load-balancer IP all reached {seen:?}");
    // Its NodePort works as well.
    let np = node_port(ctx.lab, "lb");
    first_tcp_reply(ctx.lab, OUT, ctx.node_ip(1), np);
}
