//! A container's journal, streamed over SSE as `journalctl` writes it.
//! Only the running system has a journal to read: under another root the
//! API says so plainly instead of showing nothing.

use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use super::{ApiError, Shared};
use crate::model::Name;

pub const NOT_LIVE: &str = "logs need the live system: this root is not the running system, \
     so there is no journal of its containers to read";

/// Where a container's journal comes from.
pub trait JournalSource: Send + Sync {
    /// The command that prints the journal of `machine`, one entry a line,
    /// and keeps printing with `follow`; `None` when there is no journal.
    fn command(&self, machine: &str, follow: bool) -> Option<Command>;
}

/// No journal: a root that is not the running system.
pub struct NoJournal;

impl JournalSource for NoJournal {
    fn command(&self, _machine: &str, _follow: bool) -> Option<Command> {
        None
    }
}

/// `journalctl`: the machine's own journal while it runs (`-M`), else the
/// journal of its unit on the host (`-u systemd-nspawn@NAME.service`).
pub struct Journalctl;

impl JournalSource for Journalctl {
    fn command(&self, machine: &str, follow: bool) -> Option<Command> {
        let mut command = Command::new("journalctl");
        command.args(["-o", "short-iso", "--no-pager", "-n", "200"]);
        // machined keeps a state file for each registered machine.
        if Path::new(&crate::layout::machine_state_file(machine)).exists() {
            command.args(["-M", machine]);
        } else {
            command.arg("-u").arg(crate::layout::unit(machine));
        }
        if follow {
            command.arg("-f");
        }
        Some(command)
    }
}

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
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
    let Some(mut command) = state.config.journal.command(name.as_str(), query.follow) else {
        return Err(ApiError::conflict(NOT_LIVE));
    };
    let mut child = command
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
