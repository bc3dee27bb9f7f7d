//! `weft-lab env`: shell lines that give a person plain `kubectl` against the running lab, as
//! `kind export kubeconfig` does (`eval "$(cargo xtask lab env)"`).
//!
//! The API server's address (172.30.0.2) is reachable only from the lab's namespaces, so the
//! `kubectl` on that PATH is a small script `up` writes into the state dir: it runs the lab's
//! own kubectl (the control plane's version) in the control plane's namespace, as `weft-lab
//! kubectl` does, with the caller's KUBECONFIG, working directory and files.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

use crate::spec::CP_NS;
use crate::state::{LabRecord, StateDir};
use crate::upstream::Versions;

/// The `kubectl` script for the lab's kubectl binary at `kubectl`.
pub fn kubectl_script(kubectl: &Path) -> String {
    let version = Versions::PINNED.kubernetes;
    let kubectl = double_quoted(&kubectl.to_string_lossy());
    format!(
        r#"#!/bin/sh
# The weft lab's kubectl ({version}), written by `weft-lab up` (`weft-lab down` removes it).
# The API server is reachable only from the lab's namespaces: kubectl runs in {CP_NS}, as
# `weft-lab kubectl` does, with this shell's KUBECONFIG, working directory and files.
if [ "$(id -u)" != 0 ]; then
    echo "kubectl: the weft lab's kubectl runs in network namespace {CP_NS}, which needs root" >&2
    exit 1
fi
exec ip netns exec {CP_NS} {kubectl} "$@"
"#
    )
}

/// Writes `kubectl` into [`StateDir::client_bin`] for `rec`'s kubectl (replacing it whole, so a
/// shell running the old one never reads half a script).
pub fn write_kubectl(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    let dir = state.client_bin();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join("kubectl");
    let tmp = dir.join(".kubectl.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(kubectl_script(&rec.bins.kubectl).as_bytes())?;
    f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    drop(f);
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming to {}", dest.display()))
}

/// The lines `env` prints: KUBECONFIG is the admin kubeconfig and the lab's `kubectl` comes
/// first on PATH. Both paths stay the same across `down` and `up` of a lab in the same state
/// dir, so one `eval` serves later labs too.
pub fn exports(state: &StateDir) -> String {
    let kubeconfig = double_quoted(&state.kubeconfig("admin").to_string_lossy());
    let bin = double_quoted(&state.client_bin().to_string_lossy());
    // `bin` is `"…"`: open it up to append `:$PATH` inside the same quotes.
    let bin = &bin[..bin.len() - 1];
    format!(
        "# the weft lab's kubectl ({}) and admin kubeconfig: eval \"$(cargo xtask lab env)\"\n\
         export KUBECONFIG={kubeconfig}\n\
         export PATH={bin}:$PATH\"\n",
        Versions::PINNED.kubernetes
    )
}

/// `weft-lab env`: the export lines of the running lab, or an error when none is up.
pub fn print(state: &StateDir) -> anyhow::Result<()> {
    state.load_record()?;
    let kubectl = state.client_bin().join("kubectl");
    if !kubectl.exists() {
        anyhow::bail!(
            "the lab in {} has no {} (an older weft-lab brought it up); run `cargo xtask lab down` \
             and `up` again",
            state.root().display(),
            kubectl.display()
        );
    }
    print!("{}", exports(state));
    Ok(())
}

/// `s` in double quotes for a POSIX shell: `$`, `` ` ``, `"` and `\` escaped, so it stays
/// one word with nothing expanded.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '$' | '`' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process::Command;

    #[test]
    fn exports_point_at_the_state_dir() {
        let text = exports(&StateDir::at("/run/weft-lab"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                r#"export KUBECONFIG="/run/weft-lab/kubeconfigs/admin.kubeconfig""#,
                r#"export PATH="/run/weft-lab/client:$PATH""#,
            ]
        );
    }

    #[test]
    fn double_quoted_escapes_what_a_shell_expands() {
        assert_eq!(double_quoted("/run/weft-lab"), r#""/run/weft-lab""#);
        assert_eq!(double_quoted(r#"a$b`c"d\e"#), r#""a\$b\`c\"d\\e""#);
    }

    /// What `eval` in sh makes of the lines, for a state dir with every awkward character.
    #[test]
    fn sh_eval_sets_exactly_these_paths() {
        let root = r#"/tmp/a b/$HOME/`x`/"q"/\n/'s'"#;
        let script = format!(
            "{}printf '%s\\n' \"$KUBECONFIG\" \"$PATH\"",
            exports(&StateDir::at(root))
        );
        let out = Command::new("sh")
            .args(["-c", "eval \"$1\"", "sh", &script])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("running sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                format!("{root}/kubeconfigs/admin.kubeconfig"),
                format!("{root}/client:/usr/bin:/bin")
            ]
        );
    }

    #[test]
    fn the_script_runs_the_labs_kubectl_in_the_control_plane_namespace() {
        let script = kubectl_script(Path::new("/cache/kubernetes-v1.36.3/bin/kubectl"));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.ends_with(
                "exec ip netns exec wl-cp \"/cache/kubernetes-v1.36.3/bin/kubectl\" \"$@\"\n"
            ),
            "{script}"
        );
        // No --kubeconfig: the caller's KUBECONFIG decides, as for any kubectl.
        assert!(!script.contains("--kubeconfig"));
    }
}
