//! The network configuration the runtime passes on stdin, parsed and validated.

use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use serde::Deserialize;
use serde_json::Value;

use super::error::{code, CniError};
use super::version::CniVersion;
use crate::api::DEFAULT_SOCKET;
use crate::ids::AttachmentKey;

/// Default MTU of the pod veth.
pub const DEFAULT_MTU: u32 = 1500;

/// A validated weft network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    /// Network name (`name`).
    pub name: String,
    /// The agent's unix socket (`agentSocket`).
    pub agent_socket: PathBuf,
    /// The node's pod CIDR (`podCIDR`); without it the agent uses its own.
    pub pod_cidr: Option<Ipv4Network>,
    /// MTU of both veth ends (`mtu`).
    pub mtu: u32,
    /// Where logs go (`logFile`); stderr when unset. Never stdout.
    pub log_file: Option<PathBuf>,
    /// `tracing` filter (`logLevel`), default `warn`.
    pub log_level: String,
    /// The previous plugin's result (`prevResult`), kept as JSON in whatever version it came.
    pub prev_result: Option<Value>,
    /// GC: attachments the runtime still uses (`cni.dev/valid-attachments`).
    pub valid_attachments: Option<Vec<AttachmentKey>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    agent_socket: Option<PathBuf>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    mtu: Option<u32>,
    log_file: Option<PathBuf>,
    log_level: Option<String>,
    prev_result: Option<Value>,
    ipam: Option<Value>,
    /// Absent: not given (GC refuses to run). `null`: none are valid (libcni sends a nil list).
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        deserialize_with = "present"
    )]
    valid_attachments: Option<Option<Vec<RawAttachment>>>,
    /// The same list under the name the 1.1.0 spec text first used (libcni sends both).
    #[serde(rename = "cni.dev/attachments", default, deserialize_with = "present")]
    attachments_alias: Option<Option<Vec<RawAttachment>>>,
}

/// Tells a present `null` (`Some(None)`) apart from an absent key (`None`, via `default`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The `cniVersion` of a config, if it can be read at all: used to answer errors in the
/// version the runtime asked for even when the rest of the config is invalid.
pub fn sniff_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    let s = v.get("cniVersion")?.as_str()?;
    CniVersion::parse(s).ok().map(|v| v.as_str().to_owned())
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

/// Parse and validate the config bytes read from stdin.
pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "network configuration is not valid JSON",
        )
        .with_details(e)
    })?;
    if !value.is_object() {
        return Err(CniError::new(
            code::DECODING_FAILURE,
            "network configuration must be a JSON object",
        ));
    }
    let raw: Raw = serde_json::from_value(value)
        .map_err(|e| invalid("malformed network configuration").with_details(e))?;
    let version = raw
        .cni_version
        .ok_or_else(|| invalid("cniVersion is missing"))?;
    let cni_version = CniVersion::parse(&version)?;
    let name = raw
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("name is missing"))?;
    match raw.plugin_type.as_deref() {
        Some("weft") => {}
        Some(other) => {
            return Err(invalid(format!(
                "type is {other:?}, this plugin is \"weft\""
            )))
        }
        None => return Err(invalid("type is missing")),
    }
    if raw
        .ipam
        .as_ref()
        .is_some_and(|i| i.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            "weft allocates addresses itself: remove the ipam section (set podCIDR instead)",
        ));
    }
    let pod_cidr = raw
        .pod_cidr
        .map(|s| {
            let net: Ipv4Network = s.parse().map_err(|e| {
                invalid(format!("podCIDR {s:?} is not an IPv4 CIDR")).with_details(e)
            })?;
            if net.prefix() > crate::ipam::MAX_PREFIX_LEN {
                return Err(invalid(format!(
                    "podCIDR {s} is too small (longest prefix is /{})",
                    crate::ipam::MAX_PREFIX_LEN
                )));
            }
            Ok(crate::ipam::canonical(net))
        })
        .transpose()?;
    let mtu = raw.mtu.unwrap_or(DEFAULT_MTU);
    if !(576..=65535).contains(&mtu) {
        return Err(invalid(format!("mtu {mtu} is out of range 576..=65535")));
    }
    let log_level = raw.log_level.unwrap_or_else(|| "warn".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(invalid(format!(
            "logLevel {log_level:?} is not a valid filter"
        )));
    }
    Ok(NetConf {
        cni_version,
        name,
        agent_socket: raw.agent_socket.unwrap_or_else(|| DEFAULT_SOCKET.into()),
        pod_cidr,
        mtu,
        log_file: raw.log_file,
        log_level,
        prev_result: raw.prev_result,
        valid_attachments: raw.valid_attachments.or(raw.attachments_alias).map(|v| {
            v.unwrap_or_default()
                .into_iter()
                .map(|a| AttachmentKey {
                    container_id: a.container_id,
                    ifname: a.ifname,
                })
                .collect()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> String {
        format!(r#"{{"cniVersion":"1.0.0","name":"weft","type":"weft"{extra}}}"#)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(conf("").as_bytes()).unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_0_0);
        assert_eq!(c.agent_socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.pod_cidr, None);
        assert_eq!(c.log_level, "warn");
    }

    #[test]
    fn full_config_is_read() {
        let c = parse(
            conf(r#","agentSocket":"/tmp/s.sock","podCIDR":"10.200.3.9/24","mtu":1450,"logFile":"/tmp/weft.log","logLevel":"debug","unknownKey":1,
                "prevResult":{"cniVersion":"1.0.0","ips":[]},
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]"#)
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.agent_socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(c.pod_cidr, Some("10.200.3.0/24".parse().unwrap()));
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.log_file, Some(PathBuf::from("/tmp/weft.log")));
        assert!(c.prev_result.is_some());
        assert_eq!(
            c.valid_attachments,
            Some(vec![AttachmentKey {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }])
        );
    }

    #[test]
    fn valid_attachments_null_means_none_and_absent_means_not_given() {
        let null = parse(conf(r#","cni.dev/valid-attachments":null"#).as_bytes()).unwrap();
        assert_eq!(null.valid_attachments, Some(vec![]));
        assert_eq!(parse(conf("").as_bytes()).unwrap().valid_attachments, None);
        let alias = parse(
            conf(r#","cni.dev/attachments":[{"containerID":"c","ifname":"eth0"}]"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(alias.valid_attachments.map(|v| v.len()), Some(1));
        let bad = parse(conf(r#","cni.dev/valid-attachments":[{"ifname":"eth0"}]"#).as_bytes())
            .unwrap_err();
        assert_eq!(bad.code, code::INVALID_CONFIG);
    }

    #[test]
    fn malformed_configs_get_the_right_codes() {
        let cases: &[(&str, u32)] = &[
            ("", code::DECODING_FAILURE),
            ("{not json", code::DECODING_FAILURE),
            ("[1,2]", code::DECODING_FAILURE),
            (r#"{"name":"weft","type":"weft"}"#, code::INVALID_CONFIG),
            (
                r#"{"cniVersion":"9.9.9","name":"weft","type":"weft"}"#,
                code::INCOMPATIBLE_VERSION,
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"weft"}"#,
                code::INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"weft"}"#,
                code::INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"weft","type":"bridge"}"#,
                code::INVALID_CONFIG,
            ),
            (
                r#"{"cniVersion":1,"name":"weft","type":"weft"}"#,
                code::INVALID_CONFIG,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input.as_bytes()).unwrap_err().code,
                *want,
                "{input:?}"
            );
        }
        for extra in [
            r#","podCIDR":"10.200.0.0/33""#,
            r#","podCIDR":"not-a-cidr""#,
            r#","podCIDR":"fd00::/64""#,
            r#","podCIDR":"10.200.0.0/31""#,
            r#","mtu":100"#,
            r#","mtu":"1500""#,
            r#","logLevel":"[[[""#,
        ] {
            assert_eq!(
                parse(conf(extra).as_bytes()).unwrap_err().code,
                code::INVALID_CONFIG,
                "{extra}"
            );
        }
        let ipam = parse(conf(r#","ipam":{"type":"host-local"}"#).as_bytes()).unwrap_err();
        assert_eq!(ipam.code, code::UNSUPPORTED_FIELD);
    }

    #[test]
    fn version_is_sniffed_even_from_an_invalid_config() {
        assert_eq!(
            sniff_version(br#"{"cniVersion":"0.4.0","mtu":"x"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(sniff_version(br#"{"cniVersion":"7.0.0"}"#), None);
        assert_eq!(sniff_version(b"garbage"), None);
    }
}
