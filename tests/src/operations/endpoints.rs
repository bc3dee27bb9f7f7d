//! What the EndpointSlices said while the load ran: a poller records each Service's number of
//! ready endpoints, so a failure while a Service had none (the cluster marked its pods not
//! ready) is told apart from one of weft's.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::report::{now_ms, Excuse};
use crate::lab::Lab;

/// One look: when, and the ready endpoints per `namespace/service`.
pub type Sample = (u64, Vec<(String, usize)>);

/// Polls `kubectl get endpointslices -A` every 250 ms until stopped.
pub struct ReadyWatch {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl ReadyWatch {
    pub fn start(lab: &Lab) -> ReadyWatch {
        let probe = lab.cmd(&[
            "kubectl",
            "get",
            "endpointslices",
            "-A",
            "-o",
            "json",
            "--request-timeout=2s",
        ]);
        let program = probe.get_program().to_owned();
        let args: Vec<_> = probe.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = probe
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = vec![];
            while !flag.load(Ordering::Relaxed) {
                let at = now_ms();
                let out = Command::new(&program)
                    .args(&args)
                    .envs(envs.iter().cloned())
                    .output();
                if let Some(o) = out.ok().filter(|o| o.status.success()) {
                    if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
                        samples.push((at, ready_per_service(&v)));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        ReadyWatch { stop, handle }
    }

    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("endpoint poller")
    }
}

/// Ready endpoints per `namespace/service` of an EndpointSliceList.
pub fn ready_per_service(list: &Value) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = vec![];
    for s in list["items"].as_array().into_iter().flatten() {
        let Some(svc) = s["metadata"]["labels"]["kubernetes.io/service-name"].as_str() else {
            continue;
        };
        let key = format!(
            "{}/{svc}",
            s["metadata"]["namespace"].as_str().unwrap_or_default()
        );
        let ready = s["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["conditions"]["ready"] != Value::Bool(false))
            .count();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += ready,
            None => out.push((key, ready)),
        }
    }
    out
}

/// The spans in which `service` had no ready endpoint: from the last look that still saw one
/// (the change came after it) to the first that saw one again plus `slack_ms` (the proxy's
/// time to program it), as excuses for `drivers`.
pub fn no_ready_endpoint(
    samples: &[Sample],
    service: &str,
    slack_ms: u64,
    drivers: &[&str],
) -> Vec<Excuse> {
    let mut out = vec![];
    let mut since: Option<u64> = None;
    let mut last_seen_ready = 0;
    for (at, services) in samples {
        let ready = services
            .iter()
            .find(|(k, _)| k == service)
            .map_or(0, |(_, n)| *n);
        match (ready, since) {
            (0, None) => since = Some(last_seen_ready),
            (n, None) if n > 0 => last_seen_ready = *at,
            (n, Some(from)) if n > 0 => {
                last_seen_ready = *at;
                out.push(Excuse {
                    from_ms: from,
                    to_ms: at + slack_ms,
                    drivers: drivers.iter().map(|d| d.to_string()).collect(),
                    why: format!("{service} had no ready endpoint in its EndpointSlices (the cluster marked its pods not ready)"),
                });
                since = None;
            }
            _ => {}
        }
    }
    if let Some(from) = since {
        out.push(Excuse {
            from_ms: from,
            to_ms: u64::MAX,
            drivers: drivers.iter().map(|d| d.to_string()).collect(),
            why: format!("{service} had no ready endpoint in its EndpointSlices until the end"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_without_a_ready_endpoint_are_found() {
        let list = json!({"items": [
            {"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
             "endpoints": [{"conditions": {"ready": true}}, {"conditions": {"ready": false}}, {"conditions": {}}]},
            {"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "web"}}, "endpoints": null},
        ]});
        assert_eq!(
            ready_per_service(&list),
            vec![("default/web".to_string(), 2)]
        );
        let s = |at: u64, n: usize| (at, vec![("default/web".to_string(), n)]);
        let samples = vec![s(0, 2), s(250, 0), s(500, 0), s(750, 1), s(1000, 0)];
        let spans = no_ready_endpoint(&samples, "default/web", 1000, &["http"]);
        assert_eq!(
            spans
                .iter()
                .map(|x| (x.from_ms, x.to_ms))
                .collect::<Vec<_>>(),
            vec![(0, 1750), (750, u64::MAX)]
        );
        assert!(
            no_ready_endpoint(&samples, "default/other", 0, &["http"])[0].from_ms == 0,
            "a Service never seen has none"
        );
    }
}
