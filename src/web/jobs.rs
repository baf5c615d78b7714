//! Applies, rollbacks and a container's start, stop and restart, run one
//! at a time on a thread of their own and streamed to the browser over
//! SSE, step by step, from the use case's own progress lines.
//!
//! A job first checks what it was asked to do against the host under the
//! exclusive lock (the plan's fingerprint, conflicts); the request gets
//! that answer (accepted, or refused with the reason). From then on the
//! job writes events, which `GET /api/jobs/{id}` replays from the start
//! and then follows, so a page that connects late misses nothing.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use super::{ApiError, Shared};
use crate::engine::Event as UseCaseEvent;

/// Jobs kept for replay after they end.
const KEPT: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `progress`, `waiting` (for confirmation), `done` or `failed`.
    pub kind: &'static str,
    pub message: String,
    /// Extra fields: the generation, the confirmation deadline.
    #[serde(flatten)]
    pub data: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Changing the host: the server waits for this before it exits.
    Switching,
    /// Applied, waiting for `confirm` or the deadline.
    Waiting,
    Ended,
}

pub struct Job {
    pub id: u64,
    pub kind: &'static str,
    state: Mutex<(Vec<Event>, Phase)>,
    changed: Notify,
}

impl Job {
    fn lock(&self) -> MutexGuard<'_, (Vec<Event>, Phase)> {
        // Events are only ever pushed whole: a poisoned lock holds no
        // half-written state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: Event, phase: Option<Phase>) {
        let mut state = self.lock();
        state.0.push(event);
        if let Some(phase) = phase {
            state.1 = phase;
        }
        drop(state);
        self.changed.notify_waiters();
    }

    pub fn phase(&self) -> Phase {
        self.lock().1
    }

    pub fn events(&self) -> Vec<Event> {
        self.lock().0.clone()
    }
}

/// What a running job writes to its stream.
pub struct Reporter {
    job: Arc<Job>,
}

impl Reporter {
    pub fn say(&self, message: &str) {
        self.push("progress", message, BTreeMap::new(), None);
    }

    /// An event of the use case: its text as the message, and the event
    /// itself, typed, under `event`. Waiting for a confirmation is a
    /// `waiting` event with its `deadline`.
    pub fn event(&self, event: UseCaseEvent) {
        let mut data = BTreeMap::from([("event".to_string(), json!(event))]);
        match &event {
            UseCaseEvent::ConfirmBefore { deadline, .. } => {
                data.insert("deadline".into(), json!(deadline));
                self.push("waiting", &event.to_string(), data, Some(Phase::Waiting));
            }
            _ => self.push("progress", &event.to_string(), data, None),
        }
    }

    pub fn done(&self, message: &str, generation: Option<u64>) {
        let data = BTreeMap::from([("generation".to_string(), json!(generation))]);
        self.push("done", message, data, Some(Phase::Ended));
    }

    pub fn failed(&self, message: &str) {
        self.push("failed", message, BTreeMap::new(), Some(Phase::Ended));
    }

    fn push(
        &self,
        kind: &'static str,
        message: &str,
        data: BTreeMap<String, Value>,
        phase: Option<Phase>,
    ) {
        self.job.push(
            Event {
                kind,
                message: message.to_string(),
                data,
            },
            phase,
        );
    }
}

/// The job's answer to the request that started it.
pub struct Ready(oneshot::Sender<Result<(), ApiError>>);

impl Ready {
    pub fn accept(self) {
        let _ = self.0.send(Ok(()));
    }

    pub fn refuse(self, error: ApiError) {
        let _ = self.0.send(Err(error));
    }
}

#[derive(Default)]
pub struct Jobs {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    jobs: BTreeMap<u64, Arc<Job>>,
}

impl Jobs {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.inner().jobs.get(&id).cloned()
    }

    /// The job that has not ended, if any.
    pub fn running(&self) -> Option<Arc<Job>> {
        self.inner()
            .jobs
            .values()
            .find(|j| j.phase() != Phase::Ended)
            .cloned()
    }

    /// Starts `work` on its own thread, unless another job is running.
    /// Resolves when the job has accepted (its id) or refused the request.
    pub async fn start(
        &self,
        kind: &'static str,
        work: impl FnOnce(Ready, &Reporter) + Send + 'static,
    ) -> Result<u64, ApiError> {
        let job = {
            let mut inner = self.inner();
            if let Some(other) = inner.jobs.values().find(|j| j.phase() != Phase::Ended) {
                return Err(ApiError::conflict(format!(
                    "{} {} is still running; wait for it to end",
                    other.kind, other.id
                ))
                .with("job", json!(other.id)));
            }
            inner.next += 1;
            let job = Arc::new(Job {
                id: inner.next,
                kind,
                state: Mutex::new((Vec::new(), Phase::Switching)),
                changed: Notify::new(),
            });
            inner.jobs.insert(job.id, job.clone());
            while inner.jobs.len() > KEPT {
                inner.jobs.pop_first();
            }
            job
        };
        let (tx, rx) = oneshot::channel();
        let reporter = Reporter { job: job.clone() };
        let spawned = std::thread::Builder::new()
            .name(format!("ctm-{kind}"))
            .spawn(move || {
                work(Ready(tx), &reporter);
                if reporter.job.phase() != Phase::Ended {
                    reporter.failed("the job ended without saying how");
                }
            });
        let answer = match spawned {
            Ok(_) => rx.await.unwrap_or_else(|_| {
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the job ended before it started",
                ))
            }),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start a thread: {e}"),
            )),
        };
        match answer {
            Ok(()) => Ok(job.id),
            Err(e) => {
                // A refused job never ran: forget it.
                job.push(
                    Event {
                        kind: "failed",
                        message: e.body["error"].as_str().unwrap_or_default().to_string(),
                        data: BTreeMap::new(),
                    },
                    Some(Phase::Ended),
                );
                self.inner().jobs.remove(&job.id);
                Err(e)
            }
        }
    }

    /// Waits until no job is changing the host (for a clean shutdown).
    pub async fn idle(&self) {
        while self
            .inner()
            .jobs
            .values()
            .any(|j| j.phase() == Phase::Switching)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `GET /api/jobs/{id}`: the job's events so far, then each new one, as
/// server-sent events named after their kind; the stream ends with the job.
pub async fn events(
    State(state): State<Shared>,
    Path(id): Path<u64>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let job = state
        .jobs
        .get(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("there is no job {id}")))?;
    let stream = futures_util::stream::unfold((job, 0usize), |(job, sent)| async move {
        loop {
            // Registered before looking, so a push in between still wakes us.
            let changed = job.changed.notified();
            let (event, ended) = {
                let state = job.lock();
                (state.0.get(sent).cloned(), state.1 == Phase::Ended)
            };
            if let Some(event) = event {
                drop(changed);
                let sse = SseEvent::default()
                    .event(event.kind)
                    .json_data(&event)
                    .unwrap_or_else(|_| SseEvent::default().event("failed"));
                return Some((Ok(sse), (job, sent + 1)));
            }
            if ended {
                return None;
            }
            changed.await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
