//! The lab CLI's refusals and its idempotent teardown, without bringing a cluster up.

use std::process::Command;
use std::time::Duration;

use weft_tests::lab::{lab_netns, leftovers, require_root, run_with_timeout, weft_lab_bin};

const STATE: &str = "/run/weft-lab-cli-test";

fn weft_lab(args: &[&str]) -> Command {
    let mut c = Command::new(weft_lab_bin());
    c.args(args).env("WEFT_LAB_STATE", STATE);
    c
}

#[test]
fn up_without_root_is_refused_with_a_clear_error() {
    require_root();
    let bin = weft_lab_bin();
    let out = run_with_timeout(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(["up", "--nodes", "1"])
            .env("WEFT_LAB_STATE", STATE),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs root"), "stderr: {err}");
    assert!(!std::path::Path::new(STATE).exists(), "nothing was created");
}

#[test]
fn commands_that_need_a_lab_say_none_is_up_and_down_always_works() {
    require_root();
    assert!(lab_netns().is_empty(), "a lab is up; run `cargo xtask lab down` first");
    let out = run_with_timeout(&mut weft_lab(&["status"]), Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lab is up"));
    // `eval "$(weft-lab env)"` with no lab: an error on stderr, nothing to eval.
    let out = run_with_timeout(&mut weft_lab(&["env"]), Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lab is up"));

    let out = run_with_timeout(&mut weft_lab(&["up", "--nodes", "0"]), Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be between 1 and"));

    // Nothing up: down succeeds and reports a clean machine, twice.
    for _ in 0..2 {
        let out = run_with_timeout(&mut weft_lab(&["down"]), Duration::from_secs(60));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let left = leftovers(std::path::Path::new(STATE));
        assert!(left.is_empty(), "{left:#?}");
    }
}

#[test]
fn up_refuses_when_a_lab_state_dir_already_exists() {
    require_root();
    assert!(lab_netns().is_empty(), "a lab is up; run `cargo xtask lab down` first");
    let state = "/run/weft-lab-cli-test-busy";
    std::fs::create_dir_all(state).unwrap();
    struct Rm(&'static str);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _rm = Rm(state);
    let out = run_with_timeout(
        Command::new(weft_lab_bin()).args(["up", "--nodes", "1"]).env("WEFT_LAB_STATE", state),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("a lab is already up") && err.contains("lab down"), "stderr: {err}");
    assert!(lab_netns().is_empty(), "a refused up creates no namespaces");
}
