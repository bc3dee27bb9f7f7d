//! A load driver for the lab's operations tests: HTTP connection loops, a DNS lookup loop and
//! a long TCP stream, each recording every failure with its wall-clock time so the test can
//! tie it to the event (restart, kill, outage, scale) that was under way.
//!
//! Protocol on stdout, one line per record: `fail <start ms> <took ms> <what>` as failures
//! happen, `gap <from ms> <ms>` for each stall of the stream of 200 ms or more, `conn <local>
//! <peer>` when the stream connects, then `summary <json>` when stdin closes (the test holds it
//! open while it runs).

pub mod dns;
pub mod http;
pub mod record;
pub mod stream;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use record::Recorder;

/// What one `weft-load` process drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// New HTTP/1.1 connections (`Connection: close`) to `addr` at `rate` per second, each a
    /// `GET path` whose body names the backend that answered.
    Http {
        addr: SocketAddr,
        path: String,
        rate: u32,
    },
    /// Name lookups through the resolver the pod's resolv.conf names, `rate` per second.
    Dns { name: String, rate: u32 },
    /// One TCP connection to `addr` read for as long as the driver runs (reconnecting after a
    /// failure, which is recorded).
    Stream { addr: SocketAddr },
    /// The stream's server: writes a chunk every 10 ms to every connection on `port`.
    StreamServer { port: u16 },
}

/// Parses `weft-load MODE ARGS…`.
pub fn parse(args: &[String]) -> Result<Mode> {
    let arg = |i: usize, what: &str| {
        args.get(i)
            .with_context(|| format!("missing {what}\n{USAGE}"))
    };
    let rate = |i: usize| -> Result<u32> {
        let r: u32 = arg(i, "RATE")?
            .parse()
            .context("RATE: connections per second")?;
        if r == 0 || r > 100_000 {
            bail!("RATE must be 1..=100000, got {r}");
        }
        Ok(r)
    };
    let addr =
        |i: usize| -> Result<SocketAddr> { arg(i, "ADDR")?.parse().context("ADDR: IP:PORT") };
    Ok(match args.first().map(String::as_str) {
        Some("http") => Mode::Http {
            addr: addr(1)?,
            path: arg(2, "PATH")?.clone(),
            rate: rate(3)?,
        },
        Some("dns") => Mode::Dns {
            name: arg(1, "NAME")?.clone(),
            rate: rate(2)?,
        },
        Some("stream") => Mode::Stream { addr: addr(1)? },
        Some("stream-server") => Mode::StreamServer {
            port: arg(1, "PORT")?.parse().context("PORT")?,
        },
        _ => bail!("{USAGE}"),
    })
}

const USAGE: &str =
    "usage: weft-load http IP:PORT PATH RATE | dns NAME RATE | stream IP:PORT | stream-server PORT";

/// Give up on one request or lookup after this long (it counts as failed).
pub const TIMEOUT: Duration = Duration::from_secs(1);

pub fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = parse(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if let Mode::StreamServer { port } = mode {
            return stream::serve(port).await;
        }
        let rec = std::sync::Arc::new(Recorder::new());
        let stop = until_stdin_closes();
        match mode {
            Mode::Http { addr, path, rate } => http::run(addr, &path, rate, &rec, stop).await,
            Mode::Dns { name, rate } => dns::run(&name, rate, &rec, stop).await,
            Mode::Stream { addr } => stream::run(addr, &rec, stop).await,
            Mode::StreamServer { .. } => unreachable!("served above"),
        }
        rec.print_summary();
        Ok(())
    })
}

/// Resolves once stdin reaches end of file (the test dropped its end of the pipe).
fn until_stdin_closes() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(true);
    });
    rx
}

/// Ticks `rate` times per second until `stop`, calling `each` at every tick (missed ticks are
/// not made up: a driver that falls behind says so in its summary rather than bursting).
pub async fn paced(
    rate: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut each: impl FnMut(),
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => each(),
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn modes_parse_and_bad_input_is_refused() {
        assert_eq!(
            parse(&v("http 10.32.0.5:80 /hostname 500")).unwrap(),
            Mode::Http {
                addr: "10.32.0.5:80".parse().unwrap(),
                path: "/hostname".into(),
                rate: 500
            }
        );
        assert_eq!(
            parse(&v("dns kubernetes.default.svc.cluster.local. 20")).unwrap(),
            Mode::Dns {
                name: "kubernetes.default.svc.cluster.local.".into(),
                rate: 20
            }
        );
        assert_eq!(
            parse(&v("stream-server 9000")).unwrap(),
            Mode::StreamServer { port: 9000 }
        );
        for bad in [
            "",
            "http 10.0.0.1 / 5",
            "http 10.0.0.1:80 / 0",
            "dns x",
            "stream",
            "flood 1.2.3.4:5",
        ] {
            assert!(parse(&v(bad)).is_err(), "{bad:?} must be refused");
        }
    }
}
