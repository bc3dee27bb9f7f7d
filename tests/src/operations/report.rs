//! The per-event report: for each operation (restart, kill, outage, scale) and each driver,
//! what succeeded, what failed and whose failure it was, and the longest stream stall.

use super::traffic::{Failure, Run};

/// Wall-clock milliseconds, the drivers' clock.
pub use crate::load::record::now_ms;

/// A span in which failures of some drivers are the workload's, not weft's (a backend that
/// stopped at SIGTERM before the proxy could take it out).
#[derive(Debug, Clone)]
pub struct Excuse {
    pub from_ms: u64,
    pub to_ms: u64,
    pub drivers: Vec<String>,
    pub why: String,
}

/// One operation and when it ran.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub excuses: Vec<Excuse>,
    /// What the test measured on the side (reaction times, counts).
    pub notes: Vec<String>,
}

impl Event {
    pub fn new(name: &str, from_ms: u64) -> Event {
        Event {
            name: name.to_string(),
            from_ms,
            to_ms: from_ms,
            excuses: vec![],
            notes: vec![],
        }
    }

    fn contains(&self, t: u64) -> bool {
        t >= self.from_ms && t < self.to_ms
    }
}

/// A failure with where it belongs.
#[derive(Debug, Clone)]
pub struct Attributed {
    pub driver: String,
    pub event: String,
    pub failure: Failure,
    /// `None`: weft's. `Some(why)`: the workload's.
    pub excused: Option<String>,
}

/// Assigns every failure of every run to the event during which it started ("between events"
/// otherwise) and to weft or, when an excuse (of any event, or one of `anytime`) covers its
/// start, to the workload or the cluster.
pub fn attribute(events: &[Event], runs: &[Run], anytime: &[Excuse]) -> Vec<Attributed> {
    let mut out = vec![];
    for run in runs {
        for f in &run.failures {
            let event = events.iter().find(|e| e.contains(f.start_ms));
            let covers = |x: &&Excuse| {
                x.drivers.contains(&run.name) && f.start_ms >= x.from_ms && f.start_ms < x.to_ms
            };
            // Any event's excuse: a request started just before an event can fail in it.
            let excused = events
                .iter()
                .flat_map(|e| e.excuses.iter())
                .chain(anytime)
                .find(covers)
                .map(|x| x.why.clone());
            out.push(Attributed {
                driver: run.name.clone(),
                event: event.map_or_else(|| "between events".to_string(), |e| e.name.clone()),
                failure: f.clone(),
                excused,
            });
        }
    }
    out
}

/// The report as a table: one row per event and driver.
pub fn render(events: &[Event], runs: &[Run], attributed: &[Attributed]) -> String {
    let mut rows = vec![];
    for e in events {
        for r in runs {
            let mine: Vec<&Attributed> = attributed
                .iter()
                .filter(|a| a.event == e.name && a.driver == r.name)
                .collect();
            let weft = mine.iter().filter(|a| a.excused.is_none()).count();
            let workload = mine.len() - weft;
            let is_stream = r.summary["stream"]["bytes"].as_u64().unwrap_or(0) > 0;
            rows.push(vec![
                e.name.clone(),
                format!("{:.1}", (e.to_ms - e.from_ms) as f64 / 1000.0),
                r.name.clone(),
                if is_stream {
                    "-".into()
                } else {
                    r.ok_between(e.from_ms, e.to_ms).to_string()
                },
                weft.to_string(),
                workload.to_string(),
                if is_stream {
                    r.longest_gap_between(e.from_ms, e.to_ms)
                        .map_or("< 200 ms".into(), |g| format!("{g} ms"))
                } else {
                    "-".into()
                },
            ]);
        }
    }
    let mut text = weft_lab::table::render(
        &[
            "EVENT",
            "SECONDS",
            "DRIVER",
            "OK",
            "FAILED (WEFT)",
            "FAILED (NOT WEFT)",
            "LONGEST STALL",
        ],
        &rows,
    );
    for e in events.iter().filter(|e| !e.notes.is_empty()) {
        text.push_str(&format!("{}: {}\n", e.name, e.notes.join("; ")));
    }
    for a in attributed {
        text.push_str(&format!(
            "failure [{}] {} at {} (+{} ms): {}{}\n",
            a.event,
            a.driver,
            a.failure.start_ms,
            a.failure.took_ms,
            a.failure.what,
            a.excused
                .as_ref()
                .map_or(String::new(), |w| format!(" -- not weft's: {w}"))
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::traffic::parse;

    #[test]
    fn failures_go_to_their_event_and_excuses_only_cover_their_drivers() {
        let http = parse(
            "http",
            &[
                "fail 1500 2 connect: Connection refused".to_string(),
                "fail 2500 2 connect: Connection refused".to_string(),
                "fail 9000 1000 no answer".to_string(),
                r#"summary {"per_100ms": {"15": [10, 1]}}"#.to_string(),
            ],
        );
        let dns = parse(
            "dns",
            &[
                "fail 1600 1200 answered after 1.2s".to_string(),
                r#"summary {}"#.to_string(),
            ],
        );
        let mut scale = Event::new("scale", 1000);
        scale.to_ms = 3000;
        scale.excuses.push(Excuse {
            from_ms: 1000,
            to_ms: 2000,
            drivers: vec!["http".into()],
            why: "stopped".into(),
        });
        let anytime = [Excuse {
            from_ms: 9000,
            to_ms: 9500,
            drivers: vec!["dns".into()],
            why: "no ready endpoint".into(),
        }];
        let got = attribute(&[scale], &[http.clone(), dns.clone()], &anytime);
        let summary: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|a| (a.driver.as_str(), a.event.as_str(), a.excused.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("http", "scale", true),
                ("http", "scale", false),
                ("http", "between events", false),
                ("dns", "scale", false),
            ]
        );
        let text = render(
            &[Event {
                name: "scale".into(),
                from_ms: 1000,
                to_ms: 3000,
                excuses: vec![],
                notes: vec![],
            }],
            &[http, dns],
            &got,
        );
        assert!(text.contains("scale  2.0      http    10  1"), "{text}");
    }
}
