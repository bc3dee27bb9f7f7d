//! The image's root file system: the static `weft` and a working `nft` (the agent applies its
//! egress masquerade table through `nft -j`), taken from Debian's own packages of the versions
//! this machine runs: `nft`'s shared libraries are found with `ldd`, their packages with
//! `dpkg -S`, the packages fetched with `apt-get download` (cached) and unpacked with
//! `dpkg-deb -x`. Documentation and weft's debug sections are left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

/// Where `nft` lives on Debian and in the image.
pub const NFT: &str = "/usr/sbin/nft";

/// The search path the image's processes get (the agent runs `nft` by name).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {}", util::show(cmd)))?;
    if !out.status.success() {
        bail!("{} failed: {}", util::show(cmd), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The shared objects `ldd` lists for `bin` (absolute paths, the loader included).
pub fn libraries(ldd_output: &str) -> BTreeSet<String> {
    ldd_output
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// The package owning `path` in `dpkg -S` output (`libc6:amd64: /lib/…`).
pub fn owner(dpkg_s_output: &str) -> Option<String> {
    let first = dpkg_s_output.lines().next()?;
    let (pkg, _) = first.split_once(": ")?;
    Some(pkg.split(':').next()?.trim().to_string())
}

/// The Debian packages the image needs: nftables and the owners of every library `nft` loads.
fn packages() -> Result<BTreeSet<String>> {
    let mut pkgs = BTreeSet::from(["nftables".to_string()]);
    for lib in libraries(&output(Command::new("ldd").arg(NFT))?) {
        // merged-/usr: dpkg knows a file under the path its package shipped it at.
        let real = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
        let found = [lib.clone(), real.display().to_string(), real.display().to_string().replacen("/usr/lib/", "/lib/", 1)]
            .iter()
            .find_map(|p| output(Command::new("dpkg").args(["-S", p])).ok().and_then(|o| owner(&o)));
        let pkg = found.with_context(|| format!("no Debian package owns {lib}"))?;
        pkgs.insert(pkg);
    }
    Ok(pkgs)
}

/// `pkg=version` as installed here, so the image carries what was tested on this machine.
fn installed_version(pkg: &str) -> Result<String> {
    let v = output(Command::new("dpkg-query").args(["-W", "-f", "${Version}", pkg]))?;
    if v.trim().is_empty() {
        bail!("{pkg} is not installed (run `cargo xtask setup`)");
    }
    Ok(v.trim().to_string())
}

/// The `.deb` of `pkg` at the installed version, from the cache or `apt-get download`.
fn deb(pkg: &str, cache: &Path) -> Result<PathBuf> {
    let version = installed_version(pkg)?;
    let prefix = format!("{pkg}_{}_", version.replace(':', "%3a"));
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(cache).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    std::fs::create_dir_all(cache)?;
    util::run(Command::new("apt-get").args(["download", "-q", &format!("{pkg}={version}")]).current_dir(cache))?;
    find().with_context(|| format!("apt-get download left no {prefix}*.deb in {}", cache.display()))
}

/// Build the root file system at `root` (replaced): `weft` at /usr/local/bin, the runtime
/// packages unpacked, the directories the agent writes to.
pub fn build(root: &Path, weft: &Path, cache: &Path) -> Result<Vec<String>> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    for dir in ["usr/local/bin", "tmp", "run", "var/lib", "etc"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let mut unpacked = Vec::new();
    for pkg in packages()? {
        let deb = deb(&pkg, cache)?;
        util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
        unpacked.push(format!("{pkg}={}", installed_version(&pkg)?));
    }
    for dir in ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale"] {
        let _ = std::fs::remove_dir_all(root.join(dir));
    }
    let inside = root.join("usr/local/bin/weft");
    std::fs::copy(weft, &inside).context("copying weft into the image")?;
    // The release profile keeps line tables (debug = 1) for local backtraces: the image
    // carries the symbols but not the 100 MB of debug sections.
    util::run(Command::new("strip").arg("--strip-debug").arg(&inside))?;
    Ok(unpacked)
}

/// Run `argv` inside `root` (chroot), as the image's entrypoint would see it; its stdout.
pub fn run_inside(root: &Path, argv: &[&str]) -> Result<String> {
    output(Command::new("chroot").arg(root).args(argv).env_clear().env("PATH", PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_library_paths_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007f)\n\tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        let libs: Vec<String> = libraries(out).into_iter().collect();
        assert_eq!(libs, ["/lib/x86_64-linux-gnu/libnftables.so.1", "/lib64/ld-linux-x86-64.so.2"]);
    }

    #[test]
    fn dpkg_search_output_names_the_package_without_architecture() {
        assert_eq!(owner("libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6\n").as_deref(), Some("libc6"));
        assert_eq!(owner("nftables: /usr/sbin/nft\n").as_deref(), Some("nftables"));
        assert_eq!(owner(""), None);
    }
}
