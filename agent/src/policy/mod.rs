//! Pure NetworkPolicy translation: pods, namespaces and NetworkPolicies -> numeric identities,
//! an address -> identity table and, per selected endpoint and direction, the allowed
//! {peer identity, protocol, port block} keys with the rules that allow them. No I/O and no
//! BPF; `weft policy trace` answers from the same state with the datapath's lookups.

mod identity;
mod model;
mod objects;
mod ports;
mod render;
mod select;
mod trace;
mod translate;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;

pub use identity::{Identities, LabelSet, ANY, FIRST_LABEL, FIRST_PREFIX, HOST, WORLD};
pub use model::{
    Direction, DirectionPolicy, EndpointPolicy, IpIdentity, PolicyState, PortMatch, RuleKey,
    RuleRef,
};
pub use objects::{namespace_labels, ObjectName, PodInfo, Policy, Proto};
pub use ports::{blocks as port_blocks, PortBlock};
pub use render::{peer as render_peer, render};
pub use select::{Labels, Selector, SelectorError};
pub use trace::{trace, Trace, Verdict};
pub use translate::{translate, Inputs};
