//! The periodic sweep of expired conntrack (`CT4`) entries, beside the owner thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use crate::datapath::conntrack_sweep_pinned;
use crate::metrics::Metrics;

/// How often expired entries are swept. The shortest lifetime is 10 s (a closed TCP flow), the
/// usual one for UDP 60 s; an entry outlives its lifetime by at most this much.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// Sweep the `CT4` pinned under `pin_dir` every [`INTERVAL`], on a blocking thread of its own
/// (not the owner thread: its queue serves CNI requests), for as long as the agent runs.
pub async fn run(pin_dir: PathBuf, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dir = pin_dir.clone();
        match tokio::task::spawn_blocking(move || conntrack_sweep_pinned(&dir)).await {
            Ok(Ok(removed)) => {
                metrics.conntrack_gc_removed.inc_by(removed as u64);
                if removed > 0 {
                    debug!(removed, "swept expired conntrack entries");
                }
            }
            Ok(Err(e)) => warn!(error = %e, "sweeping expired conntrack entries (retried next round)"),
            Err(e) => warn!(error = %e, "the conntrack sweep panicked (retried next round)"),
        }
    }
}
