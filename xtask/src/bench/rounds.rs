//! The per-round figures the BPF_PROG_TEST_RUN benchmarks print as JSON (one median per round
//! and series), read back as medians and as ratios taken round by round against a baseline.

use serde_json::Value;

/// Series `key` of one size (its per-round medians).
pub fn series(size: &Value, key: &str) -> Vec<f64> {
    size[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of the per-round ratios of `size` to `base` for series `key`: rounds share the
/// machine's state, so the ratio is taken within a round first.
pub fn ratio(size: &Value, base: &Value, key: &str) -> f64 {
    let (a, b) = (series(size, key), series(base, key));
    median(a.iter().zip(&b).map(|(x, y)| x / y).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_within_rounds() {
        let base = serde_json::json!({"ns": [100, 200, 100]});
        let size = serde_json::json!({"ns": [110, 200, 105]});
        assert_eq!(median(series(&size, "ns")), 110.0);
        assert!((ratio(&size, &base, "ns") - 1.05).abs() < 1e-9);
    }
}
