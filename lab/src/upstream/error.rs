//! Why building an upstream part failed, with the context a user needs to fix it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("`go` was not found on PATH: install Go {need} or newer (`cargo xtask setup` does)")]
    GoMissing { need: &'static str },

    #[error("Go {have} is too old: the pinned upstream modules need Go {need} or newer (or set GOTOOLCHAIN=auto to let go fetch it through the module proxy)")]
    GoTooOld { have: String, need: &'static str },

    #[error("{component}: `{command}` failed ({status}); last lines of {log}:\n{tail}")]
    GoFailed {
        component: String,
        command: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{component}: `go {command}` failed: {reason}")]
    GoOutput {
        component: String,
        command: String,
        reason: String,
    },

    #[error("{binary}: `{command}` did not report {expected:?}: {detail}")]
    VersionCheck {
        binary: PathBuf,
        command: String,
        expected: String,
        detail: String,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}
