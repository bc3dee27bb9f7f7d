//! The objects of `bench policy-change`: the measured client and server, the policy that
//! admits one to the other, the policies that also select the server, the cluster's other
//! policies, and the other pods (bound to node objects no kubelet runs, given addresses through
//! their status, so every engine sees them as it sees real pods).

/// Namespaces the other policies and pods live in.
pub const BG_NAMESPACES: usize = 100;
/// Nodes the other pods are bound to (no kubelet runs them; no addresses, nothing to route).
pub const GHOST_NODES: usize = 10;
/// Distinct `app` labels among the other pods; the other policies select and admit these.
const BG_APPS: usize = 50;

/// The new-connection and request/response servers' ports in the server pod.
pub const CRR_PORT: u16 = 7781;
pub const RR_PORT: u16 = 7777;

/// Isolates the server and admits the client to the two benchmark ports.
pub const ALLOW_CLIENT: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-client, namespace: bench-srv}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: bench-cli}}, podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 7781}, {port: 7777}]\n";

/// Default-deny ingress over the server's namespace (the policy change that is timed).
pub const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: bench-srv}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";

/// Label of the policies that also select the server (removed together).
pub const ALSO_SELECTS_LABEL: &str = "weft.bench/also-selects=server";

/// The measured pair and the namespaces of the other objects.
pub fn base() -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench-srv}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: bench-cli}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: bench-srv, labels: {app: server}}\n\
         spec:\n  nodeName: node-2\n  containers: [{name: main, image: nginx}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: bench-cli, labels: {app: client}}\n\
         spec:\n  nodeName: node-1\n  containers: [{name: main, image: busybox, args: [sleep, '36000']}]\n---\n",
    );
    for i in 0..BG_NAMESPACES {
        s.push_str(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench-bg-{i}}}\n---\n"));
    }
    s
}

/// Other policies `range`: each selects an app in its namespace and admits another app (any
/// namespace's pods in its own) on one port; every third also limits egress to an ipBlock with
/// an except, so prefixes are part of the load too.
pub fn other_policies(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|j| {
            let mut p = format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bg-{j}, namespace: bench-bg-{}}}\n\
                 spec:\n  podSelector: {{matchLabels: {{app: bg-{}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: bg-{}}}}}}}]\n    ports: [{{port: {}}}]\n",
                j % BG_NAMESPACES,
                j % BG_APPS,
                (j + 1) % BG_APPS,
                80 + j % 20
            );
            if j % 3 == 0 {
                p.push_str(&format!(
                    "  egress:\n  - to: [{{ipBlock: {{cidr: 10.{}.0.0/16, except: [10.{}.{}.0/24]}}}}]\n",
                    100 + j % 100,
                    100 + j % 100,
                    j % 256
                ));
            }
            p.push_str("---\n");
            p
        })
        .collect()
}

/// `n - 1` policies that select the server besides `allow-client` (so it is selected by `n`),
/// each admitting other pods on a port of its own; none admits the client, so its traffic is
/// still decided by `allow-client` alone.
pub fn also_selecting(n: usize) -> String {
    (1..n)
        .map(|k| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: also-{k}, namespace: bench-srv, labels: {{weft.bench/also-selects: server}}}}\n\
                 spec:\n  podSelector: {{matchLabels: {{app: server}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: bench-bg-{}}}}}, podSelector: {{matchLabels: {{app: bg-{}}}}}}}]\n    ports: [{{port: {}}}]\n---\n",
                k % BG_NAMESPACES,
                k % BG_APPS,
                8000 + k
            )
        })
        .collect()
}

/// The nodes the other pods are bound to.
pub fn ghost_nodes() -> String {
    (0..GHOST_NODES)
        .map(|g| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: ghost-{g}, labels: {{weft.bench/ghost: 'true'}}}}\n---\n"))
        .collect()
}

/// Address of other pod `i` (10.250.0.0/16: outside every node's pod CIDR, never routed; only
/// the policy engines look at it).
fn ghost_ip(i: usize) -> String {
    format!("10.250.{}.{}", i / 250, i % 250 + 1)
}

/// Other pod `i`: in namespace `i % 100`, with one of the 50 apps, on a ghost node (tolerating
/// the taints the node lifecycle controller puts on a node that never reports).
pub fn ghost_pod(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bg-pod-{i}, namespace: bench-bg-{}, labels: {{app: bg-{}}}}}\n\
         spec:\n  nodeName: ghost-{}\n  tolerations: [{{operator: Exists}}]\n  containers: [{{name: main, image: none}}]\n---\n",
        i % BG_NAMESPACES,
        i % BG_APPS,
        i % GHOST_NODES
    )
}

/// The status that makes other pod `i` a running pod with its address (for
/// `kubectl replace --subresource=status`).
pub fn ghost_status(i: usize) -> String {
    let ip = ghost_ip(i);
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bg-pod-{i}, namespace: bench-bg-{}}}\n\
         status: {{phase: Running, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n---\n",
        i % BG_NAMESPACES
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_pods_get_distinct_addresses_outside_the_pod_cidrs() {
        let ips: std::collections::BTreeSet<String> = (0..10_000).map(ghost_ip).collect();
        assert_eq!(ips.len(), 10_000);
        assert!(ips.iter().all(|ip| ip.starts_with("10.250.") && !ip.ends_with(".0")));
    }

    #[test]
    fn the_server_is_selected_by_n_policies_counting_allow_client() {
        assert_eq!(also_selecting(1), "");
        let m = also_selecting(100);
        assert_eq!(m.matches("kind: NetworkPolicy").count(), 99);
        assert_eq!(m.matches("matchLabels: {app: server}").count(), 99);
        assert!(!m.contains("bench-cli"), "only allow-client admits the client");
    }

    #[test]
    fn every_third_other_policy_has_an_ipblock() {
        let p = other_policies(0..30);
        assert_eq!(p.len(), 30);
        assert_eq!(p.iter().filter(|p| p.contains("ipBlock")).count(), 10);
    }
}
