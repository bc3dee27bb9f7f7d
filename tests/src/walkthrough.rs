//! The seeds' walkthrough, run against a lab through the CLI a user types: nginx ×2 on
//! different nodes behind a Service, curl from a pod to both endpoints and the ClusterIP,
//! `nslookup kubernetes` through kube-dns, pod-to-pod ping across nodes, ping to the outside
//! host, `lab status` and `lab logs`; then `lab down` must leave nothing behind.

use std::time::{Duration, Instant};

use serde_json::Value;
use crate::lab::{eventually, Lab};

const WELCOME: &str = "Welcome to nginx!";

/// The seeds' nginx Deployment; anti-affinity pins the two replicas to different nodes.
const NGINX: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  replicas: 2
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: nginx}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn pods_with_label(lab: &Lab, selector: &str) -> Vec<(String, String, String)> {
    let v = json(&lab.kubectl(&["get", "pods", "-l", selector, "-o", "json"]));
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["status"]["podIP"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Brings a lab up with `up_args` under `state`, runs the walkthrough, brings it down, checks
/// the leftovers and prints the timings.
pub fn run(state: &str, up_args: &[&str]) {
    let mut lab = Lab::new(state);

    let t_up = Instant::now();
    // Generous: a cold first run also builds Kubernetes from the Go module proxy.
    lab.up(up_args, Duration::from_secs(120 * 60));
    let up = t_up.elapsed();
    let t_checks = Instant::now();

    // The control plane handed out one /24 per node from the cluster CIDR.
    let status = json(&lab.ok(&["status", "-o", "json"], Duration::from_secs(60)));
    let want_nodes: usize = up_args
        .iter()
        .position(|a| *a == "--nodes")
        .and_then(|i| up_args.get(i + 1)?.parse().ok())
        .unwrap_or(3);
    assert!(want_nodes >= 2, "the walkthrough needs two nodes for its cross-node checks");
    let nodes = status["status"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), want_nodes, "{status:#}");
    let mut cidrs: Vec<&str> = nodes.iter().map(|n| n["pod_cidr"].as_str().unwrap()).collect();
    for c in &cidrs {
        assert!(c.starts_with("10.200.") && c.ends_with("/24"), "pod CIDR {c}");
    }
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), want_nodes, "pod CIDRs are distinct: {cidrs:?}");
    assert!(nodes.iter().all(|n| n["ready"] == true), "all nodes Ready: {status:#}");
    let svc_ip = |name: &str| {
        status["status"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["cluster_ip"].as_str().unwrap().to_string())
    };
    assert_eq!(svc_ip("kubernetes").as_deref(), Some("10.32.0.1"));
    assert_eq!(svc_ip("kube-dns").as_deref(), Some("10.32.0.10"));

    // kubectl apply / expose / run, as the seeds type them.
    lab.kubectl_stdin(&["apply", "-f", "-"], NGINX);
    lab.kubectl(&["rollout", "status", "deployment/nginx", "--timeout=180s"]);
    lab.kubectl(&["expose", "deployment", "nginx", "--port", "80"]);
    lab.kubectl(&["run", "curl", "--image=radial/busyboxplus:curl", "--restart=Never", "--", "sleep", "3600"]);
    lab.kubectl(&["run", "busybox", "--image=busybox:1.28", "--restart=Never", "--", "sleep", "3600"]);
    lab.kubectl(&["wait", "--for=condition=Ready", "pod/curl", "pod/busybox", "--timeout=180s"]);

    let nginx = pods_with_label(&lab, "app=nginx");
    assert_eq!(nginx.len(), 2, "{nginx:?}");
    assert_ne!(nginx[0].1, nginx[1].1, "the nginx replicas run on different nodes: {nginx:?}");
    let cluster_ip = lab
        .kubectl(&["get", "service", "nginx", "-o", "jsonpath={.spec.clusterIP}"])
        .trim()
        .to_string();
    assert!(cluster_ip.starts_with("10.32.0."), "ClusterIP {cluster_ip}");

    // The EndpointSlice controller published both pods.
    eventually("nginx endpoints in lab status", Duration::from_secs(60), || {
        let s = json(&lab.ok(&["status", "-o", "json"], Duration::from_secs(60)));
        let svc = s["status"]["services"].as_array()?.iter().find(|v| v["name"] == "nginx")?.clone();
        let mut eps: Vec<String> =
            svc["endpoints"].as_array()?.iter().filter_map(|e| e.as_str().map(String::from)).collect();
        eps.sort();
        let mut want: Vec<String> = nginx.iter().map(|p| p.2.clone()).collect();
        want.sort();
        (eps == want).then_some(())
    });

    // curl both endpoints directly, then the Service.
    for (name, node, ip) in &nginx {
        let (ok, out) = lab.exec("default/curl", &["curl", "-s", "--max-time", "5", &format!("http://{ip}/")], Duration::from_secs(30));
        assert!(ok && out.contains(WELCOME), "curl {name} on {node} at {ip}: {out}");
    }
    eventually("the nginx ClusterIP to answer", Duration::from_secs(60), || {
        let (ok, out) = lab.exec("default/curl", &["curl", "-s", "--max-time", "3", &format!("http://{cluster_ip}/")], Duration::from_secs(30));
        (ok && out.contains(WELCOME)).then_some(())
    });
    // Several requests through the Service: kube-proxy spreads them, all must succeed.
    for _ in 0..6 {
        let (ok, out) = lab.exec("default/curl", &["curl", "-s", "--max-time", "3", &format!("http://{cluster_ip}/")], Duration::from_secs(30));
        assert!(ok && out.contains(WELCOME), "curl ClusterIP {cluster_ip}: {out}");
    }

    // DNS through kube-dns: the `kubernetes` Service's name resolves to its ClusterIP.
    // busybox's nslookup also tries the other search domains (NXDOMAIN, non-zero exit), so
    // the answer is judged by its lines, as a user reads it.
    let answer = eventually("nslookup kubernetes to answer", Duration::from_secs(60), || {
        let (_, out) = lab.exec("default/busybox", &["nslookup", "kubernetes"], Duration::from_secs(30));
        answer_lines(&out).contains(&"Address: 10.32.0.1".to_string()).then_some(out)
    });
    let lines = answer_lines(&answer);
    assert!(lines.iter().any(|l| l.starts_with("Server:") && l.ends_with("10.32.0.10")), "asked kube-dns: {answer}");
    assert!(lines.contains(&"Name: kubernetes.default.svc.cluster.local".to_string()), "{answer}");
    let (ok, out) = lab.exec("default/busybox", &["nslookup", "nginx.default.svc.cluster.local"], Duration::from_secs(30));
    assert!(ok && out.contains(&cluster_ip), "nslookup nginx: {out}");

    // Pod to pod across nodes, and out to the outside host.
    let (_, curl_node, curl_ip) = pods_with_label(&lab, "run=curl").remove(0);
    let remote: Vec<_> = nginx.iter().filter(|p| p.1 != curl_node).collect();
    assert!(!remote.is_empty(), "one nginx runs on another node than the curl pod");
    for (name, node, ip) in remote {
        let (ok, out) = lab.exec("default/curl", &["ping", "-c", "2", "-W", "2", ip], Duration::from_secs(30));
        assert!(ok, "ping from {curl_node} to pod {ip} on {node}: {out}");
        // The path: the source node's bridge gateway, the destination node, the pod.
        let node_ip = node_field(&status, node, "internal_ip");
        let (_, trace) = lab.exec("default/curl", &["traceroute", "-n", "-q", "1", "-w", "2", ip], Duration::from_secs(60));
        let hops: Vec<&str> = trace
            .lines()
            .filter(|l| l.split_whitespace().next().is_some_and(|t| t.parse::<u8>().is_ok()))
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        assert!(
            hops.len() >= 2 && hops[hops.len() - 2] == node_ip && hops[hops.len() - 1] == ip.as_str(),
            "traceroute to {ip} goes through {node} ({node_ip}) last:\n{trace}"
        );
        // The route that made it: the curl pod's node sends that pod CIDR to that node.
        let routes = lab.ok(&["node-exec", &curl_node, "--", "ip", "route"], Duration::from_secs(30));
        let want = format!("{} via {node_ip}", node_field(&status, node, "pod_cidr"));
        assert!(routes.contains(&want), "{curl_node} routes lack `{want}`:\n{routes}");
        // No NAT between pods: the remote nginx logged the curl pod's own address.
        let log = lab.ok(&["logs", &format!("default/{name}")], Duration::from_secs(30));
        assert!(log.contains(&format!("{curl_ip} - ")), "nginx on {node} saw {curl_ip} in its access log:\n{log}");
    }
    let (ok, out) = lab.exec("default/curl", &["ping", "-c", "1", "-W", "2", "203.0.113.10"], Duration::from_secs(30));
    assert!(ok, "ping the outside host: {out}");

    // The user-facing views.
    let table = lab.ok(&["status"], Duration::from_secs(60));
    for want in ["NODES", "node-1", "default/nginx", "kube-system/kube-dns", &cluster_ip] {
        assert!(table.contains(want), "status lacks {want}:\n{table}");
    }
    let coredns = pods_with_label_ns(&lab, "kube-system", "k8s-app=kube-dns");
    let logs = lab.ok(&["logs", &format!("kube-system/{coredns}")], Duration::from_secs(30));
    assert!(logs.contains("CoreDNS"), "coredns log: {logs}");

    let checks = t_checks.elapsed();
    let t_down = Instant::now();
    let left = lab.down();
    let down = t_down.elapsed();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
    eprintln!(
        "lab timing ({}): up {:.1} s, walkthrough {:.1} s, down {:.1} s, total {:.1} s",
        up_args.join(" "),
        up.as_secs_f64(),
        checks.as_secs_f64(),
        down.as_secs_f64(),
        (up + checks + down).as_secs_f64()
    );
}

/// A field of a node row of `lab status -o json`.
fn node_field(status: &Value, node: &str, field: &str) -> String {
    status["status"]["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == node))
        .and_then(|n| n[field].as_str())
        .unwrap_or_else(|| panic!("no {field} for {node} in {status:#}"))
        .to_string()
}

/// nslookup output lines with runs of whitespace collapsed.
fn answer_lines(out: &str) -> Vec<String> {
    out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn pods_with_label_ns(lab: &Lab, ns: &str, selector: &str) -> String {
    let v = json(&lab.kubectl(&["get", "pods", "-n", ns, "-l", selector, "-o", "json"]));
    v["items"][0]["metadata"]["name"].as_str().expect("a coredns pod").to_string()
}
