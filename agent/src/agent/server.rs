//! The agent's unix socket: one JSON line in, one out, per connection; requests are handed to
//! the single owner thread of the [`Agent`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Agent;
use crate::api::{
    ApiError, ErrorKind, Request, RequestEnvelope, Response, ResponseEnvelope, PROTOCOL_VERSION,
};

/// Longest request line accepted (a GC with thousands of attachments fits easily).
const MAX_LINE: u64 = 4 << 20;
/// A client that does not send its line within this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Work for the owner thread: a socket request, or an internal task (reconcile) that needs
/// the agent's state.
enum Job {
    Api(Request, oneshot::Sender<Result<Response, ApiError>>),
    Run(Box<dyn FnOnce(&mut Agent) + Send>),
}

/// Handle to the owner thread.
#[derive(Clone)]
pub struct AgentHandle {
    tx: mpsc::Sender<Job>,
}

impl AgentHandle {
    /// Start the owner thread; `make` builds the agent on it, so the datapath's handles never
    /// cross threads.
    pub fn spawn(
        make: impl FnOnce() -> anyhow::Result<Agent> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Job>(64);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("weft-owner".into())
            .spawn(move || {
                let mut agent = match make() {
                    Ok(a) => {
                        let _ = ready_tx.send(Ok(()));
                        a
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = rx.blocking_recv() {
                    match job {
                        Job::Api(request, reply) => {
                            let _ = reply.send(agent.handle(request));
                        }
                        Job::Run(task) => task(&mut agent),
                    }
                }
            })
            .context("spawning the owner thread")?;
        ready_rx
            .recv()
            .context("owner thread died while starting")??;
        Ok(Self { tx })
    }

    pub async fn call(&self, request: Request) -> Result<Response, ApiError> {
        let (reply, rx) = oneshot::channel();
        let gone = || ApiError::new(ErrorKind::Datapath, "agent owner thread is gone");
        self.tx
            .send(Job::Api(request, reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Run `task` on the owner thread, in turn with socket requests, and return its result.
    pub async fn run<T: Send + 'static>(
        &self,
        task: impl FnOnce(&mut Agent) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        let gone = || ApiError::new(ErrorKind::Datapath, "agent owner thread is gone");
        let job = Job::Run(Box::new(move |agent| {
            let _ = reply.send(task(agent));
        }));
        self.tx.send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// Bind `path`: refuse if another agent answers there, replace a stale socket file.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if UnixStream::connect(path).await.is_ok() {
        anyhow::bail!("another agent is already listening on {}", path.display());
    }
    match std::fs::remove_file(path) {
        Ok(()) => info!(path = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accept connections forever (the caller decides when to stop, and removes the socket).
pub async fn serve(listener: UnixListener, agent: AgentHandle) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await.context("accept")?;
        let agent = agent.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, agent).await {
                warn!(error = %e, "connection failed");
            }
        });
    }
}

async fn connection(stream: UnixStream, agent: AgentHandle) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let n = tokio::time::timeout(
        READ_TIMEOUT,
        BufReader::new(read.take(MAX_LINE)).read_line(&mut line),
    )
    .await
    .context("client sent no request in time")??;
    if n == 0 {
        return Ok(());
    }
    let response = match decode(&line) {
        Ok(request) => agent.call(request).await,
        Err(e) => Err(e),
    };
    let mut out = serde_json::to_vec(&ResponseEnvelope {
        v: PROTOCOL_VERSION,
        response,
    })?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

fn decode(line: &str) -> Result<Request, ApiError> {
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("request is not JSON: {e}")))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        other => {
            return Err(ApiError::new(
                ErrorKind::UnsupportedVersion,
                format!("request protocol version {other:?}, agent speaks {PROTOCOL_VERSION}"),
            ))
        }
    }
    serde_json::from_value::<RequestEnvelope>(value)
        .map(|e| e.request)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("bad request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_version_then_shape() {
        assert_eq!(decode(r#"{"v":1,"op":"status"}"#).unwrap(), Request::Status);
        assert_eq!(
            decode(r#"{"v":2,"op":"status"}"#).unwrap_err().kind,
            ErrorKind::UnsupportedVersion
        );
        assert_eq!(
            decode(r#"{"op":"status"}"#).unwrap_err().kind,
            ErrorKind::UnsupportedVersion
        );
        assert_eq!(
            decode(r#"{"v":1,"op":"explode"}"#).unwrap_err().kind,
            ErrorKind::BadRequest
        );
        assert_eq!(decode("not json").unwrap_err().kind, ErrorKind::BadRequest);
    }
}
