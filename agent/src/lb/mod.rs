//! Pure Service translation: Kubernetes Service + EndpointSlices -> the frontends, backends
//! and flags the datapath should hold ([`Service`]). No I/O and no BPF: the datapath
//! reconciler (`datapath::lb`) turns this into map entries.

mod model;
mod render;
mod translate;

#[cfg(test)]
mod tests;

pub use model::{
    Backend, BackendState, Frontend, FrontendKind, FrontendSpec, Protocol, Scope, Service,
    ServiceName, Skipped,
};
pub use render::render;
pub use translate::{translate, NodeContext, DEFAULT_AFFINITY_TIMEOUT_S, SERVICE_NAME_LABEL};
