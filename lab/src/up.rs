//! `weft-lab up`: topology, PKI, control plane, nodes, kube-proxy, kube-router (`--netpol`),
//! CoreDNS, in that order.
//! Any failure tears down what was made (the lab is never left half-up).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::spec::{Cni, LabSpec, Netpol, Proxy, CP_IP, OUTSIDE_IP};
use crate::state::{LabRecord, StateDir};
use crate::{addons, controlplane, down, images, netpol, nodes, pki, preflight, shellenv, status, topology, upstream, weft};

pub fn run(state: &StateDir, spec: LabSpec, images: &[PathBuf], keep_on_failure: bool) -> anyhow::Result<()> {
    preflight::require_root()?;
    preflight::require_no_lab(state)?;
    preflight::require_netns()?;
    let start = Instant::now();

    eprintln!("==> upstream binaries");
    let bins = upstream::ensure_built().context("building the upstream binaries")?;
    if spec.netpol == Netpol::KubeRouter {
        netpol::require_ipset()?;
        upstream::ensure_reference_built().context("building kube-router")?;
    }
    std::fs::create_dir_all(state.root())
        .with_context(|| format!("creating {}", state.root().display()))?;
    eprintln!("==> images");
    let images = images::load(state, images, spec.cni == Cni::Weft).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(state.root().join("images"));
    })?;
    let rec = LabRecord { spec, bins, images };
    if let Err(e) = bring_up(state, &rec) {
        if keep_on_failure {
            eprintln!("lab up failed: {e:#}\n==> left as it is (--keep-on-failure); `weft-lab down` removes it");
            return Err(e);
        }
        eprintln!("lab up failed: {e:#}\n==> tearing down what was made");
        if let Err(d) = down::run(state) {
            eprintln!("  teardown also failed: {d:#}");
        }
        return Err(e);
    }
    eprintln!("==> lab is up in {:.1} s", start.elapsed().as_secs_f64());
    status::print(state, &rec, false)?;
    Ok(())
}

fn bring_up(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    state.save_record(rec)?;
    shellenv::write_kubectl(state, rec)?;
    let plans = rec.spec.node_plans();

    eprintln!("==> topology: switch, control plane {CP_IP}, {} nodes, outside host {OUTSIDE_IP}", plans.len());
    topology::create(&plans)?;

    eprintln!("==> PKI and kubeconfigs");
    pki::generate(state, &nodes::node_names(&rec.spec))?;

    eprintln!("==> control plane");
    controlplane::start(state, rec)?;

    eprintln!("==> nodes");
    let kubelets = nodes::start_kubelets(state, rec)?;
    let cidrs = nodes::wait_for_pod_cidrs(state, rec, &kubelets)?;
    for (plan, cidr) in &cidrs {
        eprintln!("  {} {} pod CIDR {cidr}", plan.name, plan.ip);
    }
    match rec.spec.cni {
        Cni::Weft => {
            eprintln!("==> weft (kubectl apply -k deploy/lab, routing {})", rec.spec.routing.as_str());
            weft::install(state, rec)?;
            weft::wait_ready(state, rec, &plans, std::time::Duration::from_secs(180))?;
            topology::route_cp_to_pods(&cidrs)?;
        }
        Cni::Bridge => {
            topology::route_pod_cidrs(&cidrs)?;
            eprintln!("  static routes to the other nodes' pod CIDRs installed");
        }
    }
    nodes::start_kube_proxies(state, rec)?;
    netpol::start(state, rec)?;

    eprintln!("==> CoreDNS");
    // Services are routed by kube-proxy, or by weft's own load balancing (--proxy none).
    if rec.spec.proxy != Proxy::None || rec.spec.cni == Cni::Weft {
        addons::install_coredns(state, rec)?;
    } else {
        // CoreDNS reaches the API server through the `kubernetes` Service: with the bridge
        // CNI and no kube-proxy nothing routes Services, so CoreDNS never becomes ready.
        addons::apply_coredns(state, rec)?;
        eprintln!("  CoreDNS applied; with --cni bridge --proxy none nothing routes Services, it stays unready");
    }
    Ok(())
}
