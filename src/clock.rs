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

/// A number of whole seconds to wait, from 1 up to [`Timeout::MAX`]: a
/// confirmation timeout, a lock timeout. Parsed once, so that a deadline
/// computed from it (`now + seconds`) can neither overflow nor wrap into
/// the past.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct Timeout(u64);

impl Timeout {
    /// Seven days: far beyond any wait a person means, far below any
    /// overflow.
    pub const MAX: u64 = 7 * 24 * 60 * 60;

    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    /// The Unix time this long after now.
    pub fn deadline(self) -> u64 {
        now_unix() + self.0
    }
}

impl TryFrom<u64> for Timeout {
    type Error = String;

    fn try_from(seconds: u64) -> Result<Timeout, String> {
        match seconds {
            0 => Err("a timeout must be at least 1 second".into()),
            s if s > Timeout::MAX => Err(format!(
                "a timeout of {s} seconds is longer than the most ctm waits ({} seconds, 7 days)",
                Timeout::MAX
            )),
            s => Ok(Timeout(s)),
        }
    }
}

impl From<Timeout> for u64 {
    fn from(timeout: Timeout) -> u64 {
        timeout.0
    }
}

impl std::str::FromStr for Timeout {
    type Err = String;

    /// Whole seconds, as `--confirm-timeout 120` takes them.
    fn from_str(text: &str) -> Result<Timeout, String> {
        let seconds: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number of seconds"))?;
        Timeout::try_from(seconds)
    }
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_between_one_second_and_seven_days() {
        assert_eq!("120".parse::<Timeout>().map(Timeout::seconds), Ok(120));
        assert_eq!(
            "0".parse::<Timeout>(),
            Err("a timeout must be at least 1 second".to_string())
        );
        assert!(
            "18446744073709551615"
                .parse::<Timeout>()
                .unwrap_err()
                .contains("longer than the most ctm waits")
        );
        assert!("604801".parse::<Timeout>().is_err());
        assert_eq!(
            "604800".parse::<Timeout>().map(Timeout::seconds),
            Ok(Timeout::MAX)
        );
        assert!(
            "-1".parse::<Timeout>()
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!("1e3".parse::<Timeout>().is_err());
    }

    #[test]
    fn a_timeout_in_json_is_checked_as_it_is_read() {
        let t: Result<Timeout, _> = serde_json::from_str("18446744073709551615");
        assert!(t.unwrap_err().to_string().contains("longer than"));
        assert_eq!(serde_json::from_str::<Timeout>("60").unwrap().seconds(), 60);
    }
}
