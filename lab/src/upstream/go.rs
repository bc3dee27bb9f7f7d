//! Running the Go toolchain: one environment for every command, output to a log file, a
//! package count for the progress heartbeat.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::BuildError;
use super::progress::Progress;

/// How many log lines a failure shows.
const FAILURE_TAIL_LINES: usize = 40;

/// The Go toolchain on PATH, checked to be new enough.
#[derive(Debug, Clone)]
pub struct Go {
    program: PathBuf,
    /// `go1.26.8`
    pub version: String,
}

impl Go {
    /// Finds `go` and checks it can build modules whose go.mod says `go <need>`.
    pub fn find(need: &'static str) -> Result<Go, BuildError> {
        let program = find_on_path("go").ok_or(BuildError::GoMissing { need })?;
        let go = Go {
            program,
            version: String::new(),
        };
        let out = go
            .command(Path::new("/"))
            .args(["env", "GOVERSION"])
            .output()
            .map_err(BuildError::io("run", go.program.clone()))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // An explicit GOTOOLCHAIN from the user (e.g. `auto`) may fetch a newer Go itself.
        let user_toolchain = std::env::var_os("GOTOOLCHAIN").is_some();
        match parse_go_version(&version) {
            Some(have) if user_toolchain || have >= parse_go_version(need).unwrap_or_default() => {}
            _ => {
                return Err(BuildError::GoTooOld {
                    have: version,
                    need,
                })
            }
        }
        Ok(Go { version, ..go })
    }

    /// A `go` command with the lab's build environment:
    /// - `GOTOOLCHAIN=local` (unless the user set it): the installed Go is new enough, so never
    ///   download another toolchain behind the user's back;
    /// - `GOWORK=off`: a go.work above the cache must not leak into the wrappers;
    /// - `CGO_ENABLED=0`: static binaries, as upstream releases them, no C toolchain needed;
    /// - `GOFLAGS=-mod=mod -buildvcs=false`: let go update the wrapper's go.sum instead of
    ///   failing, and never stamp VCS info from a repository the cache may sit in.
    ///
    /// The module and build caches stay the user's defaults so later builds are warm.
    pub fn command(&self, cwd: &Path) -> Command {
        let mut c = Command::new(&self.program);
        c.current_dir(cwd)
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod -buildvcs=false");
        if std::env::var_os("GOTOOLCHAIN").is_none() {
            c.env("GOTOOLCHAIN", "local");
        }
        c
    }

    /// Go commands for one component, logging to one file and reporting to one progress.
    pub fn session<'a>(
        &'a self,
        component: &'a str,
        log: &'a Path,
        progress: &'a Progress,
    ) -> Session<'a> {
        Session {
            go: self,
            component,
            log,
            progress,
        }
    }
}

/// The Go toolchain working on one component.
pub struct Session<'a> {
    go: &'a Go,
    component: &'a str,
    log: &'a Path,
    progress: &'a Progress,
}

impl Session<'_> {
    pub fn progress(&self) -> &Progress {
        self.progress
    }

    pub fn component(&self) -> &str {
        self.component
    }

    /// Runs `go <args>` and returns its stdout (for `-json` and `list` queries).
    pub fn output(&self, cwd: &Path, args: &[&str]) -> Result<String, BuildError> {
        let (go, component) = (self.go, self.component);
        let out = go
            .command(cwd)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(BuildError::io("run", go.program.clone()))?;
        if !out.status.success() {
            return Err(BuildError::GoOutput {
                component: component.to_string(),
                command: args.join(" "),
                // `go mod download -json` reports its error inside the JSON on stdout.
                reason: format!(
                    "{}: {} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
            });
        }
        String::from_utf8(out.stdout).map_err(|e| BuildError::GoOutput {
            component: component.to_string(),
            command: args.join(" "),
            reason: e.to_string(),
        })
    }

    /// Runs a long `go` command with stdout and stderr appended to `log`, printing a heartbeat
    /// with the number of packages compiled (`-v` names each one). Returns that number.
    pub fn run(
        &self,
        cwd: &Path,
        args: &[String],
        env: &[(&str, &Path)],
        total_packages: Option<usize>,
    ) -> Result<usize, BuildError> {
        let (go, component, log) = (self.go, self.component, self.log);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(BuildError::io("open", log))?;
        writeln!(file, "\n$ go {}", args.join(" ")).map_err(BuildError::io("write", log))?;
        let stdout = file.try_clone().map_err(BuildError::io("open", log))?;

        let mut cmd = go.command(cwd);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(BuildError::io("run", go.program.clone()))?;

        let packages = Arc::new(AtomicUsize::new(0));
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = {
            let packages = Arc::clone(&packages);
            std::thread::spawn(move || copy_counting(stderr, file, &packages))
        };

        let mut ticker = self.progress.ticker();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {
                    ticker.tick(packages.load(Ordering::Relaxed), total_packages);
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(BuildError::io("wait for", go.program.clone())(e)),
            }
        };
        // The pipe closes when go exits; the copy finishes right after.
        let _ = reader.join();
        let compiled = packages.load(Ordering::Relaxed);
        ticker.finish(compiled);

        if !status.success() {
            return Err(BuildError::GoFailed {
                component: component.to_string(),
                command: format!("go {}", args.join(" ")),
                status: status.to_string(),
                log: log.to_path_buf(),
                tail: tail_lines(log, FAILURE_TAIL_LINES),
            });
        }
        Ok(compiled)
    }
}

/// Copies go's stderr into the log, counting the lines that name a compiled package.
fn copy_counting(stderr: impl std::io::Read, mut log: File, packages: &AtomicUsize) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if is_package_line(&line) {
            packages.fetch_add(1, Ordering::Relaxed);
        }
        // A full disk must not stop the build; the exit status still decides.
        let _ = writeln!(log, "{line}");
    }
}

/// `go build -v` prints one import path per compiled package; everything else it prints
/// (`go: downloading …`, `# pkg` headers and `file.go:1:2: error` lines) has a space or a prefix.
fn is_package_line(line: &str) -> bool {
    !line.is_empty()
        && !line.starts_with("go:")
        && !line.starts_with('#')
        && !line.contains(char::is_whitespace)
}

/// `go1.26.8` or `1.26.0` → (1, 26, 8); `go1.26rc1` → (1, 26, 0).
pub fn parse_go_version(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim().strip_prefix("go").unwrap_or(v.trim());
    let mut parts = v.split('.');
    let num = |s: Option<&str>| -> Option<u32> {
        let s = s?;
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let major = num(parts.next())?;
    let minor = num(parts.next())?;
    let patch = num(parts.next()).unwrap_or(0);
    Some((major, minor, patch))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The last `n` lines of a log file (for error messages).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lines_are_bare_import_paths() {
        assert!(is_package_line(
            "k8s.io/client-go/kubernetes/typed/apps/v1beta2"
        ));
        assert!(is_package_line("runtime"));
        assert!(!is_package_line(
            "go: downloading gonum.org/v1/gonum v0.16.0"
        ));
        assert!(!is_package_line("# k8s.io/kubernetes/pkg/x"));
        assert!(!is_package_line("pkg/x/y.go:12:3: undefined: Foo"));
        assert!(!is_package_line(""));
    }

    #[test]
    fn go_versions_compare_numerically() {
        assert_eq!(parse_go_version("go1.26.8"), Some((1, 26, 8)));
        assert_eq!(parse_go_version("1.26.0"), Some((1, 26, 0)));
        assert_eq!(parse_go_version("go1.27rc1"), Some((1, 27, 0)));
        assert_eq!(parse_go_version("devel"), None);
        assert!(parse_go_version("go1.26.8") >= parse_go_version("1.26.0"));
        assert!(parse_go_version("go1.9.1") < parse_go_version("1.26.0"));
    }

    /// Real `go`: a compile error surfaces with the compiler's message from the log, and
    /// the fixed module builds with its package counted.
    #[test]
    fn failed_build_reports_the_compiler_error_from_the_log() {
        let go = Go::find("1.21").expect("the Go toolchain (cargo xtask setup installs it)");
        let dir = std::env::temp_dir().join(format!("weft-upstream-gofail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("go.mod"),
            "module example.invalid/broken\n\ngo 1.21\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("main.go"),
            "package main\n\nfunc main() { notDefined() }\n",
        )
        .unwrap();
        let log = dir.join("build.log");
        let progress = Progress::new(1);
        let session = go.session("broken", &log, &progress);
        let args: Vec<String> = ["build", "-v", "-o", "out", "."].map(String::from).to_vec();

        let err = session.run(&dir, &args, &[], None).unwrap_err();
        let BuildError::GoFailed { tail, command, .. } = &err else {
            panic!("{err}")
        };
        assert!(tail.contains("undefined: notDefined"), "{tail}");
        assert_eq!(command, "go build -v -o out .");

        // Unique source, so the build cache cannot skip the compile (and the count).
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::fs::write(
            dir.join("main.go"),
            format!("package main\n\nfunc main() {{ println({nonce}) }}\n"),
        )
        .unwrap();
        let compiled = session.run(&dir, &args, &[], None).unwrap();
        assert!(compiled >= 1, "the main package is compiled and counted");
        assert!(dir.join("out").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("weft-upstream-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("build.log");
        std::fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_lines(&log, 2), "c\nd");
        assert_eq!(tail_lines(&log, 10), "a\nb\nc\nd");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
