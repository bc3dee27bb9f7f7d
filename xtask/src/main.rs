//! `cargo xtask`: the project's own commands (setup, eBPF build, tests, benchmarks, the lab).

mod bench;
mod buildlog;
mod demo;
mod demo_cluster;
mod ebpf;
mod image;
mod lab;
mod setup;
mod test;
mod util;
mod weftnode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "weft's build, test and lab commands")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install every Debian package and cargo tool this project needs (idempotent).
    Setup(setup::Args),
    /// Build the eBPF object that the agent embeds.
    BuildEbpf(ebpf::Args),
    /// Run the test suites: setup, unit, eBPF packet, netns and lab tests.
    Test(test::Args),
    /// Run the benchmarks and print ratios against peers measured in the same run.
    Bench(Box<bench::Args>),
    /// The quickstart: pods in network namespaces wired by weft, with ping, HTTP and cleanup.
    Demo(demo::Args),
    /// weft's container image as one archive (static weft and Debian's nft, OCI and Docker
    /// formats in one tar), built without a daemon: target/image/weft-VERSION.tar.
    Image(image::Args),
    /// The lab: a real Kubernetes control plane and nodes in network namespaces.
    /// Arguments go to `weft-lab` unchanged (so `--help` shows the lab's own help).
    #[command(disable_help_flag = true)]
    Lab(lab::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup(a) => setup::run(a),
        Cmd::BuildEbpf(a) => ebpf::run(a),
        Cmd::Test(a) => test::run(a),
        Cmd::Bench(a) => bench::run(*a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Lab(a) => lab::run(a),
        Cmd::Image(a) => image::run(a),
    }
}
