//! The ADD result, rendered in the version the config asks for, merged into `prevResult`.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde_json::{json, Value};

use super::version::CniVersion;
use crate::ids::Mac;

/// The link-local gateway every pod routes through; the host side answers it by a permanent
/// neighbour entry in the pod, so it never needs an address.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// What ADD made.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub host_ifname: String,
    pub host_mac: Mac,
    pub pod_ifname: String,
    pub pod_mac: Mac,
    pub sandbox: String,
    pub ip: Ipv4Addr,
    pub mtu: u32,
}

/// The result JSON of ADD in `version`, appended to `prev` (a chained `prevResult`) if given.
pub fn render(a: &Attachment, version: CniVersion, prev: Option<&Value>) -> Value {
    let mut out = prev
        .map(|p| convert(p, version))
        .unwrap_or_else(|| json!({}));
    let obj = out.as_object_mut().expect("convert returns an object");
    obj.insert("cniVersion".into(), json!(version.as_str()));
    let interfaces = obj
        .entry("interfaces")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("array");
    let mut host = json!({"name": a.host_ifname, "mac": a.host_mac.to_string()});
    let mut pod = json!({"name": a.pod_ifname, "mac": a.pod_mac.to_string(), "sandbox": a.sandbox});
    if version >= CniVersion::V1_1_0 {
        host["mtu"] = json!(a.mtu);
        pod["mtu"] = json!(a.mtu);
    }
    interfaces.push(host);
    interfaces.push(pod);
    let pod_index = interfaces.len() - 1;
    let mut ip = json!({
        "address": Ipv4Network::new(a.ip, 32).expect("/32 is valid").to_string(),
        "gateway": GATEWAY.to_string(),
        "interface": pod_index,
    });
    if version.ips_carry_version() {
        ip["version"] = json!("4");
    }
    obj.entry("ips")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("array")
        .push(ip);
    obj.entry("routes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("array")
        .push(json!({"dst": "0.0.0.0/0", "gw": GATEWAY.to_string()}));
    obj.entry("dns").or_insert_with(|| json!({}));
    out
}

/// A result of any supported version converted to `version`'s shape: `ips[].version` added
/// (0.3.x/0.4.0) or removed (1.x). Non-object input becomes an empty result.
pub fn convert(prev: &Value, version: CniVersion) -> Value {
    let mut out = match prev {
        Value::Object(_) => prev.clone(),
        _ => json!({}),
    };
    if let Some(ips) = out.get_mut("ips").and_then(Value::as_array_mut) {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if version.ips_carry_version() {
                let v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.contains(':'));
                ip.entry("version")
                    .or_insert_with(|| json!(if v6 { "6" } else { "4" }));
            } else {
                ip.remove("version");
            }
        }
    }
    out
}

/// From a result: the IPv4 address of the interface `ifname` in a sandbox (CHECK's input).
pub fn address_of(result: &Value, ifname: &str) -> Option<Ipv4Network> {
    let interfaces = result.get("interfaces")?.as_array()?;
    let index = interfaces.iter().position(|i| {
        i.get("name").and_then(Value::as_str) == Some(ifname) && i.get("sandbox").is_some()
    })?;
    result.get("ips")?.as_array()?.iter().find_map(|ip| {
        let on_it = ip.get("interface").and_then(Value::as_u64) == Some(index as u64);
        let addr = ip.get("address")?.as_str()?.parse::<Ipv4Network>().ok()?;
        on_it.then_some(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            host_ifname: "weft0123456789a".into(),
            host_mac: "0a:00:00:00:00:01".parse().unwrap(),
            pod_ifname: "eth0".into(),
            pod_mac: "0a:00:00:00:00:02".parse().unwrap(),
            sandbox: "/run/netns/pod".into(),
            ip: Ipv4Addr::new(10, 200, 1, 5),
            mtu: 1450,
        }
    }

    #[test]
    fn v1_result_has_no_ip_version() {
        let r = render(&attachment(), CniVersion::V1_0_0, None);
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "weft0123456789a", "mac": "0a:00:00:00:00:01"},
                    {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": "/run/netns/pod"}
                ],
                "ips": [{"address": "10.200.1.5/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn old_versions_carry_ip_version_four() {
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            let r = render(&attachment(), v, None);
            assert_eq!(r["cniVersion"], v.as_str());
            assert_eq!(r["ips"][0]["version"], "4", "{v:?}");
            assert!(r["interfaces"][0].get("mtu").is_none());
        }
    }

    #[test]
    fn v1_1_carries_interface_mtu() {
        let r = render(&attachment(), CniVersion::V1_1_0, None);
        assert_eq!(r["interfaces"][1]["mtu"], 1450);
        assert!(r["ips"][0].get("version").is_none());
    }

    #[test]
    fn prev_result_is_converted_and_extended() {
        let prev = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "sandbox": "/run/netns/pod"}],
            "ips": [{"version": "4", "address": "192.0.2.1/24", "interface": 0}],
            "dns": {"nameservers": ["10.32.0.10"]}
        });
        let r = render(&attachment(), CniVersion::V1_0_0, Some(&prev));
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(
            r["ips"][0],
            json!({"address": "192.0.2.1/24", "interface": 0})
        );
        assert_eq!(r["ips"][1]["interface"], 2);
        assert_eq!(r["dns"]["nameservers"][0], "10.32.0.10");
        assert_eq!(
            address_of(&r, "eth0"),
            Some("10.200.1.5/32".parse().unwrap())
        );
    }

    #[test]
    fn address_of_needs_a_sandbox_interface() {
        let r = render(&attachment(), CniVersion::V0_3_1, None);
        assert_eq!(
            address_of(&r, "eth0"),
            Some("10.200.1.5/32".parse().unwrap())
        );
        assert_eq!(
            address_of(&r, "weft0123456789a"),
            None,
            "host side has no sandbox"
        );
        assert_eq!(address_of(&json!({"ips": []}), "eth0"), None);
        assert_eq!(address_of(&json!("garbage"), "eth0"), None);
    }
}
