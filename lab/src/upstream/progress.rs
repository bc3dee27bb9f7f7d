//! Progress lines on stderr: one per step with the elapsed time, and a slow heartbeat while
//! `go build` runs (a line every 30 s when stderr is not a terminal, so CI logs stay short).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a long `go` command reports its package count when stderr is a log, not a TTY.
const LOG_HEARTBEAT: Duration = Duration::from_secs(30);

pub struct Progress {
    start: Instant,
    total: usize,
    current: usize,
    label: String,
    tty: bool,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Progress {
            start: Instant::now(),
            total,
            current: 0,
            label: String::new(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Starts the next component: `[2/5] kubernetes v1.36.3`.
    pub fn component(&mut self, name: &str, version: &str) {
        self.current += 1;
        self.label = format!("[{}/{}] {name} {version}", self.current, self.total);
    }

    /// One line for one step of the current component.
    pub fn step(&self, what: &str) {
        eprintln!(
            "{}: {what} (at {})",
            self.label,
            fmt_duration(self.elapsed())
        );
    }

    /// A heartbeat for a running `go` command; call it often, it rate-limits itself.
    pub fn ticker(&self) -> Ticker<'_> {
        Ticker {
            progress: self,
            started: Instant::now(),
            last: Instant::now(),
            printed_tty: false,
        }
    }
}

pub struct Ticker<'a> {
    progress: &'a Progress,
    started: Instant,
    last: Instant,
    printed_tty: bool,
}

impl Ticker<'_> {
    /// `packages` compiled so far, out of `total` if known.
    pub fn tick(&mut self, packages: usize, total: Option<usize>) {
        let every = if self.progress.tty {
            Duration::from_secs(1)
        } else {
            LOG_HEARTBEAT
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let line = heartbeat_line(packages, total, self.started.elapsed());
        if self.progress.tty {
            eprint!("\r\x1b[2K      {line}");
            let _ = std::io::stderr().flush();
            self.printed_tty = true;
        } else {
            eprintln!("      {line}");
        }
    }

    pub fn finish(self, packages: usize) {
        if self.printed_tty {
            eprint!("\r\x1b[2K");
        }
        if packages > 0 {
            eprintln!(
                "      {packages} packages compiled in {}",
                fmt_duration(self.started.elapsed())
            );
        }
    }
}

fn heartbeat_line(packages: usize, total: Option<usize>, elapsed: Duration) -> String {
    match total {
        Some(t) => format!(
            "{packages} of at most {t} packages compiled, {}",
            fmt_duration(elapsed)
        ),
        None => format!("{packages} packages compiled, {}", fmt_duration(elapsed)),
    }
}

/// `83s` → `1m23s`; under a minute `9.4s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(fmt_duration(Duration::from_millis(9_400)), "9.4s");
        assert_eq!(fmt_duration(Duration::from_secs(83)), "1m23s");
        assert_eq!(fmt_duration(Duration::from_secs(25 * 60 + 3)), "25m03s");
    }

    #[test]
    fn heartbeat_shows_the_upper_bound_when_known() {
        assert_eq!(
            heartbeat_line(812, Some(2645), Duration::from_secs(200)),
            "812 of at most 2645 packages compiled, 3m20s"
        );
        assert_eq!(
            heartbeat_line(3, None, Duration::from_secs(2)),
            "3 packages compiled, 2.0s"
        );
    }
}
