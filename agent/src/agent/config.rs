//! Where the agent's node pod CIDR comes from: the flag, else a node-local file.

use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;

use crate::ipam::MAX_PREFIX_LEN;

/// Name of the node-local pod CIDR file inside the state directory.
pub const POD_CIDR_FILE: &str = "pod-cidr";

#[derive(Debug, thiserror::Error)]
pub enum PodCidrError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds {content:?}, not an IPv4 CIDR")]
    Parse { path: PathBuf, content: String },
    #[error("pod CIDR {cidr} is too small: need /{MAX_PREFIX_LEN} or shorter")]
    TooSmall { cidr: Ipv4Network },
}

/// The node's pod CIDR: `flag` if given, else `<state_dir>/pod-cidr` if present, else none
/// (then every ADD must carry `podCIDR` in its config).
pub fn resolve_pod_cidr(
    flag: Option<Ipv4Network>,
    state_dir: &Path,
) -> Result<Option<Ipv4Network>, PodCidrError> {
    let cidr = match flag {
        Some(c) => c,
        None => {
            let path = state_dir.join(POD_CIDR_FILE);
            let content = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(PodCidrError::Read { path, source }),
            };
            content.trim().parse().map_err(|_| PodCidrError::Parse {
                path,
                content: content.trim().to_owned(),
            })?
        }
    };
    if cidr.prefix() > MAX_PREFIX_LEN {
        return Err(PodCidrError::TooSmall { cidr });
    }
    Ok(Some(crate::ipam::canonical(cidr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("weft-podcidr-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn flag_wins_over_the_file() {
        let d = Dir::new("flag");
        std::fs::write(d.0.join(POD_CIDR_FILE), "10.200.9.0/24\n").unwrap();
        let got = resolve_pod_cidr(Some("10.200.1.7/24".parse().unwrap()), &d.0).unwrap();
        assert_eq!(got, Some("10.200.1.0/24".parse().unwrap()));
    }

    #[test]
    fn file_is_read_when_no_flag_and_absence_is_none() {
        let d = Dir::new("file");
        assert_eq!(resolve_pod_cidr(None, &d.0).unwrap(), None);
        std::fs::write(d.0.join(POD_CIDR_FILE), " 10.200.9.0/24\n").unwrap();
        assert_eq!(
            resolve_pod_cidr(None, &d.0).unwrap(),
            Some("10.200.9.0/24".parse().unwrap())
        );
    }

    #[test]
    fn garbage_or_tiny_cidrs_are_errors() {
        let d = Dir::new("bad");
        std::fs::write(d.0.join(POD_CIDR_FILE), "banana").unwrap();
        assert!(matches!(
            resolve_pod_cidr(None, &d.0),
            Err(PodCidrError::Parse { .. })
        ));
        std::fs::write(d.0.join(POD_CIDR_FILE), "10.200.9.0/31").unwrap();
        assert!(matches!(
            resolve_pod_cidr(None, &d.0),
            Err(PodCidrError::TooSmall { .. })
        ));
    }
}
