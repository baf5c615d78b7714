//! JSON Schema of the TOML form, generated from the vocabulary.
//!
//! Editors (taplo, VS Code's Even Better TOML) use it for completion and
//! checking. It follows the same mapping rules as `config::toml`, so what
//! the schema accepts is what ctm parses. `schema/ctm.schema.json` (the
//! host file) and `schema/fleet.schema.json` (the fleet file) are this
//! output, committed; a test fails when they differ.

use serde_json::{Map, Value, json};

use crate::config::vocab::{self, ChildSpec, NodeSpec, ValueKind};

/// A language ctm reads, and the schema of its TOML form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// The host file: `schema/ctm.schema.json`.
    Host,
    /// The fleet file: `schema/fleet.schema.json`.
    Fleet,
}

impl Language {
    fn root(self) -> &'static NodeSpec {
        match self {
            Language::Host => &vocab::ROOT,
            Language::Fleet => &vocab::FLEET,
        }
    }

    fn id_and_title(self) -> (&'static str, &'static str) {
        match self {
            Language::Host => ("ctm.schema.json", "ctm host file (TOML form)"),
            Language::Fleet => ("fleet.schema.json", "ctm fleet file (TOML form)"),
        }
    }
}

pub fn schema_of(language: Language) -> Value {
    let mut root = table(language.root(), 0);
    let (id, title) = language.id_and_title();
    if let Value::Object(map) = &mut root {
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        map.insert("$id".into(), json!(format!("https://ctm.invalid/{id}")));
        map.insert("title".into(), json!(title));
    }
    root
}

/// Pretty JSON with a final newline, as committed.
pub fn render() -> String {
    render_of(Language::Host)
}

/// [`render`] for either language.
pub fn render_of(language: Language) -> String {
    let mut text =
        serde_json::to_string_pretty(&schema_of(language)).expect("a JSON value always serializes");
    text.push('\n');
    text
}

fn scalar(kind: ValueKind) -> Value {
    match kind {
        ValueKind::String => json!({ "type": "string" }),
        ValueKind::Integer => json!({ "type": "integer" }),
        ValueKind::Number => json!({ "type": "number" }),
        ValueKind::Bool => json!({ "type": "boolean" }),
    }
}

fn described(mut schema: Value, doc: &str) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("description".into(), json!(doc));
    }
    schema
}

/// The table form of a node; `skip_args` leaves out a keyed node's name.
fn table(spec: &NodeSpec, skip_args: usize) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for arg in spec.args.iter().skip(skip_args) {
        let value = if arg.variadic {
            json!({ "type": "array", "items": scalar(arg.kind) })
        } else {
            scalar(arg.kind)
        };
        properties.insert(arg.name.into(), described(value, arg.doc));
        if arg.required {
            required.push(json!(arg.name));
        }
    }
    for prop in spec.props {
        properties.insert(prop.name.into(), described(scalar(prop.kind), prop.doc));
        if prop.required {
            required.push(json!(prop.name));
        }
    }
    for child in spec.children {
        properties.insert(child.spec.name.into(), child_value(child));
        if child.required {
            required.push(json!(child.spec.name));
        }
    }
    let mut map = Map::new();
    map.insert("type".into(), json!("object"));
    if !spec.doc.is_empty() {
        map.insert("description".into(), json!(spec.doc));
    }
    map.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        map.insert("required".into(), Value::Array(required));
    }
    map.insert(
        "additionalProperties".into(),
        match spec.any_props {
            Some(kind) => scalar(kind),
            None => json!(false),
        },
    );
    Value::Object(map)
}

/// How a node is written as a value: a flag is a boolean; a node with an
/// argument may be written as that argument alone; otherwise a table.
fn node_value(spec: &NodeSpec) -> Value {
    if spec.is_flag() {
        return described(json!({ "type": "boolean" }), spec.doc);
    }
    let table = table(spec, 0);
    match spec.args.first() {
        Some(arg) => {
            let short = if arg.variadic {
                json!({ "type": "array", "items": scalar(arg.kind) })
            } else {
                scalar(arg.kind)
            };
            described(json!({ "anyOf": [short, table] }), spec.doc)
        }
        None => table,
    }
}

fn child_value(child: &ChildSpec) -> Value {
    let spec = child.spec;
    if spec.keyed {
        return described(
            json!({ "type": "object", "additionalProperties": table(spec, 1) }),
            spec.doc,
        );
    }
    let single = node_value(spec);
    let variadic = spec.args.first().is_some_and(|a| a.variadic);
    if child.repeat && !variadic {
        described(
            json!({ "anyOf": [single, { "type": "array", "items": single }] }),
            spec.doc,
        )
    } else {
        single
    }
}
