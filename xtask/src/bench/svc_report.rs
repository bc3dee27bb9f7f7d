//! The Service benchmark's tables: latency and rate per lab, scale and path with ratios to the
//! pod IP at the same scale; programming, a joining node's first sync and memory per lab.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::Value;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Writes both tables for `results` (one object per lab, as `svc::measure_lab` returns).
pub fn table(out: &mut impl Write, results: &[Value], head: &str, changes: usize) -> Result<()> {
    writeln!(out, "\n{head}")?;
    writeln!(
        out,
        "{:<9} {:>8} {:<10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>7}",
        "LAB", "SERVICES", "PATH", "p50 µs", "p99 µs", "conn/s", "RR/s", "p50 x", "p99 x", "conn/s x", "RR x"
    )?;
    for r in results {
        let rows = r["latency"].as_array().context("latency")?;
        for row in rows {
            let base = rows.iter().find(|b| b["scale"] == row["scale"] && b["path"] == "pod IP").unwrap_or(row);
            let x = |k: &str| num(&row[k]) / num(&base[k]);
            writeln!(
                out,
                "{:<9} {:>8} {:<10} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>7.3} {:>7.3} {:>8.3} {:>7.3}",
                r["lab"].as_str().unwrap_or_default(),
                row["scale"].as_u64().unwrap_or_default(),
                row["path"].as_str().unwrap_or_default(),
                num(&row["p50_us"]),
                num(&row["p99_us"]),
                num(&row["conn_per_s"]),
                num(&row["rr_per_s"]),
                x("p50_us"),
                x("p99_us"),
                x("conn_per_s"),
                x("rr_per_s"),
            )?;
        }
    }
    writeln!(
        out,
        "\nprogramming on node-1, {changes} EndpointSlice changes. change: weft, watch event -> maps written \
         (weft_service_programming_seconds); kube-proxy, the slice's change stamp -> rules written \
         (network_programming_duration). pass: one programming pass (weft's services reconcile, \
         kube-proxy's sync_proxy_rules). join: node-3's proxy from process start to its first sync of \
         every Service, and that sync's own time."
    )?;
    writeln!(
        out,
        "{:<9} {:>12} {:>12} {:>10} {:>10} {:>6} {:>7} {:>10} {:>10} {:>10} {:>8}",
        "LAB", "change p50ms", "change p99ms", "pass p50ms", "pass p99ms", "passes", "join s", "1st sync s", "RSS n1 MiB", "RSS n3 MiB", "create s"
    )?;
    for r in results {
        let (p, j) = (&r["programming"], &r["join"]);
        writeln!(
            out,
            "{:<9} {:>12.1} {:>12.1} {:>10.1} {:>10.1} {:>6.0} {:>7.2} {:>10.2} {:>10.0} {:>10.0} {:>8.0}",
            r["lab"].as_str().unwrap_or_default(),
            num(&p["change"]["p50_ms"]),
            num(&p["change"]["p99_ms"]),
            num(&p["pass"]["p50_ms"]),
            num(&p["pass"]["p99_ms"]),
            num(&p["pass"]["count"]),
            num(&j["start_to_synced_s"]),
            num(&j["first_sync_s"]),
            num(&r["rss_kib_node1"]) / 1024.0,
            num(&j["rss_kib"]) / 1024.0,
            num(&r["create_s"]),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ratios_are_against_the_pod_ip_at_the_same_scale() {
        let row = |scale: u64, path: &str, p50: f64, rr: f64| {
            json!({"scale": scale, "path": path, "p50_us": p50, "p99_us": p50 * 2.0, "conn_per_s": 1e6 / p50, "rr_per_s": rr})
        };
        let lab = json!({"lab": "weft", "latency": [
            row(1, "pod IP", 400.0, 30000.0), row(1, "ClusterIP", 404.0, 29700.0),
            row(10000, "pod IP", 500.0, 20000.0), row(10000, "ClusterIP", 550.0, 20000.0)],
            "programming": {"change": {"p50_ms": 3.25, "p99_ms": 7.9, "count": 100.0},
                            "pass": {"p50_ms": 2.9, "p99_ms": 6.3, "count": 100.0}},
            "join": {"start_to_synced_s": 1.5, "first_sync_s": 0.4, "rss_kib": 51200},
            "rss_kib_node1": 102400, "create_s": 160.0});
        let mut out = Vec::new();
        table(&mut out, &[lab], "head", 100).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = |needle: &str| text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in {text}")).to_owned();
        // p50 404/400, p99 the same, conn/s 400/404, RR 29700/30000.
        assert!(line("1 ClusterIP").ends_with("1.010   1.010    0.990   0.990"), "{text}");
        assert!(line("10000 ClusterIP").contains("1.100   1.100    0.909   1.000"), "{text}");
        assert!(line("10000 pod IP").contains("1.000   1.000    1.000   1.000"), "{text}");
        let prog = text.lines().last().unwrap();
        assert!(prog.starts_with("weft") && prog.contains(" 7.9 ") && prog.contains(" 100 ") && prog.contains(" 50 "), "{prog}");
    }
}
