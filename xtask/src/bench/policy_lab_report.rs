//! The tables of `bench policy-change`: per engine, size and selection the new-connection and
//! request/response figures with their ratios (to the same engine with no other policies, and
//! weft to the reference in the same cell), policy change -> enforced, memory and restart.

use serde_json::Value;

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// The `p`-quantile of `v` (nearest rank).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The cell of `engine` at `policies`/`selecting`.
fn cell<'a>(all: &'a [Value], engine: &str, policies: u64, selecting: u64) -> Option<&'a Value> {
    all.iter()
        .find(|e| e["engine"] == engine)?["cells"]
        .as_array()?
        .iter()
        .find(|c| c["policies"].as_u64() == Some(policies) && c["selecting"].as_u64() == Some(selecting))
}

pub fn print(all: &[Value], seconds: f64, rounds: usize, no_pin: bool, max_p99_ms: f64) {
    println!(
        "\nClient pod (node-1) -> server pod (node-2) selected by SEL policies, OTHER policies in the cluster (median of {rounds} x {seconds} s, {})",
        super::placement(no_pin)
    );
    println!(
        "{:<12} {:>7} {:>4} {:>9} {:>7} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8}",
        "ENGINE", "OTHER", "SEL", "CONN/s", "p50 us", "p99 us", "ERR", "RR/s", "vs none", "RR vs", "vs ref"
    );
    let mut goal_scale = true;
    let mut goal_ref = true;
    for e in all {
        let engine = e["engine"].as_str().unwrap_or_default();
        for c in e["cells"].as_array().into_iter().flatten() {
            let (n, sel) = (c["policies"].as_u64().unwrap_or(0), c["selecting"].as_u64().unwrap_or(0));
            let none = cell(all, engine, 0, sel);
            let vs_none = none.map_or(f64::NAN, |z| f(c, "conn_per_s") / f(z, "conn_per_s"));
            let rr_vs_none = none.map_or(f64::NAN, |z| f(c, "rr_per_s") / f(z, "rr_per_s"));
            let vs_ref = if engine == "weft" {
                cell(all, "kube-router", n, sel).map_or(f64::NAN, |r| f(c, "conn_per_s") / f(r, "conn_per_s"))
            } else {
                f64::NAN
            };
            println!(
                "{engine:<12} {n:>7} {sel:>4} {:>9.0} {:>7.0} {:>7.0} {:>6} {:>9.0} {vs_none:>8.3} {rr_vs_none:>8.3} {vs_ref:>8.3}",
                f(c, "conn_per_s"),
                f(c, "p50_us"),
                f(c, "p99_us"),
                f(c, "errors"),
                f(c, "rr_per_s"),
            );
            if engine == "weft" {
                if n == 10_000 && (vs_none < 1.0 / 1.05 || rr_vs_none < 1.0 / 1.05) {
                    goal_scale = false;
                }
                if vs_ref.is_nan() || vs_ref <= 1.0 {
                    goal_ref = false;
                }
            }
        }
    }
    println!("(vs none: connections/s against the same engine with no other policies; RR vs: the same for transactions/s; vs ref: weft against kube-router in the same cell)");
    if all.iter().any(|e| e["engine"] == "weft") {
        println!("weft at 10,000 within 1.05x of none: {}", if goal_scale { "✓" } else { "✗" });
        if all.iter().any(|e| e["engine"] == "kube-router") {
            println!("weft faster than the reference in every cell: {}", if goal_ref { "✓" } else { "✗" });
        }
    }

    println!("\nNetworkPolicy change -> enforced, seen from a pod (ms from kubectl returning)");
    println!(
        "{:<12} {:>7} {:>7} {:>10} {:>10} {:>12} {:>12}",
        "ENGINE", "OTHER", "PODS", "DENY p50", "DENY p99", "ALLOW p50", "ALLOW p99"
    );
    for e in all {
        let c = &e["changes"];
        let ms = |k: &str| -> Vec<f64> { c[k].as_array().into_iter().flatten().filter_map(Value::as_f64).collect() };
        let (deny, allow) = (ms("deny_ms"), ms("allow_ms"));
        println!(
            "{:<12} {:>7} {:>7} {:>10.1} {:>10.1} {:>12.1} {:>12.1}",
            e["engine"].as_str().unwrap_or_default(),
            c["policies"].as_u64().unwrap_or(0),
            c["pods"].as_u64().unwrap_or(0),
            percentile(&deny, 0.5),
            percentile(&deny, 0.99),
            percentile(&allow, 0.5),
            percentile(&allow, 0.99),
        );
        if e["engine"] == "weft" {
            let p99 = percentile(&deny, 0.99).max(percentile(&allow, 0.99));
            println!(
                "weft p99 (worst of deny and allow): {p99:.1} ms (goal < {max_p99_ms} ms) {}",
                if p99 < max_p99_ms { "✓" } else { "✗" }
            );
        }
    }

    println!("\nAt the largest size: memory of each node's engine, and weft's agent restarted on node-2");
    println!("{:<12} {:>7} {:>7} {:>12} {:>12} {:>14} {:>10}", "ENGINE", "OTHER", "PODS", "node-1 MiB", "node-2 MiB", "RESTART s", "PASS s");
    for e in all {
        let kib = |n: &str| e["rss_kib"][n].as_f64().unwrap_or(f64::NAN) / 1024.0;
        println!(
            "{:<12} {:>7} {:>7} {:>12.0} {:>12.0} {:>14.2} {:>10.3}",
            e["engine"].as_str().unwrap_or_default(),
            e["policies"].as_u64().unwrap_or(0),
            e["pods"].as_u64().unwrap_or(0),
            kib("node-1"),
            kib("node-2"),
            f(&e["restart"], "start_to_programmed_s"),
            f(&e["restart"], "first_pass_s"),
        );
    }
    println!("(RESTART: from the new agent's process start to its first policy pass done; PASS: that pass, translation and map writes)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 11.0);
        assert_eq!(percentile(&v, 0.99), 20.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn cells_are_found_by_engine_size_and_selection() {
        let all = vec![serde_json::json!({"engine": "weft", "cells": [
            {"policies": 0, "selecting": 1, "conn_per_s": 10.0},
            {"policies": 0, "selecting": 100, "conn_per_s": 9.0}]})];
        assert_eq!(f(cell(&all, "weft", 0, 100).unwrap(), "conn_per_s"), 9.0);
        assert!(cell(&all, "kube-router", 0, 1).is_none());
    }
}
