//! The console of the container page: a login shell in a running
//! container on a pty of its own (`backend::pty`, made in the container's
//! devpts), relayed over a WebSocket. The guard holds the handshake to the
//! rules of a change (same site, the session's CSRF token as the `csrf`
//! query parameter); the command is the one `ctm shell` runs (the
//! `exec` use case). When the tab closes, or the socket drops, the
//! command and everything it started are killed.
//!
//! Frames: binary both ways is the terminal's bytes; a text frame from
//! the browser is `{"resize": [COLUMNS, ROWS]}`; the last text frame from
//! the server is `{"exit": CODE}` (or `{"error": MESSAGE}`), then it closes.

use std::fs::File;
use std::io::{Read as _, Write as _};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{ApiError, Shared};
use crate::backend::pty;
use crate::engine::containers::{ExecRequest, exec};
use crate::model::Name;

#[derive(Deserialize)]
pub struct ConsoleQuery {
    /// The terminal's first size.
    cols: Option<u16>,
    rows: Option<u16>,
}

#[derive(Deserialize)]
struct Control {
    resize: Option<(u16, u16)>,
}

/// `GET /api/containers/{name}/console`: upgrades to a WebSocket relaying
/// a login shell in the container; refuses before the upgrade (404, 409)
/// when there is nothing to run it in, and a request that is not a
/// WebSocket handshake as the web framework does (400, 426).
pub async fn console(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<ConsoleQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    state.may_change()?;
    let name = Name::parse(&name).map_err(ApiError::bad_request)?;
    let request = ExecRequest {
        name,
        argv: Vec::new(),
        user: None,
        workdir: None,
        term: Some("xterm-256color".into()),
    };
    let target = state.target();
    let exec = state
        .workers
        .run(0, move || {
            exec(&target, &request, &mut super::api::server_log).map_err(ApiError::from)
        })
        .await?;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let window = pty::size(
        query.cols.unwrap_or(80).clamp(2, 1000),
        query.rows.unwrap_or(24).clamp(2, 1000),
    );
    let spawned = tokio::task::spawn_blocking(move || {
        pty::spawn(exec.command, window, Some(&exec.container_root))
    })
    .await
    .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot start a shell in the container: {e}"),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| relay(socket, spawned)))
}

/// Ends the command and everything it started, however the relay ends.
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let leader = self.0;
        // Off the async threads: it reads /proc and may wait a little.
        std::thread::spawn(move || pty::kill_session(leader));
    }
}

async fn relay(mut socket: WebSocket, pty::Pty { master, mut child }: pty::Pty) {
    let _reaper = Reaper(child.id());
    let (Ok(reader), Ok(writer)) = (master.try_clone(), master.try_clone()) else {
        let _ = socket
            .send(Message::Text(
                json!({ "error": "cannot relay the terminal" })
                    .to_string()
                    .into(),
            ))
            .await;
        return;
    };
    // The pty's output, read on a thread of its own (reads block).
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    std::thread::spawn(move || read_pty(reader, out_tx));
    // What the browser types, written on another (a full pty blocks).
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || write_pty(writer, in_rx));
    loop {
        tokio::select! {
            output = out_rx.recv() => match output {
                Some(bytes) => {
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        return;
                    }
                }
                // Every holder of the pty's other end has closed it.
                None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if in_tx.send(bytes.to_vec()).is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Ok(Control { resize: Some((cols, rows)) }) = serde_json::from_str(&text) {
                        let _ = pty::resize(&master, pty::size(cols.clamp(2, 1000), rows.clamp(2, 1000)));
                    }
                }
                Some(Ok(_)) => {}
                // The tab closed: the reaper ends the command.
                Some(Err(_)) | None => return,
            },
        }
    }
    let code = tokio::task::spawn_blocking(move || child.wait())
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|status| status.code());
    let _ = socket
        .send(Message::Text(json!({ "exit": code }).to_string().into()))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}

fn read_pty(mut master: File, out: mpsc::Sender<Vec<u8>>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match master.read(&mut buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the command and everything under it closed the terminal.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.blocking_send(buffer[..n].to_vec()).is_err() {
                    return;
                }
            }
        }
    }
}

fn write_pty(mut master: File, input: std::sync::mpsc::Receiver<Vec<u8>>) {
    while let Ok(bytes) = input.recv() {
        if master.write_all(&bytes).is_err() {
            return;
        }
    }
}
