//! Building the components in order, reusing stamped builds, under one lock per cache.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::check::check_version;
use super::component::{Component, Recipe, Source};
use super::error::BuildError;
use super::go::Go;
use super::lock::lock_component;
use super::progress::{fmt_duration, Progress};
use super::stamp::{utc_now, Stamp, StampedBinary};
use super::versions::Versions;
use super::wrapper::{check_pins, count_deps, module_dir, prepare_wrapper};

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Rebuild even when a stamp says the build is done (the Go caches keep it fast).
    pub force: bool,
    /// Only these components; empty means what a lab needs ([`Component::LAB`]).
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
    let selected: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| {
            if opts.only.is_empty() {
                Component::LAB.contains(c)
            } else {
                opts.only.contains(c)
            }
        })
        .collect();

    let mut progress = Progress::new(selected.len());
    let mut go: Option<Go> = None;
    let mut reports = Vec::new();
    for component in selected {
        let version = component.version(versions);
        progress.component(component.name(), version);
        let dir = component.dir(cache, versions);
        let _lock = lock_component(&dir)?;
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
            args.extend(flags.iter().cloned());
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
                recipe.test_main.as_ref(),
            )?;
            check_pins(&go_session, &src, module, &recipe.pins)?;
            let total = count_deps(&go_session, &src, &recipe.tags, packages);
            progress.step(&format!(
                "go build ({} cold), log {}",
                component.cold_estimate(),
                log.display()
            ));
            let mut args = vec!["build".to_string()];
            args.extend(flags.iter().cloned());
            match &recipe.test_main {
                // A test binary: compile what it imports first (`-v` counts packages for the
                // heartbeat; `go test -c` prints none), then the test package and the link.
                Some(t) => {
                    args.extend(packages.iter().cloned());
                    go_session.run(&src, &args, &[], total)?;
                    progress.step("go test -c (the test package and the link)");
                    let name = recipe.binaries.first().map(|b| b.name).unwrap_or("test");
                    let mut test = vec!["test".to_string(), "-c".to_string()];
                    test.extend(flags.iter().filter(|f| *f != "-v").cloned());
                    test.push(format!("-o={}", bin.join(name).display()));
                    test.push(format!("./{}", t.dir));
                    go_session.run(&src, &test, &[], None)?;
                }
                None => {
                    // One main package with a module-root path (etcd's `server/v3`) would be
                    // named after the path; name it after the binary instead.
                    let out = match (packages.len(), recipe.binaries.as_slice()) {
                        (1, [only]) => bin.join(only.name).display().to_string(),
                        _ => format!("{}/", bin.display()),
                    };
                    args.push(format!("-o={out}"));
                    args.extend(packages.iter().cloned());
                    go_session.run(&src, &args, &[], total)?;
                }
            }
            if !recipe.module_files.is_empty() {
                let from = module_dir(&go_session, &src, module)?;
                for f in &recipe.module_files {
                    let (src_file, name) = (from.join(f), Path::new(f).file_name().unwrap_or_default());
                    let to = bin.join(name);
                    std::fs::copy(&src_file, &to).map_err(BuildError::io("copy", &src_file))?;
                    // The module cache is read-only; the copy need not be.
                    use std::os::unix::fs::PermissionsExt as _;
                    let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644));
                }
            }
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
}
