//! Results of a conformance run: ginkgo's JSON report read back, the per-test table, the
//! summary file, and the progress lines made from the events the e2e binary appends while it
//! runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::select::Selected;

/// The parts of ginkgo's JSON report (a list of suite reports) a summary needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SuiteReport {
    #[serde(default)]
    pub spec_reports: Option<Vec<SpecReport>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpecReport {
    /// `null` for suite-level nodes.
    #[serde(default)]
    pub container_hierarchy_texts: Option<Vec<String>>,
    #[serde(default)]
    pub leaf_node_text: String,
    #[serde(default)]
    pub leaf_node_type: String,
    pub state: String,
    /// Nanoseconds.
    #[serde(default)]
    pub run_time: i64,
    #[serde(default)]
    pub failure: Option<Failure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Failure {
    #[serde(default)]
    pub message: String,
}

impl SpecReport {
    /// The spec's full text as ginkgo matches `--focus` against it.
    pub fn full_text(&self) -> String {
        let mut parts: Vec<&str> = self.container_hierarchy_texts.iter().flatten().map(String::as_str).collect();
        parts.push(&self.leaf_node_text);
        parts.retain(|p| !p.is_empty());
        parts.join(" ")
    }
}

/// Parses ginkgo's `--json-report` file.
pub fn parse(json: &str) -> Result<Vec<SuiteReport>, serde_json::Error> {
    serde_json::from_str(json)
}

/// A test's result in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Failed,
    Passed,
    Skipped,
    /// Selected but never reported (the run was interrupted or timed out before it).
    NotRun,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "pass",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
            Outcome::NotRun => "not-run",
        }
    }
}

/// One row of the result table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// Why it was skipped, or the first line of the failure.
    pub detail: String,
}

/// The result of every selected test: from the run's report, or skipped by default.
pub fn results(selected: &[Selected], suites: &[SuiteReport]) -> Vec<TestResult> {
    let mut by_name: BTreeMap<String, &SpecReport> = BTreeMap::new();
    for s in suites.iter().flat_map(|s| s.spec_reports.iter().flatten()).filter(|s| s.leaf_node_type == "It") {
        by_name.insert(s.full_text(), s);
    }
    selected
        .iter()
        .map(|sel| {
            if let Some(reason) = &sel.skip_reason {
                return TestResult { name: sel.name.clone(), outcome: Outcome::Skipped, seconds: 0.0, detail: reason.clone() };
            }
            let Some(r) = by_name.get(&sel.name) else {
                return TestResult { name: sel.name.clone(), outcome: Outcome::NotRun, seconds: 0.0, detail: String::new() };
            };
            let msg = r.failure.as_ref().map(|f| f.message.lines().next().unwrap_or_default().to_string());
            let outcome = match r.state.as_str() {
                "passed" => Outcome::Passed,
                "skipped" | "pending" => Outcome::Skipped,
                _ => Outcome::Failed,
            };
            let detail = match outcome {
                Outcome::Passed => String::new(),
                Outcome::Failed => format!("{}: {}", r.state, msg.unwrap_or_default()),
                _ => msg.unwrap_or_default(),
            };
            TestResult { name: sel.name.clone(), outcome, seconds: r.run_time as f64 / 1e9, detail }
        })
        .collect()
}

/// Counts per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub selected: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_run: usize,
}

pub fn counts(results: &[TestResult]) -> Counts {
    let n = |o| results.iter().filter(|r| r.outcome == o).count();
    Counts {
        selected: results.len(),
        passed: n(Outcome::Passed),
        failed: n(Outcome::Failed),
        skipped: n(Outcome::Skipped),
        not_run: n(Outcome::NotRun),
    }
}

/// The summary file (`summary.json`) and `-o json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub date: String,
    pub kubernetes: String,
    pub lab: String,
    pub label_filter: String,
    pub focus: Option<String>,
    pub skip: Option<String>,
    pub procs: usize,
    pub seconds: f64,
    pub counts: Counts,
    pub report_dir: String,
    pub tests: Vec<TestResult>,
}

/// The table: failures first, then by name; and a closing count line.
pub fn table(results: &[TestResult], elapsed: Duration) -> String {
    let mut sorted: Vec<&TestResult> = results.iter().collect();
    sorted.sort_by(|a, b| (a.outcome, &a.name).cmp(&(b.outcome, &b.name)));
    let mut rows: Vec<Vec<String>> = vec![];
    for r in sorted {
        rows.push(vec![r.outcome.word().to_string(), format!("{:.1}s", r.seconds), r.name.clone()]);
        if !r.detail.is_empty() {
            rows.push(vec![String::new(), String::new(), format!("└ {}", r.detail)]);
        }
    }
    let mut out = crate::table::render(&["RESULT", "TIME", "TEST"], &rows);
    let c = counts(results);
    out.push_str(&format!(
        "\n{} tests: {} passed, {} failed, {} skipped{} in {}\n",
        c.selected,
        c.passed,
        c.failed,
        c.skipped,
        if c.not_run > 0 { format!(", {} not run", c.not_run) } else { String::new() },
        fmt_duration(elapsed)
    ));
    out
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One line the e2e binary appended to the progress file.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub total: usize,
}

/// Turns progress events into lines for the user, keeping the running count.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub running: std::collections::BTreeSet<String>,
}

impl Progress {
    /// The line to print for one event, if any.
    pub fn line(&mut self, e: &Event) -> Option<String> {
        match e.event.as_str() {
            // ginkgo counts before its --skip; a total known from the selection wins.
            "suite" => {
                if self.total == 0 {
                    self.total = e.total;
                }
                Some(format!("running {} tests", self.total))
            }
            "start" => {
                self.running.insert(e.name.clone());
                None
            }
            "end" => {
                self.running.remove(&e.name);
                // Specs the filters left out are reported too, as skipped in no time.
                if e.state == "skipped" && e.seconds == 0.0 {
                    return None;
                }
                self.done += 1;
                let word = match e.state.as_str() {
                    "passed" => "pass",
                    "skipped" => "skip",
                    _ => {
                        self.failed += 1;
                        "FAIL"
                    }
                };
                let width = self.total.to_string().len();
                Some(format!("[{:>width$}/{}] {word:<4} {:>6.1}s  {}", self.done, self.total, e.seconds, e.name))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"[{"SuiteDescription":"Kubernetes e2e suite","SpecReports":[
        {"ContainerHierarchyTexts":null,"LeafNodeType":"SynchronizedBeforeSuite","LeafNodeText":"","State":"passed","RunTime":1000},
        {"ContainerHierarchyTexts":["[sig-network] Services"],"LeafNodeType":"It","LeafNodeText":"should serve a basic endpoint from pods  [Conformance]","State":"passed","RunTime":12500000000},
        {"ContainerHierarchyTexts":["[sig-network] DNS"],"LeafNodeType":"It","LeafNodeText":"should provide DNS for services  [Conformance]","State":"failed","RunTime":300000000000,
         "Failure":{"Message":"timed out waiting for the condition\nmore","Location":{"FileName":"dns.go"}}},
        {"ContainerHierarchyTexts":["[sig-network] Other"],"LeafNodeType":"It","LeafNodeText":"not selected","State":"skipped","RunTime":0}
    ]}]"#;

    fn sel(name: &str, skip: Option<&str>) -> Selected {
        Selected { name: name.into(), skip_reason: skip.map(String::from) }
    }

    #[test]
    fn results_follow_the_selection_and_the_report() {
        let suites = parse(REPORT).unwrap();
        let selected = vec![
            sel("[sig-network] Services should serve a basic endpoint from pods  [Conformance]", None),
            sel("[sig-network] DNS should provide DNS for services  [Conformance]", None),
            sel("[sig-network] HostPort validates", Some("no portmap")),
            sel("[sig-network] never reached", None),
        ];
        let r = results(&selected, &suites);
        assert_eq!(r[0].outcome, Outcome::Passed);
        assert_eq!(r[0].seconds, 12.5);
        assert_eq!(r[1].outcome, Outcome::Failed);
        assert_eq!(r[1].detail, "failed: timed out waiting for the condition");
        assert_eq!((r[2].outcome, r[2].detail.as_str()), (Outcome::Skipped, "no portmap"));
        assert_eq!(r[3].outcome, Outcome::NotRun);
        let c = counts(&r);
        assert_eq!((c.selected, c.passed, c.failed, c.skipped, c.not_run), (4, 1, 1, 1, 1));
        let t = table(&r, Duration::from_secs(125));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("RESULT"), "{t}");
        assert!(lines[1].starts_with("FAIL "), "failures first: {t}");
        assert!(t.ends_with("4 tests: 1 passed, 1 failed, 1 skipped, 1 not run in 2m05s\n"), "{t}");
    }

    #[test]
    fn progress_lines_count_finished_tests_only() {
        let mut with_total = Progress { total: 46, ..Default::default() };
        assert_eq!(with_total.line(&serde_json::from_str(r#"{"event":"suite","total":47}"#).unwrap()).unwrap(), "running 46 tests");
        let mut p = Progress::default();
        let ev = |s: &str| serde_json::from_str::<Event>(s).unwrap();
        assert_eq!(p.line(&ev(r#"{"event":"suite","total":47}"#)).unwrap(), "running 47 tests");
        assert_eq!(p.line(&ev(r#"{"event":"start","name":"a","process":2}"#)), None);
        assert_eq!(p.running.len(), 1);
        assert_eq!(p.line(&ev(r#"{"event":"end","name":"x","state":"skipped","seconds":0}"#)), None);
        let l = p.line(&ev(r#"{"event":"end","name":"a","state":"failed","seconds":3.25}"#)).unwrap();
        assert_eq!(l, "[ 1/47] FAIL    3.2s  a");
        assert_eq!((p.done, p.failed, p.running.len()), (1, 1, 0));
    }
}
