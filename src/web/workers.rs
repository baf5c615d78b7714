//! Where `ctm serve` does its work: parsing, validating, compiling and
//! planning are CPU work that must never run on the async threads (one
//! slow request would stall every other, the page loads and the event
//! streams among them), nor without bound (a few hostile requests would
//! take every core).
//!
//! Work runs on blocking threads, at most as many at once as the lane it
//! is in allows; a request waits its turn in a short queue, and is turned
//! away with 503 and `Retry-After` when the queue is full or its turn does
//! not come soon. Large texts go through a lane of their own, one at a
//! time, so that they cannot crowd out the ordinary requests of the
//! editor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::Semaphore;

use super::ApiError;

/// A request body at least this large (a host file of some 2,500
/// containers; the editor's host of 1,000 sends about 220 KB) goes
/// through the lane for large work. Reading, validating and planning take
/// time linear in the text, so the size is the cost: a 900 KB text of
/// 100,000 properties, sent again and again, then takes one core at most,
/// and the editor's requests keep the others.
pub const LARGE: usize = 512 << 10;

/// How long a request may wait for its turn.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// How long a request waits for its answer. The work itself cannot be
/// stopped part-way; it goes on holding its place in the lane, so that
/// the number of threads at work stays bounded.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

struct Lane {
    name: &'static str,
    permits: Arc<Semaphore>,
    /// Requests admitted and not yet finished (waiting or working).
    admitted: AtomicUsize,
    /// How many may be admitted at once.
    limit: usize,
    /// Where the lane's work runs when not on the shared blocking threads.
    background: Option<Background>,
}

impl Lane {
    fn new(name: &'static str, workers: usize, queue: usize) -> Lane {
        Lane {
            name,
            permits: Arc::new(Semaphore::new(workers)),
            admitted: AtomicUsize::new(0),
            limit: workers + queue,
            background: None,
        }
    }

    /// A lane of one worker, on a thread of its own that the kernel runs
    /// only when the others leave it room.
    fn background(name: &'static str, queue: usize) -> Lane {
        Lane {
            background: Some(Background::start(name)),
            ..Lane::new(name, 1, queue)
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread at a lower CPU priority (nice 10 more than the server's:
/// about a tenth of an ordinary thread's share when both want a core).
/// Large requests run there, so that a client that sends them without
/// pause slows the editor's ordinary requests as little as the kernel
/// allows. A thread of its own because a thread's priority cannot be raised again without
/// privilege, and the shared blocking threads serve every lane.
struct Background {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl Background {
    fn start(name: &'static str) -> Background {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name(format!("ctm-{name}"))
            .spawn(move || {
                lower_priority();
                for job in queue {
                    // A job that panics answers 500 (its sender is
                    // dropped); the thread goes on with the next.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        if let Err(e) = started {
            // Without the thread, its jobs are answered 500 (a dropped
            // sender): say why once.
            eprintln!("ctm serve: cannot start the {name} worker thread: {e}");
        }
        Background {
            jobs: std::sync::Mutex::new(jobs),
        }
    }

    fn send(&self, job: Job) -> bool {
        self.jobs
            .lock()
            .map(|jobs| jobs.send(job).is_ok())
            .unwrap_or(false)
    }
}

/// Lowers the calling thread's CPU priority (Linux's nice values are per
/// thread). Best effort: if the kernel refuses, the work runs as before.
fn lower_priority() {
    // SAFETY: getpriority and setpriority only read their integer
    // arguments; `0` names the calling thread.
    unsafe {
        let now = nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0);
        let _ = nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, (now + 10).min(19));
    }
}

pub struct Workers {
    ordinary: Lane,
    large: Lane,
    /// Work that reaches other hosts (the fleet page).
    remote: Lane,
}

impl Default for Workers {
    /// As many ordinary workers as cores, a queue four times that; one
    /// large worker with a queue of two; two remote workers with a queue
    /// of four.
    fn default() -> Workers {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Workers {
            ordinary: Lane::new("ordinary", cores, 4 * cores),
            large: Lane::background("large", 2),
            remote: Lane::new("remote", 2, 4),
        }
    }
}

fn lane_full(lane: &Lane) -> ApiError {
    busy(format!(
        "ctm serve is busy: {} requests of the {} kind are in hand; try again",
        lane.limit, lane.name
    ))
}

fn busy(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(REFUSAL_DELAY.as_secs())
}

/// How long a refusal for a full lane is held before it is sent: the
/// `Retry-After` it carries. A client that sends again as soon as it is
/// answered would otherwise turn each cheap refusal into another request,
/// and on two cores accepting and answering them is what slowed the
/// editor's own requests (docs/benchmarks.md, "Hostile load"); held, it
/// costs the server a timer and an idle socket.
pub const REFUSAL_DELAY: Duration = Duration::from_secs(1);

/// How many requests a second the server starts, and how many it starts
/// at once after a quiet spell. The editor sends a few a second (a plan
/// per pause in typing, its pages' assets); a client that sends the next
/// request the moment the last is answered sends thousands, each cheap
/// for the server but, on two cores shared with that client, together a
/// core taken from the editor's own plans (docs/benchmarks.md, "Hostile
/// load"). Beyond the pace a request waits for its turn on a timer.
const PACE_PER_SECOND: u32 = 200;
const PACE_BURST: u32 = 50;
/// Requests waiting for their turn at most; more are refused (held).
const PACE_WAITING: usize = 64;

/// Starts requests at [`PACE_PER_SECOND`], a token bucket kept as the
/// time the next request may start.
#[derive(Debug)]
pub struct Pace {
    state: std::sync::Mutex<PaceState>,
}

#[derive(Debug)]
struct PaceState {
    next: std::time::Instant,
    waiting: usize,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            state: std::sync::Mutex::new(PaceState {
                next: std::time::Instant::now(),
                waiting: 0,
            }),
        }
    }
}

/// Counts a request out of the waiting ones however its wait ends (a
/// client that goes away drops it mid-sleep).
struct Waiting<'a>(&'a Pace);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

impl Pace {
    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns when the request may start; a held 503 when too many wait.
    pub async fn admit(&self) -> Result<(), ApiError> {
        let interval = Duration::from_secs(1) / PACE_PER_SECOND;
        // Decided under the lock, waited for after it.
        let wait: Result<Option<Duration>, ()> = {
            let mut state = self.lock();
            let now = std::time::Instant::now();
            // Unused turns of a quiet spell make the burst, no more.
            let earliest = now.checked_sub(interval * PACE_BURST).unwrap_or(now);
            if state.next < earliest {
                state.next = earliest;
            }
            if state.next > now && state.waiting >= PACE_WAITING {
                Err(())
            } else {
                let turn = state.next;
                state.next += interval;
                if turn > now {
                    state.waiting += 1;
                    Ok(Some(turn - now))
                } else {
                    Ok(None)
                }
            }
        };
        match wait {
            Err(()) => Err(held(busy(format!(
                "ctm serve is busy: {PACE_WAITING} requests are waiting for their turn; try again"
            )))
            .await),
            Ok(None) => Ok(()),
            Ok(Some(wait)) => {
                let _waiting = Waiting(self);
                tokio::time::sleep(wait).await;
                Ok(())
            }
        }
    }
}

/// `refusal`, once [`REFUSAL_DELAY`] has passed.
pub async fn held(refusal: ApiError) -> ApiError {
    tokio::time::sleep(REFUSAL_DELAY).await;
    refusal
}

/// Counts a request out of its lane however it ends.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Workers {
    /// Runs `work` on a blocking thread in the lane for a request of
    /// `size` bytes, once it is its turn; 503 when the lane is full.
    pub async fn run<T: Send + 'static>(
        &self,
        size: usize,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        run_in(self.lane_for(size), work).await
    }

    fn lane_for(&self, size: usize) -> &Lane {
        if size >= LARGE {
            &self.large
        } else {
            &self.ordinary
        }
    }

    /// The 503 that a request of `size` bytes would get now, its lane
    /// being full: answered before its body is read, since reading and
    /// decoding a body of megabytes only to turn it away is most of what
    /// a client sending them without pause costs the server.
    pub fn full_for(&self, size: usize) -> Option<ApiError> {
        let lane = self.lane_for(size);
        (lane.admitted.load(Ordering::SeqCst) >= lane.limit).then(|| lane_full(lane))
    }

    /// Runs `work`, which reaches other hosts, in the lane for that.
    pub async fn run_remote<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        run_in(&self.remote, work).await
    }

    /// Requests admitted and not finished, ordinary and large.
    pub fn in_hand(&self) -> (usize, usize) {
        (
            self.ordinary.admitted.load(Ordering::SeqCst),
            self.large.admitted.load(Ordering::SeqCst),
        )
    }
}

/// Runs `work` on a blocking thread of `lane` once it is its turn; 503
/// when the lane is full or the turn does not come soon.
async fn run_in<T: Send + 'static>(
    lane: &Lane,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if lane.admitted.fetch_add(1, Ordering::SeqCst) >= lane.limit {
        lane.admitted.fetch_sub(1, Ordering::SeqCst);
        return Err(held(lane_full(lane)).await);
    }
    let _admitted = Admitted(&lane.admitted);
    let permit = tokio::time::timeout(QUEUE_WAIT, lane.permits.clone().acquire_owned())
        .await
        .map_err(|_| {
            busy(format!(
                "ctm serve is busy: no {} worker was free within {} s; try again",
                lane.name,
                QUEUE_WAIT.as_secs()
            ))
        })?
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ctm serve is stopping"))?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job = move || {
        let _permit = permit;
        // A dropped receiver (the answer came too late) is no error here.
        let _ = answer.send(work());
    };
    match &lane.background {
        Some(background) => {
            if !background.send(Box::new(job)) {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the {} worker thread is gone", lane.name),
                ));
            }
        }
        None => drop(tokio::task::spawn_blocking(job)),
    }
    match tokio::time::timeout(ANSWER_WAIT, answered).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a worker thread failed before it answered",
        )),
        Err(_) => Err(busy(format!(
            "the request took longer than {} s; its work goes on, but its answer is dropped",
            ANSWER_WAIT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pace_lets_a_burst_through_then_spaces_requests_out() {
        let pace = Pace::default();
        // A fresh server has a burst's worth of turns (its start counts).
        let started = std::time::Instant::now();
        for _ in 0..PACE_BURST {
            pace.admit().await.unwrap();
        }
        let burst = started.elapsed();
        // Ten more wait for their turns: 50 ms at 200 a second.
        for _ in 0..10 {
            pace.admit().await.unwrap();
        }
        let paced = started.elapsed() - burst;
        assert!(
            paced >= Duration::from_millis(40),
            "ten requests past the burst started within {paced:?}"
        );
    }

    #[tokio::test]
    async fn more_than_the_waiting_limit_are_refused() {
        let pace = std::sync::Arc::new(Pace::default());
        {
            let mut state = pace.lock();
            state.next = std::time::Instant::now() + Duration::from_secs(60);
            state.waiting = PACE_WAITING;
        }
        let refused = pace.admit().await.unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_lane_turns_requests_away_and_the_other_lane_still_works() {
        let workers = Arc::new(Workers {
            ordinary: Lane::new("ordinary", 1, 1),
            large: Lane::new("large", 1, 0),
            remote: Lane::new("remote", 1, 0),
        });
        let gate = Arc::new(std::sync::Barrier::new(2));
        // One large request at work, held until the test lets it go.
        let held = {
            let (workers, gate) = (workers.clone(), gate.clone());
            tokio::spawn(async move {
                workers
                    .run(LARGE, move || {
                        gate.wait();
                        Ok(1)
                    })
                    .await
            })
        };
        while workers.in_hand().1 == 0 {
            tokio::task::yield_now().await;
        }
        // A body for the full lane is turned away before it is read.
        let early = workers.full_for(LARGE).expect("the large lane is full");
        assert_eq!(early.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(workers.full_for(10).is_none());
        let refused = workers.run(LARGE, || Ok(2)).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            refused.body["error"]
                .as_str()
                .unwrap()
                .contains("1 requests of the large kind")
        );
        // Ordinary requests are not held up by it.
        assert_eq!(workers.run(10, || Ok(3)).await.unwrap(), 3);
        gate.wait();
        assert_eq!(held.await.unwrap().unwrap(), 1);
        assert_eq!(workers.in_hand(), (0, 0));
        // A request's error comes back as it was.
        let e = workers
            .run(10, || Err::<(), _>(ApiError::bad_request("no")))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    fn nice() -> i32 {
        // SAFETY: reads the calling thread's nice value.
        unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_work_runs_at_a_lower_priority_and_outlives_a_panic() {
        let workers = Workers::default();
        let ours = nice();
        let large = workers.run(LARGE, || Ok(nice())).await.unwrap();
        assert_eq!(large, (ours + 10).min(19));
        assert_eq!(workers.run(10, || Ok(nice())).await.unwrap(), ours);
        let failed = workers
            .run(LARGE, || -> Result<(), ApiError> {
                panic!("a bug in a use case")
            })
            .await
            .unwrap_err();
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(workers.run(LARGE, || Ok(4)).await.unwrap(), 4);
    }
}
