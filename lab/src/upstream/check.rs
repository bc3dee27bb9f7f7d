//! Proving a built binary runs: it must exit 0 and print the pinned version.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::BuildError;

/// How long a binary may take to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `binary args…` (with an empty environment, so no CNI_COMMAND or KUBECONFIG leaks
/// in) and checks it exits 0 and prints `expect`. Returns the first line that has it.
pub fn check_version(binary: &Path, args: &[&str], expect: &str) -> Result<String, BuildError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
