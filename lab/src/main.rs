//! `weft-lab`: builds upstream Kubernetes parts, brings up the lab topology and control plane,
//! and runs the per-node kubelet stand-in.

fn main() {
    eprintln!("weft-lab: not implemented yet");
    std::process::exit(1);
}
