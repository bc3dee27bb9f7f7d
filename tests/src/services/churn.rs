//! Endpoints that change under traffic: a Deployment scaled 0 -> 5 -> 1 while a client loops
//! through the ClusterIP (no request may fail while an endpoint is ready), and UDP flows whose
//! backend is removed (they must reach a remaining backend at once, not a dead one).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use super::fixture::*;
use super::Ctx;
use crate::lab::eventually;

/// A command in a pod whose output lines arrive, timestamped, on a channel.
struct Stream {
    child: Child,
    lines: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Stream {
    fn start(ctx: &Ctx<'_>, pod: &str, cmd: &[&str]) -> Stream {
        let mut full = vec!["exec", pod, "--"];
        full.extend_from_slice(cmd);
        let mut child = ctx
            .lab
            .cmd(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting a client in a pod");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Stream { child, lines, seen: vec![] }
    }

    /// Collects what arrived so far.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Waits until a line satisfies `f` (after `since`), returning its arrival time.
    fn wait_for(&mut self, what: &str, since: Instant, timeout: Duration, f: impl Fn(&str) -> bool) -> Instant {
        let start = Instant::now();
        loop {
            self.drain();
            if let Some((t, _)) = self.seen.iter().find(|(t, l)| *t >= since && f(l)) {
                return *t;
            }
            assert!(start.elapsed() < timeout, "timed out waiting for {what}; output:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the command to end (up to `timeout`), collecting everything.
    fn finish(&mut self, timeout: Duration) {
        let start = Instant::now();
        while self.child.try_wait().expect("client status").is_none() {
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        self.drain();
    }

    fn text(&self) -> String {
        self.seen.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The loop: one TCP request after the other until the stop file appears, one line each:
/// `<time> <nc exit code> <answer>`.
const LOOP: &str = r#"while [ ! -e "$1" ]; do
  r=$(nc -w 2 "$2" 80 </dev/null 2>&1); rc=$?
  echo "$(date +%s.%N) $rc $r"
done"#;

fn loop_ok(line: &str) -> Option<Reply> {
    let mut it = line.splitn(3, ' ');
    let _time = it.next()?;
    (it.next()? == "0").then_some(())?;
    Reply::parse(it.next()?)
}

fn pod_count(ctx: &Ctx<'_>, selector: &str) -> usize {
    pods_with(ctx.lab, selector).len()
}

pub fn scale_under_load(ctx: &Ctx<'_>) {
    ctx.lab.kubectl_stdin(&["apply", "-f", "-"], &echo_deployment("scaler", 0, 8));
    ctx.lab.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: scaler}\nspec:\n  selector: {app: scaler}\n  ports: [{port: 80, targetPort: tcp-echo}]\n",
    );
    let vip = cluster_ip(ctx.lab, "scaler");
    ctx.lab.kubectl(&["scale", "deployment", "scaler", "--replicas=5"]);
    eventually("scaler's first ready endpoint", Duration::from_secs(120), || {
        (!ready_endpoints(ctx.lab, "scaler").is_empty()).then_some(())
    });
    let t_ready = Instant::now();

    let stop = format!("/tmp/weft-svc-loop-{}.stop", std::process::id());
    let _ = std::fs::remove_file(&stop);
    let mut s = Stream::start(ctx, &format!("default/{}", ctx.cli1.name), &["sh", "-c", LOOP, "sh", &stop, &vip]);
    let t_first = s.wait_for("the first answer through the ClusterIP", t_ready, Duration::from_secs(30), |l| loop_ok(l).is_some());
    eprintln!("    first answer {:.2} s after the first endpoint was ready", (t_first - t_ready).as_secs_f64());

    eventually("5 ready endpoints", Duration::from_secs(180), || (ready_endpoints(ctx.lab, "scaler").len() == 5).then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    ctx.lab.kubectl(&["scale", "deployment", "scaler", "--replicas=1"]);
    let t_down = Instant::now();
    eventually("the Deployment to shrink to one pod", Duration::from_secs(120), || {
        (pod_count(ctx, "app=scaler") == 1 && ready_endpoints(ctx.lab, "scaler").len() == 1).then_some(())
    });
    let shrunk = t_down.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop, b"").expect("writing the loop's stop file");
    s.finish(Duration::from_secs(30));
    let _ = std::fs::remove_file(&stop);

    let counted: Vec<&(Instant, String)> = s.seen.iter().filter(|(t, _)| *t >= t_first).collect();
    let failures: Vec<&str> = counted.iter().filter(|(_, l)| loop_ok(l).is_none()).map(|(_, l)| l.as_str()).collect();
    let hosts: BTreeSet<String> = counted.iter().filter_map(|(_, l)| loop_ok(l)).map(|r| r.host).collect();
    eprintln!(
        "    {} requests, {} failed, {} backends answered, 5 -> 1 took {:.1} s",
        counted.len(),
        failures.len(),
        hosts.len(),
        shrunk.as_secs_f64()
    );
    assert!(failures.is_empty(), "{} of {} requests failed while endpoints were ready:\n{}", failures.len(), counted.len(), failures.join("\n"));
    assert!(counted.len() >= 40, "the loop ran: {} requests\n{}", counted.len(), s.text());
    assert!(hosts.len() >= 3, "requests spread over the scaled-up pods: {hosts:?}");
    let last = pods_with(ctx.lab, "app=scaler");
    let tail: BTreeSet<String> =
        counted.iter().rev().take(5).filter_map(|(_, l)| loop_ok(l)).map(|r| r.host).collect();
    assert_eq!(tail, BTreeSet::from([last[0].name.clone()]), "the last requests reached the remaining pod");
    ctx.lab.kubectl(&["delete", "deployment", "scaler", "--wait=false"]);
}

/// `ok <answer>` lines: the host that answered.
fn answered_by(line: &str) -> Option<String> {
    let (_, a) = line.split_once(" ok ")?;
    Reply::parse(a).map(|r| r.host)
}

pub fn udp_moves_off_a_removed_backend(ctx: &Ctx<'_>) {
    let (n1, n2) = (&ctx.nodes[0].0, &ctx.nodes[1].0);
    let mut m = echo_pod("um-a", n1, &[("udpmove", "yes")]);
    m.push_str(&echo_pod("um-b", n2, &[("udpmove", "later")]));
    m.push_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: udpmove}\nspec:\n  selector: {udpmove: \"yes\"}\n  \
         ports: [{port: 90, targetPort: udp-echo, protocol: UDP}]\n",
    );
    ctx.lab.kubectl_stdin(&["apply", "-f", "-"], &m);
    ctx.lab.kubectl(&["wait", "--for=condition=Ready", "--timeout=120s", "pod/um-a", "pod/um-b"]);
    let a = pods_with(ctx.lab, "udpmove=yes");
    wait_endpoints(ctx.lab, "udpmove", &BTreeSet::from([a[0].ip.clone()]));
    let vip = cluster_ip(ctx.lab, "udpmove");

    // Two long-lived clients on node-1 (um-a's node), a datagram every 200 ms each, until the
    // stop file appears (or 2 minutes).
    let pod = format!("default/{}", ctx.cli1.name);
    let stop = format!("/tmp/weft-svc-udp-{}.stop", std::process::id());
    let _ = std::fs::remove_file(&stop);
    let mut clients: Vec<(&str, Stream)> = ["connected", "unconnected"]
        .into_iter()
        .map(|mode| (mode, Stream::start(ctx, &pod, &["python3", "-c", UDP_CLIENT, &vip, "90", "120", "0.2", mode, &stop])))
        .collect();
    let t0 = Instant::now();
    for (mode, s) in clients.iter_mut() {
        s.wait_for(&format!("the {mode} client's first answer from um-a"), t0, Duration::from_secs(30), |l| {
            answered_by(l).as_deref() == Some("um-a")
        });
    }

    // A second backend joins; the flows stay where they are (their conntrack entry or socket).
    ctx.lab.kubectl(&["label", "pod", "um-b", "udpmove=yes", "--overwrite"]);
    let b = pods_with(ctx.lab, "udpmove=yes").into_iter().find(|p| p.name == "um-b").expect("um-b");
    wait_endpoints(ctx.lab, "udpmove", &BTreeSet::from([a[0].ip.clone(), b.ip.clone()]));
    std::thread::sleep(Duration::from_secs(2));
    for (mode, s) in clients.iter_mut() {
        s.drain();
        let last = s.seen.iter().rev().find_map(|(_, l)| answered_by(l));
        assert_eq!(last.as_deref(), Some("um-a"), "the {mode} flow stays on its backend while it lives:\n{}", s.text());
    }

    // um-a goes away; once its endpoint is gone the flows must reach um-b.
    ctx.lab.kubectl(&["delete", "pod", "um-a", "--wait=false"]);
    eventually("um-a's endpoint to go", Duration::from_secs(60), || {
        (ready_endpoints(ctx.lab, "udpmove") == BTreeSet::from([b.ip.clone()])).then_some(())
    });
    let t_gone = Instant::now();
    for (mode, s) in clients.iter_mut() {
        let t_moved = s.wait_for(&format!("the {mode} flow to reach um-b"), t0, Duration::from_secs(15), |l| {
            answered_by(l).as_deref() == Some("um-b")
        });
        let lag = t_moved.saturating_duration_since(t_gone);
        eprintln!("    {mode}: answered by um-b {:.2} s after um-a's endpoint went", lag.as_secs_f64());
        assert!(lag < Duration::from_secs(3), "the {mode} flow took {lag:?} to leave the removed backend:\n{}", s.text());
    }
    std::thread::sleep(Duration::from_secs(3));
    for (mode, s) in clients.iter_mut() {
        s.drain();
        let moved = s.seen.iter().position(|(_, l)| answered_by(l).as_deref() == Some("um-b")).expect("moved");
        let after: Vec<&str> = s.seen[moved..].iter().map(|(_, l)| l.as_str()).filter(|l| answered_by(l).as_deref() != Some("um-b")).collect();
        assert!(after.is_empty(), "the {mode} flow stays on um-b once moved, but:\n{}", after.join("\n"));
    }
    std::fs::write(&stop, b"").expect("writing the clients' stop file");
    for (_, s) in clients.iter_mut() {
        s.finish(Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(&stop);
    ctx.lab.kubectl(&["delete", "pod", "um-b", "--wait=false"]);
}
