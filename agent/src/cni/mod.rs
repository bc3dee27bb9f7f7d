//! The CNI plugin: spec types and the ADD/DEL/CHECK/GC/STATUS/VERSION verbs.
//!
//! A short-lived, strict client of the node agent: the result or the error JSON goes to
//! stdout, logs go to stderr or `logFile`, never stdout.

pub mod add;
pub mod check;
pub mod config;
pub mod del;
pub mod env;
pub mod error;
pub mod gc;
pub mod naming;
pub mod result;
pub mod status;
pub mod version;
pub mod veth;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;

use crate::api::Client;
use env::{CniEnv, Command};
use error::{code, CniError};
use version::{CniVersion, SUPPORTED};

/// How long the plugin waits for one answer of the agent (a runtime retries an ADD that
/// fails with "try again later"; a hung agent must not hold the pod's creation for long).
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every verb needs besides config and environment.
pub struct VerbCtx {
    pub client: Client,
}

/// Run the plugin for the current process (environment, stdin, stdout); returns the exit code.
pub fn main() -> i32 {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let env = CniEnv::from_vars(|k| std::env::var(k).ok());
    let (out, code) = match read {
        Ok(_) => dispatch(env, &stdin),
        Err(e) => {
            let err = CniError::new(code::IO_FAILURE, "cannot read the configuration from stdin")
                .with_details(e);
            (Some(err.to_json(CniVersion::LATEST.as_str())), 1)
        }
    };
    if let Some(out) = out {
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, &out);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
    }
    code
}

/// Decide, run and render one invocation: the JSON to print (if any) and the exit code.
pub fn dispatch(env: Result<CniEnv, CniError>, stdin: &[u8]) -> (Option<serde_json::Value>, i32) {
    let error_version =
        config::sniff_version(stdin).unwrap_or_else(|| CniVersion::LATEST.as_str().to_owned());
    let fail = |e: CniError| {
        tracing::error!(code = e.code, msg = %e.msg, details = %e.details, "CNI call failed");
        (Some(e.to_json(&error_version)), 1)
    };
    let env = match env {
        Ok(env) => env,
        Err(e) => return fail(e),
    };
    if env.command == Command::Version {
        return version_answer(stdin);
    }
    let conf = match config::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let _log_guard = init_logging(&conf);
    tracing::debug!(command = ?env.command, container_id = ?env.container_id, "CNI call");
    let ctx = VerbCtx {
        client: Client::new(&conf.agent_socket, AGENT_TIMEOUT),
    };
    let outcome = match env.command {
        Command::Add => add::run(&ctx, &conf, &env).map(Some),
        Command::Del => del::run(&ctx, &env).map(|_| None),
        Command::Check => check::run(&ctx, &conf, &env).map(|_| None),
        Command::Gc => gc::run(&ctx, &conf).map(|_| None),
        Command::Status => status::run(&ctx, &conf).map(|_| None),
        Command::Version => unreachable!("answered above"),
    };
    match outcome {
        Ok(out) => (out, 0),
        Err(e) => fail(e),
    }
}

/// VERSION: the supported versions, in the version asked for (or the latest).
fn version_answer(stdin: &[u8]) -> (Option<serde_json::Value>, i32) {
    let asked = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        });
    let version = match asked.as_deref().map(CniVersion::parse) {
        Some(Err(e)) => return (Some(e.to_json(CniVersion::LATEST.as_str())), 1),
        Some(Ok(v)) => v,
        None => CniVersion::LATEST,
    };
    (
        Some(json!({"cniVersion": version.as_str(), "supportedVersions": SUPPORTED})),
        0,
    )
}

/// Logs to `logFile` (appended) or stderr, filtered by `logLevel`. Never stdout.
fn init_logging(conf: &config::NetConf) -> Option<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&conf.log_level).ok()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let file = conf.log_file.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let _ = match file {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    Some(())
}

/// Test hook (debug builds only): `WEFT_TEST_PAUSE_AFTER=<step>` stops ADD after `step`
/// (`alloc`, `veth`, `register`) and waits to be killed, so tests can kill it mid-way.
pub(crate) fn pause_point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("WEFT_TEST_PAUSE_AFTER").is_ok_and(|s| s == step) {
        eprintln!("weft: paused after {step}");
        std::thread::sleep(Duration::from_secs(600));
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vars: &[(&str, &str)], stdin: &str) -> (serde_json::Value, i32) {
        let env = CniEnv::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        let (out, code) = dispatch(env, stdin.as_bytes());
        (out.unwrap_or(serde_json::Value::Null), code)
    }

    #[test]
    fn version_lists_all_supported_versions() {
        let (out, code) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            json!({"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
        let (out, _) = run(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(out["cniVersion"], "1.1.0");
        let (out, code) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"5.0.0"}"#);
        assert_eq!((out["code"].as_u64(), code), (Some(1), 1));
    }

    #[test]
    fn add_without_netns_is_code_7_in_the_configs_version() {
        let (out, code) = run(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            r#"{"cniVersion":"0.3.1","name":"n","type":"weft"}"#,
        );
        assert_eq!(code, 1);
        assert_eq!(out["code"], 7);
        assert_eq!(out["cniVersion"], "0.3.1");
        assert!(out["msg"].as_str().unwrap().contains("CNI_NETNS"), "{out}");
    }

    #[test]
    fn bad_config_is_reported_before_talking_to_the_agent() {
        let vars = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert_eq!(run(&vars, "{oops").0["code"], 6);
        assert_eq!(
            run(
                &vars,
                r#"{"cniVersion":"1.0.0","name":"n","type":"weft","podCIDR":"10.0.0.0/99"}"#
            )
            .0["code"],
            4
        );
    }

    #[test]
    fn agent_down_del_still_succeeds_and_status_says_not_ready() {
        let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"weft","agentSocket":"/nonexistent/weft.sock"}"#;
        let (out, code) = run(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            conf,
        );
        // DEL must succeed without the agent (it cleans up locally; the agent frees the
        // address when it returns): a runtime retrying a failing DEL forever blocks the pod.
        assert_eq!((out.is_null(), code), (true, 0), "{out}");
        let conf11 = conf.replace("1.0.0", "1.1.0");
        let (out, code) = run(&[("CNI_COMMAND", "STATUS")], &conf11);
        assert_eq!((out["code"].as_u64(), code), (Some(50), 1), "{out}");
    }

    #[test]
    fn check_and_gc_refuse_old_versions() {
        let old = r#"{"cniVersion":"0.3.1","name":"n","type":"weft","agentSocket":"/nonexistent"}"#;
        let vars = [
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/x"),
        ];
        assert_eq!(run(&vars, old).0["code"], 1);
        let v1 = old.replace("0.3.1", "1.0.0");
        assert_eq!(run(&[("CNI_COMMAND", "GC")], &v1).0["code"], 1);
    }
}
