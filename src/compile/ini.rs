//! The one writer of systemd's INI syntax (unit files, `.nspawn`,
//! `.network`, `.netdev`, drop-ins).
//!
//! Values reach this point already validated, so none should contain a
//! control character. As a last line of defence the writer escapes any
//! that do, so no value can ever start a new line, section or setting.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};

/// A file being written: each call appends its lines at once, so that a
/// file costs one growing string rather than a list of sections, entries
/// and owned values rendered at the end (a host of 1,000 containers writes
/// some 3,000 of these per plan the web editor asks for).
#[derive(Debug, Default)]
pub struct Ini {
    out: String,
    in_section: bool,
    /// Where each value is formatted before it is escaped; kept between
    /// values so that formatting one allocates nothing.
    value: String,
}

impl Ini {
    pub fn new(header: &[String]) -> Ini {
        let mut out = String::with_capacity(512);
        for line in header {
            out.push_str("# ");
            out.push_str(&escape_controls(line));
            out.push('\n');
        }
        Ini {
            out,
            in_section: false,
            value: String::new(),
        }
    }

    /// Starts a section; later `set` calls go into it. A section may appear
    /// more than once (`[IPv6Prefix]` per prefix).
    pub fn section(&mut self, name: &'static str) -> &mut Ini {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        self.out.push('[');
        self.out.push_str(name);
        self.out.push_str("]\n");
        self.in_section = true;
        self
    }

    pub fn set(&mut self, key: &'static str, value: impl Display) -> &mut Ini {
        if self.in_section {
            self.value.clear();
            let _ = write!(self.value, "{value}");
            self.out.push_str(key);
            self.out.push('=');
            self.out.push_str(&escape_controls(&self.value));
            self.out.push('\n');
        }
        self
    }

    pub fn render(self) -> String {
        self.out
    }
}

/// Replaces control characters with C escapes, and protects a trailing
/// backslash, which systemd would read as a line continuation. Values
/// reach here validated, so the common case borrows without copying.
pub fn escape_controls(value: &str) -> Cow<'_, str> {
    if !value.ends_with('\\') && !value.chars().any(char::is_control) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if out.ends_with('\\') {
        out.push('\\');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_in_a_value_cannot_start_a_new_setting() {
        let mut ini = Ini::new(&["header\nInjected=1".to_string()]);
        ini.section("Exec").set("Hostname", "web\nPrivateUsers=no");
        let text = ini.render();
        assert_eq!(
            text,
            "# header\\nInjected=1\n\n[Exec]\nHostname=web\\nPrivateUsers=no\n"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.contains('=') && !l.starts_with('#'))
                .count(),
            1
        );
    }

    #[test]
    fn a_trailing_backslash_is_not_a_continuation() {
        assert_eq!(escape_controls("a\\"), "a\\\\");
    }
}
