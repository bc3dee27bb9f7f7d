//! The image catalogue: which Debian program (or lab binary) stands in for a container image,
//! and how a container's command/args become an argv (Docker ENTRYPOINT/CMD semantics).

use std::path::{Path, PathBuf};

/// A container image reference split the way registries name things.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository without the default registry and `library/` (`nginx`, `radial/busyboxplus`,
    /// `registry.k8s.io/coredns/coredns`).
    pub repository: String,
    /// Tag if given (`1.28`); a digest is dropped.
    pub tag: Option<String>,
}

impl ImageRef {
    /// Parses `[registry/]path[:tag][@digest]` and normalises Docker Hub names.
    pub fn parse(image: &str) -> ImageRef {
        let without_digest = image.split('@').next().unwrap_or(image);
        // A ':' after the last '/' is a tag; one before it belongs to a registry port.
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match without_digest[last_slash..].find(':') {
            Some(i) => (
                &without_digest[..last_slash + i],
                Some(without_digest[last_slash + i + 1..].to_string()),
            ),
            None => (without_digest, None),
        };
        let mut repo = repo.to_ascii_lowercase();
        for prefix in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
            if let Some(rest) = repo.strip_prefix(prefix) {
                repo = rest.to_string();
            }
        }
        if let Some(rest) = repo.strip_prefix("library/") {
            repo = rest.to_string();
        }
        ImageRef {
            repository: repo,
            tag,
        }
    }

    /// The last path element of the repository (`coredns` for `registry.k8s.io/coredns/coredns`).
    fn base_name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }
}

/// What runs for an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Debian's nginx-light serving the default welcome page.
    Nginx,
    /// Debian's busybox applets (`busybox`, `alpine`-like shells).
    Busybox,
    /// Busybox applets plus curl (`radial/busyboxplus:curl`).
    BusyboxCurl,
    /// curl as entrypoint (`curlimages/curl`).
    Curl,
    /// The `coredns` binary from `bin_paths`.
    Coredns,
    /// iperf3 server/client (`networkstatic/iperf3`).
    Iperf3,
    /// A process that only sleeps (`registry.k8s.io/pause`).
    Pause,
    /// Kubernetes' e2e test image (`registry.k8s.io/e2e-test-images/agnhost`): the lab's
    /// agnhost build from `bin_paths` as `/agnhost`, the machine's tools (sh, nc, curl, dig)
    /// standing in for the image's Alpine ones.
    Agnhost,
    /// A Debian userland (`e2e-test-images/glibc-dns-testing`: sh, dig, getent).
    Debian,
    /// The network troubleshooting toolbox `nicolaka/netshoot`: the machine's tools (socat,
    /// nc, dig, curl, python3, iperf3, sockperf) standing in for the image's.
    Netshoot,
    /// Not the catalogue's: an image loaded from an archive (`Roots::loaded`), run from its
    /// own file system with its own ENTRYPOINT and CMD (see `image`).
    Loaded,
}

/// The registry of Kubernetes' e2e test images.
const E2E_REGISTRY: &str = "registry.k8s.io/e2e-test-images/";

/// The agnhost image tag the lab builds (its `VERSION` in the pinned Kubernetes module).
pub const AGNHOST_TAG: &str = crate::upstream::Versions::PINNED.agnhost;

/// The image is not one the lab can run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "image {image:?} is not in the lab's image catalogue (known: nginx, busybox, \
     radial/busyboxplus, alpine, curlimages/curl, coredns, networkstatic/iperf3, \
     nicolaka/netshoot, pause, \
     registry.k8s.io/e2e-test-images/{{agnhost:{AGNHOST_TAG},nginx,busybox,glibc-dns-testing}}; \
     or an image loaded onto the node from an archive, such as weft's from `cargo xtask image`)")]
pub struct UnknownImage {
    pub image: String,
}

/// Looks an image up, tag-insensitively except where the tag selects the program
/// (`radial/busyboxplus:curl` has curl, other tags of it are plain busybox).
pub fn lookup(image: &str) -> Result<Program, UnknownImage> {
    let r = ImageRef::parse(image);
    let program = match r.repository.as_str() {
        "nginx" | "nginxinc/nginx-unprivileged" => Program::Nginx,
        "busybox" | "alpine" | "k8s.gcr.io/busybox" | "gcr.io/google-containers/busybox" => {
            Program::Busybox
        }
        "radial/busyboxplus" => match r.tag.as_deref() {
            Some("curl") => Program::BusyboxCurl,
            _ => Program::Busybox,
        },
        "curlimages/curl" => Program::Curl,
        "networkstatic/iperf3" => Program::Iperf3,
        "nicolaka/netshoot" => Program::Netshoot,
        "registry.k8s.io/pause" | "k8s.gcr.io/pause" => Program::Pause,
        e2e if e2e.starts_with(E2E_REGISTRY) => match (&e2e[E2E_REGISTRY.len()..], r.tag.as_deref()) {
            // Another agnhost release would behave differently: only the one built here.
            ("agnhost", Some(AGNHOST_TAG) | None) => Program::Agnhost,
            ("nginx", _) => Program::Nginx,
            ("busybox", _) => Program::Busybox,
            ("glibc-dns-testing", _) => Program::Debian,
            _ => {
                return Err(UnknownImage {
                    image: image.to_string(),
                })
            }
        },
        _ if r.base_name() == "coredns" => Program::Coredns,
        _ => {
            return Err(UnknownImage {
                image: image.to_string(),
            })
        }
    };
    Ok(program)
}

/// Where the catalogue finds its programs.
#[derive(Clone, Debug)]
pub struct Roots {
    /// Per-image bin directories are created under here (`<images>/busybox/bin`).
    pub images_dir: PathBuf,
    /// Extra binaries (coredns, agnhost).
    pub bin_paths: Option<PathBuf>,
    /// Images loaded from archives: these run from their own file system, not the catalogue.
    pub loaded: Vec<super::image::LoadedImage>,
}

impl Roots {
    /// The loaded image a pod's `image:` names, if any.
    pub fn loaded_image(&self, image: &str) -> Option<&super::image::LoadedImage> {
        self.loaded.iter().find(|i| i.matches(image))
    }

    /// PATH inside a container of `image`: a loaded image's own, else the catalogue's (empty
    /// for an image neither knows).
    pub fn path_env_for(&self, image: &str) -> String {
        match self.loaded_image(image) {
            Some(l) => l.path_env(),
            None => lookup(image).map(|p| p.path_env(self)).unwrap_or_default(),
        }
    }

    /// The catalogue's programs that shadow the machine's for `image` (none for a loaded image:
    /// its programs are inside its own root).
    pub fn shadow_dir_for(&self, image: &str) -> Option<PathBuf> {
        match self.loaded_image(image) {
            Some(_) => None,
            None => lookup(image).ok().and_then(|p| p.shadow_dir(self)),
        }
    }
}

/// The Debian busybox binary.
pub const BUSYBOX: &str = "/usr/bin/busybox";
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Program {
    /// The image's ENTRYPOINT and CMD as its real image declares them.
    fn entrypoint_and_cmd(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Program::Nginx => (&[], &["nginx", "-g", "daemon off;"]),
            Program::Busybox | Program::BusyboxCurl => (&[], &["sh"]),
            Program::Curl => (&["curl"], &[]),
            Program::Coredns => (&["/coredns"], &[]),
            Program::Iperf3 => (&["iperf3"], &[]),
            Program::Pause => (&["/pause"], &[]),
            Program::Agnhost => (&["/agnhost"], &["pause"]),
            Program::Debian => (&[], &["bash"]),
            // The image's CMD is zsh; sh is what the machine surely has.
            Program::Netshoot => (&[], &["sh"]),
            Program::Loaded => (&[], &[]),
        }
    }

    /// Programs of the image that come first but leave the machine's available (agnhost's
    /// `/agnhost`), as opposed to [`Program::bin_dir`], which is all the image has.
    pub fn extra_dir(self, roots: &Roots) -> Option<PathBuf> {
        match self {
            Program::Agnhost => Some(roots.images_dir.join("agnhost")),
            _ => None,
        }
    }

    /// The image's own programs that shadow the machine's: what `kubectl exec` resolves
    /// first.
    pub fn shadow_dir(self, roots: &Roots) -> Option<PathBuf> {
        self.bin_dir(roots).or_else(|| self.extra_dir(roots))
    }

    /// The image's WORKDIR, when it matters: agnhost's holds the files its subcommands read
    /// relative to it (porter's `localhost.crt` and `.key`).
    pub fn workdir(self, roots: &Roots) -> Option<PathBuf> {
        self.extra_dir(roots)
    }

    /// The directory whose entries shadow the host's programs for this image, if any.
    pub fn bin_dir(self, roots: &Roots) -> Option<PathBuf> {
        match self {
            Program::Busybox => Some(roots.images_dir.join("busybox/bin")),
            Program::BusyboxCurl => Some(roots.images_dir.join("busyboxplus-curl/bin")),
            _ => None,
        }
    }

    /// PATH inside the container.
    pub fn path_env(self, roots: &Roots) -> String {
        match (self.bin_dir(roots), self) {
            (Some(dir), _) => dir.display().to_string(),
            (None, Program::Coredns) => match &roots.bin_paths {
                Some(p) => format!("{}:{HOST_PATH}", p.display()),
                None => HOST_PATH.to_string(),
            },
            _ => HOST_PATH.to_string(),
        }
    }

    /// The argv for a container: Docker semantics (command replaces ENTRYPOINT, args replace
    /// CMD), then argv[0] is resolved to a real file on this machine.
    pub fn argv(
        self,
        command: &[String],
        args: &[String],
        roots: &Roots,
    ) -> Result<Vec<String>, CommandError> {
        let (entrypoint, cmd) = self.entrypoint_and_cmd();
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut argv = compose_argv(&own(entrypoint), &own(cmd), command, args)?;
        argv[0] = self.resolve(&argv[0], roots)?;
        Ok(argv)
    }

    /// Finds the file that argv[0] names: the image's own programs first (by base name, so
    /// `/bin/sh` in a busybox image is busybox's sh), then the host's PATH.
    fn resolve(self, arg0: &str, roots: &Roots) -> Result<String, CommandError> {
        let base = Path::new(arg0)
            .file_name()
            .and_then(|b| b.to_str())
            .unwrap_or(arg0);
        let from_bin_paths = self == Program::Coredns && base == "coredns";
        if from_bin_paths {
            let dir = roots.bin_paths.as_ref().ok_or(CommandError::NoBinPaths {
                program: base.to_string(),
            })?;
            let p = dir.join(base);
            return if p.is_file() {
                Ok(p.display().to_string())
            } else {
                Err(CommandError::NotFound {
                    program: p.display().to_string(),
                })
            };
        }
        if self == Program::Pause && base == "pause" {
            return Ok(host_which("sleep").unwrap_or_else(|| "/bin/sleep".into()));
        }
        if let Some(dir) = self.extra_dir(roots) {
            let p = dir.join(base);
            if p.exists() {
                return Ok(p.display().to_string());
            }
        }
        if let Some(dir) = self.bin_dir(roots) {
            let p = dir.join(base);
            if p.exists() {
                return Ok(p.display().to_string());
            }
            // A busybox image has nothing else: an unknown program fails like it would there.
            return Err(CommandError::NotFound {
                program: arg0.to_string(),
            });
        }
        if arg0.contains('/') {
            if Path::new(arg0).is_file() {
                return Ok(arg0.to_string());
            }
            return host_which(base).ok_or(CommandError::NotFound {
                program: arg0.to_string(),
            });
        }
        host_which(base).ok_or(CommandError::NotFound {
            program: arg0.to_string(),
        })
    }

    /// Pause images run `sleep infinity`; the argument is added here.
    pub fn fix_pause_args(self, argv: &mut Vec<String>) {
        if self == Program::Pause && argv.len() == 1 {
            argv.push("infinity".into());
        }
    }
}

/// Docker's rule for a container's argv: `command` replaces the image's ENTRYPOINT (and drops
/// its CMD), `args` replace its CMD.
pub fn compose_argv(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, CommandError> {
    let argv: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else {
        let tail = if args.is_empty() { cmd } else { args };
        entrypoint.iter().chain(tail).cloned().collect()
    };
    if argv.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(argv)
}

fn host_which(name: &str) -> Option<String> {
    HOST_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// A container's command cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("container has no command and its image declares none")]
    Empty,
    #[error("executable {program:?} not found in the image (lab catalogue)")]
    NotFound { program: String },
    #[error("{program} needs the kubelet's bin_paths directory, which is not configured")]
    NoBinPaths { program: String },
}

/// Creates the per-image bin directories: busybox applet symlinks (and curl for
/// busyboxplus:curl), and agnhost's (`agnhost`, `agnhost-2` and porter's TLS files, linked
/// from `bin_paths` when the lab staged them there). Idempotent.
pub fn prepare_images(roots: &Roots) -> std::io::Result<()> {
    if let Some(bins) = &roots.bin_paths {
        let dir = roots.images_dir.join("agnhost");
        std::fs::create_dir_all(&dir)?;
        for (name, target) in [
            ("agnhost", "agnhost"),
            // The image links this name to the same binary (entrypoint tests use it).
            ("agnhost-2", "agnhost"),
            ("localhost.crt", "localhost.crt"),
            ("localhost.key", "localhost.key"),
        ] {
            if bins.join(target).exists() {
                link(&bins.join(target), &dir.join(name))?;
            }
        }
    }
    let applets = busybox_applets()?;
    for (program, extra) in [
        (Program::Busybox, None),
        (Program::BusyboxCurl, Some("/usr/bin/curl")),
    ] {
        let dir = program
            .bin_dir(roots)
            .expect("busybox images have a bin dir");
        std::fs::create_dir_all(&dir)?;
        for applet in &applets {
            link(Path::new(BUSYBOX), &dir.join(applet))?;
        }
        link(Path::new(BUSYBOX), &dir.join("busybox"))?;
        if let Some(extra) = extra {
            link(Path::new(extra), &dir.join("curl"))?;
        }
    }
    Ok(())
}

fn link(target: &Path, at: &Path) -> std::io::Result<()> {
    match std::os::unix::fs::symlink(target, at) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

fn busybox_applets() -> std::io::Result<Vec<String>> {
    let out = std::process::Command::new(BUSYBOX).arg("--list").output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("busybox --list failed"));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_image_references() {
        assert_eq!(
            ImageRef::parse("nginx"),
            ImageRef {
                repository: "nginx".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageRef::parse("docker.io/library/busybox:1.28"),
            ImageRef {
                repository: "busybox".into(),
                tag: Some("1.28".into())
            }
        );
        assert_eq!(
            ImageRef::parse("localhost:5000/radial/busyboxplus:curl@sha256:abc"),
            ImageRef {
                repository: "localhost:5000/radial/busyboxplus".into(),
                tag: Some("curl".into())
            }
        );
        assert_eq!(
            ImageRef::parse("registry.k8s.io/coredns/coredns:v1.12.0"),
            ImageRef {
                repository: "registry.k8s.io/coredns/coredns".into(),
                tag: Some("v1.12.0".into())
            }
        );
    }

    #[test]
    fn seed_images_are_in_the_catalogue() {
        assert_eq!(lookup("nginx"), Ok(Program::Nginx));
        assert_eq!(lookup("nginx:1.27"), Ok(Program::Nginx));
        assert_eq!(lookup("busybox"), Ok(Program::Busybox));
        assert_eq!(lookup("busybox:1.28"), Ok(Program::Busybox));
        assert_eq!(lookup("radial/busyboxplus:curl"), Ok(Program::BusyboxCurl));
        assert_eq!(lookup("radial/busyboxplus:base"), Ok(Program::Busybox));
        assert_eq!(
            lookup("registry.k8s.io/coredns/coredns:v1.11.3"),
            Ok(Program::Coredns)
        );
        assert_eq!(lookup("coredns/coredns:1.12.1"), Ok(Program::Coredns));
        // weft runs only from its loaded image (`Roots::loaded`), never from the catalogue.
        assert!(lookup("ghcr.io/weft-net/weft:0.1.0").is_err());
    }

    #[test]
    fn e2e_test_images_are_in_the_catalogue() {
        let e2e = |name: &str| lookup(&format!("registry.k8s.io/e2e-test-images/{name}"));
        assert_eq!(e2e("agnhost:2.63.0"), Ok(Program::Agnhost));
        assert!(e2e("agnhost:2.55").is_err(), "only the agnhost the lab built");
        assert_eq!(e2e("nginx:1.15-4"), Ok(Program::Nginx));
        assert_eq!(e2e("busybox:1.37.0-1"), Ok(Program::Busybox));
        assert_eq!(e2e("glibc-dns-testing:2.0.0"), Ok(Program::Debian));
        assert_eq!(lookup("registry.k8s.io/pause:3.10.2"), Ok(Program::Pause));
        assert!(e2e("sample-apiserver:1.29.2").is_err());
    }

    #[test]
    fn agnhost_runs_the_built_binary_as_its_entrypoint_in_its_image_dir() {
        let tmp = crate::kubelet::testutil::tempdir("wk-cat-agn");
        let r = roots(&tmp);
        std::fs::create_dir_all(tmp.join("bin")).unwrap();
        for f in ["agnhost", "localhost.crt", "localhost.key"] {
            std::fs::write(tmp.join("bin").join(f), "").unwrap();
        }
        prepare_images(&r).unwrap();
        let dir = tmp.join("images/agnhost");
        // Default CMD is `pause`; args replace it (`netexec …`); `/agnhost` in a command too.
        let argv = Program::Agnhost.argv(&[], &[], &r).unwrap();
        assert_eq!(argv, vec![dir.join("agnhost").display().to_string(), "pause".into()]);
        let argv = Program::Agnhost.argv(&[], &s(&["netexec", "--http-port=8080"]), &r).unwrap();
        assert_eq!(&argv[1..], &s(&["netexec", "--http-port=8080"])[..]);
        let argv = Program::Agnhost.argv(&s(&["/agnhost", "serve-hostname"]), &[], &r).unwrap();
        assert_eq!(argv[0], dir.join("agnhost").display().to_string());
        // The machine's tools stand in for the image's Alpine ones.
        let argv = Program::Agnhost.argv(&s(&["sh", "-c", "nc -h"]), &[], &r).unwrap();
        assert!(argv[0].ends_with("/sh"), "{argv:?}");
        assert_eq!(Program::Agnhost.workdir(&r), Some(dir.clone()));
        assert!(dir.join("localhost.crt").exists() && dir.join("agnhost-2").exists());
        assert_eq!(Program::Agnhost.shadow_dir(&r), Some(dir));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn netshoot_runs_the_machines_network_tools() {
        assert_eq!(lookup("nicolaka/netshoot:v0.13"), Ok(Program::Netshoot));
        let tmp = crate::kubelet::testutil::tempdir("wk-cat-ns");
        let r = roots(&tmp);
        assert_eq!(Program::Netshoot.path_env(&r), HOST_PATH);
        let argv = Program::Netshoot.argv(&s(&["socat", "-V"]), &[], &r).unwrap();
        assert_eq!(argv[0], host_which("socat").expect("socat on this machine (cargo xtask setup)"));
        assert!(Program::Netshoot.argv(&[], &[], &r).unwrap()[0].ends_with("/sh"));
    }

    #[test]
    fn unknown_image_is_a_clear_error() {
        let e = lookup("quay.io/prometheus/prometheus:v3").unwrap_err();
        assert_eq!(e.image, "quay.io/prometheus/prometheus:v3");
        assert!(
            e.to_string().contains("not in the lab's image catalogue"),
            "{e}"
        );
        assert!(lookup("nginxx").is_err());
    }

    fn roots(tmp: &Path) -> Roots {
        Roots {
            images_dir: tmp.join("images"),
            bin_paths: Some(tmp.join("bin")),
            loaded: vec![],
        }
    }

    #[test]
    fn busybox_command_resolves_to_busybox_applets() {
        let tmp = crate::kubelet::testutil::tempdir("wk-cat-bb");
        let r = roots(&tmp);
        prepare_images(&r).unwrap();
        let argv = Program::Busybox
            .argv(&s(&["sleep", "3600"]), &[], &r)
            .unwrap();
        assert_eq!(
            argv,
            vec![
                tmp.join("images/busybox/bin/sleep").display().to_string(),
                "3600".into()
            ]
        );
        // An absolute /bin/sh in the pod spec is the image's sh, not the host's dash.
        let argv = Program::Busybox
            .argv(&s(&["/bin/sh", "-c"]), &s(&["echo hi"]), &r)
            .unwrap();
        assert_eq!(
            argv[0],
            tmp.join("images/busybox/bin/sh").display().to_string()
        );
        assert_eq!(&argv[1..], &s(&["-c", "echo hi"])[..]);
        // Default CMD is sh.
        let argv = Program::Busybox.argv(&[], &[], &r).unwrap();
        assert!(argv[0].ends_with("/busybox/bin/sh"));
        // curl only exists in the curl image.
        assert!(Program::Busybox.argv(&s(&["curl", "x"]), &[], &r).is_err());
        let argv = Program::BusyboxCurl
            .argv(&s(&["curl", "x"]), &[], &r)
            .unwrap();
        assert!(argv[0].ends_with("/busyboxplus-curl/bin/curl"));
        assert_eq!(
            Program::BusyboxCurl.path_env(&r),
            tmp.join("images/busyboxplus-curl/bin")
                .display()
                .to_string()
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker_semantics() {
        let tmp = crate::kubelet::testutil::tempdir("wk-cat-ep");
        let r = roots(&tmp);
        std::fs::create_dir_all(tmp.join("bin")).unwrap();
        std::fs::write(tmp.join("bin/coredns"), b"").unwrap();
        // args replace CMD but keep ENTRYPOINT.
        let argv = Program::Coredns
            .argv(&[], &s(&["-conf", "/etc/coredns/Corefile"]), &r)
            .unwrap();
        assert_eq!(
            argv,
            vec![
                tmp.join("bin/coredns").display().to_string(),
                "-conf".into(),
                "/etc/coredns/Corefile".into()
            ]
        );
        // nginx default is nginx -g 'daemon off;' from the host.
        let argv = Program::Nginx.argv(&[], &[], &r).unwrap();
        assert_eq!(argv[0], "/usr/sbin/nginx");
        assert_eq!(&argv[1..], &s(&["-g", "daemon off;"])[..]);
        // coredns without bin_paths is a clear error.
        let no_bins = Roots {
            images_dir: r.images_dir.clone(),
            bin_paths: None,
            loaded: vec![],
        };
        assert!(matches!(
            Program::Coredns.argv(&[], &[], &no_bins),
            Err(CommandError::NoBinPaths { .. })
        ));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
