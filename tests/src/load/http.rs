//! New HTTP connections at a steady rate: one `GET` per connection, as a client without
//! keep-alive makes them; the answer's body names the backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::record::{now_ms, Recorder};
use super::{paced, TIMEOUT};

/// Drives `rate` connections per second to `addr` until `stop`, then waits for the last ones.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    rate: u32,
    rec: &Arc<Recorder>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    // At most two seconds' worth in flight: with a one-second timeout more means the driver
    // itself cannot keep up, which is counted, not hidden.
    let slots = Arc::new(tokio::sync::Semaphore::new(2 * rate as usize));
    let mut tasks = tokio::task::JoinSet::new();
    paced(rate, stop, || {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            rec.behind();
            return;
        };
        let (rec, path) = (rec.clone(), path.to_string());
        tasks.spawn(async move {
            let start_ms = now_ms();
            let t = Instant::now();
            match tokio::time::timeout(TIMEOUT, get(addr, &path)).await {
                Ok(Ok(host)) => rec.ok(start_ms, t.elapsed(), Some(&host)),
                Ok(Err(e)) => rec.fail(start_ms, t.elapsed(), &format!("http {addr}: {e:#}")),
                Err(_) => rec.fail(
                    start_ms,
                    t.elapsed(),
                    &format!("http {addr}: no answer within {TIMEOUT:?}"),
                ),
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    })
    .await;
    while tasks.join_next().await.is_some() {}
}

/// One connection, one request; the trimmed body.
async fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("handshake")?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        // The server closes first, so its side keeps TIME_WAIT and the client's ports stay free
        // for the next connections to the same address.
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await.context("request")?;
    let status = res.status();
    let body = res.into_body().collect().await.context("body")?.to_bytes();
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}
