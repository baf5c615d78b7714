//! Structure-aware fuzzing on the stable toolchain, with proptest: host
//! files generated from ctm's vocabulary, mixed with hostile structure
//! (deep nesting, long values, control characters, every kind of newline,
//! misspelt and duplicate names, broken references, junk at random
//! places), through the KDL reader, the TOML reader, the validator and the
//! web editor's JSON API. On every input: no panic and no stack overflow
//! (each case runs on a 256 KiB stack), every diagnostic inside the text
//! on character boundaries and renderable as text and JSON, and the same
//! answer twice.
//!
//! Each target runs a bounded number of cases (a few seconds in a debug
//! build). A failing case is kept by proptest in
//! `tests/fuzz.proptest-regressions` and tried first on every run; inputs
//! found otherwise are kept in `tests/fuzz-corpus/`, which
//! [`the_corpus_is_read_safely`] replays.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ctm::backend::journal::NoJournal;
use ctm::config::{self, Format, Source, vocab};
use ctm::diagnostic::{Diagnostic, SourceFile};
use ctm::lock::Lock;
use ctm::web::{AppState, Config};
use ctm::{compile, validate};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt as _;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Generated texts are large; shrinking them is slow and rarely
        // needed to see the bug.
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

// ---- what every input must satisfy -----------------------------------------

/// Every diagnostic lies in the text, on character boundaries, and
/// renders as JSON and as a miette report.
fn check_diagnostics(text: &str, diagnostics: &[Diagnostic]) -> Result<(), String> {
    let file = Arc::new(SourceFile::new("fuzz", text));
    for d in diagnostics {
        let spans = std::iter::once(d.span).chain(d.related.iter().map(|(s, _)| *s));
        for span in spans {
            let (start, end) = (span.offset(), span.offset() + span.len());
            if end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                return Err(format!("span {start}..{end} of {d:?} is not in the text"));
            }
        }
        let json = d.to_json_in(&file);
        if json.line == 0 || json.column == 0 {
            return Err(format!("position {}:{} of {d:?}", json.line, json.column));
        }
        let mut rendered = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut rendered, d.report_in(&file).as_ref())
            .map_err(|e| format!("{d:?} does not render: {e}"))?;
    }
    Ok(())
}

/// Parses, validates and (when valid) compiles `text`: what `ctm check`
/// and `ctm compile` do. The diagnostics, shown.
fn pipeline(text: &str, format: Format) -> Result<Vec<String>, String> {
    let (doc, mut diagnostics) = config::parse(&Source::new("fuzz", text, format));
    match validate::validate(&doc, &Lock::empty()) {
        Ok(validated) if diagnostics.is_empty() => {
            compile::compile(&validated.host);
        }
        Ok(_) => {}
        Err(more) => diagnostics.extend(more),
    }
    check_diagnostics(text, &diagnostics)?;
    Ok(diagnostics.iter().map(|d| format!("{d:?}")).collect())
}

/// [`pipeline`] twice on a small stack: the same answer both times.
fn check_pipeline(text: String, format: Format) -> Result<(), TestCaseError> {
    let result = on_small_stack(move || {
        let first = pipeline(&text, format)?;
        let second = pipeline(&text, format)?;
        if first != second {
            return Err(format!("two answers:\n{first:?}\n{second:?}"));
        }
        Ok(())
    });
    result.map_err(TestCaseError::fail)
}

// ---- generated KDL -----------------------------------------------------------

/// Every node name of the vocabulary, with some misspelt and some hostile.
fn node_name() -> impl Strategy<Value = String> {
    let names: Vec<String> = vocab::walk()
        .into_iter()
        .map(|(_, spec)| spec.name.to_string())
        .collect();
    prop_oneof![
        8 => prop::sample::select(names.clone()),
        1 => prop::sample::select(names).prop_map(|n| format!("{n}x")),
        1 => Just("\"a b\"".to_string()),
        1 => Just("(t)node".to_string()),
    ]
}

fn property_name() -> impl Strategy<Value = String> {
    let mut names: Vec<String> = vocab::walk()
        .into_iter()
        .flat_map(|(_, spec)| spec.props.iter().map(|p| p.name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    prop_oneof![
        6 => prop::sample::select(names),
        1 => "[A-Z_][A-Z0-9_]{0,6}",
        1 => Just("x".repeat(300)),
    ]
}

/// A string's contents: names, addresses, paths, and hostile text.
fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "web", "db", "debian", "lan", "br-lan", "eth0", "base", "tcp", "udp",
            "10.42.0.1/24", "10.42.0.7", "fd42:42::1/64", "/srv/www", "/var/www",
            "1G", "30s", "bookworm", "curl", "ssh-ed25519 AAAA",
        ])
        .prop_map(str::to_string),
        2 => "[a-z0-9./:-]{0,16}",
        1 => "\\PC{0,12}",
        1 => (1usize..3000).prop_map(|n| "a".repeat(n)),
        1 => (250usize..300).prop_map(|n| format!("/srv/{}", "c".repeat(n))),
    ]
}

/// A value as KDL writes it; some of them invalid.
fn kdl_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text_value().prop_map(|s| format!("{s:?}")),
        2 => any::<i32>().prop_map(|i| i.to_string()),
        1 => Just("#true".to_string()),
        1 => Just("#null".to_string()),
        1 => Just("1.5".to_string()),
        1 => Just("\"\\u{1b}[0m\"".to_string()),
        1 => Just("#\"raw\\n\"#".to_string()),
        1 => Just("\"\"\"\n  a\n  \"\"\"".to_string()),
        1 => Just("true".to_string()),
    ]
}

/// Any KDL 2.0 newline, or `;`.
fn terminator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\n", "\n", "\n", ";", "\r\n", "\r", "\u{85}", "\u{0B}", "\u{0C}", "\u{2028}", "\u{2029}",
        " // c\n",
    ])
}

fn kdl_node(depth: u32) -> BoxedStrategy<String> {
    let children = if depth == 0 {
        Just(None).boxed()
    } else {
        prop::option::weighted(0.4, prop::collection::vec(kdl_node(depth - 1), 0..4)).boxed()
    };
    (
        prop_oneof![6 => Just(""), 1 => Just("/- ")],
        node_name(),
        prop::collection::vec(kdl_value(), 0..3),
        prop::collection::vec((property_name(), kdl_value()), 0..3),
        children,
        terminator(),
    )
        .prop_map(|(slashdash, name, args, props, children, end)| {
            let mut out = format!("{slashdash}{name}");
            for arg in args {
                out.push(' ');
                out.push_str(&arg);
            }
            for (key, value) in props {
                out.push_str(&format!(" {key}={value}"));
            }
            if let Some(children) = children {
                out.push_str(" {\n");
                for child in children {
                    out.push_str(&child);
                }
                out.push('}');
            }
            out.push_str(end);
            out
        })
        .boxed()
}

/// A document of generated nodes, sometimes wrapped in blocks deeper than
/// `config::MAX_DEPTH`, then changed at random places.
fn kdl_document() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(kdl_node(3), 0..8),
        prop_oneof![4 => Just(0usize), 1 => 28usize..40, 1 => 1000usize..1300],
        prop::collection::vec((any::<prop::sample::Index>(), junk()), 0..3),
    )
        .prop_map(|(nodes, wrap, changes)| {
            let body = nodes.concat();
            let text = format!("{}{body}{}", "a {".repeat(wrap), "}".repeat(wrap));
            change(text, &changes)
        })
}

/// Text to put somewhere it does not belong.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ \"#/\\\\{};=()\n*-]{1,4}",
        1 => Just("/*".to_string()),
        1 => Just("\"".to_string()),
        1 => Just("{".repeat(40)),
        1 => Just("\u{FEFF}".to_string()),
        1 => Just("\u{0}".to_string()),
        1 => (1usize..2000).prop_map(|n| "=".repeat(n)),
    ]
}

/// `text` with each `(at, junk)` inserted at a character boundary.
fn change(mut text: String, changes: &[(prop::sample::Index, String)]) -> String {
    for (at, junk) in changes {
        let mut at = at.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, junk);
    }
    text
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn kdl_reader(text in kdl_document()) {
        check_pipeline(text, Format::Kdl)?;
    }
}

// ---- generated TOML ------------------------------------------------------------

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => text_value().prop_map(|s| format!("{s:?}")),
        2 => any::<i32>().prop_map(|i| i.to_string()),
        1 => Just("true".to_string()),
        1 => Just("1979-05-27".to_string()),
        1 => Just("[\"a\", 1]".to_string()),
        1 => Just("{ a = 1 }".to_string()),
        1 => (25usize..40).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
    ]
}

fn toml_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => property_name(),
        4 => node_name().prop_filter("a TOML key", |n| !n.contains(['(', '"'])),
        1 => (2usize..40).prop_map(|n| vec!["k"; n].join(".")),
        1 => Just("\"quoted key\"".to_string()),
    ]
}

/// A table: a header of a collection and a name (sometimes an array of
/// tables, sometimes deep), then keys.
fn toml_table() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "[container.web]",
            "[container.db]",
            "[network.lan]",
            "[image.debian]",
            "[template.base]",
            "[[container.web.forward]]",
            "[[container.web.bind]]",
            "[host]",
            "[tunnel.site-b]",
        ]),
        prop::collection::vec((toml_key(), toml_value()), 0..6),
        prop_oneof![8 => Just(String::new()), 1 => (28usize..40).prop_map(|n| format!("[{}]\n", vec!["t"; n].join(".")))],
    )
        .prop_map(|(header, keys, deep)| {
            let mut out = format!("{deep}{header}\n");
            for (key, value) in keys {
                out.push_str(&format!("{key} = {value}\n"));
            }
            out
        })
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn toml_reader(
        tables in prop::collection::vec(toml_table(), 0..8),
        changes in prop::collection::vec((any::<prop::sample::Index>(), junk()), 0..2),
    ) {
        check_pipeline(change(tables.concat(), &changes), Format::Toml)?;
    }
}

// ---- generated hosts for the validator ---------------------------------------

/// Names from a small pool, so that definitions collide and references
/// sometimes resolve; some invalid.
fn pool_name() -> impl Strategy<Value = String> {
    let long = "n".repeat(70);
    let names = ["a", "b", "c", "web", "-x", "a..b", &long];
    prop::sample::select(names.map(str::to_string).to_vec())
}

fn subnet() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "10.0.0.1/24",
        "10.0.0.1/16",
        "10.0.1.1/24",
        "10.0.0.0/24",
        "10.0.0.1/31",
        "fd00::1/64",
        "fd00::1/48",
        "fd00:0:0:1::1/64",
        "x",
    ])
    .prop_map(str::to_string)
}

/// One definition of a host file, valid in its syntax, with values that
/// often break the rules of meaning.
fn definition() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => (pool_name(), text_value()).prop_map(|(n, path)| {
            format!("image {n:?} {{\n    directory {:?}\n}}\n", format!("/{path}"))
        }),
        1 => (pool_name(), pool_name(), prop::option::of(subnet()), prop::option::of(subnet()))
            .prop_map(|(n, bridge, v4, v6)| {
                let mut out = format!("network {n:?} {{\n    bridge \"br-{bridge}\"\n");
                if let Some(v4) = v4 {
                    out.push_str(&format!("    ipv4 {v4:?} {{ nat; }}\n"));
                }
                if let Some(v6) = v6 {
                    out.push_str(&format!("    ipv6 {v6:?}\n"));
                }
                out.push_str("}\n");
                out
            }),
        1 => (pool_name(), prop::option::of(pool_name()), prop::collection::vec(text_value(), 0..3), any::<u16>())
            .prop_map(|(n, from, packages, settings)| container_like("template", &n, from, &packages, settings)),
        3 => (pool_name(), prop::option::of(pool_name()), prop::collection::vec(text_value(), 0..3), any::<u16>())
            .prop_map(|(n, from, packages, settings)| container_like("container", &n, from, &packages, settings)),
        1 => Just("host \"h\" {\n    uplink \"eth0\"\n}\n".to_string()),
        1 => (pool_name(), subnet()).prop_map(|(n, a)| {
            format!("tunnel \"t-{n}\" {{\n    gre local=\"192.0.2.1\" remote=\"192.0.2.2\"\n    address {a:?}\n}}\n")
        }),
    ]
}

/// A container or template; each bit of `settings` adds a setting, the
/// high bits make some of them break a rule.
fn container_like(
    kind: &str,
    name: &str,
    from: Option<String>,
    packages: &[String],
    settings: u16,
) -> String {
    let on = |bit: u16| settings & (1 << bit) != 0;
    let mut out = format!("{kind} {name:?} {{\n");
    match from {
        Some(from) => out.push_str(&format!("    from {from:?}\n")),
        None => out.push_str("    image \"a\"\n"),
    }
    let lines = [
        (
            "    network \"a\"\n",
            "    network \"a\" ipv4=\"10.0.0.7\"\n",
        ),
        (
            "    forward \"tcp\" host=8080 container=80\n",
            "    forward \"tcp\" host=0 container=80\n",
        ),
        (
            "    bind \"/srv/a\" \"/data\"\n",
            "    bind \"/srv/a\" \"/sys/fs/cgroup/x\"\n",
        ),
        (
            "    limits memory=\"1G\" cpus=1\n",
            "    limits memory=\"8M\" cpus=0\n",
        ),
        (
            "    environment A=\"1\"\n",
            "    environment A=\"1\" A=\"2\"\n",
        ),
        (
            "    check tcp=80 timeout=\"30s\"\n",
            "    check tcp=80 timeout=\"99h\"\n",
        ),
        ("    docker\n", "    nested\n"),
    ];
    for (bit, (fine, broken)) in lines.iter().enumerate() {
        if on(bit as u16) {
            out.push_str(if on(bit as u16 + 8) { broken } else { fine });
        }
    }
    if !packages.is_empty() {
        let list: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
        out.push_str(&format!("    packages {}\n", list.join(" ")));
    }
    out.push_str("}\n");
    out
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn validator(definitions in prop::collection::vec(definition(), 0..12)) {
        check_pipeline(definitions.concat(), Format::Kdl)?;
    }
}

/// The validator's generator makes valid hosts too, so that compiling is
/// fuzzed as well: counted on a fixed seed.
#[test]
fn the_validator_generator_makes_some_valid_hosts() {
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        config(300),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let valid = std::cell::Cell::new(0);
    runner
        .run(&prop::collection::vec(definition(), 1..6), |definitions| {
            let text = definitions.concat();
            if pipeline(&text, Format::Kdl)
                .map_err(TestCaseError::fail)?
                .is_empty()
            {
                valid.set(valid.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    eprintln!("validator generator: {} of 300 hosts valid", valid.get());
    assert!(valid.get() >= 10, "only {} valid hosts", valid.get());
}

/// The synthetic hosts, changed at random places: valid structure with
/// hostile breaks in it.
#[test]
fn validator_on_changed_synthetic_hosts() {
    let host = ctm::synthetic::host_kdl(40, 4, 2);
    let mut runner = proptest::test_runner::TestRunner::new(config(100));
    runner
        .run(
            &prop::collection::vec((any::<prop::sample::Index>(), junk()), 1..4),
            |changes| check_pipeline(change(host.clone(), &changes), Format::Kdl),
        )
        .unwrap();
}

// ---- the web editor's JSON bodies ----------------------------------------------

/// A JSON value of any shape, nested up to `depth`.
fn json_value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        text_value().prop_map(Value::from),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        1 => prop::collection::vec(json_value(depth - 1), 0..3).prop_map(Value::from),
        1 => prop::collection::vec(("[a-z]{1,6}", json_value(depth - 1)), 0..3)
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
    ]
    .boxed()
}

/// A request body: the fields the API reads, each with a value of the
/// right type or another, and the texts hostile; sometimes not JSON of
/// any use at all (nested 200 deep, beyond serde_json's limit of 128).
fn body() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        3 => kdl_document().prop_map(Value::from),
        1 => json_value(1),
    ];
    let field = |name: &'static str, value: BoxedStrategy<Value>| {
        prop::option::of(value).prop_map(move |v| v.map(|v| (name.to_string(), v)))
    };
    prop_oneof![
        8 => (
            field("text", text.boxed()),
            field("adopt", json_value(0)),
            field("kind", prop_oneof![Just(json!("network")), Just(json!("container")), json_value(0)].boxed()),
            field("name", json_value(0)),
            field("values", json_value(2)),
        )
            .prop_map(|(a, b, c, d, e)| {
                Value::Object([a, b, c, d, e].into_iter().flatten().collect()).to_string()
            }),
        1 => (100usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => "\\PC{0,20}",
    ]
}

/// The endpoints that read a body through ctm's readers (`POST /api/edit`
/// hands its text to the `kdl` crate only once
/// `config::kdl::check_for_kdl_crate` has passed it).
const ENDPOINTS: [&str; 4] = ["/api/validate", "/api/plan", "/api/edit/read", "/api/edit"];

#[test]
fn web_json_bodies() {
    let (dir, host) = scratch_example("homelab.kdl");
    let web = Config {
        host_file: Some(host),
        fleet: None,
        root: dir.path().join("root"),
        resources: Box::new(ctm::backend::cgroups::NoResources),
        journal: Box::new(NoJournal),
        files_only_reason: None,
        allow_files_only: false,
        system: None,
    };
    let (state, _) = AppState::new(web).unwrap();
    let token = state.auth.token().to_string();
    let app = ctm::web::router(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(config(200));
    runner
        .run(
            &(prop::sample::select(ENDPOINTS.to_vec()), body()),
            |(path, body)| {
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let app = app.clone();
                let (status, answer) = runtime.block_on(async move {
                    let response = app.oneshot(request).await.unwrap();
                    let status = response.status();
                    let bytes = response.into_body().collect().await.unwrap().to_bytes();
                    (status, String::from_utf8_lossy(&bytes).into_owned())
                });
                prop_assert!(
                    matches!(
                        status,
                        StatusCode::OK
                            | StatusCode::BAD_REQUEST
                            | StatusCode::UNPROCESSABLE_ENTITY
                            | StatusCode::CONFLICT
                    ),
                    "{path} {body:.200}: {status} {answer:.500}"
                );
                if status == StatusCode::OK {
                    serde_json::from_str::<Value>(&answer)
                        .map_err(|e| TestCaseError::fail(format!("{path}: not JSON ({e})")))?;
                }
                Ok(())
            },
        )
        .unwrap();
}

// ---- the corpus --------------------------------------------------------------------

/// Inputs kept in `tests/fuzz-corpus/`: each is read like a generated one.
#[test]
fn the_corpus_is_read_safely() {
    let dir = repo().join("tests/fuzz-corpus");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl" || e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "only {} inputs", paths.len());
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let format = Format::from_path(&path);
        let name = path.display().to_string();
        match config::text_from_bytes(bytes, config::MAX_SIZE_CLI) {
            Ok(text) => check_pipeline(text, format).unwrap_or_else(|e| panic!("{name}: {e}")),
            Err(rejected) => {
                check_diagnostics(&rejected.shown, &[rejected.diagnostic])
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}
