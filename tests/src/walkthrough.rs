//! The seeds' walkthrough, run against a lab with the commands the seeds type (`kubectl run`,
//! `kubectl expose`, `kubectl exec … -- curl`, `kubectl exec -ti busybox -- nslookup
//! kubernetes`): nginx ×2 on different nodes behind a Service, curl from a pod to both
//! endpoints and the ClusterIP, DNS through kube-dns, node-to-pod and pod-to-pod pings across
//! nodes (seed 002), busybox pods pinned to labelled nodes pinging the outside host and
//! tracing the route to each other (seed 003), `lab status` and `lab logs`, and a shell's plain
//! `kubectl` after `eval "$(weft-lab env)"`; then `lab down` must leave nothing behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use crate::lab::{eventually, run_with_timeout, weft_lab_bin, Lab};

const WELCOME: &str = "Welcome to nginx!";

/// Seed 003: two busybox pods, each pinned by a nodeSelector to a node labelled for it.
fn bb_pod(name: &str, label: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeSelector:
    seed: {label}
  containers:
  - name: {name}
    image: busybox:1.28
    command: ["sleep", "3600"]
"#
    )
}

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
    let mut names: Vec<String> = nodes.iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    plain_kubectl_after_env(&lab, &names);

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

    // kubectl exec reaches the pod through the API server and its node's kubelet port, and
    // the command's exit code comes back as kubectl's.
    let t = Duration::from_secs(30);
    assert_eq!(lab.kubectl_exec("curl", &["false"], t).0, 1, "kubectl exec curl -- false exits 1");
    assert_eq!(lab.kubectl_exec("curl", &["sh", "-c", "exit 3"], t).0, 3);
    let (code, out) = lab.kubectl_exec("curl", &["hostname"], t);
    assert_eq!((code, out.trim()), (0, "curl"), "the pod's own hostname");
    // `lab exec` stays as a shortcut into the same pod.
    let (ok, out) = lab.exec("default/curl", &["hostname"], t);
    assert!(ok && out.trim() == "curl", "lab exec: {out}");

    // curl both endpoints directly, then the Service.
    for (name, node, ip) in &nginx {
        let (code, out) = lab.kubectl_exec("curl", &["curl", "-s", "--max-time", "5", &format!("http://{ip}/")], t);
        assert!(code == 0 && out.contains(WELCOME), "curl {name} on {node} at {ip}: {out}");
    }
    eventually("the nginx ClusterIP to answer", Duration::from_secs(60), || {
        let (code, out) = lab.kubectl_exec("curl", &["curl", "-s", "--max-time", "3", &format!("http://{cluster_ip}/")], t);
        (code == 0 && out.contains(WELCOME)).then_some(())
    });
    // Several requests through the Service: kube-proxy spreads them, all must succeed.
    for _ in 0..6 {
        let (code, out) = lab.kubectl_exec("curl", &["curl", "-s", "--max-time", "3", &format!("http://{cluster_ip}/")], t);
        assert!(code == 0 && out.contains(WELCOME), "curl ClusterIP {cluster_ip}: {out}");
    }

    // DNS through kube-dns: the `kubernetes` Service's name resolves to its ClusterIP.
    // busybox's nslookup also tries the other search domains (NXDOMAIN, non-zero exit), so
    // the answer is judged by its lines, as a user reads it.
    let answer = eventually("nslookup kubernetes to answer", Duration::from_secs(60), || {
        let (_, out) = lab.kubectl_exec_tty("busybox", &["nslookup", "kubernetes"], t);
        answer_lines(&out).contains(&"Address: 10.32.0.1".to_string()).then_some(out)
    });
    let lines = answer_lines(&answer);
    assert!(lines.iter().any(|l| l.starts_with("Server:") && l.ends_with("10.32.0.10")), "asked kube-dns: {answer}");
    assert!(lines.contains(&"Name: kubernetes.default.svc.cluster.local".to_string()), "{answer}");
    let (code, out) = lab.kubectl_exec("busybox", &["nslookup", "nginx.default.svc.cluster.local"], t);
    assert!(code == 0 && out.contains(&cluster_ip), "nslookup nginx: {out}");

    // Seed 002: pod to pod across nodes, node to pod, and the routes that make it work.
    let (_, curl_node, curl_ip) = pods_with_label(&lab, "run=curl").remove(0);
    let remote: Vec<_> = nginx.iter().filter(|p| p.1 != curl_node).collect();
    assert!(!remote.is_empty(), "one nginx runs on another node than the curl pod");
    for (name, node, ip) in remote {
        let (code, out) = lab.kubectl_exec("curl", &["ping", "-c", "2", "-W", "2", ip], t);
        assert_eq!(code, 0, "ping from {curl_node} to pod {ip} on {node}: {out}");
        let out = lab.ok(&["node-exec", &curl_node, "--", "ping", "-c", "1", "-W", "2", ip], t);
        assert!(out.contains("1 received"), "node {curl_node} pings pod {ip} on {node}: {out}");
        // The route that made it: the curl pod's node sends that pod CIDR to that node.
        let node_ip = node_field(&status, node, "internal_ip");
        let routes = lab.ok(&["node-exec", &curl_node, "--", "ip", "route"], t);
        let want = format!("{} via {node_ip}", node_field(&status, node, "pod_cidr"));
        assert!(routes.contains(&want), "{curl_node} routes lack `{want}`:\n{routes}");
        // No NAT between pods: the remote nginx logged the curl pod's own address.
        let log = lab.kubectl(&["logs", name]);
        assert!(log.contains(&format!("{curl_ip} - ")), "nginx on {node} saw {curl_ip} in its access log:\n{log}");
    }

    // Seed 003: label two nodes, pin a busybox to each with a nodeSelector, ping the outside
    // host from one and trace the route from the other to it.
    let node_names: Vec<String> = nodes.iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    lab.kubectl(&["label", "node", &node_names[0], "seed=bb1"]);
    lab.kubectl(&["label", "node", &node_names[1], "seed=bb2"]);
    lab.kubectl_stdin(&["apply", "-f", "-"], &bb_pod("bb1", "bb1"));
    lab.kubectl_stdin(&["apply", "-f", "-"], &bb_pod("bb2", "bb2"));
    lab.kubectl(&["wait", "--for=condition=Ready", "pod/bb1", "pod/bb2", "--timeout=180s"]);
    let bb1 = json(&lab.kubectl(&["get", "pod", "bb1", "-o", "json"]));
    let bb2 = json(&lab.kubectl(&["get", "pod", "bb2", "-o", "json"]));
    assert_eq!(bb1["spec"]["nodeName"], node_names[0].as_str(), "bb1 runs where its nodeSelector points");
    assert_eq!(bb2["spec"]["nodeName"], node_names[1].as_str());
    let bb1_ip = bb1["status"]["podIP"].as_str().unwrap().to_string();
    let (code, out) = lab.kubectl_exec("bb1", &["ping", "-c", "2", "-W", "2", "203.0.113.10"], t);
    assert_eq!(code, 0, "kubectl exec bb1 -- ping the outside host: {out}");
    // The path: bb2's node, bb1's node (its underlay address), bb1.
    let bb1_node_ip = node_field(&status, &node_names[0], "internal_ip");
    let (_, trace) = lab.kubectl_exec("bb2", &["traceroute", "-n", "-q", "1", "-w", "2", &bb1_ip], Duration::from_secs(60));
    let hops: Vec<&str> = trace
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|t| t.parse::<u8>().is_ok()))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        hops.len() >= 2 && hops[hops.len() - 2] == bb1_node_ip && hops[hops.len() - 1] == bb1_ip,
        "kubectl exec bb2 -- traceroute {bb1_ip} goes through {} ({bb1_node_ip}) last:\n{trace}",
        node_names[0]
    );

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
/// A person's shell: `eval "$(weft-lab env)"`, then plain `kubectl` answers with the lab's
/// nodes, and it is the lab's kubectl (the control plane's version), ahead of any other on
/// PATH.
fn plain_kubectl_after_env(lab: &Lab, nodes: &[String]) {
    let script = r#"eval "$("$0" env)" && command -v kubectl && kubectl version && kubectl get nodes -o name"#;
    let out = run_with_timeout(
        Command::new("sh").args(["-c", script]).arg(weft_lab_bin()).env("WEFT_LAB_STATE", lab.state_dir()),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script}: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(Path::new(lines[0]), lab.state_dir().join("client/kubectl"), "kubectl on PATH:\n{stdout}");
    let version = |what: &str| lines.iter().find_map(|l| l.strip_prefix(what)).map(str::trim);
    let client = version("Client Version:");
    assert!(client.is_some() && client == version("Server Version:"), "client and server versions:\n{stdout}");
    let mut got: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("node/")).collect();
    got.sort();
    assert_eq!(got, nodes, "kubectl get nodes:\n{stdout}");
}

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
