//! The workload the operations tests keep busy: `web`, agnhost's HTTP server (`/hostname`
//! names the pod) as a Deployment kept off the client's node, `stream`, the load driver's
//! stream server, both behind a ClusterIP with a NodePort, and a client pod on the first node.

/// agnhost as the lab names it (the e2e tests' image and tag).
pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.63.0";
/// The web Service's port and the backends' port.
pub const WEB_PORT: u16 = 80;
pub const WEB_TARGET: u16 = 8080;
/// The stream Service's port.
pub const STREAM_PORT: u16 = 9000;
/// The client pod (netshoot: the machine's programs).
pub const CLIENT: &str = "load-client";

/// `web` with `replicas` pods on any node but `avoid`. The pods stop at SIGTERM: no preStop
/// hook and no drain, as the workload is.
pub fn web(replicas: u32, avoid: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  \
         selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      \
         terminationGracePeriodSeconds: 5\n      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            \
         nodeSelectorTerms:\n            - matchExpressions:\n              - {{key: kubernetes.io/hostname, operator: NotIn, values: [{avoid}]}}\n      \
         containers:\n      - name: web\n        image: {AGNHOST}\n        args: [netexec, --http-port={WEB_TARGET}]\n        \
         ports: [{{containerPort: {WEB_TARGET}}}]\n        readinessProbe:\n          httpGet: {{path: /healthz, port: {WEB_TARGET}}}\n          \
         periodSeconds: 1\n---\n{}",
        service("web", "app: web", WEB_PORT, WEB_TARGET)
    )
}

/// The stream server pod on `node`, running `load_bin stream-server`.
pub fn stream(node: &str, load_bin: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stream\n  labels: {{app: stream}}\nspec:\n  nodeName: {node}\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: stream\n    image: nicolaka/netshoot\n    \
         command: [{load_bin:?}, stream-server, \"{STREAM_PORT}\"]\n    readinessProbe:\n      tcpSocket: {{port: {STREAM_PORT}}}\n      \
         periodSeconds: 1\n---\n{}",
        service("stream", "app: stream", STREAM_PORT, STREAM_PORT)
    )
}

/// The client pod on `node`; the drivers run in it through exec.
pub fn client(node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {CLIENT}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  \
         containers:\n  - name: main\n    image: nicolaka/netshoot\n    command: [sleep, \"3600\"]\n---\n"
    )
}

/// A NodePort Service (a ClusterIP too) selecting `selector`.
pub fn service(name: &str, selector: &str, port: u16, target: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  selector: {{{selector}}}\n  \
         ports:\n  - {{port: {port}, targetPort: {target}, protocol: TCP}}\n---\n"
    )
}
