//! `weft-lab conformance`: Kubernetes' own e2e network tests (by default the 47
//! `Conformance && sig-network` ones) against the running lab, as Cilium's and Calico's
//! kube-proxy-replacement CI lanes run them: the e2e binary built from the pinned module,
//! run by ginkgo in parallel from the control-plane namespace with the lab's kubectl and admin
//! kubeconfig, progress while it runs, a result table, JUnit and a summary at the end.

pub mod report;
pub mod select;

use std::io::{BufRead as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::spec::{CLUSTER_DOMAIN, CP_NS};
use crate::state::{LabRecord, StateDir};
use crate::upstream::{self, ConformanceBins, Versions};
use select::{LabFacts, Selected};

/// `weft-lab conformance` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Which upstream suite: the 47 network conformance tests, or the NetworkPolicy suite
    /// (`Netpol` and `Netpol API`, the specs Cilium's and Calico's policy lanes run).
    #[arg(long, value_enum, default_value_t = select::Suite::Conformance)]
    pub suite: select::Suite,
    /// Ginkgo label filter that selects the tests (default: the suite's).
    #[arg(long)]
    pub label_filter: Option<String>,
    /// Only tests whose full name matches this regular expression (ginkgo `--focus`, instead
    /// of the suite's); a test the lab skips by default runs when focused on.
    #[arg(long)]
    pub focus: Option<String>,
    /// Leave out tests whose full name matches this regular expression (ginkgo `--skip`).
    #[arg(long)]
    pub skip: Option<String>,
    /// Parallel test processes (ginkgo `--procs`); 1 runs them one after another.
    #[arg(long, default_value_t = 4)]
    pub procs: usize,
    /// Where JUnit, ginkgo's JSON report, the summary and the logs go
    /// (default: `./conformance-report/<date>-<cni>-<proxy>`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Only list the selected tests (and why any is skipped); run nothing.
    #[arg(long)]
    pub list: bool,
    /// `table` or `json` (the summary, on stdout; progress always goes to stderr).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

impl Args {
    /// The label filter in force: the user's, else the suite's.
    pub fn label_filter(&self) -> &str {
        self.label_filter.as_deref().unwrap_or(self.suite.label_filter())
    }

    /// The focus in force: the user's, else the suite's.
    pub fn focus(&self) -> Option<&str> {
        self.focus.as_deref().or(self.suite.focus())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Every node's CNI configuration chains portmap (what hostPort needs).
fn lab_facts(state: &StateDir, rec: &LabRecord) -> LabFacts {
    let chains_portmap = |node: &str| {
        let dir = crate::nodes::cni_conf_dir(state, node);
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["plugins"].as_array().cloned())
                .is_some_and(|ps| ps.iter().any(|p| p["type"] == "portmap"))
        })
    };
    LabFacts {
        portmap_chained: rec.spec.node_plans().iter().all(|n| chains_portmap(&n.name)),
        // The kernel lists SCTP associations here when it has SCTP (built in or loaded).
        sctp: Path::new("/proc/net/sctp").exists(),
    }
}

/// The flags of the e2e binary itself (after ginkgo's `--`).
fn e2e_flags(state: &StateDir, rec: &LabRecord, report_dir: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", state.kubeconfig("admin").display()),
        "--provider=local".into(),
        format!("--kubectl-path={}", rec.bins.kubectl.display()),
        format!("--report-dir={}", report_dir.display()),
        format!("--e2e-output-dir={}", report_dir.join("e2e-output").display()),
        format!("--dns-domain={CLUSTER_DOMAIN}"),
        "--disable-log-dump=true".into(),
        "--dump-logs-on-failure=true".into(),
    ]
}

/// The names of the tests the filters select, from a dry run of the e2e binary.
fn dry_run(bins: &ConformanceBins, args: &Args, e2e: &[String], report_dir: &Path) -> anyhow::Result<Vec<String>> {
    let json = report_dir.join("dry-run.json");
    let mut cmd = crate::sh::in_netns(CP_NS, &bins.e2e_test);
    cmd.arg("--ginkgo.dry-run")
        .arg(format!("--ginkgo.label-filter={}", args.label_filter()))
        .arg(format!("--ginkgo.json-report={}", json.display()))
        .args(args.focus().map(|f| format!("--ginkgo.focus={f}")))
        .args(args.skip.iter().map(|s| format!("--ginkgo.skip={s}")))
        .args(e2e);
    crate::sh::run(&mut cmd).context("listing the selected tests (e2e.test --ginkgo.dry-run)")?;
    let suites = report::parse(&std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?)?;
    let mut names: Vec<String> = suites
        .iter()
        .flat_map(|s| s.spec_reports.iter().flatten())
        .filter(|s| s.leaf_node_type == "It" && s.state == "passed")
        .map(|s| s.full_text())
        .collect();
    names.sort();
    Ok(names)
}

fn default_report_dir(rec: &LabRecord) -> PathBuf {
    let stamp = crate::upstream::utc_now().replace([':', '-'], "");
    let cni = format!("{:?}", rec.spec.cni).to_lowercase();
    let proxy = format!("{:?}", rec.spec.proxy).to_lowercase();
    let netpol = match rec.spec.netpol {
        crate::spec::Netpol::None => String::new(),
        other => format!("-{}", other.as_str()),
    };
    PathBuf::from("conformance-report").join(format!("{stamp}-{cni}-{proxy}{netpol}"))
}

/// Runs the command; the exit status says whether every selected test passed.
pub fn run(state: &StateDir, args: &Args) -> anyhow::Result<bool> {
    crate::preflight::require_root()?;
    let rec = state.load_record()?;
    eprintln!("==> e2e test binary and ginkgo");
    let bins = upstream::ensure_conformance_built().context("building the e2e test binary")?;
    let report_dir = args.report_dir.clone().unwrap_or_else(|| default_report_dir(&rec));
    std::fs::create_dir_all(&report_dir).with_context(|| format!("creating {}", report_dir.display()))?;
    let report_dir = std::fs::canonicalize(&report_dir)?;
    let e2e = e2e_flags(state, &rec, &report_dir);

    let names = dry_run(&bins, args, &e2e, &report_dir)?;
    let facts = lab_facts(state, &rec);
    let selected = select::apply(&names, &select::default_skips(facts), args.focus.as_deref());
    let skipped: Vec<&Selected> = selected.iter().filter(|s| s.skip_reason.is_some()).collect();
    eprintln!(
        "==> {} tests selected ({}{}{}), {} skipped by default",
        selected.len(),
        args.label_filter(),
        args.focus().map(|f| format!(", focus {f:?}")).unwrap_or_default(),
        args.skip.as_ref().map(|s| format!(", skip {s:?}")).unwrap_or_default(),
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  skip: {}\n        {}", s.name, s.skip_reason.as_deref().unwrap_or_default());
    }
    if args.list {
        let rows: Vec<Vec<String>> = selected
            .iter()
            .map(|s| vec![if s.skip_reason.is_some() { "skip" } else { "run" }.to_string(), s.name.clone()])
            .collect();
        print!("{}", crate::table::render(&["PLAN", "TEST"], &rows));
        return Ok(true);
    }
    if selected.iter().all(|s| s.skip_reason.is_some()) {
        anyhow::bail!("no test to run: the selection is empty or every selected test is skipped");
    }

    let skip_names: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
    let progress_file = report_dir.join("progress.jsonl");
    let _ = std::fs::remove_file(&progress_file);
    let log_path = report_dir.join("ginkgo.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = crate::sh::in_netns(CP_NS, &bins.ginkgo);
    cmd.arg(format!("--procs={}", args.procs.max(1)))
        .arg(format!("--label-filter={}", args.label_filter()))
        .args(args.focus().map(|f| format!("--focus={f}")))
        .args(args.skip.iter().map(|s| format!("--skip={s}")))
        .args(select::skip_regex(&skip_names).map(|s| format!("--skip={s}")))
        .arg(format!("--output-dir={}", report_dir.display()))
        .args(["--json-report=report.json", "--junit-report=junit.xml", "--timeout=2h", "--no-color"])
        .arg(&bins.e2e_test)
        .arg("--")
        .args(&e2e)
        .env("WEFT_E2E_PROGRESS", &progress_file)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!(
        "==> running with {} parallel processes from {CP_NS} (log {})",
        args.procs.max(1),
        log_path.display()
    );
    let started = Instant::now();
    let to_run = selected.len() - skipped.len();
    let status = follow(&mut cmd, &progress_file, to_run)?;

    let json = report_dir.join("report.json");
    let suites = match std::fs::read_to_string(&json) {
        Ok(t) => report::parse(&t).with_context(|| format!("parsing {}", json.display()))?,
        Err(e) => {
            eprintln!("  no ginkgo report ({e}); see {}", log_path.display());
            vec![]
        }
    };
    let results = report::results(&selected, &suites);
    let counts = report::counts(&results);
    let summary = report::Summary {
        date: crate::upstream::utc_now(),
        kubernetes: Versions::PINNED.kubernetes.to_string(),
        lab: format!(
            "{} nodes, --cni {:?}, --proxy {:?}, --netpol {}",
            rec.spec.nodes,
            rec.spec.cni,
            rec.spec.proxy,
            rec.spec.netpol.as_str()
        )
        .to_lowercase(),
        label_filter: args.label_filter().to_string(),
        focus: args.focus().map(str::to_string),
        skip: args.skip.clone(),
        procs: args.procs.max(1),
        seconds: started.elapsed().as_secs_f64(),
        counts: counts.clone(),
        report_dir: report_dir.display().to_string(),
        tests: results.clone(),
    };
    let text = serde_json::to_string_pretty(&summary)? + "\n";
    std::fs::write(report_dir.join("summary.json"), &text)?;
    match args.output {
        Output::Json => print!("{text}"),
        Output::Table => {
            print!("{}", report::table(&results, started.elapsed()));
            println!("report: {} (junit.xml, report.json, summary.json, ginkgo.log)", report_dir.display());
        }
    }
    if !status.success() && counts.failed == 0 {
        eprintln!("ginkgo exited with {status}; see {}", log_path.display());
    }
    Ok(status.success() && counts.failed == 0 && counts.not_run == 0)
}

/// Runs ginkgo, printing a line per finished test from the progress file, and every minute
/// what still runs.
fn follow(cmd: &mut Command, progress_file: &Path, to_run: usize) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = cmd.spawn().context("starting ginkgo")?;
    let mut progress = report::Progress { total: to_run, ..Default::default() };
    let mut pos = 0u64;
    let mut last_note = Instant::now();
    let start = Instant::now();
    loop {
        let exited = child.try_wait()?;
        if let Ok(mut f) = std::fs::File::open(progress_file) {
            f.seek(std::io::SeekFrom::Start(pos))?;
            let mut reader = std::io::BufReader::new(f);
            let mut line = String::new();
            // Only whole lines: a line still being written is read next time.
            while reader.read_line(&mut line)? > 0 && line.ends_with('\n') {
                pos += line.len() as u64;
                if let Ok(ev) = serde_json::from_str::<report::Event>(&line) {
                    if let Some(text) = progress.line(&ev) {
                        eprintln!("  {text}");
                    }
                }
                line.clear();
            }
        }
        if let Some(status) = exited {
            return Ok(status);
        }
        if last_note.elapsed() >= Duration::from_secs(60) && !progress.running.is_empty() {
            last_note = Instant::now();
            eprintln!(
                "  … {} done, {} running after {} (e.g. {})",
                progress.done,
                progress.running.len(),
                report::fmt_duration(start.elapsed()),
                progress.running.iter().next().map(|s| s.as_str()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
