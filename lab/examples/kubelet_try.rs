//! Runs the kubelet stand-in alone: `kubelet_try CONFIG.json` (the same JSON as
//! `weft-lab kubelet --config`), for trying it against any apiserver outside the lab.

use weft_lab::kubelet;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: kubelet_try CONFIG.json"))?;
    let cfg: kubelet::Config = serde_json::from_slice(&std::fs::read(&path)?)?;
    tokio::runtime::Runtime::new()?.block_on(kubelet::run(cfg))
}
