//! `GET /metrics`: the host and its containers in the Prometheus text
//! format (the `metrics` use case), for the login token or the metrics
//! token (docs/web.md has a scrape configuration).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};

pub async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let text = state
        .clone()
        .workers
        .run(0, move || {
            let metrics = crate::engine::metrics::metrics(
                &state.target(),
                &state.sources(),
                &mut super::api::server_log,
            )?;
            Ok(metrics.render())
        })
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
