//! Building the API client: a kubeconfig, or the pod's service account, optionally pointed at
//! an explicit API server address (a CNI must not depend on the `kubernetes` ClusterIP, which
//! it provides itself).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("in-cluster configuration (service account token and CA): {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("API server address {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("creating the API client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig` if given, else the service account mounted in the pod; the
/// URL is replaced by `api_server` if given.
pub async fn client(
    kubeconfig: Option<&Path>,
    api_server: Option<&str>,
) -> Result<kube::Client, ClientError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        // Not `incluster()`: that reads KUBERNETES_SERVICE_HOST, the ClusterIP.
        None => kube::Config::incluster_dns()?,
    };
    if let Some(url) = api_server {
        config.cluster_url = url.parse().map_err(|e: http::uri::InvalidUri| ClientError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    } else if kubeconfig.is_none() {
        return Err(ClientError::BadUrl {
            url: config.cluster_url.to_string(),
            reason: "in a pod, give the API server's address (--api-server / WEFT_API_SERVER): \
                     weft provides the `kubernetes` Service itself, so it cannot use it"
                .into(),
        });
    }
    Ok(kube::Client::try_from(config)?)
}
