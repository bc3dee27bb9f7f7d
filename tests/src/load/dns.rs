//! Name lookups at a steady rate through the system resolver (glibc's `getaddrinfo`, the pod's
//! resolv.conf), as an application in the pod makes them. A lookup that takes longer than the
//! timeout counts as failed: the resolver resends a lost query only after seconds.

use std::sync::Arc;
use std::time::Instant;

use super::record::{now_ms, Recorder};
use super::{paced, TIMEOUT};

pub async fn run(
    name: &str,
    rate: u32,
    rec: &Arc<Recorder>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    paced(rate, stop, || {
        let (rec, name) = (rec.clone(), name.to_string());
        tasks.spawn_blocking(move || {
            let start_ms = now_ms();
            let t = Instant::now();
            let answer =
                std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0u16)).map(|a| a.count());
            let took = t.elapsed();
            match answer {
                Ok(n) if took <= TIMEOUT && n > 0 => rec.ok(start_ms, took, None),
                Ok(_) if took > TIMEOUT => rec.fail(
                    start_ms,
                    took,
                    &format!("dns {name}: answered after {took:?}"),
                ),
                Ok(_) => rec.fail(start_ms, took, &format!("dns {name}: no address")),
                Err(e) => rec.fail(start_ms, took, &format!("dns {name}: {e}")),
            }
        });
        while tasks.try_join_next().is_some() {}
    })
    .await;
    while tasks.join_next().await.is_some() {}
}
