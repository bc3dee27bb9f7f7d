//! The Kubernetes remote-command streaming protocol over WebSocket (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io` without stream close), as kubelet's CRI streaming server speaks it:
//! exec options from the query, one channel byte per binary message, the terminal size on the
//! resize channel, and the final `metav1.Status` on the error channel carrying the exit code.

use serde::Deserialize;
use serde_json::json;

/// WebSocket subprotocols this kubelet accepts, best first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

/// Stream ids (the first byte of each binary message).
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, id]` half-closes stream `id` (for stdin: end of input).
pub const CLOSE: u8 = 255;

/// What an exec request asks for (kubelet's `remotecommand` options).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A request that cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("you must specify at least one command for the container")]
    NoCommand,
    #[error("you must specify at least one of stdin, stdout, stderr")]
    NoStreams,
}

impl ExecOptions {
    /// Parses the query the API server sends (`command=` repeated, `input=1`, `output=1`,
    /// `error=1`, `tty=1`). As in kubelet, a tty merges stderr into stdout.
    pub fn from_query(query: &str) -> Result<ExecOptions, OptionsError> {
        let mut o = ExecOptions::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let on = v == "1" || v.eq_ignore_ascii_case("true");
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "input" | "stdin" => o.stdin = on,
                "output" | "stdout" => o.stdout = on,
                "error" | "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                _ => {}
            }
        }
        if o.tty {
            o.stderr = false;
        }
        if o.command.is_empty() {
            return Err(OptionsError::NoCommand);
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(OptionsError::NoStreams);
        }
        Ok(o)
    }
}

/// A message from the client, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Stdin(&'a [u8]),
    /// v5 half-close of a stream (stdin: EOF).
    Close(u8),
    Resize(TermSize),
    /// Empty, or for a stream this side does not read.
    Ignored,
    Invalid(String),
}

/// The terminal size as the client sends it (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Decodes one binary message of protocol `proto`.
pub fn decode<'a>(proto: &str, msg: &'a [u8]) -> Incoming<'a> {
    let Some((&id, data)) = msg.split_first() else {
        return Incoming::Ignored;
    };
    match id {
        STDIN => Incoming::Stdin(data),
        RESIZE => match serde_json::from_slice(data) {
            Ok(size) => Incoming::Resize(size),
            Err(e) => Incoming::Invalid(format!("resize message: {e}")),
        },
        CLOSE if proto == V5 => match data {
            [stream] => Incoming::Close(*stream),
            _ => Incoming::Invalid(format!("close signal with {} bytes after it", data.len())),
        },
        _ => Incoming::Ignored,
    }
}

/// One message on stream `id`.
pub fn frame(id: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(id);
    v.extend_from_slice(data);
    v
}

/// How the command ended, as the error stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Failed(String),
}

/// The `metav1.Status` kubelet writes on the error stream (v4/v5): success, or a failure with
/// reason `NonZeroExitCode` and the code as the `ExitCode` cause (client-go turns it into the
/// exit code kubectl returns), or an internal error.
pub fn status(command: &[String], outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_api_servers_query() {
        let o = ExecOptions::from_query("command=sh&command=-c&command=echo%20hi%3B%20exit%203&input=1&output=1&error=1").unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let t = ExecOptions::from_query("command=sh&input=1&output=1&error=1&tty=1").unwrap();
        assert!(t.tty && !t.stderr, "a tty merges stderr into stdout");
        assert_eq!(ExecOptions::from_query("output=1"), Err(OptionsError::NoCommand));
        assert_eq!(ExecOptions::from_query("command=ls"), Err(OptionsError::NoStreams));
    }

    #[test]
    fn messages_decode_by_channel_and_protocol() {
        assert_eq!(decode(V5, b"\x00abc"), Incoming::Stdin(b"abc"));
        assert_eq!(decode(V5, &[CLOSE, STDIN]), Incoming::Close(STDIN));
        assert!(matches!(decode(V5, &[CLOSE]), Incoming::Invalid(_)));
        // v4 has no close signal.
        assert_eq!(decode(V4, &[CLOSE, STDIN]), Incoming::Ignored);
        assert_eq!(
            decode(V5, b"\x04{\"Width\":132,\"Height\":43}"),
            Incoming::Resize(TermSize { width: 132, height: 43 })
        );
        assert!(matches!(decode(V5, b"\x04{}"), Incoming::Invalid(_)));
        assert_eq!(decode(V5, b""), Incoming::Ignored);
        assert_eq!(frame(STDOUT, b"hi"), b"\x01hi");
    }

    #[test]
    fn exit_codes_travel_as_the_exit_code_cause() {
        let cmd = vec!["false".to_string()];
        assert_eq!(status(&cmd, &Outcome::Exited(0))["status"], "Success");
        let s = status(&cmd, &Outcome::Exited(3));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let f = status(&cmd, &Outcome::Failed("no such pod".into()));
        assert_eq!((f["reason"].as_str(), f["code"].as_i64()), (Some("InternalError"), Some(500)));
    }
}
