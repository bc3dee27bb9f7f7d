//! Policy change -> enforced, seen from a pod: a prober in the client pod opens a TCP
//! connection to the server pod every few milliseconds and reports each change of outcome with
//! its CLOCK_MONOTONIC time (the same clock in every namespace); a default-deny policy over the
//! server's namespace is created and deleted again, many times, and each change is timed from
//! `kubectl` returning (the object stored) to the first attempt that met the new verdict.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lab::Lab;
use super::policy_objects::DENY;
use super::topo;

/// CLOCK_MONOTONIC in nanoseconds.
fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: plain syscall writing into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The prober (run inside the client pod): a connection attempt every 2 ms (20 ms timeout);
/// prints `ok <ns>` or `fail <ns>` (the attempt's start) whenever the outcome changes.
pub fn probe(addr: SocketAddr) -> Result<()> {
    let mut last: Option<bool> = None;
    let until = Instant::now() + Duration::from_secs(3600);
    while Instant::now() < until {
        let start = now_ns();
        let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(20)).is_ok();
        if last != Some(ok) {
            println!("{} {start}", if ok { "ok" } else { "fail" });
            last = Some(ok);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Wait for the prober's next line saying `want` for an attempt started after `after`.
fn wait_for(rx: &mpsc::Receiver<(bool, u64)>, want: bool, after: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((ok, t)) = rx.recv_timeout(Duration::from_millis(100)) {
            if ok == want && t >= after {
                return Ok(t);
            }
        }
    }
    bail!("the prober did not see the change within 20 s")
}

/// Milliseconds from each change to its enforcement.
pub struct Changes {
    pub deny_ms: Vec<f64>,
    pub allow_ms: Vec<f64>,
}

/// `count` deny/allow cycles against `addr` (the server's nginx), probed from the client pod.
/// Nothing else may isolate the server meanwhile.
pub fn measure(lab: &Lab, me: &Path, addr: SocketAddr, count: usize) -> Result<Changes> {
    let mut prober = topo::in_ns(&lab.enter(&["exec", "bench-cli/client"]), me, None);
    let mut child = prober
        .args(["bench", "--policy-probe", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the prober")?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut w = line.split_whitespace();
            if let (Some(state), Some(t)) = (w.next(), w.next().and_then(|t| t.parse::<u64>().ok())) {
                let _ = tx.send((state == "ok", t));
            }
        }
    });
    let result = (|| -> Result<Changes> {
        wait_for(&rx, true, 0).context("the client never reached the server")?;
        let mut c = Changes { deny_ms: vec![], allow_ms: vec![] };
        for k in 1..=count {
            lab.apply(DENY)?;
            let t0 = now_ns();
            let t = wait_for(&rx, false, t0)?;
            c.deny_ms.push(t.saturating_sub(t0) as f64 / 1e6);
            lab.ok(&["kubectl", "delete", "-n", "bench-srv", "networkpolicy", "deny"])?;
            let t1 = now_ns();
            let t = wait_for(&rx, true, t1)?;
            c.allow_ms.push(t.saturating_sub(t1) as f64 / 1e6);
            eprintln!(
                "    [{k}/{count}] deny enforced after {:.1} ms, lifted after {:.1} ms",
                c.deny_ms[k - 1],
                c.allow_ms[k - 1]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(c)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
