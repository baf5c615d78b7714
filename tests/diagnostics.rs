//! One test per diagnostic (and per message variant): each feeds a small,
//! otherwise valid host file and checks the exact code, message and span
//! of what is reported, so that a regression in wording or in where an
//! error points is caught.
//!
//! Inputs are the shared prelude (a host with an uplink, one debootstrap
//! image, one dual-stack network) plus the offending lines. A span is
//! asserted by the text it covers and by where that text is: the first
//! occurrence of the expected text at or after an anchor.

use std::process::Command;

use ctm::config::{self, Format, Source};
use ctm::diagnostic::Diagnostic;
use ctm::lock::Lock;
use ctm::validate;
use miette::SourceSpan;

// ---- helpers ---------------------------------------------------------------

const PRELUDE: &str = r#"host "lab1" {
    uplink "eth0"
}
image "debian" {
    debootstrap suite="bookworm"
}
network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24"
    ipv6 "fd42:42::1/64"
}
"#;

const TOML_PRELUDE: &str = r#"[host]
name = "lab1"
uplink = "eth0"

[image.debian]
debootstrap = { suite = "bookworm" }

[network.lan]
bridge = "br-lan"
ipv4 = "10.42.0.1/24"
ipv6 = "fd42:42::1/64"
"#;

/// A valid ed25519 key (from examples/homelab.kdl).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMp0tjDw5Qn0NKqAdy/eivAd6YR/Tj3jVA/0sAkX+k4+ admin@laptop";

/// Parses, and validates if parsing found nothing; all diagnostics.
fn diagnose(text: &str, format: Format) -> Vec<Diagnostic> {
    diagnose_against(text, format, &Lock::empty())
}

fn diagnose_against(text: &str, format: Format, lock: &Lock) -> Vec<Diagnostic> {
    let (doc, diagnostics) = config::parse(&Source::new("test", text, format));
    if !diagnostics.is_empty() {
        return diagnostics;
    }
    match validate::validate(&doc, lock) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    }
}

/// As [`diagnose`], with the lock file read from `lock_text`; a lock that
/// does not parse gives its one diagnostic (whose span is in `lock_text`).
fn diagnose_with_lock(text: &str, format: Format, lock_text: &str) -> Vec<Diagnostic> {
    match Lock::parse(lock_text) {
        Ok(lock) => diagnose_against(text, format, &lock),
        Err(d) => vec![*d],
    }
}

/// The prelude followed by `extra`.
fn kdl(extra: &str) -> String {
    kdl_edit(&[], extra)
}

/// The prelude with each `(from, to)` replaced (each `from` must occur
/// exactly once), followed by `extra`.
fn kdl_edit(edits: &[(&str, &str)], extra: &str) -> String {
    format!("{}{extra}", edit(PRELUDE, edits))
}

fn toml(extra: &str) -> String {
    toml_edit(&[], extra)
}

fn toml_edit(edits: &[(&str, &str)], extra: &str) -> String {
    format!("{}{extra}", edit(TOML_PRELUDE, edits))
}

fn edit(prelude: &str, edits: &[(&str, &str)]) -> String {
    let mut text = prelude.to_string();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
        text = text.replacen(from, to, 1);
    }
    text
}

fn covered(text: &str, span: SourceSpan) -> &str {
    text.get(span.offset()..span.offset() + span.len())
        .unwrap_or_else(|| panic!("span {span:?} is not within the text"))
}

fn list(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {} {:?} at {:?}", d.code, d.message, d.span))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The span is the first occurrence of `expected` at or after `anchor`.
#[track_caller]
fn assert_span(text: &str, span: SourceSpan, expected: &str, anchor: &str) {
    let start = text
        .find(anchor)
        .unwrap_or_else(|| panic!("anchor {anchor:?} not in the text"));
    let offset = start
        + text[start..]
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} not after anchor {anchor:?}"));
    assert_eq!(
        (covered(text, span), span.offset()),
        (expected, offset),
        "span covers the wrong text (or the right text at the wrong place)"
    );
}

/// Exactly one diagnostic, with this code, message and span.
#[track_caller]
fn expect_one(
    text: &str,
    format: Format,
    code: &str,
    message: &str,
    span: &str,
    anchor: &str,
) -> Diagnostic {
    let diagnostics = diagnose(text, format);
    assert_eq!(
        diagnostics.len(),
        1,
        "expected exactly one diagnostic, got:\n{}",
        list(&diagnostics)
    );
    let d = diagnostics.into_iter().next().unwrap();
    check(text, &d, code, message, span, anchor);
    d
}

#[track_caller]
fn check(text: &str, d: &Diagnostic, code: &str, message: &str, span: &str, anchor: &str) {
    assert_eq!(d.code, code, "code of {:?}", d.message);
    assert_eq!(d.message, message);
    assert!(d.is_error());
    assert_span(text, d.span, span, anchor);
}

/// The diagnostic has exactly these related spans and labels.
#[track_caller]
fn assert_related(text: &str, d: &Diagnostic, expected: &[(&str, &str, &str)]) {
    assert_eq!(
        d.related.len(),
        expected.len(),
        "related spans: {:?}",
        d.related
    );
    for ((span, label), (text_expected, anchor, label_expected)) in d.related.iter().zip(expected) {
        assert_span(text, *span, text_expected, anchor);
        assert_eq!(label, label_expected);
    }
}

#[track_caller]
fn assert_help(d: &Diagnostic, help: &str) {
    assert_eq!(d.help.as_deref(), Some(help));
}

/// A container using the prelude's image, with `body` added.
fn container(name: &str, body: &str) -> String {
    format!("container \"{name}\" {{\n    image \"debian\"\n{body}}}\n")
}

#[test]
fn the_preludes_are_valid() {
    assert_eq!(list(&diagnose(PRELUDE, Format::Kdl)), "");
    assert_eq!(list(&diagnose(TOML_PRELUDE, Format::Toml)), "");
    let with_container = kdl(&container("web", "    network \"lan\"\n"));
    assert_eq!(list(&diagnose(&with_container, Format::Kdl)), "");
}

// ---- structure (KDL) -------------------------------------------------------

#[test]
fn unknown_node_at_top_level() {
    let text = kdl("contaner \"web\" {\n    image \"debian\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-node",
        "unknown node `contaner` at the top level",
        "contaner",
        "contaner",
    );
    assert_help(&d, "did you mean `container`?");
}

#[test]
fn unknown_node_in_a_node() {
    let text = kdl("container \"web\" {\n    imgae \"debian\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-node",
        "unknown node `imgae` in `container`",
        "imgae",
        "imgae",
    );
    assert_help(&d, "did you mean `image`?");
}

#[test]
fn unknown_node_without_a_close_match_lists_the_choices() {
    let text = kdl_edit(
        &[(
            "    bridge \"br-lan\"\n",
            "    bridge \"br-lan\"\n    mtu 1400\n",
        )],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-node",
        "unknown node `mtu` in `network`",
        "mtu",
        "mtu",
    );
    assert_help(
        &d,
        "expected one of: `bridge`, `ipv4`, `ipv6`, `dns`, `egress`",
    );
}

#[test]
fn unknown_node_under_a_node_without_children() {
    let text = kdl_edit(
        &[("uplink \"eth0\"", "uplink \"eth0\" { via \"eth1\"; }")],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-node",
        "unknown node `via` in `uplink`",
        "via",
        "via",
    );
    assert_help(&d, "this node takes no children");
}

#[test]
fn missing_node() {
    let text = kdl("network \"dmz\" {\n    ipv4 \"10.43.0.1/24\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-node",
        "`network` needs `bridge`",
        "network",
        "network \"dmz\"",
    );
    assert_eq!(d.label.as_deref(), Some("`bridge` is missing here"));
    assert_help(&d, "add it, for example: bridge \"br-lan\"");
}

#[test]
fn missing_node_gre_of_a_tunnel() {
    let text = kdl("tunnel \"site-b\" {\n    address \"172.16.0.0/31\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-node",
        "`tunnel` needs `gre` or `vxlan`",
        "tunnel",
        "tunnel",
    );
    assert_eq!(
        d.label.as_deref(),
        Some("the kind of tunnel is missing here")
    );
    assert_help(
        &d,
        "add one, for example: gre local=\"192.0.2.1\" remote=\"198.51.100.7\", \
         or vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\"",
    );
}

#[test]
fn duplicate_node() {
    let text = kdl("container \"web\" {\n    image \"debian\"\n    image \"other\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-node",
        "`image` is given more than once",
        "image",
        "image \"other\"",
    );
    assert_related(
        &text,
        &d,
        &[("image", "    image \"debian\"", "first given here")],
    );
    assert_help(&d, "keep only one of them");
}

#[test]
fn extra_argument() {
    let text = kdl_edit(&[("uplink \"eth0\"", "uplink \"eth0\" \"eth1\"")], "");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::extra-argument",
        "`uplink` takes one value",
        "\"eth1\"",
        "\"eth1\"",
    );
    assert_help(&d, "for example: uplink \"eth0\"");
}

#[test]
fn extra_argument_on_a_flag() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    docker \"yes\"\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::extra-argument",
        "`docker` takes no values",
        "\"yes\"",
        "\"yes\"",
    );
}

#[test]
fn missing_value() {
    let text = kdl("container \"web\" {\n    image\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-value",
        "`image` needs its name",
        "image",
        "    image\n",
    );
    assert_eq!(d.label.as_deref(), Some("name missing"));
    assert_help(&d, "for example: image \"debian-bookworm\"");
}

#[test]
fn missing_value_name_of_a_container() {
    let text = kdl("container {\n    image \"debian\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-value",
        "`container` needs its name",
        "container",
        "container",
    );
}

#[test]
fn duplicate_property() {
    let text = kdl(&container(
        "web",
        "    network \"lan\" ipv4=\"10.42.0.10\" ipv4=\"10.42.0.11\"\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-property",
        "`ipv4` is given twice on `network`",
        "ipv4",
        "ipv4=\"10.42.0.11\"",
    );
    assert_related(
        &text,
        &d,
        &[("ipv4", "ipv4=\"10.42.0.10\"", "first given here")],
    );
}

#[test]
fn unknown_property() {
    let text = kdl_edit(
        &[(
            "debootstrap suite=\"bookworm\"",
            "debootstrap suite=\"bookworm\" mirorr=\"http://deb.debian.org/debian\"",
        )],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-property",
        "unknown property `mirorr` on `debootstrap`",
        "mirorr",
        "mirorr",
    );
    assert_help(&d, "did you mean `mirror`?");
}

#[test]
fn missing_property() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"tcp\" host=8080\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-property",
        "`forward` needs `container`",
        "forward",
        "forward",
    );
    assert_eq!(d.label.as_deref(), Some("`container` missing"));
    assert_help(&d, "for example: forward \"tcp\" host=8080 container=80");
}

#[test]
fn wrong_type_string_for_an_integer() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"tcp\" host=\"8080\" container=80\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::wrong-type",
        "`host` of `forward` must be an integer, found a string",
        "\"8080\"",
        "\"8080\"",
    );
    assert_eq!(d.label.as_deref(), Some("expected an integer"));
}

#[test]
fn wrong_type_decimal_for_an_integer() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"tcp\" host=8080 container=80.5\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::wrong-type",
        "`container` of `forward` must be an integer, found a number",
        "80.5",
        "80.5",
    );
}

#[test]
fn wrong_type_string_for_a_boolean() {
    let text = kdl(&container("web", "    autostart \"no\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::wrong-type",
        "`enabled` of `autostart` must be a boolean, found a string",
        "\"no\"",
        "\"no\"",
    );
}

#[test]
fn wrong_type_string_for_a_number() {
    let text = kdl(&container("web", "    limits cpus=\"2\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::wrong-type",
        "`cpus` of `limits` must be a number, found a string",
        "\"2\"",
        "\"2\"",
    );
}

#[test]
fn wrong_type_integer_for_a_string() {
    let text = kdl("container \"web\" {\n    image 5\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::wrong-type",
        "`name` of `image` must be a string, found an integer",
        "5",
        "image 5",
    );
}

#[test]
fn wrong_type_boolean_for_a_string() {
    let text = kdl(&container("web", "    bind \"/srv/www\" #true\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::wrong-type",
        "`target` of `bind` must be a string, found a boolean",
        "#true",
        "#true",
    );
}

#[test]
fn control_character_in_a_name() {
    let text = kdl("container \"we\\nb\" {\n    image \"debian\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::control-character",
        "value contains the control character \\n",
        "\"we\\nb\"",
        "\"we\\nb\"",
    );
    assert_help(
        &d,
        "newlines, tabs and other control characters are never allowed in values: \
         they could inject lines into the generated unit files or nftables rules",
    );
}

#[test]
fn control_character_in_a_property_key() {
    let text = kdl(&container("web", "    environment \"A\\tB\"=\"x\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::control-character",
        "value contains the control character \\t",
        "\"A\\tB\"",
        "\"A\\tB\"",
    );
}

#[test]
fn control_character_in_a_property_value() {
    let text = kdl(&container("web", "    environment TZ=\"UTC\\u{1b}\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::control-character",
        "value contains the control character \\u{1b}",
        "\"UTC\\u{1b}\"",
        "\"UTC",
    );
}

// ---- KDL only ---------------------------------------------------------------

/// A KDL syntax error: the one diagnostic, with this message, label and
/// span (the first `span` at or after `anchor`).
#[track_caller]
fn kdl_syntax(text: &str, message: &str, label: &str, span: &str, anchor: &str) -> Diagnostic {
    let d = expect_one(text, Format::Kdl, "ctm::kdl-syntax", message, span, anchor);
    assert_eq!(d.label.as_deref(), Some(label));
    d
}

#[test]
fn kdl_syntax_unclosed_block() {
    let text = kdl("container \"web\" {\n    image \"debian\"\n");
    let d = kdl_syntax(
        &text,
        "no closing `}` for this child block",
        "opened here",
        "{",
        "container \"web\" {",
    );
    assert_help(&d, "close the block with `}` after its last node");
}

#[test]
fn kdl_syntax_unterminated_string() {
    let text = kdl("container \"web\" {\n    image \"debian\n}\n");
    let d = kdl_syntax(
        &text,
        "unexpected newline in a single-line string",
        "not closed on its line",
        "\"debian",
        "\"debian\n",
    );
    assert_help(
        &d,
        "close the string with `\"`; for a string of several lines, write `\"\"\"`, a newline, \
         the lines, and `\"\"\"` on a line of its own",
    );
}

#[test]
fn kdl_syntax_kdl1_boolean() {
    // KDL 2.0 writes booleans as #true and #false; a bare `true` is neither.
    let text = kdl(&container("web", "    autostart true\n"));
    let d = kdl_syntax(
        &text,
        "bare `true` is a reserved word in KDL 2.0",
        "neither a keyword nor a string",
        "true",
        "autostart true",
    );
    assert_help(
        &d,
        "write `#true` for the keyword, or `\"true\"` for the string",
    );
}

#[test]
fn kdl_syntax_property_without_value() {
    let text = kdl(&container("web", "    limits memory=\n"));
    let d = kdl_syntax(
        &text,
        "expected a value after `=`",
        "property value missing",
        "=",
        "memory=",
    );
    assert_help(&d, "write the value right after `=`, e.g. memory=\"1G\"");
}

#[test]
fn kdl_syntax_unclosed_comment() {
    let text = kdl("/* container \"web\" {\n    image \"debian\"\n}\n");
    let d = kdl_syntax(
        &text,
        "unclosed comment",
        "this comment is never closed",
        "/*",
        "/*",
    );
    assert_help(
        &d,
        "close it with `*/` (comments nest: each `/*` needs its own `*/`)",
    );
}

#[test]
fn kdl_syntax_slashdash_without_anything_after_it() {
    let text = kdl("container \"web\" {\n    image \"debian\"\n}\n/-\n");
    kdl_syntax(
        &text,
        "`/-` must be followed by the node, entry or child block it comments out",
        "nothing to comment out here",
        "/-",
        "/-",
    );
}

#[test]
fn kdl_syntax_disallowed_character() {
    let text = kdl("container \"web\" {\n    image \"debian\" \u{200E}\n}\n");
    let d = kdl_syntax(
        &text,
        "the character U+200E is not allowed in KDL",
        "not allowed",
        "\u{200E}",
        "\"debian\"",
    );
    assert_help(
        &d,
        "control characters, byte order marks and text direction marks may only appear as \
         escapes in quoted strings",
    );
}

#[test]
fn kdl_syntax_unexpected_character_at_the_top_level() {
    let text = kdl("container \"web\")\n");
    kdl_syntax(
        &text,
        "unexpected `)`",
        "expected a newline or `;` before this",
        ")",
        "\"web\")",
    );
}

#[test]
fn kdl_syntax_unexpected_character_in_a_block() {
    let text = kdl(&container("web", "    autostart #true)\n"));
    kdl_syntax(
        &text,
        "unexpected `)`",
        "expected a newline, `;` or `}` before this",
        ")",
        "#true)",
    );
}

#[test]
fn kdl_syntax_unexpected_end_of_file() {
    let text = kdl("(vm)");
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = &diagnostics[0];
    assert_eq!(d.code, "ctm::kdl-syntax");
    assert_eq!(d.message, "unexpected end of file");
    assert_eq!(d.label.as_deref(), Some("a node name is expected here"));
    assert_eq!((d.span.offset(), d.span.len()), (text.len(), 0));
}

#[test]
fn kdl_syntax_stray_closing_brace() {
    let text = kdl("container \"web\" {\n    image \"debian\"\n}\n} // stray\n");
    let d = kdl_syntax(
        &text,
        "unexpected `}`: there is no child block to close",
        "nothing to close here",
        "}",
        "} // stray",
    );
    assert_help(&d, "remove it, or look for the `{` it was meant to close");
}

#[test]
fn kdl_syntax_block_without_a_node_name() {
    let text = kdl("container \"web\" {\n    image \"debian\"\n    { docker; }\n}\n");
    let d = kdl_syntax(
        &text,
        "found a child block instead of a node name",
        "node name expected before this",
        "{",
        "{ docker",
    );
    assert_help(
        &d,
        "did you forget the node's name, or end the node before its child block?",
    );
}

#[test]
fn kdl_syntax_no_node_name() {
    let text = kdl(&container("web", "    =docker\n"));
    let d = kdl_syntax(
        &text,
        "expected a node name, found `=`",
        "a node name is expected here",
        "=",
        "=docker",
    );
    assert_help(
        &d,
        "a node name is a string: a bare word such as `container`, or quoted",
    );
}

#[test]
fn kdl_syntax_unclosed_type_annotation() {
    let text = kdl(&container("web", "    autostart (bool #true\n"));
    let d = kdl_syntax(
        &text,
        "unclosed type annotation",
        "expected `)` after the type's name",
        "(bool ",
        "(bool",
    );
    assert_help(&d, "ctm does not use type annotations: remove it");
}

#[test]
fn kdl_syntax_no_type_name() {
    let text = kdl(&container("web", "    autostart ( )#true\n"));
    kdl_syntax(
        &text,
        "unexpected `)`",
        "a type name is expected here",
        ")",
        "( )",
    );
}

#[test]
fn kdl_syntax_unknown_keyword() {
    let text = kdl(&container("web", "    autostart #yes\n"));
    let d = kdl_syntax(
        &text,
        "unknown keyword `#yes`",
        "not a KDL keyword",
        "#yes",
        "#yes",
    );
    assert_help(
        &d,
        "KDL 2.0's keywords are #true, #false, #null, #inf, #-inf and #nan; a string starting \
         with `#` is written in quotes",
    );
}

#[test]
fn kdl_syntax_no_space_after_a_value() {
    let text = kdl(&container("web", "    packages \"curl\"\"jq\"\n"));
    let d = kdl_syntax(
        &text,
        "`\"` cannot come right after a value",
        "expected a space, `;` or a newline before this",
        "\"",
        "\"jq\"",
    );
    assert_help(
        &d,
        "separate values with spaces; a string with special characters is quoted",
    );
}

#[test]
fn kdl_syntax_radix_prefix_without_digits() {
    let text = kdl(&container("web", "    limits cpus=0x\n"));
    kdl_syntax(
        &text,
        "`0x` must be followed by hexadecimal digits",
        "invalid number",
        "0x",
        "0x",
    );
}

#[test]
fn kdl_syntax_integer_too_large() {
    let big = "1".repeat(40);
    let text = kdl(&container("web", &format!("    limits cpus={big}\n")));
    kdl_syntax(
        &text,
        "this number does not fit in 128 bits",
        "invalid number",
        &big,
        "cpus=",
    );
}

#[test]
fn kdl_syntax_decimal_point_without_digits() {
    let text = kdl(&container("web", "    limits cpus=1.\n"));
    kdl_syntax(
        &text,
        "a decimal point must be followed by a digit",
        "invalid number",
        "1.",
        "cpus=",
    );
}

#[test]
fn kdl_syntax_exponent_without_digits() {
    let text = kdl(&container("web", "    limits cpus=1e\n"));
    kdl_syntax(
        &text,
        "an exponent must have digits",
        "invalid number",
        "1e",
        "cpus=",
    );
}

#[test]
fn kdl_syntax_unclosed_string() {
    let text = kdl("container \"web\" {\n    packages \"curl");
    kdl_syntax(
        &text,
        "unclosed string",
        "this string is never closed",
        "\"",
        "\"curl",
    );
}

#[test]
fn kdl_syntax_unclosed_multi_line_string() {
    let text = kdl(&container("web", "    packages \"\"\"\n        curl\n"));
    kdl_syntax(
        &text,
        "unclosed multi-line string",
        "this string is never closed",
        "\"\"\"",
        "\"\"\"",
    );
}

#[test]
fn kdl_syntax_unclosed_raw_string() {
    let text = kdl("container \"web\" {\n    packages #\"curl");
    let d = kdl_syntax(
        &text,
        "unclosed raw string",
        "this string is never closed",
        "#\"",
        "#\"curl",
    );
    assert_help(&d, "close it with `\"` and 1 `#`, as it was opened");
}

#[test]
fn kdl_syntax_unclosed_multi_line_raw_string() {
    let text = kdl(&container("web", "    packages ##\"\"\"\n        curl\n"));
    kdl_syntax(
        &text,
        "unclosed multi-line raw string",
        "this string is never closed",
        "##\"\"\"",
        "##\"\"\"",
    );
}

#[test]
fn kdl_syntax_invalid_escape() {
    let text = kdl(&container("web", "    packages \"cu\\qrl\"\n"));
    let d = kdl_syntax(
        &text,
        "invalid escape `\\q`",
        "invalid escape",
        "\\q",
        "\\q",
    );
    assert_help(
        &d,
        "the escapes are \\n, \\r, \\t, \\\\, \\\", \\b, \\f, \\s, \\u{…} and a backslash before \
         whitespace",
    );
}

#[test]
fn kdl_syntax_invalid_unicode_escape() {
    let text = kdl(&container("web", "    packages \"\\u{d800}\"\n"));
    kdl_syntax(
        &text,
        "`\\u` must be followed by 1 to 6 hexadecimal digits in braces, naming a Unicode scalar \
         value",
        "invalid escape",
        "\\u{d800}",
        "\\u",
    );
}

#[test]
fn kdl_syntax_multi_line_string_without_a_newline() {
    let text = kdl(&container("web", "    packages \"\"\"curl\"\"\"\n"));
    let d = kdl_syntax(
        &text,
        "a multi-line string must start with a newline after `\"\"\"`",
        "newline expected after this",
        "\"\"\"",
        "\"\"\"",
    );
    assert_help(
        &d,
        "a string on one line is written in single quotes: \"…\"",
    );
}

#[test]
fn kdl_syntax_closing_quotes_not_on_their_own_line() {
    let text = kdl(&container(
        "web",
        "    packages \"\"\"\n        curl\"\"\"\n",
    ));
    let d = kdl_syntax(
        &text,
        "the closing `\"\"\"` of a multi-line string must be on a line of its own",
        "text before it on its line",
        "\"\"\"",
        "curl\"\"\"",
    );
    assert_help(
        &d,
        "move `\"\"\"` to the next line, or escape a quote in the text as \\\"",
    );
}

#[test]
fn kdl_syntax_multi_line_string_indented_less() {
    let text = kdl(&container(
        "web",
        "    packages \"\"\"\n      curl\n        \"\"\"\n",
    ));
    kdl_syntax(
        &text,
        "every line of a multi-line string must start with the indentation of its closing `\"\"\"`",
        "indented less, or with other whitespace",
        " ",
        "      curl",
    );
}

#[test]
fn kdl_syntax_raw_string_of_one_quote() {
    let text = kdl(&container("web", "    packages #\"\"\"#\n"));
    let d = kdl_syntax(
        &text,
        "a raw string cannot be a single `\"`",
        "invalid raw string",
        "#\"\"\"#",
        "#\"",
    );
    assert_help(&d, "write it as a quoted string: \"\\\"\"");
}

#[test]
fn kdl_syntax_newline_in_a_raw_string() {
    let text = kdl(&container("web", "    packages #\"cu\nrl\"#\n"));
    kdl_syntax(
        &text,
        "unexpected newline in a single-line raw string",
        "not closed on its line",
        "#\"cu",
        "#\"cu",
    );
}

#[test]
fn type_annotation_on_a_value() {
    let text = kdl_edit(&[("uplink \"eth0\"", "uplink (iface)\"eth0\"")], "");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::type-annotation",
        "type annotations are not used by ctm",
        "iface",
        "(iface)",
    );
    assert_eq!(d.label.as_deref(), Some("remove this annotation"));
}

#[test]
fn type_annotation_on_a_node() {
    let text = kdl("(vm)container \"web\" {\n    image \"debian\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::type-annotation",
        "type annotations are not used by ctm",
        "vm",
        "(vm)",
    );
}

#[test]
fn null_value() {
    let text = kdl_edit(
        &[(
            "debootstrap suite=\"bookworm\"",
            "debootstrap suite=\"bookworm\" mirror=#null",
        )],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::null-value",
        "`#null` is not a valid value here",
        "#null",
        "#null",
    );
    assert_eq!(d.label.as_deref(), Some("leave the entry out instead"));
}

#[test]
fn null_value_for_a_required_argument() {
    let text = kdl(&container("web", "    autostart #null\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::null-value",
        "`#null` is not a valid value here",
        "#null",
        "#null",
    );
}

#[test]
fn null_value_as_an_extra_argument() {
    let text = kdl(&container("web", "    autostart #true #null\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::null-value",
        "`#null` is not a valid value here",
        "#null",
        "#null",
    );
}

// ---- structure (TOML) ------------------------------------------------------

#[test]
fn toml_syntax() {
    let text = toml("[container.web\nimage = \"debian\"\n");
    let diagnostics = diagnose(&text, Format::Toml);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = &diagnostics[0];
    assert_eq!(d.code, "ctm::toml-syntax");
    assert_eq!(d.message, "unclosed table, expected `]`");
    assert_eq!(d.label.as_deref(), Some("invalid TOML here"));
    // An empty span just after the table name, where the `]` is missing.
    let end = text.find("[container.web").unwrap() + "[container.web".len();
    assert_eq!((d.span.offset(), d.span.len()), (end, 0));
}

#[test]
fn toml_syntax_duplicate_key() {
    let text = toml("[container.web]\nimage = \"debian\"\nimage = \"other\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::toml-syntax",
        "duplicate key",
        "image",
        "image = \"other\"",
    );
}

#[test]
fn toml_unknown_key() {
    let text = toml("[container.web]\nimage = \"debian\"\nimgae = \"debian\"\n");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::unknown-node",
        "unknown key `imgae` in `container`",
        "imgae",
        "imgae",
    );
    assert_help(&d, "did you mean `image`?");
}

#[test]
fn toml_unknown_key_at_top_level() {
    let text = toml("[contaner.web]\nimage = \"debian\"\n");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::unknown-node",
        "unknown key `contaner` at the top level",
        "contaner",
        "contaner",
    );
    assert_help(&d, "did you mean `container`?");
}

#[test]
fn toml_unknown_key_for_a_property() {
    let text = toml_edit(
        &[(
            "debootstrap = { suite = \"bookworm\" }",
            "debootstrap = { suite = \"bookworm\", mirorr = \"http://deb.debian.org/debian\" }",
        )],
        "",
    );
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::unknown-node",
        "unknown key `mirorr` in `debootstrap`",
        "mirorr",
        "mirorr",
    );
    assert_help(&d, "did you mean `mirror`?");
}

#[test]
fn toml_wrong_type() {
    let text = toml("[container.web]\nimage = \"debian\"\nautostart = \"no\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`enabled` of `autostart` must be a boolean, found a string",
        "\"no\"",
        "\"no\"",
    );
}

#[test]
fn toml_wrong_type_integer_for_a_string() {
    let text = toml("[container.web]\nimage = 5\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`name` of `image` must be a string, found an integer",
        "5",
        "image = 5",
    );
}

#[test]
fn toml_wrong_type_array_for_a_scalar() {
    let text = toml("[container.web]\nimage = \"debian\"\nlimits = { memory = [\"1G\"] }\n");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`memory` of `limits` must be a string, found an array",
        "[\"1G\"]",
        "[\"1G\"]",
    );
    assert_eq!(d.label.as_deref(), Some("expected a string"));
}

#[test]
fn toml_wrong_type_date_for_a_required_value() {
    let text = toml("[container.web]\nimage = \"debian\"\nautostart = 1979-05-27\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`enabled` of `autostart` must be a boolean, found a date",
        "1979-05-27",
        "1979-05-27",
    );
}

#[test]
fn toml_wrong_type_number_out_of_range() {
    let text = toml(
        "[container.web]\nimage = \"debian\"\nnetwork = \"lan\"\n\
         forward = [{ protocol = \"tcp\", host = 1000000000000000000000000000000000000000, container = 80 }]\n",
    );
    expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`host` of `forward` must be an integer, found a number out of range",
        "1000000000000000000000000000000000000000",
        "host =",
    );
}

#[test]
fn toml_missing_property() {
    let text = toml(
        "[container.web]\nimage = \"debian\"\nnetwork = \"lan\"\n\
         forward = [{ protocol = \"tcp\", host = 8080 }]\n",
    );
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::missing-property",
        "`forward` needs `container`",
        "forward",
        "forward",
    );
    assert_help(&d, "for example: forward \"tcp\" host=8080 container=80");
}

/// Each entry of an array of tables is reported at its own header
/// (issue 13: the third was reported at the first).
#[test]
fn toml_missing_property_in_the_third_array_table() {
    let entry = |host: u32, container: &str| {
        format!("\n[[container.web.forward]]\nprotocol = \"tcp\"\nhost = {host}\n{container}")
    };
    let text = toml(&format!(
        "\n[container.web]\nimage = \"debian\"\nnetwork = \"lan\"\n{}{}{}",
        entry(8080, "container = 80\n"),
        entry(8081, "container = 81\n"),
        entry(8082, ""),
    ));
    expect_one(
        &text,
        Format::Toml,
        "ctm::missing-property",
        "`forward` needs `container`",
        "forward",
        "[[container.web.forward]]\nprotocol = \"tcp\"\nhost = 8082",
    );
}

#[test]
fn toml_missing_value() {
    let text = toml("[container.web]\nimage = \"debian\"\nnetwork = { ipv4 = \"10.42.0.10\" }\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::missing-value",
        "`network` needs its name",
        "network",
        "network = {",
    );
}

#[test]
fn toml_missing_value_given_a_later_argument() {
    // The later argument cannot be placed without the earlier one: both
    // the gap and the missing argument are reported.
    let text = toml("[container.web]\nimage = \"debian\"\nbind = [{ target = \"/var/www\" }]\n");
    let diagnostics = diagnose(&text, Format::Toml);
    assert_eq!(diagnostics.len(), 2, "{}", list(&diagnostics));
    let gap = &diagnostics[0];
    check(
        &text,
        gap,
        "ctm::missing-value",
        "`target` is given without `source`",
        "target",
        "target",
    );
    assert_eq!(gap.label.as_deref(), Some("`source` must be given too"));
    assert_related(
        &text,
        gap,
        &[("\"/var/www\"", "\"/var/www\"", "this value")],
    );
    check(
        &text,
        &diagnostics[1],
        "ctm::missing-value",
        "`bind` needs its source",
        "bind",
        "bind",
    );
}

#[test]
fn toml_missing_node() {
    let text = toml("\n[network.dmz]\nipv4 = \"10.43.0.1/24\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::missing-node",
        "`network` needs `bridge`",
        "dmz",
        "[network.dmz]",
    );
}

#[test]
fn toml_flag_not_a_boolean() {
    let text = toml("[container.web]\nimage = \"debian\"\nnetwork = \"lan\"\ndocker = \"yes\"\n");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`docker` must be a boolean",
        "\"yes\"",
        "\"yes\"",
    );
    assert_eq!(d.label.as_deref(), Some("expected true or false"));
    assert_help(&d, "write `docker = true` to turn it on");
}

#[test]
fn toml_keyed_collection_not_a_table() {
    let text = format!("container = \"web\"\n{TOML_PRELUDE}");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`container` must be a table of named containers",
        "\"web\"",
        "\"web\"",
    );
    assert_help(&d, "write each one as its own table: [container.NAME]");
}

#[test]
fn toml_node_without_arguments_not_a_table() {
    let text = toml("[container.web]\nimage = \"debian\"\nlimits = \"1G\"\n");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::wrong-type",
        "`limits` must be a table",
        "\"1G\"",
        "\"1G\"",
    );
    assert_help(&d, "for example, in KDL: limits memory=\"1G\" cpus=2");
}

#[test]
fn toml_control_character_in_a_value() {
    let text = toml("[container.web]\nimage = \"deb\\nian\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::control-character",
        "value contains the control character \\n",
        "\"deb\\nian\"",
        "\"deb\\nian\"",
    );
}

#[test]
fn toml_control_character_in_a_table_name() {
    let text = toml("[container.\"we\\tb\"]\nimage = \"debian\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::control-character",
        "value contains the control character \\t",
        "\"we\\tb\"",
        "\"we\\tb\"",
    );
}

#[test]
fn toml_control_character_in_a_free_form_key() {
    let text = toml("[container.web]\nimage = \"debian\"\nenvironment = { \"A\\rB\" = \"x\" }\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::control-character",
        "value contains the control character \\r",
        "\"A\\rB\"",
        "\"A\\rB\"",
    );
}

// ---- names -----------------------------------------------------------------

#[track_caller]
fn invalid_container_name(name: &str, message: &str) {
    let text = kdl(&container(name, ""));
    let quoted = format!("\"{name}\"");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-name",
        message,
        &quoted,
        "container ",
    );
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn invalid_name_leading_dash() {
    invalid_container_name("-web", "a name may not start with `.` or `-`");
}

#[test]
fn invalid_name_forbidden_character() {
    invalid_container_name(
        "web server",
        "` ` may not appear in a name; use letters, digits, `-`, `_` and `.`",
    );
}

#[test]
fn invalid_name_non_ascii_character() {
    invalid_container_name(
        "wéb",
        "`\\u{e9}` may not appear in a name; use letters, digits, `-`, `_` and `.`",
    );
}

#[test]
fn invalid_name_empty() {
    invalid_container_name("", "a name cannot be empty");
}

#[test]
fn invalid_name_too_long() {
    let name = "a".repeat(65);
    invalid_container_name(
        &name,
        &format!("`{name}` is 65 characters long; names have at most 64 characters"),
    );
}

#[test]
fn invalid_name_non_ascii_is_reported_as_such() {
    let name = "é".repeat(40);
    invalid_container_name(
        &name,
        "`\\u{e9}` may not appear in a name; use letters, digits, `-`, `_` and `.`",
    );
}

#[test]
fn invalid_name_double_dot() {
    invalid_container_name("web..1", "a name may not contain `..`");
}

#[test]
fn invalid_name_trailing_dot() {
    invalid_container_name("web.", "a name may not end with `.`");
}

#[test]
fn invalid_name_of_the_host() {
    let text = kdl_edit(&[("host \"lab1\"", "host \"lab 1\"")], "");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-name",
        "` ` may not appear in a name; use letters, digits, `-`, `_` and `.`",
        "\"lab 1\"",
        "\"lab 1\"",
    );
}

#[test]
fn duplicate_name() {
    let text = kdl(&format!("{}{}", container("web", ""), container("web", "")));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-name",
        "container `web` is defined twice",
        "\"web\"",
        "image \"debian\"\n}\ncontainer \"web\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"web\"", "container \"web\"", "first defined here")],
    );
    assert_help(&d, "every container needs a name of its own");
}

#[test]
fn duplicate_name_of_an_image() {
    let text = kdl("image \"debian\" {\n    directory \"/srv/images/debian\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-name",
        "image `debian` is defined twice",
        "\"debian\"",
        "image \"debian\" {\n    directory",
    );
    assert_related(&text, &d, &[("\"debian\"", "image", "first defined here")]);
    assert_help(&d, "every image needs a name of its own");
}

#[test]
fn duplicate_name_of_a_tunnel() {
    let tunnel = "tunnel \"gre1\" {\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n}\n";
    let text = kdl(&format!("{tunnel}{tunnel}"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-name",
        "tunnel `gre1` is defined twice",
        "\"gre1\"",
        "\"198.51.100.7\"\n}\ntunnel",
    );
    assert_related(&text, &d, &[("\"gre1\"", "tunnel", "first defined here")]);
}

// ---- interface names -------------------------------------------------------

#[test]
fn invalid_interface_name_too_long() {
    let text = kdl_edit(
        &[("bridge \"br-lan\"", "bridge \"br-lan-far-too-long\"")],
        "",
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "`br-lan-far-too-long` is 19 characters long; Linux interface names have at most 15",
        "\"br-lan-far-too-long\"",
        "\"br-lan-far-too-long\"",
    );
}

#[test]
fn invalid_interface_name_reserved() {
    let text = kdl_edit(&[("uplink \"eth0\"", "uplink \"lo\"")], "");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "`lo` is reserved by the kernel",
        "\"lo\"",
        "\"lo\"",
    );
}

#[test]
fn invalid_interface_name_forbidden_character() {
    let text = kdl("tunnel \"site/b\" {\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "`/` may not appear in an interface name; use letters, digits, `-`, `_` and `.`",
        "\"site/b\"",
        "\"site/b\"",
    );
}

#[test]
fn invalid_interface_name_leading_dash() {
    let text = kdl_edit(&[("bridge \"br-lan\"", "bridge \"-br\"")], "");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "an interface name may not start with `.` or `-`",
        "\"-br\"",
        "\"-br\"",
    );
}

#[test]
fn invalid_interface_name_empty() {
    let text = kdl_edit(&[("bridge \"br-lan\"", "bridge \"\"")], "");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "an interface name cannot be empty",
        "\"\"",
        "bridge \"\"",
    );
}

// ---- bridge addresses -------------------------------------------------------

#[track_caller]
fn invalid_bridge_address(from: &str, to: &str, message: &str) {
    let text = kdl_edit(&[(from, to)], "");
    let d = expect_one(&text, Format::Kdl, "ctm::invalid-address", message, to, to);
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn invalid_address_bridge_without_prefix() {
    invalid_bridge_address(
        "\"10.42.0.1/24\"",
        "\"10.42.0.1\"",
        "`10.42.0.1` has no prefix length; write the IPv4 address with its prefix, e.g. `10.42.0.1/24`",
    );
}

#[test]
fn invalid_address_bridge_is_the_network_address() {
    invalid_bridge_address(
        "\"10.42.0.1/24\"",
        "\"10.42.0.0/24\"",
        "10.42.0.0 is the network address of 10.42.0.0/24; the bridge needs a host address such as 10.42.0.1",
    );
}

#[test]
fn invalid_address_bridge_is_the_broadcast_address() {
    invalid_bridge_address(
        "\"10.42.0.1/24\"",
        "\"10.42.0.255/24\"",
        "10.42.0.255 is the broadcast address of 10.42.0.0/24; the bridge needs a host address",
    );
}

#[test]
fn invalid_address_bridge_prefix_too_long() {
    invalid_bridge_address(
        "\"10.42.0.1/24\"",
        "\"10.42.0.1/31\"",
        "/31 leaves no room for containers; use a prefix of /30 or shorter, e.g. /24",
    );
}

#[test]
fn invalid_address_bridge_not_an_address() {
    invalid_bridge_address(
        "\"10.42.0.1/24\"",
        "\"10.42.0.300/24\"",
        "`10.42.0.300/24` is not an IPv4 address with a prefix length",
    );
}

#[test]
fn invalid_address_bridge_ipv6_without_prefix() {
    invalid_bridge_address(
        "\"fd42:42::1/64\"",
        "\"fd42:42::1\"",
        "`fd42:42::1` has no prefix length; write the IPv6 address with its prefix, e.g. `fd42:42::1/64`",
    );
}

#[test]
fn invalid_address_bridge_ipv6_is_the_anycast_address() {
    invalid_bridge_address(
        "\"fd42:42::1/64\"",
        "\"fd42:42::/64\"",
        "fd42:42:: is the subnet-router anycast address of fd42:42::/64; the bridge needs another address such as fd42:42::1",
    );
}

#[test]
fn invalid_address_bridge_ipv6_prefix_too_long() {
    invalid_bridge_address(
        "\"fd42:42::1/64\"",
        "\"fd42:42::1/127\"",
        "/127 leaves no room for containers; use a prefix of /126 or shorter, e.g. /64",
    );
}

#[test]
fn invalid_address_bridge_ipv4_in_ipv6() {
    invalid_bridge_address(
        "\"fd42:42::1/64\"",
        "\"10.43.0.1/24\"",
        "`10.43.0.1/24` is not an IPv6 address with a prefix length",
    );
}

#[test]
fn invalid_address_of_a_container() {
    let text = kdl(&container("web", "    network \"lan\" ipv4=\"10.42.0\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "`10.42.0` is not an IPv4 address",
        "\"10.42.0\"",
        "\"10.42.0\"",
    );
}

#[test]
fn invalid_address_of_a_container_ipv6() {
    let text = kdl(&container("web", "    network \"lan\" ipv6=\"fd42::zz\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "`fd42::zz` is not an IPv6 address",
        "\"fd42::zz\"",
        "\"fd42::zz\"",
    );
}

#[test]
fn invalid_address_tunnel_endpoint() {
    let text =
        kdl("tunnel \"site-b\" {\n    gre local=\"192.0.2.300\" remote=\"198.51.100.7\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "`192.0.2.300` is not an IP address",
        "\"192.0.2.300\"",
        "\"192.0.2.300\"",
    );
}

#[test]
fn invalid_address_tunnel_address_without_prefix() {
    let text = kdl(
        "tunnel \"site-b\" {\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n    address \"172.16.0.0\"\n}\n",
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "`172.16.0.0` has no prefix length; write the IP address with its prefix, e.g. `fd42:42::1/64`",
        "\"172.16.0.0\"",
        "\"172.16.0.0\"",
    );
}

// ---- paths -------------------------------------------------------------------

#[track_caller]
fn invalid_path(extra: &str, message: &str, span: &str) {
    let text = kdl(extra);
    expect_one(&text, Format::Kdl, "ctm::invalid-path", message, span, span);
}

/// Issue 13: a 1 MiB file name was accepted, and compiled into a
/// 1,048,588-character `Bind=` line.
#[test]
fn invalid_path_component_too_long() {
    let path = format!("/srv/{}", "a".repeat(1 << 20));
    invalid_path(
        &container("web", &format!("    bind \"{path}\" \"/data\"\n")),
        "the path is 1048581 bytes long; Linux takes paths of at most 4095 bytes (PATH_MAX less its NUL)",
        &format!("\"{path}\""),
    );
    let path = format!("/srv/{}/www", "a".repeat(256));
    invalid_path(
        &container("web", &format!("    bind \"{path}\" \"/data\"\n")),
        "a component of the path is 256 bytes long; Linux takes file names of at most 255 bytes (NAME_MAX)",
        &format!("\"{path}\""),
    );
}

#[test]
fn invalid_path_too_long() {
    // 16 components of 255 bytes: each allowed, together too long.
    let path = format!("/{}", vec!["b".repeat(255); 16].join("/"));
    invalid_path(
        &container("web", &format!("    bind \"/srv\" \"{path}\"\n")),
        "the path is 4096 bytes long; Linux takes paths of at most 4095 bytes (PATH_MAX less its NUL)",
        &format!("\"{path}\""),
    );
    let path = format!("/{}", vec!["b".repeat(254); 16].join("/"));
    assert_eq!(path.len(), 4080);
    let text = kdl(&container(
        "web",
        &format!("    bind \"/srv\" \"{path}\"\n"),
    ));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
}

#[test]
fn invalid_path_relative() {
    invalid_path(
        "image \"local\" {\n    directory \"srv/images\"\n}\n",
        "`srv/images` is not an absolute path",
        "\"srv/images\"",
    );
}

#[test]
fn invalid_path_separator() {
    invalid_path(
        &container("web", "    bind \"/srv/a:b\"\n"),
        "`:` may not appear in a path: it is a separator or quote in unit files",
        "\"/srv/a:b\"",
    );
}

#[test]
fn invalid_path_trailing_slash() {
    invalid_path(
        &container("web", "    bind \"/srv/www\" \"/var/www/\"\n"),
        "a path may not end with `/`",
        "\"/var/www/\"",
    );
}

#[test]
fn invalid_path_dot_dot() {
    invalid_path(
        &container("web", "    bind \"/srv/../etc\"\n"),
        "a path may not contain empty, `.` or `..` components",
        "\"/srv/../etc\"",
    );
}

#[test]
fn invalid_path_not_a_tarball() {
    invalid_path(
        "image \"packed\" {\n    tarball \"/srv/images/bookworm.zip\"\n}\n",
        "`/srv/images/bookworm.zip` is not a tarball ctm can unpack; use .tar, .tar.zst or .tar.xz",
        "\"/srv/images/bookworm.zip\"",
    );
}

#[test]
fn invalid_path_bind_over_root() {
    invalid_path(
        &container("web", "    bind \"/srv/root\" \"/\"\n"),
        "cannot bind over the container's root directory",
        "\"/\"",
    );
}

const CGROUP_MESSAGE: &str = "cannot bind over /sys/fs/cgroup: systemd-nspawn mounts the container's own cgroup tree there, \
     in a cgroup namespace, and a bind over it breaks booting (systemd#11703)";

#[test]
fn invalid_path_bind_over_the_cgroup_tree() {
    invalid_path(
        &container("web", "    bind \"/srv/cg\" \"/sys/fs/cgroup\"\n"),
        CGROUP_MESSAGE,
        "\"/sys/fs/cgroup\"",
    );
}

#[test]
fn invalid_path_bind_source_as_target_over_the_cgroup_tree() {
    invalid_path(
        &container(
            "web",
            "    network \"lan\"\n    docker\n    bind \"/sys/fs/cgroup/unified\"\n",
        ),
        "cannot bind over /sys/fs/cgroup/unified: systemd-nspawn mounts the container's own cgroup tree there, \
         in a cgroup namespace, and a bind over it breaks booting (systemd#11703)",
        "\"/sys/fs/cgroup/unified\"",
    );
}

#[test]
fn invalid_path_bind_source_as_target_over_root() {
    invalid_path(
        &container("web", "    bind \"/\"\n"),
        "cannot bind over the container's root directory",
        "\"/\"",
    );
}

// ---- values ------------------------------------------------------------------

#[track_caller]
fn invalid_value(text: &str, message: &str, span: &str) -> Diagnostic {
    expect_one(text, Format::Kdl, "ctm::invalid-value", message, span, span)
}

#[test]
fn invalid_value_suite() {
    let text = kdl_edit(&[("suite=\"bookworm\"", "suite=\"Bookworm\"")], "");
    invalid_value(
        &text,
        "`Bookworm` is not valid here; use lower-case letters, digits, `-`, `_` and `.`",
        "\"Bookworm\"",
    );
}

#[test]
fn invalid_value_variant() {
    let text = kdl_edit(
        &[("suite=\"bookworm\"", "suite=\"bookworm\" variant=\"full\"")],
        "",
    );
    invalid_value(
        &text,
        "`full` is not a debootstrap variant; use `minbase`, `buildd` or `fakechroot`",
        "\"full\"",
    );
}

#[test]
fn invalid_value_mirror() {
    let text = kdl_edit(
        &[(
            "suite=\"bookworm\"",
            "suite=\"bookworm\" mirror=\"ftp://deb.debian.org/debian\"",
        )],
        "",
    );
    invalid_value(
        &text,
        "`ftp://deb.debian.org/debian` is not a mirror URL; expected http://, https:// or file:/",
        "\"ftp://deb.debian.org/debian\"",
    );
}

#[test]
fn invalid_value_sha256() {
    let text =
        kdl("image \"packed\" {\n    tarball \"/srv/images/bookworm.tar.zst\" sha256=\"abc\"\n}\n");
    invalid_value(
        &text,
        "`abc` is not a SHA-256 digest (64 hex digits)",
        "\"abc\"",
    );
}

#[test]
fn invalid_value_protocol() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"sctp\" host=8080 container=80\n",
    ));
    invalid_value(
        &text,
        "`sctp` is not a protocol ctm forwards; use `tcp` or `udp`",
        "\"sctp\"",
    );
}

#[test]
fn invalid_value_memory_not_a_size() {
    let text = kdl(&container("web", "    limits memory=\"1GB\"\n"));
    invalid_value(
        &text,
        "`1GB` is not a size; write a whole number with K, M, G or T, e.g. `512M`",
        "\"1GB\"",
    );
}

#[test]
fn invalid_value_memory_too_little() {
    let text = kdl(&container("web", "    limits memory=\"1M\"\n"));
    invalid_value(
        &text,
        "`1M` is too little memory for a container; give at least 16M",
        "\"1M\"",
    );
}

#[test]
fn invalid_value_memory_too_large() {
    let text = kdl(&container("web", "    limits memory=\"99999999T\"\n"));
    invalid_value(&text, "`99999999T` is too large", "\"99999999T\"");
}

#[test]
fn invalid_value_cpus_not_positive() {
    let text = kdl(&container("web", "    limits cpus=0\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "0 is not a CPU count; give a number above 0, e.g. `2` or `0.5`",
        "0",
        "cpus=",
    );
}

#[test]
fn invalid_value_root_kind() {
    let text = kdl(&container("web", "    root \"union\"\n"));
    invalid_value(
        &text,
        "`union` is not a kind of root file system; use `auto`, `snapshot`, `reflink`, `copy` or `overlay`",
        "\"union\"",
    );
}

#[test]
fn invalid_value_cpus_below_one_percent() {
    let text = kdl(&container("web", "    limits cpus=0.001\n"));
    invalid_value(&text, "0.001 CPUs is less than 1% of a CPU", "0.001");
}

#[test]
fn invalid_value_cpus_too_many() {
    let text = kdl(&container("web", "    limits cpus=5000\n"));
    invalid_value(&text, "5000 is too many CPUs; give at most 4096", "5000");
}

#[test]
fn invalid_value_user_name() {
    let text = kdl(&container(
        "web",
        "    ssh {\n        user \"Admin\"\n    }\n",
    ));
    invalid_value(
        &text,
        "`Admin` is not a valid user name; use lower-case letters, digits, `_` and `-`, starting with a letter",
        "\"Admin\"",
    );
}

#[test]
fn invalid_value_environment_name() {
    let text = kdl(&container("web", "    environment \"1X\"=\"on\"\n"));
    let d = invalid_value(
        &text,
        "`1X` is not a valid environment variable name; use letters, digits and `_`, not starting with a digit",
        "\"1X\"",
    );
    assert_eq!(d.label.as_deref(), Some("invalid name"));
}

#[test]
fn invalid_value_environment_value() {
    let text = kdl(&container(
        "web",
        "    environment GREETING=\"hello world\"\n",
    ));
    invalid_value(
        &text,
        "` ` may not appear in an environment value: nspawn's Environment= splits on whitespace and interprets quotes",
        "\"hello world\"",
    );
}

#[test]
fn invalid_package() {
    let text = kdl_edit(
        &[(
            "debootstrap suite=\"bookworm\"\n",
            "debootstrap suite=\"bookworm\"\n    packages \"curl\" \"Bad_Pkg\"\n",
        )],
        "",
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-package",
        "`Bad_Pkg` is not a package name; Debian package names use lower-case letters, digits, `+`, `-` and `.`",
        "\"Bad_Pkg\"",
        "\"Bad_Pkg\"",
    );
}

#[test]
fn invalid_package_too_long() {
    let name = "p".repeat(201);
    let text = kdl(&container("web", &format!("    packages \"{name}\"\n")));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-package",
        "the package name is 201 bytes long; dpkg takes at most 200",
        &format!("\"{name}\""),
        "packages",
    );
}

#[test]
fn invalid_value_environment_name_too_long() {
    let name = "N".repeat(256);
    let text = kdl(&container(
        "web",
        &format!("    environment {name}=\"on\"\n"),
    ));
    invalid_value(
        &text,
        "the variable name is 256 bytes long; ctm takes at most 255",
        &name,
    );
}

#[test]
fn invalid_value_environment_value_too_long() {
    let value = "v".repeat(130_816);
    let text = kdl(&container(
        "web",
        &format!("    environment A=\"{value}\"\n"),
    ));
    invalid_value(
        &text,
        "the value is 130816 bytes long; the environment of a process (MAX_ARG_STRLEN) takes at most 130815",
        &format!("\"{value}\""),
    );
}

#[test]
fn invalid_value_suite_too_long() {
    let suite = "s".repeat(256);
    let text = kdl_edit(&[("suite=\"bookworm\"", &format!("suite=\"{suite}\""))], "");
    invalid_value(
        &text,
        "the word is 256 bytes long; a file name (NAME_MAX) takes at most 255",
        &format!("\"{suite}\""),
    );
}

#[test]
fn invalid_value_mirror_too_long() {
    let mirror = format!("http://{}", "m".repeat(4089));
    let text = kdl_edit(
        &[(
            "suite=\"bookworm\"",
            &format!("suite=\"bookworm\" mirror=\"{mirror}\""),
        )],
        "",
    );
    invalid_value(
        &text,
        "the mirror URL is 4096 bytes long; a path (PATH_MAX) takes at most 4095",
        &format!("\"{mirror}\""),
    );
}

#[test]
fn invalid_value_command_too_long() {
    let command = format!("echo {}", "x".repeat(131_067));
    let text = kdl(&container(
        "web",
        &format!("    check command=\"{command}\"\n"),
    ));
    invalid_value(
        &text,
        "the command is 131072 bytes long; an argument of execve (MAX_ARG_STRLEN) takes at most 131071",
        &format!("\"{command}\""),
    );
}

#[test]
fn invalid_ssh_key_too_long() {
    let key = format!("{KEY} {}", "c".repeat(32 << 10));
    let text = kdl(&container(
        "web",
        &format!("    ssh {{\n        authorized-key \"{key}\"\n    }}\n"),
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-ssh-key",
        &format!(
            "the key is {} bytes long; an authorized_keys line ctm writes takes at most 32768",
            key.len()
        ),
        &format!("\"{key}\""),
        "authorized-key",
    );
}

#[test]
fn invalid_package_of_a_container() {
    let text = kdl(&container("web", "    packages \"x\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-package",
        "`x` is not a package name; Debian package names use lower-case letters, digits, `+`, `-` and `.`",
        "\"x\"",
        "\"x\"",
    );
}

// ---- images ------------------------------------------------------------------

#[test]
fn image_source_missing() {
    let text = kdl("image \"empty\" {\n    packages \"curl\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::image-source",
        "image `empty` has no source",
        "\"empty\"",
        "\"empty\"",
    );
    assert_help(
        &d,
        "add one of: debootstrap suite=\"bookworm\", directory \"/path\", tarball \"/path.tar.zst\", oci \"REGISTRY/REPOSITORY:TAG\", oci-archive \"/path.tar\", from \"IMAGE\"",
    );
}

#[test]
fn image_source_more_than_one() {
    let text = kdl(
        "image \"two\" {\n    debootstrap suite=\"bookworm\"\n    directory \"/srv/images/two\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::image-source",
        "image `two` has more than one source",
        "directory",
        "directory",
    );
    assert_related(
        &text,
        &d,
        &[("debootstrap", "image \"two\"", "first source")],
    );
}

#[test]
fn packages_on_a_directory_image() {
    let text =
        kdl("image \"tree\" {\n    directory \"/srv/images/tree\"\n    packages \"curl\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::image-packages",
        "image `tree` is used as it is: it cannot get packages",
        "packages \"curl\"",
        "packages \"curl\"",
    );
    assert_help(
        &d,
        "ctm never changes a directory, tarball or OCI image; list the packages on the containers (or their template) instead, where they are installed when the container is provisioned",
    );
    assert_eq!(d.related.len(), 1);
}

// ---- OCI images ----------------------------------------------------------------

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn oci_image(line: &str) -> String {
    kdl(&format!("image \"app\" {{\n    {line}\n}}\n"))
}

#[track_caller]
fn invalid_reference(line: &str, message: &str, span: &str) {
    let text = oci_image(line);
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-reference",
        message,
        span,
        span,
    );
}

#[test]
fn invalid_reference_without_registry() {
    invalid_reference(
        "oci \"debian:12\"",
        "`debian:12` names no registry; write REGISTRY/REPOSITORY:TAG, e.g. `docker.io/library/debian:12`",
        "\"debian:12\"",
    );
}

#[test]
fn invalid_reference_first_component_not_a_registry() {
    invalid_reference(
        "oci \"library/debian:12\"",
        "`library` is not a registry's host name; the reference starts with the registry, e.g. `docker.io/library/debian`",
        "\"library/debian:12\"",
    );
}

#[test]
fn invalid_reference_with_a_scheme() {
    invalid_reference(
        "oci \"http://reg.example/app:1\"",
        "`http://reg.example/app:1` has a URL scheme; write the reference as REGISTRY/REPOSITORY:TAG (ctm uses HTTPS, or plain HTTP for a registry on loopback or marked insecure=#true)",
        "\"http://reg.example/app:1\"",
    );
}

#[test]
fn invalid_reference_without_tag_or_digest() {
    invalid_reference(
        "oci \"reg.example/app\"",
        "`reg.example/app` has neither a tag nor a digest; add one (`:latest` if that is what you mean)",
        "\"reg.example/app\"",
    );
}

#[test]
fn invalid_reference_bad_repository() {
    invalid_reference(
        "oci \"reg.example/App:1\"",
        "`App` is not a repository name component: lower-case letters and digits, separated by one `.`, `_`, `__` or dashes",
        "\"reg.example/App:1\"",
    );
}

#[test]
fn invalid_reference_bad_tag() {
    invalid_reference(
        "oci \"reg.example/app:.x\"",
        "`.x` is not a tag: a letter, digit or `_`, then letters, digits, `_`, `.` and `-`, at most 128 in all",
        "\"reg.example/app:.x\"",
    );
}

#[test]
fn invalid_reference_bad_port() {
    invalid_reference(
        "oci \"reg.example:0/app:1\"",
        "`0` is not a port (1 to 65535) in registry `reg.example:0`",
        "\"reg.example:0/app:1\"",
    );
}

#[test]
fn invalid_value_oci_digest() {
    let text = oci_image("oci \"reg.example/app:1\" digest=\"md5:00\"");
    invalid_value(
        &text,
        "`md5` digests are not supported; ctm verifies `sha256:` digests",
        "\"md5:00\"",
    );
}

#[test]
fn invalid_value_oci_digest_short() {
    let text = oci_image("oci \"reg.example/app:1\" digest=\"sha256:abc\"");
    invalid_value(
        &text,
        "`sha256:abc` is not a SHA-256 digest: `sha256:` must be followed by 64 lower-case hex digits",
        "\"sha256:abc\"",
    );
}

#[test]
fn image_digest_disagrees_with_the_reference() {
    let text = oci_image(&format!(
        "oci \"reg.example/app:1@{DIGEST_A}\" digest=\"{DIGEST_B}\""
    ));
    let quoted_b = format!("\"{DIGEST_B}\"");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::image-digest",
        "the reference and `digest` name different digests",
        &quoted_b,
        &quoted_b,
    );
    let reference = format!("\"reg.example/app:1@{DIGEST_A}\"");
    assert_related(&text, &d, &[(&reference, "oci", "the reference's digest")]);
    assert_help(
        &d,
        "keep one of them: `digest` pins the image as well as `@sha256:…` does",
    );
}

#[test]
fn invalid_path_oci_credentials() {
    invalid_path(
        "image \"app\" {\n    oci \"reg.example/app:1\" credentials=\"auth.json\"\n}\n",
        "`auth.json` is not an absolute path",
        "\"auth.json\"",
    );
}

#[test]
fn invalid_path_oci_archive() {
    invalid_path(
        "image \"app\" {\n    oci-archive \"app.tar\"\n}\n",
        "`app.tar` is not an absolute path",
        "\"app.tar\"",
    );
}

#[test]
fn packages_on_an_oci_image() {
    let text = oci_image("oci \"reg.example/app:1\"\n    packages \"curl\"");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::image-packages",
        "image `app` is used as it is: it cannot get packages",
        "packages \"curl\"",
        "packages \"curl\"",
    );
    assert_eq!(d.related.len(), 1);
}

#[test]
fn oci_images_in_toml_report_at_the_value() {
    let text = toml("\n[image.app]\noci = { reference = \"debian:12\" }\n");
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::invalid-reference",
        "`debian:12` names no registry; write REGISTRY/REPOSITORY:TAG, e.g. `docker.io/library/debian:12`",
        "\"debian:12\"",
        "\"debian:12\"",
    );
    assert!(d.is_error());
}

// ---- networks and tunnels ----------------------------------------------------

#[test]
fn nat_without_uplink() {
    let text = kdl_edit(
        &[
            ("    uplink \"eth0\"\n", ""),
            ("ipv4 \"10.42.0.1/24\"", "ipv4 \"10.42.0.1/24\" { nat; }"),
        ],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::nat-without-uplink",
        "`nat` needs the host's uplink",
        "nat",
        "{ nat",
    );
    assert_help(&d, "name the uplink: host \"NAME\" { uplink \"eth0\"; }");
}

#[test]
fn a_udp_forward_on_loopback() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"udp\" host=5353 container=53 loopback=#true\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::loopback-udp",
        "a `udp` forward cannot take connections on loopback",
        "#true",
        "loopback=#true",
    );
    assert_help(
        &d,
        "systemd-socket-proxyd relays streams only; remove `loopback`, or reach the container at its own address from the host",
    );
}

#[test]
fn a_container_named_like_a_loopback_name() {
    let text = kdl(&container("localhost", ""));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::name-shadows-host",
        "container name `localhost` would shadow a loopback name",
        "\"localhost\"",
        "container \"localhost\"",
    );
    assert_help(
        &d,
        "a container's name resolves to its addresses, on the host and in the containers of its network: give it another",
    );
}

#[test]
fn a_container_named_like_the_host() {
    let text = kdl(&container("lab1", ""));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::name-shadows-host",
        "container name `lab1` would shadow the host's own name",
        "\"lab1\"",
        "container \"lab1\"",
    );
}

#[test]
fn egress_nat_without_uplink() {
    let text = kdl_edit(
        &[
            ("    uplink \"eth0\"\n", ""),
            (
                "    ipv6 \"fd42:42::1/64\"\n",
                "    ipv6 \"fd42:42::1/64\"\n    egress \"nat\"\n",
            ),
        ],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::nat-without-uplink",
        "`egress \"nat\"` needs the host's uplink",
        "\"nat\"",
        "egress \"nat\"",
    );
    assert_help(&d, "name the uplink: host \"NAME\" { uplink \"eth0\"; }");
}

#[test]
fn egress_that_is_not_a_policy() {
    let text = kdl_edit(
        &[(
            "    ipv6 \"fd42:42::1/64\"\n",
            "    ipv6 \"fd42:42::1/64\"\n    egress \"open\"\n",
        )],
        "",
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`open` is not an egress policy; use `nat`, `routed` or `isolated`",
        "\"open\"",
        "egress \"open\"",
    );
}

#[test]
fn nat_on_an_isolated_network() {
    let text = kdl_edit(
        &[
            ("ipv4 \"10.42.0.1/24\"", "ipv4 \"10.42.0.1/24\" { nat; }"),
            (
                "    ipv6 \"fd42:42::1/64\"\n",
                "    ipv6 \"fd42:42::1/64\"\n    egress \"isolated\"\n",
            ),
        ],
        "",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::egress-conflict",
        "`nat` on the ipv4 subnet contradicts `egress \"isolated\"`",
        "nat",
        "{ nat",
    );
    assert_help(
        &d,
        "remove `nat`, or make the policy `egress \"nat\"`: an isolated network has no way out to masquerade",
    );
    assert_eq!(covered(&text, d.related[0].0), "\"isolated\"");
}

#[test]
fn nat_on_a_routed_network_in_toml() {
    let text = toml_edit(
        &[(
            "ipv4 = \"10.42.0.1/24\"\n",
            "ipv4 = { address = \"10.42.0.1/24\", nat = true }\negress = \"routed\"\n",
        )],
        "",
    );
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::egress-conflict",
        "`nat` on the ipv4 subnet contradicts `egress \"routed\"`",
        "nat",
        "nat = true",
    );
    assert_help(&d, "remove `nat`, or make the policy `egress \"nat\"`");
}

#[test]
fn rule_with_a_port_but_no_protocol() {
    let text = kdl(
        "container \"db\" {\n    image \"debian\"\n    network \"lan\"\n    allow port=5432\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::port-without-protocol",
        "`allow` names a port but no protocol",
        "5432",
        "port=5432",
    );
    assert_help(&d, "write the protocol first: allow \"tcp\" port=…");
}

#[test]
fn rule_from_a_network_that_does_not_exist() {
    let text = kdl(
        "container \"db\" {\n    image \"debian\"\n    network \"lan\"\n    deny \"tcp\" from=\"lann\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no network named `lann`",
        "\"lann\"",
        "from=\"lann\"",
    );
    assert_help(&d, "did you mean `lan`?");
}

#[test]
fn rule_from_the_containers_own_network() {
    let text = kdl(
        "container \"db\" {\n    image \"debian\"\n    network \"lan\"\n    allow \"tcp\" port=5432 from=\"lan\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::rule-own-network",
        "`allow` from `lan`, the network container `db` is on, filters nothing",
        "\"lan\"",
        "from=\"lan\"",
    );
    assert_help(
        &d,
        "containers on one network reach each other over its bridge, which the firewall does not see; put the containers on two networks to filter between them",
    );
}

#[test]
fn rule_on_a_container_without_a_network() {
    let text = kdl("container \"db\" {\n    image \"debian\"\n    allow \"udp\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::rule-without-network",
        "container `db` has no network for `allow` to filter",
        "allow \"udp\"",
        "allow",
    );
    assert_help(
        &d,
        "attach the container to a network with `network \"NAME\"`, or remove the rule",
    );
}

#[test]
fn packages_installed_from_inside_an_isolated_network() {
    let text = kdl_edit(
        &[
            (
                "debootstrap suite=\"bookworm\"\n",
                "debootstrap suite=\"bookworm\"\n    packages \"postgresql\"\n",
            ),
            (
                "    ipv6 \"fd42:42::1/64\"\n",
                "    ipv6 \"fd42:42::1/64\"\n    egress \"isolated\"\n",
            ),
        ],
        "container \"db\" {\n    image \"debian\"\n    network \"lan\"\n    packages \"postgresql\" \"vim\"\n    ssh {\n        user \"dba\"\n    }\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::install-on-isolated-network",
        "container `db` would install `openssh-server`, `vim` with apt from inside, but network `lan` is isolated",
        "\"lan\"",
        "network \"lan\"\n    packages",
    );
    assert_help(
        &d,
        "add them to the `packages` of image `debian` (installed when it is built), or give the network `egress \"nat\"` or `\"routed\"`",
    );
}

#[test]
fn tunnel_endpoints_of_different_families() {
    let text = kdl("tunnel \"site-b\" {\n    gre local=\"192.0.2.1\" remote=\"2001:db8::7\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::tunnel-endpoints",
        "the tunnel's endpoints are of different address families",
        "\"2001:db8::7\"",
        "\"2001:db8::7\"",
    );
    assert_related(&text, &d, &[("\"192.0.2.1\"", "local=", "and this one")]);
}

#[test]
fn tunnel_endpoints_the_same() {
    let text = kdl("tunnel \"site-b\" {\n    gre local=\"192.0.2.1\" remote=\"192.0.2.1\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::tunnel-endpoints",
        "the tunnel's local and remote endpoints are the same address",
        "\"192.0.2.1\"",
        "remote=",
    );
}

/// A tunnel `site-b` with these lines in its body.
fn tunnel(body: &str) -> String {
    kdl(&format!("tunnel \"site-b\" {{\n{body}}}\n"))
}

const VXLAN: &str = "    vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\"\n";

#[test]
fn a_valid_vxlan_tunnel_has_no_diagnostics() {
    let text = tunnel(&format!(
        "{VXLAN}    mtu 1450\n    address \"172.16.1.0/31\"\n"
    ));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
    let text = tunnel(
        "    vxlan id=7 local=\"192.0.2.1\" group=\"239.1.1.1\" device=\"eth1\" port=8472 underlay-mtu=9000\n    mtu 8950\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
}

#[test]
fn tunnel_kind_gre_and_vxlan() {
    let text = tunnel(&format!(
        "    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n{VXLAN}"
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::tunnel-kind",
        "a tunnel is either `gre` or `vxlan`, not both",
        "vxlan",
        "vxlan",
    );
    assert_related(&text, &d, &[("gre", "gre", "first kind")]);
    assert_help(&d, "make a tunnel of each kind, with its own name");
}

#[test]
fn invalid_value_vxlan_id() {
    let text = tunnel("    vxlan id=16777216 local=\"192.0.2.1\" remote=\"198.51.100.7\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "16777216 is not a VXLAN id; ids are 1 to 16777215",
        "16777216",
        "id=",
    );
    assert_eq!(d.label.as_deref(), Some("not a VXLAN id"));
}

#[test]
fn invalid_port_of_a_vxlan_tunnel() {
    let text = tunnel("    vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\" port=70000\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-port",
        "70000 is not a port; ports are 1 to 65535",
        "70000",
        "port=",
    );
}

#[test]
fn invalid_interface_name_of_a_vxlan_device() {
    let text =
        tunnel("    vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\" device=\"eth 0\"\n");
    let d = diagnose(&text, Format::Kdl);
    assert_eq!(d.len(), 1, "{}", list(&d));
    assert_eq!(d[0].code, "ctm::invalid-interface-name");
    assert_span(&text, d[0].span, "\"eth 0\"", "device=");
}

#[test]
fn vxlan_peer_remote_and_group() {
    let text = tunnel(
        "    vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\" group=\"239.1.1.1\" device=\"eth0\"\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::vxlan-peer",
        "a VXLAN tunnel sends to a `remote` or to a `group`, not both",
        "\"239.1.1.1\"",
        "group=",
    );
    assert_help(
        &d,
        "keep `remote` for one peer, `group` for a multicast group of them",
    );
}

#[test]
fn vxlan_peer_missing() {
    let text = tunnel("    vxlan id=42 local=\"192.0.2.1\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::vxlan-peer",
        "a VXLAN tunnel needs `remote` or `group`",
        "vxlan",
        "vxlan",
    );
    assert_eq!(d.label.as_deref(), Some("sends to whom?"));
}

#[test]
fn vxlan_peer_group_not_multicast() {
    let text =
        tunnel("    vxlan id=42 local=\"192.0.2.1\" group=\"198.51.100.7\" device=\"eth0\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::vxlan-peer",
        "198.51.100.7 is not a multicast address",
        "\"198.51.100.7\"",
        "group=",
    );
}

#[test]
fn vxlan_peer_group_without_device() {
    let text = tunnel("    vxlan id=42 local=\"192.0.2.1\" group=\"239.1.1.1\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::vxlan-peer",
        "a multicast group needs the underlay `device` to join it on",
        "\"239.1.1.1\"",
        "group=",
    );
    assert_help(&d, "name the interface: device=\"eth0\"");
}

#[test]
fn vxlan_peer_remote_multicast() {
    let text = tunnel("    vxlan id=42 local=\"192.0.2.1\" remote=\"239.1.1.1\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::vxlan-peer",
        "239.1.1.1 is a multicast address",
        "\"239.1.1.1\"",
        "remote=",
    );
}

#[test]
fn tunnel_endpoints_of_a_vxlan_of_different_families() {
    let text = tunnel("    vxlan id=42 local=\"192.0.2.1\" remote=\"2001:db8::7\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::tunnel-endpoints",
        "the tunnel's endpoints are of different address families",
        "\"2001:db8::7\"",
        "remote=",
    );
    assert_help(
        &d,
        "use two IPv4 addresses (vxlan over IPv4) or two IPv6 addresses (vxlan over IPv6)",
    );
}

#[test]
fn duplicate_vxlan_id_and_port() {
    let text = kdl(&format!(
        "tunnel \"site-b\" {{\n{VXLAN}}}\ntunnel \"site-c\" {{\n    vxlan id=42 local=\"192.0.2.1\" remote=\"203.0.113.9\"\n}}\n"
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-vxlan",
        "tunnel `site-b` already uses VXLAN id 42 on port 4789 over IPv4",
        "42",
        "\"site-c\"",
    );
    assert_related(&text, &d, &[("42", "id=", "first used here")]);
    // Another port, or another family, is another link.
    let other_port = kdl(&format!(
        "tunnel \"site-b\" {{\n{VXLAN}}}\ntunnel \"site-c\" {{\n    vxlan id=42 local=\"192.0.2.1\" remote=\"203.0.113.9\" port=4790\n}}\n"
    ));
    assert_eq!(list(&diagnose(&other_port, Format::Kdl)), "");
}

#[test]
fn tunnel_mtu_more_than_the_underlay_carries() {
    let text = tunnel(&format!("{VXLAN}    mtu 1500\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::tunnel-mtu",
        "an MTU of 1500 is more than a 1500-byte underlay carries over vxlan (at most 1450)",
        "1500",
        "mtu ",
    );
    assert_eq!(d.label.as_deref(), Some("50 bytes of headers do not fit"));
    assert_help(
        &d,
        "lower it to 1450 or less, or, if every link between the endpoints carries more, say so: underlay-mtu=1550",
    );
    // Over IPv6 VXLAN carries 70 bytes of headers; GRE over IPv4, 24.
    let text =
        tunnel("    vxlan id=42 local=\"2001:db8::1\" remote=\"2001:db8::7\"\n    mtu 1431\n");
    let d = diagnose(&text, Format::Kdl);
    assert_eq!(d.len(), 1, "{}", list(&d));
    assert_eq!(
        d[0].message,
        "an MTU of 1431 is more than a 1500-byte underlay carries over vxlan (at most 1430)"
    );
    let text = tunnel(
        "    gre local=\"192.0.2.1\" remote=\"198.51.100.7\" underlay-mtu=1400\n    mtu 1400\n",
    );
    let d = diagnose(&text, Format::Kdl);
    assert_eq!(d.len(), 1, "{}", list(&d));
    assert_eq!(
        d[0].message,
        "an MTU of 1400 is more than a 1400-byte underlay carries over gre (at most 1376)"
    );
}

#[test]
fn tunnel_mtu_more_than_the_underlay_carries_in_toml() {
    let text = toml(
        "\n[tunnel.site-b]\nvxlan = { id = 42, local = \"192.0.2.1\", remote = \"198.51.100.7\" }\nmtu = 1451\n",
    );
    expect_one(
        &text,
        Format::Toml,
        "ctm::tunnel-mtu",
        "an MTU of 1451 is more than a 1500-byte underlay carries over vxlan (at most 1450)",
        "1451",
        "mtu = ",
    );
}

#[test]
fn tunnel_mtu_of_an_underlay_too_small() {
    let text =
        tunnel("    vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\" underlay-mtu=100\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::tunnel-mtu",
        "an underlay MTU of 100 bytes cannot carry vxlan with its 50 bytes of headers",
        "100",
        "underlay-mtu=",
    );
    assert_eq!(d.label.as_deref(), Some("too small"));
}

#[test]
fn invalid_value_tunnel_mtu() {
    let text = tunnel(&format!("{VXLAN}    mtu 67\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "67 is not an MTU; MTUs are 68 to 65535 bytes",
        "67",
        "mtu ",
    );
    assert_eq!(d.label.as_deref(), Some("not an MTU"));
}

#[test]
fn duplicate_interface_tunnel_and_bridge() {
    let text = kdl("tunnel \"br-lan\" {\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-interface",
        "interface `br-lan` is used twice",
        "\"br-lan\"",
        "tunnel",
    );
    assert_related(&text, &d, &[("\"br-lan\"", "bridge", "first used here")]);
    assert_help(
        &d,
        "bridges, tunnels and the uplink each need their own interface name",
    );
}

#[test]
fn duplicate_interface_bridge_and_uplink() {
    let text = kdl_edit(&[("bridge \"br-lan\"", "bridge \"eth0\"")], "");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-interface",
        "interface `eth0` is used twice",
        "\"eth0\"",
        "bridge",
    );
    assert_related(&text, &d, &[("\"eth0\"", "uplink", "first used here")]);
}

#[test]
fn duplicate_interface_two_bridges() {
    let text = kdl("network \"dmz\" {\n    bridge \"br-lan\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-interface",
        "interface `br-lan` is used twice",
        "\"br-lan\"",
        "network \"dmz\"",
    );
    assert_related(&text, &d, &[("\"br-lan\"", "bridge", "first used here")]);
}

#[test]
fn overlapping_subnets_of_networks() {
    let text = kdl("network \"dmz\" {\n    bridge \"br-dmz\"\n    ipv4 \"10.42.0.129/25\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::overlapping-subnets",
        "10.42.0.128/25 of network `dmz` overlaps 10.42.0.0/24 of network `lan`",
        "\"10.42.0.129/25\"",
        "\"10.42.0.129/25\"",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"10.42.0.1/24\"",
            "\"10.42.0.1/24\"",
            "network `lan` has 10.42.0.0/24",
        )],
    );
    assert_help(
        &d,
        "give every network, tunnel and link its own address range",
    );
}

#[test]
fn overlapping_subnets_ipv6() {
    let text = kdl("network \"dmz\" {\n    bridge \"br-dmz\"\n    ipv6 \"fd42:42::1:1/112\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::overlapping-subnets",
        "fd42:42::1:0/112 of network `dmz` overlaps fd42:42::/64 of network `lan`",
        "\"fd42:42::1:1/112\"",
        "\"fd42:42::1:1/112\"",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"fd42:42::1/64\"",
            "\"fd42:42::1/64\"",
            "network `lan` has fd42:42::/64",
        )],
    );
}

#[test]
fn overlapping_subnets_of_a_tunnel() {
    let text = kdl(
        "tunnel \"site-b\" {\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n    address \"10.42.0.8/31\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::overlapping-subnets",
        "10.42.0.8/31 of tunnel `site-b` overlaps 10.42.0.0/24 of network `lan`",
        "\"10.42.0.8/31\"",
        "\"10.42.0.8/31\"",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"10.42.0.1/24\"",
            "\"10.42.0.1/24\"",
            "network `lan` has 10.42.0.0/24",
        )],
    );
}

// ---- references and templates ------------------------------------------------

#[test]
fn unknown_reference_image() {
    let text = kdl("container \"web\" {\n    image \"debain\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no image named `debain`",
        "\"debain\"",
        "\"debain\"",
    );
    assert_eq!(d.label.as_deref(), Some("unknown image"));
    assert_help(&d, "did you mean `debian`?");
}

#[test]
fn unknown_reference_network() {
    let text = kdl(&container("web", "    network \"lann\"\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no network named `lann`",
        "\"lann\"",
        "\"lann\"",
    );
    assert_help(&d, "did you mean `lan`?");
}

#[test]
fn unknown_reference_template() {
    let text = kdl(&format!(
        "template \"base\" {{\n    image \"debian\"\n}}\n{}",
        container("web", "    from \"bsae\"\n")
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no template named `bsae`",
        "\"bsae\"",
        "\"bsae\"",
    );
    assert_help(&d, "did you mean `base`?");
}

#[test]
fn unknown_reference_template_when_there_are_none() {
    let text = kdl(&container("web", "    from \"base\"\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no template named `base`",
        "\"base\"",
        "\"base\"",
    );
    assert_help(&d, "define it with: template \"base\" { … }");
}

#[test]
fn unknown_reference_no_close_match() {
    let text = kdl(&container("web", "    network \"dmz\"\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no network named `dmz`",
        "\"dmz\"",
        "\"dmz\"",
    );
    assert_help(&d, "expected one of: `lan`");
}

#[test]
fn template_cycle() {
    let text = kdl("template \"a\" {\n    from \"b\"\n}\ntemplate \"b\" {\n    from \"a\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::template-cycle",
        "templates inherit from each other in a cycle: a → b → a",
        "\"a\"",
        "from \"a\"",
    );
    assert_eq!(d.label.as_deref(), Some("closes the cycle"));
    assert_help(&d, "remove one of the `from` lines in the cycle");
}

#[test]
fn template_cycle_of_one() {
    let text = kdl("template \"a\" {\n    from \"a\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::template-cycle",
        "templates inherit from each other in a cycle: a → a",
        "\"a\"",
        "from \"a\"",
    );
}

#[test]
fn template_cycle_reported_once_however_often_used() {
    let text = kdl(
        "template \"a\" {\n    from \"b\"\n}\ntemplate \"b\" {\n    from \"a\"\n    image \"debian\"\n}\n\
         container \"web\" {\n    from \"a\"\n}\ncontainer \"db\" {\n    from \"b\"\n}\n",
    );
    let diagnostics = diagnose(&text, Format::Kdl);
    let codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["ctm::template-cycle"], "{}", list(&diagnostics));
}

#[test]
fn missing_image() {
    let text = kdl("container \"web\" {\n    network \"lan\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-image",
        "container `web` has no image",
        "\"web\"",
        "\"web\"",
    );
    assert_help(
        &d,
        "add `image \"NAME\"`, or `from` a template that sets one",
    );
}

// ---- containers ----------------------------------------------------------------

#[test]
fn invalid_port_zero() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"tcp\" host=0 container=80\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-port",
        "0 is not a port; ports are 1 to 65535",
        "0",
        "host=",
    );
    assert_eq!(d.label.as_deref(), Some("not a port"));
}

#[test]
fn invalid_port_too_large() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"udp\" host=53 container=70000\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-port",
        "70000 is not a port; ports are 1 to 65535",
        "70000",
        "70000",
    );
}

#[test]
fn invalid_port_negative() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    forward \"udp\" host=-53 container=53\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-port",
        "-53 is not a port; ports are 1 to 65535",
        "-53",
        "-53",
    );
}

#[track_caller]
fn invalid_ssh_key(key: &str, message: &str) {
    let text = kdl(&container(
        "web",
        &format!("    network \"lan\"\n    ssh {{\n        authorized-key \"{key}\"\n    }}\n"),
    ));
    let quoted = format!("\"{key}\"");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-ssh-key",
        message,
        &quoted,
        &quoted,
    );
}

#[test]
fn a_valid_ssh_key_is_accepted() {
    let text = kdl(&container(
        "web",
        &format!("    network \"lan\"\n    ssh {{\n        authorized-key \"{KEY}\"\n    }}\n"),
    ));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
}

#[test]
fn invalid_ssh_key_unknown_type() {
    invalid_ssh_key(
        "ssh-foo AAAA",
        "not a valid OpenSSH public key: `ssh-foo` is not an OpenSSH public key type; expected e.g. `ssh-ed25519 AAAA… comment`",
    );
}

#[test]
fn invalid_ssh_key_dsa() {
    invalid_ssh_key(
        "ssh-dss AAAAB3NzaC1kc3M= old@host",
        "not a valid OpenSSH public key: DSA keys are no longer accepted by OpenSSH; expected e.g. `ssh-ed25519 AAAA… comment`",
    );
}

#[test]
fn invalid_ssh_key_without_data() {
    invalid_ssh_key(
        "ssh-ed25519",
        "not a valid OpenSSH public key: the key data is missing",
    );
}

#[test]
fn invalid_ssh_key_not_base64() {
    invalid_ssh_key(
        "ssh-ed25519 !!!! admin@laptop",
        "not a valid OpenSSH public key: the key data is not valid base64",
    );
}

#[test]
fn invalid_ssh_key_of_another_type() {
    let data = KEY.split(' ').nth(1).unwrap();
    invalid_ssh_key(
        &format!("ssh-rsa {data} admin@laptop"),
        "not a valid OpenSSH public key: the key data is not an `ssh-rsa` key",
    );
}

#[test]
fn invalid_ssh_key_ed25519_of_wrong_length() {
    // "ssh-ed25519" followed by 31 key bytes instead of 32.
    invalid_ssh_key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAHwEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        "not a valid OpenSSH public key: the ed25519 key data has the wrong length",
    );
}

// ---- container addresses -----------------------------------------------------

#[track_caller]
fn invalid_container_address(
    edits: &[(&str, &str)],
    attach: &str,
    address: &str,
    message: &str,
    subnet: Option<&str>,
) {
    let text = kdl_edit(
        edits,
        &container("web", &format!("    network \"lan\" {attach}\n")),
    );
    let quoted = format!("\"{address}\"");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-container-address",
        message,
        &quoted,
        "container",
    );
    assert_eq!(d.label.as_deref(), Some("cannot be used for a container"));
    assert_help(
        &d,
        "pick a free host address inside the network's subnet, or leave it out and ctm assigns one",
    );
    match subnet {
        Some(subnet) => assert_related(&text, &d, &[(subnet, subnet, "the network's subnet")]),
        None => assert_related(&text, &d, &[]),
    }
}

#[test]
fn invalid_container_address_outside_the_subnet() {
    invalid_container_address(
        &[],
        "ipv4=\"10.43.0.5\"",
        "10.43.0.5",
        "10.43.0.5 is outside the network's subnet 10.42.0.0/24",
        Some("\"10.42.0.1/24\""),
    );
}

#[test]
fn invalid_container_address_the_gateway() {
    invalid_container_address(
        &[],
        "ipv4=\"10.42.0.1\"",
        "10.42.0.1",
        "10.42.0.1 is the gateway, the bridge's own address",
        Some("\"10.42.0.1/24\""),
    );
}

#[test]
fn invalid_container_address_the_network_address() {
    invalid_container_address(
        &[],
        "ipv4=\"10.42.0.0\"",
        "10.42.0.0",
        "10.42.0.0 is the network address of 10.42.0.0/24",
        Some("\"10.42.0.1/24\""),
    );
}

#[test]
fn invalid_container_address_the_broadcast_address() {
    invalid_container_address(
        &[],
        "ipv4=\"10.42.0.255\"",
        "10.42.0.255",
        "10.42.0.255 is the broadcast address of 10.42.0.0/24",
        Some("\"10.42.0.1/24\""),
    );
}

#[test]
fn invalid_container_address_ipv6_anycast() {
    invalid_container_address(
        &[],
        "ipv6=\"fd42:42::\"",
        "fd42:42::",
        "fd42:42:: is the subnet-router anycast address of fd42:42::/64",
        Some("\"fd42:42::1/64\""),
    );
}

#[test]
fn invalid_container_address_ipv6_outside_the_subnet() {
    invalid_container_address(
        &[],
        "ipv6=\"fd43::5\"",
        "fd43::5",
        "fd43::5 is outside the network's subnet fd42:42::/64",
        Some("\"fd42:42::1/64\""),
    );
}

#[test]
fn invalid_container_address_ipv6_gateway() {
    invalid_container_address(
        &[],
        "ipv6=\"fd42:42::1\"",
        "fd42:42::1",
        "fd42:42::1 is the gateway, the bridge's own address",
        Some("\"fd42:42::1/64\""),
    );
}

#[test]
fn invalid_container_address_network_without_ipv6() {
    invalid_container_address(
        &[("    ipv6 \"fd42:42::1/64\"\n", "")],
        "ipv6=\"fd42:42::5\"",
        "fd42:42::5",
        "network `lan` has no IPv6 subnet",
        None,
    );
}

#[test]
fn invalid_container_address_network_without_ipv4() {
    invalid_container_address(
        &[("    ipv4 \"10.42.0.1/24\"\n", "")],
        "ipv4=\"10.42.0.5\"",
        "10.42.0.5",
        "network `lan` has no IPv4 subnet",
        None,
    );
}

#[test]
fn invalid_container_address_in_toml() {
    let text = toml(
        "\n[container.web]\nimage = \"debian\"\nnetwork = { name = \"lan\", ipv4 = \"10.43.0.5\" }\n",
    );
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::invalid-container-address",
        "10.43.0.5 is outside the network's subnet 10.42.0.0/24",
        "\"10.43.0.5\"",
        "\"10.43.0.5\"",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"10.42.0.1/24\"",
            "\"10.42.0.1/24\"",
            "the network's subnet",
        )],
    );
}

#[test]
fn duplicate_address() {
    let text = kdl(&format!(
        "{}{}",
        container("a", "    network \"lan\" ipv4=\"10.42.0.5\"\n"),
        container("b", "    network \"lan\" ipv4=\"10.42.0.5\"\n"),
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-address",
        "10.42.0.5 is already the address of container `a`",
        "\"10.42.0.5\"",
        "container \"b\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"10.42.0.5\"", "container \"a\"", "`a` has it")],
    );
    assert_help(&d, "every container needs its own address");
}

#[test]
fn duplicate_address_ipv6() {
    let text = kdl(&format!(
        "{}{}",
        container("a", "    network \"lan\" ipv6=\"fd42:42::5\"\n"),
        container("b", "    network \"lan\" ipv6=\"fd42:42::5\"\n"),
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-address",
        "fd42:42::5 is already the address of container `a`",
        "\"fd42:42::5\"",
        "container \"b\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"fd42:42::5\"", "container \"a\"", "`a` has it")],
    );
}

#[test]
fn duplicate_address_blames_the_later_one_in_the_file() {
    let text = kdl(&format!(
        "{}{}",
        container("web", "    network \"lan\" ipv4=\"10.42.0.5\"\n"),
        container("app", "    network \"lan\" ipv4=\"10.42.0.5\"\n"),
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-address",
        "10.42.0.5 is already the address of container `web`",
        "\"10.42.0.5\"",
        "container \"app\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"10.42.0.5\"", "container \"web\"", "`web` has it")],
    );
}

#[test]
fn duplicate_address_recorded_in_the_lock_file() {
    let text = kdl(&format!(
        "{}{}",
        container("db", "    network \"lan\"\n"),
        container("web", "    network \"lan\" ipv4=\"10.42.0.5\"\n"),
    ));
    let lock = "version = 1\n\n[containers.db]\nnetwork = \"lan\"\nipv4 = \"10.42.0.5\"\n";
    let diagnostics = diagnose_with_lock(&text, Format::Kdl, lock);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = &diagnostics[0];
    check(
        &text,
        d,
        "ctm::duplicate-address",
        "10.42.0.5 is already assigned to container `db` (recorded in the lock file)",
        "\"10.42.0.5\"",
        "\"10.42.0.5\"",
    );
    assert_eq!(d.label.as_deref(), Some("`web` claims it here"));
    assert_help(
        d,
        "choose another address; ctm never moves `db` by itself. To let it pick a new one for `db`, remove `db` from the lock file",
    );
}

#[test]
fn network_full_ipv4() {
    let text = kdl_edit(
        &[("\"10.42.0.1/24\"", "\"10.42.0.1/30\"")],
        &format!(
            "{}{}",
            container("a", "    network \"lan\"\n"),
            container("b", "    network \"lan\"\n"),
        ),
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::network-full",
        "network `lan` has no free IPv4 address left for container `b`",
        "\"b\"",
        "\"b\"",
    );
    assert_help(&d, "use a larger subnet (a shorter prefix)");
}

fn with_dns(servers: &str) -> String {
    kdl_edit(
        &[(
            "    ipv6 \"fd42:42::1/64\"\n",
            &format!("    ipv6 \"fd42:42::1/64\"\n    dns {servers}\n"),
        )],
        "",
    )
}

#[test]
fn dns_not_an_address() {
    let text = with_dns("\"9.9.9.9\" \"dns.quad9.net\"");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "`dns.quad9.net` is not an IPv4 or IPv6 address",
        "\"dns.quad9.net\"",
        "\"dns.quad9.net\"",
    );
}

#[test]
fn dns_server_twice() {
    let text = with_dns("\"9.9.9.9\" \"1.1.1.1\" \"9.9.9.9\"");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "name server 9.9.9.9 is listed twice",
        "\"9.9.9.9\"",
        "\"1.1.1.1\" \"9.9.9.9\"",
    );
    assert_eq!(d.label.as_deref(), Some("again here"));
}

#[test]
fn dns_too_many_servers() {
    let text = with_dns("\"9.9.9.9\" \"1.1.1.1\" \"8.8.8.8\" \"2620:fe::fe\"");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "at most 3 name servers: a container's resolver reads no more",
        "\"2620:fe::fe\"",
        "\"2620:fe::fe\"",
    );
}

#[test]
fn network_full_ipv6() {
    let text = kdl_edit(
        &[("\"fd42:42::1/64\"", "\"fd42:42::1/126\"")],
        &format!(
            "{}{}{}",
            container("a", "    network \"lan\"\n"),
            container("b", "    network \"lan\"\n"),
            container("c", "    network \"lan\"\n"),
        ),
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::network-full",
        "network `lan` has no free IPv6 address left for container `c`",
        "\"c\"",
        "\"c\"",
    );
}

#[test]
fn forward_without_address() {
    let text = kdl(&container(
        "web",
        "    forward \"tcp\" host=8080 container=80\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::forward-without-address",
        "container `web` has no address to forward tcp port 8080 to",
        "forward \"tcp\" host=8080 container=80",
        "forward",
    );
    assert_help(
        &d,
        "attach the container to a network with `network \"NAME\"`",
    );
}

#[test]
fn duplicate_forward() {
    let text = kdl(&format!(
        "{}{}",
        container(
            "a",
            "    network \"lan\"\n    forward \"tcp\" host=8080 container=80\n"
        ),
        container(
            "b",
            "    network \"lan\"\n    forward \"tcp\" host=8080 container=81\n"
        ),
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-forward",
        "host tcp port 8080 is already forwarded to container `a`",
        "forward \"tcp\" host=8080 container=81",
        "forward \"tcp\" host=8080 container=81",
    );
    assert_related(
        &text,
        &d,
        &[(
            "forward \"tcp\" host=8080 container=80",
            "forward",
            "first forwarded here",
        )],
    );
    assert_help(
        &d,
        "a host port can go to one container only; pick another host port",
    );
}

#[test]
fn the_same_port_over_tcp_and_udp_is_no_duplicate() {
    let text = kdl(&format!(
        "{}{}",
        container(
            "a",
            "    network \"lan\"\n    forward \"tcp\" host=53 container=53\n"
        ),
        container(
            "b",
            "    network \"lan\"\n    forward \"udp\" host=53 container=53\n"
        ),
    ));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
}

#[test]
fn docker_needs_network() {
    let text = kdl(&container("web", "    docker\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::docker-needs-network",
        "`docker` in container `web` needs a private network",
        "docker",
        "docker",
    );
    assert_related(
        &text,
        &d,
        &[("\"web\"", "\"web\"", "this container has no `network`")],
    );
}

#[test]
fn bind_breaks_feature_read_only() {
    let text = kdl(&container(
        "web",
        "    nested\n    bind \"/srv/machines\" \"/var/lib/machines\" read-only=#true\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::bind-breaks-feature",
        "a read-only bind at /var/lib/machines breaks `nested`",
        "bind \"/srv/machines\" \"/var/lib/machines\" read-only=#true",
        "bind",
    );
    assert_related(&text, &d, &[("nested", "nested", "`nested` set here")]);
    assert_help(
        &d,
        "`nested` writes to /var/lib/machines; make the bind writable or move it",
    );
}

#[test]
fn idmap_without_userns() {
    let text = kdl(&container(
        "web",
        "    nested\n    bind \"/srv/data\" \"/data\" idmap=#true\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::idmap-without-userns",
        "`idmap` on the bind at /data has nothing to map: a `nested` container shares the host's users",
        "bind \"/srv/data\" \"/data\" idmap=#true",
        "bind",
    );
    assert_related(&text, &d, &[("nested", "nested", "`nested` set here")]);
    assert_help(
        &d,
        "remove idmap=#true: the container sees the files with their host owners already",
    );
}

// ---- volumes -------------------------------------------------------------------

/// The prelude with a volume `data` (quota 1G) and `extra` after it.
fn with_volume(extra: &str) -> String {
    kdl(&format!(
        "volume \"data\" {{\n    quota \"1G\"\n}}\n{extra}"
    ))
}

#[test]
fn a_volume_mounted_by_two_containers_is_valid() {
    let text = with_volume(&format!(
        "{}{}",
        container("db", "    volume \"data\" \"/var/lib/db\" idmap=#true\n"),
        container(
            "backup",
            "    volume \"data\" \"/srv/db\" read-only=#true\n"
        ),
    ));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
}

#[test]
fn volume_invalid_name() {
    let text = kdl("volume \"-data\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-name",
        "a name may not start with `.` or `-`",
        "\"-data\"",
        "volume",
    );
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn volume_defined_twice() {
    let text = kdl("volume \"data\"\nvolume \"data\" {\n    quota \"1G\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-name",
        "volume `data` is defined twice",
        "\"data\"",
        "volume \"data\" {",
    );
    assert_related(&text, &d, &[("\"data\"", "volume", "first defined here")]);
    assert_help(&d, "every volume needs a name of its own");
}

#[track_caller]
fn invalid_quota(quota: &str, message: &str) {
    let text = kdl(&format!("volume \"data\" {{\n    quota \"{quota}\"\n}}\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        message,
        &format!("\"{quota}\""),
        "quota",
    );
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn volume_quota_not_a_size() {
    invalid_quota(
        "10GB",
        "`10GB` is not a size; write a whole number with K, M, G or T, e.g. `512M`",
    );
}

#[test]
fn volume_quota_too_small() {
    invalid_quota(
        "512K",
        "`512K` is too small a quota for a volume; give at least 1M",
    );
}

#[test]
fn volume_quota_not_whole_kibibytes() {
    invalid_quota(
        "1048577",
        "`1048577` is not a whole number of kibibytes; quotas count in 1K blocks",
    );
}

#[test]
fn volume_quota_too_large() {
    invalid_quota("99999999999T", "`99999999999T` is too large");
}

#[test]
fn toml_volume_quota_not_a_size() {
    let text = toml("[volume.data]\nquota = \"lots\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::invalid-value",
        "`lots` is not a size; write a whole number with K, M, G or T, e.g. `512M`",
        "\"lots\"",
        "quota",
    );
}

#[test]
fn a_volume_with_a_bad_quota_is_reported_once_not_at_its_mounts() {
    let text = kdl(&format!(
        "volume \"data\" {{\n    quota \"0\"\n}}\n{}",
        container("db", "    volume \"data\" \"/var/lib/db\"\n")
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`0` is too small a quota for a volume; give at least 1M",
        "\"0\"",
        "quota",
    );
}

#[test]
fn unknown_reference_volume() {
    let text = with_volume(&container("db", "    volume \"dta\" \"/var/lib/db\"\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no volume named `dta`",
        "\"dta\"",
        "container",
    );
    assert_eq!(d.label.as_deref(), Some("unknown volume"));
    assert_help(&d, "did you mean `data`?");
}

#[test]
fn unknown_reference_volume_when_there_are_none() {
    let text = kdl(&container("db", "    volume \"data\" \"/var/lib/db\"\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no volume named `data`",
        "\"data\"",
        "container",
    );
    assert_help(&d, "define it with: volume \"data\" { … }");
}

#[test]
fn toml_unknown_reference_volume() {
    let text = toml(
        "[volume.data]\n\n[container.db]\nimage = \"debian\"\nvolume = [{ name = \"dat\", target = \"/var/lib/db\" }]\n",
    );
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::unknown-reference",
        "there is no volume named `dat`",
        "\"dat\"",
        "container.db",
    );
    assert_help(&d, "did you mean `data`?");
}

#[test]
fn volume_mount_needs_a_target() {
    let text = with_volume(&container("db", "    volume \"data\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::missing-value",
        "`volume` needs its target",
        "volume",
        "container",
    );
}

#[test]
fn volume_mount_target_not_absolute() {
    let text = with_volume(&container("db", "    volume \"data\" \"var/lib/db\"\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-path",
        "`var/lib/db` is not an absolute path",
        "\"var/lib/db\"",
        "container",
    );
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn volume_mount_over_the_root() {
    let text = with_volume(&container("db", "    volume \"data\" \"/\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-path",
        "cannot bind over the container's root directory",
        "\"/\"",
        "container",
    );
}

#[test]
fn volume_idmap_without_userns() {
    let text = with_volume(&container(
        "db",
        "    nested\n    volume \"data\" \"/var/lib/db\" idmap=#true\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::idmap-without-userns",
        "`idmap` on the volume at /var/lib/db has nothing to map: a `nested` container shares the host's users",
        "volume \"data\" \"/var/lib/db\" idmap=#true",
        "container",
    );
    assert_related(&text, &d, &[("nested", "nested", "`nested` set here")]);
}

#[test]
fn read_only_volume_breaks_docker() {
    let text = with_volume(&container(
        "db",
        "    network \"lan\"\n    docker\n    volume \"data\" \"/var/lib/docker\" read-only=#true\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::bind-breaks-feature",
        "a read-only volume at /var/lib/docker breaks `docker`",
        "volume \"data\" \"/var/lib/docker\" read-only=#true",
        "container",
    );
    assert_related(&text, &d, &[("docker", "    docker", "`docker` set here")]);
    assert_help(
        &d,
        "`docker` writes to /var/lib/docker; make the volume writable or move it",
    );
}

#[test]
fn a_template_gives_its_volumes_to_its_containers() {
    let text = with_volume(&format!(
        "template \"base\" {{\n    image \"debian\"\n    volume \"dat\" \"/srv\"\n}}\n{}",
        container("db", "    from \"base\"\n")
    ));
    // Reported once, where the template says it, though the template is
    // used by a container.
    let d = diagnose(&text, Format::Kdl);
    assert_eq!(d.len(), 1, "{}", list(&d));
    check(
        &text,
        &d[0],
        "ctm::unknown-reference",
        "there is no volume named `dat`",
        "\"dat\"",
        "template",
    );
}

// ---- health checks -------------------------------------------------------------

#[test]
fn check_without_probe() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    check timeout=\"30s\"\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::check-probe",
        "a check needs `tcp` or `command`",
        "check timeout=\"30s\"",
        "check",
    );
    assert_help(
        &d,
        "write one probe per check: `check tcp=80` or `check command=\"systemctl is-system-running --wait\"`",
    );
}

#[test]
fn check_with_two_probes() {
    let text = toml(
        "[container.web]\nimage = \"debian\"\nnetwork = \"lan\"\ncheck = [{ tcp = 80, command = \"true\" }]\n",
    );
    let d = expect_one(
        &text,
        Format::Toml,
        "ctm::check-probe",
        "a check has both `tcp` and `command`",
        "check = [{ tcp = 80, command = \"true\" }",
        "check =",
    );
    assert_eq!(d.label.as_deref(), Some("two probes"));
}

#[test]
fn check_without_address() {
    let text = kdl(&container("web", "    check tcp=80\n"));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::check-without-address",
        "container `web` has no address to check tcp port 80 on",
        "check tcp=80",
        "check",
    );
    assert_help(
        &d,
        "attach the container to a network with `network \"NAME\"`, or check with `command`",
    );
}

#[test]
fn check_without_address_on_a_network_without_subnets() {
    let text = kdl(&format!(
        "network \"bare\" {{\n    bridge \"br-bare\"\n}}\n{}",
        container("web", "    network \"bare\"\n    check tcp=80\n")
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::check-without-address",
        "container `web` has no address to check tcp port 80 on",
        "check tcp=80",
        "check",
    );
    assert_help(&d, "network `bare` has no subnet: give it `ipv4` or `ipv6`");
}

#[test]
fn check_from_a_template_is_reported_per_container() {
    // The template's check is merged into `web`, which has no address.
    let text = kdl(&format!(
        "template \"t\" {{\n    check tcp=22\n}}\n{}",
        container("web", "    from \"t\"\n")
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::check-without-address",
        "container `web` has no address to check tcp port 22 on",
        "check tcp=22",
        "check",
    );
}

#[test]
fn check_command_with_an_unbalanced_quote() {
    let text = kdl(&container("web", "    check command=\"sh -c 'true\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`sh -c 'true` has an unbalanced quote or a trailing backslash",
        "\"sh -c 'true\"",
        "command=",
    );
}

#[test]
fn check_command_that_is_empty() {
    let text = kdl(&container("web", "    check command=\"  \"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "the command is empty",
        "\"  \"",
        "command=",
    );
}

#[test]
fn check_timeout_that_is_not_a_duration() {
    let text = kdl(&container(
        "web",
        "    check command=\"true\" timeout=\"soon\"\n",
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`soon` is not a duration (expected number at 0); write e.g. `30s` or `2m`",
        "\"soon\"",
        "timeout=",
    );
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn check_timeout_out_of_range() {
    let text = kdl(&container(
        "web",
        "    check command=\"true\" timeout=\"2h\"\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`2h` is out of range: a check's timeout is whole seconds, from 1s to 1h",
        "\"2h\"",
        "timeout=",
    );
}

#[test]
fn check_port_out_of_range() {
    let text = kdl(&container(
        "web",
        "    network \"lan\"\n    check tcp=70000\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-port",
        "70000 is not a port; ports are 1 to 65535",
        "70000",
        "tcp=",
    );
}

// ---- cascades: one mistake, one error -----------------------------------------

#[test]
fn an_invalid_subnet_does_not_also_fail_container_addresses() {
    let text = kdl_edit(
        &[("\"10.42.0.1/24\"", "\"10.42.0.0/24\"")],
        &container("web", "    network \"lan\" ipv4=\"10.42.0.5\"\n"),
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "10.42.0.0 is the network address of 10.42.0.0/24; the bridge needs a host address such as 10.42.0.1",
        "\"10.42.0.0/24\"",
        "\"10.42.0.0/24\"",
    );
}

#[test]
fn an_invalid_bridge_does_not_also_fail_references() {
    let text = kdl_edit(
        &[("bridge \"br-lan\"", "bridge \"br-lan-far-too-long\"")],
        &container("web", "    network \"lan\"\n"),
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "`br-lan-far-too-long` is 19 characters long; Linux interface names have at most 15",
        "\"br-lan-far-too-long\"",
        "\"br-lan-far-too-long\"",
    );
}

#[test]
fn an_invalid_image_source_does_not_also_fail_references() {
    let text = kdl_edit(
        &[("suite=\"bookworm\"", "suite=\"Bookworm\"")],
        &container("web", "    network \"lan\"\n"),
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`Bookworm` is not valid here; use lower-case letters, digits, `-`, `_` and `.`",
        "\"Bookworm\"",
        "\"Bookworm\"",
    );
}

#[test]
fn an_unknown_network_does_not_also_fail_forwards() {
    let text = kdl(&container(
        "web",
        "    network \"lann\"\n    forward \"tcp\" host=8080 container=80\n",
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no network named `lann`",
        "\"lann\"",
        "\"lann\"",
    );
}

#[test]
fn an_invalid_subnet_does_not_also_fail_forwards() {
    let text = kdl_edit(
        &[
            ("\"10.42.0.1/24\"", "\"10.42.0.0/24\""),
            ("    ipv6 \"fd42:42::1/64\"\n", ""),
        ],
        &container(
            "web",
            "    network \"lan\"\n    forward \"tcp\" host=8080 container=80\n",
        ),
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "10.42.0.0 is the network address of 10.42.0.0/24; the bridge needs a host address such as 10.42.0.1",
        "\"10.42.0.0/24\"",
        "\"10.42.0.0/24\"",
    );
}

#[test]
fn a_full_network_does_not_also_fail_forwards() {
    let text = kdl_edit(
        &[
            ("\"10.42.0.1/24\"", "\"10.42.0.1/30\""),
            ("    ipv6 \"fd42:42::1/64\"\n", ""),
        ],
        &format!(
            "{}{}",
            container("a", "    network \"lan\"\n"),
            container(
                "b",
                "    network \"lan\"\n    forward \"tcp\" host=8080 container=80\n"
            ),
        ),
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::network-full",
        "network `lan` has no free IPv4 address left for container `b`",
        "\"b\"",
        "\"b\"",
    );
}

// ---- lock file -----------------------------------------------------------------

#[track_caller]
fn lock_error(lock: &str) -> Diagnostic {
    let text = kdl(&container("web", "    network \"lan\"\n"));
    let diagnostics = diagnose_with_lock(&text, Format::Kdl, lock);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = diagnostics.into_iter().next().unwrap();
    assert_eq!(d.code, "ctm::lock-file");
    d
}

const LOCK_HELP: &str = "the lock file is written by ctm; restore it from version control, or delete it to let ctm assign addresses and resolve image tags anew";

#[test]
fn lock_file_syntax() {
    let lock = "version = 1\n[containers.web\n";
    let d = lock_error(lock);
    assert_eq!(d.message, "invalid lock file: unclosed table, expected `]`");
    let end = lock.find("[containers.web").unwrap() + "[containers.web".len();
    assert_eq!((d.span.offset(), d.span.len()), (end, 0));
    assert_help(&d, LOCK_HELP);
}

#[test]
fn lock_file_bad_image_digest() {
    let lock =
        "version = 1\n[images.app]\nreference = \"reg.example/app:1\"\ndigest = \"sha256:beef\"\n";
    let d = lock_error(lock);
    assert_eq!(
        d.message,
        "invalid lock file: `sha256:beef` is not a SHA-256 digest: `sha256:` must be followed by 64 lower-case hex digits"
    );
    assert_span(lock, d.span, "\"sha256:beef\"", "digest");
    assert_help(&d, LOCK_HELP);
}

#[test]
fn lock_file_unknown_field() {
    let lock = "version = 1\nassigned = 2\n";
    let d = lock_error(lock);
    assert_eq!(
        d.message,
        "invalid lock file: unknown field `assigned`, expected one of `version`, `containers`, `attached`, `images`"
    );
    assert_span(lock, d.span, "assigned", "assigned");
    assert_help(&d, LOCK_HELP);
}

#[test]
fn lock_file_invalid_address() {
    let lock = "version = 1\n\n[containers.web]\nnetwork = \"lan\"\nipv4 = \"10.42.0.300\"\n";
    let d = lock_error(lock);
    assert_eq!(d.message, "invalid lock file: invalid IPv4 address syntax");
    assert_span(lock, d.span, "\"10.42.0.300\"", "\"10.42.0.300\"");
}

#[test]
fn lock_file_missing_version() {
    let lock = "[containers.web]\nnetwork = \"lan\"\n";
    let d = lock_error(lock);
    assert_eq!(d.message, "invalid lock file: missing field `version`");
}

#[test]
fn lock_file_unsupported_version() {
    let lock = "version = 2\n";
    let d = lock_error(lock);
    assert_eq!(
        d.message,
        "lock file version 2 is not supported (this ctm writes version 1)"
    );
    assert_span(lock, d.span, "2", "2");
}

// ---- several mistakes at once ------------------------------------------------

#[test]
fn every_semantic_mistake_is_reported_at_once() {
    let text = kdl(&format!(
        "{}{}{}tunnel \"br-lan\" {{\n    gre local=\"192.0.2.1\" remote=\"198.51.100.7\"\n}}\n\
         network \"dmz\" {{\n    bridge \"br-dmz\"\n    ipv4 \"10.42.0.129/25\"\n}}\n",
        container("-bad", ""),
        container(
            "web",
            "    network \"lan\" ipv4=\"10.43.0.5\"\n    forward \"tcp\" host=0 container=80\n"
        ),
        "container \"db\" {\n    image \"debain\"\n    network \"lan\"\n}\n",
    ));
    let diagnostics = diagnose(&text, Format::Kdl);
    let mut codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "ctm::duplicate-interface",
            "ctm::invalid-container-address",
            "ctm::invalid-name",
            "ctm::invalid-port",
            "ctm::overlapping-subnets",
            "ctm::unknown-reference",
        ],
        "{}",
        list(&diagnostics)
    );
}

#[test]
fn every_structural_mistake_is_reported_at_once() {
    let text = kdl(&format!(
        "contaner \"x\"\n{}",
        container(
            "web",
            "    network \"lan\" ipv5=\"x\"\n    forward \"tcp\" host=\"80\"\n    limits memory=#null\n"
        ),
    ));
    let diagnostics = diagnose(&text, Format::Kdl);
    let mut codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "ctm::missing-property",
            "ctm::null-value",
            "ctm::unknown-node",
            "ctm::unknown-property",
            "ctm::wrong-type",
        ],
        "{}",
        list(&diagnostics)
    );
}

#[test]
fn every_toml_mistake_is_reported_at_once() {
    let text = toml(
        "\n[container.web]\nimage = \"debian\"\nimgae = \"x\"\ndocker = \"yes\"\nautostart = 1\n\
         \n[container.\"-db\"]\nimage = \"debian\"\n",
    );
    let diagnostics = diagnose(&text, Format::Toml);
    let mut codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    codes.sort();
    assert_eq!(
        codes,
        ["ctm::unknown-node", "ctm::wrong-type", "ctm::wrong-type"],
        "{}",
        list(&diagnostics)
    );
}

// ---- the command line ----------------------------------------------------------

fn ctm_check_json(text: &str, file_name: &str) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, text).unwrap();
    ctm_check_json_path(&path)
}

fn ctm_check_json_path(path: &std::path::Path) -> (i32, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(["check", "--format", "json"])
        .arg(path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap(), json)
}

#[test]
fn check_json_reports_a_diagnostic_and_exits_1() {
    let text = kdl(&container(
        "web",
        "    network \"lan\" ipv4=\"10.43.0.5\"\n",
    ));
    let (status, json) = ctm_check_json(&text, "host.kdl");
    assert_eq!(status, 1, "{json:#}");
    assert_eq!(json["valid"], false);
    let diagnostics = json["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{json:#}");
    let d = &diagnostics[0];
    for key in [
        "file", "line", "column", "span", "severity", "code", "message", "label", "help", "related",
    ] {
        assert!(d.get(key).is_some(), "no `{key}` in {d:#}");
    }
    assert!(d["file"].as_str().unwrap().ends_with("host.kdl"));
    let offset = text.find("\"10.43.0.5\"").unwrap();
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').unwrap();
    assert_eq!(d["line"], line);
    assert_eq!(d["column"], column);
    assert_eq!(d["span"]["offset"], offset);
    assert_eq!(d["span"]["length"], "\"10.43.0.5\"".len());
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "ctm::invalid-container-address");
    assert_eq!(
        d["message"],
        "10.43.0.5 is outside the network's subnet 10.42.0.0/24"
    );
    assert_eq!(
        d["help"],
        "pick a free host address inside the network's subnet, or leave it out and ctm assigns one"
    );
    let related = d["related"].as_array().unwrap();
    assert_eq!(related.len(), 1);
    assert_eq!(related[0]["line"], 9);
    assert_eq!(related[0]["column"], 10);
    assert_eq!(related[0]["label"], "the network's subnet");
}

#[test]
fn check_json_reports_structural_and_semantic_mistakes_together() {
    // The checker's errors do not stop validation in the CLI: a wrong type
    // and a bad container address are both reported.
    let text = kdl(&container(
        "web",
        "    network \"lan\" ipv4=\"10.43.0.5\"\n    autostart \"no\"\n",
    ));
    let (status, json) = ctm_check_json(&text, "host.kdl");
    assert_eq!(status, 1, "{json:#}");
    let codes: Vec<&str> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["ctm::invalid-container-address", "ctm::wrong-type"],
        "{json:#}"
    );
}

#[test]
fn check_json_accepts_the_homelab_example() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/homelab.kdl");
    let (status, json) = ctm_check_json_path(&path);
    assert_eq!(status, 0, "{json:#}");
    assert_eq!(json["valid"], true);
    assert_eq!(json["diagnostics"].as_array().unwrap().len(), 0, "{json:#}");
}

// ---- the fleet file (`ctm fleet`, docs/fleet.md) ----------------------------

const FLEET_PRELUDE: &str = r#"host "web1" {
    ssh "root@203.0.113.5" port=22
    file "hosts/web1.kdl"
    tags "web" "eu"
}
"#;

/// Every diagnostic of a fleet file's text (the host files unread).
fn diagnose_fleet(text: &str, name: &str) -> Vec<Diagnostic> {
    ctm::engine::fleet::FleetFile::from_text(std::path::Path::new(name), text.to_string())
        .diagnostics
}

/// Exactly one diagnostic of the fleet file `text`, as [`expect_one`].
#[track_caller]
fn expect_one_in_fleet(
    text: &str,
    code: &str,
    message: &str,
    span: &str,
    anchor: &str,
) -> Diagnostic {
    let diagnostics = diagnose_fleet(text, "fleet.kdl");
    assert_eq!(
        diagnostics.len(),
        1,
        "expected exactly one diagnostic, got:\n{}",
        list(&diagnostics)
    );
    let d = diagnostics.into_iter().next().unwrap();
    check(text, &d, code, message, span, anchor);
    d
}

fn fleet(extra: &str) -> String {
    format!("{FLEET_PRELUDE}{extra}")
}

#[test]
fn the_fleet_prelude_is_valid_in_both_syntaxes() {
    assert_eq!(list(&diagnose_fleet(FLEET_PRELUDE, "fleet.kdl")), "");
    let toml = "[host.web1]\nssh = { destination = \"root@203.0.113.5\", port = 22 }\n\
                file = \"hosts/web1.kdl\"\ntags = [\"web\", \"eu\"]\n";
    assert_eq!(list(&diagnose_fleet(toml, "fleet.toml")), "");
}

#[test]
fn fleet_ssh_destination_that_would_be_an_option() {
    let text = fleet("host \"web2\" {\n    ssh \"-oProxyCommand=id\"\n    file \"w.kdl\"\n}\n");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-ssh-destination",
        "`-oProxyCommand=id` starts with `-`: ssh would read it as an option",
        "\"-oProxyCommand=id\"",
        "web2",
    );
}

#[test]
fn fleet_ssh_destination_with_a_shell_character() {
    let text = fleet("host \"web2\" {\n    ssh \"root@web2;reboot\"\n    file \"w.kdl\"\n}\n");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-ssh-destination",
        "`;` may not appear in the host of an SSH destination; use a host name, an address or a `Host` alias of your ssh configuration",
        "\"root@web2;reboot\"",
        "web2",
    );
}

#[test]
fn fleet_ssh_port_out_of_range() {
    let text = fleet("host \"web2\" {\n    ssh \"web2\" port=0\n    file \"w.kdl\"\n}\n");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-port",
        "0 is not a port; ports are 1 to 65535",
        "0",
        "web2\" port=",
    );
}

#[test]
fn fleet_host_file_that_is_not_kdl_or_toml() {
    let text = fleet("host \"web2\" {\n    ssh \"web2\"\n    file \"w.yaml\"\n}\n");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-host-file",
        "`w.yaml` is not a host file: its name ends in `.kdl`, or `.toml` for the TOML form",
        "\"w.yaml\"",
        "web2",
    );
}

#[test]
fn fleet_tag_that_is_not_a_name() {
    let text = FLEET_PRELUDE.replace("tags \"web\" \"eu\"", "tags \"web\" \"e u\"");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-name",
        "` ` may not appear in a name; use letters, digits, `-`, `_` and `.`",
        "\"e u\"",
        "tags",
    );
}

#[test]
fn fleet_group_that_is_not_a_name() {
    let text =
        fleet("host \"web2\" {\n    ssh \"web2\"\n    file \"w.kdl\"\n    group \"-eu\"\n}\n");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-name",
        "a name may not start with `.` or `-`",
        "\"-eu\"",
        "group",
    );
}

#[test]
fn fleet_confirm_timeout_out_of_range() {
    let text = fleet("confirm-timeout 0\n");
    let d = expect_one_in_fleet(
        &text,
        "ctm::invalid-timeout",
        "a timeout must be at least 1 second",
        "0",
        "confirm-timeout",
    );
    assert_help(&d, "give whole seconds, 1 to 604800 (7 days)");
}

#[test]
fn fleet_ctm_path_that_is_not_absolute() {
    let text = fleet("ctm \"bin/ctm\"\n");
    expect_one_in_fleet(
        &text,
        "ctm::invalid-path",
        "`bin/ctm` is not an absolute path",
        "\"bin/ctm\"",
        "ctm \"",
    );
}

#[test]
fn fleet_host_defined_twice() {
    let text = fleet("host \"web1\" {\n    ssh \"web9\"\n    file \"w.kdl\"\n}\n");
    let d = expect_one_in_fleet(
        &text,
        "ctm::duplicate-name",
        "host `web1` is defined twice",
        "\"web1\"",
        "}\nhost",
    );
    assert_related(&text, &d, &[("\"web1\"", "host", "first defined here")]);
}

#[test]
fn fleet_two_hosts_with_one_destination() {
    let text =
        fleet("host \"web2\" {\n    ssh \"root@203.0.113.5\" port=22\n    file \"w.kdl\"\n}\n");
    let d = expect_one_in_fleet(
        &text,
        "ctm::duplicate-destination",
        "hosts `web1` and `web2` both connect to root@203.0.113.5 port 22",
        "\"root@203.0.113.5\"",
        "web2",
    );
    assert_related(
        &text,
        &d,
        &[("\"root@203.0.113.5\"", "web1", "`web1` connects here")],
    );
}

#[test]
fn fleet_canary_that_names_nothing() {
    let text = fleet("canary \"web\"\n");
    let d = expect_one_in_fleet(
        &text,
        "ctm::unknown-canary",
        "the canary `web` is neither a host nor a group",
        "\"web\"",
        "canary",
    );
    assert_help(&d, "did you mean `web1`?");
}

#[test]
fn fleet_without_hosts() {
    let text = "confirm-timeout 60\n";
    let diagnostics = diagnose_fleet(text, "fleet.kdl");
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = &diagnostics[0];
    assert_eq!(d.code, "ctm::no-hosts");
    assert_eq!(d.message, "the fleet file names no host");
    assert_eq!((d.span.offset(), d.span.len()), (0, 0));
}

#[test]
fn fleet_unknown_node_is_reported_against_the_fleet_vocabulary() {
    let text = FLEET_PRELUDE.replace("file \"hosts", "fiel \"hosts");
    let diagnostics = diagnose_fleet(&text, "fleet.kdl");
    let codes: Vec<&str> = diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        ["ctm::unknown-node", "ctm::missing-node"],
        "{}",
        list(&diagnostics)
    );
    assert_eq!(diagnostics[0].message, "unknown node `fiel` in `host`");
    assert_help(&diagnostics[0], "did you mean `file`?");
}

#[test]
fn fleet_host_file_that_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.kdl");
    std::fs::write(&path, FLEET_PRELUDE).unwrap();
    let checked = ctm::engine::fleet::check(&path).unwrap();
    let diagnostics = &checked.fleet.diagnostics;
    assert_eq!(diagnostics.len(), 1, "{}", list(diagnostics));
    let d = &diagnostics[0];
    assert_eq!(d.code, "ctm::missing-host-file");
    assert!(
        d.message
            .starts_with("cannot read the host file of `web1`: No such file"),
        "{}",
        d.message
    );
    assert_span(FLEET_PRELUDE, d.span, "\"hosts/web1.kdl\"", "file");
    assert_help(d, "the path is relative to the fleet file");
}

// ---- limits ----------------------------------------------------------------

/// Exactly one diagnostic, with this code and message, covering the
/// `nth` (from 0) occurrence of `covers`.
#[track_caller]
fn expect_one_at(
    text: &str,
    format: Format,
    code: &str,
    message: &str,
    covers: &str,
    nth: usize,
) -> Diagnostic {
    let diagnostics = diagnose(text, format);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = diagnostics.into_iter().next().unwrap();
    assert_eq!((d.code, d.message.as_str()), (code, message));
    let offset = text
        .match_indices(covers)
        .nth(nth)
        .expect("an occurrence")
        .0;
    assert_eq!((covered(text, d.span), d.span.offset()), (covers, offset));
    d
}

#[test]
fn too_deep_kdl() {
    let open = "    a {\n".repeat(40);
    let text = kdl(&format!("{open}{}", "}\n".repeat(40)));
    // The prelude has three blocks before these.
    let d = expect_one_at(
        &text,
        Format::Kdl,
        "ctm::too-deep",
        "nested more than 32 levels deep",
        "{",
        3 + 32,
    );
    assert_eq!(d.label.as_deref(), Some("one level too many"));
    assert_help(
        &d,
        "a host file needs three levels at most (container → ssh → authorized-key); ctm reads \
         no deeper, even in commented-out parts",
    );
}

/// The issue's repro, commented out: still refused, at the same place.
#[test]
fn too_deep_kdl_in_a_slashdashed_node() {
    let nested = format!("a{}{}", "{a".repeat(1276), "}".repeat(1276));
    let text = kdl(&format!("/- {nested}\n"));
    expect_one_at(
        &text,
        Format::Kdl,
        "ctm::too-deep",
        "nested more than 32 levels deep",
        "{",
        3 + 32,
    );
}

#[test]
fn too_deep_toml_arrays() {
    let text = toml(&format!("a = {}{}\n", "[".repeat(40), "]".repeat(40)));
    // `a` is a key of `[network.lan]`, at depth 3, so the 30th `[`
    // holds values at depth 33.
    let first = TOML_PRELUDE.matches('[').count();
    expect_one_at(
        &text,
        Format::Toml,
        "ctm::too-deep",
        "nested more than 32 levels deep",
        "[",
        first + 29,
    );
}

#[test]
fn too_deep_toml_inline_tables() {
    let text = toml(&format!(
        "a = {}1{}\n",
        "{ b = ".repeat(40),
        " }".repeat(40)
    ));
    // `a` is at depth 3 (in `[network.lan]`): the 30th table holds keys
    // at depth 33.
    expect_one_at(
        &text,
        Format::Toml,
        "ctm::too-deep",
        "nested more than 32 levels deep",
        "{",
        TOML_PRELUDE.matches('{').count() + 29,
    );
}

/// Issue 13: a 50,000-part dotted key was reported at 1:1, length 0.
#[test]
fn too_deep_toml_dotted_key() {
    let key = vec!["k"; 50_000].join(".");
    let text = toml(&format!("{key} = 1\n"));
    expect_one_at(
        &text,
        Format::Toml,
        "ctm::too-deep",
        "nested more than 32 levels deep",
        // The 31st part, at depth 33 after `[network.lan]`'s two.
        "k",
        30 + TOML_PRELUDE.matches('k').count(),
    );
}

#[test]
fn too_deep_toml_table_header() {
    let header = vec!["container"; 40].join(".");
    let text = toml(&format!("[{header}]\n"));
    expect_one_at(
        &text,
        Format::Toml,
        "ctm::too-deep",
        "nested more than 32 levels deep",
        "container",
        32,
    );
}

#[test]
fn template_chain_too_long() {
    // t00 from t01 from … t16: seventeen templates.
    let templates: String = (0..17)
        .map(|i| match i {
            16 => "template \"t16\" {\n    docker\n}\n".to_string(),
            _ => format!("template \"t{i:02}\" {{\n    from \"t{:02}\"\n}}\n", i + 1),
        })
        .collect();
    let text = kdl(&format!(
        "{templates}{}",
        container("web", "    from \"t00\"\n")
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::template-chain",
        "this `from` makes a chain of more than 16 templates",
        "\"t16\"",
        "from \"t16\"",
    );
    assert_eq!(d.label.as_deref(), Some("one template too many"));
    assert_help(
        &d,
        "let the template inherit from one nearer the top of the chain",
    );
}

#[test]
fn too_much_inherited() {
    let packages: String = (0..1000).map(|i| format!(" \"p{i:04}\"")).collect();
    let containers: String = (0..1001)
        .map(|i| format!("container \"c{i:04}\" {{\n    from \"big\"\n}}\n"))
        .collect();
    let text = kdl(&format!(
        "template \"big\" {{\n    image \"debian\"\n    packages{packages}\n}}\n{containers}"
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::too-much-inherited",
        "containers inherit more than 1000000 list entries from templates in all",
        "\"big\"",
        "container \"c1000\"",
    );
    assert_eq!(d.label.as_deref(), Some("the limit is crossed here"));
    assert_help(
        &d,
        "each container that uses a template gets its own copy of the template's packages, \
         environment, forwards, binds, keys and checks; use smaller templates, or fewer \
         containers on one host",
    );
}

/// Parsing reports at most 1,000 problems, then how many more there are.
#[test]
fn too_many_problems_in_parsing() {
    let props: String = (0..1200).map(|i| format!(" x{i:04}=1")).collect();
    let text = kdl(&container("web", &format!("    limits{props}\n")));
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1001);
    assert!(
        diagnostics[..1000]
            .iter()
            .all(|d| d.code == "ctm::unknown-property")
    );
    check(
        &text,
        &diagnostics[1000],
        "ctm::too-many-problems",
        "200 more problems are not shown",
        "x1000",
        "x1000",
    );
    assert_eq!(
        diagnostics[1000].label.as_deref(),
        Some("the first of them")
    );
    assert_help(
        &diagnostics[1000],
        "ctm reports at most 1000 problems at once; fix these and check again",
    );
}

/// So does validation.
#[test]
fn too_many_problems_in_validation() {
    let containers: String = (0..1200)
        .map(|i| format!("container \"c{i:04}\" {{\n    image \"nope\"\n}}\n"))
        .collect();
    let text = kdl(&containers);
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1001);
    check(
        &text,
        &diagnostics[1000],
        "ctm::too-many-problems",
        "200 more problems are not shown",
        "\"nope\"",
        "container \"c1000\"",
    );
}

/// A help lists at most 20 names.
#[test]
fn unknown_reference_among_many() {
    let templates: String = (0..25)
        .map(|i| format!("template \"t{i:02}\" {{\n    image \"debian\"\n}}\n"))
        .collect();
    let text = kdl(&format!(
        "{templates}{}",
        container("web", "    from \"zzz\"\n")
    ));
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no template named `zzz`",
        "\"zzz\"",
        "\"zzz\"",
    );
    let listed: Vec<String> = (0..20).map(|i| format!("`t{i:02}`")).collect();
    assert_help(
        &d,
        &format!("expected one of: {} and 5 more", listed.join(", ")),
    );
}

#[test]
fn too_large() {
    let rejected = config::text_from_bytes(vec![b' '; 1025], 1024).unwrap_err();
    let d = &rejected.diagnostic;
    assert_eq!(d.code, "ctm::too-large");
    assert_eq!(
        d.message,
        "the host file is larger than 1024 bytes, the most ctm reads here"
    );
    assert_eq!((d.span.offset(), d.span.len()), (0, 0));
    assert_eq!(d.label.as_deref(), Some("not read"));
    assert_help(
        d,
        "a host of 1,000 containers is about 200 KB: is this the host file? \
         (on the command line, --max-file-size MIB reads a larger one)",
    );
    let web = config::text_from_bytes(vec![b' '; (4 << 20) + 1], config::MAX_SIZE_WEB);
    assert_eq!(
        web.unwrap_err().diagnostic.message,
        "the host file is larger than 4 MiB, the most ctm reads here"
    );
    assert_eq!(rejected.shown, "");
    assert_eq!(
        config::text_from_bytes(vec![b' '; 1024], 1024)
            .unwrap()
            .len(),
        1024
    );
    assert_eq!(config::MAX_SIZE_CLI, 16 << 20);
    assert_eq!(config::MAX_SIZE_WEB, 4 << 20);
}

#[test]
fn not_utf8() {
    let mut bytes = kdl("container \"web\" {\n    image \"deb").into_bytes();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xE9ian\"\n}\n\xFF\n");
    let rejected = config::text_from_bytes(bytes, config::MAX_SIZE_CLI).unwrap_err();
    let d = &rejected.diagnostic;
    assert_eq!(d.code, "ctm::not-utf8");
    assert_eq!(
        d.message,
        format!("the host file is not UTF-8: byte {offset} starts an invalid sequence (0xe9)")
    );
    assert_eq!((d.span.offset(), d.span.len()), (offset, 1));
    assert_eq!(d.label.as_deref(), Some("not UTF-8"));
    assert_help(
        d,
        "save the file as UTF-8 (for example with `iconv -t UTF-8`)",
    );
    // Every invalid byte is shown as `?`, so offsets stay the file's.
    assert!(rejected.shown.ends_with("    image \"deb?ian\"\n}\n?\n"));
    assert_eq!(rejected.shown.len(), offset + 10);
}

/// Issue 13: invalid UTF-8 had no position, and `--format json` printed
/// nothing.
#[test]
fn check_json_reports_invalid_utf8_at_its_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.kdl");
    let mut bytes = kdl("container \"web\" {\n    image \"deb").into_bytes();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xE9ian\"\n}\n");
    std::fs::write(&path, &bytes).unwrap();
    let (status, json) = ctm_check_json_path(&path);
    assert_eq!(status, 1, "{json:#}");
    let d = &json["diagnostics"][0];
    assert_eq!(d["code"], "ctm::not-utf8");
    assert_eq!(d["span"]["offset"], offset);
    assert_eq!(d["line"], 13);
    assert_eq!(d["column"], "    image \"deb".len() + 1);
}

/// The command line's size limit has an override: `--max-file-size MIB`.
#[test]
fn max_file_size_overrides_the_limit_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.kdl");
    // A valid host file of just over 1 MiB: comments are cheap to read.
    let mut text = String::from("host \"x\"\n");
    while text.len() <= 1 << 20 {
        text.push_str("// a comment that makes the file larger than one MiB\n");
    }
    std::fs::write(&path, &text).unwrap();
    let check = |limit: &str| {
        Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(["check", "--format", "json", "--max-file-size", limit])
            .arg(&path)
            .output()
            .unwrap()
    };
    let small = check("1");
    assert_eq!(small.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&small.stdout).unwrap();
    assert_eq!(json["diagnostics"][0]["code"], "ctm::too-large");
    assert_eq!(
        json["diagnostics"][0]["message"],
        "the host file is larger than 1 MiB, the most ctm reads here"
    );
    let larger = check("2");
    assert_eq!(larger.status.code(), Some(0), "{:?}", larger);
    // A limit of nothing is a usage error, not a silent default.
    let zero = check("0");
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--max-file-size"));
}

/// What the web editor may give the `kdl` crate to edit.
#[test]
fn kdl_too_complex_comment() {
    let comment = format!("/* {} */", "* ".repeat(200));
    let text = kdl(&format!("{comment}\n"));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
    let d = config::kdl::check_for_kdl_crate(&text).unwrap_err();
    assert_eq!(d.code, "ctm::kdl-too-complex");
    assert_eq!(
        d.message,
        "a `/* */` comment has more than 256 `*`, `/` and runs of text between them"
    );
    assert_span(&text, d.span, &comment, "/*");
    assert_eq!(d.label.as_deref(), Some("this comment"));
    assert_help(&d, "comment out with `//` or `/-` instead, and edit then");
    let fits = kdl(&format!("/* {} */\n", "* ".repeat(100)));
    assert!(config::kdl::check_for_kdl_crate(&fits).is_ok());
}

#[test]
fn kdl_too_complex_slashdashed_blocks() {
    let text = kdl(&format!("a {}b{}\n", "/-{ a ".repeat(7), " }".repeat(7)));
    // ctm reads it (and reports the node unknown).
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    assert_eq!(diagnostics[0].code, "ctm::unknown-node");
    let d = config::kdl::check_for_kdl_crate(&text).unwrap_err();
    assert_eq!(d.code, "ctm::kdl-too-complex");
    assert_eq!(
        d.message,
        "more than 6 slashdashed child blocks (`/-{ … }`) are nested in one another"
    );
    let innermost = text.match_indices('{').nth(3 + 6).unwrap().0;
    assert_eq!((d.span.offset(), d.span.len()), (innermost, 1));
    assert_eq!(d.label.as_deref(), Some("the innermost one"));
    assert_help(
        &d,
        "remove the slashdashed blocks inside slashdashed blocks, and edit then",
    );
    // A syntax error is given as it is.
    let broken = kdl("container {\n");
    let d = config::kdl::check_for_kdl_crate(&broken).unwrap_err();
    assert_eq!(d.code, "ctm::kdl-syntax");
    assert!(config::kdl::check_for_kdl_crate(PRELUDE).is_ok());
}

// ---- positions -------------------------------------------------------------

/// The miette report as plain text, 80 columns wide.
fn render(d: &Diagnostic, file: &std::sync::Arc<ctm::diagnostic::SourceFile>) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(80)
        .render_report(&mut out, d.report_in(file).as_ref())
        .unwrap();
    out
}

/// The `[file:line:column]` of a rendered report.
fn rendered_position(report: &str) -> (usize, usize) {
    let start = report.find("[test:").expect("a position") + "[test:".len();
    let end = start + report[start..].find(']').unwrap();
    let mut parts = report[start..end].split(':').map(|n| n.parse().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Every newline KDL 2.0 defines ends a line for the text report and for
/// the JSON alike, and columns count characters in both (issue 13: with
/// CR or form-feed newlines the JSON said line 1 while the text said 2).
#[test]
fn text_and_json_agree_on_positions_with_every_kdl_newline() {
    for newline in [
        "\n", "\r\n", "\r", "\u{85}", "\u{0B}", "\u{0C}", "\u{2028}", "\u{2029}",
    ] {
        let text = PRELUDE.replace('\n', newline)
            + &format!(
                "container \"wéb\" {{{newline}    image \"débian\"; imgae \"x\"{newline}}}{newline}"
            );
        let diagnostics = diagnose(&text, Format::Kdl);
        assert_eq!(diagnostics.len(), 1, "{newline:?}: {}", list(&diagnostics));
        let d = &diagnostics[0];
        assert_eq!(d.code, "ctm::unknown-node");
        let file = std::sync::Arc::new(ctm::diagnostic::SourceFile::new("test", &text));
        let json = d.to_json_in(&file);
        // Line 13, after `    image "débian"; ` (20 characters, 21 bytes).
        assert_eq!((json.line, json.column), (13, 21), "{newline:?}");
        let report = render(d, &file);
        assert_eq!(
            rendered_position(&report),
            (13, 21),
            "{newline:?}\n{report}"
        );
        assert!(
            report.contains("13 │     image \"débian\"; imgae \"x\""),
            "{newline:?}\n{report}"
        );
        // The one-off form computes the same.
        let one_off = d.to_json("test", &text);
        assert_eq!((one_off.line, one_off.column), (13, 21));
    }
}

/// A diagnostic on a long line shows a part of it around the span, at
/// the right column.
#[test]
fn a_long_line_is_shown_in_part() {
    let text = kdl(&container(
        "web",
        &format!(
            "    environment {} BAD-NAME=\"y\"\n",
            (0..20_000)
                .map(|i| format!("A{i}=\"b\" "))
                .collect::<String>()
        ),
    ));
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = &diagnostics[0];
    let file = std::sync::Arc::new(ctm::diagnostic::SourceFile::new("test", &text));
    let column = text[..d.span.offset()].len() - text[..d.span.offset()].rfind('\n').unwrap();
    assert_eq!(covered(&text, d.span), "BAD-NAME");
    assert_eq!(d.to_json_in(&file).column, column);
    let report = render(d, &file);
    assert_eq!(rendered_position(&report).1, column);
    assert!(report.len() < 4_000, "{} bytes", report.len());
    assert!(report.contains("BAD-NAME=\"y\""));
}

// ---- links and routes --------------------------------------------------------

/// Containers `r1`, `r2` and `r3` on the prelude's image, then `extra`.
fn routers(extra: &str) -> String {
    kdl(&format!(
        "container \"r1\" {{\n    image \"debian\"\n}}\ncontainer \"r2\" {{\n    image \"debian\"\n}}\ncontainer \"r3\" {{\n    image \"debian\"\n}}\n{extra}"
    ))
}

/// A link from `r1` to `r2` with these lines in its body.
fn link(body: &str) -> String {
    routers(&format!("link \"r1\" \"r2\" {{\n{body}}}\n"))
}

const ENDS: &str = "    address \"r1\" \"10.0.12.1/30\"\n    address \"r2\" \"10.0.12.2/30\"\n";

#[test]
fn a_valid_link_has_no_diagnostics_in_either_syntax() {
    let text = link(&format!(
        "{ENDS}    address \"r1\" \"fd00:12::1/64\"\n    address \"r2\" \"fd00:12::2/64\"\n    interface \"r2\" \"eth1\"\n"
    ));
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
    let text = toml(
        "[container.r1]\nimage = \"debian\"\nroute = [{ destination = \"10.99.0.0/24\", via = \"10.0.12.2\" }]\n\
         [container.r2]\nimage = \"debian\"\n\
         [[link]]\na = \"r1\"\nb = \"r2\"\n\
         address = [{ container = \"r1\", address = \"10.0.12.1/30\" }, { container = \"r2\", address = \"10.0.12.2/30\" }]\n\
         interface = [{ container = \"r2\", name = \"eth1\" }]\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Toml)), "");
}

#[test]
fn link_to_an_unknown_container() {
    let text = routers("link \"r1\" \"r9\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no container named `r9`",
        "\"r9\"",
        "link",
    );
}

#[test]
fn link_from_a_container_to_itself() {
    let text = routers("link \"r1\" \"r1\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-ends",
        "a link joins two containers, not `r1` to itself",
        "\"r1\"",
        "\"r1\"\n",
    );
}

#[test]
fn link_address_of_a_container_that_is_not_an_end() {
    let text = link(&format!("{ENDS}    address \"r3\" \"10.0.12.3/30\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-end",
        "`r3` is not an end of the link between `r1` and `r2`",
        "\"r3\"",
        "address \"r3\"",
    );
}

#[test]
fn link_interface_named_twice() {
    let text = link(&format!(
        "{ENDS}    interface \"r1\" \"eth1\"\n    interface \"r1\" \"eth2\"\n"
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-end",
        "the link's interface in `r1` is named twice",
        "interface \"r1\" \"eth2\"",
        "interface \"r1\" \"eth2\"",
    );
}

#[test]
fn link_interface_name_too_long() {
    let text = link(&format!(
        "{ENDS}    interface \"r1\" \"a-very-long-name0\"\n"
    ));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "`a-very-long-name0` is 17 characters long; Linux interface names have at most 15",
        "\"a-very-long-name0\"",
        "interface",
    );
}

#[test]
fn link_interface_named_host0() {
    let text = link(&format!("{ENDS}    interface \"r1\" \"host0\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-interface-name",
        "`host0` is the interface nspawn gives a container on a network",
        "\"host0\"",
        "interface",
    );
}

#[test]
fn link_interface_name_with_a_control_character() {
    let text = link(&format!("{ENDS}    interface \"r1\" \"eth\\u{{7}}1\"\n"));
    let d = diagnose(&text, Format::Kdl);
    assert_eq!(d.len(), 1, "{}", list(&d));
    assert_eq!(d[0].code, "ctm::control-character");
    assert_span(&text, d[0].span, "\"eth\\u{7}1\"", "interface");
}

#[test]
fn link_default_interface_name_too_long() {
    let text = kdl(
        "container \"r1\" {\n    image \"debian\"\n}\ncontainer \"router-number-two\" {\n    image \"debian\"\n}\nlink \"r1\" \"router-number-two\"\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::link-interface",
        "`to-router-number-two`, the default name of the link's interface in `r1`, is not an interface name",
        "\"r1\"",
        "link \"r1\"",
    );
    assert_help(
        &d,
        "name it (at most 15 characters): interface \"r1\" \"eth1\"",
    );
}

#[test]
fn two_links_with_one_interface_name_in_a_container() {
    let text = routers(
        "link \"r1\" \"r2\" {\n    interface \"r1\" \"eth1\"\n}\nlink \"r1\" \"r3\" {\n    interface \"r1\" \"eth1\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-interface",
        "container `r1` has two links called `eth1`",
        "\"eth1\"",
        "link \"r1\" \"r3\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"eth1\"", "link \"r1\" \"r2\"", "first used here")],
    );
}

#[test]
fn link_second_address_of_a_family() {
    let text = link(&format!("{ENDS}    address \"r1\" \"10.0.13.1/30\"\n"));
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-address",
        "`r1` has a second IPv4 address on this link",
        "\"10.0.13.1/30\"",
        "address \"r1\" \"10.0.13",
    );
}

#[test]
fn link_ends_in_different_subnets() {
    let text = link("    address \"r1\" \"10.0.12.1/30\"\n    address \"r2\" \"10.0.13.2/30\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::link-subnet",
        "10.0.12.1/30 and 10.0.13.2/30 are not in one subnet: the link's ends cannot reach each other",
        "\"10.0.13.2/30\"",
        "address \"r2\" \"10.0.13",
    );
    assert_related(
        &text,
        &d,
        &[("\"10.0.12.1/30\"", "address", "the other end")],
    );
}

#[test]
fn link_ends_with_the_same_address() {
    let text = link("    address \"r1\" \"10.0.12.1/30\"\n    address \"r2\" \"10.0.12.1/30\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-subnet",
        "both ends of the link have the address 10.0.12.1",
        "\"10.0.12.1/30\"",
        "address \"r2\"",
    );
}

#[test]
fn link_end_on_the_subnets_network_address() {
    let text = link("    address \"r1\" \"10.0.12.0/30\"\n    address \"r2\" \"10.0.12.2/30\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-subnet",
        "10.0.12.0/30 is not a host address of its subnet 10.0.12.0/30",
        "\"10.0.12.2/30\"",
        "address \"r2\"",
    );
}

#[test]
fn link_address_at_one_end_only() {
    let text = link("    address \"r1\" \"10.0.12.1/30\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::link-subnet",
        "`r1` has an IPv4 address on the link and `r2` none",
        "\"10.0.12.1/30\"",
        "address",
    );
}

#[test]
fn link_subnet_overlapping_a_network() {
    let text =
        link("    address \"r1\" \"10.42.0.101/30\"\n    address \"r2\" \"10.42.0.102/30\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::overlapping-subnets",
        "10.42.0.100/30 of link `r1`–`r2` overlaps 10.42.0.0/24 of network `lan`",
        "\"10.42.0.101/30\"",
        "address",
    );
}

#[test]
fn route_destination_with_host_bits() {
    let text = route_via("10.0.12.2", "10.99.0.1/24");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-address",
        "`10.99.0.1/24` has bits set past its prefix length; the network is `10.99.0.0/24`",
        "\"10.99.0.1/24\"",
        "route",
    );
}

/// `r1` with a route to 10.99.0.0/24 through `via`, linked to `r2`.
fn route_via(via: &str, destination: &str) -> String {
    link(ENDS).replace(
        "container \"r1\" {\n    image \"debian\"\n",
        &format!(
            "container \"r1\" {{\n    image \"debian\"\n    route \"{destination}\" via=\"{via}\"\n"
        ),
    )
}

#[test]
fn route_gateway_on_no_link() {
    let text = route_via("10.0.13.2", "10.99.0.0/24");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::route-gateway",
        "the gateway 10.0.13.2 is on none of container `r1`'s links or networks",
        "\"10.0.13.2\"",
        "via=",
    );
    assert_help(
        &d,
        "a gateway is a neighbour: an address of the other end of one of the container's links, or on its network",
    );
}

#[test]
fn route_gateway_of_the_other_family() {
    let text = route_via("10.0.12.2", "fd00:99::/64");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::route-gateway",
        "the gateway 10.0.12.2 is an IPv4 address, the destination fd00:99::/64 an IPv6 one",
        "\"10.0.12.2\"",
        "via=",
    );
}

#[test]
fn route_gateway_is_the_containers_own_address() {
    let text = route_via("10.0.12.1", "10.99.0.0/24");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::route-gateway",
        "10.0.12.1 is container `r1`'s own address",
        "\"10.0.12.1\"",
        "via=",
    );
}

#[test]
fn application_needs_boot() {
    let text = kdl(
        "image \"app\" {\n    oci \"127.0.0.1:5000/app:1\"\n}\ncontainer \"web\" {\n    image \"app\"\n    network \"lan\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::application-needs-boot",
        "container `web` runs the entrypoint of OCI image `app`, which cannot take `network`",
        "network",
        "container \"web\"",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"app\"",
            "image \"app\"\n    network",
            "an OCI image: its entrypoint runs, not an init",
        )],
    );
    assert_help(
        &d,
        "add `boot` to the container to boot the image's init (it must have systemd), or remove `network`",
    );
    // With `boot`, the image's init runs, and configures the network.
    let booted = text.replace("    network \"lan\"\n}", "    boot\n    network \"lan\"\n}");
    assert_eq!(list(&diagnose(&booted, Format::Kdl)), "");
}

// ---- image builds ----------------------------------------------------------

#[test]
fn a_build_from_an_image_that_does_not_exist() {
    let text = kdl("image \"app\" {\n    from \"debain\"\n    run \"true\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no image named `debain`",
        "\"debain\"",
        "from \"debain\"",
    );
    assert_help(&d, "did you mean `debian`?");
}

#[test]
fn images_built_from_each_other() {
    let text = kdl(
        "image \"a\" {\n    from \"b\"\n    run \"true\"\n}\nimage \"b\" {\n    from \"a\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::image-cycle",
        "image `a` is built from itself: `a` → `b` → `a`",
        "\"b\"",
        "from \"b\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"a\"", "from \"a\"", "`b` is built from here")],
    );
    // The same in TOML.
    let text = toml("[image.a]\nfrom = \"b\"\n\n[image.b]\nfrom = \"a\"\n");
    expect_one(
        &text,
        Format::Toml,
        "ctm::image-cycle",
        "image `a` is built from itself: `a` → `b` → `a`",
        "\"b\"",
        "from = \"b\"",
    );
}

#[test]
fn a_build_step_without_from() {
    let text = kdl("image \"app\" {\n    run \"true\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::build-without-from",
        "image `app` has a `run` step but no `from`",
        "run",
        "run \"true\"",
    );
    assert_help(&d, "add `from \"IMAGE\"`: the image the steps start from");
}

#[test]
fn a_copy_source_that_leads_out_of_the_host_files_directory() {
    let text = kdl(
        "image \"app\" {\n    from \"debian\"\n    copy \"../etc/passwd\" \"/etc/passwd\"\n}\n",
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-path",
        "`../etc/passwd` leads out of the host file's directory; a copy source must lie inside it",
        "\"../etc/passwd\"",
        "copy",
    );
}

/// Loads `text` as the host file `host.kdl` in a directory of its own
/// (with `files` beside it), as every command does: the engine looks for
/// copy sources there.
fn load_beside(text: &str, files: &[&str]) -> (tempfile::TempDir, ctm::engine::load::Outcome) {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let path = dir.path().join("host.kdl");
    std::fs::write(&path, text).unwrap();
    let outcome = ctm::engine::load::load_and_validate(&path, None).unwrap();
    (dir, outcome)
}

#[test]
fn a_copy_source_that_is_not_beside_the_host_file() {
    let text = kdl(
        "image \"app\" {\n    from \"debian\"\n    copy \"app.conf\" \"/etc/app.conf\"\n    copy \"site.conf\" \"/etc/site.conf\"\n}\n",
    );
    let (dir, outcome) = load_beside(&text, &["app.conf"]);
    assert!(outcome.validated.is_none());
    assert_eq!(
        outcome.diagnostics.len(),
        1,
        "{}",
        list(&outcome.diagnostics)
    );
    let d = &outcome.diagnostics[0];
    let directory = std::fs::canonicalize(dir.path()).unwrap();
    check(
        &text,
        d,
        "ctm::copy-source",
        &format!(
            "copy source `site.conf` is not in {} (No such file or directory (os error 2))",
            directory.display()
        ),
        "\"site.conf\"",
        "copy \"site.conf\"",
    );
    // With the file there, the model has its path on the host.
    std::fs::write(dir.path().join("site.conf"), "x").unwrap();
    let outcome = ctm::engine::load::load_and_validate(&dir.path().join("host.kdl"), None).unwrap();
    let validated = outcome.validated.expect("valid once the source is there");
    let ctm::model::ImageSource::Build { steps, .. } =
        &validated.host.images[&ctm::model::Name::parse("app").unwrap()].source
    else {
        panic!("a build");
    };
    let paths: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            ctm::model::BuildStep::Copy { host_path, .. } => host_path.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        paths,
        [
            directory.join("app.conf").display().to_string(),
            directory.join("site.conf").display().to_string()
        ]
    );
}

#[test]
fn a_copy_source_that_a_symbolic_link_leads_out_of_the_directory() {
    let text =
        kdl("image \"app\" {\n    from \"debian\"\n    copy \"secrets\" \"/etc/secrets\"\n}\n");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("secrets")).unwrap();
    let path = dir.path().join("host.kdl");
    std::fs::write(&path, &text).unwrap();
    let outcome = ctm::engine::load::load_and_validate(&path, None).unwrap();
    assert_eq!(
        outcome.diagnostics.len(),
        1,
        "{}",
        list(&outcome.diagnostics)
    );
    check(
        &text,
        &outcome.diagnostics[0],
        "ctm::copy-source",
        &format!(
            "copy source `secrets` leads out of {} (to /etc)",
            std::fs::canonicalize(dir.path()).unwrap().display()
        ),
        "\"secrets\"",
        "copy",
    );
}

// ---- scheduled backups -----------------------------------------------------

/// The reader refuses control characters in every value before the
/// calendar parser sees one (which refuses them again).
#[test]
fn backup_every_with_a_control_character() {
    let text =
        with_backup("        to \"/srv/backups\"\n        every \"daily\\nPersistent=no\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::control-character",
        "value contains the control character \\n",
        "\"daily\\nPersistent=no\"",
        "every",
    );
}

/// A container `db` with a `backup` block whose lines are `body`.
fn with_backup(body: &str) -> String {
    kdl(&container("db", &format!("    backup {{\n{body}    }}\n")))
}

#[test]
fn a_backup_block_is_valid() {
    let text = with_backup(
        "        to \"/srv/backups\"\n        every \"Mon..Fri 02:00\"\n        keep 7\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
    let text = toml(
        "[container.db]\nimage = \"debian\"\nbackup = { to = \"/srv/backups\", every = \"daily\" }\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Toml)), "");
}

#[test]
fn backup_every_not_a_calendar_expression() {
    let text = with_backup("        to \"/srv/backups\"\n        every \"sometimes\"\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-calendar",
        "`sometimes` is not a calendar expression: `sometimes` is not a day of the week; \
         write a systemd calendar expression such as `daily`, `*-*-* 03:00:00` or `Mon..Fri 02:00`",
        "\"sometimes\"",
        "every",
    );
    assert_eq!(d.label.as_deref(), Some("invalid value"));
}

#[test]
fn backup_every_out_of_range_in_toml() {
    let text = toml(
        "[container.db]\nimage = \"debian\"\nbackup = { to = \"/srv/backups\", every = \"*-*-* 25:00\" }\n",
    );
    expect_one(
        &text,
        Format::Toml,
        "ctm::invalid-calendar",
        "`*-*-* 25:00` is not a calendar expression: the hour `25` is not a number from 0 to 23; \
         write a systemd calendar expression such as `daily`, `*-*-* 03:00:00` or `Mon..Fri 02:00`",
        "\"*-*-* 25:00\"",
        "every",
    );
}

#[test]
fn backup_to_not_absolute() {
    let text = with_backup("        to \"backups\"\n        every \"daily\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`backups` is not an absolute path",
        "\"backups\"",
        "to",
    );
}

#[test]
fn backup_keep_zero() {
    let text =
        with_backup("        to \"/srv/backups\"\n        every \"daily\"\n        keep 0\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`keep 0` would keep no backup; keep at least 1",
        "0",
        "keep",
    );
    assert_help(&d, "leave `keep` out to keep every archive");
}

#[test]
fn backup_keep_too_many() {
    let text = with_backup(
        "        to \"/srv/backups\"\n        every \"daily\"\n        keep 5000000000\n",
    );
    expect_one(
        &text,
        Format::Kdl,
        "ctm::invalid-value",
        "`keep 5000000000` is more than the most ctm counts, 4294967295",
        "5000000000",
        "keep",
    );
}

// ---- topologies ------------------------------------------------------------

/// The routers, a link between r1 and r2, and a network `ab` only r1 and
/// r2 are on, with `extra` after them.
fn lab(extra: &str) -> String {
    kdl(&format!(
        "network \"ab\" {{\n    bridge \"br-ab\"\n    ipv4 \"10.50.0.1/24\"\n}}\n\
         container \"r1\" {{\n    image \"debian\"\n    network \"ab\"\n}}\n\
         container \"r2\" {{\n    image \"debian\"\n    network \"ab\"\n}}\n\
         container \"r3\" {{\n    image \"debian\"\n}}\n\
         link \"r1\" \"r2\" {{\n{ENDS}}}\n{extra}"
    ))
}

#[test]
fn a_valid_topology_has_no_diagnostics_in_either_syntax() {
    let text = lab(
        "topology \"bgp\" {\n    network \"ab\"\n    container \"r1\"\n    container \"r2\"\n    link \"r2\" \"r1\"\n}\ntopology \"other\" {\n    container \"r3\"\n}\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
    let text = toml(
        "[network.ab]\nbridge = \"br-ab\"\nipv4 = \"10.50.0.1/24\"\n\
         [container.r1]\nimage = \"debian\"\nnetwork = \"ab\"\n\
         [container.r2]\nimage = \"debian\"\nnetwork = \"ab\"\n\
         [[link]]\na = \"r1\"\nb = \"r2\"\n\
         [topology.bgp]\nnetwork = [\"ab\"]\ncontainer = [\"r1\", \"r2\"]\nlink = [{ a = \"r1\", b = \"r2\" }]\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Toml)), "");
}

#[test]
fn topology_with_an_unknown_container() {
    let text = lab("topology \"bgp\" {\n    container \"r9\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no container named `r9`",
        "\"r9\"",
        "topology",
    );
}

#[test]
fn topology_with_an_unknown_network() {
    let text = lab("topology \"bgp\" {\n    network \"cd\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no network named `cd`",
        "\"cd\"",
        "topology",
    );
}

#[test]
fn topology_with_a_link_the_host_file_lacks() {
    let text = lab("topology \"bgp\" {\n    link \"r1\" \"r3\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::unknown-reference",
        "there is no link between `r1` and `r3`",
        "\"r1\" \"r3\"",
        "topology",
    );
    assert_help(
        &d,
        "a topology names links defined at the top level: link \"r1\" \"r3\" { … }",
    );
}

#[test]
fn container_in_two_topologies() {
    let text = lab(
        "topology \"a\" {\n    container \"r3\"\n}\ntopology \"b\" {\n    container \"r3\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::topology-member",
        "container `r3` is in topology `a` already, and a container belongs to at most one",
        "\"r3\"",
        "topology \"b\"",
    );
    assert_related(
        &text,
        &d,
        &[("\"r3\"", "topology \"a\"", "in topology `a` here")],
    );
}

#[test]
fn member_listed_twice_in_one_topology() {
    let text = lab("topology \"a\" {\n    link \"r1\" \"r2\"\n    link \"r2\" \"r1\"\n}\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::topology-member",
        "link `r1–r2` is listed twice in topology `a`",
        "link",
        "link \"r2\" \"r1\"",
    );
}

#[test]
fn container_outside_a_topology_on_its_network() {
    let text = lab("topology \"bgp\" {\n    network \"ab\"\n    container \"r1\"\n}\n");
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::topology-network",
        "container `r2` is on network `ab` of topology `bgp` but not in the topology",
        "\"r2\"",
        "container \"r2\"",
    );
    assert_help(
        &d,
        "add `container \"r2\"` to topology `bgp`, or take network `ab` out of it",
    );
}

// ---- a container on several networks --------------------------------------

/// The prelude, a second network `back`, and container `gw` with these
/// lines in its body (after its image).
fn on_networks(body: &str) -> String {
    kdl(&format!(
        "network \"back\" {{\n    bridge \"br-back\"\n    ipv4 \"10.60.0.1/24\"\n}}\ncontainer \"gw\" {{\n    image \"debian\"\n{body}}}\n"
    ))
}

#[test]
fn a_container_on_two_networks_is_valid_in_either_syntax() {
    let text = on_networks("    network \"lan\"\n    network \"back\" interface=\"eth1\"\n");
    assert_eq!(list(&diagnose(&text, Format::Kdl)), "");
    let text = toml(
        "\n[network.back]\nbridge = \"br-back\"\nipv4 = \"10.60.0.1/24\"\n\n[container.gw]\nimage = \"debian\"\nnetwork = [\"lan\", { name = \"back\", interface = \"eth1\" }]\n",
    );
    assert_eq!(list(&diagnose(&text, Format::Toml)), "");
}

#[test]
fn the_same_network_twice() {
    let text = on_networks(
        "    network \"lan\"\n    network \"back\"\n    network \"lan\" ipv4=\"10.42.0.9\"\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::network-twice",
        "container `gw` is attached to network `lan` twice",
        "\"lan\"",
        "network \"lan\" ipv4",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"lan\"",
            "    network \"lan\"\n    network \"back\"",
            "first attached here",
        )],
    );
}

#[test]
fn two_network_interfaces_with_one_name() {
    let text = kdl(
        "network \"back\" {\n    bridge \"br-back\"\n    ipv4 \"10.60.0.1/24\"\n}\nnetwork \"mgmt\" {\n    bridge \"br-mgmt\"\n    ipv4 \"10.70.0.1/24\"\n}\ncontainer \"gw\" {\n    image \"debian\"\n    network \"lan\"\n    network \"back\" interface=\"eth1\"\n    network \"mgmt\" interface=\"eth1\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-interface",
        "container `gw` has two interfaces called `eth1`",
        "\"eth1\"",
        "network \"mgmt\" interface",
    );
    assert_related(
        &text,
        &d,
        &[("\"eth1\"", "network \"back\" interface", "first used here")],
    );
}

#[test]
fn a_network_interface_named_like_a_link_interface() {
    let text = kdl(
        "network \"back\" {\n    bridge \"br-back\"\n    ipv4 \"10.60.0.1/24\"\n}\ncontainer \"r1\" {\n    image \"debian\"\n    network \"lan\"\n    network \"back\" interface=\"eth1\"\n}\ncontainer \"r2\" {\n    image \"debian\"\n}\nlink \"r1\" \"r2\" {\n    address \"r1\" \"10.0.12.1/30\"\n    address \"r2\" \"10.0.12.2/30\"\n    interface \"r1\" \"eth1\"\n}\n",
    );
    let d = expect_one(
        &text,
        Format::Kdl,
        "ctm::duplicate-interface",
        "container `r1` has a network interface called `eth1` already",
        "\"eth1\"",
        "interface \"r1\"",
    );
    assert_related(
        &text,
        &d,
        &[(
            "\"eth1\"",
            "network \"back\" interface",
            "the network's interface",
        )],
    );
}

#[test]
fn a_network_interface_name_too_long() {
    let text =
        on_networks("    network \"lan\"\n    network \"back\" interface=\"a-very-long-name0\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::network-interface",
        "`a-very-long-name0` is 17 characters long; Linux interface names have at most 15",
        "\"a-very-long-name0\"",
        "network \"back\"",
    );
}

#[test]
fn a_network_interface_called_host0() {
    let text = on_networks("    network \"lan\"\n    network \"back\" interface=\"host0\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::network-interface",
        "`host0` is the interface of the container's first network",
        "\"host0\"",
        "network \"back\"",
    );
}

#[test]
fn an_interface_on_the_first_network() {
    let text = on_networks("    network \"lan\" interface=\"eth0\"\n    network \"back\"\n");
    expect_one(
        &text,
        Format::Kdl,
        "ctm::first-network-interface",
        "the first network's interface is nspawn's `host0` and cannot be renamed",
        "\"eth0\"",
        "network \"lan\"",
    );
}

#[test]
fn an_address_outside_a_second_network() {
    let text = on_networks("    network \"lan\"\n    network \"back\" ipv4=\"10.42.0.9\"\n");
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    let d = &diagnostics[0];
    assert_eq!(d.code, "ctm::invalid-container-address");
    assert!(
        d.message.contains("10.42.0.9") && d.message.contains("10.60.0.0/24"),
        "{}",
        d.message
    );
    assert_span(&text, d.span, "\"10.42.0.9\"", "network \"back\"");
}

#[test]
fn an_unknown_second_network() {
    let text = on_networks("    network \"lan\"\n    network \"dmz\"\n");
    let diagnostics = diagnose(&text, Format::Kdl);
    assert_eq!(diagnostics.len(), 1, "{}", list(&diagnostics));
    assert_eq!(diagnostics[0].code, "ctm::unknown-reference");
    assert_span(&text, diagnostics[0].span, "\"dmz\"", "network \"dmz\"");
}
