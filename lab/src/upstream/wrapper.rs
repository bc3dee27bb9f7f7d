//! Setting up a wrapper module on disk: the upstream go.mod from the proxy, our go.mod and
//! tools.go from [`super::gomod::Wrapper`], then `go mod tidy`.

use std::path::{Path, PathBuf};

use super::error::BuildError;
use super::go::Session;
use super::gomod::{GoModJson, Wrapper};

/// Writes the wrapper module for `module@version` into `src` and tidies it.
pub fn prepare_wrapper(
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
