//! A container's journal, streamed over SSE as `journalctl` writes it
//! (the backend's `Journal` says how to read it). Only the running system
//! has a journal to read: under another root the API says so plainly
//! instead of showing nothing.

use std::convert::Infallible;
use std::process::Stdio;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use super::{ApiError, Shared};
use crate::backend::journal::LogQuery;
use crate::model::Name;
use crate::status::LOGS_NEED_LIVE;

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// As `ctm logs --since`.
    since: Option<String>,
    /// As `ctm logs --grep`.
    grep: Option<String>,
}

/// `GET /api/logs/{name}?follow=true`: `line` events, one per journal
/// line; an `end` event when journalctl exits (with its status when it
/// failed). The child is killed when the client goes away.
pub async fn stream(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let name = Name::parse(&name).map_err(ApiError::bad_request)?;
    let query = LogQuery {
        name: name.to_string(),
        follow: query.follow,
        lines: 200,
        unit: false,
        since: query.since,
        grep: query.grep,
    };
    query.check().map_err(ApiError::bad_request)?;
    let Some(command) = state.config.journal.command(&query) else {
        return Err(ApiError::conflict(LOGS_NEED_LIVE));
    };
    let mut child = Command::from(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot run journalctl: {e}"),
            )
        })?;
    let stdout = child.stdout.take().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "journalctl has no output",
        )
    })?;
    let lines = BufReader::new(stdout).lines();
    // The child rides along in the stream's state, so dropping the stream
    // (the client left) kills it.
    let stream = futures_util::stream::unfold(Some((lines, child)), |state| async move {
        let (mut lines, child) = state?;
        match lines.next_line().await {
            Ok(Some(line)) => Some((
                // SSE cannot carry a carriage return; a hostile line may hold one.
                Ok(Event::default().event("line").data(line.replace('\r', ""))),
                Some((lines, child)),
            )),
            Ok(None) | Err(_) => {
                let mut message = String::from("journalctl ended");
                if let Ok(output) = child.wait_with_output().await
                    && !output.status.success()
                {
                    message = format!(
                        "journalctl failed ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
                }
                Some((Ok(Event::default().event("end").data(message)), None))
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
