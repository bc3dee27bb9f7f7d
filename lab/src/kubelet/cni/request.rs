//! Building what each CNI plugin sees: environment and stdin config, as libcni (and so
//! containerd) derive them from a network list (CNI SPEC "Deriving execution configuration").

use std::path::Path;

use serde_json::{Map, Value};

use super::CniError;

/// A parsed network configuration list (a `.conflist`, or a single `.conf` lifted into a list).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
    /// The list as JSON, kept for the result cache so DEL runs what ADD ran.
    pub raw: Value,
}

impl NetworkList {
    /// Parses a conflist (`plugins` array) or a single plugin config (`type` at top level).
    pub fn parse(text: &[u8], origin: &str) -> Result<NetworkList, CniError> {
        let bad = |reason: String| CniError::Config {
            origin: origin.to_string(),
            reason,
        };
        let raw: Value = serde_json::from_slice(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = raw
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing \"name\"".into()))?;
        let cni_version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_string();
        let plugins: Vec<Map<String, Value>> = match obj.get("plugins") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|p| {
                    p.as_object()
                        .cloned()
                        .ok_or_else(|| bad("a plugin entry is not an object".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("\"plugins\" is not an array".into())),
            None if obj.contains_key("type") => vec![obj.clone()],
            None => return Err(bad("neither \"plugins\" nor \"type\"".into())),
        };
        if plugins.is_empty() {
            return Err(bad("\"plugins\" is empty".into()));
        }
        for p in &plugins {
            if p.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(bad("a plugin has no \"type\"".into()));
            }
        }
        Ok(NetworkList {
            name: name.to_string(),
            cni_version,
            plugins,
            raw,
        })
    }

    /// containerd's go-cni `WithLoNetwork`.
    pub fn loopback() -> NetworkList {
        let raw = serde_json::json!({"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]});
        NetworkList::parse(raw.to_string().as_bytes(), "built-in loopback")
            .expect("static config is valid")
    }
}

/// The CNI verbs the stand-in uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
    Check,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
        }
    }
}

/// Per-attachment runtime parameters (libcni `RuntimeConf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS pairs, in order.
    pub args: Vec<(String, String)>,
    /// Capability arguments offered to plugins that declare them (portMappings, …).
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// The labels containerd 2.x passes for a pod sandbox (`toCNILabels`), after IgnoreUnknown.
    pub fn pod_args(
        namespace: &str,
        name: &str,
        sandbox_id: &str,
        uid: &str,
    ) -> Vec<(String, String)> {
        vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), namespace.into()),
            ("K8S_POD_NAME".into(), name.into()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.into()),
            ("K8S_POD_UID".into(), uid.into()),
        ]
    }
}

/// The environment of one plugin invocation.
pub fn plugin_env(verb: Verb, rt: &RuntimeConf, cni_path: &Path) -> Vec<(String, String)> {
    let args = rt
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    vec![
        ("CNI_COMMAND".into(), verb.as_str().into()),
        ("CNI_CONTAINERID".into(), rt.container_id.clone()),
        ("CNI_NETNS".into(), rt.netns.clone()),
        ("CNI_IFNAME".into(), rt.ifname.clone()),
        ("CNI_ARGS".into(), args),
        ("CNI_PATH".into(), cni_path.display().to_string()),
    ]
}

/// The stdin config of one plugin: its list entry with the list's `name` and `cniVersion`,
/// `prevResult` when given, and `runtimeConfig` with the capability args it declares
/// (libcni `buildOneConfig` + `injectRuntimeConfig`).
pub fn plugin_config(
    list: &NetworkList,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    rt: &RuntimeConf,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let mut runtime_config = Map::new();
    if let Some(Value::Object(caps)) = plugin.get("capabilities") {
        for (cap, supported) in caps {
            if supported.as_bool() == Some(true) {
                if let Some(v) = rt.capability_args.get(cap) {
                    runtime_config.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    Value::Object(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"lab","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.200.1.0/24"}]]}},
        {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#;

    fn rt() -> RuntimeConf {
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        caps.insert("bandwidth".into(), json!({"ingressRate": 1}));
        RuntimeConf {
            container_id: "ab".repeat(32),
            netns: "/run/netns/wl-n1-1234".into(),
            ifname: "eth0".into(),
            args: RuntimeConf::pod_args("default", "web", &"ab".repeat(32), "uid-1"),
            capability_args: caps,
        }
    }

    #[test]
    fn env_carries_the_containerd_labels() {
        let env = plugin_env(Verb::Add, &rt(), Path::new("/opt/cni/bin"));
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("CNI_COMMAND"), "ADD");
        assert_eq!(get("CNI_CONTAINERID"), "ab".repeat(32));
        assert_eq!(get("CNI_NETNS"), "/run/netns/wl-n1-1234");
        assert_eq!(get("CNI_IFNAME"), "eth0");
        assert_eq!(get("CNI_PATH"), "/opt/cni/bin");
        assert_eq!(
            get("CNI_ARGS"),
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=uid-1", "ab".repeat(32))
        );
    }

    #[test]
    fn first_plugin_gets_name_and_version_but_no_prev_result() {
        let list = NetworkList::parse(LIST.as_bytes(), "test").unwrap();
        let c = plugin_config(&list, &list.plugins[0], None, &rt());
        assert_eq!(c["name"], "lab");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["type"], "bridge");
        assert!(c.get("prevResult").is_none());
        // bridge declares no capabilities: no runtimeConfig even though args are offered.
        assert!(c.get("runtimeConfig").is_none());
    }

    #[test]
    fn chained_plugin_gets_prev_result_and_only_declared_capabilities() {
        let list = NetworkList::parse(LIST.as_bytes(), "test").unwrap();
        let prev = json!({"cniVersion":"1.0.0","ips":[{"address":"10.200.1.2/24"}]});
        let c = plugin_config(&list, &list.plugins[1], Some(&prev), &rt());
        assert_eq!(c["prevResult"], prev);
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
        );
    }

    #[test]
    fn single_conf_is_lifted_into_a_list() {
        let l = NetworkList::parse(
            br#"{"cniVersion":"0.4.0","name":"one","type":"ptp"}"#,
            "x.conf",
        )
        .unwrap();
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0]["type"], "ptp");
        let c = plugin_config(&l, &l.plugins[0], None, &rt());
        assert_eq!(c["name"], "one");
    }

    #[test]
    fn malformed_lists_are_typed_errors() {
        for bad in [
            &b"nope"[..],
            br#"{"plugins":[]}"#,
            br#"{"name":"x","plugins":[]}"#,
            br#"{"name":"x","plugins":[{"a":1}]}"#,
        ] {
            assert!(
                matches!(NetworkList::parse(bad, "t"), Err(CniError::Config { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn loopback_matches_containerd() {
        let l = NetworkList::loopback();
        assert_eq!(
            (l.name.as_str(), l.cni_version.as_str()),
            ("cni-loopback", "0.3.1")
        );
        assert_eq!(l.plugins[0]["type"], "loopback");
    }
}
