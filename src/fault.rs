//! Fault injection for the crash-safety tests.
//!
//! With the `fault-injection` feature, every [`point`] an apply passes is
//! counted; when the count reaches `CTM_FAULT_AT`, the process aborts on
//! the spot, as a power cut or SIGKILL would stop it. `CTM_FAULT_TRACE=1`
//! prints each point as it passes, so a test can see how many there are.
//! `CTM_FAULT_SLOW_MS=N` sleeps N ms at every point, so that a test can
//! act while a switch is under way. `CTM_FAULT_PAUSE_AT=K` stops at point
//! K instead, for as long as the process
//! lives, so that a test can kill it from outside at a known step (as a
//! dropped session or an administrator would).
//! Without the feature, `point` compiles to nothing.

#[cfg(feature = "fault-injection")]
pub fn point(label: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var_os("CTM_FAULT_TRACE").is_some() {
        eprintln!("fault point {n}: {label}");
    }
    let at = std::env::var("CTM_FAULT_AT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if at == Some(n) {
        eprintln!("fault injected at point {n}: {label}");
        std::process::abort();
    }
    if let Some(ms) = std::env::var("CTM_FAULT_SLOW_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let pause = std::env::var("CTM_FAULT_PAUSE_AT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if pause == Some(n) {
        eprintln!("paused at fault point {n}: {label}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_label: &str) {}
