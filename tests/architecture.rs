//! The shape of the tree, checked: every `crate::` path in `src/` points
//! down the layers of docs/architecture.md, the two faces never use each
//! other, and no modules use each other in a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod support;

/// The layers, bottom first; a module may use its own layer's and the
/// ones below (docs/architecture.md says why each sits where it does).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &[
            "model",
            "diagnostic",
            "layout",
            "clock",
            "fault",
            "fs",
            "cores",
        ],
    ),
    ("reading", &["config", "lock", "schema"]),
    ("validation", &["validate"]),
    ("compilation", &["compile", "synthetic"]),
    ("decisions", &["live", "plan"]),
    ("outside systems", &["backend"]),
    ("mechanisms", &["state", "apply", "status"]),
    ("use cases", &["engine"]),
    ("faces", &["cli", "web"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/engine/apply.rs`
/// → `engine`); `None` for lib.rs and main.rs.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every module named by a `crate::NAME` path in the text, outside
/// comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `use crate::{a, b}` names several.
            if name.is_empty() && after.starts_with('{') {
                let inner = after[1..].split('}').next().unwrap_or("");
                for part in inner.split(',') {
                    let part: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !part.is_empty() {
                        found.insert(part);
                    }
                }
            } else if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

/// Who uses whom among the top-level modules of `src/`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = support::repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let used = uses(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = graph()
        .keys()
        .filter(|m| layer_of(m).is_none())
        .cloned()
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer (add them to LAYERS and docs/architecture.md): {unplaced:?}"
    );
}

#[test]
fn every_use_points_down_and_the_faces_stand_apart() {
    let mut upward = Vec::new();
    for (module, used) in graph() {
        let Some(from) = layer_of(&module) else {
            continue;
        };
        for target in used {
            let Some(to) = layer_of(&target) else {
                continue;
            };
            let faces = LAYERS.len() - 1;
            if to > from || (from == faces && to == faces) {
                upward.push(format!(
                    "{module} ({}) uses {target} ({})",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "uses that point up or across the faces:\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn no_modules_use_each_other_in_a_loop() {
    let graph = graph();
    // Depth-first search; a module met again while still on the path
    // closes a loop.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "modules that use each other in a loop: {}",
                cycle.join(" → ")
            );
        }
    }
}

#[test]
fn the_checker_sees_every_form_of_use() {
    let text = "use crate::plan::{Action, batches};\nuse crate::{fs, layout};\n\
                let x = crate::clock::now_unix(); // crate::web in a comment\n";
    assert_eq!(
        uses(text),
        BTreeSet::from(["plan", "fs", "layout", "clock"].map(String::from))
    );
}
