//! Container environment: Service link variables, downward-API field references and `$(VAR)`
//! expansion, as kubelet computes them (kubelet_pods.go `makeEnvironmentVariables`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};

/// Docker-link style variables for the Services of the pod's namespace plus the `kubernetes`
/// master service (which kubelet always adds). Headless and ExternalName services are skipped.
pub fn service_env(services: &[Service], pod_namespace: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let is_master = ns == "default" && name == "kubernetes";
        if ns == pod_namespace || is_master {
            chosen.insert(name.to_string(), s);
        }
    }
    for (name, s) in chosen {
        let Some(spec) = &s.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let prefix = name.to_ascii_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_ascii_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{prefix}_PORT"),
            format!(
                "{}://{ip}:{}",
                proto(first).to_ascii_lowercase(),
                first.port
            ),
        ));
        for p in ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_ascii_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{}", pr.to_ascii_lowercase(), p.port),
            ));
            out.push((format!("{base}_PROTO"), pr.to_ascii_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// A downward-API `fieldRef` value.
pub fn field_ref(pod: &Pod, path: &str, pod_ip: Option<&str>, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => pod_ip.unwrap_or(host_ip).to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => {
            let (kind, key) = path
                .split_once("['")
                .and_then(|(k, rest)| Some((k, rest.strip_suffix("']")?)))?;
            match kind {
                "metadata.labels" => m.labels.as_ref()?.get(key)?.clone(),
                "metadata.annotations" => m.annotations.as_ref()?.get(key)?.clone(),
                _ => return None,
            }
        }
    };
    Some(value)
}

/// Expands `$(NAME)` references from `env`; `$$(NAME)` is an escaped literal `$(NAME)`, and an
/// unknown name is left as written (kubernetes third_party/forked/golang/expansion).
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(String::from),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn service_links_include_the_master_service_and_skip_headless() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                "10.32.0.1",
                &[(Some("https"), 443)],
            ),
            svc("web", "my-nginx", "10.32.0.50", &[(None, 80)]),
            svc("web", "headless", "None", &[(None, 80)]),
            svc("other", "elsewhere", "10.32.0.9", &[(None, 80)]),
        ];
        let env: BTreeMap<String, String> = service_env(&services, "web").into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.32.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.32.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.32.0.1");
        assert_eq!(env["MY_NGINX_SERVICE_HOST"], "10.32.0.50");
        assert_eq!(env["MY_NGINX_PORT_80_TCP"], "tcp://10.32.0.50:80");
        assert!(!env
            .keys()
            .any(|k| k.starts_with("HEADLESS") || k.starts_with("ELSEWHERE")));
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let env = vec![
            ("POD_IP".to_string(), "10.200.1.5".to_string()),
            ("A".into(), "x".into()),
        ];
        assert_eq!(expand("ip=$(POD_IP)", &env), "ip=10.200.1.5");
        assert_eq!(
            expand("$$(POD_IP) $(MISSING) $(A)$(A)", &env),
            "$(POD_IP) $(MISSING) xx"
        );
        assert_eq!(
            expand("plain $HOME and $(unclosed", &env),
            "plain $HOME and $(unclosed"
        );
        assert_eq!(expand("ünï $(A)", &env), "ünï x");
    }

    #[test]
    fn field_refs() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web-1".into());
        pod.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        assert_eq!(
            field_ref(&pod, "metadata.name", None, "172.30.0.11").as_deref(),
            Some("web-1")
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels['app']", None, "h").as_deref(),
            Some("web")
        );
        assert_eq!(
            field_ref(&pod, "status.podIP", Some("10.200.1.5"), "h").as_deref(),
            Some("10.200.1.5")
        );
        assert_eq!(
            field_ref(&pod, "status.podIP", None, "172.30.0.11").as_deref(),
            Some("172.30.0.11")
        );
        assert_eq!(field_ref(&pod, "spec.bogus", None, "h"), None);
    }
}
