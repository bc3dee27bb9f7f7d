//! Reading CNI results (0.1.0 through 1.x) and CNI error objects.

use std::net::Ipv4Addr;

use serde_json::Value;

/// The pod's IPv4 address from a final ADD result: the first IPv4 on the interface named
/// `ifname` inside the sandbox, else the first IPv4 without an interface (0.3.x results from
/// plugins that omit `interface`), else a 0.1/0.2 `ip4.ip`.
pub fn pod_ipv4(result: &Value, ifname: &str) -> Option<Ipv4Addr> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let ips = result.get("ips").and_then(Value::as_array);
    if let Some(ips) = ips {
        let mut unbound = None;
        for ip in ips {
            let Some(addr) = ip
                .get("address")
                .and_then(Value::as_str)
                .and_then(parse_v4_cidr)
            else {
                continue;
            };
            match ip.get("interface").and_then(Value::as_u64) {
                Some(idx) => {
                    let iface = interfaces.and_then(|l| l.get(idx as usize));
                    let name = iface.and_then(|i| i.get("name")).and_then(Value::as_str);
                    let in_sandbox = iface
                        .and_then(|i| i.get("sandbox"))
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty());
                    if name == Some(ifname) && in_sandbox {
                        return Some(addr);
                    }
                }
                None => {
                    unbound.get_or_insert(addr);
                }
            }
        }
        if unbound.is_some() {
            return unbound;
        }
    }
    result
        .pointer("/ip4/ip")
        .and_then(Value::as_str)
        .and_then(parse_v4_cidr)
}

fn parse_v4_cidr(s: &str) -> Option<Ipv4Addr> {
    s.split('/').next()?.parse().ok()
}

/// A CNI error object (`{"code":..,"msg":..,"details":..}`) if the output is one.
pub fn parse_error(output: &[u8]) -> Option<(u64, String, String)> {
    let v: Value = serde_json::from_slice(output).ok()?;
    let code = v.get("code")?.as_u64()?;
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let details = v
        .get("details")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((code, msg, details))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_ip_from_a_1_0_result_picks_the_sandbox_eth0() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/wl-n1-1"}
            ],
            "ips": [
                {"address": "10.200.1.1/24", "interface": 0},
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.200.1.5/24", "gateway": "10.200.1.1", "interface": 2}
            ]
        });
        assert_eq!(pod_ipv4(&r, "eth0"), Some(Ipv4Addr::new(10, 200, 1, 5)));
        assert_eq!(pod_ipv4(&r, "eth1"), None);
    }

    #[test]
    fn pod_ip_from_a_0_4_0_result() {
        let r = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"version": "4", "address": "10.200.2.7/24", "gateway": "10.200.2.1", "interface": 0}],
            "dns": {}
        });
        assert_eq!(pod_ipv4(&r, "eth0"), Some(Ipv4Addr::new(10, 200, 2, 7)));
    }

    #[test]
    fn pod_ip_without_interface_index_and_from_0_2_0() {
        let r = json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.9.0.3/32"}]});
        assert_eq!(pod_ipv4(&r, "eth0"), Some(Ipv4Addr::new(10, 9, 0, 3)));
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.9/16"}});
        assert_eq!(pod_ipv4(&r, "eth0"), Some(Ipv4Addr::new(10, 1, 0, 9)));
        assert_eq!(pod_ipv4(&json!({"cniVersion":"1.0.0"}), "eth0"), None);
    }

    #[test]
    fn error_objects_are_parsed() {
        let out = br#"{"cniVersion":"1.0.0","code":11,"msg":"agent not running","details":"dial /run/weft/weft.sock"}"#;
        assert_eq!(
            parse_error(out),
            Some((
                11,
                "agent not running".into(),
                "dial /run/weft/weft.sock".into()
            ))
        );
        assert_eq!(parse_error(b"panic: boom"), None);
    }
}
