//! The lab's PKI, made with rcgen: a CA, the API server's serving certificate, a client
//! certificate per identity, the service-account signing key, and a kubeconfig per identity.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::spec::{CLUSTER_DOMAIN, CP_IP, KUBERNETES_SVC_IP, APISERVER_PORT};
use crate::state::StateDir;

/// A client identity: certificate subject and the kubeconfig it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// File stem of the cert, key and kubeconfig (`admin`, `node-1`, …).
    pub file: String,
    /// Subject CN: the Kubernetes user name.
    pub user: String,
    /// Subject O: the Kubernetes group, if any.
    pub group: Option<String>,
}

impl Identity {
    fn new(file: &str, user: &str, group: Option<&str>) -> Self {
        Self { file: file.into(), user: user.into(), group: group.map(Into::into) }
    }
}

/// File stem of the API server's client certificate for kubelets (logs, exec), named and
/// grouped as kubeadm makes it.
pub const APISERVER_KUBELET_CLIENT: &str = "apiserver-kubelet-client";

/// Every client identity of a lab with these nodes.
pub fn identities(node_names: &[String]) -> Vec<Identity> {
    let mut ids = vec![
        Identity::new("admin", "admin", Some("system:masters")),
        Identity::new(APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client", Some("system:masters")),
        Identity::new("kube-controller-manager", "system:kube-controller-manager", None),
        Identity::new("kube-scheduler", "system:kube-scheduler", None),
        Identity::new("kube-proxy", "system:kube-proxy", None),
    ];
    for n in node_names {
        ids.push(Identity::new(n, &format!("system:node:{n}"), Some("system:nodes")));
    }
    ids
}

/// Names and addresses the API server's certificate covers: every way a client reaches it.
pub fn apiserver_sans() -> Vec<String> {
    let mut sans = vec![CP_IP.to_string(), KUBERNETES_SVC_IP.to_string(), "127.0.0.1".into()];
    sans.push("localhost".into());
    sans.push("kubernetes".into());
    sans.push("kubernetes.default".into());
    sans.push("kubernetes.default.svc".into());
    sans.push(format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"));
    sans
}

/// File locations inside `pki/`.
pub struct PkiFiles {
    dir: PathBuf,
}

impl PkiFiles {
    pub fn new(state: &StateDir) -> Self {
        Self { dir: state.pki() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.crt"))
    }
    pub fn key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }
    /// Private key that signs service-account tokens.
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// Public half, for verifying tokens.
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Generates the whole PKI and the kubeconfigs under the state dir.
pub fn generate(state: &StateDir, node_names: &[String]) -> anyhow::Result<()> {
    let files = PkiFiles::new(state);
    std::fs::create_dir_all(state.pki())?;
    std::fs::create_dir_all(state.kubeconfig("x").parent().expect("kubeconfigs dir"))?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "weft-lab-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    std::fs::write(files.ca_cert(), ca_cert.pem())?;
    write_private(&files.key("ca"), &ca_key.serialize_pem())?;
    let ca = Issuer::new(ca_params, ca_key);

    // kube-apiserver serving certificate.
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(apiserver_sans())?;
    p.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    std::fs::write(files.cert("apiserver"), p.signed_by(&key, &ca)?.pem())?;
    write_private(&files.key("apiserver"), &key.serialize_pem())?;

    for id in identities(node_names) {
        issue(state, &files, &ca, &id)?;
    }

    // Service-account token signing key (ECDSA P-256: ES256 tokens).
    let sa = KeyPair::generate()?;
    write_private(&files.sa_key(), &sa.serialize_pem())?;
    std::fs::write(files.sa_pub(), sa.public_key_pem())?;
    Ok(())
}

/// A client certificate, key and kubeconfig for `id`, signed by `ca`.
fn issue(state: &StateDir, files: &PkiFiles, ca: &Issuer<'_, KeyPair>, id: &Identity) -> anyhow::Result<()> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, id.user.as_str());
    if let Some(g) = &id.group {
        p.distinguished_name.push(DnType::OrganizationName, g.as_str());
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    std::fs::write(files.cert(&id.file), p.signed_by(&key, ca)?.pem())?;
    write_private(&files.key(&id.file), &key.serialize_pem())?;
    std::fs::write(state.kubeconfig(&id.file), kubeconfig(id, files))?;
    Ok(())
}

/// The identity of a node added while the lab runs, signed by the lab's existing CA.
pub fn add_node(state: &StateDir, node: &str) -> anyhow::Result<()> {
    let files = PkiFiles::new(state);
    let ca_pem = std::fs::read_to_string(files.ca_cert()).context("reading the lab CA")?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(files.key("ca")).context("reading the CA key")?)?;
    let ca = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("loading the lab CA")?;
    let id = Identity::new(node, &format!("system:node:{node}"), Some("system:nodes"));
    issue(state, &files, &ca, &id)
}

/// A kubeconfig for `id` that points at the API server's advertise address.
pub fn kubeconfig(id: &Identity, files: &PkiFiles) -> String {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "weft-lab", "cluster": {
            "server": format!("https://{CP_IP}:{APISERVER_PORT}"),
            "certificate-authority": files.ca_cert(),
        }}],
        "users": [{"name": id.user, "user": {
            "client-certificate": files.cert(&id.file),
            "client-key": files.key(&id.file),
        }}],
        "contexts": [{"name": "weft-lab", "context": {"cluster": "weft-lab", "user": id.user}}],
        "current-context": "weft-lab",
    });
    // JSON is YAML; every Kubernetes client reads it.
    serde_json::to_string_pretty(&doc).expect("kubeconfig serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_cover_control_plane_proxy_and_each_node() {
        let ids = identities(&["node-1".into(), "node-2".into()]);
        let admin = ids.iter().find(|i| i.file == "admin").unwrap();
        assert_eq!(admin.group.as_deref(), Some("system:masters"));
        let proxy = ids.iter().find(|i| i.file == "kube-proxy").unwrap();
        assert_eq!(proxy.user, "system:kube-proxy");
        let n2 = ids.iter().find(|i| i.file == "node-2").unwrap();
        assert_eq!(n2.user, "system:node:node-2");
        assert_eq!(n2.group.as_deref(), Some("system:nodes"));
        let kc = ids.iter().find(|i| i.file == APISERVER_KUBELET_CLIENT).unwrap();
        assert_eq!(kc.user, "kube-apiserver-kubelet-client");
        assert_eq!(ids.len(), 7);
    }

    #[test]
    fn apiserver_cert_covers_advertise_service_and_dns_names() {
        let sans = apiserver_sans();
        for want in ["172.30.0.2", "10.32.0.1", "kubernetes.default.svc.cluster.local", "localhost"] {
            assert!(sans.iter().any(|s| s == want), "missing {want}");
        }
    }

    #[test]
    fn generated_certificates_chain_to_the_ca_with_the_right_subjects() {
        let dir = std::env::temp_dir().join(format!("weft-lab-pki-test-{}", std::process::id()));
        struct Rm(PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _rm = Rm(dir.clone());
        let state = StateDir::at(&dir);
        generate(&state, &["node-1".into()]).unwrap();
        // A node added later gets its identity from the same CA.
        add_node(&state, "node-7").unwrap();
        assert!(state.kubeconfig("node-7").is_file());
        let files = PkiFiles::new(&state);
        // openssl is the independent judge of the chain and the subject.
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(files.ca_cert())
            .arg(files.cert("apiserver"))
            .arg(files.cert("node-1"))
            .arg(files.cert("node-7"))
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let subj = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(files.cert("node-1"))
            .output()
            .unwrap();
        let subj = String::from_utf8_lossy(&subj.stdout);
        assert!(subj.contains("system:node:node-1") && subj.contains("system:nodes"), "{subj}");
        let kc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state.kubeconfig("admin")).unwrap()).unwrap();
        assert_eq!(kc["clusters"][0]["cluster"]["server"], "https://172.30.0.2:6443");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(files.sa_key()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "private keys are not world-readable");
    }
}
