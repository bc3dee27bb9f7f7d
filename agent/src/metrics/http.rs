//! The agent's HTTP endpoint: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz`
//! (every start-up stage done; the DaemonSet's readiness probe).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use super::collector::DatapathCollector;
use super::{Metrics, Readiness, StatsSource};

struct Shared {
    registry: Registry,
    readiness: Arc<Readiness>,
}

/// Bind `addr` and serve until the task is dropped. Fails at once if the address is taken.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stats: Option<StatsSource>,
    readiness: Arc<Readiness>,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    if let Some(stats) = stats {
        registry.register_collector(Box::new(DatapathCollector(stats)));
    }
    let shared = Arc::new(Shared {
        registry,
        readiness,
    });
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(async move { axum::serve(listener, app).await })
}

async fn metrics_handler(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let pending = s.readiness.pending();
    if pending.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        let names: Vec<_> = pending.iter().map(|p| p.name()).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for: {}\n", names.join(", ")),
        )
    }
}
