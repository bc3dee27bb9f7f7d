//! Kubernetes' own network conformance tests against a lab, through `weft-lab conformance` as
//! a user runs it: bring the lab up, run the selection, read the summary it writes, bring the
//! lab down and check nothing is left.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::Lab;

/// The network conformance tests of Kubernetes v1.36 (`Conformance && sig-network`).
pub const NETWORK_CONFORMANCE_TESTS: u64 = 47;

/// Brings a lab up with `up_args` under `state`, runs `weft-lab conformance` (progress shows
/// with `--nocapture`) with its reports in `report_dir`, and returns its summary after `lab
/// down` left nothing behind.
pub fn run(state: &str, up_args: &[&str], report_dir: &std::path::Path) -> Value {
    run_with(state, up_args, report_dir, &[])
}

/// [`run`] with more `weft-lab conformance` arguments (`--suite netpol`).
pub fn run_with(state: &str, up_args: &[&str], report_dir: &std::path::Path, conformance_args: &[&str]) -> Value {
    let mut lab = Lab::new(state);
    let t_up = Instant::now();
    lab.up(up_args, Duration::from_secs(120 * 60));
    let up = t_up.elapsed();

    let _ = std::fs::remove_dir_all(report_dir);
    let t_run = Instant::now();
    let report = report_dir.display().to_string();
    let mut args = vec!["conformance", "-o", "json", "--report-dir", &report];
    args.extend_from_slice(conformance_args);
    let out = lab
        .cmd(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running weft-lab conformance");
    let run = t_run.elapsed();
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("weft-lab conformance printed no summary ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    // The summary file says the same as stdout.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(report_dir.join("summary.json")).expect("summary.json"))
        .expect("summary.json is JSON");
    assert_eq!(file["counts"], summary["counts"]);
    assert!(report_dir.join("junit.xml").is_file(), "JUnit report in {}", report_dir.display());

    let t_down = Instant::now();
    let left = lab.down();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
    eprintln!(
        "conformance timing ({}): up {:.1} s, run {:.1} s, down {:.1} s; report {}",
        up_args.join(" "),
        up.as_secs_f64(),
        run.as_secs_f64(),
        t_down.elapsed().as_secs_f64(),
        report_dir.display()
    );
    assert_eq!(
        out.status.success(),
        summary["counts"]["failed"] == 0 && summary["counts"]["not_run"] == 0,
        "the exit status says whether every selected test passed"
    );
    summary
}

/// The tests that did not pass, with their detail, for an assertion message.
pub fn not_passed(summary: &Value) -> Vec<String> {
    summary["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["outcome"] != "passed")
        .map(|t| format!("{} {}: {}", t["outcome"], t["name"], t["detail"]))
        .collect()
}
