//! Setting up a wrapper module on disk: the upstream go.mod from the proxy, our go.mod and
//! tools.go from [`super::gomod::Wrapper`], then `go mod tidy`.

use std::path::{Path, PathBuf};

use super::component::{Pin, TestMain};
use super::error::BuildError;
use super::go::Session;
use super::gomod::{GoModJson, Wrapper};

/// Writes the wrapper module for `module@version` into `src` (with our own test package, if
/// any) and tidies it.
pub fn prepare_wrapper(
    go: &Session<'_>,
    src: &Path,
    module: &str,
    version: &str,
    packages: &[String],
    pin_staging: Option<&str>,
    test_main: Option<&TestMain>,
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
    if let Some(t) = test_main {
        let dir = src.join(t.dir);
        std::fs::create_dir_all(&dir).map_err(BuildError::io("create", &dir))?;
        let path = dir.join(t.file);
        std::fs::write(&path, t.text).map_err(BuildError::io("write", &path))?;
    }
    go.progress()
        .step("go mod tidy (downloads the dependencies when cold)");
    go.run(src, &["mod".to_string(), "tidy".to_string()], &[], None)?;
    Ok(())
}

/// The source directory of `module` as the wrapper resolved it (in the module cache).
pub fn module_dir(go: &Session<'_>, src: &Path, module: &str) -> Result<PathBuf, BuildError> {
    let out = go.output(src, &["list", "-m", "-f", "{{.Dir}}", module])?;
    Ok(PathBuf::from(out.trim()))
}

/// Checks the wrapper's resolved modules against the recipe's pins.
pub fn check_pins(
    go: &Session<'_>,
    src: &Path,
    module: &str,
    pins: &[Pin],
) -> Result<(), BuildError> {
    let mismatch = |what: String, expect: &str, found: String| BuildError::GoOutput {
        component: go.component().to_string(),
        command: format!("list -m ({what})"),
        reason: format!(
            "expected {expect:?}, found {found:?}: change lab/src/upstream/versions.rs to match"
        ),
    };
    for pin in pins {
        match pin {
            Pin::ModuleFile { path, expect } => {
                let file = module_dir(go, src, module)?.join(path);
                let found = std::fs::read_to_string(&file)
                    .map_err(BuildError::io("read", &file))?
                    .trim()
                    .to_string();
                if found != *expect {
                    return Err(mismatch(format!("{module}/{path}"), expect, found));
                }
            }
            Pin::ModuleVersion { module: m, expect } => {
                let found = go.output(src, &["list", "-m", "-f", "{{.Version}}", m])?.trim().to_string();
                if found != *expect {
                    return Err(mismatch(format!("version of {m}"), expect, found));
                }
            }
        }
    }
    Ok(())
}

/// How many packages the build involves (the heartbeat's upper bound); None if go cannot say.
pub fn count_deps(
    go: &Session<'_>,
    src: &Path,
    tags: &[&str],
    packages: &[String],
) -> Option<usize> {
    let tags = format!("-tags={}", tags.join(","));
    let mut args = vec!["list", "-deps", &tags];
    args.extend(packages.iter().map(String::as_str));
    go.output(src, &args).ok().map(|out| out.lines().count())
}
