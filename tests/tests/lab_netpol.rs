//! NetworkPolicy with weft as the cluster's CNI and no kube-proxy, as a user of Calico's
//! walkthrough checks it with `kubectl exec`: a namespace set to default-deny ingress, then
//! opened to one labelled client of another namespace (by a named port); an egress default
//! deny that still resolves names through kube-dns once a DNS rule exists; a NodePort Service
//! whose backend admits only an ipBlock holding the outside host (externalTrafficPolicy Local
//! keeps its address); a readiness probe that keeps the default-deny pod Ready. Then policy,
//! label and namespace changes under a request loop: nothing both states allow is dropped,
//! nothing both deny gets through. `weft policy list|trace` and the metrics show it.

use std::process::Child;
use std::time::{Duration, Instant};

use weft_tests::lab::{eventually, run_with_timeout, Lab};
use weft_tests::weft::{json, OUTSIDE};

const STATE: &str = "/run/weft-lab-e2e-netpol";
const T: Duration = Duration::from_secs(60);

const OBJECTS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: np-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-b, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: np-a, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: main
    image: nginx
    ports: [{name: http, containerPort: 80}]
    readinessProbe:
      httpGet: {path: /, port: 80}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: peer, namespace: np-a, labels: {app: peer}}
spec:
  nodeName: node-2
  containers: [{name: main, image: radial/busyboxplus:curl, args: [sleep, '3600']}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: np-b, labels: {role: client}}
spec:
  nodeName: node-2
  containers: [{name: main, image: radial/busyboxplus:curl, args: [sleep, '3600']}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: np-b, labels: {role: other}}
spec:
  nodeName: node-1
  containers: [{name: main, image: radial/busyboxplus:curl, args: [sleep, '3600']}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: np-a}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: np-a}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 80, nodePort: 30080}]
";

const DEFAULT_DENY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: np-a}
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

/// Team b's clients, by namespace and pod label together, on the named port `http`.
fn allow_clients(name: &str) -> String {
    format!(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: np-a}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from:
    - namespaceSelector: {{matchLabels: {{team: b}}}}
      podSelector: {{matchLabels: {{role: client}}}}
    ports: [{{port: http}}]
"
    )
}

const EGRESS_DENY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-deny, namespace: np-b}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
";

const ALLOW_DNS_AND_WEB: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns-and-web, namespace: np-b}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
  - to:
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: web}}
    ports: [{port: 80}]
";

fn allow_outside(cidr: &str) -> String {
    format!(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-outside, namespace: np-a}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from:
    - ipBlock: {{cidr: {cidr}}}
    ports: [{{port: 80}}]
"
    )
}

/// `kubectl exec -n NS POD -- CMD…`: (exit code, stdout+stderr).
fn kexec(lab: &Lab, pod: &str, cmd: &[&str]) -> (i32, String) {
    let (ns, name) = pod.split_once('/').expect("NS/POD");
    let mut args = vec!["kubectl", "exec", "-n", ns, name, "--"];
    args.extend_from_slice(cmd);
    let out = run_with_timeout(&mut lab.cmd(&args), T);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `kubectl exec NS/POD -- curl URL`: whether a 200 came back within `secs`.
fn reaches(lab: &Lab, pod: &str, url: &str, secs: &str) -> bool {
    let (_, out) = kexec(
        lab,
        pod,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            secs,
            url,
        ],
    );
    out.trim().starts_with("200")
}

/// One attempt per check, waiting up to 10 s for the agents to apply a change; panics with
/// what was seen.
fn expect(lab: &Lab, what: &str, want: &[(&str, bool)], url: &str) {
    let start = Instant::now();
    loop {
        let got: Vec<(&str, bool)> = want
            .iter()
            .map(|(p, _)| (*p, reaches(lab, p, url, "2")))
            .collect();
        if got.iter().zip(want).all(|(g, w)| g.1 == w.1) {
            eprintln!(
                "  {what}: {got:?} after {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: want {want:?}, got {got:?}"
        );
    }
}

fn apply(lab: &Lab, yaml: &str) {
    lab.kubectl_stdin(&["apply", "-f", "-"], yaml);
}

/// `weft …` in the agent pod of `node`, with `kubectl exec` as a user runs it.
fn weft(lab: &Lab, node: &str, args: &[&str]) -> (i32, String) {
    let pods = json(&lab.kubectl(&["get", "pods", "-n", "weft-system", "-o", "json"]));
    let agent = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["spec"]["nodeName"] == node)
        .and_then(|p| p["metadata"]["name"].as_str())
        .unwrap_or_else(|| panic!("no weft agent on {node}"))
        .to_string();
    let mut cmd = vec!["weft"];
    cmd.extend_from_slice(args);
    kexec(lab, &format!("weft-system/{agent}"), &cmd)
}

/// A request loop in a pod: `n` new HTTP connections to `url`, one every ~20 ms; prints
/// `ok=N bad=M` at the end.
fn request_loop(lab: &Lab, pod: &str, url: &str, n: u32, max_time: &str) -> Child {
    let script = format!(
        "ok=0; bad=0; for i in $(seq {n}); do if curl -s -o /dev/null --max-time {max_time} {url}; \
         then ok=$((ok+1)); else bad=$((bad+1)); fi; sleep 0.02; done; echo ok=$ok bad=$bad"
    );
    lab.cmd(&["exec", pod, "--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("request loop")
}

fn counts(child: Child) -> (u32, u32) {
    let out = child.wait_with_output().expect("request loop output");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| -> u32 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no {k} in the loop's output: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    (field("ok="), field("bad="))
}

#[test]
fn network_policies_isolate_open_and_change_without_holes() {
    let mut lab = Lab::new(STATE);
    lab.up(
        &["--nodes", "2", "--cni", "weft", "--proxy", "none"],
        Duration::from_secs(120 * 60),
    );
    let t = Instant::now();
    apply(&lab, OBJECTS);
    for (ns, pods) in [
        ("np-a", "pod/web pod/peer"),
        ("np-b", "pod/client pod/other"),
    ] {
        let mut args = vec!["wait", "-n", ns, "--for=condition=Ready", "--timeout=120s"];
        args.extend(pods.split(' '));
        lab.kubectl(&args);
    }
    let web = "http://web.np-a.svc.cluster.local/";
    let clients =
        |c: bool, o: bool, p: bool| [("np-b/client", c), ("np-b/other", o), ("np-a/peer", p)];
    expect(
        &lab,
        "no policy: everybody reaches web",
        &clients(true, true, true),
        web,
    );

    // Default deny for the namespace, then one client of team b on the named port.
    apply(&lab, DEFAULT_DENY);
    expect(&lab, "default deny", &clients(false, false, false), web);
    apply(&lab, &allow_clients("allow-team-b-clients"));
    expect(
        &lab,
        "team b's clients allowed",
        &clients(true, false, false),
        web,
    );

    // The kubelet's probes come from the node: web stays Ready (5 probe periods later too).
    std::thread::sleep(Duration::from_secs(5));
    let ready = lab.kubectl(&[
        "get",
        "pod",
        "web",
        "-n",
        "np-a",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready.trim(), "True", "the default-deny pod stays Ready");

    // The agent's view and a trace from the same translation.
    let (_, list) = weft(&lab, "node-1", &["policy", "list", "-o", "json"]);
    let list = json(&list);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pod"] == "np-a/web")
        .expect("np-a/web listed");
    let isolated: Vec<&str> = row["ingress"]["isolated_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        isolated,
        ["np-a/allow-team-b-clients", "np-a/default-deny"],
        "{row:#}"
    );
    assert_eq!(
        row["ingress"]["allow"][0]["ports"], "TCP 80",
        "the named port resolved on web: {row:#}"
    );
    let (code, out) = weft(
        &lab,
        "node-1",
        &[
            "policy",
            "trace",
            "--from",
            "np-b/client",
            "--to",
            "np-a/web",
            "--port",
            "80/TCP",
        ],
    );
    assert!(
        code == 0 && out.contains("allowed by np-a/allow-team-b-clients ingress[0]"),
        "{code}: {out}"
    );
    let (code, out) = weft(
        &lab,
        "node-1",
        &[
            "policy",
            "trace",
            "--from",
            "np-b/other",
            "--to",
            "np-a/web",
            "--port",
            "80/TCP",
        ],
    );
    assert!(code == 3 && out.contains("DENIED"), "{code}: {out}");

    // Egress default deny for the clients: no names, no web; a DNS rule and a web rule
    // bring both back, through kube-dns's ClusterIP.
    apply(&lab, EGRESS_DENY);
    expect(&lab, "egress denied", &clients(false, false, false), web);
    let fqdn = "web.np-a.svc.cluster.local";
    let (code, out) = kexec(&lab, "np-b/client", &["nslookup", fqdn]);
    assert!(
        code != 0 && !out.contains("Name:"),
        "names resolve despite the egress deny: {out}"
    );
    apply(&lab, ALLOW_DNS_AND_WEB);
    let resolved = eventually("the client to resolve web", Duration::from_secs(10), || {
        let (code, out) = kexec(&lab, "np-b/client", &["nslookup", fqdn]);
        (code == 0 && out.contains("Name:")).then_some(out)
    });
    eprintln!("  resolved under egress isolation:\n{resolved}");
    expect(
        &lab,
        "web by name under egress isolation",
        &clients(true, false, false),
        web,
    );
    assert!(
        !reaches(&lab, "np-b/client", &format!("http://{OUTSIDE}/"), "2"),
        "egress elsewhere stays denied"
    );

    // NodePort from the outside host, externalTrafficPolicy Local: judged on its own address.
    let from_outside = |node_ip: &str| {
        let out = lab
            .cmd(&[
                "node-exec",
                "outside",
                "--",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                &format!("http://{node_ip}:30080/"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "200"
    };
    let node1 = json(&lab.kubectl(&["get", "node", "node-1", "-o", "json"]))["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!from_outside(&node1), "the outside host is not let in yet");
    apply(&lab, &allow_outside("203.0.113.0/24"));
    eventually(
        "the outside host let in by its ipBlock",
        Duration::from_secs(10),
        || from_outside(&node1).then_some(()),
    );
    apply(&lab, &allow_outside("198.51.100.0/24"));
    eventually(
        "the outside host shut out again",
        Duration::from_secs(10),
        || (!from_outside(&node1)).then_some(()),
    );

    // Changes under load: the client's loop must never fail, `other`'s never get through.
    let allowed = request_loop(&lab, "np-b/client", web, 200, "2");
    let denied = request_loop(&lab, "np-b/other", web, 60, "0.3");
    std::thread::sleep(Duration::from_millis(500));
    for i in 1..=3 {
        // A label change moves the client to a new identity; `other`'s to another denied one.
        lab.kubectl(&[
            "label",
            "-n",
            "np-b",
            "pod",
            "client",
            &format!("rev={i}"),
            "--overwrite",
        ]);
        lab.kubectl(&[
            "label",
            "-n",
            "np-b",
            "pod",
            "other",
            &format!("rev={i}"),
            "--overwrite",
        ]);
        std::thread::sleep(Duration::from_millis(300));
    }
    // A namespace relabel that keeps the selector true, and an equivalent policy replacing
    // the old one, created first as a user migrating policies would.
    lab.kubectl(&["label", "ns", "np-b", "extra=1", "--overwrite"]);
    apply(&lab, &allow_clients("allow-team-b-clients-v2"));
    std::thread::sleep(Duration::from_millis(300));
    lab.kubectl(&[
        "delete",
        "-n",
        "np-a",
        "networkpolicy",
        "allow-team-b-clients",
    ]);
    let (ok, bad) = counts(allowed);
    let (through, held) = counts(denied);
    eprintln!("  under changes: allowed client {ok} ok / {bad} failed; denied pod {through} through / {held} held");
    assert_eq!((ok, bad), (200, 0), "a request both policies allow failed");
    assert_eq!(
        (through, held),
        (0, 60),
        "a request both policies deny got through"
    );

    // Denials are counted per direction; the policy maps are in the metrics.
    let metrics = lab.ok(
        &[
            "node-exec",
            "node-1",
            "--",
            "curl",
            "-s",
            "http://127.0.0.1:9965/metrics",
        ],
        T,
    );
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    assert!(value("weft_datapath_drops_total{reason=\"policy_denied_ingress\"}") > 0.0);
    assert!(value("weft_map_entries{map=\"POLICY4\"}") > 0.0);
    assert!(value("weft_policy_endpoints") >= 1.0);
    assert!(metrics.contains("weft_policy_programming_seconds_count"));
    let metrics2 = lab.ok(
        &[
            "node-exec",
            "node-2",
            "--",
            "curl",
            "-s",
            "http://127.0.0.1:9965/metrics",
        ],
        T,
    );
    assert!(
        metrics2.lines().any(|l| l
            .starts_with("weft_datapath_drops_total{reason=\"policy_denied_egress\"}")
            && !l.ends_with(" 0")),
        "egress denials on node-2 are counted"
    );
    eprintln!(
        "lab timing (netpol): checks {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let left = lab.down();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
}
