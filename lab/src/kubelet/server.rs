//! The kubelet's HTTPS port (10250), as the API server uses it: `/containerLogs/…` for
//! `kubectl logs [-f] [-p]` and `/exec/…` for `kubectl exec` (WebSocket, `v5.channel.k8s.io`
//! and `v4`; the Node declares `ExtendWebSocketsToKubelet`, so the API server passes the
//! client's WebSocket through instead of translating it to SPDY). Clients must present a
//! certificate signed by the lab CA (kubelet's `--client-ca-file` with `AlwaysAllow`
//! authorization); the API server's is `kube-apiserver-kubelet-client`. Attach and
//! port-forward are not served.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{enter, exec, record, stream};

/// kubelet's default port.
pub const PORT: u16 = 10250;

/// Where the handlers find this node's pods.
#[derive(Clone)]
struct Api {
    state_dir: Arc<PathBuf>,
}

/// A pod, namespace or container name that is safe to use as a path component.
fn safe(s: &str) -> bool {
    !s.is_empty()
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// The kubelet API's routes over this node's pod records.
pub fn router(state_dir: PathBuf) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec_by_name))
        .route("/exec/{ns}/{pod}/{uid}/{container}", any(exec_by_uid))
        .route("/attach/{*rest}", any(not_served))
        .route("/portForward/{*rest}", any(not_served))
        .fallback(|uri: axum::http::Uri| async move {
            text(
                StatusCode::NOT_FOUND,
                format!("the weft lab kubelet serves /healthz, /containerLogs and /exec, not {}\n", uri.path()),
            )
        })
        .with_state(Api { state_dir: Arc::new(state_dir) })
}

async fn not_served() -> Response {
    text(
        StatusCode::NOT_IMPLEMENTED,
        "the weft lab kubelet serves exec and logs, not attach or port-forward\n",
    )
}

/// Query parameters as (key, value) pairs.
fn params(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes()).into_owned().collect()
}

fn flag(params: &[(String, String)], name: &str) -> bool {
    params.iter().any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1"))
}

async fn logs(
    State(api): State<Api>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if !(safe(&ns) && safe(&pod) && safe(&container)) {
        return text(StatusCode::NOT_FOUND, "no such container\n");
    }
    let p = params(&q);
    let follow = flag(&p, "follow");
    let previous = flag(&p, "previous");
    let tail_lines: Option<usize> =
        p.iter().find(|(k, _)| k == "tailLines").and_then(|(_, v)| v.parse().ok());
    let dir = record::pod_dir(&api.state_dir, &ns, &pod);
    let path = if previous {
        dir.join(format!("{container}.previous.log"))
    } else {
        dir.join(format!("{container}.log"))
    };
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        let which = if previous { "previous terminated container" } else { "container" };
        return text(
            StatusCode::NOT_FOUND,
            format!("{which} {container:?} in pod {ns}/{pod} has no log on this node\n"),
        );
    };
    let mut body = vec![];
    if let Err(e) = file.read_to_end(&mut body).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the log: {e}\n"));
    }
    let first = tail(&body, tail_lines).to_vec();
    let headers = [(header::CONTENT_TYPE, "text/plain")];
    if !follow {
        return (headers, first).into_response();
    }
    // Follow: what is appended, until the client goes away (the body is dropped) or the pod
    // record does.
    let state = (Some(first), file, body.len() as u64, dir);
    let s = futures::stream::unfold(state, |(first, mut file, pos, dir)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, std::io::Error>(first), (None, file, pos, dir)));
        }
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.seek(std::io::SeekFrom::Start(pos)).await {
                return Some((Err(e), (None, file, pos, dir)));
            }
            match file.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    chunk.truncate(n);
                    return Some((Ok(chunk), (None, file, pos + n as u64, dir)));
                }
                Ok(_) if !record::record_path(&dir).exists() => return None,
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(e) => return Some((Err(e), (None, file, pos, dir))),
            }
        }
    });
    (headers, Body::from_stream(s)).into_response()
}

async fn exec_by_name(
    State(api): State<Api>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    exec_route(&api, &ns, &pod, None, &container, q, &headers, ws)
}

async fn exec_by_uid(
    State(api): State<Api>,
    UrlPath((ns, pod, uid, container)): UrlPath<(String, String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    exec_route(&api, &ns, &pod, Some(&uid), &container, q, &headers, ws)
}

/// Resolves the pod and container, then upgrades to the streaming protocol and runs the
/// session. Errors before the upgrade are plain HTTP answers, as kubelet gives them.
#[expect(clippy::too_many_arguments, reason = "one per part of the request")]
fn exec_route(
    api: &Api,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
    query: Option<String>,
    headers: &HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !(safe(ns) && safe(pod) && safe(container)) {
        return text(StatusCode::NOT_FOUND, "no such pod\n");
    }
    let opts = match stream::ExecOptions::from_query(query.as_deref().unwrap_or_default()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let rec = match record::find_pod(&api.state_dir, ns, pod) {
        Ok(r) if uid.is_none_or(|u| u == r.uid) => r,
        _ => return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found on this node\n")),
    };
    let cmd = match enter::command(&api.state_dir, &rec, Some(container), &opts.command) {
        Ok(c) => c,
        Err(e @ enter::EnterError::NoContainer { .. }) => return text(StatusCode::NOT_FOUND, format!("{e}\n")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let ws = match ws {
        Ok(ws) => ws.protocols(stream::PROTOCOLS),
        Err(_) => {
            let spdy = headers
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("spdy"));
            let why = if spdy {
                "this kubelet streams over WebSocket only (v5.channel.k8s.io, v4.channel.k8s.io): \
                 its Node declares ExtendWebSocketsToKubelet, so the API server should pass the \
                 client's WebSocket through\n"
            } else {
                "exec needs a WebSocket upgrade request (v5.channel.k8s.io or v4.channel.k8s.io)\n"
            };
            return text(StatusCode::BAD_REQUEST, why);
        }
    };
    let proto = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(stream::V5) => stream::V5,
        Some(stream::V4) => stream::V4,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("none of the requested WebSocket protocols is supported; supported: {:?}\n", stream::PROTOCOLS),
            )
        }
    };
    tracing::info!(pod = %format!("{ns}/{pod}"), container, command = ?opts.command, tty = opts.tty, proto, "exec");
    ws.on_upgrade(move |socket| exec::run(socket, proto, opts, cmd))
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

/// The TLS setup: a self-signed serving certificate, as a kubelet without `--tls-cert-file`
/// makes one (the API server does not verify it unless told to), and, given a CA, client
/// certificates required and checked against it.
fn tls_config(
    node_name: &str,
    node_ip: Ipv4Addr,
    client_ca: Option<&Path>,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let ck = rcgen::generate_simple_self_signed(vec![node_name.to_string(), node_ip.to_string()])
        .context("generating the kubelet serving certificate")?;
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?
            {
                roots.add(c.with_context(|| format!("parsing {}", ca.display()))?)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The TLS side of the kubelet port (see [`tls_config`]).
pub fn acceptor(
    node_name: &str,
    node_ip: Ipv4Addr,
    client_ca: Option<&Path>,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(node_name, node_ip, client_ca)?)))
}

/// Serves until the task is dropped.
pub async fn serve(
    state_dir: PathBuf,
    node_name: String,
    node_ip: Ipv4Addr,
    client_ca: Option<PathBuf>,
) -> anyhow::Result<()> {
    if client_ca.is_none() {
        tracing::warn!("no client CA configured: the kubelet API accepts any client");
    }
    let acceptor = acceptor(&node_name, node_ip, client_ca.as_deref())?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "kubelet API listening (logs, exec)");
    serve_tls(listener, acceptor, router(state_dir)).await
}

/// Accepts TLS connections and serves HTTP/1.1 with upgrades (WebSocket) on each.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
) -> anyhow::Result<()> {
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
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "kubelet API connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn pod_with_log(tag: &str, log: &str) -> (PathBuf, PathBuf) {
        let state = crate::kubelet::testutil::tempdir(tag);
        let dir = record::pod_dir(&state, "default", "web");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nginx.log"), log).unwrap();
        (state, dir)
    }

    #[tokio::test]
    async fn logs_are_served_with_tail_and_previous() {
        let (state, dir) = pod_with_log("wk-srv", "one\ntwo\nthree\n");
        std::fs::write(dir.join("nginx.previous.log"), "before\n").unwrap();
        let app = router(state.clone());
        assert_eq!(get(&app, "/healthz", &[]).await, (StatusCode::OK, "ok".into()));
        assert_eq!(
            get(&app, "/containerLogs/default/web/nginx?tailLines=2", &[]).await,
            (StatusCode::OK, "two\nthree\n".into())
        );
        assert_eq!(
            get(&app, "/containerLogs/default/web/nginx?previous=true", &[]).await.1,
            "before\n"
        );
        let (code, body) = get(&app, "/containerLogs/default/web/other", &[]).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body.contains("\"other\" in pod default/web has no log"), "{body}");
        assert_eq!(get(&app, "/containerLogs/../etc/passwd", &[]).await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&app, "/containerLogs/default/%2e%2e/x", &[]).await.0, StatusCode::NOT_FOUND);
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[tokio::test]
    async fn follow_streams_appended_lines_until_the_pod_is_gone() {
        let (state, dir) = pod_with_log("wk-srv-f", "one\n");
        std::fs::write(record::record_path(&dir), "{}").unwrap();
        let app = router(state.clone());
        let req = Request::get("/containerLogs/default/web/nginx?follow=true").body(Body::empty()).unwrap();
        let mut body = app.oneshot(req).await.unwrap().into_body();
        let mut next = async || {
            let f = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("more output in time");
            f.map(|f| String::from_utf8_lossy(&f.unwrap().into_data().unwrap()).into_owned())
        };
        assert_eq!(next().await.as_deref(), Some("one\n"));
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("nginx.log")).unwrap();
        f.write_all(b"two\n").unwrap();
        assert_eq!(next().await.as_deref(), Some("two\n"));
        std::fs::remove_file(record::record_path(&dir)).unwrap();
        assert_eq!(next().await, None, "follow ends once the pod record is gone");
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[tokio::test]
    async fn exec_refusals_are_plain_http_answers() {
        let state = crate::kubelet::testutil::tempdir("wk-srv-x");
        let app = router(state.clone());
        let q = "?command=ls&output=1";
        let (code, body) = get(&app, &format!("/exec/default/nope/c{q}"), &[]).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("pod default/nope not found"), "{body}");
        let (code, body) = get(&app, "/exec/default/nope/c?output=1", &[]).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(body.contains("at least one command"), "{body}");
        assert_eq!(get(&app, &format!("/exec/default/nope/uid/c{q}"), &[]).await.0, StatusCode::NOT_FOUND);
        let (code, body) = get(&app, "/portForward/default/web", &[]).await;
        assert_eq!(code, StatusCode::NOT_IMPLEMENTED, "{body}");
        assert_eq!(get(&app, "/attach/default/web/c", &[]).await.0, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(get(&app, "/pods", &[]).await.0, StatusCode::NOT_FOUND);
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\nb\n", Some(5)), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", Some(0)), b"");
        assert_eq!(tail(b"a\nb\n", None), b"a\nb\n");
    }

    #[test]
    fn a_client_ca_makes_client_certificates_mandatory() {
        let dir = crate::kubelet::testutil::tempdir("wk-srv-tls");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(dir.join("ca.crt"), p.self_signed(&key).unwrap().pem()).unwrap();
        let ip = Ipv4Addr::new(172, 30, 0, 11);
        assert!(tls_config("node-1", ip, Some(&dir.join("ca.crt"))).is_ok());
        assert!(tls_config("node-1", ip, Some(&dir.join("missing.crt"))).is_err());
        assert!(tls_config("node-1", ip, None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
