//! Reflectors: one watch per resource kept in a local store, trimmed (no managed fields),
//! retried with a short backoff, with a change counter reconcilers wait on.
//!
//! The store swaps in a re-list atomically: kube's `Writer` buffers a re-list until its
//! `InitDone` and replaces the whole state at once, so a reconciler never sees a half-listed
//! cluster (and objects deleted while the watch was down vanish on the re-list).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::pod::Pod;
use crate::metrics::{Metrics, ResourceLabel};

/// Retry delays of a failed watch: 250 ms doubling to at most 4 s, back to the start once it
/// works again. kube's default goes up to 30 s, which after an API server outage left the
/// agent up to half a minute behind Node and Service changes once the server was back; a
/// node agent's handful of watches is cheap for the API server to take back sooner.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(250);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_BACKOFF_MIN,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_MIN;
    }
}

/// Which Services changed since a consumer last looked, and when the first change of each was
/// seen (to measure event-to-datapath latency). A re-list marks everything.
#[derive(Debug, Default)]
pub struct Dirty {
    inner: Mutex<DirtyInner>,
}

#[derive(Debug, Default)]
struct DirtyInner {
    keys: HashMap<(String, String), Instant>,
    all: Option<Instant>,
}

impl Dirty {
    fn mark(&self, key: (String, String)) {
        let mut d = self.inner.lock().expect("not poisoned");
        d.keys.entry(key).or_insert_with(Instant::now);
    }

    fn mark_all(&self) {
        let mut d = self.inner.lock().expect("not poisoned");
        d.all.get_or_insert_with(Instant::now);
    }

    /// Take what changed: `(everything changed since, changed keys with their first-seen time)`.
    pub fn take(&self) -> (Option<Instant>, HashMap<(String, String), Instant>) {
        let mut d = self.inner.lock().expect("not poisoned");
        (d.all.take(), std::mem::take(&mut d.keys))
    }
}

/// The `(namespace, name)` of the Service an object belongs to, for [`Dirty`].
type ServiceKey<K> = fn(&K) -> Option<(String, String)>;

fn service_of_service(s: &Service) -> Option<(String, String)> {
    Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?))
}

fn service_of_slice(s: &EndpointSlice) -> Option<(String, String)> {
    let svc = s.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?;
    Some((s.metadata.namespace.clone()?, svc.clone()))
}

/// One watched resource: its store and a counter bumped on every change after the first
/// listing (reconcilers `changed().await` on it).
pub struct Watched<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub store: Store<K>,
    pub changes: watch::Receiver<u64>,
}

impl<K: Resource + Clone + 'static> Watched<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    pub fn snapshot(&self) -> Vec<Arc<K>> {
        self.store.state()
    }
}

/// The agent's reflectors.
pub struct Reflectors {
    pub nodes: Watched<Node>,
    pub services: Watched<Service>,
    pub slices: Watched<EndpointSlice>,
    /// Every pod of the cluster, slim and trimmed ([`super::pod`]): NetworkPolicy selects peers
    /// anywhere; IPAM reads this node's.
    pub pods: Watched<Pod>,
    /// Namespaces (their labels), for namespaceSelectors.
    pub namespaces: Watched<Namespace>,
    pub policies: Watched<NetworkPolicy>,
    /// Services whose Service object or EndpointSlices changed.
    pub dirty_services: Arc<Dirty>,
    tasks: Vec<JoinHandle<()>>,
}

impl Reflectors {
    /// Start watching; returns at once (see [`Self::synced`]).
    pub fn start(client: kube::Client, metrics: Arc<Metrics>) -> Self {
        let mut tasks = Vec::new();
        let dirty = Arc::new(Dirty::default());
        let nodes = spawn(
            Api::all(client.clone()),
            watcher::Config::default(),
            "nodes",
            &metrics,
            None,
            no_trim,
            &mut tasks,
        );
        let services = spawn(
            Api::all(client.clone()),
            watcher::Config::default(),
            "services",
            &metrics,
            Some((dirty.clone(), service_of_service as ServiceKey<Service>)),
            no_trim,
            &mut tasks,
        );
        let slices = spawn(
            Api::all(client.clone()),
            watcher::Config::default(),
            "endpointslices",
            &metrics,
            Some((dirty.clone(), service_of_slice as ServiceKey<EndpointSlice>)),
            no_trim,
            &mut tasks,
        );
        let pods = spawn(
            Api::all(client.clone()),
            watcher::Config::default(),
            "pods",
            &metrics,
            None,
            super::pod::trim,
            &mut tasks,
        );
        let namespaces = spawn(
            Api::all(client.clone()),
            watcher::Config::default(),
            "namespaces",
            &metrics,
            None,
            |ns: &mut Namespace| {
                ns.metadata.annotations = None;
                ns.spec = None;
                ns.status = None;
            },
            &mut tasks,
        );
        let policies = spawn(
            Api::all(client),
            watcher::Config::default(),
            "networkpolicies",
            &metrics,
            None,
            // kubectl's last-applied copy of the whole object is the bulk of most policies.
            |np: &mut NetworkPolicy| np.metadata.annotations = None,
            &mut tasks,
        );
        Self {
            nodes,
            services,
            slices,
            pods,
            namespaces,
            policies,
            dirty_services: dirty,
            tasks,
        }
    }

    /// Wait until every resource has been listed once.
    pub async fn synced(&self) {
        // `wait_until_ready` only fails if the writer is gone, i.e. the task ended: then
        // nothing will ever be ready and the agent's own supervision reports it.
        let _ = tokio::join!(
            self.nodes.store.wait_until_ready(),
            self.services.store.wait_until_ready(),
            self.slices.store.wait_until_ready(),
            self.pods.store.wait_until_ready(),
            self.namespaces.store.wait_until_ready(),
            self.policies.store.wait_until_ready(),
        );
    }
}

impl Drop for Reflectors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn no_trim<K>(_: &mut K) {}

fn spawn<K>(
    api: Api<K>,
    config: watcher::Config,
    resource: &'static str,
    metrics: &Arc<Metrics>,
    dirty: Option<(Arc<Dirty>, ServiceKey<K>)>,
    trim: fn(&mut K),
    tasks: &mut Vec<JoinHandle<()>>,
) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let (tx, changes) = watch::channel(0u64);
    let label = ResourceLabel { resource };
    let metrics = metrics.clone();
    let stream = watcher(api, config)
        .backoff(WatchBackoff::default())
        .modify(move |o: &mut K| {
            o.meta_mut().managed_fields = None;
            trim(o);
        })
        .reflect(writer);
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    metrics.watch_events.get_or_create(&label).inc();
                    match &event {
                        watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                        watcher::Event::InitDone => {
                            if let Some((d, _)) = &dirty {
                                d.mark_all();
                            }
                        }
                        watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                            if let Some((d, key)) = &dirty {
                                if let Some(k) = key(o) {
                                    d.mark(k);
                                }
                            }
                        }
                    }
                    debug!(resource, "changed");
                    tx.send_modify(|g| *g += 1);
                }
                Err(e) => {
                    metrics.watch_errors.get_or_create(&label).inc();
                    warn!(resource, error = %e, "watch failed; retrying with backoff");
                }
            }
        }
    }));
    Watched { store, changes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn watch_backoff_doubles_to_four_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let got: Vec<u64> = (0..7).map(|_| b.next().unwrap().as_millis() as u64).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
