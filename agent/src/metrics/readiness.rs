//! What `/readyz` waits for: each start-up stage the agent must pass before it may carry pods.

use std::sync::atomic::{AtomicU32, Ordering};

/// A start-up stage; ready when all the stages this agent needs are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// Programs loaded, maps pinned, settings written, endpoints resumed.
    Datapath = 1,
    /// Every watched resource listed once.
    Synced = 2,
    /// Routes to every other node programmed.
    Routes = 4,
    /// CNI binary and configuration installed.
    Cni = 8,
    /// The unix socket serves the CNI plugin.
    Socket = 16,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Datapath, Stage::Synced, Stage::Routes, Stage::Cni, Stage::Socket];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Datapath => "datapath",
            Stage::Synced => "k8s-synced",
            Stage::Routes => "routes",
            Stage::Cni => "cni-installed",
            Stage::Socket => "socket",
        }
    }
}

/// Stages done so far, against the stages required.
#[derive(Debug)]
pub struct Readiness {
    required: u32,
    done: AtomicU32,
}

impl Readiness {
    pub fn new(required: &[Stage]) -> Self {
        Self {
            required: required.iter().fold(0, |a, s| a | *s as u32),
            done: AtomicU32::new(0),
        }
    }

    pub fn done(&self, stage: Stage) {
        self.done.fetch_or(stage as u32, Ordering::SeqCst);
    }

    /// The required stages not done yet (empty = ready).
    pub fn pending(&self) -> Vec<Stage> {
        let done = self.done.load(Ordering::SeqCst);
        Stage::ALL
            .into_iter()
            .filter(|s| self.required & *s as u32 != 0 && done & *s as u32 == 0)
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        self.pending().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_required_stage_is_done() {
        let r = Readiness::new(&[Stage::Datapath, Stage::Socket]);
        assert_eq!(r.pending(), vec![Stage::Datapath, Stage::Socket]);
        r.done(Stage::Socket);
        r.done(Stage::Routes); // not required: changes nothing
        assert!(!r.is_ready());
        r.done(Stage::Datapath);
        assert!(r.is_ready());
    }
}
