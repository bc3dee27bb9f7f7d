//! VXLAN devices: collect-metadata ("external", tunnel keys set per packet by BPF) or classic
//! (one VNI, local address), with destination port and MTU.

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::LinkVxlan;

use super::link::Link;
use super::{Netlink, NetlinkError};

/// The Linux VXLAN port weft uses by default (flannel's; the IANA port is 4789).
pub const DEFAULT_VXLAN_PORT: u16 = 8472;

/// How the device picks the tunnel for a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VxlanMode {
    /// `external`: no VNI or remote of its own; a tc/BPF program sets the tunnel key per packet
    /// (`bpf_skb_set_tunnel_key`). Learning is off, as iproute2 sets it with `external`.
    External,
    /// `id VNI [local IP] [dev IFINDEX]`: one VNI; remotes come from FDB entries.
    Classic {
        vni: u32,
        local: Option<Ipv4Addr>,
        /// The underlay device (ifindex).
        dev: Option<u32>,
        learning: bool,
    },
}

/// A VXLAN device to create, or as it was read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub name: String,
    pub mode: VxlanMode,
    /// UDP destination port (`dstport`).
    pub port: u16,
    /// `None` lets the kernel choose (1500 minus the overhead over the underlay device).
    pub mtu: Option<u32>,
}

impl Vxlan {
    /// `ip link add NAME type vxlan external dstport PORT`.
    pub fn external(name: &str, port: u16) -> Self {
        Self {
            name: name.to_owned(),
            mode: VxlanMode::External,
            port,
            mtu: None,
        }
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    fn message(&self) -> LinkMessage {
        let b = match &self.mode {
            VxlanMode::External => rtnetlink::LinkMessageBuilder::<LinkVxlan>::new(&self.name)
                .collect_metadata(true)
                .learning(false),
            VxlanMode::Classic {
                vni,
                local,
                dev,
                learning,
            } => {
                let mut b = LinkVxlan::new(&self.name, *vni).learning(*learning);
                if let Some(local) = local {
                    b = b.local(*local);
                }
                if let Some(dev) = dev {
                    b = b.dev(*dev);
                }
                b
            }
        };
        let b = b.port(self.port);
        match self.mtu {
            Some(m) => b.mtu(m).build(),
            None => b.build(),
        }
    }

    /// The VXLAN settings of a link message; `None` if it is not a VXLAN device.
    fn from_message(msg: &LinkMessage) -> Option<(Self, Link)> {
        let link = Link::from_message(msg);
        if link.kind.as_deref() != Some("vxlan") {
            return None;
        }
        let data = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(d)) => Some(d),
                _ => None,
            }),
            _ => None,
        })?;
        let (mut vni, mut local, mut dev, mut learning, mut external, mut port) =
            (0, None, None, false, false, 0);
        for d in data {
            match d {
                InfoVxlan::Id(v) => vni = *v,
                InfoVxlan::Local(ip) => local = Some(*ip),
                InfoVxlan::Link(i) => dev = Some(*i),
                InfoVxlan::Learning(l) => learning = *l,
                InfoVxlan::CollectMetadata(m) => external = *m,
                InfoVxlan::Port(p) => port = *p,
                _ => {}
            }
        }
        let mode = if external {
            VxlanMode::External
        } else {
            VxlanMode::Classic {
                vni,
                local,
                dev,
                learning,
            }
        };
        let vxlan = Vxlan {
            name: link.name.clone(),
            mode,
            port,
            mtu: Some(link.mtu),
        };
        Some((vxlan, link))
    }
}

impl Netlink {
    /// Create the VXLAN device `vxlan` (down). Fails with [`NetlinkError::is_exists`] if the
    /// name is taken: compare with [`Netlink::vxlan`] and delete first if it differs.
    pub async fn add_vxlan(&self, vxlan: &Vxlan) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .add(vxlan.message())
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnl(
                    format!("creating vxlan device {} in {}", vxlan.name, self.netns),
                    e,
                )
            })
    }

    /// The VXLAN device `name` (its settings, MTU read back) and its link, or `None` if there is
    /// no link of that name. A link of that name of another kind is an error.
    pub async fn vxlan(&self, name: &str) -> Result<Option<(Vxlan, Link)>, NetlinkError> {
        let Some(msg) = self.link_message(name).await? else {
            return Ok(None);
        };
        Vxlan::from_message(&msg)
            .map(Some)
            .ok_or_else(|| NetlinkError::Invalid {
                op: format!("reading vxlan device {name} in {}", self.netns),
                detail: format!(
                    "{name} is a {} device",
                    Link::from_message(&msg)
                        .kind
                        .as_deref()
                        .unwrap_or("non-vxlan")
                ),
            })
    }
}
