//! Every pinned upstream version of the lab, in one place.

/// The upstream releases the lab builds. Change a version here and nowhere else: cache
/// directories, wrapper modules, ldflags and the `--version` checks all derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Versions {
    /// `k8s.io/kubernetes`: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
    /// kubectl. Keep in step with the agent's `k8s-openapi` feature (`v1_36`).
    pub kubernetes: &'static str,
    /// `go.etcd.io/etcd/server/v3` (latest 3.6 patch on the proxy when pinned).
    pub etcd: &'static str,
    /// `github.com/coredns/coredns`: the 1.14 line that kubeadm 1.36 ships (v1.14.2), latest patch.
    pub coredns: &'static str,
    /// `github.com/containernetworking/plugins`: bridge, host-local, loopback, portmap.
    pub cni_plugins: &'static str,
    /// `github.com/containernetworking/cni`: cnitool (part of the root module in v1.3.x).
    pub cni: &'static str,
    /// agnhost, the e2e tests' all-purpose image: the tag its `VERSION` file in the Kubernetes
    /// module above carries (`registry.k8s.io/e2e-test-images/agnhost:<this>`).
    pub agnhost: &'static str,
    /// `github.com/onsi/ginkgo/v2`: the ginkgo CLI for parallel e2e runs; must be the version
    /// the Kubernetes module requires (checked when e2e.test is built).
    pub ginkgo: &'static str,
    /// `github.com/cloudnativelabs/kube-router/v2`: its firewall controller is the lab's
    /// reference NetworkPolicy engine (a test peer only, never shipped: kind's default,
    /// kube-network-policies, needs nftables' `queue` expression, which this kernel lacks).
    pub kube_router: &'static str,
    /// Oldest Go that builds all of the above (the highest `go` line among their go.mod files).
    pub go_min: &'static str,
}

impl Versions {
    /// The versions the lab uses.
    pub const PINNED: Versions = Versions {
        kubernetes: "v1.36.3",
        etcd: "v3.6.16",
        coredns: "v1.14.7",
        cni_plugins: "v1.9.1",
        cni: "v1.3.1",
        agnhost: "2.63.0",
        ginkgo: "v2.28.1",
        kube_router: "v2.1.0",
        go_min: "1.26.0",
    };

    /// The tag of the staging modules (`k8s.io/api`, `k8s.io/client-go`, …) that belong to the
    /// Kubernetes release: `v1.X.Y` is published as `v0.X.Y`.
    pub fn kubernetes_staging(&self) -> String {
        staging_version(self.kubernetes)
    }
}

/// `v1.36.3` → `v0.36.3`; anything not starting with `v1.` is returned unchanged (a caller that
/// pins a pre-release such as `v1.37.0-rc.1` gets `v0.37.0-rc.1`).
pub(crate) fn staging_version(kubernetes: &str) -> String {
    match kubernetes.strip_prefix("v1.") {
        Some(rest) => format!("v0.{rest}"),
        None => kubernetes.to_string(),
    }
}

/// `v1.36.3` → (`1`, `36`): the `gitMajor`/`gitMinor` ldflags Kubernetes' own build sets.
pub(crate) fn major_minor(version: &str) -> Option<(&str, &str)> {
    let mut parts = version.strip_prefix('v')?.split('.');
    let major = parts.next().filter(|s| !s.is_empty())?;
    let minor = parts.next().filter(|s| !s.is_empty())?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_tag_maps_major_one_to_zero() {
        assert_eq!(staging_version("v1.36.3"), "v0.36.3");
        assert_eq!(staging_version("v1.37.0-rc.1"), "v0.37.0-rc.1");
        assert_eq!(Versions::PINNED.kubernetes_staging(), "v0.36.3");
    }

    #[test]
    fn major_minor_splits_release_tags() {
        assert_eq!(major_minor("v1.36.3"), Some(("1", "36")));
        assert_eq!(major_minor("1.36.3"), None);
        assert_eq!(major_minor("v1"), None);
    }

    #[test]
    fn pinned_versions_are_tags() {
        let v = Versions::PINNED;
        for tag in [v.kubernetes, v.etcd, v.coredns, v.cni_plugins, v.cni, v.ginkgo, v.kube_router] {
            assert!(tag.starts_with('v') && major_minor(tag).is_some(), "{tag}");
        }
    }
}
