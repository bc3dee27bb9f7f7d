//! A tiny TCP request/response load (netperf TCP_RR style): one byte each way, one
//! transaction in flight, counted for a fixed time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Serve one connection: echo every byte back until the peer closes.
pub fn serve(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("binding port {port}"))?;
    // Tell the parent we are listening (it waits for this line before starting the client).
    println!("listening");
    std::io::stdout().flush()?;
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Ok(()),
            Ok(_) => s.write_all(&b)?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Run transactions against `addr` for `secs` seconds; print the rate (transactions/s).
pub fn client(addr: SocketAddr, secs: f64) -> Result<()> {
    let mut s = connect_retry(addr)?;
    s.set_nodelay(true)?;
    let mut b = [1u8; 1];
    // Warm up caches, ARP and the connection before counting.
    for _ in 0..1000 {
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
    }
    let end = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < end {
        for _ in 0..64 {
            s.write_all(&b)?;
            s.read_exact(&mut b)?;
        }
        n += 64;
    }
    println!("{:.1}", n as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

fn connect_retry(addr: SocketAddr) -> Result<TcpStream> {
    let t = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if t.elapsed() > Duration::from_secs(5) => bail!("connecting to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
