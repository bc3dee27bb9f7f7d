//! New-connection latency (netperf TCP_CRR style): connect, one byte each way, close; one
//! connection at a time, each timed. The client closes with a RST (SO_LINGER 0), as netperf's
//! CRR test effectively does at these rates: otherwise TIME_WAIT would use up the ephemeral
//! ports within seconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The byte that ends the server (sent by the client when it is done).
const QUIT: u8 = b'q';

/// Serve connections one after the other: read a byte, answer it, wait for the peer to
/// close. Exits on a [`QUIT`] byte, or after `idle` without a new connection.
pub fn serve(port: u16, idle: Duration) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("binding port {port}"))?;
    listener.set_nonblocking(true)?;
    println!("listening");
    std::io::stdout().flush()?;
    let mut last = Instant::now();
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                last = Instant::now();
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {
                    if b[0] == QUIT {
                        return Ok(());
                    }
                    // Until the client's close (a RST: the read fails; either way we are done).
                    let _ = s.read(&mut b);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() > idle {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// SO_LINGER with a zero timeout: close() sends a RST and leaves no TIME_WAIT.
fn linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket fd and a pointer to a linger struct of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One connection: connect, a byte each way, close with a RST.
fn transaction(addr: SocketAddr, byte: u8) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_nodelay(true)?;
    linger_zero(&s)?;
    let mut b = [byte; 1];
    s.write_all(&b)?;
    s.read_exact(&mut b)?;
    Ok(())
}

/// Connections to `addr` for `secs` seconds after a short warm-up; prints one JSON line:
/// `{"n":…, "per_s":…, "p50_us":…, "p99_us":…, "errors":…}`.
pub fn client(addr: SocketAddr, secs: f64) -> Result<()> {
    for _ in 0..200 {
        let _ = transaction(addr, 1);
    }
    let mut lat = Vec::new();
    let mut errors = 0u64;
    let start = Instant::now();
    let end = Duration::from_secs_f64(secs);
    while start.elapsed() < end {
        let t = Instant::now();
        match transaction(addr, 1) {
            Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1e6),
            Err(_) => errors += 1,
        }
    }
    let took = start.elapsed().as_secs_f64();
    let _ = transaction(addr, QUIT);
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    println!(
        "{}",
        serde_json::json!({"n": lat.len(), "per_s": lat.len() as f64 / took, "p50_us": q(0.50), "p99_us": q(0.99), "errors": errors})
    );
    Ok(())
}
