//! Building the components in order, reusing stamped builds, under one lock per cache.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::component::{Component, Recipe, Source};
use super::error::BuildError;
use super::go::{Go, Session};
use super::gomod::{GoModJson, Wrapper};
use super::progress::{fmt_duration, Progress};
use super::stamp::{utc_now, Stamp, StampedBinary};
use super::versions::Versions;

/// How long a binary may take to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Rebuild even when a stamp says the build is done (the Go caches keep it fast).
    pub force: bool,
    /// Only these components; empty means all.
    pub only: Vec<Component>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Stamped build found and reused.
    Cached,
    /// Built (and checked) by this run.
    Built,
    /// Not built yet (status query only).
    Missing,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentReport {
    pub component: Component,
    pub version: String,
    pub state: State,
    /// Time of this run's build, or of the stamped build for cached ones.
    pub build_seconds: Option<f64>,
    pub dir: PathBuf,
    pub binaries: Vec<BinaryReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BinaryReport {
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: Option<u64>,
    /// What its version command printed (first line), from the stamp.
    pub reports: Option<String>,
}

/// Builds what is missing and reports on every selected component.
pub fn build(
    cache: &Path,
    versions: &Versions,
    opts: &BuildOptions,
) -> Result<Vec<ComponentReport>, BuildError> {
    std::fs::create_dir_all(cache).map_err(BuildError::io("create", cache))?;
    let _lock = lock_cache(cache)?;
    let selected: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| opts.only.is_empty() || opts.only.contains(c))
        .collect();

    let mut progress = Progress::new(selected.len());
    let mut go: Option<Go> = None;
    let mut reports = Vec::new();
    for component in selected {
        let version = component.version(versions);
        progress.component(component.name(), version);
        let dir = component.dir(cache, versions);
        let recipe = component.recipe(versions);
        let names: Vec<&str> = recipe.binaries.iter().map(|b| b.name).collect();
        let stamp = Stamp::read(&dir)
            .filter(|s| s.is_fresh(&recipe.fingerprint(), &dir.join("bin"), &names));
        if let (Some(stamp), false) = (&stamp, opts.force) {
            progress.step(&format!("cached in {}", dir.display()));
            reports.push(report(
                component,
                versions,
                cache,
                State::Cached,
                Some(stamp),
            ));
            continue;
        }
        let go = match &mut go {
            Some(go) => go,
            None => go.insert(Go::find(versions.go_min)?),
        };
        let stamp = build_one(go, component, &recipe, versions, &dir, &progress)?;
        reports.push(report(
            component,
            versions,
            cache,
            State::Built,
            Some(&stamp),
        ));
    }
    eprintln!(
        "upstream parts ready in {} (total {})",
        cache.display(),
        fmt_duration(progress.elapsed())
    );
    Ok(reports)
}

/// What the cache holds, without building anything.
pub fn status(cache: &Path, versions: &Versions) -> Vec<ComponentReport> {
    Component::ALL
        .into_iter()
        .map(|c| {
            let dir = c.dir(cache, versions);
            let recipe = c.recipe(versions);
            let names: Vec<&str> = recipe.binaries.iter().map(|b| b.name).collect();
            match Stamp::read(&dir)
                .filter(|s| s.is_fresh(&recipe.fingerprint(), &dir.join("bin"), &names))
            {
                Some(s) => report(c, versions, cache, State::Cached, Some(&s)),
                None => report(c, versions, cache, State::Missing, None),
            }
        })
        .collect()
}

fn report(
    c: Component,
    v: &Versions,
    cache: &Path,
    state: State,
    stamp: Option<&Stamp>,
) -> ComponentReport {
    let bin = c.bin_dir(cache, v);
    let binaries = c
        .recipe(v)
        .binaries
        .iter()
        .map(|b| {
            let path = bin.join(b.name);
            BinaryReport {
                name: b.name.to_string(),
                size_bytes: std::fs::metadata(&path).ok().map(|m| m.len()),
                reports: stamp
                    .and_then(|s| s.binaries.iter().find(|x| x.name == b.name))
                    .map(|x| x.reports.clone()),
                path,
            }
        })
        .collect();
    ComponentReport {
        component: c,
        version: c.version(v).to_string(),
        state,
        build_seconds: stamp.map(|s| s.build_seconds),
        dir: c.dir(cache, v),
        binaries,
    }
}

fn build_one(
    go: &Go,
    component: Component,
    recipe: &Recipe,
    versions: &Versions,
    dir: &Path,
    progress: &Progress,
) -> Result<Stamp, BuildError> {
    let started = Instant::now();
    let name = component.name();
    let bin = dir.join("bin");
    // The stamp goes first: a build that fails halfway must not look done.
    Stamp::remove(dir)?;
    std::fs::create_dir_all(&bin).map_err(BuildError::io("create", &bin))?;
    let log = dir.join("build.log");
    std::fs::write(
        &log,
        format!(
            "# weft-lab build of {name} {} with {}\n",
            component.version(versions),
            go.version
        ),
    )
    .map_err(BuildError::io("write", &log))?;
    let go_session = go.session(name, &log, progress);

    let mut flags = vec!["-v".to_string(), "-trimpath".to_string()];
    if !recipe.tags.is_empty() {
        flags.push(format!("-tags={}", recipe.tags.join(",")));
    }
    flags.push(format!("-ldflags=all={}", ldflags(recipe, &utc_now())));

    match &recipe.source {
        Source::Install { packages, version } => {
            progress.step(&format!(
                "go install ({} cold), log {}",
                component.cold_estimate(),
                log.display()
            ));
            let mut args = vec!["install".to_string()];
            args.extend(flags);
            args.extend(packages.iter().map(|p| format!("{p}@{version}")));
            go_session.run(dir, &args, &[("GOBIN", &bin)], None)?;
        }
        Source::Wrapper {
            module,
            version,
            packages,
            pin_staging,
        } => {
            let src = dir.join("src");
            progress.step(&format!(
                "resolving {module}@{version} into a wrapper module"
            ));
            prepare_wrapper(
                &go_session,
                &src,
                module,
                version,
                packages,
                pin_staging.as_deref(),
            )?;
            let total = count_deps(&go_session, &src, &recipe.tags, packages);
            progress.step(&format!(
                "go build ({} cold), log {}",
                component.cold_estimate(),
                log.display()
            ));
            let mut args = vec!["build".to_string()];
            args.extend(flags);
            // One main package with a module-root path (etcd's `server/v3`) would be named
            // after the path; name it after the binary instead.
            let out = match (packages.len(), recipe.binaries.as_slice()) {
                (1, [only]) => bin.join(only.name).display().to_string(),
                _ => format!("{}/", bin.display()),
            };
            args.push(format!("-o={out}"));
            args.extend(packages.iter().cloned());
            go_session.run(&src, &args, &[], total)?;
        }
    }

    progress.step("checking the binaries run");
    let mut stamped = Vec::new();
    for b in &recipe.binaries {
        let path = bin.join(b.name);
        let first_line = check_version(&path, b.version_args, &b.expect)?;
        stamped.push(StampedBinary {
            name: b.name.to_string(),
            reports: first_line,
        });
    }
    let stamp = Stamp {
        component: name.to_string(),
        version: component.version(versions).to_string(),
        recipe: recipe.fingerprint(),
        go: go.version.clone(),
        built_at: utc_now(),
        build_seconds: started.elapsed().as_secs_f64(),
        binaries: stamped,
    };
    stamp.write(dir)?;
    progress.step(&format!("done in {}", fmt_duration(started.elapsed())));
    Ok(stamp)
}

/// The `-ldflags` value: the recipe's flags plus the build date where the recipe wants it.
fn ldflags(recipe: &Recipe, date: &str) -> String {
    let mut flags = recipe.ldflags.clone();
    flags.extend(
        recipe
            .build_date_in
            .iter()
            .map(|p| format!("-X {p}.buildDate={date}")),
    );
    flags.join(" ")
}

/// Writes the wrapper module for `module@version` into `src` and tidies it.
fn prepare_wrapper(
    go: &Session<'_>,
    src: &Path,
    module: &str,
    version: &str,
    packages: &[String],
    pin_staging: Option<&str>,
) -> Result<(), BuildError> {
    let name = go.component();
    std::fs::create_dir_all(src).map_err(BuildError::io("create", src))?;
    // The upstream go.mod, straight from the module proxy (no GitHub).
    let download = go.output(
        src,
        &["mod", "download", "-json", &format!("{module}@{version}")],
    )?;
    let gomod_path = serde_json::from_str::<serde_json::Value>(&download)
        .ok()
        .and_then(|v| v.get("GoMod").and_then(|p| p.as_str()).map(PathBuf::from))
        .ok_or_else(|| BuildError::GoOutput {
            component: name.to_string(),
            command: format!("mod download -json {module}@{version}"),
            reason: "no GoMod path in the output".to_string(),
        })?;
    let json = go.output(
        src,
        &["mod", "edit", "-json", &gomod_path.to_string_lossy()],
    )?;
    let upstream = GoModJson::parse(&json).map_err(|e| BuildError::GoOutput {
        component: name.to_string(),
        command: format!("mod edit -json {}", gomod_path.display()),
        reason: e.to_string(),
    })?;
    let mut wrapper = Wrapper::around(name, module, version, &upstream).building(packages);
    if let Some(tag) = pin_staging {
        wrapper = wrapper.pin_staging(&upstream, tag);
        tracing::debug!(count = wrapper.replace.len(), "pinned staging modules");
    }
    for (file, text) in [
        ("go.mod", wrapper.go_mod()),
        ("tools.go", wrapper.tools_go()),
    ] {
        let path = src.join(file);
        std::fs::write(&path, text).map_err(BuildError::io("write", &path))?;
    }
    go.progress()
        .step("go mod tidy (downloads the dependencies when cold)");
    go.run(src, &["mod".to_string(), "tidy".to_string()], &[], None)?;
    Ok(())
}

/// How many packages the build involves (the heartbeat's upper bound); None if go cannot say.
fn count_deps(go: &Session<'_>, src: &Path, tags: &[&str], packages: &[String]) -> Option<usize> {
    let tags = format!("-tags={}", tags.join(","));
    let mut args = vec!["list", "-deps", &tags];
    args.extend(packages.iter().map(String::as_str));
    go.output(src, &args).ok().map(|out| out.lines().count())
}

/// Runs `binary args…` (with an empty environment, so no CNI_COMMAND or KUBECONFIG leaks
/// in) and checks it exits 0 and prints `expect`. Returns the first line that has it.
pub(crate) fn check_version(
    binary: &Path,
    args: &[&str],
    expect: &str,
) -> Result<String, BuildError> {
    let command = format!("{} {}", binary.display(), args.join(" "));
    let fail = |detail: String| BuildError::VersionCheck {
        binary: binary.to_path_buf(),
        command: command.clone(),
        expected: expect.to_string(),
        detail,
    };
    let mut child = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let (out, err) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no answer within {}s",
                    VERSION_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
    };
    let text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!("{status}: {}", text.trim())));
    }
    text.lines()
        .find(|l| l.contains(expect))
        .map(|l| l.trim().to_string())
        .ok_or_else(|| fail(format!("it printed: {}", text.trim())))
}

/// One build per cache at a time: a second `weft-lab build` (or a parallel test) waits.
fn lock_cache(cache: &Path) -> Result<nix::fcntl::Flock<File>, BuildError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = cache.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(BuildError::io("open", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            eprintln!(
                "waiting for another weft-lab build using {}…",
                cache.display()
            );
            Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| BuildError::io("lock", &path)(std::io::Error::from(e)))
        }
        Err((_, e)) => Err(BuildError::io("lock", &path)(std::io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_date_is_added_to_each_version_package() {
        let r = Component::Kubernetes.recipe(&Versions::PINNED);
        let f = ldflags(&r, "2026-11-21T05:09:47Z");
        assert!(
            f.contains("-X k8s.io/component-base/version.buildDate=2026-11-21T05:09:47Z"),
            "{f}"
        );
        assert!(
            f.contains("-X k8s.io/client-go/pkg/version.buildDate=2026-11-21T05:09:47Z"),
            "{f}"
        );
        assert!(f.contains("-s -w"), "{f}");
        let e = ldflags(&Component::Etcd.recipe(&Versions::PINNED), "x");
        assert_eq!(e, "-s -w");
    }

    #[test]
    fn version_check_reports_the_matching_line() {
        let line = check_version(
            Path::new("/bin/sh"),
            &["-c", "echo noise; echo 'etcd Version: 3.6.16'"],
            "etcd Version: 3.6.16",
        )
        .unwrap();
        assert_eq!(line, "etcd Version: 3.6.16");
    }

    #[test]
    fn version_check_fails_on_wrong_version_or_exit_status() {
        let wrong = check_version(
            Path::new("/bin/sh"),
            &["-c", "echo 'Kubernetes v0.0.0-master'"],
            "Kubernetes v1.36.3",
        );
        assert!(
            matches!(wrong, Err(BuildError::VersionCheck { .. })),
            "{wrong:?}"
        );
        let failed = check_version(
            Path::new("/bin/sh"),
            &["-c", "echo 'Kubernetes v1.36.3'; exit 3"],
            "Kubernetes v1.36.3",
        );
        assert!(failed.unwrap_err().to_string().contains("exit status: 3"));
        let missing = check_version(Path::new("/nonexistent/etcd"), &[], "x");
        assert!(missing.unwrap_err().to_string().contains("cannot start"));
    }

    #[test]
    fn version_check_does_not_leak_the_cni_environment() {
        std::env::set_var("CNI_COMMAND_LEAK_PROBE", "ADD");
        let out = check_version(
            Path::new("/bin/sh"),
            &["-c", "echo \"probe=${CNI_COMMAND_LEAK_PROBE:-unset}\""],
            "probe=",
        );
        assert_eq!(out.unwrap(), "probe=unset");
    }
}
