//! Identifiers every layer shares: a pod's attachment (the CNI key), the pod itself and a MAC
//! address. The socket protocol carries them, but so do IPAM, netlink and the Kubernetes side,
//! so they live here rather than in `api`.

use serde::{Deserialize, Serialize};

/// One pod attachment: the CNI (container ID, interface name) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

/// The Kubernetes pod an attachment belongs to, as the runtime names it in `CNI_ARGS`
/// (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`). Lets the agent free the addresses of
/// pods that are gone when it was not told (a DEL while it was down).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl PodRef {
    /// Whether `live` is the same pod: same namespace and name, and the same UID when both
    /// know one (a pod recreated under the same name is another pod).
    pub fn is(&self, live: &PodRef) -> bool {
        self.namespace == live.namespace
            && self.name == live.name
            && match (&self.uid, &live.uid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// A MAC address, written `aa:bb:cc:dd:ee:ff` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts
                .next()
                .ok_or_else(|| format!("MAC {s:?}: too few octets"))?;
            if p.len() != 2 {
                return Err(format!("MAC {s:?}: octet {p:?} is not two hex digits"));
            }
            *byte = u8::from_str_radix(p, 16).map_err(|e| format!("MAC {s:?}: {e}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("MAC {s:?}: too many octets"));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
