//! The policy state as text, in the shape of the maps: identities, the address table, then
//! per endpoint and direction the allowed keys with the rules behind them. The golden scenario
//! tests compare against it; `peer` names an identity for `weft policy list`.

use std::fmt::Write;

use super::identity::{ANY, HOST, WORLD};
use super::model::{DirectionPolicy, EndpointPolicy, IpIdentity, PolicyState, RuleKey};

/// A peer id in words: `any`, `world`, `host`, a label id or a prefix.
pub fn peer(state: &PolicyState, id: u32) -> String {
    match id {
        ANY => "any".into(),
        WORLD => "world".into(),
        HOST => "host".into(),
        _ => match (state.identities.get(&id), state.prefixes.get(&id)) {
            (Some(set), _) => {
                let labels: Vec<String> =
                    set.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{id} {}{{{}}}", set.namespace, labels.join(","))
            }
            (None, Some(net)) => format!("{id} {net}"),
            (None, None) => format!("{id} (retired)"),
        },
    }
}

fn ip_identity(id: IpIdentity) -> String {
    let label = match id.label {
        WORLD => "world".to_owned(),
        HOST => "host".to_owned(),
        n => format!("id={n}"),
    };
    if id.prefix == 0 {
        label
    } else {
        format!("{label} prefix={}", id.prefix)
    }
}

fn key(state: &PolicyState, k: &RuleKey) -> String {
    format!("{} {}", peer(state, k.peer), k.ports)
}

fn direction(out: &mut String, state: &PolicyState, name: &str, d: &DirectionPolicy) {
    if !d.isolated() {
        let _ = writeln!(out, "  {name}: not isolated");
        return;
    }
    let by: Vec<String> = d.isolated_by.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  {name}: isolated by {}", by.join(", "));
    if d.allow.is_empty() {
        let _ = writeln!(out, "    (nothing allowed)");
    }
    for (k, refs) in &d.allow {
        let refs: Vec<String> = refs.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "    {} <- {}", key(state, k), refs.join(", "));
    }
}

/// One endpoint's policy.
fn endpoint(state: &PolicyState, ep: &EndpointPolicy) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {} id={}", ep.pod, ep.ip, ep.identity);
    direction(&mut out, state, "ingress", &ep.ingress);
    direction(&mut out, state, "egress", &ep.egress);
    out
}

/// The whole state.
pub fn render(state: &PolicyState) -> String {
    let mut out = String::from("identities\n");
    for id in state.identities.keys() {
        let _ = writeln!(out, "  {}", peer(state, *id));
    }
    if !state.prefixes.is_empty() {
        out.push_str("prefixes\n");
        for id in state.prefixes.keys() {
            let _ = writeln!(out, "  {}", peer(state, *id));
        }
    }
    out.push_str("ipcache\n");
    for (net, id) in &state.ipcache {
        let _ = writeln!(out, "  {net} {}", ip_identity(*id));
    }
    for ep in state.endpoints.values() {
        out.push_str(&endpoint(state, ep));
    }
    if !state.problems.is_empty() {
        out.push_str("problems\n");
        for (name, why) in &state.problems {
            let _ = writeln!(out, "  {name}: {why}");
        }
    }
    out
}
