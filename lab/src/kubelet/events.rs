//! Pod events (`kubectl describe pod` / `kubectl get events`), published in the background so a
//! slow or absent apiserver never stalls a pod.

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;

/// Publishes events as `kubelet` on this node.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, node: &str) -> Events {
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "kubelet".into(),
                    instance: Some(node.to_string()),
                },
            ),
        }
    }

    pub fn normal(&self, pod: &Pod, reason: &str, note: &str) {
        self.publish(pod, EventType::Normal, reason, note);
    }

    pub fn warning(&self, pod: &Pod, reason: &str, note: &str) {
        tracing::warn!(pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()), reason, "{note}");
        self.publish(pod, EventType::Warning, reason, note);
    }

    fn publish(&self, pod: &Pod, type_: EventType, reason: &str, note: &str) {
        let reference = pod.object_ref(&());
        let recorder = self.recorder.clone();
        // The API limits notes to 1 kB; cut on a character boundary.
        let note: String = note.chars().take(900).collect();
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::debug!(error = %e, "publishing an event failed");
            }
        });
    }
}
