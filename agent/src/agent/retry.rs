//! The retry policy of the routing and NetworkPolicy loops: after a failed pass wait 0.5 s,
//! doubling to at most 30 s; a pass that works starts over. (The Services loop retries every
//! second: a failed Service write refuses that Service's clients until the next pass.)

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// A pass failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(MAX);
        d
    }

    /// A pass worked.
    pub fn succeeded(&mut self) {
        self.next = FIRST;
    }

    /// Wait out a failed pass.
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.failed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_thirty_seconds_and_starts_over_after_success() {
        let mut b = Backoff::default();
        let got: Vec<u64> = (0..8).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(500));
    }
}
