//! The kubelet's HTTPS port (10250), serving `/containerLogs/…` so `kubectl logs [-f]` works
//! through the apiserver as on a real node. Exec, attach and port-forward need the streaming
//! protocols and are not offered (`weft-lab exec` enters pods instead).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::record;

/// kubelet's default port.
pub const PORT: u16 = 10250;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Logs {
        namespace: String,
        pod: String,
        container: String,
        follow: bool,
        tail_lines: Option<usize>,
        previous: bool,
    },
    NotFound(String),
}

/// Parses a request line's target (`/containerLogs/ns/pod/container?follow=true`).
pub fn route(target: &str) -> Route {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let safe = |s: &str| {
        !s.is_empty()
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    match parts.as_slice() {
        ["healthz"] => Route::Healthz,
        ["containerLogs", ns, pod, container] if safe(ns) && safe(pod) && safe(container) => {
            Route::Logs {
                namespace: ns.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
                follow: matches!(param("follow"), Some("true" | "1")),
                tail_lines: param("tailLines").and_then(|n| n.parse().ok()),
                previous: matches!(param("previous"), Some("true" | "1")),
            }
        }
        _ => Route::NotFound(path.to_string()),
    }
}

/// The last `n` lines of `text` (all of it for None).
pub fn tail(text: &[u8], n: Option<usize>) -> &[u8] {
    let Some(n) = n else { return text };
    if n == 0 {
        return &text[text.len()..];
    }
    // Skip a trailing newline so it does not count as an empty last line.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

fn tls_config(node_name: &str, node_ip: Ipv4Addr) -> anyhow::Result<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec![node_name.to_string(), node_ip.to_string()])
        .context("generating the kubelet serving certificate")?;
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves until the task is dropped. The serving certificate is self-signed, as a kubelet's is
/// without `--tls-cert-file` (the apiserver does not verify it unless told to).
pub async fn serve(state_dir: PathBuf, node_name: String, node_ip: Ipv4Addr) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&node_name, node_ip)?));
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "kubelet API listening (containerLogs only)");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a kubelet API connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state_dir = state_dir.clone();
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    if let Err(e) = handle(tls, &state_dir).await {
                        tracing::debug!(%peer, error = %e, "kubelet API request ended");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            }
        });
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state_dir: &Path,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = rd.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(head.split(|b| *b == b'\n').next().unwrap_or_default())
        .trim()
        .to_string();
    let mut words = line.split_whitespace();
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    tracing::debug!(method, target, "kubelet API request");
    let respond = |status: &str, body: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    let no_runtime = "the weft lab kubelet has no container runtime to exec, attach or port-forward: use `weft-lab exec NS/POD -- CMD`\n";
    if method != "GET" {
        return wr
            .write_all(respond("501 Not Implemented", no_runtime).as_bytes())
            .await;
    }
    match route(target) {
        Route::Healthz => wr.write_all(respond("200 OK", "ok").as_bytes()).await,
        Route::NotFound(path) => {
            let body = format!("the weft lab kubelet serves only /containerLogs and /healthz, not {path} (use `weft-lab exec` to run commands in pods)\n");
            wr.write_all(respond("404 Not Found", &body).as_bytes())
                .await
        }
        Route::Logs {
            namespace,
            pod,
            container,
            follow,
            tail_lines,
            previous,
        } => {
            let dir = record::pod_dir(state_dir, &namespace, &pod);
            let path = if previous {
                dir.join(format!("{container}.previous.log"))
            } else {
                dir.join(format!("{container}.log"))
            };
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                let which = if previous {
                    "previous terminated container"
                } else {
                    "container"
                };
                let body = format!(
                    "{which} {container:?} in pod {namespace}/{pod} has no log on this node\n"
                );
                return wr
                    .write_all(respond("404 Not Found", &body).as_bytes())
                    .await;
            };
            let mut text = vec![];
            file.read_to_end(&mut text).await?;
            wr.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            )
            .await?;
            wr.write_all(tail(&text, tail_lines)).await?;
            wr.flush().await?;
            if !follow {
                return wr.shutdown().await;
            }
            // Follow: stream what is appended until the client goes away or the pod record does.
            let mut pos = text.len() as u64;
            let mut chunk = vec![0u8; 64 * 1024];
            let mut probe = [0u8; 1];
            loop {
                tokio::select! {
                    r = rd.read(&mut probe) => if matches!(r, Ok(0) | Err(_)) { return Ok(()) },
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                file.seek(std::io::SeekFrom::Start(pos)).await?;
                let n = file.read(&mut chunk).await?;
                if n > 0 {
                    pos += n as u64;
                    wr.write_all(&chunk[..n]).await?;
                    wr.flush().await?;
                } else if !record::record_path(&dir).exists() {
                    return wr.shutdown().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(
            route("/containerLogs/default/web-1/nginx?follow=true&tailLines=5"),
            Route::Logs {
                namespace: "default".into(),
                pod: "web-1".into(),
                container: "nginx".into(),
                follow: true,
                tail_lines: Some(5),
                previous: false,
            }
        );
        assert!(matches!(
            route("/containerLogs/default/web/nginx"),
            Route::Logs {
                follow: false,
                tail_lines: None,
                previous: false,
                ..
            }
        ));
        assert!(matches!(
            route("/containerLogs/default/web/nginx?previous=true"),
            Route::Logs { previous: true, .. }
        ));
        assert!(matches!(
            route("/containerLogs/../etc/passwd"),
            Route::NotFound(_)
        ));
        assert!(matches!(route("/containerLogs/a/../b"), Route::NotFound(_)));
        assert!(matches!(
            route("/exec/default/web/nginx?command=sh"),
            Route::NotFound(_)
        ));
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\nb\n", Some(5)), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", Some(0)), b"");
        assert_eq!(tail(b"a\nb\n", None), b"a\nb\n");
    }

    #[tokio::test]
    async fn follow_streams_appended_lines_until_the_pod_is_gone() {
        let state = crate::kubelet::testutil::tempdir("wk-srv-f");
        let dir = record::pod_dir(&state, "default", "web");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(record::record_path(&dir), "{}").unwrap();
        std::fs::write(dir.join("nginx.log"), "one\n").unwrap();
        let (client, server) = tokio::io::duplex(4096);
        let st = state.clone();
        let srv = tokio::spawn(async move { handle(server, &st).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(b"GET /containerLogs/default/web/nginx?follow=true HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        let mut read_until = async |needle: &str, got: &mut String| {
            let mut buf = [0u8; 1024];
            while !got.contains(needle) {
                let n = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut buf))
                    .await
                    .expect("more output in time")
                    .unwrap();
                assert!(n > 0, "stream ended before {needle:?}: {got}");
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        read_until("one\n", &mut got).await;
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("nginx.log"))
            .unwrap();
        f.write_all(b"two\n").unwrap();
        read_until("two\n", &mut got).await;
        std::fs::remove_file(record::record_path(&dir)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), srv)
            .await
            .expect("follow ends once the pod record is gone")
            .unwrap()
            .unwrap();
        assert!(got.ends_with("\r\n\r\none\ntwo\n"), "{got}");
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[tokio::test]
    async fn serves_logs_over_a_stream() {
        let state = crate::kubelet::testutil::tempdir("wk-srv");
        let dir = record::pod_dir(&state, "default", "web");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nginx.log"), "one\ntwo\nthree\n").unwrap();
        let (client, server) = tokio::io::duplex(4096);
        let st = state.clone();
        let srv = tokio::spawn(async move { handle(server, &st).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(
            b"GET /containerLogs/default/web/nginx?tailLines=2 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = String::new();
        rd.read_to_string(&mut out).await.unwrap();
        srv.await.unwrap().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\ntwo\nthree\n"), "{out}");
        std::fs::remove_dir_all(&state).unwrap();
    }
}
