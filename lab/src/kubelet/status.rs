//! Pod status as kubelet reports it: phase, conditions, IPs and container statuses, computed
//! from the worker's view of its containers (pure; the worker sends the result as a patch).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::PodCondition;
use serde_json::{json, Value};

/// RFC 3339 UTC time with whole seconds, as metav1.Time serialises.
pub fn now() -> String {
    let ts = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(ts.as_second())
        .expect("in range")
        .to_string()
}

/// One container's state (the three CRI states).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: String,
        finished_at: String,
    },
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> State {
        State::Waiting {
            reason: reason.into(),
            message,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => json!({"terminated": {
                "exitCode": exit_code, "reason": reason, "message": message,
                "startedAt": started_at, "finishedAt": finished_at}}),
        }
    }
}

/// What the worker knows about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_terminated: Option<State>,
    pub restart_count: u32,
    pub ready: bool,
    /// It terminated and will not be restarted.
    pub done: bool,
    pub container_id: Option<String>,
}

impl ContainerView {
    pub fn new(name: &str, image: &str) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: image.into(),
            state: State::waiting("ContainerCreating", None),
            last_terminated: None,
            restart_count: 0,
            ready: false,
            done: false,
            container_id: None,
        }
    }
}

/// What the worker knows about the pod.
#[derive(Clone, Debug)]
pub struct PodView {
    pub uid: String,
    pub sandbox_ready: bool,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Ipv4Addr,
    pub start_time: String,
    pub containers: Vec<ContainerView>,
    /// Init containers, run one after the other before `containers`.
    pub init_containers: Vec<ContainerView>,
    /// Why the sandbox is not ready, if it failed.
    pub sandbox_message: Option<String>,
}

impl PodView {
    /// Every init container completed successfully.
    pub fn initialized(&self) -> bool {
        self.init_containers
            .iter()
            .all(|c| c.done && matches!(c.state, State::Terminated { exit_code: 0, .. }))
    }

    /// An init container failed for good (restartPolicy Never).
    pub fn init_failed(&self) -> bool {
        self.init_containers.iter().any(|c| {
            c.done && matches!(c.state, State::Terminated { exit_code, .. } if exit_code != 0)
        })
    }
}

/// kubelet's `getPhase`, with "will it restart" known exactly from `done`.
pub fn phase(v: &PodView) -> &'static str {
    if v.init_failed() {
        return "Failed";
    }
    if !v.initialized() {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut failed) = (0, 0, 0, 0);
    for c in &v.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code != 0 {
                    failed += 1;
                }
            }
            State::Waiting { .. } if c.last_terminated.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    let all_done = !v.containers.is_empty() && v.containers.iter().all(|c| c.done);
    if all_done {
        return if failed > 0 { "Failed" } else { "Succeeded" };
    }
    if waiting > 0 || !v.sandbox_ready {
        return "Pending";
    }
    if running > 0 || stopped > 0 {
        return "Running";
    }
    "Pending"
}

/// Remembers when each condition last changed, so lastTransitionTime is honest.
#[derive(Default, Debug)]
pub struct Transitions(BTreeMap<&'static str, (bool, String)>);

impl Transitions {
    fn condition(
        &mut self,
        kind: &'static str,
        status: bool,
        now: &str,
        reason: Option<&str>,
    ) -> Value {
        let entry = self
            .0
            .entry(kind)
            .or_insert_with(|| (status, now.to_string()));
        if entry.0 != status {
            *entry = (status, now.to_string());
        }
        let mut c = json!({"type": kind, "status": if status { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": entry.1});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    }
}

/// The JSON merge patch for `pods/<name>/status` (with the UID as precondition, as kubelet's
/// status manager sends it).
pub fn status_patch(v: &PodView, t: &mut Transitions, now: &str) -> Value {
    let phase = phase(v);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let all_ready = !v.containers.is_empty() && v.containers.iter().all(|c| c.ready);
    let not_ready_reason = if terminal {
        Some("PodCompleted")
    } else if all_ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    let initialized = v.initialized();
    let conditions = vec![
        t.condition(
            "PodReadyToStartContainers",
            v.sandbox_ready && !terminal,
            now,
            None,
        ),
        t.condition(
            "Initialized",
            initialized,
            now,
            if initialized {
                None
            } else {
                Some("ContainersNotInitialized")
            },
        ),
        t.condition("Ready", all_ready && !terminal, now, not_ready_reason),
        t.condition(
            "ContainersReady",
            all_ready && !terminal,
            now,
            not_ready_reason,
        ),
        t.condition("PodScheduled", true, now, None),
    ];
    let to_status = |c: &ContainerView| {
        json!({
            "name": c.name,
            "image": c.image,
            "imageID": format!("lab-catalogue://{}", c.image),
            "containerID": c.container_id.as_ref().map(|id| format!("lab://{id}")),
            "ready": c.ready,
            "started": matches!(c.state, State::Running { .. }),
            "restartCount": c.restart_count,
            "state": c.state.to_json(),
            "lastState": c.last_terminated.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
        })
    };
    let statuses: Vec<Value> = v.containers.iter().map(to_status).collect();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": v.host_ip.to_string(),
        "hostIPs": [{"ip": v.host_ip.to_string()}],
        "startTime": v.start_time,
        "containerStatuses": statuses,
    });
    if !v.init_containers.is_empty() {
        status["initContainerStatuses"] =
            Value::Array(v.init_containers.iter().map(to_status).collect());
    }
    match v.pod_ip {
        Some(ip) => {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        None => {
            status["podIP"] = Value::Null;
            status["podIPs"] = Value::Null;
        }
    }
    if let Some(m) = &v.sandbox_message {
        status["message"] = json!(m);
    }
    json!({"metadata": {"uid": v.uid}, "status": status})
}

/// Whether the API server holds other pod conditions than the last status this node sent
/// (`sent`, a [`status_patch`]): someone else wrote them. The node lifecycle controller marks
/// every pod of a node not ready when it misses the node's heartbeats (after an API server
/// outage, for one); kubelet's status manager then puts its own view back (`needsReconcile`),
/// and so does the stand-in.
pub fn overwritten(api: &[PodCondition], sent: &Value) -> bool {
    sent["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
        let (Some(kind), Some(status)) = (c["type"].as_str(), c["status"].as_str()) else {
            return false;
        };
        api.iter().any(|a| a.type_ == kind && a.status != status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_another_writer_changed_are_noticed() {
        let sent = status_patch(&view(vec![running("web", true)]), &mut Transitions::default(), "2026-01-01T00:00:00Z");
        let conditions = |v: &Value| -> Vec<PodCondition> {
            serde_json::from_value(v["status"]["conditions"].clone()).expect("conditions")
        };
        let mut api = sent.clone();
        assert!(!overwritten(&conditions(&api), &sent), "the API holds what was sent");
        // The node lifecycle controller's MarkPodsNotReady.
        for c in api["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "Ready" {
                c["status"] = json!("False");
                c["reason"] = json!("NodeNotReady");
            }
        }
        assert!(overwritten(&conditions(&api), &sent));
        // A condition the stand-in never sends (a readiness gate's) is not its business.
        let mut other = sent.clone();
        other["status"]["conditions"].as_array_mut().unwrap().push(json!({"type": "example.com/gate", "status": "False"}));
        assert!(!overwritten(&conditions(&other), &sent));
    }

    fn view(containers: Vec<ContainerView>) -> PodView {
        PodView {
            uid: "u1".into(),
            sandbox_ready: true,
            pod_ip: Some(Ipv4Addr::new(10, 200, 1, 5)),
            host_ip: Ipv4Addr::new(172, 30, 0, 11),
            start_time: "2026-01-01T00:00:00Z".into(),
            containers,
            init_containers: vec![],
            sandbox_message: None,
        }
    }

    fn running(name: &str, ready: bool) -> ContainerView {
        ContainerView {
            state: State::Running {
                started_at: "2026-01-01T00:00:01Z".into(),
            },
            ready,
            ..ContainerView::new(name, "nginx")
        }
    }

    fn exited(code: i32, done: bool) -> ContainerView {
        let state = State::Terminated {
            exit_code: code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: None,
            started_at: "a".into(),
            finished_at: "b".into(),
        };
        ContainerView {
            state,
            done,
            ..ContainerView::new("job", "busybox")
        }
    }

    #[test]
    fn ready_pod_reports_ip_and_conditions_like_kubelet() {
        let mut t = Transitions::default();
        let p = status_patch(&view(vec![running("web", true)]), &mut t, "T0");
        let s = &p["status"];
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.200.1.5");
        assert_eq!(s["podIPs"], json!([{"ip": "10.200.1.5"}]));
        assert_eq!(s["hostIPs"], json!([{"ip": "172.30.0.11"}]));
        let cond = |k: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == k)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Ready")["status"], "True");
        assert_eq!(cond("ContainersReady")["status"], "True");
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(s["containerStatuses"][0]["ready"], true);
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut t = Transitions::default();
        let ready_at = |p: &Value| {
            p["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["lastTransitionTime"]
                .clone()
        };
        let p = status_patch(&view(vec![running("web", false)]), &mut t, "T0");
        assert_eq!(ready_at(&p), "T0");
        assert_eq!(p["status"]["conditions"][2]["reason"], "ContainersNotReady");
        let p = status_patch(&view(vec![running("web", false)]), &mut t, "T1");
        assert_eq!(ready_at(&p), "T0");
        let p = status_patch(&view(vec![running("web", true)]), &mut t, "T2");
        assert_eq!(ready_at(&p), "T2");
    }

    #[test]
    fn phases() {
        assert_eq!(phase(&view(vec![ContainerView::new("a", "x")])), "Pending");
        assert_eq!(
            phase(&view(vec![running("a", false), exited(0, false)])),
            "Running"
        );
        assert_eq!(phase(&view(vec![exited(0, true)])), "Succeeded");
        assert_eq!(
            phase(&view(vec![exited(0, true), exited(3, true)])),
            "Failed"
        );
        // Restarting after a crash (CrashLoopBackOff) is still Running.
        let mut c = ContainerView::new("a", "x");
        c.state = State::waiting("CrashLoopBackOff", None);
        c.last_terminated = Some(exited(1, false).state);
        assert_eq!(phase(&view(vec![c])), "Running");
        let mut v = view(vec![ContainerView::new("a", "x")]);
        v.sandbox_ready = false;
        v.pod_ip = None;
        let p = status_patch(&v, &mut Transitions::default(), "T");
        assert_eq!(p["status"]["phase"], "Pending");
        assert!(p["status"]["podIP"].is_null());
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let mut v = view(vec![ContainerView {
            state: State::waiting("PodInitializing", None),
            ..ContainerView::new("app", "nginx")
        }]);
        v.init_containers = vec![ContainerView {
            state: State::Running {
                started_at: "t".into(),
            },
            ..ContainerView::new("init", "busybox")
        }];
        let p = status_patch(&v, &mut Transitions::default(), "T");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["conditions"][1]["status"], "False");
        assert_eq!(
            p["status"]["conditions"][1]["reason"],
            "ContainersNotInitialized"
        );
        assert_eq!(p["status"]["initContainerStatuses"][0]["name"], "init");
        v.init_containers[0] = exited(0, true);
        assert!(v.initialized());
        assert_eq!(
            status_patch(&v, &mut Transitions::default(), "T")["status"]["conditions"][1]["status"],
            "True"
        );
        v.init_containers[0] = exited(1, true);
        assert_eq!(phase(&v), "Failed");
    }

    #[test]
    fn unknown_image_shows_err_image_pull_and_not_ready() {
        let mut c = ContainerView::new("app", "example.com/nope:1");
        c.state = State::waiting(
            "ErrImagePull",
            Some("image \"example.com/nope:1\" is not in the lab's image catalogue".into()),
        );
        let p = status_patch(&view(vec![c]), &mut Transitions::default(), "T");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        assert_eq!(p["status"]["conditions"][2]["status"], "False");
    }
}
