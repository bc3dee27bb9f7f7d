//! The desired state as text, in the shape of the maps: one line per frontend (with its flags),
//! one per backend. The golden scenario tests compare against it.

use std::fmt::Write;

use super::model::{BackendState, Service};

/// `services` as text, in the order given.
pub fn render(services: &[Service]) -> String {
    let mut out = String::new();
    for svc in services {
        let _ = writeln!(out, "{}", svc.name);
        for f in &svc.frontends {
            let mut flags = Vec::new();
            if !f.port_name.is_empty() {
                flags.push(format!("port={}", f.port_name));
            }
            if let Some(t) = f.affinity_timeout_s {
                flags.push(format!("affinity={t}s"));
            }
            if f.two_scopes {
                flags.push("two-scopes".to_owned());
            }
            if let Some(a) = f.snat_remote {
                flags.push(format!("snat-remote={a}"));
            }
            let line = format!("  {} {} {}", f.frontend, f.kind, flags.join(" "));
            let _ = writeln!(out, "{}", line.trim_end());
            if f.active().next().is_none() {
                let _ = writeln!(out, "    (no active backend: new flows refused)");
            }
            for b in &f.backends {
                let mut words = vec![b.state.to_string()];
                if b.terminating && b.state == BackendState::Active {
                    words.push("terminating-fallback".into());
                } else if b.terminating {
                    words.push("terminating".into());
                }
                words.push(if b.local { "local" } else { "remote" }.into());
                let _ = writeln!(out, "    {}:{} {}", b.addr, b.port, words.join(" "));
            }
        }
        for s in &svc.skipped {
            let _ = writeln!(out, "  skipped {}: {}", s.what, s.why);
        }
    }
    out
}
