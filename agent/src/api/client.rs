//! Blocking client of the agent socket, used by the short-lived CNI plugin and the CLI.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ApiError, Request, RequestEnvelope, Response, ResponseEnvelope, PROTOCOL_VERSION};

/// Why a call did not produce an answer from the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens on the socket (missing file, refused): the caller may retry later.
    #[error("agent not reachable at {path}: {source}")]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Connected, but the exchange failed half-way (timeout, closed connection).
    #[error("talking to the agent at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The agent answered something this build cannot decode.
    #[error("undecodable answer from the agent at {path}: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The agent speaks another protocol version.
    #[error("agent at {path} speaks protocol v{got}, this plugin v{PROTOCOL_VERSION}")]
    Version { path: PathBuf, got: u32 },
    /// The agent answered with an error.
    #[error("agent refused: {0}")]
    Agent(#[from] ApiError),
}

/// A client bound to one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(path: impl AsRef<Path>, timeout: Duration) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            timeout,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Send one request, wait for its answer.
    pub fn call(&self, request: Request) -> Result<Response, ClientError> {
        let path = || self.path.clone();
        let mut stream =
            UnixStream::connect(&self.path).map_err(|source| ClientError::Unreachable {
                path: path(),
                source,
            })?;
        let io = |source| ClientError::Io {
            path: path(),
            source,
        };
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut line = serde_json::to_vec(&RequestEnvelope {
            v: PROTOCOL_VERSION,
            request,
        })
        .expect("requests always serialize");
        line.push(b'\n');
        stream.write_all(&line).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
        if answer.is_empty() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "agent closed the connection without answering",
            )));
        }
        let envelope: ResponseEnvelope =
            serde_json::from_str(&answer).map_err(|source| ClientError::Decode {
                path: path(),
                source,
            })?;
        if envelope.v != PROTOCOL_VERSION {
            return Err(ClientError::Version {
                path: path(),
                got: envelope.v,
            });
        }
        Ok(envelope.response?)
    }
}
