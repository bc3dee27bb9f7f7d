//! Readiness probes: the kubelet prober's timing and thresholds (pure), and the tcpSocket and
//! httpGet checks, made from the node towards the pod IP as kubelet does.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Probe timing with the API defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn from_probe(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// The readiness result of one container, driven by probe outcomes.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub timing: Timing,
    ready: bool,
    ok_run: u32,
    fail_run: u32,
}

impl Readiness {
    /// A fresh container is not ready until its probe has succeeded `successThreshold` times.
    pub fn new(timing: Timing) -> Readiness {
        Readiness {
            timing,
            ready: false,
            ok_run: 0,
            fail_run: 0,
        }
    }

    /// A liveness state: healthy until `failureThreshold` probes in a row failed.
    pub fn healthy(timing: Timing) -> Readiness {
        Readiness {
            timing,
            ready: true,
            ok_run: 0,
            fail_run: 0,
        }
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Delay after the container started before the first probe, then between probes.
    pub fn delay_before(&self, probe_index: u64) -> Duration {
        if probe_index == 0 {
            self.timing.initial_delay
        } else {
            self.timing.period
        }
    }

    /// Records one probe outcome; returns true when the ready state flipped.
    pub fn record(&mut self, success: bool) -> bool {
        let before = self.ready;
        if success {
            self.ok_run += 1;
            self.fail_run = 0;
            if self.ok_run >= self.timing.success_threshold {
                self.ready = true;
            }
        } else {
            self.fail_run += 1;
            self.ok_run = 0;
            if self.fail_run >= self.timing.failure_threshold {
                self.ready = false;
            }
        }
        before != self.ready
    }
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Tcp {
        addr: SocketAddr,
    },
    Http {
        addr: SocketAddr,
        host_header: String,
        path: String,
        headers: Vec<(String, String)>,
        https: bool,
    },
    Exec {
        command: Vec<String>,
    },
}

/// A probe the stand-in cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("probe port {0:?} names no port of the container")]
    UnknownPort(String),
    #[error("probe has no handler the lab supports (tcpSocket, httpGet, exec)")]
    NoHandler,
    #[error("probe host {0:?} is not an IP address")]
    BadHost(String),
}

/// Turns a probe spec into an action aimed at `pod_ip` (or the probe's own `host`).
pub fn action(p: &Probe, container: &Container, pod_ip: IpAddr) -> Result<Action, ProbeError> {
    let resolve_port = |port: &IntOrString| -> Result<u16, ProbeError> {
        match port {
            IntOrString::Int(n) => Ok(*n as u16),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .map(|cp| cp.container_port as u16)
                .or_else(|| name.parse().ok())
                .ok_or_else(|| ProbeError::UnknownPort(name.clone())),
        }
    };
    let host = |h: &Option<String>| -> Result<IpAddr, ProbeError> {
        match h.as_deref() {
            None | Some("") => Ok(pod_ip),
            Some(s) => s.parse().map_err(|_| ProbeError::BadHost(s.to_string())),
        }
    };
    if let Some(t) = &p.tcp_socket {
        return Ok(Action::Tcp {
            addr: SocketAddr::new(host(&t.host)?, resolve_port(&t.port)?),
        });
    }
    if let Some(h) = &p.http_get {
        let addr = SocketAddr::new(host(&h.host)?, resolve_port(&h.port)?);
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        let host_header = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| addr.to_string());
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let https = h.scheme.as_deref() == Some("HTTPS");
        return Ok(Action::Http {
            addr,
            host_header,
            path,
            headers,
            https,
        });
    }
    if let Some(e) = &p.exec {
        return Ok(Action::Exec {
            command: e.command.clone().unwrap_or_default(),
        });
    }
    Err(ProbeError::NoHandler)
}

/// A TCP connect within the timeout; the error reads like kubelet's probe output.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", lower_io(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn lower_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    // "Connection refused (os error 111)" -> "connection refused", as Go prints it.
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// An HTTP/1.1 GET; success is a status in 200..400 (kubelet's rule). HTTPS is checked as a
/// TCP connect: the stand-in has no TLS client (kubelet would not verify the certificate).
pub async fn http(
    addr: SocketAddr,
    host_header: &str,
    path: &str,
    headers: &[(String, String)],
    https: bool,
    timeout: Duration,
) -> Result<(), String> {
    if https {
        return tcp(addr, timeout).await;
    }
    let url = format!("http://{addr}{path}");
    let run = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: connect: {}", lower_io(&e)))?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kube-probe/1.36\r\nAccept: */*\r\nConnection: close\r\n");
        for (n, v) in headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
        {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let io = |e: std::io::Error| format!("Get \"{url}\": {}", lower_io(&e));
        s.write_all(req.as_bytes()).await.map_err(io)?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = s.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        match http_status(&buf) {
            Some(code) if (200..400).contains(&code) => Ok(()),
            Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
            None => Err(format!("Get \"{url}\": malformed HTTP response")),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// The status code of an HTTP/1.x response's status line.
pub fn http_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, TCPSocketAction};

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_follow_the_api() {
        let t = Timing::from_probe(&Probe::default());
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }

    #[test]
    fn first_probe_waits_initial_delay_then_period() {
        let r = Readiness::new(timing(1, 3));
        assert_eq!(r.delay_before(0), Duration::from_secs(5));
        assert_eq!(r.delay_before(1), Duration::from_secs(2));
        assert_eq!(r.delay_before(7), Duration::from_secs(2));
    }

    #[test]
    fn thresholds_gate_transitions() {
        let mut r = Readiness::new(timing(2, 3));
        assert!(!r.ready());
        assert!(!r.record(true), "one success is below successThreshold=2");
        assert!(r.record(true) && r.ready());
        assert!(
            !r.record(false) && !r.record(false),
            "two failures stay ready"
        );
        assert!(r.record(false) && !r.ready(), "third failure flips");
        assert!(!r.record(true), "success run restarts from zero");
        assert!(!r.record(false) && !r.record(true));
        assert!(r.record(true) && r.ready());
    }

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn liveness_starts_healthy_and_fails_after_the_threshold() {
        let mut l = Readiness::healthy(timing(1, 3));
        assert!(l.ready());
        assert!(!l.record(false) && !l.record(false));
        assert!(l.record(false) && !l.ready());
    }

    #[test]
    fn actions_resolve_named_ports_and_default_to_the_pod_ip() {
        let ip: IpAddr = "10.200.1.5".parse().unwrap();
        let p = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("healthz".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            action(&p, &container(), ip).unwrap(),
            Action::Http {
                addr: "10.200.1.5:8080".parse().unwrap(),
                host_header: "10.200.1.5:8080".into(),
                path: "/healthz".into(),
                headers: vec![],
                https: false,
            }
        );
        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(53),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            action(&p, &container(), ip).unwrap(),
            Action::Tcp {
                addr: "10.200.1.5:53".parse().unwrap()
            }
        );
        let p = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("dns".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            action(&p, &container(), ip),
            Err(ProbeError::UnknownPort("dns".into()))
        );
        assert_eq!(
            action(&Probe::default(), &container(), ip),
            Err(ProbeError::NoHandler)
        );
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(http_status(b"HTTP/1.1 200 OK\r\nx"), Some(200));
        assert_eq!(
            http_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(http_status(b"SSH-2.0-OpenSSH\r\n"), None);
    }

    #[tokio::test]
    async fn http_and_tcp_checks_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /ready HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("User-Agent: kube-probe/1.36"), "{req}");
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(http(addr, "x", "/ready", &[], false, t).await, Ok(()));
        assert_eq!(
            http(addr, "x", "/ready", &[], false, t).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        server.await.unwrap();
        // The listener is gone: connection refused, worded as kubelet words it.
        assert_eq!(
            tcp(addr, t).await,
            Err(format!("dial tcp {addr}: connect: connection refused"))
        );
        assert_eq!(
            http(addr, "x", "/ready", &[], false, t).await,
            Err(format!(
                "Get \"http://{addr}/ready\": dial tcp {addr}: connect: connection refused"
            ))
        );
    }
}
