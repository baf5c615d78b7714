//! The editor's forms give back what they were given: loading a network
//! or container into its form and putting it back unchanged leaves the
//! host file byte for byte as it was, comments, spacing and shorthand
//! included. Checked over every example and every KDL and TOML block of
//! docs/ (the texts users start from), for each network and container in
//! them; and over generated variations of one host file's layout.

mod support;

use ctm::config::{self, Format, Source};
use ctm::engine::edit::{self, Edit, Kind};
use proptest::prelude::*;
use support::repo;

/// Every text to check: (where it is, its format, the text).
fn texts() -> Vec<(String, Format, String)> {
    let mut out = Vec::new();
    let mut examples: Vec<_> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    for path in examples {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("kdl") => Format::Kdl,
            Some("toml") => Format::Toml,
            _ => continue,
        };
        out.push((
            path.display().to_string(),
            format,
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    let mut docs: Vec<_> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for path in docs {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut block: Option<(usize, Format, String)> = None;
        for (number, line) in text.lines().enumerate() {
            let fence = line.trim_start().strip_prefix("```");
            match (block.take(), fence) {
                (None, Some(info)) => {
                    let format = match info.trim() {
                        "kdl" => Some(Format::Kdl),
                        "toml" => Some(Format::Toml),
                        _ => None,
                    };
                    // Other languages' blocks are skipped whole.
                    block = Some((number + 1, format.unwrap_or(Format::Kdl), String::new()));
                    if format.is_none() {
                        block.as_mut().unwrap().0 = 0;
                    }
                }
                (None, None) => {}
                (Some((start, format, body)), Some(_)) => {
                    if start > 0 {
                        out.push((format!("{}:{start}", path.display()), format, body));
                    }
                }
                (Some((start, format, mut body)), None) => {
                    body.push_str(line);
                    body.push('\n');
                    block = Some((start, format, body));
                }
            }
        }
    }
    out
}

/// The text with each network and container loaded and put back
/// unchanged, one at a time; the first difference found, if any.
fn round_trip(what: &str, format: Format, text: &str) -> Result<usize, String> {
    let (_, diagnostics) = config::parse(&Source::new("host", text, format));
    if diagnostics
        .iter()
        .any(|d| d.code == "ctm::kdl-syntax" || d.code == "ctm::toml-syntax")
    {
        return Ok(0);
    }
    let mut checked = 0;
    for (kind, kind_name) in [(Kind::Network, "network"), (Kind::Container, "container")] {
        let names = edit::read(text, format, kind, "")?["names"].clone();
        for name in names.as_array().unwrap() {
            let name = name.as_str().unwrap();
            let values = edit::read(text, format, kind, name)?["form"].clone();
            let edit: Edit = serde_json::from_value(serde_json::json!({
                "kind": kind_name,
                "values": values,
            }))
            .map_err(|e| format!("{what}: the form of {name} does not read back: {e}"))?;
            let out = edit::apply(text, format, &edit)?;
            if out != text {
                return Err(format!(
                    "{what}: putting {name} back unchanged changed the text:\n{}",
                    similar::TextDiff::from_lines(text, &out)
                        .unified_diff()
                        .header("before", "after")
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn an_unchanged_form_gives_back_the_file_byte_for_byte() {
    let mut problems = Vec::new();
    let (mut texts_checked, mut forms) = (0, 0);
    for (what, format, text) in texts() {
        match round_trip(&what, format, &text) {
            Ok(0) => {}
            Ok(n) => {
                texts_checked += 1;
                forms += n;
            }
            Err(e) => problems.push(e),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The examples alone have more than this many.
    assert!(
        texts_checked >= 20 && forms >= 40,
        "{texts_checked} texts, {forms} forms"
    );
}

const HOST: &str = r#"network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24" {
        nat
    }
}

container "web" {
    from "base"
    image "guest"
    network "lan" ipv4="10.42.0.10"
    forward "tcp" host=8080 container=80
    forward "udp" host=5353 container=53
    bind "/srv/www" "/var/www" read-only=#true
    bind "/srv/shared"
    limits memory="1G" cpus=1.5
    environment TZ="Etc/UTC" LANG="C.UTF-8"
    autostart #false
    docker
    ssh {
        user "deploy"
        authorized-key "ssh-ed25519 AAAA me@laptop"
    }
}
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Comments after any line, and any spacing between values and before
    /// them, survive an unchanged form.
    #[test]
    fn comments_and_spacing_survive_an_unchanged_form(
        comments in proptest::collection::vec(proptest::option::of("[a-z ]{0,12}"), 32),
        spaces in proptest::collection::vec(1usize..6, 32),
    ) {
        let mut text = String::new();
        for (i, line) in HOST.lines().enumerate() {
            let sp = " ".repeat(spaces[i]);
            let indent = line.len() - line.trim_start().len();
            let (lead, body) = line.split_at(indent);
            text.push_str(lead);
            // More room between a node's name and its values.
            match body.split_once(' ') {
                Some((head, rest)) => text.push_str(&format!("{head}{sp}{rest}")),
                None => text.push_str(body),
            }
            if let Some(comment) = &comments[i] && !line.is_empty() {
                text.push_str(&format!("{sp}// {comment}"));
            }
            text.push('\n');
        }
        prop_assert!(round_trip("generated", Format::Kdl, &text).map_err(TestCaseError::fail)? == 2);
    }
}
