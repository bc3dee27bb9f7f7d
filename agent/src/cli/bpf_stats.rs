//! `weft bpf-stats`: what each eBPF program costs per run, measured over a window of live
//! traffic (the kernel counts run time only while statistics are on; the agent switches them on
//! for the window and off again unless they were on already).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{ask, table, Output};
use crate::api::{ProgStatRow, Request, Response};

/// One program over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub program: String,
    pub runs: u64,
    pub run_ns: u64,
    /// `run_ns / runs`, when it ran.
    pub ns_per_run: Option<f64>,
}

fn call(socket: &Path, enable: Option<bool>) -> anyhow::Result<(bool, Vec<ProgStatRow>)> {
    match ask(socket, Request::ProgStats { enable }, "its programs' statistics")? {
        Response::ProgStats { enabled, programs } => Ok((enabled, programs)),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    }
}

/// The difference of two readings, per program (by kernel id: a program reloaded between
/// them, by an agent restart, starts again from zero).
pub fn window(before: &[ProgStatRow], after: &[ProgStatRow]) -> Vec<Window> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.id == a.id);
            let runs = a.runs - b.map_or(0, |b| b.runs.min(a.runs));
            let run_ns = a.run_ns - b.map_or(0, |b| b.run_ns.min(a.run_ns));
            Window {
                program: a.program.clone(),
                runs,
                run_ns,
                ns_per_run: (runs > 0).then(|| run_ns as f64 / runs as f64),
            }
        })
        .collect()
}

pub fn run(socket: &Path, seconds: f64, output: Output) -> anyhow::Result<()> {
    let (was_on, _) = call(socket, None)?;
    let (_, before) = call(socket, Some(true))?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (_, after) = call(socket, if was_on { None } else { Some(false) })?;
    let rows = window(&before, &after);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => print!("{}", render(&rows, seconds)),
    }
    Ok(())
}

fn render(rows: &[Window], seconds: f64) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|w| {
            vec![
                w.program.clone(),
                w.runs.to_string(),
                format!("{:.0}", w.runs as f64 / seconds),
                w.ns_per_run.map_or("-".into(), |n| format!("{n:.0}")),
                format!("{:.2}", w.run_ns as f64 / 1e6),
            ]
        })
        .collect();
    format!(
        "eBPF programs over {seconds} s of live traffic (kernel run-time statistics)\n{}",
        table(&["PROGRAM", "RUNS", "RUNS/s", "ns/RUN", "TOTAL ms"], &cells)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u32, runs: u64, run_ns: u64) -> ProgStatRow {
        ProgStatRow { program: format!("p{id}"), id, runs, run_ns }
    }

    #[test]
    fn the_window_is_the_difference_per_program() {
        let w = window(&[row(1, 10, 1_000), row(2, 5, 500)], &[row(1, 110, 21_000), row(2, 5, 500)]);
        assert_eq!(w[0].runs, 100);
        assert_eq!(w[0].ns_per_run, Some(200.0));
        assert_eq!(w[1].runs, 0);
        assert_eq!(w[1].ns_per_run, None);
    }

    #[test]
    fn a_program_loaded_during_the_window_counts_from_zero() {
        let w = window(&[row(1, 10, 1_000)], &[row(7, 40, 4_000)]);
        assert_eq!((w[0].runs, w[0].run_ns), (40, 4_000));
    }

    #[test]
    fn the_table_shows_cost_per_run() {
        let out = render(&window(&[], &[row(1, 1000, 250_000), row(2, 0, 0)]), 2.0);
        assert!(out.contains("PROGRAM"), "{out}");
        let line = out.lines().find(|l| l.starts_with("p1")).unwrap();
        assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["p1", "1000", "500", "250", "0.25"]);
        assert!(out.lines().any(|l| l.starts_with("p2") && l.contains(" - ")), "{out}");
    }
}
