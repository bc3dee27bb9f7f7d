//! The `CNI_*` environment: which verb, which container, which netns, which interface.

use std::path::PathBuf;

use super::error::{code, CniError};
use crate::ids::AttachmentKey;

/// The verbs of CNI 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// The parsed environment of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    /// `CNI_ARGS` as key/value pairs.
    pub args: Vec<(String, String)>,
    pub path: Vec<PathBuf>,
}

fn bad_env(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_ENV, msg)
}

/// Container IDs per the spec: alphanumeric first, then alphanumerics, `_`, `.`, `-`.
fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Interface names the kernel accepts: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl CniEnv {
    /// Read the environment through `var` (the process environment in production).
    /// The Kubernetes pod named by `CNI_ARGS` (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`,
    /// `K8S_POD_UID`), if the runtime gave namespace and name.
    pub fn pod(&self) -> Option<crate::api::PodRef> {
        let arg = |k: &str| {
            self.args
                .iter()
                .find(|(key, v)| key == k && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        Some(crate::api::PodRef {
            namespace: arg("K8S_POD_NAMESPACE")?,
            name: arg("K8S_POD_NAME")?,
            uid: arg("K8S_POD_UID"),
        })
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => return Err(bad_env(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(bad_env("CNI_COMMAND is not set")),
        };
        let container_id = var("CNI_CONTAINERID");
        if let Some(id) = &container_id {
            if !valid_container_id(id) {
                return Err(bad_env(format!(
                    "CNI_CONTAINERID {id:?} is not a valid container ID"
                )));
            }
        }
        let ifname = var("CNI_IFNAME");
        if let Some(n) = &ifname {
            if !valid_ifname(n) {
                return Err(bad_env(format!(
                    "CNI_IFNAME {n:?} is not a valid interface name"
                )));
            }
        }
        let args = var("CNI_ARGS")
            .map(|s| {
                s.split(';')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .ok_or_else(|| {
                                bad_env(format!("CNI_ARGS item {kv:?} is not KEY=VALUE"))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let env = CniEnv {
            command,
            container_id,
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname,
            args,
            path: var("CNI_PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        };
        let (need_id, need_netns, need_if) = match command {
            Command::Add | Command::Check => (true, true, true),
            Command::Del => (true, false, true),
            Command::Version | Command::Status | Command::Gc => (false, false, false),
        };
        for (needed, present, name) in [
            (need_id, env.container_id.is_some(), "CNI_CONTAINERID"),
            (need_netns, env.netns.is_some(), "CNI_NETNS"),
            (need_if, env.ifname.is_some(), "CNI_IFNAME"),
        ] {
            if needed && !present {
                return Err(bad_env(format!("{name} is required for {command:?}")));
            }
        }
        Ok(env)
    }

    /// The (container ID, ifname) pair; only valid for verbs that require both.
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey {
            container_id: self.container_id.clone().expect("checked by from_vars"),
            ifname: self.ifname.clone().expect("checked by from_vars"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_vars(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee_1.a-b"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAME=web;K8S_POD_NAMESPACE=default;"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn full_add_environment_is_parsed() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(
            e.key(),
            AttachmentKey {
                container_id: "c0ffee_1.a-b".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/pod")));
        assert_eq!(e.args[1], ("K8S_POD_NAMESPACE".into(), "default".into()));
        let pod = e.pod().expect("namespace and name given");
        assert_eq!((pod.namespace.as_str(), pod.name.as_str(), pod.uid), ("default", "web", None));
        assert_eq!(e.path.len(), 2);
    }

    fn without(key: &str) -> Vec<(&'static str, &'static str)> {
        ADD.iter().copied().filter(|(k, _)| *k != key).collect()
    }

    fn with(key: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut v = without(key);
        v.push((key, value));
        v
    }

    #[test]
    fn missing_or_bad_variables_are_invalid_environment() {
        for key in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            assert_eq!(
                env(&without(key)).unwrap_err().code,
                code::INVALID_ENV,
                "without {key}"
            );
        }
        for (k, v) in [
            ("CNI_COMMAND", "REMOVE"),
            ("CNI_CONTAINERID", "-leading-dash"),
            ("CNI_CONTAINERID", "has space"),
            ("CNI_IFNAME", "a-name-longer-than-15"),
            ("CNI_IFNAME", "eth/0"),
            ("CNI_ARGS", "novalue"),
        ] {
            assert_eq!(
                env(&with(k, v)).unwrap_err().code,
                code::INVALID_ENV,
                "{k}={v}"
            );
        }
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing() {
        let mut del = without("CNI_NETNS");
        del.retain(|(k, _)| *k != "CNI_COMMAND");
        del.push(("CNI_COMMAND", "DEL"));
        assert_eq!(env(&del).unwrap().command, Command::Del);
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap().command, Command::Gc);
        assert_eq!(
            env(&[("CNI_COMMAND", "STATUS")]).unwrap().command,
            Command::Status
        );
    }
}
