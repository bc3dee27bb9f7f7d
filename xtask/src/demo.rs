//! `cargo xtask demo --single-node`: one node namespace running `weft agent`, three pods added
//! through the CNI plugin, ping and HTTP between them, the agent's view, then cleanup. (The
//! default `cargo xtask demo` is the cluster quickstart in `demo_cluster.rs`.)

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{setup, util, weftnode};

#[derive(clap::Args)]
pub struct Args {
    /// The small demo: one node, three pods, no cluster (what weft's CNI and same-node eBPF
    /// forwarding do on their own).
    #[arg(long)]
    single_node: bool,
    /// Nodes of the cluster demo.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

const NGINX_CONF: &str = r#"daemon off;
pid PREFIX/nginx.pid;
error_log stderr;
events {}
http {
  access_log off;
  client_body_temp_path PREFIX/body;
  proxy_temp_path PREFIX/proxy;
  fastcgi_temp_path PREFIX/fastcgi;
  uwsgi_temp_path PREFIX/uwsgi;
  scgi_temp_path PREFIX/scgi;
  server {
    listen 80;
    location / { return 200 "hello from $server_addr, you are $remote_addr\n"; }
  }
}
"#;

pub fn run(args: Args) -> Result<()> {
    util::require_root("the demo")?;
    setup::run(setup::Args::default())?;
    if !args.single_node {
        return crate::demo_cluster::run(args.nodes);
    }
    let bin = weftnode::build_weft(false)?;

    step("start `weft agent` in node namespace wd-node (pod CIDR 10.200.0.0/24)");
    let mut node = weftnode::WeftNode::start(&bin, "wd-node", "10.200.0.0/24")?;
    // Prove the pod-to-pod path is the eBPF one: the node does not route at all.
    util::run(util::in_netns("wd-node", "sysctl").args(["-qw", "net.ipv4.ip_forward=0"]))?;

    step("add three pods by running the CNI plugin as a container runtime does");
    let mut ips = Vec::new();
    for pod in ["wd-a", "wd-b", "wd-c"] {
        let ip = node.add_pod(pod)?;
        println!("  {pod:<6} {ip}");
        ips.push(ip);
    }

    step("wd-a pings wd-b");
    util::run(util::in_netns("wd-a", "ping").args(["-c", "3", "-i", "0.2"]).arg(ips[1].to_string()))?;

    step("nginx in wd-c; wd-a fetches a page (the server sees wd-a's own pod IP: no NAT)");
    let tmp = std::env::temp_dir().join(format!("weft-demo-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let conf = tmp.join("nginx.conf");
    std::fs::write(&conf, NGINX_CONF.replace("PREFIX", &tmp.to_string_lossy()))?;
    let mut nginx = util::in_netns("wd-c", "nginx")
        .arg("-c")
        .arg(&conf)
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    std::thread::sleep(Duration::from_millis(500));
    let res = util::run(
        util::in_netns("wd-a", "curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{}/", ips[2])),
    );
    let _ = nginx.kill();
    let _ = nginx.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    res?;

    step("the agent's view: `weft status`");
    util::run(&mut node.weft(&["status"]))?;

    step("remove the pods (CNI DEL) and the node");
    for pod in ["wd-a", "wd-b", "wd-c"] {
        node.del_pod(pod)?;
    }
    drop(node);
    println!("\ndone: every namespace, pin and process the demo made is gone");
    Ok(())
}

fn step(what: &str) {
    println!("\n==> {what}");
}
