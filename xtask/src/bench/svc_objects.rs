//! The Service benchmark's filler objects: N selector-less Services, each with a hand-made
//! EndpointSlice of E addresses (distinct, never assigned: nothing connects to them), created
//! in chunks; a wider Service range (a ServiceCIDR) so the API server can allocate that many
//! ClusterIPs; and the EndpointSlice changes whose programming is timed.

use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use super::lab::Lab;

/// The extra Service range (the lab's own is a /24).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Filler endpoint addresses come from here (no pod or node has one).
const ENDPOINT_NET: [u8; 2] = [10, 201];
/// Objects per `kubectl create` call.
const CHUNK: usize = 1000;
/// The trigger-time annotation kube-proxy measures network programming latency from.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

fn name(i: usize) -> String {
    format!("fill-{i:05}")
}

/// The `k`-th filler endpoint address, shifted by `gen` (a change moves a Service's addresses).
fn address(k: usize, gen: usize) -> String {
    let k = (k + gen * 7919) % (1 << 16);
    format!("{}.{}.{}.{}", ENDPOINT_NET[0], ENDPOINT_NET[1], k >> 8, k & 0xff)
}

fn endpoints(i: usize, per: usize, gen: usize) -> Value {
    Value::Array((0..per).map(|j| json!({"addresses": [address(i * per + j, gen)], "conditions": {"ready": true}})).collect())
}

fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name(i), "labels": {"bench": "fill"}},
           "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
}

fn slice(i: usize, per: usize) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name(i), "labels": {"kubernetes.io/service-name": name(i), "bench": "fill"}},
           "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}], "endpoints": endpoints(i, per, 0)})
}

/// Creates the ServiceCIDR and `n` Services with `per` endpoints each, showing progress.
pub fn create(lab: &Lab, n: usize, per: usize) -> Result<f64> {
    lab.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {{name: bench}}\nspec: {{cidrs: [\"{SERVICE_CIDR}\"]}}\n"
    ))?;
    let t = Instant::now();
    let per_call = CHUNK / 2;
    let mut done = 0;
    while done < n {
        let upto = (done + per_call).min(n);
        let items: Vec<Value> = (done..upto).flat_map(|i| [service(i), slice(i, per)]).collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        lab.kubectl_stdin(&["create", "-f", "-"], list.to_string().as_bytes())?;
        done = upto;
        eprintln!("    {done}/{n} Services with {} endpoints ({:.0} s)", done * per, t.elapsed().as_secs_f64());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Changes filler Service `i`'s endpoints (every address moves) and stamps the change time
/// where kube-proxy reads it.
pub fn change(lab: &Lab, i: usize, per: usize, gen: usize) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {TRIGGER_TIME: jiff::Timestamp::now().to_string()}}, "endpoints": endpoints(i, per, gen)});
    lab.ok(&["kubectl", "patch", "endpointslice", &name(i), "--type=merge", "-p", &patch.to_string()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_endpoints_are_distinct_and_outside_the_lab() {
        let per = 5;
        let mut all: Vec<String> = (0..10_000).flat_map(|i| (0..per).map(move |j| address(i * per + j, 0))).collect();
        assert!(all.iter().all(|a| a.starts_with("10.201.")));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 50_000);
        assert_ne!(address(3, 0), address(3, 1), "a change moves the address");
    }
}
