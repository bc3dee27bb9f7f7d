//! The upstream parts the lab builds and, for each, how: where its source comes from, which
//! binaries it yields and how each proves it runs (`--version` or equivalent).

use std::path::{Path, PathBuf};

use super::versions::{major_minor, Versions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Etcd,
    CniPlugins,
    Cnitool,
    Coredns,
    Kubernetes,
    Agnhost,
    Ginkgo,
    E2e,
    KubeRouter,
}

impl Component {
    /// Build order: the quick ones first, so a broken toolchain or proxy shows within a
    /// minute, then Kubernetes, the long pole; agnhost reuses most of its compiled packages.
    pub const LAB: [Component; 6] = [
        Component::Etcd,
        Component::CniPlugins,
        Component::Cnitool,
        Component::Coredns,
        Component::Kubernetes,
        Component::Agnhost,
    ];

    /// What a conformance run needs on top of [`Component::LAB`]: the e2e test binary and
    /// the ginkgo CLI that runs it in parallel.
    pub const CONFORMANCE: [Component; 2] = [Component::Ginkgo, Component::E2e];

    /// The reference NetworkPolicy engine (`up --netpol kube-router`): a test peer for the
    /// policy suite, built only when a lab asks for it (and by `build --all`).
    pub const REFERENCE: [Component; 1] = [Component::KubeRouter];

    /// Every component, in build order: [`Component::LAB`], [`Component::CONFORMANCE`], then
    /// [`Component::REFERENCE`].
    pub const ALL: [Component; 9] = {
        let mut all = [Component::Etcd; 9];
        let (lab, conf) = (Self::LAB.len(), Self::CONFORMANCE.len());
        let mut i = 0;
        while i < all.len() {
            all[i] = if i < lab {
                Self::LAB[i]
            } else if i < lab + conf {
                Self::CONFORMANCE[i - lab]
            } else {
                Self::REFERENCE[i - lab - conf]
            };
            i += 1;
        }
        all
    };

    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::CniPlugins => "cni-plugins",
            Component::Cnitool => "cnitool",
            Component::Coredns => "coredns",
            Component::Kubernetes => "kubernetes",
            Component::Agnhost => "agnhost",
            Component::Ginkgo => "ginkgo",
            Component::E2e => "e2e",
            Component::KubeRouter => "kube-router",
        }
    }

    pub fn version(self, v: &Versions) -> &'static str {
        match self {
            Component::Etcd => v.etcd,
            Component::CniPlugins => v.cni_plugins,
            Component::Cnitool => v.cni,
            Component::Coredns => v.coredns,
            Component::Kubernetes => v.kubernetes,
            Component::Agnhost => v.agnhost,
            Component::Ginkgo => v.ginkgo,
            Component::E2e => v.kubernetes,
            Component::KubeRouter => v.kube_router,
        }
    }

    /// `<cache>/<name>-<version>`: wrapper source, `bin/`, `build.log` and the stamp.
    pub fn dir(self, cache: &Path, v: &Versions) -> PathBuf {
        cache.join(format!("{}-{}", self.name(), self.version(v)))
    }

    pub fn bin_dir(self, cache: &Path, v: &Versions) -> PathBuf {
        self.dir(cache, v).join("bin")
    }

    /// What a cold build took on the reference machine (2 shared cores, empty Go caches, in
    /// [`Component::ALL`] order), for the progress line; measured, see docs/lab.md.
    pub fn cold_estimate(self) -> &'static str {
        match self {
            Component::Etcd => "~1 min",
            Component::CniPlugins => "~10 s",
            Component::Cnitool => "a few seconds",
            Component::Coredns => "~2 min",
            Component::Kubernetes => "~5-7 min",
            Component::Agnhost => "~1 min after kubernetes",
            Component::Ginkgo => "~20 s",
            Component::E2e => "~3 min after kubernetes",
            Component::KubeRouter => "~2.5 min",
        }
    }

    pub fn recipe(self, v: &Versions) -> Recipe {
        match self {
            Component::Etcd => etcd(v),
            Component::CniPlugins => cni_plugins(v),
            Component::Cnitool => cnitool(v),
            Component::Coredns => coredns(v),
            Component::Kubernetes => kubernetes(v),
            Component::Agnhost => agnhost(v),
            Component::Ginkgo => ginkgo(v),
            Component::E2e => e2e(v),
            Component::KubeRouter => kube_router(v),
        }
    }
}

/// How one component is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub source: Source,
    /// `-tags`, as upstream's release build sets them.
    pub tags: Vec<&'static str>,
    /// `-ldflags` (always with `-s -w`: no symbol table or DWARF, as upstream releases).
    pub ldflags: Vec<String>,
    /// Packages whose `buildDate` variable gets the build time (Kubernetes' version info).
    pub build_date_in: Vec<&'static str>,
    pub binaries: Vec<Binary>,
    /// Build a test binary (`go test -c`) of a package generated in the wrapper instead of
    /// commands; `packages` of the source are then what it imports, compiled first for
    /// progress.
    pub test_main: Option<TestMain>,
    /// Files copied from the required module's source into `bin/` next to the binaries.
    pub module_files: Vec<&'static str>,
    /// Facts about the resolved module graph the build insists on (a version bump elsewhere
    /// must not silently pair mismatched parts).
    pub pins: Vec<Pin>,
}

/// A fact about a wrapper's resolved modules, checked after `go mod tidy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// A file in the required module's source holds exactly this text (trimmed).
    ModuleFile { path: &'static str, expect: String },
    /// The module graph selects this version of a module.
    ModuleVersion { module: &'static str, expect: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `go install <pkg>@<version>`: the upstream go.mod has no `replace`, so it is the main
    /// module itself (its own `go` and `godebug` lines apply).
    Install {
        packages: Vec<String>,
        version: &'static str,
    },
    /// A wrapper module requiring `module@version` (upstream go.mod has `replace` directives).
    Wrapper {
        module: &'static str,
        version: &'static str,
        packages: Vec<String>,
        /// Pin every Kubernetes staging module to this tag.
        pin_staging: Option<String>,
    },
}

/// A test package of our own inside a wrapper module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMain {
    /// Directory (and package) in the wrapper.
    pub dir: &'static str,
    pub file: &'static str,
    pub text: &'static str,
}

/// One binary a component yields and the command that proves it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub name: &'static str,
    pub version_args: &'static [&'static str],
    /// Text its output must contain.
    pub expect: String,
}

impl Recipe {
    /// Identifies the recipe in the stamp: a cached build made with other flags or packages
    /// is rebuilt (the build date is not part of it).
    pub fn fingerprint(&self) -> String {
        let mut f = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            self.source, self.tags, self.ldflags, self.build_date_in, self.binaries
        );
        // Only when used, so the recipes that have neither keep their stamps valid.
        if self.test_main.is_some() || !self.module_files.is_empty() || !self.pins.is_empty() {
            f += &format!("|{:?}|{:?}|{:?}", self.test_main, self.module_files, self.pins);
        }
        f
    }
}

/// hack/lib/golang.sh's tags for every non-debug build of the module (its commands and its
/// test binaries). agnhost and e2e.test get them too: their packages then share Go's build
/// cache with the control plane's (a different tag set changes the cache key of every
/// package above the ones it selects files in).
const K8S_TAGS: [&str; 3] = ["selinux", "notest", "grpcnotrace"];

const K8S_COMMANDS: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubectl",
];

fn kubernetes(v: &Versions) -> Recipe {
    let version = v.kubernetes;
    // hack/lib/version.sh sets these in both packages; without them /version says v0.0.0-master.
    let mut ldflags = version_ldflags(version);
    ldflags.extend(["-s".to_string(), "-w".to_string()]);
    let server = |name| Binary {
        name,
        version_args: &["--version"],
        expect: format!("Kubernetes {version}"),
    };
    Recipe {
        source: Source::Wrapper {
            module: "k8s.io/kubernetes",
            version,
            packages: K8S_COMMANDS
                .iter()
                .map(|c| format!("k8s.io/kubernetes/cmd/{c}"))
                .collect(),
            pin_staging: Some(v.kubernetes_staging()),
        },
        tags: K8S_TAGS.to_vec(),
        ldflags,
        build_date_in: K8S_VERSION_PACKAGES.to_vec(),
        binaries: vec![
            server("kube-apiserver"),
            server("kube-controller-manager"),
            server("kube-scheduler"),
            server("kube-proxy"),
            Binary {
                name: "kubectl",
                version_args: &["version", "--client"],
                expect: format!("Client Version: {version}"),
            },
        ],
        test_main: None,
        module_files: vec![],
        pins: vec![],
    }
}

/// `-X` flags that make `k8s.io/component-base/version` (and client-go's) report `version`.
fn version_ldflags(version: &str) -> Vec<String> {
    let (major, minor) = major_minor(version).expect("pinned Kubernetes version is a vX.Y.Z tag");
    let mut ldflags = Vec::new();
    for pkg in K8S_VERSION_PACKAGES {
        for (key, value) in [
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        ] {
            ldflags.push(format!("-X {pkg}.{key}={value}"));
        }
    }
    ldflags
}

/// The e2e tests' image as a program: `test/images/agnhost` of the same Kubernetes module,
/// with the files its image carries beside the binary (porter's TLS pair).
fn agnhost(v: &Versions) -> Recipe {
    let mut ldflags = vec![format!("-X main.Version={}", v.agnhost)];
    ldflags.extend(strip());
    Recipe {
        source: Source::Wrapper {
            module: "k8s.io/kubernetes",
            version: v.kubernetes,
            packages: vec!["k8s.io/kubernetes/test/images/agnhost".to_string()],
            pin_staging: Some(v.kubernetes_staging()),
        },
        tags: K8S_TAGS.to_vec(),
        ldflags,
        build_date_in: vec![],
        binaries: vec![Binary {
            name: "agnhost",
            version_args: &["--version"],
            expect: format!("version {}", v.agnhost),
        }],
        test_main: None,
        module_files: vec![
            "test/images/agnhost/porter/localhost.crt",
            "test/images/agnhost/porter/localhost.key",
        ],
        pins: vec![Pin::ModuleFile {
            path: "test/images/agnhost/VERSION",
            expect: v.agnhost.to_string(),
        }],
    }
}

/// The network tests of Kubernetes' e2e suite as one test binary (see `e2e/conformance_test.go`).
fn e2e(v: &Versions) -> Recipe {
    let mut ldflags = version_ldflags(v.kubernetes);
    ldflags.extend(strip());
    Recipe {
        source: Source::Wrapper {
            module: "k8s.io/kubernetes",
            version: v.kubernetes,
            packages: vec![
                "k8s.io/kubernetes/test/e2e".to_string(),
                "k8s.io/kubernetes/test/e2e/network".to_string(),
            ],
            pin_staging: Some(v.kubernetes_staging()),
        },
        tags: K8S_TAGS.to_vec(),
        ldflags,
        build_date_in: K8S_VERSION_PACKAGES.to_vec(),
        binaries: vec![Binary {
            name: "e2e.test",
            version_args: &["--version"],
            expect: v.kubernetes.to_string(),
        }],
        test_main: Some(TestMain {
            dir: "conformance",
            file: "conformance_test.go",
            text: include_str!("e2e/conformance_test.go"),
        }),
        module_files: vec![],
        pins: vec![Pin::ModuleVersion {
            module: "github.com/onsi/ginkgo/v2",
            expect: v.ginkgo.to_string(),
        }],
    }
}

/// The ginkgo CLI, which runs a test binary in parallel processes.
fn ginkgo(v: &Versions) -> Recipe {
    let expect = format!("Ginkgo Version {}", v.ginkgo.trim_start_matches('v'));
    install_one("github.com/onsi/ginkgo/v2/ginkgo", v.ginkgo, "ginkgo", &["version"], expect)
}

const K8S_VERSION_PACKAGES: [&str; 2] = [
    "k8s.io/client-go/pkg/version",
    "k8s.io/component-base/version",
];

fn etcd(v: &Versions) -> Recipe {
    Recipe {
        // The server module's root is `package main`; its go.mod replaces api/client/pkg with
        // `../` paths, so it needs a wrapper of its own (not the Kubernetes one: MVS would
        // raise etcd's grpc/otel to Kubernetes' versions).
        source: Source::Wrapper {
            module: "go.etcd.io/etcd/server/v3",
            version: v.etcd,
            packages: vec!["go.etcd.io/etcd/server/v3".to_string()],
            pin_staging: None,
        },
        tags: vec![],
        ldflags: strip(),
        build_date_in: vec![],
        binaries: vec![Binary {
            name: "etcd",
            version_args: &["--version"],
            expect: format!("etcd Version: {}", v.etcd.trim_start_matches('v')),
        }],
        test_main: None,
        module_files: vec![],
        pins: vec![],
    }
}

/// kube-router as its Makefile builds it (version in `pkg/version`); the lab runs only its
/// firewall (NetworkPolicy) controller. Its go.mod has no `replace`: a plain install.
fn kube_router(v: &Versions) -> Recipe {
    let mut recipe = install_one(
        "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",
        v.kube_router,
        "kube-router",
        &["--version"],
        format!("version {}", v.kube_router),
    );
    recipe.ldflags.insert(0, format!("-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version={}", v.kube_router));
    recipe
}

fn coredns(v: &Versions) -> Recipe {
    let expect = format!("CoreDNS-{}", v.coredns.trim_start_matches('v'));
    install_one("github.com/coredns/coredns", v.coredns, "coredns", &["-version"], expect)
}

/// The reference plugins the lab's peer dataplane uses.
pub const CNI_PLUGINS: [(&str, &str); 4] = [
    ("bridge", "main/bridge"),
    ("host-local", "ipam/host-local"),
    ("loopback", "main/loopback"),
    ("portmap", "meta/portmap"),
];

fn cni_plugins(v: &Versions) -> Recipe {
    let version = v.cni_plugins;
    let mut ldflags = vec![format!(
        "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={version}"
    )];
    ldflags.extend(strip());
    Recipe {
        source: Source::Install {
            packages: CNI_PLUGINS
                .iter()
                .map(|(_, p)| format!("github.com/containernetworking/plugins/plugins/{p}"))
                .collect(),
            version,
        },
        tags: vec![],
        ldflags,
        build_date_in: vec![],
        // Run without CNI_COMMAND, a plugin prints its "about" line.
        binaries: CNI_PLUGINS
            .iter()
            .map(|(name, _)| Binary {
                name,
                version_args: &[],
                expect: format!("CNI {name} plugin {version}"),
            })
            .collect(),
        test_main: None,
        module_files: vec![],
        pins: vec![],
    }
}

fn cnitool(v: &Versions) -> Recipe {
    // In cni v1.3.x cnitool is part of the root module (no go.mod of its own, no replace).
    // It has no version flag; its help proves it starts.
    install_one("github.com/containernetworking/cni/cnitool", v.cni, "cnitool", &["--help"], "CNI Tool".into())
}

/// `go install package@version` of one command, stripped, proven by `binary version_args…`
/// printing `expect`.
fn install_one(
    package: &str,
    version: &'static str,
    binary: &'static str,
    version_args: &'static [&'static str],
    expect: String,
) -> Recipe {
    Recipe {
        source: Source::Install { packages: vec![package.to_string()], version },
        tags: vec![],
        ldflags: strip(),
        build_date_in: vec![],
        binaries: vec![Binary { name: binary, version_args, expect }],
        test_main: None,
        module_files: vec![],
        pins: vec![],
    }
}

fn strip() -> Vec<String> {
    vec!["-s".to_string(), "-w".to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_has_its_own_versioned_dir() {
        let v = Versions::PINNED;
        let cache = Path::new("/c");
        assert_eq!(
            Component::Kubernetes.dir(cache, &v),
            Path::new("/c/kubernetes-v1.36.3")
        );
        assert_eq!(
            Component::CniPlugins.bin_dir(cache, &v),
            Path::new("/c/cni-plugins-v1.9.1/bin")
        );
        assert_eq!(Component::ALL.last(), Some(&Component::KubeRouter));
        let mut dirs: Vec<_> = Component::ALL.iter().map(|c| c.dir(cache, &v)).collect();
        dirs.dedup();
        assert_eq!(dirs.len(), Component::ALL.len());
    }

    #[test]
    fn kubernetes_is_one_wrapper_build_with_version_ldflags() {
        let r = Component::Kubernetes.recipe(&Versions::PINNED);
        let Source::Wrapper {
            packages,
            pin_staging,
            ..
        } = &r.source
        else {
            panic!("{r:?}")
        };
        assert_eq!(packages.len(), 5);
        assert_eq!(pin_staging.as_deref(), Some("v0.36.3"));
        for pkg in K8S_VERSION_PACKAGES {
            assert!(
                r.ldflags.contains(&format!("-X {pkg}.gitVersion=v1.36.3")),
                "{:?}",
                r.ldflags
            );
            assert!(
                r.ldflags.contains(&format!("-X {pkg}.gitMinor=36")),
                "{:?}",
                r.ldflags
            );
        }
        let names: Vec<_> = r.binaries.iter().map(|b| b.name).collect();
        assert_eq!(names, K8S_COMMANDS);
        assert!(r.binaries.iter().all(|b| b.expect.contains("v1.36.3")));
    }

    #[test]
    fn version_checks_expect_the_pinned_versions() {
        let v = Versions::PINNED;
        assert_eq!(
            Component::Etcd.recipe(&v).binaries[0].expect,
            "etcd Version: 3.6.16"
        );
        assert_eq!(
            Component::Coredns.recipe(&v).binaries[0].expect,
            "CoreDNS-1.14.7"
        );
        let cni = Component::CniPlugins.recipe(&v);
        assert_eq!(cni.binaries[1].expect, "CNI host-local plugin v1.9.1");
        let kr = Component::KubeRouter.recipe(&v);
        assert_eq!(kr.binaries[0].expect, "version v2.1.0");
        assert!(kr.ldflags[0].ends_with("pkg/version.Version=v2.1.0"), "{:?}", kr.ldflags);
    }

    #[test]
    fn fingerprint_changes_with_the_recipe() {
        let v = Versions::PINNED;
        let a = Component::Etcd.recipe(&v);
        let mut b = a.clone();
        b.tags.push("extra");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Component::Etcd.recipe(&v).fingerprint());
    }
}
