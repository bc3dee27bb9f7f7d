//! Reading Prometheus text exposition: single values and histograms, the difference of two
//! scrapes of a histogram, and quantiles from its buckets (as PromQL's `histogram_quantile`:
//! linear within the bucket that holds the rank).

/// The samples of `name` (exactly, no suffix) whose label text contains every `labels` item
/// (`reconciler="services"`), with their label text.
fn samples<'a>(text: &'a str, name: &str, labels: &[&str]) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbl) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (n == name && labels.iter().all(|want| lbl.contains(want))).then_some(())?;
            Some((lbl, value.parse::<f64>().ok()?))
        })
        .collect()
}

/// The value of a counter or gauge (the first matching series).
pub fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    samples(text, name, labels).first().map(|(_, v)| *v)
}

/// A histogram at one scrape: cumulative bucket counts by upper bound, sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// The histogram `name` (`name_bucket`, `name_sum`, `name_count`; prometheus-client's
/// counters end in `_total` only for counters, histograms keep these names).
pub fn histogram(text: &str, name: &str, labels: &[&str]) -> Option<Histogram> {
    let mut buckets: Vec<(f64, f64)> = samples(text, &format!("{name}_bucket"), labels)
        .into_iter()
        .filter_map(|(lbl, v)| {
            let le = lbl.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, v))
        })
        .collect();
    if buckets.is_empty() {
        return None;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Histogram {
        buckets,
        sum: value(text, &format!("{name}_sum"), labels).unwrap_or(0.0),
        count: value(text, &format!("{name}_count"), labels).unwrap_or(0.0),
    })
}

impl Histogram {
    /// What was observed between `before` and this scrape.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let prior = |le: f64| before.buckets.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, c)| *c);
        Histogram {
            buckets: self.buckets.iter().map(|(le, c)| (*le, c - prior(*le))).collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The `q` quantile (0..1), linear within its bucket; NaN without observations. A rank in
    /// the +Inf bucket reports the highest finite bound.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.buckets.last().map_or(0.0, |(_, c)| *c);
        if total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, c) in &self.buckets {
            if c >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let width = c - lower.1;
                let frac = if width > 0.0 { (rank - lower.1) / width } else { 1.0 };
                return lower.0 + (le - lower.0) * frac;
            }
            lower = (le, c);
        }
        lower.0
    }

    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_seconds demo
# TYPE x_seconds histogram
x_seconds_bucket{r="a",le="0.01"} 2
x_seconds_bucket{r="a",le="0.02"} 6
x_seconds_bucket{r="a",le="0.04"} 10
x_seconds_bucket{r="a",le="+Inf"} 10
x_seconds_sum{r="a"} 0.2
x_seconds_count{r="a"} 10
x_seconds_bucket{r="b",le="0.01"} 7
x_seconds_bucket{r="b",le="+Inf"} 7
up 1
"#;

    #[test]
    fn reads_values_and_histograms_by_label() {
        assert_eq!(value(TEXT, "up", &[]), Some(1.0));
        let h = histogram(TEXT, "x_seconds", &["r=\"a\""]).unwrap();
        assert_eq!(h.buckets.len(), 4);
        assert_eq!((h.sum, h.count), (0.2, 10.0));
        assert!(histogram(TEXT, "y_seconds", &[]).is_none());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = histogram(TEXT, "x_seconds", &["r=\"a\""]).unwrap();
        // Rank 5 of 10 lies in (0.01, 0.02]: 3 of its 4 observations up.
        assert!((h.quantile(0.5) - 0.0175).abs() < 1e-9, "{}", h.quantile(0.5));
        assert!((h.quantile(1.0) - 0.04).abs() < 1e-9);
        assert!((h.mean() - 0.02).abs() < 1e-9);
    }

    #[test]
    fn the_difference_of_two_scrapes_holds_only_the_new_observations() {
        let before = histogram(TEXT, "x_seconds", &["r=\"a\""]).unwrap();
        let mut after = before.clone();
        for b in after.buckets.iter_mut().skip(2) {
            b.1 += 4.0;
        }
        after.count += 4.0;
        after.sum += 0.12;
        let d = after.since(&before);
        assert_eq!(d.count, 4.0);
        assert_eq!(d.buckets[1].1, 0.0);
        assert!((d.quantile(0.5) - 0.03).abs() < 1e-9);
        assert!(Histogram::default().quantile(0.5).is_nan());
    }
}
