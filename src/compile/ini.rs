//! The one writer of systemd's INI syntax (unit files, `.nspawn`,
//! `.network`, `.netdev`, drop-ins).
//!
//! Values reach this point already validated, so none should contain a
//! control character. As a last line of defence the writer escapes any
//! that do, so no value can ever start a new line, section or setting.

use std::borrow::Cow;
use std::fmt::Write as _;

#[derive(Debug, Default)]
pub struct Ini {
    header: Vec<String>,
    sections: Vec<(&'static str, Vec<(&'static str, String)>)>,
}

impl Ini {
    pub fn new(header: &[String]) -> Ini {
        Ini {
            header: header.to_vec(),
            sections: Vec::new(),
        }
    }

    /// Starts a section; later `set` calls go into it. A section may appear
    /// more than once (`[IPv6Prefix]` per prefix).
    pub fn section(&mut self, name: &'static str) -> &mut Ini {
        self.sections.push((name, Vec::new()));
        self
    }

    pub fn set(&mut self, key: &'static str, value: impl ToString) -> &mut Ini {
        if let Some((_, entries)) = self.sections.last_mut() {
            entries.push((key, value.to_string()));
        }
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "# {}", escape_controls(line));
        }
        for (name, entries) in &self.sections {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "[{name}]");
            for (key, value) in entries {
                let _ = writeln!(out, "{key}={}", escape_controls(value));
            }
        }
        out
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
