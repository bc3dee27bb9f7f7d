//! In-cluster Services: ClusterIP over TCP and UDP, ports, headless and ExternalName through
//! DNS, refusal without endpoints, ClientIP affinity, internalTrafficPolicy Local, hairpin and
//! kube-dns itself.

use std::collections::BTreeSet;
use std::time::Duration;

use super::fixture::*;
use super::{Ctx, Proxy};

fn apply(ctx: &Ctx<'_>, yaml: &str) {
    ctx.lab.kubectl_stdin(&["apply", "-f", "-"], yaml);
}

/// `echo`: TCP 80 and UDP 90 and TCP 81 to named container ports of every echo pod.
const ECHO_SVC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports:
  - {name: tcp, port: 80, targetPort: tcp-echo}
  - {name: udp, port: 90, targetPort: udp-echo, protocol: UDP}
  - {name: alt, port: 81, targetPort: tcp-alt}
"#;

/// The `echo` Service, created once and its endpoints awaited.
fn echo_service(ctx: &Ctx<'_>) -> String {
    apply(ctx, ECHO_SVC);
    let want: BTreeSet<String> = ctx.echo.iter().map(|b| b.ip.clone()).collect();
    wait_endpoints(ctx.lab, "echo", &want);
    cluster_ip(ctx.lab, "echo")
}

pub fn tcp_spreads_over_every_backend(ctx: &Ctx<'_>) {
    let vip = echo_service(ctx);
    for cli in [&ctx.cli1, &ctx.cli2] {
        first_tcp_reply(ctx.lab, From::Pod(&cli.name), &vip, 80);
    }
    let mut seen = BTreeSet::new();
    for cli in [&ctx.cli1, &ctx.cli2] {
        for _ in 0..20 {
            let r = tcp_reply(ctx.lab, From::Pod(&cli.name), &vip, 80);
            assert!(ctx.echo_hosts().contains(&r.host), "answered by a non-backend: {r:?}");
            // No NAT between pods: the backend sees the client pod's own address.
            assert_eq!(r.peer_ip, cli.ip, "{} -> {vip}:80 answered by {} seeing {}", cli.name, r.host, r.peer_ip);
            seen.insert(r.host);
        }
    }
    assert_eq!(seen, ctx.echo_hosts(), "40 connections reached every backend");
}

pub fn udp_answers(ctx: &Ctx<'_>) {
    let vip = echo_service(ctx);
    let mut seen = BTreeSet::new();
    for cli in [&ctx.cli1, &ctx.cli2] {
        for _ in 0..6 {
            let r = udp_reply(ctx.lab, From::Pod(&cli.name), &vip, 90);
            assert!(ctx.echo_hosts().contains(&r.host), "{r:?}");
            assert_eq!(r.peer_ip, cli.ip, "{} -> {vip}:90/udp seen as {}", cli.name, r.peer_ip);
            seen.insert(r.host);
        }
    }
    assert!(seen.len() >= 2, "12 UDP flows all went to {seen:?}");
}

pub fn several_ports_and_named_target_ports(ctx: &Ctx<'_>) {
    let vip = echo_service(ctx);
    // Port 81 -> containerPort named tcp-alt (8082): the third listener answers.
    let o = tcp(ctx.lab, From::Pod(&ctx.cli1.name), &vip, 81);
    assert!(o.ok && o.text.lines().any(|l| l.starts_with("alt echo-")), "{vip}:81 -> tcp-alt: {}", o.text);
    // One numeric port, targetPort defaulting to the port.
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo-one}\nspec:\n  selector: {app: echo}\n  ports: [{port: 8080}]\n",
    );
    let one = cluster_ip(ctx.lab, "echo-one");
    let r = first_tcp_reply(ctx.lab, From::Pod(&ctx.cli1.name), &one, TCP_ECHO);
    assert!(ctx.echo_hosts().contains(&r.host), "{r:?}");
    // The port that is not part of the Service is not served at the ClusterIP.
    let o = tcp(ctx.lab, From::Pod(&ctx.cli1.name), &one, 8082);
    assert!(!o.ok, "{one}:8082 is not a Service port, yet answered: {}", o.text);
}

/// `dig` in a client pod (through the pod's resolv.conf: kube-dns).
fn dig(ctx: &Ctx<'_>, args: &[&str]) -> String {
    let mut cmd = vec!["dig"];
    cmd.extend_from_slice(args);
    let (ok, out) = ctx.lab.exec(&format!("default/{}", ctx.cli1.name), &cmd, Duration::from_secs(30));
    assert!(ok, "dig {args:?}: {out}");
    out
}

pub fn headless_lists_the_pods(ctx: &Ctx<'_>) {
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo-headless}\nspec:\n  clusterIP: None\n  selector: {app: echo}\n  ports: [{port: 8080}]\n",
    );
    assert_eq!(cluster_ip(ctx.lab, "echo-headless"), "None");
    let want: BTreeSet<String> = ctx.echo.iter().map(|b| b.ip.clone()).collect();
    let got = crate::lab::eventually("headless DNS to list every pod", Duration::from_secs(60), || {
        let out = dig(ctx, &["+short", "echo-headless.default.svc.cluster.local"]);
        let ips: BTreeSet<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        (ips == want).then_some(ips)
    });
    // Clients connect to the pods themselves: each answers as itself.
    for ip in got {
        let r = tcp_reply(ctx.lab, From::Pod(&ctx.cli1.name), &ip, TCP_ECHO);
        let b = ctx.echo.iter().find(|b| b.ip == ip).expect("a listed pod");
        assert_eq!(r.host, b.name);
    }
}

pub fn external_name_is_a_cname(ctx: &Ctx<'_>) {
    let vip = echo_service(ctx);
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n  externalName: echo.default.svc.cluster.local\n",
    );
    let answer = crate::lab::eventually("the ExternalName CNAME", Duration::from_secs(60), || {
        let out = dig(ctx, &["+noall", "+answer", "ext.default.svc.cluster.local"]);
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().ends_with(&["CNAME", "echo.default.svc.cluster.local."]))
            .then_some(out)
    });
    assert!(answer.contains(&vip), "the CNAME chain ends at echo's ClusterIP {vip}:\n{answer}");
    // The name works for clients: through DNS to the ClusterIP.
    let r = tcp_reply(ctx.lab, From::Pod(&ctx.cli1.name), "ext", 80);
    assert!(ctx.echo_hosts().contains(&r.host), "{r:?}");
}

pub fn no_endpoints_is_refused_at_once(ctx: &Ctx<'_>) {
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nothing}\n  ports:\n  - {name: tcp, port: 80}\n  - {name: udp, port: 90, protocol: UDP}\n",
    );
    let vip = cluster_ip(ctx.lab, "empty");
    // kube-proxy REJECTs in netfilter (ICMP port unreachable for both protocols; connect()
    // turns it into ECONNREFUSED); weft refuses connect()/sendmsg() at the socket with
    // ECONNREFUSED, and per packet with a TCP RST or ICMP port unreachable. To the client it
    // is the same: refused at once, never a timeout.
    let settle = crate::lab::eventually("the Service without endpoints to be refused", Duration::from_secs(30), || {
        let o = tcp(ctx.lab, From::Pod(&ctx.cli1.name), &vip, 80);
        o.refused().then_some(o)
    });
    let o = tcp(ctx.lab, From::Pod(&ctx.cli1.name), &vip, 80);
    assert!(o.refused() && o.took < Duration::from_secs(3), "TCP {vip}:80 ({:?}): {} (first: {:?})", o.took, o.text, settle.took);
    let o = udp(ctx.lab, From::Pod(&ctx.cli1.name), &vip, 90);
    assert!(o.refused() && o.took < Duration::from_secs(3), "UDP {vip}:90 ({:?}): {}", o.took, o.text);
}

pub fn session_affinity_keeps_a_client(ctx: &Ctx<'_>) {
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: sticky}\nspec:\n  selector: {app: echo}\n  sessionAffinity: ClientIP\n  \
         sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n  ports: [{port: 80, targetPort: tcp-echo}]\n",
    );
    let vip = cluster_ip(ctx.lab, "sticky");
    let want: BTreeSet<String> = ctx.echo.iter().map(|b| b.ip.clone()).collect();
    wait_endpoints(ctx.lab, "sticky", &want);
    for cli in [&ctx.cli1, &ctx.cli2] {
        first_tcp_reply(ctx.lab, From::Pod(&cli.name), &vip, 80);
        let hosts: BTreeSet<String> = hosts_of(ctx.lab, From::Pod(&cli.name), &vip, 80, 15).into_iter().collect();
        assert_eq!(hosts.len(), 1, "{}: 15 connections with ClientIP affinity reached {hosts:?}", cli.name);
    }
}

pub fn internal_traffic_policy_local(ctx: &Ctx<'_>) {
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: itp}\nspec:\n  selector: {app: echo}\n  internalTrafficPolicy: Local\n  \
         ports: [{port: 80, targetPort: tcp-echo}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: itp-n1}\nspec:\n  selector: {side: n1}\n  internalTrafficPolicy: Local\n  \
         ports: [{port: 80, targetPort: tcp-echo}]\n",
    );
    let vip = cluster_ip(ctx.lab, "itp");
    for (i, cli) in [&ctx.cli1, &ctx.cli2].into_iter().enumerate() {
        first_tcp_reply(ctx.lab, From::Pod(&cli.name), &vip, 80);
        let hosts: BTreeSet<String> = hosts_of(ctx.lab, From::Pod(&cli.name), &vip, 80, 16).into_iter().collect();
        assert_eq!(hosts, ctx.echo_on(i), "{} on {} reached only its node's backends", cli.name, ctx.nodes[i].0);
    }
    // node-2 has no endpoint of itp-n1: its clients get no answer. kube-proxy drops such
    // traffic (the client times out); weft refuses it at once (no backend for this node).
    let vip = cluster_ip(ctx.lab, "itp-n1");
    first_tcp_reply(ctx.lab, From::Pod(&ctx.cli1.name), &vip, 80);
    let o = tcp(ctx.lab, From::Pod(&ctx.cli2.name), &vip, 80);
    assert!(!o.ok, "a node without local endpoints answered: {}", o.text);
    match ctx.proxy {
        Proxy::Weft => assert!(o.refused(), "weft refuses: {} ({:?})", o.text, o.took),
        _ => assert!(!o.refused() && o.took >= Duration::from_secs(3), "kube-proxy drops: {} ({:?})", o.text, o.took),
    }
}

pub fn hairpin(ctx: &Ctx<'_>) {
    apply(
        ctx,
        "apiVersion: v1\nkind: Service\nmetadata: {name: solo}\nspec:\n  selector: {solo: \"yes\"}\n  ports: [{port: 80, targetPort: tcp-echo}]\n",
    );
    let vip = cluster_ip(ctx.lab, "solo");
    let r = first_tcp_reply(ctx.lab, From::Pod("echo-2a"), &vip, 80);
    assert_eq!(r.host, "echo-2a", "the only backend answered its own request through the Service");
    let r = udp_reply(ctx.lab, From::Pod("echo-2a"), &cluster_ip(ctx.lab, "echo"), 90);
    assert!(ctx.echo_hosts().contains(&r.host), "{r:?}");
}

/// nslookup output lines with runs of whitespace collapsed.
fn answer_lines(out: &str) -> Vec<String> {
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

pub fn dns_udp_and_tcp(ctx: &Ctx<'_>) {
    // The seeds' check: busybox's nslookup (UDP) asks kube-dns. (Debian's busybox, which
    // stands in for busybox:1.28, applies the search list only to names without a dot, and
    // also tries the name as given: the last lines say NXDOMAIN, the answer is above them.)
    let out = crate::lab::eventually("nslookup kubernetes", Duration::from_secs(60), || {
        let (_, out) = ctx.lab.exec("default/bb", &["nslookup", "kubernetes"], Duration::from_secs(30));
        answer_lines(&out).contains(&"Address: 10.32.0.1".to_string()).then_some(out)
    });
    assert!(
        answer_lines(&out).iter().any(|l| l.starts_with("Server:") && l.ends_with("10.32.0.10")),
        "asked kube-dns: {out}"
    );
    // The same over TCP, and a Service name, with dig.
    for tcp in [false, true] {
        let mut args = vec!["+short", "@10.32.0.10", "kubernetes.default.svc.cluster.local"];
        if tcp {
            args.insert(0, "+tcp");
        }
        assert_eq!(dig(ctx, &args).trim(), "10.32.0.1", "dig {args:?}");
    }
    let vip = echo_service(ctx);
    assert_eq!(dig(ctx, &["+tcp", "+short", "echo.default.svc.cluster.local"]).trim(), vip);
    assert_eq!(dig(ctx, &["+short", "echo.default.svc.cluster.local"]).trim(), vip);
}
