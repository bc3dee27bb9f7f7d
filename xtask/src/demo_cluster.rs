//! `cargo xtask demo`: the quickstart. A 3-node lab cluster with weft as its CNI and Service
//! load balancer (no kube-proxy), the seeds' first workload (nginx ×2 exposed as a Service,
//! curl from a pod, `nslookup kubernetes`), a ✓/✗ line per check, then how to use the cluster
//! and take it down. The lab stays up.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util;

const NGINX: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, labels: {app: nginx}}
spec:
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: nginx}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: nginx
        image: nginx
        ports: [{containerPort: 80}]
"#;

struct Lab {
    bin: PathBuf,
}

impl Lab {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args);
        c
    }

    /// stdout of `weft-lab ARGS` (stderr shown on failure).
    fn out(&self, args: &[&str]) -> Result<String> {
        let o = self.cmd(args).stdin(Stdio::null()).output()?;
        if !o.status.success() {
            bail!("weft-lab {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["kubectl"];
        full.extend_from_slice(args);
        self.out(&full)
    }

    /// `kubectl exec POD -- CMD…` as the seeds type it: (success, combined output).
    fn exec(&self, pod: &str, cmd: &[&str]) -> (bool, String) {
        let mut full = vec!["kubectl", "exec", pod, "--"];
        full.extend_from_slice(cmd);
        match self.cmd(&full).stdin(Stdio::null()).output() {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
            ),
            Err(e) => (false, e.to_string()),
        }
    }
}

/// One ✓/✗ line; returns whether it passed.
fn check(what: &str, ok: bool, detail: &str) -> bool {
    if ok {
        println!("  \u{2713} {what}");
    } else {
        println!("  \u{2717} {what}\n      {}", detail.trim().replace('\n', "\n      "));
    }
    ok
}

/// Retry `f` for up to `secs` (Services and DNS settle within seconds of the pods).
fn within(secs: u64, mut f: impl FnMut() -> (bool, String)) -> (bool, String) {
    let start = Instant::now();
    loop {
        let (ok, out) = f();
        if ok || start.elapsed() > Duration::from_secs(secs) {
            return (ok, out);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn run(nodes: usize) -> Result<()> {
    let xtask = std::env::current_exe()?;
    util::run(Command::new(&xtask).arg("build-ebpf").current_dir(util::root()))?;
    util::run(&mut util::cargo(&["build", "--quiet", "-p", "weft-lab"]))?;
    // The agent runs from its image, which `weft-lab up` loads from target/image/.
    crate::image::build(false, false)?;
    let lab = Lab { bin: util::target_dir().join("debug/weft-lab") };

    println!("\n==> a {nodes}-node cluster with weft as CNI and Service load balancer, no kube-proxy");
    println!("    (the first run builds Kubernetes from its Go modules: tens of minutes)");
    let nodes_s = nodes.to_string();
    let status = lab
        .cmd(&["up", "--nodes", &nodes_s, "--cni", "weft", "--proxy", "none"])
        .status()
        .context("running weft-lab up")?;
    if !status.success() {
        bail!("the lab did not come up (a lab already up? `cargo xtask lab down` removes it)");
    }

    println!("\n==> the seeds' first workload: nginx ×2 on different nodes, exposed; curl and busybox pods");
    let mut apply = lab.cmd(&["kubectl", "apply", "-f", "-"]);
    apply.stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = apply.spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().expect("piped"), NGINX.as_bytes())?;
    if !child.wait()?.success() {
        bail!("kubectl apply of the nginx Deployment failed");
    }
    lab.kubectl(&["expose", "deployment", "nginx", "--port", "80"])?;
    lab.kubectl(&["run", "curl", "--image=radial/busyboxplus:curl", "--restart=Never", "--", "sleep", "36000"])?;
    lab.kubectl(&["run", "busybox", "--image=busybox:1.28", "--restart=Never", "--", "sleep", "36000"])?;
    lab.kubectl(&["rollout", "status", "deployment/nginx", "--timeout=180s"])?;
    lab.kubectl(&["wait", "--for=condition=Ready", "pod/curl", "pod/busybox", "--timeout=180s"])?;

    println!("\n==> checks");
    let mut ok = true;
    let pods = lab.kubectl(&["get", "pods", "-l", "app=nginx", "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.podIP}{\"\\n\"}{end}"])?;
    let nginx: Vec<(String, String)> = pods
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, i)| (n.to_string(), i.to_string())))
        .collect();
    ok &= check(
        "nginx runs twice, on two different nodes",
        nginx.len() == 2 && nginx[0].0 != nginx[1].0,
        &pods,
    );
    for (node, ip) in &nginx {
        let (good, out) = lab.exec("curl", &["curl", "-s", "--max-time", "5", &format!("http://{ip}/")]);
        ok &= check(&format!("curl the nginx pod on {node} at {ip}"), good && out.contains("Welcome to nginx!"), &out);
    }
    let cluster_ip = lab.kubectl(&["get", "service", "nginx", "-o", "jsonpath={.spec.clusterIP}"])?;
    let (good, out) = within(30, || {
        let (g, o) = lab.exec("curl", &["curl", "-s", "--max-time", "3", &format!("http://{}/", cluster_ip.trim())]);
        (g && o.contains("Welcome to nginx!"), o)
    });
    ok &= check(&format!("curl the nginx Service at its ClusterIP {} (weft's eBPF, no kube-proxy)", cluster_ip.trim()), good, &out);
    let (good, out) = within(30, || {
        let (g, o) = lab.exec("curl", &["curl", "-s", "--max-time", "3", "http://nginx/"]);
        (g && o.contains("Welcome to nginx!"), o)
    });
    ok &= check("curl http://nginx/ (its name through kube-dns)", good, &out);
    let (good, out) = within(60, || {
        let (_, o) = lab.exec("busybox", &["nslookup", "kubernetes"]);
        let lines: Vec<String> = o.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        // busybox 1.28 prints `Address 1: IP NAME`, later ones `Name:` then `Address: IP`
        // (and a non-zero exit for the search domains that do not resolve).
        let answered = lines.iter().any(|l| l == "Address 1: 10.32.0.1 kubernetes.default.svc.cluster.local")
            || (lines.iter().any(|l| l == "Name: kubernetes.default.svc.cluster.local")
                && lines.iter().any(|l| l == "Address: 10.32.0.1"));
        let good = answered && lines.iter().any(|l| l.starts_with("Server:") && l.contains("10.32.0.10"));
        (good, o)
    });
    ok &= check("nslookup kubernetes answers 10.32.0.1 from kube-dns at 10.32.0.10", good, &out);
    if let Some((node, ip)) = nginx.first() {
        let (good, out) = lab.exec("busybox", &["ping", "-c", "2", "-W", "2", ip]);
        ok &= check(&format!("busybox pings the nginx pod on {node}"), good, &out);
    }
    let (good, out) = lab.exec("busybox", &["ping", "-c", "2", "-W", "2", "203.0.113.10"]);
    ok &= check("busybox pings the outside host 203.0.113.10 (egress masqueraded)", good, &out);

    println!(
        "\n==> the cluster is yours:\n\
         \x20 cargo xtask lab status                       nodes, pods, Services\n\
         \x20 eval \"$(cargo xtask lab env)\"               then plain kubectl (the lab's, admin kubeconfig):\n\
         \x20 kubectl get pods -A -o wide\n\
         \x20 kubectl exec curl -- curl -s http://nginx/\n\
         \x20 kubectl -n weft-system exec ds/weft -- weft status          (one node's agent)\n\
         \x20 kubectl -n weft-system exec ds/weft -- weft service list\n\
         \x20 kubectl -n weft-system exec ds/weft -- weft policy list     (NetworkPolicy per pod)\n\
         \x20 cargo xtask lab conformance [--suite netpol]  Kubernetes' network / NetworkPolicy tests\n\
         \x20 cargo xtask lab down                         take it all down"
    );
    if !ok {
        bail!("some checks failed (✗ above); the lab is still up for a look");
    }
    Ok(())
}
