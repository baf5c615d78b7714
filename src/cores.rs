//! Work split into runs, one a core; two steps side by side.
//!
//! Where a step's items are independent (containers to compile, files to
//! hash, paths to look at or write), consecutive runs of them go to scoped
//! threads and their results come back in run order, so what a caller
//! builds from them is what one loop over all the items would build.

/// `f` over consecutive runs of `items`, in run order: one run a core, at
/// most `max` runs, and none shorter than `per_run` items (below that a
/// thread costs more than it saves; too few items make one run, on this
/// thread).
pub fn in_runs<T: Sync, R: Send>(
    items: &[T],
    per_run: usize,
    max: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    in_n_runs(items, runs(items.len(), per_run, max), f)
}

/// How many runs [`in_runs`] makes of `items` items: one a core, at most
/// `max`, none shorter than `per_run` (0 or 1: a single run).
pub fn runs(items: usize, per_run: usize, max: usize) -> usize {
    cores().min(max).min(items / per_run.max(1))
}

/// The cores this process may use, asked once: the standard library reads
/// the cgroup's CPU quota from three files each time (half a millisecond
/// of a 15 ms plan, strace).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `there` on another thread while this one runs `here`: two steps that
/// do not need each other. A panic in `there` panics here.
pub fn side_by_side<A: Send, B>(
    there: impl FnOnce() -> A + Send,
    here: impl FnOnce() -> B,
) -> (A, B) {
    std::thread::scope(|scope| {
        let there = scope.spawn(there);
        let here = here();
        let there = there
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (there, here)
    })
}

/// [`in_runs`] in exactly `runs` runs (at least one; fewer if there are
/// fewer items). A run that panics panics here.
pub fn in_n_runs<T: Sync, R: Send>(
    items: &[T],
    runs: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    if runs <= 1 || items.len() <= 1 {
        return vec![f(items)];
    }
    let f = &f;
    let mut chunks: Vec<&[T]> = items.chunks(items.len().div_ceil(runs)).collect();
    // The last run is this thread's own, which would otherwise only wait.
    let last = chunks.pop();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|run| scope.spawn(move || f(run)))
            .collect();
        let last = last.map(f);
        let mut results: Vec<R> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        results.extend(last);
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_every_item_once_in_order() {
        let items: Vec<u32> = (0..1000).collect();
        for runs in [0, 1, 2, 3, 7, 1000, 5000] {
            let sums = in_n_runs(&items, runs, |run| run.to_vec());
            assert!(sums.len() <= runs.max(1), "{runs} runs: {}", sums.len());
            assert_eq!(sums.concat(), items, "{runs} runs");
        }
        assert_eq!(in_n_runs(&[] as &[u32], 4, |run| run.len()), vec![0]);
        // Too few items for a second run: one, on this thread.
        let here = std::thread::current().id();
        let ids = in_runs(&items, 1000, 8, |_| std::thread::current().id());
        assert_eq!(ids, vec![here]);
        // Several runs: the last on this thread, the others elsewhere.
        let ids = in_n_runs(&items, 3, |_| std::thread::current().id());
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[2], here);
        assert!(ids[..2].iter().all(|id| *id != here));
    }

    #[test]
    fn side_by_side_gives_both_results_and_runs_there_elsewhere() {
        let here = std::thread::current().id();
        let (there, mine) = side_by_side(|| std::thread::current().id(), || 2 + 2);
        assert_ne!(there, here);
        assert_eq!(mine, 4);
    }

    #[test]
    #[should_panic(expected = "there")]
    fn a_panic_on_the_other_side_is_raised_again() {
        side_by_side(|| panic!("there"), || ());
    }

    #[test]
    #[should_panic(expected = "run of 3")]
    fn a_panic_in_a_run_is_raised_again() {
        let items = [1, 2, 3, 4, 5, 6];
        in_n_runs(&items, 2, |run| {
            if run.contains(&3) {
                panic!("run of 3");
            }
        });
    }
}
