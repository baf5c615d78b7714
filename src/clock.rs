//! The wall clock, in the forms ctm records: Unix seconds for deadlines and
//! RFC 3339 (UTC) for people.

use std::time::SystemTime;

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, as `2026-12-03T10:22:11Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A Unix time as RFC 3339 (UTC), for messages.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}
