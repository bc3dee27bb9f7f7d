//! The periodic sweep of expired conntrack (`CT4`) entries, on the datapath's owner thread.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use super::server::AgentHandle;
use crate::metrics::Metrics;

/// How often expired entries are swept. The shortest lifetime is 10 s (a closed TCP flow), the
/// usual one for UDP 60 s; an entry outlives its lifetime by at most this much.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// Sweep every [`INTERVAL`] until the agent's owner thread goes away.
pub async fn run(agent: AgentHandle, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match agent.run(|a| a.conntrack_gc()).await {
            Ok(Ok(removed)) => {
                metrics.conntrack_gc_removed.inc_by(removed as u64);
                if removed > 0 {
                    debug!(removed, "swept expired conntrack entries");
                }
            }
            Ok(Err(e)) => warn!(error = %e, "sweeping expired conntrack entries (retried next round)"),
            // The owner thread is gone: the agent is stopping.
            Err(_) => return,
        }
    }
}
