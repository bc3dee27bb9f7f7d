//! Cluster add-ons the lab installs: CoreDNS as `kube-dns`, shaped like upstream's
//! coredns.yaml (kubernetes/deployment), with the Service at the fixed cluster DNS address.

use std::time::Duration;

use crate::kubectl;
use crate::spec::{CLUSTER_DNS, CLUSTER_DOMAIN, OUTSIDE_IP};
use crate::state::{LabRecord, StateDir};

/// The CoreDNS image; the kubelet stand-in's catalogue runs the built `coredns` for it.
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.14.2";

/// The Corefile. Names outside the cluster go to the outside host, which stands in for the
/// internet's resolvers (nothing ever leaves the lab).
pub fn corefile() -> String {
    format!(
        r#".:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    forward . {OUTSIDE_IP}
    cache 30
    loop
    reload
    loadbalance
}}
"#
    )
}

/// Every object of the CoreDNS add-on, as one multi-document manifest.
pub fn coredns_manifest() -> String {
    let corefile = serde_json::to_string(&corefile()).expect("string serialises");
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: {corefile}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: {COREDNS_IMAGE}
        args: ["-conf", "/etc/coredns/Corefile"]
        volumeMounts:
        - name: config-volume
          mountPath: /etc/coredns
          readOnly: true
        ports:
        - {{containerPort: 53, name: dns, protocol: UDP}}
        - {{containerPort: 53, name: dns-tcp, protocol: TCP}}
        - {{containerPort: 9153, name: metrics, protocol: TCP}}
        readinessProbe:
          httpGet:
            path: /ready
            port: 8181
          periodSeconds: 2
      volumes:
      - name: config-volume
        configMap:
          name: coredns
          items:
          - key: Corefile
            path: Corefile
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/name: CoreDNS
spec:
  selector:
    k8s-app: kube-dns
  clusterIP: {CLUSTER_DNS}
  ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, protocol: TCP}}
  - {{name: metrics, port: 9153, protocol: TCP}}
"#
    )
}

/// Applies the CoreDNS objects (a copy of the manifest stays in the state dir).
pub fn apply_coredns(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    std::fs::create_dir_all(state.manifests())?;
    let manifest = coredns_manifest();
    std::fs::write(state.manifests().join("coredns.yaml"), &manifest)?;
    kubectl::apply(state, rec, &manifest)
}

/// Installs CoreDNS and waits until the kube-dns Service has a ready endpoint.
pub fn install_coredns(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    apply_coredns(state, rec)?;
    kubectl::wait_for("CoreDNS (kube-dns) to have a ready endpoint", Duration::from_secs(120), || {
        let slices = kubectl::get_json(
            state,
            rec,
            &["endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns"],
        )?;
        let ready = slices["items"].as_array().into_iter().flatten().any(|s| {
            s["endpoints"].as_array().into_iter().flatten().any(|e| e["conditions"]["ready"] == true)
        });
        Ok(ready.then_some(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_service_sits_at_the_cluster_dns_address() {
        let m = coredns_manifest();
        assert!(m.contains("clusterIP: 10.32.0.10"));
        assert!(m.contains("name: kube-dns"));
        assert!(m.contains("kubernetes cluster.local in-addr.arpa ip6.arpa"));
        // Every document parses as JSON-compatible YAML would need a YAML parser; check the
        // embedded Corefile survived quoting instead.
        let line = m.lines().find(|l| l.trim_start().starts_with("Corefile:")).unwrap();
        let quoted = line.trim_start().trim_start_matches("Corefile:").trim();
        let back: String = serde_json::from_str(quoted).unwrap();
        assert_eq!(back, corefile());
    }

    #[test]
    fn corefile_forwards_only_to_the_outside_host() {
        let c = corefile();
        assert!(c.contains("forward . 203.0.113.10"));
        assert!(!c.contains("/etc/resolv.conf"));
    }
}
