//! A hostile value must never reach a generated file: a newline or other
//! control character in any string of a host file is an error, whatever
//! the position, in both syntaxes.

mod support;

use ctm::config::{self, Format, Source};
use ctm::lock::Lock;
use ctm::validate;
use support::*;

/// Byte ranges of the contents of every "..." string in a text.
fn string_literals(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (start, c) {
            (None, '"') => start = Some(i + 1),
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(s), '"') if !escaped => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
        escaped = false;
    }
    out
}

fn codes(text: &str, format: Format) -> Vec<&'static str> {
    let (doc, mut diagnostics) = config::parse(&Source::new("hostile", text, format));
    if let Err(more) = validate::validate(&doc, &Lock::empty()) {
        diagnostics.extend(more);
    }
    diagnostics.iter().map(|d| d.code).collect()
}

fn every_string_rejects_a_newline(example: &str, format: Format) {
    let text = std::fs::read_to_string(repo().join("examples").join(example)).unwrap();
    let literals = string_literals(&text);
    assert!(literals.len() > 20, "expected many strings in {example}");
    for (start, end) in literals {
        // An escaped newline inside the string, then something that would
        // be a new setting if it ever reached a unit file.
        let hostile = format!(
            "{}{}\\nPrivateUsers=no{}",
            &text[..start],
            &text[start..end],
            &text[end..]
        );
        let codes = codes(&hostile, format);
        assert!(
            codes.contains(&"ctm::control-character"),
            "a newline in {:?} of {example} was not reported as a control character; got {codes:?}",
            &text[start..end]
        );
    }
}

#[test]
fn every_kdl_string_rejects_a_newline() {
    every_string_rejects_a_newline("homelab.kdl", Format::Kdl);
}

#[test]
fn every_toml_string_rejects_a_newline() {
    every_string_rejects_a_newline("homelab.toml", Format::Toml);
}

#[test]
fn other_control_characters_are_rejected_too() {
    for escape in ["\\t", "\\r", "\\u{1b}", "\\u{0}"] {
        let text = format!(
            "image \"img\" {{ directory \"/srv/img\"; }}\ncontainer \"web{escape}x\" {{ image \"img\"; }}\n"
        );
        assert!(
            codes(&text, Format::Kdl).contains(&"ctm::control-character"),
            "{escape} passed"
        );
    }
}
