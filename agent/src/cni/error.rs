//! CNI errors: a spec error code, a message and details, printed as the spec's error JSON.

use serde_json::json;

/// Error codes of the CNI specification (1.1.0, "Error" section) that weft uses.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_CONFIG: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_ENV: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD requests.
    pub const NOT_AVAILABLE: u32 = 50;
    pub const GENERIC: u32 = 999;
}

/// An error the plugin reports to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl std::fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }

    /// The spec's error object, in `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl From<crate::api::ClientError> for CniError {
    fn from(e: crate::api::ClientError) -> Self {
        use crate::api::{ClientError, ErrorKind};
        match &e {
            ClientError::Unreachable { .. } => CniError::new(
                code::TRY_AGAIN_LATER,
                "the weft agent is not running on this node",
            ),
            ClientError::Io { .. } => {
                CniError::new(code::TRY_AGAIN_LATER, "the weft agent did not answer")
            }
            ClientError::Decode { .. } | ClientError::Version { .. } => CniError::new(
                code::INCOMPATIBLE_VERSION,
                "plugin and agent versions do not match",
            ),
            ClientError::Agent(api) => match api.kind {
                ErrorKind::NoPodCidr => {
                    CniError::new(code::TRY_AGAIN_LATER, "the node has no pod CIDR yet")
                }
                ErrorKind::CidrMismatch => CniError::new(
                    code::INVALID_CONFIG,
                    "podCIDR conflicts with the node's allocations",
                ),
                ErrorKind::UnsupportedVersion => CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    "plugin and agent versions do not match",
                ),
                ErrorKind::Exhausted => {
                    CniError::new(code::GENERIC, "no free address in the node's pod CIDR")
                }
                ErrorKind::Unavailable => {
                    CniError::new(code::TRY_AGAIN_LATER, "the weft agent is not ready")
                }
                ErrorKind::BadRequest | ErrorKind::Store | ErrorKind::Datapath => {
                    CniError::new(code::GENERIC, "the weft agent failed")
                }
            },
        }
        .with_details(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_four_spec_fields() {
        let e = CniError::new(code::INVALID_ENV, "CNI_NETNS is required").with_details("ADD");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion":"1.0.0","code":7,"msg":"CNI_NETNS is required","details":"ADD"})
        );
    }

    #[test]
    fn unreachable_agent_maps_to_try_again_later() {
        let e: CniError = crate::api::ClientError::Unreachable {
            path: "/run/weft/weft.sock".into(),
            source: std::io::ErrorKind::NotFound.into(),
        }
        .into();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(e.details.contains("/run/weft/weft.sock"), "{}", e.details);
    }
}
