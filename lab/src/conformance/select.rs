//! Which upstream tests a conformance run selects: the `Conformance && sig-network` label
//! filter by default, the user's `--focus`/`--skip`, and the tests the lab skips by default
//! because it lacks what they need, each with its reason.

use regex::Regex;

/// The default selection: the 47 network conformance tests of v1.36.
pub const DEFAULT_LABEL_FILTER: &str = "Conformance && sig-network";

/// The upstream suites `weft-lab conformance` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// `Conformance && sig-network`: the 47 network conformance tests.
    Conformance,
    /// The NetworkPolicy suite of `test/e2e/network/netpol`: the `Netpol` specs (TCP, UDP,
    /// SCTP, `Feature:NetworkPolicy`) and the two `Netpol API` specs; 50 in v1.36.
    Netpol,
}

impl Suite {
    pub fn label_filter(self) -> &'static str {
        match self {
            Self::Conformance => DEFAULT_LABEL_FILTER,
            Self::Netpol => "sig-network",
        }
    }

    pub fn focus(self) -> Option<&'static str> {
        match self {
            Self::Conformance => None,
            Self::Netpol => Some(r"\[sig-network\] Netpol"),
        }
    }
}

/// What the lab offers that some tests depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabFacts {
    /// Every node's CNI configuration chains the `portmap` plugin (hostPort).
    pub portmap_chained: bool,
    /// The kernel speaks SCTP.
    pub sctp: bool,
}

/// A test the lab skips unless asked for by `--focus`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultSkip {
    /// Matches the test's full name.
    pub pattern: &'static str,
    pub reason: &'static str,
}

/// The default skips for a lab with these facts.
pub fn default_skips(facts: LabFacts) -> Vec<DefaultSkip> {
    let mut v = vec![];
    if !facts.portmap_chained {
        v.push(DefaultSkip {
            pattern: r"\[sig-network\] HostPort ",
            reason:
                "hostPort needs the CNI portmap plugin, which the nodes' CNI config does not chain",
        });
    }
    if !facts.sctp {
        v.push(DefaultSkip {
            pattern: r"\[Feature:SCTPConnectivity\]",
            reason: "SCTP connectivity needs SCTP in the kernel (CONFIG_IP_SCTP is not set on this machine)",
        });
    }
    v
}

/// One test the selection found, and whether the lab skips it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub name: String,
    /// Why the lab skips it; None: it runs.
    pub skip_reason: Option<String>,
}

/// Applies the default skips to the tests the filters selected. A test the user focused on by
/// `--focus` is never skipped by default.
pub fn apply(names: &[String], skips: &[DefaultSkip], user_focus: Option<&str>) -> Vec<Selected> {
    let focus = user_focus.and_then(|f| Regex::new(f).ok());
    names
        .iter()
        .map(|name| {
            let focused = focus.as_ref().is_some_and(|f| f.is_match(name));
            let skip_reason = skips
                .iter()
                .find(|s| !focused && Regex::new(s.pattern).is_ok_and(|r| r.is_match(name)))
                .map(|s| s.reason.to_string());
            Selected {
                name: name.clone(),
                skip_reason,
            }
        })
        .collect()
}

/// A ginkgo `--skip` regex matching exactly these test names (None for none). ginkgo matches
/// against the suite's description, a space and the test's full name.
pub fn skip_regex(names: &[&str]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let alts: Vec<String> = names
        .iter()
        .map(|n| format!("(?:^| ){}$", regex::escape(n)))
        .collect();
    Some(alts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTPORT: &str = "[sig-network] HostPort validates that there is no conflict between pods with same hostPort but different hostIP and protocol [LinuxOnly] [Conformance]";
    const BASIC: &str =
        "[sig-network] Services should serve a basic endpoint from pods  [Conformance]";

    #[test]
    fn hostport_is_skipped_only_without_portmap() {
        let names = vec![HOSTPORT.to_string(), BASIC.to_string()];
        let with = apply(
            &names,
            &default_skips(LabFacts {
                portmap_chained: true,
                sctp: true,
            }),
            None,
        );
        assert!(with.iter().all(|s| s.skip_reason.is_none()));
        let without = apply(
            &names,
            &default_skips(LabFacts {
                portmap_chained: false,
                sctp: true,
            }),
            None,
        );
        assert!(without[0]
            .skip_reason
            .as_deref()
            .unwrap()
            .contains("portmap"));
        assert_eq!(without[1].skip_reason, None);
        // Asked for by name, it runs anyway.
        let focused = apply(
            &names,
            &default_skips(LabFacts {
                portmap_chained: false,
                sctp: true,
            }),
            Some("HostPort"),
        );
        assert_eq!(focused[0].skip_reason, None);
    }

    #[test]
    fn skip_regex_matches_exactly_the_named_tests() {
        let re = Regex::new(&skip_regex(&[HOSTPORT, "a.b (c)"]).unwrap()).unwrap();
        // What ginkgo matches: the suite description, a space, the full name.
        let m = |name: &str| re.is_match(&format!("Kubernetes e2e suite {name}"));
        assert!(m(HOSTPORT));
        assert!(m("a.b (c)"));
        assert!(!m("axb (c)"));
        assert!(!m("xa.b (c)"));
        assert!(!m(BASIC));
        assert_eq!(skip_regex(&[]), None);
    }

    #[test]
    fn sctp_connectivity_is_skipped_only_without_sctp() {
        let sctp = "[sig-network] Netpol [Feature:SCTPConnectivity] [LinuxOnly] NetworkPolicy between server and client using SCTP should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]";
        let tcp_sctp_rule = "[sig-network] Netpol NetworkPolicy between server and client should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP [Feature:NetworkPolicy]";
        let names = vec![sctp.to_string(), tcp_sctp_rule.to_string()];
        let without = apply(
            &names,
            &default_skips(LabFacts {
                portmap_chained: true,
                sctp: false,
            }),
            None,
        );
        assert!(without[0]
            .skip_reason
            .as_deref()
            .is_some_and(|r| r.contains("CONFIG_IP_SCTP")));
        assert_eq!(
            without[1].skip_reason, None,
            "TCP probes of an SCTP rule run without SCTP"
        );
        let with = apply(
            &names,
            &default_skips(LabFacts {
                portmap_chained: true,
                sctp: true,
            }),
            None,
        );
        assert!(with.iter().all(|s| s.skip_reason.is_none()));
    }

    #[test]
    fn the_netpol_suite_focuses_on_the_netpol_specs() {
        let focus = regex::Regex::new(Suite::Netpol.focus().unwrap()).unwrap();
        assert!(focus.is_match(
            "[sig-network] Netpol API should support creating NetworkPolicy API operations"
        ));
        assert!(focus.is_match("[sig-network] Netpol [LinuxOnly] NetworkPolicy between server and client using UDP should enforce policy based on Ports [Feature:NetworkPolicy]"));
        assert!(!focus.is_match(
            "[sig-network] Services should serve a basic endpoint from pods  [Conformance]"
        ));
        assert_eq!(Suite::Conformance.label_filter(), DEFAULT_LABEL_FILTER);
    }
}
