//! CNI configuration for `--cni bridge`: the reference bridge + host-local + portmap plugins,
//! rendered per node by the kubelet stand-in once the node's pod CIDR is known.

use std::path::Path;

/// The marker the kubelet stand-in replaces with `Node.spec.podCIDR`.
pub const POD_CIDR_MARKER: &str = "{{podCIDR}}";

/// The bridge conflist for one node; `ipam_dir` keeps host-local's leases apart per node.
/// Masquerading is not the bridge plugin's (`ipMasq` would also NAT pod-to-pod traffic between
/// nodes); the lab adds a node-level rule that spares the cluster CIDR instead.
pub fn bridge_conflist_template(ipam_dir: &Path) -> String {
    let doc = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "weft-lab-bridge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR_MARKER}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    serde_json::to_string_pretty(&doc).expect("conflist serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_template_is_a_valid_conflist_with_the_node_cidr() {
        let t = bridge_conflist_template(Path::new("/s/nodes/node-1/ipam"));
        let rendered = t.replace(POD_CIDR_MARKER, "10.200.1.0/24");
        let v: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.200.1.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/s/nodes/node-1/ipam");
        assert_eq!(v["plugins"][1]["type"], "portmap");
    }
}
