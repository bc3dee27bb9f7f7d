//! The kubelet stand-in's root tests: real pod sandboxes built with the real CNI reference
//! plugins inside a throw-away node namespace, running real nginx and busybox. (Its unit tests
//! live beside the code in `lab/src/kubelet`.)

use weft_lab::kubelet;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet::catalogue::Roots;
use kubelet::cni::Cni;
use kubelet::container::{self, PodEnv, RestartPolicy, Update};
use kubelet::sandbox::{SandboxEnv, SandboxSpec};
use kubelet::status::State;
use tokio::sync::{mpsc, watch};

/// CNI reference plugins: `$WEFT_LAB_CNI_BIN`, else the lab's own build in its cache
/// (`weft-lab build` makes it; `cargo xtask test` runs that first).
fn cni_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_LAB_CNI_BIN") {
        return d.into();
    }
    let cache = weft_lab::upstream::cache_dir();
    weft_lab::upstream::Bins::in_cache(&cache, &weft_lab::upstream::Versions::PINNED).cni_bin_dir
}

/// Sandboxes of a throw-away node: the given conflist in `dir/net.d`, the reference plugins, a
/// CNI cache under `dir`, pod netns named with `prefix`.
fn sandbox_env(dir: &Path, prefix: String, conflist: String) -> SandboxEnv {
    let conf = dir.join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("10-lab.conflist"), conflist).unwrap();
    SandboxEnv {
        cni: Cni {
            bin_dir: cni_bin_dir(),
            conf_dir: conf,
            cache_dir: dir.join("cni-cache"),
        },
        netns_prefix: prefix,
        etc_netns: PathBuf::from("/etc/netns"),
    }
}

fn preconditions() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "root tests need root (they create network namespaces)"
    );
    let bin = cni_bin_dir();
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        assert!(bin.join(p).is_file(), "CNI plugin {p} missing in {} (run `cargo run -p weft-lab -- build`, or set WEFT_LAB_CNI_BIN)", bin.display());
    }
    for b in [
        "/usr/sbin/nginx",
        "/usr/bin/busybox",
        "/usr/bin/curl",
        "/usr/bin/nsenter",
    ] {
        assert!(Path::new(b).is_file(), "{b} missing");
    }
}

/// A node network namespace, its temp dir, and every pod netns with its prefix (and the
/// processes inside), removed on drop, also when the test fails.
struct NodeGuard {
    netns: String,
    dir: PathBuf,
    pod_prefix: String,
}

impl NodeGuard {
    fn new(tag: &str) -> NodeGuard {
        let netns = format!("wk-node-{tag}-{}", std::process::id());
        let pod_prefix = format!("wk-{tag}{}-", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &netns])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {netns}");
        let dir = std::env::temp_dir().join(&netns);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        NodeGuard {
            netns,
            dir,
            pod_prefix,
        }
    }
}

fn netns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let pods: Vec<String> = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.pod_prefix))
            .collect();
        for ns in &pods {
            // Kill whatever still runs in the pod (a failed test's nginx, pause).
            let ino = netns_inode(&Path::new("/run/netns").join(ns));
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if ino.is_some() && netns_inode(&entry.path().join("ns/net")) == ino {
                    // SAFETY: kill(2) on a pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a thread that lives in the node's netns, so CNI plugins, probes and curl start
/// there (a kubelet stand-in runs inside its node namespace).
fn in_node<F, Fut>(node: &NodeGuard, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let path = format!("/run/netns/{}", node.netns);
    std::thread::spawn(move || {
        let f_ns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a valid fd; network namespaces are per thread.
        let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f_ns), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns into {path}");
        assert!(Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f());
    })
    .join()
    .expect("node thread");
}

fn conflist(tag: u8, dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("wk-net{tag}"),
        "plugins": [
            {"type": "bridge", "bridge": format!("wk-br{tag}"), "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "dataDir": dir.join("ipam").display().to_string(),
                      "ranges": [[{"subnet": format!("10.251.{tag}.0/24")}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
    .to_string()
}

fn spec(name: &str) -> SandboxSpec {
    SandboxSpec {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("{:08x}-{:04x}-4000-8000-000000000000", name.len(), std::process::id() & 0xffff),
        hostname: name.into(),
        fqdn: None,
        host_network: false,
        resolv_conf: Some("nameserver 10.32.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n".into()),
        capability_args: Default::default(),
        host_aliases: vec![],
    }
}

fn pod_env(
    client: kube::Client,
    dir: &Path,
    sb: &kubelet::sandbox::Sandbox,
    roots: &Roots,
    name: &str,
) -> Arc<PodEnv> {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some("default".into());
    Arc::new(PodEnv {
        events: kubelet::events::Events::new(client.clone(), "wk-node"),
        client,
        pod,
        dir: dir.to_path_buf(),
        roots: roots.clone(),
        pause_pid: sb.pause_pid,
        pod_ip: sb.ip,
        host_ip: Ipv4Addr::new(172, 30, 0, 11),
        volumes: Default::default(),
        service_env: vec![],
        mount_point_registry: dir.join("host-mount-points"),
    })
}

/// Container updates as they arrived, so a test can look for one that came earlier.
struct Updates {
    rx: mpsc::UnboundedReceiver<Update>,
    seen: Vec<Update>,
}

impl Updates {
    /// The first update (already seen or still to come) that satisfies `pred`.
    async fn wait(&mut self, what: &str, pred: impl Fn(&Update) -> bool) -> Update {
        if let Some(u) = self.seen.iter().find(|u| pred(u)) {
            return u.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(u)) => {
                    self.seen.push(u.clone());
                    if pred(&u) {
                        return u;
                    }
                }
                Ok(None) => panic!("container task ended before: {what}"),
                Err(_) => panic!("timed out waiting for: {what}"),
            }
        }
    }
}

/// A CA and a client certificate it signed, as the lab's PKI makes them.
struct KubeletPki {
    ca: PathBuf,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl KubeletPki {
    fn new(dir: &Path) -> KubeletPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let path = dir.join("ca.crt");
        std::fs::write(&path, ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer).unwrap();
        KubeletPki {
            ca: path,
            cert: cert.der().clone(),
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

/// The API server does not verify a kubelet's self-signed serving certificate; neither do we.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One exec through the kubelet port as the API server makes it: TLS (with the client
/// certificate, if given), a `v5.channel.k8s.io` WebSocket; returns stdout and the status.
async fn exec_over_tls(port: u16, path: &str, client: Option<&KubeletPki>) -> anyhow::Result<(String, serde_json::Value)> {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, Message};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let cfg = match client {
        Some(c) => b.with_client_auth_cert(vec![c.cert.clone()], c.key.clone_key())?,
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await?;
    let mut req = format!("wss://127.0.0.1:{port}{path}").into_client_request()?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await?;
    let (mut stdout, mut status) = (String::new(), serde_json::Value::Null);
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
        match msg? {
            Message::Binary(b) if b[0] == 1 => stdout.push_str(&String::from_utf8_lossy(&b[1..])),
            Message::Binary(b) if b[0] == 3 => status = serde_json::from_slice(&b[1..])?,
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok((stdout, status))
}

#[test]
fn pods_get_real_cni_networking_run_catalogue_images_and_clean_up() {
    preconditions();
    let node = NodeGuard::new("a");
    let dir = node.dir.clone();
    let prefix = node.pod_prefix.clone();
    in_node(&node, move || async move {
        let env = sandbox_env(&dir, prefix, conflist(1, &dir));
        let roots = Roots {
            images_dir: dir.join("images"),
            bin_paths: None,
            loaded: vec![],
        };
        kubelet::catalogue::prepare_images(&roots).unwrap();
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();

        // --- an nginx pod, ready through an httpGet readiness probe from the node ---
        let web_spec = spec("web");
        let web_dir = dir.join("pods/default_web");
        let mut web = env
            .create(&web_spec, &web_dir)
            .await
            .expect("sandbox with bridge + host-local");
        let web_ip = web.ip.expect("pod IP from the eth0 result");
        assert_eq!(
            web_ip.octets()[..3],
            [10, 251, 1],
            "IP from the conflist's subnet"
        );
        assert!(Path::new("/run/netns").join(&web.netns).exists());
        assert!(
            std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", web.netns))
                .unwrap()
                .contains("nameserver 10.32.0.10")
        );
        let cache = dir
            .join("cni-cache/results")
            .join(format!("wk-net1-{}-eth0", web.id));
        assert!(cache.is_file(), "final ADD result cached for DEL");

        let nginx = Container {
            name: "nginx".into(),
            image: Some("nginx:1.27".into()),
            ports: Some(vec![ContainerPort {
                container_port: 80,
                ..Default::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::Int(80),
                    path: Some("/".into()),
                    ..Default::default()
                }),
                period_seconds: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut rx = Updates { rx, seen: vec![] };
        let (stop_tx, stop_rx) = watch::channel(None);
        let penv = pod_env(client.clone(), &web_dir, &web, &roots, "web");
        let task = tokio::spawn(container::supervise(
            penv,
            0,
            nginx,
            RestartPolicy::Always,
            tx,
            stop_rx,
        ));
        let started = rx
            .wait("nginx running", |u| {
                matches!(u.view.state, State::Running { .. })
            })
            .await;
        assert!(!started.view.ready, "not ready before the probe passed");
        let ready = rx.wait("nginx ready", |u| u.view.ready).await;
        assert!(ready.pid.is_some());

        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{web_ip}/")])
            .output()
            .unwrap();
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(
            page.contains("<title>Welcome to nginx!</title>"),
            "curl from the node: {page} {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // --- lab exec: a command in the pod's namespaces sees the pod's hostname and DNS ---
        let rec = kubelet::PodRecord {
            namespace: "default".into(),
            name: "web".into(),
            uid: web_spec.uid.clone(),
            netns: web.netns.clone(),
            host_network: false,
            ip: web.ip,
            log: web_dir.join("nginx.log"),
            pid: ready.pid,
            containers: vec![kubelet::record::ContainerRecord {
                name: "nginx".into(),
                image: "nginx".into(),
                pid: ready.pid,
                path_env: "/usr/bin:/bin".into(),
                image_bin_dir: None,
            }],
        };
        kubelet::record::save(&kubelet::record::record_path(&web_dir), &rec).unwrap();
        let sbrec = kubelet::record::SandboxRecord {
            id: web.id.clone(),
            pause_pid: Some(web.pause_pid),
            pause_start: kubelet::nsexec::start_time(web.pause_pid),
            path_env: "/usr/bin:/bin".into(),
            network: Some("wk-net1".into()),
            net_ns_inode: web.net_ns_inode,
            uts_ns_inode: web.uts_ns_inode,
        };
        kubelet::record::save(&kubelet::record::sandbox_path(&web_dir), &sbrec).unwrap();
        let state_dir = dir.clone();
        std::fs::create_dir_all(state_dir.join("pods")).unwrap();
        let found = kubelet::find_pod(&state_dir, "default", "web").unwrap();
        let argv: Vec<String> = [
            "sh",
            "-c",
            "hostname; cat /etc/resolv.conf; ip -4 -o addr show eth0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = kubelet::enter::command(&state_dir, &found, Some("nginx"), &argv)
            .unwrap()
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("web\n"),
            "hostname is the pod name: {text}"
        );
        assert!(text.contains("search default.svc.cluster.local"), "{text}");
        assert!(text.contains(&format!("inet {web_ip}/24")), "{text}");

        // --- kubectl exec's path: the kubelet port, TLS with a client certificate, WebSocket ---
        let pki = KubeletPki::new(&dir);
        let acceptor = kubelet::server::acceptor("wk-node", Ipv4Addr::LOCALHOST, Some(&pki.ca)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let srv = tokio::spawn(kubelet::server::serve_tls(listener, acceptor, kubelet::server::router(state_dir.clone())));
        let path = "/exec/default/web/nginx?command=sh&command=-c&command=hostname%3B%20cat%20%2Fetc%2Fhosts%3B%20exit%207&output=1&error=1";
        let (stdout, status) = exec_over_tls(port, path, Some(&pki)).await.expect("exec with the client certificate");
        assert!(stdout.starts_with("web
"), "{stdout}");
        assert!(stdout.contains(&format!("{web_ip}\tweb")) || stdout.contains(&format!("{web_ip}	web")), "kubelet-style hosts file: {stdout}");
        assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");
        assert!(exec_over_tls(port, path, None).await.is_err(), "a client without a certificate is refused");
        srv.abort();

        // --- a busybox pod reaches nginx; an unknown image errors; a crash is restarted ---
        let bb_spec = spec("client");
        let bb_dir = dir.join("pods/default_client");
        let mut bb = env.create(&bb_spec, &bb_dir).await.unwrap();
        assert_ne!(bb.ip, web.ip);
        let (tx2, rx2) = mpsc::unbounded_channel();
        let mut rx2 = Updates {
            rx: rx2,
            seen: vec![],
        };
        let (stop2_tx, stop2_rx) = watch::channel(None);
        let penv2 = pod_env(client.clone(), &bb_dir, &bb, &roots, "client");
        let wget = Container {
            name: "wget".into(),
            image: Some("busybox:1.28".into()),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec![format!(
                "wget -q -O - http://{web_ip}/ && hostname && cat /etc/resolv.conf"
            )]),
            ..Default::default()
        };
        let crash = Container {
            name: "crash".into(),
            image: Some("busybox".into()),
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo crashing; exit 3".into(),
            ]),
            ..Default::default()
        };
        let bad = Container {
            name: "bad".into(),
            image: Some("example.com/not-in-catalogue:1".into()),
            ..Default::default()
        };
        let t1 = tokio::spawn(container::supervise(
            penv2.clone(),
            0,
            wget,
            RestartPolicy::Never,
            tx2.clone(),
            stop2_rx.clone(),
        ));
        let t2 = tokio::spawn(container::supervise(
            penv2.clone(),
            1,
            crash,
            RestartPolicy::OnFailure,
            tx2.clone(),
            stop2_rx.clone(),
        ));
        let t3 = tokio::spawn(container::supervise(
            penv2,
            2,
            bad,
            RestartPolicy::Always,
            tx2,
            stop2_rx,
        ));
        let done = rx2
            .wait("wget container done", |u| u.idx == 0 && u.view.done)
            .await;
        assert!(
            matches!(done.view.state, State::Terminated { exit_code: 0, .. }),
            "{:?}",
            done.view.state
        );
        let log = std::fs::read_to_string(bb_dir.join("wget.log")).unwrap();
        assert!(
            log.contains("Welcome to nginx!"),
            "busybox wget through the bridge: {log}"
        );
        assert!(
            log.contains("client\nnameserver 10.32.0.10\n"),
            "pod hostname and resolv.conf: {log}"
        );
        let backoff = rx2.wait("crash in back-off", |u| u.idx == 1 && matches!(&u.view.state, State::Waiting { reason, .. } if reason == "CrashLoopBackOff")).await;
        assert_eq!(
            backoff.view.restart_count, 1,
            "restarted once at once, then backing off"
        );
        assert!(matches!(
            backoff.view.last_terminated,
            Some(State::Terminated { exit_code: 3, .. })
        ));
        let pull = rx2.wait("unknown image", |u| u.idx == 2).await;
        match &pull.view.state {
            State::Waiting { reason, message } => {
                assert_eq!(reason, "ErrImagePull");
                assert!(
                    message
                        .as_deref()
                        .unwrap_or_default()
                        .contains("not in the lab's image catalogue"),
                    "{message:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!pull.view.ready);

        // --- stop and tear down: processes gone, CNI DEL released the IPs, netns removed ---
        stop_tx.send(Some(Duration::from_secs(5))).unwrap();
        stop2_tx.send(Some(Duration::from_secs(1))).unwrap();
        let stopped = rx.wait("nginx stopped", |u| u.view.done).await;
        assert!(matches!(stopped.view.state, State::Terminated { .. }));
        for t in [task, t1, t2, t3] {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("container task stops")
                .unwrap();
        }
        let nginx_pid = ready.pid.unwrap();
        assert!(
            !Path::new(&format!("/proc/{nginx_pid}")).exists()
                || kubelet::nsexec::start_time(nginx_pid).is_none()
        );
        let ipam_dir = dir.join("ipam/wk-net1");
        assert!(
            ipam_dir.join(web_ip.to_string()).exists(),
            "host-local holds the address before DEL"
        );
        let names = [web.netns.clone(), bb.netns.clone()];
        env.teardown(&web_spec, &mut web).await.unwrap();
        env.teardown(&bb_spec, &mut bb).await.unwrap();
        assert!(
            web.netns.is_empty(),
            "a torn-down sandbox has nothing left to tear down"
        );
        assert!(
            !ipam_dir.join(web_ip.to_string()).exists(),
            "CNI DEL released the address"
        );
        assert!(!cache.exists(), "DEL dropped the cached result");
        for ns in &names {
            assert!(
                !Path::new("/run/netns").join(ns).exists(),
                "netns {ns} removed"
            );
            assert!(
                !Path::new("/etc/netns").join(ns).exists(),
                "/etc/netns/{ns} removed"
            );
        }
        assert!(
            kubelet::nsexec::start_time(web.pause_pid).is_none(),
            "pause process gone"
        );
    });
}

#[test]
fn a_failing_cni_plugin_leaves_nothing_behind() {
    preconditions();
    let node = NodeGuard::new("b");
    let dir = node.dir.clone();
    let prefix = node.pod_prefix.clone();
    in_node(&node, move || async move {
        // host-local without any range: the plugin answers with a CNI error object.
        let bad = serde_json::json!({"cniVersion": "1.0.0", "name": "wk-bad", "plugins": [
            {"type": "bridge", "bridge": "wk-brbad", "ipam": {"type": "host-local", "dataDir": dir.join("ipam").display().to_string()}}]});
        let env = sandbox_env(&dir, prefix, bad.to_string());
        let s = spec("broken");
        let err = env
            .create(&s, &dir.join("pods/default_broken"))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("plugin type=\"bridge\" failed (ADD)"), "{msg}");
        let name = kubelet::sandbox::netns_name(&env.netns_prefix, &s.uid);
        assert!(
            !Path::new("/run/netns").join(&name).exists(),
            "netns removed after the failure"
        );
        assert!(!Path::new("/etc/netns").join(&name).exists());
    });
}

#[test]
fn a_sandbox_orphaned_by_a_dead_stand_in_is_reclaimed() {
    preconditions();
    let node = NodeGuard::new("c");
    let dir = node.dir.clone();
    let prefix = node.pod_prefix.clone();
    in_node(&node, move || async move {
        let env = sandbox_env(&dir, prefix, conflist(3, &dir));
        let s = spec("orphan");
        let mut sb = env
            .create(&s, &dir.join("pods/default_orphan"))
            .await
            .unwrap();
        let ip = sb.ip.unwrap();
        let ns_path = Path::new("/run/netns").join(&sb.netns);
        assert!(kubelet::sandbox::is_netns(&ns_path));
        // What a stand-in killed with SIGKILL leaves: its mount namespace (holding the netns
        // mount) is gone, the mount-point file and the CNI state stay.
        kubelet::nsexec::kill_group(sb.pause_pid, libc::SIGKILL);
        let _ = sb.pause.take().unwrap().wait().await;
        assert!(Command::new("umount")
            .arg(&ns_path)
            .status()
            .unwrap()
            .success());
        assert!(ns_path.exists() && !kubelet::sandbox::is_netns(&ns_path));
        let ipam = dir.join("ipam/wk-net3").join(ip.to_string());
        assert!(ipam.exists());

        // The pod is set up again under the same name: the stale one is reclaimed first.
        let mut again = env
            .create(&s, &dir.join("pods/default_orphan"))
            .await
            .expect("a stale netns file does not block the pod");
        assert!(
            !ipam.exists() || again.ip == Some(ip),
            "the old address was released by DEL with an empty CNI_NETNS"
        );
        let old_cache = dir
            .join("cni-cache/results")
            .join(format!("wk-net3-{}-eth0", sb.id));
        assert!(
            !old_cache.exists(),
            "the old attachment's cache entry is gone"
        );
        env.teardown(&s, &mut again).await.unwrap();
        assert!(!ns_path.exists());
    });
}

/// Killing what runs in a pod's UTS namespace spares the process that keeps the namespace
/// alive (its inode number must not be freed, and reused, while the scan runs).
#[test]
fn namespace_members_die_but_the_spared_one() {
    preconditions();
    let mut child = Command::new("unshare")
        .args(["--uts", "sh", "-c", "sleep 60 & echo $!; exec sleep 61"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let background: u32 = line.trim().parse().unwrap();
    let holder = child.id();
    let ino = kubelet::nsexec::ns_inode(Path::new(&format!("/proc/{holder}/ns/uts"))).unwrap();
    assert_ne!(kubelet::nsexec::ns_inode(Path::new("/proc/self/ns/uts")), Some(ino));
    assert_eq!(kubelet::nsexec::kill_namespace_members_but("uts", ino, Some(holder)), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let gone = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
            .unwrap_or(true)
    };
    while !gone(background) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(background), "the other member was killed");
    assert!(child.try_wait().unwrap().is_none(), "the spared process lives");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A tiny image root: Debian's busybox (and the libraries `ldd` lists) as `/bin/*`, no nginx.
fn tiny_image(root: &Path) -> kubelet::image::LoadedImage {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let ldd = Command::new("ldd").arg("/usr/bin/busybox").output().unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
        let at = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::copy(lib, &at).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "sleep", "echo", "test"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    kubelet::image::LoadedImage {
        reference: "lab.test/tiny:1".into(),
        rootfs: root.to_path_buf(),
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo no command".into()],
        env: vec![("PATH".into(), "/bin".into())],
        workdir: None,
    }
}

#[test]
fn a_loaded_image_runs_from_its_own_file_system() {
    preconditions();
    let node = NodeGuard::new("d");
    let dir = node.dir.clone();
    let prefix = node.pod_prefix.clone();
    in_node(&node, move || async move {
        let env = sandbox_env(&dir, prefix, conflist(4, &dir));
        let image = tiny_image(&dir.join("tiny-image"));
        let roots = Roots { images_dir: dir.join("images"), bin_paths: None, loaded: vec![image] };
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let s = spec("tiny");
        let pod_dir = dir.join("pods/default_tiny");
        let mut sb = env.create(&s, &pod_dir).await.unwrap();
        let penv = pod_env(client, &pod_dir, &sb, &roots, "tiny");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut rx = Updates { rx, seen: vec![] };
        let (stop_tx, stop_rx) = watch::channel(None);
        // The image's ENTRYPOINT (`/bin/sh -c`) with the pod's args; what it lists is the
        // image's root, with the pod's resolv.conf and a writable layer of its own.
        let ls = Container {
            name: "ls".into(),
            image: Some("lab.test/tiny:1".into()),
            args: Some(vec!["ls /; ls /bin; cat /etc/resolv.conf; echo written > /written; cat /written; test -e /usr/sbin/nginx || echo no-nginx".into()]),
            ..Default::default()
        };
        // The machine has nginx; the image does not, so this container cannot start.
        let nginx = Container {
            name: "nginx".into(),
            image: Some("lab.test/tiny:1".into()),
            command: Some(vec!["/usr/sbin/nginx".into()]),
            ..Default::default()
        };
        // An exec probe runs inside the running container's own file system: /ready exists
        // only in that container's writable layer.
        let probed = Container {
            name: "probed".into(),
            image: Some("lab.test/tiny:1".into()),
            args: Some(vec!["echo ok > /ready; sleep 3600".into()]),
            readiness_probe: Some(Probe {
                exec: Some(k8s_openapi::api::core::v1::ExecAction { command: Some(vec!["cat".into(), "/ready".into()]) }),
                period_seconds: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t1 = tokio::spawn(container::supervise(penv.clone(), 0, ls, RestartPolicy::Never, tx.clone(), stop_rx.clone()));
        let t2 = tokio::spawn(container::supervise(penv.clone(), 1, nginx, RestartPolicy::Always, tx.clone(), stop_rx.clone()));
        let t3 = tokio::spawn(container::supervise(penv, 2, probed, RestartPolicy::Always, tx, stop_rx));
        let done = rx.wait("ls exited", |u| u.idx == 0 && matches!(u.view.state, State::Terminated { .. })).await;
        assert!(matches!(done.view.state, State::Terminated { exit_code: 0, .. }), "{:?}", done.view.state);
        let log = std::fs::read_to_string(pod_dir.join("ls.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        for top in ["bin", "dev", "etc", "proc", "sys"] {
            assert!(lines.contains(&top), "/ of the container lists {top}: {log}");
        }
        assert!(!lines.contains(&"home") && !lines.contains(&"root") && !lines.contains(&"usr"), "the machine's / shows through: {log}");
        assert!(lines.contains(&"busybox") && !lines.contains(&"bash"), "/bin is the image's: {log}");
        assert!(log.contains("search default.svc.cluster.local"), "the pod's resolv.conf: {log}");
        assert!(log.contains("written\n") && log.contains("no-nginx"), "{log}");
        assert!(!dir.join("tiny-image/written").exists(), "the image's layer stays read-only");
        let failed = rx
            .wait("nginx cannot start", |u| u.idx == 1 && matches!(&u.view.state, State::Waiting { reason, .. } if reason == "CreateContainerConfigError"))
            .await;
        let State::Waiting { message, .. } = &failed.view.state else { unreachable!() };
        assert!(message.as_deref().unwrap_or_default().contains("/usr/sbin/nginx"), "{message:?}");
        rx.wait("the exec probe passes", |u| u.idx == 2 && u.view.ready).await;
        stop_tx.send(Some(Duration::from_secs(2))).unwrap();
        t1.await.unwrap();
        t2.await.unwrap();
        t3.await.unwrap();
        env.teardown(&s, &mut sb).await.unwrap();
    });
}
