//! `weft-lab build`: build or reuse the upstream parts and print what is where.

use std::io::Write;

use super::build::{build, status, BuildOptions, ComponentReport, State};
use super::component::Component;
use super::progress::fmt_duration;
use super::versions::Versions;
use super::{cache_dir, Bins};

/// Build the upstream parts (Kubernetes, etcd, CoreDNS, CNI plugins, cnitool, agnhost; with
/// `--only e2e,ginkgo` the conformance test binaries, `--only kube-router` the reference
/// NetworkPolicy engine) from the Go module proxy, or reuse them from the cache.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Rebuild even what the cache says is done (the Go build cache keeps it short).
    #[arg(long)]
    pub force: bool,
    /// Only these components (comma-separated); default: what a lab needs (all but e2e and
    /// ginkgo, which `weft-lab conformance` builds, and kube-router, which `up --netpol
    /// kube-router` builds).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Component>,
    /// Every component, the conformance test binaries and kube-router included.
    #[arg(long, conflicts_with = "only")]
    pub all: bool,
    /// Show what the cache holds without building anything.
    #[arg(long)]
    pub status: bool,
    /// Output format of the summary on stdout (progress always goes to stderr).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The body of `weft-lab build`.
pub fn build_cmd(args: &BuildArgs) -> anyhow::Result<()> {
    let cache = cache_dir();
    let versions = Versions::PINNED;
    let only = if args.all { Component::ALL.to_vec() } else { args.only.clone() };
    let reports = if args.status {
        let wanted = |c: &Component| {
            if only.is_empty() { Component::LAB.contains(c) } else { only.contains(c) }
        };
        status(&cache, &versions).into_iter().filter(|r| wanted(&r.component)).collect()
    } else {
        build(
            &cache,
            &versions,
            &BuildOptions {
                force: args.force,
                only,
            },
        )?
    };
    let text = match args.output {
        Output::Json => {
            let bins = Bins::in_cache(&cache, &versions);
            let doc = serde_json::json!({
                "cache": cache,
                "versions": versions,
                "components": reports,
                "bins": bins,
            });
            serde_json::to_string_pretty(&doc)? + "\n"
        }
        Output::Table => format!("{}cache: {}\n", table(&reports), cache.display()),
    };
    // `weft-lab build | head` must not panic on a closed pipe.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    if args.status && reports.iter().any(|r| r.state == State::Missing) {
        anyhow::bail!("some upstream parts are not built yet: run `weft-lab build`");
    }
    Ok(())
}

/// One row per binary, columns aligned.
fn table(reports: &[ComponentReport]) -> String {
    let mut rows = vec![[
        "COMPONENT",
        "VERSION",
        "STATE",
        "BUILD",
        "BINARY",
        "SIZE",
        "REPORTS",
    ]
    .map(String::from)];
    for r in reports {
        let state = match r.state {
            State::Cached => "cached",
            State::Built => "built",
            State::Missing => "missing",
        };
        let took = r
            .build_seconds
            .map(|s| fmt_duration(std::time::Duration::from_secs_f64(s)))
            .unwrap_or_default();
        for b in &r.binaries {
            rows.push([
                r.component.name().to_string(),
                r.version.clone(),
                state.to_string(),
                took.clone(),
                b.name.clone(),
                b.size_bytes
                    .map(fmt_size)
                    .unwrap_or_else(|| "-".to_string()),
                b.reports.clone().unwrap_or_default(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

fn fmt_size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::super::build::BinaryReport;
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn table_has_a_row_per_binary_with_aligned_columns() {
        let reports = vec![ComponentReport {
            component: Component::Etcd,
            version: "v3.6.16".into(),
            state: State::Built,
            build_seconds: Some(75.0),
            dir: PathBuf::from("/c/etcd-v3.6.16"),
            binaries: vec![BinaryReport {
                name: "etcd".into(),
                path: PathBuf::from("/c/etcd-v3.6.16/bin/etcd"),
                size_bytes: Some(25 * 1024 * 1024),
                reports: Some("etcd Version: 3.6.16".into()),
            }],
        }];
        let t = table(&reports);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("COMPONENT  VERSION  STATE  BUILD  BINARY  SIZE      REPORTS"),
            "{t}"
        );
        assert_eq!(
            lines[1],
            "etcd       v3.6.16  built  1m15s  etcd    25.0 MiB  etcd Version: 3.6.16"
        );
    }

    #[test]
    fn missing_binaries_show_a_dash() {
        let reports = vec![ComponentReport {
            component: Component::Cnitool,
            version: "v1.3.1".into(),
            state: State::Missing,
            build_seconds: None,
            dir: PathBuf::from("/c/cnitool-v1.3.1"),
            binaries: vec![BinaryReport {
                name: "cnitool".into(),
                path: PathBuf::from("/c/cnitool-v1.3.1/bin/cnitool"),
                size_bytes: None,
                reports: None,
            }],
        }];
        assert!(table(&reports)
            .lines()
            .nth(1)
            .unwrap()
            .contains("missing         cnitool  -"));
    }
}
