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
}

impl Lane {
    fn new(name: &'static str, workers: usize, queue: usize) -> Lane {
        Lane {
            name,
            permits: Arc::new(Semaphore::new(workers)),
            admitted: AtomicUsize::new(0),
            limit: workers + queue,
        }
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
            large: Lane::new("large", 1, 2),
            remote: Lane::new("remote", 2, 4),
        }
    }
}

fn busy(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(1)
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
        let lane = if size >= LARGE {
            &self.large
        } else {
            &self.ordinary
        };
        run_in(lane, work).await
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
        return Err(busy(format!(
            "ctm serve is busy: {} requests of the {} kind are in hand; try again",
            lane.limit, lane.name
        )));
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
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match tokio::time::timeout(ANSWER_WAIT, task).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("a worker thread failed: {e}"),
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
}
