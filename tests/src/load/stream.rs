//! A long TCP stream: the server writes a chunk every 10 ms to each connection, the client
//! reads for as long as the driver runs and reports every stall (time between two reads that
//! brought data) and every broken connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::record::{now_ms, Recorder};

const CHUNK: usize = 4096;
const EVERY: Duration = Duration::from_millis(10);

/// Serves the stream on `port` until killed.
pub async fn serve(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on {port}"))?;
    loop {
        let (mut conn, _) = listener.accept().await?;
        tokio::spawn(async move {
            let chunk = vec![b'w'; CHUNK];
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                if conn.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Reads the stream at `addr` until `stop`; a broken or refused connection is a failure and
/// is opened again.
pub async fn run(
    addr: SocketAddr,
    rec: &Arc<Recorder>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while !*stop.borrow() {
        let start_ms = now_ms();
        let t = Instant::now();
        let mut conn = match tokio::time::timeout(super::TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                rec.fail(
                    start_ms,
                    t.elapsed(),
                    &format!("stream {addr}: connect: {e}"),
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                rec.fail(
                    start_ms,
                    t.elapsed(),
                    &format!("stream {addr}: connect timed out"),
                );
                continue;
            }
        };
        if let (Ok(local), Ok(peer)) = (conn.local_addr(), conn.peer_addr()) {
            rec.connected(local, peer);
        }
        let mut last = now_ms();
        loop {
            tokio::select! {
                r = conn.read(&mut buf) => match r {
                    Ok(n) if n > 0 => {
                        let now = now_ms();
                        rec.stream_bytes(n, last, now);
                        last = now;
                    }
                    Ok(_) => {
                        rec.fail(last, t.elapsed(), &format!("stream {addr}: closed by the peer"));
                        break;
                    }
                    Err(e) => {
                        rec.fail(last, t.elapsed(), &format!("stream {addr}: {e}"));
                        break;
                    }
                },
                _ = stop.changed() => {
                    // The stall up to now counts too (a stream that stopped for good).
                    rec.stream_bytes(0, last, now_ms());
                    return;
                }
            }
        }
    }
}
