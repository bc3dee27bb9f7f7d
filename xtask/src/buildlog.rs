//! Build steps that stay silent when there is nothing to build: cargo's output, and the lines
//! saying what runs, are shown only once cargo prints more than its up-to-date `Finished`.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util;

/// Runs the cargo command `cmd`. With `verbose`, prints `header` (what runs) and cargo's
/// output as they come; otherwise holds both back until cargo prints a line other than
/// `Finished` (it compiles, warns, waits for a lock or fails), and drops them if it never
/// does. Returns whether anything was shown.
pub fn run(cmd: &mut Command, header: &[String], verbose: bool) -> Result<bool> {
    if verbose {
        for line in header {
            eprintln!("{line}");
        }
        let status = cmd
            .status()
            .with_context(|| format!("starting {}", util::show(cmd)))?;
        if !status.success() {
            bail!("{} failed: {status}", util::show(cmd));
        }
        return Ok(true);
    }
    // Piped, cargo would drop its colours; keep them for a terminal (unless the user chose).
    if std::io::stderr().is_terminal() && std::env::var_os("CARGO_TERM_COLOR").is_none() {
        cmd.env("CARGO_TERM_COLOR", "always");
    }
    filter(cmd, header, &mut std::io::stderr().lock())
}

/// Runs `cmd` with its stderr piped through to `err`, after `header`, unless it only says
/// `Finished`.
fn filter(cmd: &mut Command, header: &[String], err: &mut impl Write) -> Result<bool> {
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", util::show(cmd)))?;
    let mut held: Vec<Vec<u8>> = header
        .iter()
        .map(|h| format!("{h}\n").into_bytes())
        .collect();
    let mut shown = false;
    for line in BufReader::new(child.stderr.take().expect("piped")).split(b'\n') {
        let mut line = line.context("reading cargo's output")?;
        line.push(b'\n');
        if !shown && is_finished(&line) {
            held.push(line);
            continue;
        }
        if !shown {
            shown = true;
            held.iter().try_for_each(|h| err.write_all(h))?;
        }
        err.write_all(&line)?;
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", util::show(cmd)))?;
    if !status.success() {
        if !shown {
            held.iter().try_for_each(|h| err.write_all(h))?;
        }
        bail!("{} failed: {status}", util::show(cmd));
    }
    Ok(shown)
}

/// Whether `line` is cargo's closing `Finished …` status line (colours or not).
fn is_finished(line: &[u8]) -> bool {
    let text = strip_ansi(&String::from_utf8_lossy(line));
    text.trim_start().starts_with("Finished ")
}

/// `s` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_lines_are_recognised_with_and_without_colour() {
        let plain = "    Finished `dev` profile [unoptimized + debuginfo] target(s) in 0.31s\n";
        let coloured =
            "\x1b[1m\x1b[92m    Finished\x1b[0m `release` profile [optimized] target(s) in 0.2s\n";
        assert!(is_finished(plain.as_bytes()));
        assert!(is_finished(coloured.as_bytes()));
        for other in [
            "   Compiling weft v0.1.0 (/work/agent)\n",
            "    Blocking waiting for file lock on build directory\n",
            "warning: unused variable: `x`\n",
            "error: could not compile `weft`\n",
        ] {
            assert!(!is_finished(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn strip_ansi_keeps_the_text() {
        assert_eq!(strip_ansi("\x1b[1m\x1b[92mFinished\x1b[0m x"), "Finished x");
        assert_eq!(strip_ansi("no escapes"), "no escapes");
    }

    /// What `filter` shows of a command printing `stderr`, and whether it said it showed it.
    fn shown(stderr: &str, exit: u8) -> (Result<bool>, String) {
        let script = format!("printf '{stderr}' >&2; exit {exit}");
        let mut out = Vec::new();
        let header = ["+ cargo build".to_string()];
        let res = filter(Command::new("sh").args(["-c", &script]), &header, &mut out);
        (res, String::from_utf8(out).unwrap())
    }

    #[test]
    fn an_up_to_date_build_shows_nothing() {
        let (res, out) = shown("    Finished `dev` profile in 0.3s\\n", 0);
        assert!(!res.unwrap());
        assert_eq!(out, "");
    }

    #[test]
    fn a_build_that_compiles_shows_the_command_and_all_of_cargo() {
        let (res, out) = shown("   Compiling weft\\n    Finished `dev`\\n", 0);
        assert!(res.unwrap());
        assert_eq!(
            out,
            "+ cargo build\n   Compiling weft\n    Finished `dev`\n"
        );
    }

    #[test]
    fn a_failure_shows_everything_and_fails() {
        let (res, out) = shown("", 101);
        assert!(res.unwrap_err().to_string().contains("failed"));
        assert_eq!(out, "+ cargo build\n");
    }
}
