//! A pod's /etc/resolv.conf and /etc/hosts, rendered the way kubelet's dns and hosts managers do.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::PodDNSConfig;

/// Inputs for a pod's resolv.conf.
pub struct DnsInputs<'a> {
    pub namespace: &'a str,
    pub dns_policy: Option<&'a str>,
    pub host_network: bool,
    pub dns_config: Option<&'a PodDNSConfig>,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: &'a str,
    /// The node's own resolv.conf (what `Default` copies).
    pub host_resolv_conf: &'a str,
}

/// What the pod's resolv.conf must be, or None when the pod uses the node's file unchanged
/// (host network without `ClusterFirstWithHostNet`).
pub fn render_resolv_conf(i: &DnsInputs) -> Option<String> {
    let policy = i.dns_policy.unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options): Parsed = match policy {
        "ClusterFirstWithHostNet" => cluster_first(i),
        "ClusterFirst" if !i.host_network => cluster_first(i),
        "None" => (vec![], vec![], vec![]),
        // Default, and ClusterFirst on the host network, use the node's file.
        _ if i.dns_config.is_none() => {
            return if i.host_network {
                None
            } else {
                Some(i.host_resolv_conf.to_string())
            };
        }
        _ => parse_host(i.host_resolv_conf),
    };
    if let Some(cfg) = i.dns_config {
        for s in cfg.nameservers.iter().flatten() {
            if !servers.contains(s) {
                servers.push(s.clone());
            }
        }
        for s in cfg.searches.iter().flatten() {
            if !searches.contains(s) {
                searches.push(s.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let Some(name) = o.name.clone() else { continue };
            options.retain(|(n, _)| *n != name);
            options.push((name, o.value.clone()));
        }
    }
    let mut out = String::new();
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !searches.is_empty() {
        // glibc honours at most 32 search domains; kubelet trims the same way.
        out.push_str(&format!(
            "search {}\n",
            searches
                .iter()
                .take(32)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if !options.is_empty() {
        let opts: Vec<String> = options
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}:{v}"),
                None => n.clone(),
            })
            .collect();
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    Some(out)
}

type Parsed = (Vec<String>, Vec<String>, Vec<(String, Option<String>)>);

fn cluster_first(i: &DnsInputs) -> Parsed {
    let d = i.cluster_domain;
    let mut searches = vec![
        format!("{}.svc.{d}", i.namespace),
        format!("svc.{d}"),
        d.to_string(),
    ];
    // kubelet appends the node's own search domains after the cluster ones.
    for s in parse_host(i.host_resolv_conf).1 {
        if !searches.contains(&s) {
            searches.push(s);
        }
    }
    (
        vec![i.cluster_dns.to_string()],
        searches,
        vec![("ndots".into(), Some("5".into()))],
    )
}

fn parse_host(text: &str) -> Parsed {
    let (mut servers, mut searches, mut options) = (vec![], vec![], vec![]);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => servers.extend(f.next().map(String::from)),
            Some("search") | Some("domain") => searches = f.map(String::from).collect(),
            Some("options") => {
                for o in f {
                    let (n, v) = match o.split_once(':') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (o.to_string(), None),
                    };
                    options.push((n, v));
                }
            }
            _ => {}
        }
    }
    (servers, searches, options)
}

/// The pod's /etc/hosts as kubelet writes it (kubelet_pods.go `managedHostsFileContent`).
pub fn render_hosts(
    pod_ip: Option<Ipv4Addr>,
    hostname: &str,
    fqdn: Option<&str>,
    aliases: &[(String, Vec<String>)],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = pod_ip {
        match fqdn {
            Some(f) => out.push_str(&format!("{ip}\t{f}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in aliases {
            out.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    const HOST: &str = "# generated\nnameserver 203.0.113.53\nsearch lab.example\noptions edns0\n";

    fn inputs<'a>(
        policy: Option<&'a str>,
        host_network: bool,
        cfg: Option<&'a PodDNSConfig>,
    ) -> DnsInputs<'a> {
        DnsInputs {
            namespace: "default",
            dns_policy: policy,
            host_network,
            dns_config: cfg,
            cluster_dns: Ipv4Addr::new(10, 32, 0, 10),
            cluster_domain: "cluster.local",
            host_resolv_conf: HOST,
        }
    }

    #[test]
    fn cluster_first_points_at_cluster_dns_with_kubernetes_search_path() {
        let got = render_resolv_conf(&inputs(None, false, None)).unwrap();
        assert_eq!(
            got,
            "nameserver 10.32.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local lab.example\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_keeps_the_nodes_file_unless_cluster_first_with_host_net() {
        assert_eq!(render_resolv_conf(&inputs(None, true, None)), None);
        assert_eq!(
            render_resolv_conf(&inputs(Some("Default"), true, None)),
            None
        );
        let got = render_resolv_conf(&inputs(Some("ClusterFirstWithHostNet"), true, None)).unwrap();
        assert!(got.starts_with("nameserver 10.32.0.10\n"), "{got}");
    }

    #[test]
    fn default_policy_copies_the_nodes_file() {
        assert_eq!(
            render_resolv_conf(&inputs(Some("Default"), false, None)).unwrap(),
            HOST
        );
    }

    #[test]
    fn none_policy_uses_dns_config_only_and_options_override() {
        let cfg = PodDNSConfig {
            nameservers: Some(vec!["192.0.2.1".into()]),
            searches: Some(vec!["a.example".into()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            }]),
        };
        let got = render_resolv_conf(&inputs(Some("None"), false, Some(&cfg))).unwrap();
        assert_eq!(
            got,
            "nameserver 192.0.2.1\nsearch a.example\noptions ndots:2\n"
        );
        let got = render_resolv_conf(&inputs(None, false, Some(&cfg))).unwrap();
        assert!(
            got.contains("nameserver 10.32.0.10\nnameserver 192.0.2.1\n"),
            "{got}"
        );
        assert!(got.ends_with("options ndots:2\n"), "{got}");
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let h = render_hosts(
            Some(Ipv4Addr::new(10, 200, 1, 5)),
            "web-0",
            Some("web-0.web.default.svc.cluster.local"),
            &[],
        );
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            h.ends_with("10.200.1.5\tweb-0.web.default.svc.cluster.local\tweb-0\n"),
            "{h}"
        );
    }
}
