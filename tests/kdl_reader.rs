//! ctm's KDL reader (`config::kdl_fast`) against the reference path
//! (`config::kdl::parse_with_kdl_crate`, the `kdl` crate plus conversion).
//!
//! On every input the two must agree: both read it, with the same names,
//! values, properties, children and spans, and the same reports of
//! `#null` and type annotations; or both reject its syntax (each with its
//! own message). The one exception is nesting deeper than
//! `config::MAX_DEPTH`, which ctm rejects and the crate reads.

mod support;

use std::path::{Path, PathBuf};

use ctm::config::kdl::parse_with_kdl_crate;
use ctm::config::{Document, MAX_DEPTH, Node, Spanned, Value, kdl_fast};
use ctm::diagnostic::Diagnostic;
use miette::SourceSpan;
use proptest::prelude::*;
use support::{on_stack, skip_unless};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Both read it, identically, with nothing to report.
    Agreed,
    /// Both rejected the syntax.
    Rejected,
    /// Both read it and reported the same `#null`s and type annotations.
    Reported,
}

fn show(span: SourceSpan) -> String {
    format!("{}..{}", span.offset(), span.offset() + span.len())
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        _ => a == b,
    }
}

fn compare_spanned_value(path: &str, a: &Spanned<Value>, b: &Spanned<Value>) -> Result<(), String> {
    if !same_value(&a.value, &b.value) {
        return Err(format!("{path}: value {:?} != {:?}", a.value, b.value));
    }
    if a.span != b.span {
        return Err(format!("{path}: span {} != {}", show(a.span), show(b.span)));
    }
    Ok(())
}

fn compare_nodes(path: &str, fast: &[Node], reference: &[Node]) -> Result<(), String> {
    if fast.len() != reference.len() {
        return Err(format!(
            "{path}: {} nodes != {} nodes",
            fast.len(),
            reference.len()
        ));
    }
    for (i, (a, b)) in fast.iter().zip(reference).enumerate() {
        let path = format!("{path}/{i}:{}", b.name.value);
        if a.name != b.name {
            return Err(format!(
                "{path}: name {:?}@{} != {:?}@{}",
                a.name.value,
                show(a.name.span),
                b.name.value,
                show(b.name.span)
            ));
        }
        if a.span != b.span {
            return Err(format!(
                "{path}: node span {} != {}",
                show(a.span),
                show(b.span)
            ));
        }
        if a.args.len() != b.args.len() {
            return Err(format!("{path}: {} args != {}", a.args.len(), b.args.len()));
        }
        for (j, (x, y)) in a.args.iter().zip(&b.args).enumerate() {
            compare_spanned_value(&format!("{path} arg {j}"), x, y)?;
        }
        if a.props.len() != b.props.len() {
            return Err(format!(
                "{path}: {} props != {}",
                a.props.len(),
                b.props.len()
            ));
        }
        for (j, ((ka, va), (kb, vb))) in a.props.iter().zip(&b.props).enumerate() {
            if ka != kb {
                return Err(format!(
                    "{path} prop {j}: key {:?}@{} != {:?}@{}",
                    ka.value,
                    show(ka.span),
                    kb.value,
                    show(kb.span)
                ));
            }
            compare_spanned_value(&format!("{path} prop {}", kb.value), va, vb)?;
        }
        compare_nodes(&path, &a.children, &b.children)?;
    }
    Ok(())
}

fn compare(fast: &Document, reference: &Document) -> Result<(), String> {
    compare_nodes("", &fast.nodes, &reference.nodes)
}

fn shown(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(|d| format!("{d:?}")).collect()
}

fn is_syntax(d: &Diagnostic) -> bool {
    d.code == "ctm::kdl-syntax"
}

/// Checks one input; `Err` describes the disagreement.
fn check(text: &str) -> Result<Outcome, String> {
    let (reference, expected) = parse_with_kdl_crate(text);
    let (fast, found) = kdl_fast::read(text);
    // The public entry point is the reader.
    let (public, public_found) = ctm::config::kdl::parse(text);
    assert_eq!(shown(&public_found), shown(&found));
    compare(&public, &fast)?;
    let rejected = expected.iter().any(is_syntax);
    match (rejected, found.iter().any(is_syntax)) {
        (true, true) => {
            if found.len() != 1 || !fast.nodes.is_empty() {
                return Err(format!(
                    "a syntax error must be the one diagnostic, of an empty document: {:?}",
                    shown(&found)
                ));
            }
            Ok(Outcome::Rejected)
        }
        (false, false) => {
            compare(&fast, &reference)?;
            if shown(&found) != shown(&expected) {
                return Err(format!(
                    "reported {:?}, the reference {:?}",
                    shown(&found),
                    shown(&expected)
                ));
            }
            if expected.is_empty() {
                Ok(Outcome::Agreed)
            } else if expected
                .iter()
                .all(|d| matches!(d.code, "ctm::null-value" | "ctm::type-annotation"))
            {
                Ok(Outcome::Reported)
            } else {
                Err(format!("unexpected diagnostics: {:?}", shown(&expected)))
            }
        }
        (true, false) => Err(format!(
            "ctm's reader accepted what the kdl crate rejects: {:?}",
            shown(&expected)
        )),
        (false, true) => Err(format!(
            "ctm's reader rejected what the kdl crate reads: {:?}",
            shown(&found)
        )),
    }
}

fn kdl_crate_dir() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let registry = home.join("registry/src");
    let mut found = Vec::new();
    for index in std::fs::read_dir(registry).ok()?.flatten() {
        let dir = index.path().join("kdl-6.7.1");
        if dir.join("tests/test_cases/input").is_dir() {
            found.push(dir);
        }
    }
    found.sort();
    found.into_iter().next()
}

#[test]
fn official_test_suite() {
    let Some(dir) = kdl_crate_dir() else {
        skip_unless(
            false,
            "the kdl-6.7.1 package (its tests/test_cases) was not found under \
             $CARGO_HOME/registry/src; the official KDL test suite was not run",
        );
        return;
    };
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir.join("tests/test_cases/input"))
        .expect("readable test_cases/input")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    inputs.sort();
    assert!(inputs.len() > 100, "only {} official cases", inputs.len());
    let (mut agreed, mut rejected, mut reported) = (0, 0, 0);
    let mut failures = Vec::new();
    for path in &inputs {
        let Ok(text) = std::fs::read_to_string(path) else {
            // Not UTF-8: ctm never sees such a file as text.
            continue;
        };
        match check(&text) {
            Ok(Outcome::Agreed) => agreed += 1,
            Ok(Outcome::Rejected) => rejected += 1,
            Ok(Outcome::Reported) => reported += 1,
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    eprintln!(
        "official KDL test suite: {} inputs, {agreed} read and agreed; declined {rejected} that \
         the kdl crate rejects and {reported} with #null or type annotations (reported by the \
         reference); {} disagreements",
        inputs.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(agreed > 100);
}

#[test]
fn examples_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("examples"))
        .expect("examples/")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "kdl") {
            let text = std::fs::read_to_string(&path).expect("readable example");
            assert_eq!(check(&text), Ok(Outcome::Agreed), "{}", path.display());
            count += 1;
        }
    }
    assert!(count >= 3);
}

#[test]
fn docs_blocks_agree() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
            .expect("docs/config.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```kdl") => current = Some(String::new()),
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(blocks.len() >= 5, "only {} kdl blocks", blocks.len());
    for block in &blocks {
        assert!(check(block).is_ok(), "{block}\n{:?}", check(block));
    }
}

#[test]
fn synthetic_hosts_agree() {
    for (c, n, t) in [
        (0, 1, 0),
        (1, 1, 1),
        (10, 3, 2),
        (100, 20, 10),
        (1000, 100, 50),
    ] {
        let text = ctm::synthetic::host_kdl(c, n, t);
        assert_eq!(check(&text), Ok(Outcome::Agreed), "host_kdl({c}, {n}, {t})");
    }
}

#[test]
fn hand_picked_cases() {
    let cases = [
        "",
        "\u{FEFF}node",
        "a; b; c",
        "/- a; b",
        "a /- /- 1 2",
        "a /-\n1 2",
        "a x=1 x=2 y = 3 x= /* = */ 1",
        "a k= /* 1 */ 1",
        "a /* = */ k = 2",
        "a {} b",
        "a{}",
        "a 1{}",
        "a /-{x} {y} /-{z}",
        "a /-1 {x}",
        "a \\\n  1 \\ // c\n 2",
        "a \"\"\"\n  x\n   y\n  \"\"\"",
        "a #\"\"\"\n  x\\n\n  \"\"\"#",
        "a #\"x\"# ##\"a\"#b\"## \"\\u{1F600}\\s\\t\"",
        "a 0x_1",
        "a 0x1_ 0o7 0b1_0 -0b1 +0x10 1e5 1E-5 1.5e+3 -0.0 1_000.000_1",
        "a 170141183460469231731687303715884105727 -170141183460469231731687303715884105727",
        "a -170141183460469231731687303715884105728",
        "a #inf #-inf #nan #true #false",
        "a #null",
        "(t)a",
        "a (t)1",
        "a /-(t)1",
        "a -inf",
        "a inf",
        "a - + -a .a +.a",
        "a \"x\" \\",
        "a \"\"\"\n\"\"\"",
        "a \"\"\"\n  \\\n  x\n  \"\"\"",
        "a /* /* */ */ b",
        "a /* /* */ b",
        "// c\na // c\n/* x */ b",
        "a\r\nb\u{2028}c\u{85}d\u{0B}e\u{0C}f\rg",
        "a\u{3000}1\u{A0}2",
        "a \"\\\n   b\"",
        "a #\"\"\"#",
        "a 1.",
        "a .5",
        "a 1e",
        "a a\"b\"",
        "a=1",
        "a b=",
        "{}",
        "a { b; c }",
        "a { b }; d",
        "a {\n  /- b\n}",
        "a {\n  b /-\n}",
        "/-",
        "a /-",
        "a 1 /- 2",
    ];
    for text in cases {
        if let Err(e) = check(text) {
            panic!("{text:?}: {e}");
        }
    }
}

// ---- generated documents ---------------------------------------------------

fn bare_name() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "[a-z][a-z0-9_.-]{0,8}",
        2 => Just("-".to_string()),
        2 => Just("-inf".to_string()),
        2 => Just(".x".to_string()),
        2 => Just("+a".to_string()),
        2 => Just("héllo".to_string()),
        // Invalid.
        1 => Just("true".to_string()),
        1 => Just("1abc".to_string()),
        1 => Just("a#b".to_string()),
    ]
}

fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn string_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z \"\\\\#=]{0,10}",
        2 => "\\PC{0,6}",
        1 => Just(String::new()),
        1 => Just("\n\t\u{1}".to_string()),
    ]
}

fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => bare_name(),
        10 => string_text().prop_map(|s| quoted(&s)),
        3 => ("[a-z \"#]{0,8}", 1usize..3).prop_map(|(s, n)| {
            let h = "#".repeat(n);
            format!("{h}\"{s}\"{h}")
        }),
        3 => (
            prop::collection::vec("[a-z \"\\\\]{0,8}", 0..3),
            "[ \t]{0,3}",
            any::<bool>()
        )
            .prop_map(|(lines, indent, raw)| {
                let mut body = String::new();
                for l in &lines {
                    body.push_str(&indent);
                    body.push_str(l);
                    body.push('\n');
                }
                if raw {
                    format!("#\"\"\"\n{body}{indent}\"\"\"#")
                } else {
                    let body = body.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("\"\"\"\n{body}{indent}\"\"\"")
                }
            }),
        1 => Just("\"a\\   \n  b\"".to_string()),
        1 => Just("\"\\u{10FFFF}\\b\\f\\r\\s\"".to_string()),
        // Invalid.
        1 => Just("\"\\u{D800}\"".to_string()),
        1 => Just("\"\\x\"".to_string()),
    ]
}

fn number_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any::<i64>().prop_map(|i| i.to_string()),
        3 => any::<i128>().prop_map(|i| i.to_string()),
        3 => any::<u32>().prop_map(|i| format!("0x{i:X}")),
        3 => any::<u16>().prop_map(|i| format!("-0o{i:o}")),
        3 => any::<u8>().prop_map(|i| format!("+0b{i:b}_")),
        3 => (any::<f64>()).prop_map(|f| format!("{f:e}")),
        3 => (-1000i32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b:03}")),
        1 => Just("1_000.5_e1_0".to_string()),
        1 => Just("1e400".to_string()),
        1 => Just("1__2".to_string()),
        1 => Just("-0".to_string()),
        // Invalid.
        1 => Just("170141183460469231731687303715884105728".to_string()),
        1 => Just("-170141183460469231731687303715884105728".to_string()),
        1 => Just("1.".to_string()),
        1 => Just("0x".to_string()),
        1 => Just(".5".to_string()),
    ]
}

fn value_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string_literal(),
        4 => number_literal(),
        2 => prop_oneof![
            4 => Just("#true"), 4 => Just("#false"), 2 => Just("#inf"), 2 => Just("#-inf"),
            2 => Just("#nan"), 1 => Just("#null"), 1 => Just("(t)1"), 1 => Just("#truex")
        ]
        .prop_map(str::to_string),
    ]
}

fn space() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(" ".to_string()),
        1 => Just("\t".to_string()),
        1 => Just("\u{3000}".to_string()),
        1 => Just(" /* c */ ".to_string()),
        1 => Just(" /* a /* b */ */".to_string()),
        1 => Just(" \\\n  ".to_string()),
        1 => Just(" \\ // x\n ".to_string()),
        1 => Just("".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    (
        prop_oneof![3 => Just(""), 1 => Just("/-"), 1 => Just("/- ")],
        prop::option::of(string_literal()),
        prop_oneof![Just("="), Just(" = "), Just("= ")],
        value_literal(),
    )
        .prop_map(|(sd, key, eq, value)| match key {
            Some(key) => format!("{sd}{key}{eq}{value}"),
            None => format!("{sd}{value}"),
        })
}

fn terminator() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("\n".to_string()),
        1 => Just(";".to_string()),
        1 => Just("; ".to_string()),
        1 => Just("\r\n".to_string()),
        1 => Just(" // c\n".to_string()),
        1 => Just("\u{2028}".to_string()),
        1 => Just("\n\n".to_string()),
    ]
}

fn node(depth: u32) -> BoxedStrategy<String> {
    let children: BoxedStrategy<Option<(String, Vec<String>)>> = if depth == 0 {
        Just(None).boxed()
    } else {
        prop::option::weighted(
            0.4,
            (
                prop_oneof![Just(""), Just(" /- "), Just(" /-")],
                prop::collection::vec(node(depth - 1), 0..4),
            ),
        )
        .prop_map(|o| o.map(|(sd, ns)| (sd.to_string(), ns)))
        .boxed()
    };
    (
        prop_oneof![4 => Just(""), 1 => Just("/- ")],
        string_literal(),
        prop::collection::vec((space(), entry()), 0..5),
        children,
        space(),
        terminator(),
    )
        .prop_map(|(sd, name, entries, children, trailing, term)| {
            let mut out = format!("{sd}{name}");
            for (sp, e) in entries {
                let sp = if sp.is_empty() { " ".to_string() } else { sp };
                out.push_str(&sp);
                out.push_str(&e);
            }
            if let Some((csd, nodes)) = children {
                out.push(' ');
                out.push_str(&csd);
                out.push_str("{\n");
                for n in nodes {
                    out.push_str(&n);
                }
                out.push('}');
            }
            out.push_str(&trailing);
            out.push_str(&term);
            out
        })
        .boxed()
}

fn document() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(""), Just("\u{FEFF}"), Just("// head\n"), Just("\n  ")],
        prop::collection::vec(node(3), 0..6),
    )
        .prop_map(|(head, nodes)| format!("{head}{}", nodes.concat()))
}

/// Generated documents, counted so that a generator drifting into mostly
/// invalid text would show.
#[test]
fn generated_documents_agree() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    // A fixed seed: the share of valid documents below is then a property
    // of the generator, not of the run (about a third are valid).
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 4000,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let counts = std::cell::RefCell::new([0usize; 3]);
    let result = runner.run(&document(), |text| match check(&text) {
        Ok(outcome) => {
            counts.borrow_mut()[outcome as usize] += 1;
            Ok(())
        }
        Err(e) => Err(TestCaseError::fail(format!("{text:?}: {e}"))),
    });
    let [agreed, rejected, reported] = *counts.borrow();
    eprintln!(
        "generated documents: {agreed} read and agreed, {rejected} rejected by both, \
         {reported} declined for #null/type annotations"
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // A generator drifting into mostly invalid text falls below a quarter.
    assert!(
        agreed * 4 > agreed + rejected + reported,
        "too few valid documents generated"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mangled_documents_agree(text in document(), cut in any::<prop::sample::Index>(), junk in "[ \"#/\\\\{};=()\n*-]{0,3}") {
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mangled = format!("{}{junk}{}", &text[..at], &text[at..]);
        if let Err(e) = check(&mangled) {
            prop_assert!(false, "{mangled:?}: {e}");
        }
    }
}

// ---- deep and huge documents -------------------------------------------

/// Runs `f` on a thread with a 1 GiB stack (reserved, not used): the kdl
/// crate takes about 50 KB of stack per level of nesting in a debug build.
fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    on_stack(1 << 30, f)
}

fn check_on_big_stack(text: String) -> Result<Outcome, String> {
    on_big_stack(move || check(&text))
}

/// `open` nested `times` in itself, and closed.
fn nested(times: usize, open: &str) -> String {
    let unclosed = open.matches('{').count() - open.matches('}').count();
    format!("{}a{}", open.repeat(times), "}".repeat(times * unclosed))
}

/// Ways to open one level, some slashdashed. (`a /-{ a /-{ …` is left
/// out: the crate takes time exponential in its depth, see below.)
const OPENINGS: [&str; 4] = ["a {", "a {} /-{ ", "/- a {", "a { b 1 x=#true; c; "];

#[test]
fn documents_as_deep_as_the_limit_agree() {
    for open in OPENINGS {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH] {
            let text = nested(depth, open);
            assert_eq!(
                check_on_big_stack(text.clone()),
                Ok(Outcome::Agreed),
                "{depth} levels of {open:?}"
            );
        }
    }
}

/// One level more: ctm refuses what the crate reads, at the `{` that
/// goes too deep, slashdashed or not.
#[test]
fn documents_deeper_than_the_limit_are_refused_where_they_cross_it() {
    for open in OPENINGS {
        let text = nested(MAX_DEPTH + 1, open);
        let (reference, expected) = {
            let text = text.clone();
            on_big_stack(move || parse_with_kdl_crate(&text))
        };
        assert!(expected.is_empty(), "{open:?}: {:?}", shown(&expected));
        drop(reference);
        let (doc, found) = kdl_fast::read(&text);
        assert!(doc.nodes.is_empty());
        assert_eq!(found.len(), 1, "{:?}", shown(&found));
        assert_eq!(found[0].code, "ctm::too-deep");
        // The `{` that opens level MAX_DEPTH + 1.
        let mut depth = 0;
        let crossing = text
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth > MAX_DEPTH
            })
            .unwrap()
            .0;
        assert_eq!(
            (found[0].span.offset(), found[0].span.len()),
            (crossing, 1),
            "{open:?}"
        );
    }
}

/// Before ctm had a reader of its own, slashdashed child blocks nested in
/// one another took time exponential in their depth (the crate reads each
/// twice), 64 s at 22 levels. Compared at a depth the crate manages.
#[test]
fn nested_slashdashed_blocks_agree() {
    for open in ["a /-{ ", "a; /- b { ", "a /-{ b; /- c { "] {
        let text = nested(5, open);
        assert_eq!(check(&text), Ok(Outcome::Agreed), "{text}");
    }
}

/// Large values, long lines and many entries. (Sizes are kept to what
/// the crate reads in a second or so in a debug build; ctm's reader alone
/// is given megabytes in tests/hostile.rs.)
#[test]
fn huge_documents_agree() {
    let long = "x".repeat(32 << 10);
    let many = (0..5_000).map(|i| format!(" {i}")).collect::<String>();
    let props = (0..5_000).map(|i| format!(" k{i}={i}")).collect::<String>();
    let cases = [
        format!("a \"{long}\"\n"),
        format!("a #\"{long}\"#\n"),
        format!("a \"\"\"\n  {long}\n  \"\"\"\n"),
        format!("{long}\n"),
        format!("a{many}\n"),
        format!("a{props}\n"),
        format!("/* {} */ a\n", "* / ".repeat(3000)),
        format!("// {long}\na\n"),
        "a;".repeat(5_000),
        "a {}\n".repeat(5_000),
    ];
    for text in cases {
        let start = &text[..40.min(text.len())];
        assert_eq!(
            check_on_big_stack(text.clone()),
            Ok(Outcome::Agreed),
            "{start:?}…"
        );
    }
}

/// The most `config::kdl::check_for_kdl_crate` lets through: nesting at
/// the limit, the innermost levels slashdashed blocks, and a comment of
/// the most pieces there. The crate reads it on a thread of 4 MiB, which
/// the web editor can give it.
#[test]
fn the_crate_reads_what_the_check_lets_through_on_a_4_mib_stack() {
    use ctm::config::kdl::{MAX_COMMENT_PIECES, MAX_SLASHDASHED_BLOCKS, check_for_kdl_crate};
    let plain = MAX_DEPTH - MAX_SLASHDASHED_BLOCKS;
    let comment = format!("/*{}*/", "* ".repeat((MAX_COMMENT_PIECES - 3) / 2));
    let text = format!(
        "{}{}{comment} a{}",
        "a {".repeat(plain),
        "a /-{ ".repeat(MAX_SLASHDASHED_BLOCKS),
        "}".repeat(MAX_DEPTH)
    );
    assert_eq!(check_for_kdl_crate(&text), Ok(()));
    let too_many = format!("/*{}*/\n", "* ".repeat(MAX_COMMENT_PIECES / 2));
    assert!(check_for_kdl_crate(&too_many).is_err());
    let read = std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || parse_with_kdl_crate(&text).1.is_empty())
        .unwrap()
        .join()
        .unwrap();
    assert!(read);
}
