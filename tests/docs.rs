//! docs/config.md is held to the vocabulary: every node ctm understands has
//! a section there, every argument and property is named in it, and every
//! example in it is written in the language ctm actually parses.

use std::path::PathBuf;

use ctm::config::vocab;
use ctm::config::{self, Format, Source};

fn config_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/config.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The heading a node path must have: `## \`container\``,
/// `### \`container\` → \`forward\``, one `#` more per level.
fn heading_for(path: &[&str]) -> String {
    let names: Vec<String> = path.iter().map(|n| format!("`{n}`")).collect();
    format!("{} {}", "#".repeat(path.len() + 1), names.join(" → "))
}

/// One line of the document, and the heading level it opens (if any).
/// Lines inside fenced code blocks are never headings: a TOML comment
/// starts with `#` too.
fn lines_with_levels(text: &str) -> Vec<(&str, Option<usize>)> {
    let mut in_fence = false;
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return (line, None);
            }
            if in_fence {
                return (line, None);
            }
            let hashes = line.chars().take_while(|c| *c == '#').count();
            let is_heading = hashes > 0 && line[hashes..].starts_with(' ');
            (line, is_heading.then_some(hashes))
        })
        .collect()
}

/// The text under `heading`, up to the next heading of the same or a
/// higher level (fewer `#`). `None` if the heading is not there.
fn section<'a>(lines: &[(&'a str, Option<usize>)], heading: &str) -> Option<Vec<&'a str>> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = lines
        .iter()
        .position(|(line, l)| l.is_some() && line.trim_end() == heading)?;
    let body = lines[start + 1..]
        .iter()
        .take_while(|(_, l)| l.is_none_or(|l| l > level))
        .map(|(line, _)| *line)
        .collect();
    Some(body)
}

/// The section's own text, before its first subheading.
fn own_text<'a>(lines: &[(&'a str, Option<usize>)], heading: &str) -> Option<Vec<&'a str>> {
    let start = lines
        .iter()
        .position(|(line, l)| l.is_some() && line.trim_end() == heading)?;
    let body = lines[start + 1..]
        .iter()
        .take_while(|(_, l)| l.is_none())
        .map(|(line, _)| *line)
        .collect();
    Some(body)
}

fn path_name(path: &[&str]) -> String {
    path.join(" → ")
}

/// What `doc` (under docs/) does not say of the language `walked`: a
/// node without its heading, an argument or property not named in it.
fn uncovered(doc: &str, walked: &[(Vec<&'static str>, &'static vocab::NodeSpec)]) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(doc);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines = lines_with_levels(&text);
    let mut missing = Vec::new();
    assert!(!walked.is_empty(), "the vocabulary has no nodes");
    for (path, spec) in walked {
        let heading = heading_for(path);
        let Some(body) = section(&lines, &heading) else {
            missing.push(format!(
                "node `{}`: no heading `{heading}` in docs/{doc}",
                path_name(path)
            ));
            continue;
        };
        let body = body.join("\n");
        let names = spec
            .args
            .iter()
            .map(|a| ("argument", a.name))
            .chain(spec.props.iter().map(|p| ("property", p.name)));
        for (what, name) in names {
            let quoted = format!("`{name}`");
            if !body.contains(&quoted) {
                missing.push(format!(
                    "node `{}`: {what} {quoted} is not named (in backticks) in the section under `{heading}`",
                    path_name(path)
                ));
            }
        }
    }
    missing
}

#[test]
fn every_node_argument_and_property_is_documented() {
    let missing = uncovered("config.md", &vocab::walk());
    assert!(
        missing.is_empty(),
        "docs/config.md does not cover the vocabulary:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_node_of_the_fleet_file_is_documented() {
    let missing = uncovered("fleet.md", &vocab::walk_from(&vocab::FLEET));
    assert!(
        missing.is_empty(),
        "docs/fleet.md does not cover the fleet file's vocabulary:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_node_section_has_a_kdl_and_a_toml_example() {
    let text = config_md();
    let lines = lines_with_levels(&text);
    let mut missing = Vec::new();
    for (path, _) in vocab::walk() {
        let heading = heading_for(&path);
        // A missing heading is reported by the test above.
        let Some(body) = own_text(&lines, &heading) else {
            continue;
        };
        for lang in ["kdl", "toml"] {
            let fence = format!("```{lang}");
            if !body.iter().any(|l| l.trim_end() == fence) {
                missing.push(format!(
                    "node `{}`: no {fence} example directly under `{heading}`",
                    path_name(&path)
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/config.md lacks examples:\n  {}",
        missing.join("\n  ")
    );
}

/// A fenced code block: its language, the line it starts on, its text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn code_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match current.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    current = Some(Block {
                        lang: info.trim().to_string(),
                        line: number + 1,
                        text: String::new(),
                    });
                }
            }
            Some(mut block) => {
                if trimmed.starts_with("```") {
                    blocks.push(block);
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                    current = Some(block);
                }
            }
        }
    }
    assert!(
        current.is_none(),
        "docs/config.md has a code block that is never closed"
    );
    blocks
}

fn top_level_names() -> Vec<&'static str> {
    vocab::ROOT.children.iter().map(|c| c.spec.name).collect()
}

/// The first word of a KDL snippet, skipping blank lines and comments.
fn first_kdl_node(text: &str) -> Option<&str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("//"))?;
    line.split(|c: char| c.is_whitespace() || c == '{' || c == ';')
        .next()
}

/// The top-level key a TOML snippet starts with: `[container.web]` and
/// `[[container.web.forward]]` give `container`, `uplink = …` gives `uplink`.
fn first_toml_key(text: &str) -> Option<&str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let key = line.trim_start_matches('[');
    key.split(|c: char| c == '.' || c == ']' || c == '=' || c.is_whitespace())
        .next()
}

/// Codes that a partial snippet can never excuse: the text is not KDL or
/// TOML, or it names something ctm does not know, or a value has the
/// wrong type or is one too many.
const STRUCTURAL: &[&str] = &[
    "ctm::kdl-syntax",
    "ctm::toml-syntax",
    "ctm::unknown-node",
    "ctm::unknown-property",
    "ctm::wrong-type",
    "ctm::extra-argument",
];

fn check_blocks(lang: &str, format: Format, first: fn(&str) -> Option<&str>) {
    let text = config_md();
    let top = top_level_names();
    let mut checked = 0;
    let mut problems = Vec::new();
    for block in code_blocks(&text).iter().filter(|b| b.lang == lang) {
        let Some(word) = first(&block.text) else {
            continue;
        };
        if !top.contains(&word) {
            continue;
        }
        checked += 1;
        let name = format!("docs/config.md:{}", block.line);
        let source = Source::new(name.clone(), block.text.clone(), format);
        let (_, diagnostics) = config::parse(&source);
        for d in diagnostics.iter().filter(|d| STRUCTURAL.contains(&d.code)) {
            let at = d.span.offset().min(block.text.len());
            let snippet: String = block.text[at..].chars().take(40).collect();
            problems.push(format!(
                "```{lang} block at {name}: {} {} (at {:?})",
                d.code, d.message, snippet
            ));
        }
    }
    assert!(
        checked > 0,
        "no ```{lang} block in docs/config.md starts with a top-level node"
    );
    assert!(
        problems.is_empty(),
        "examples in docs/config.md do not parse:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn kdl_examples_parse() {
    check_blocks("kdl", Format::Kdl, first_kdl_node);
}

#[test]
fn toml_examples_parse() {
    check_blocks("toml", Format::Toml, first_toml_key);
}

#[test]
fn headings_name_only_known_nodes() {
    // A heading in the node style for a path the vocabulary does not have
    // is a stale section (a node renamed or removed).
    let text = config_md();
    let known: Vec<String> = vocab::walk()
        .iter()
        .map(|(path, _)| heading_for(path))
        .collect();
    let stale: Vec<String> = lines_with_levels(&text)
        .iter()
        .filter(|(line, level)| {
            level.is_some() && line.trim_start_matches('#').trim_start().starts_with('`')
        })
        .map(|(line, _)| line.trim_end().to_string())
        .filter(|line| !known.contains(line))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/config.md has node headings the vocabulary does not know:\n  {}",
        stale.join("\n  ")
    );
}
