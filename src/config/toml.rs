//! TOML front-end: text → the same [`Document`] the KDL front-end builds.
//!
//! The mapping is driven by the vocabulary, so it holds for every node:
//! a named collection is a table of tables (`[container.web]`); a node's
//! arguments, properties and children are keys of its table; a node whose
//! only argument is given may be written as that value (`uplink = "eth0"`);
//! a variadic argument or a repeatable node is an array; a flag node is
//! `true`. Keys ctm does not know become nodes of their own, so the checker
//! reports them exactly as it reports unknown KDL nodes.

use miette::SourceSpan;
use toml::Spanned as TomlSpanned;
use toml::de::{DeTable, DeValue};

use super::vocab::{ChildSpec, NodeSpec, ValueKind};
use super::{Document, Node, Spanned, Value, join_spans};
use crate::diagnostic::Diagnostic;

/// Reads `text` as the TOML form of the language whose top is `root`
/// (`vocab::ROOT`, `vocab::FLEET`).
pub fn parse(text: &str, root: &NodeSpec) -> (Document, Vec<Diagnostic>) {
    match DeTable::parse(text) {
        Ok(table) => {
            let mut out = Vec::new();
            let mut parts = Parts::default();
            fill_from_table(table.get_ref(), root, &mut parts, &mut out);
            (
                Document {
                    nodes: parts.children,
                },
                out,
            )
        }
        Err(error) => {
            let span = error
                .span()
                .map_or_else(|| SourceSpan::new(0.into(), 0), span_of);
            let message = error.message().trim().to_string();
            (
                Document::default(),
                vec![
                    Diagnostic::error("ctm::toml-syntax", message, span)
                        .with_label("invalid TOML here"),
                ],
            )
        }
    }
}

fn span_of(range: std::ops::Range<usize>) -> SourceSpan {
    SourceSpan::new(range.start.into(), range.end - range.start)
}

fn spanned<T>(value: &TomlSpanned<T>) -> SourceSpan {
    span_of(value.span())
}

#[derive(Default)]
struct Parts {
    args: Vec<Spanned<Value>>,
    props: Vec<(Spanned<String>, Spanned<Value>)>,
    children: Vec<Node>,
}

/// Keys of `table` become the arguments, properties and children of a node
/// of kind `spec`. `parts.args` may already hold the name of a keyed node.
fn fill_from_table(
    table: &DeTable<'_>,
    spec: &NodeSpec,
    parts: &mut Parts,
    out: &mut Vec<Diagnostic>,
) {
    let first_free_arg = parts.args.len();
    let mut named_args: Vec<Option<(&TomlSpanned<DeValue<'_>>, SourceSpan)>> =
        vec![None; spec.args.len()];
    for (key, value) in table {
        let key_name: &str = key.get_ref();
        let key_span = spanned(key);
        if let Some(index) = spec
            .args
            .iter()
            .enumerate()
            .skip(first_free_arg)
            .position(|(_, a)| a.name == key_name)
        {
            named_args[first_free_arg + index] = Some((value, key_span));
        } else if let Some(prop) = spec.props.iter().find(|p| p.name == key_name) {
            let v = scalar(value, prop.kind, spec.name, prop.name, out);
            parts
                .props
                .push((Spanned::new(key_name.to_string(), key_span), v));
        } else if let Some(child) = spec.children.iter().find(|c| c.spec.name == key_name) {
            nodes_from_value(key_name, key_span, value, child, &mut parts.children, out);
        } else if let Some(kind) = spec.any_props {
            let v = scalar(value, kind, spec.name, key_name, out);
            parts
                .props
                .push((Spanned::new(key_name.to_string(), key_span), v));
        } else {
            // Unknown: let the checker report it like any unknown node.
            parts.children.push(Node {
                name: Spanned::new(key_name.to_string(), key_span),
                args: Vec::new(),
                props: Vec::new(),
                children: Vec::new(),
                span: join_spans(key_span, spanned(value)),
            });
        }
    }
    // Positional arguments go in order; one given after a gap cannot be
    // placed, and the checker reports the missing one.
    let mut gap: Option<&str> = None;
    for (index, slot) in named_args.into_iter().enumerate().skip(first_free_arg) {
        let arg = &spec.args[index];
        match (slot, gap) {
            (None, _) => gap = gap.or(Some(arg.name)),
            (Some((value, key_span)), Some(missing)) => out.push(
                Diagnostic::error(
                    "ctm::missing-value",
                    format!("`{}` is given without `{missing}`", arg.name),
                    key_span,
                )
                .with_label(format!("`{missing}` must be given too"))
                .with_related(spanned(value), "this value"),
            ),
            (Some((value, _)), None) => {
                push_arg(value, arg.kind, arg.variadic, spec, arg.name, parts, out)
            }
        }
    }
}

fn push_arg(
    value: &TomlSpanned<DeValue<'_>>,
    kind: ValueKind,
    variadic: bool,
    spec: &NodeSpec,
    what: &str,
    parts: &mut Parts,
    out: &mut Vec<Diagnostic>,
) {
    match (value.get_ref(), variadic) {
        (DeValue::Array(items), true) => {
            for item in items.iter() {
                parts.args.push(scalar(item, kind, spec.name, what, out));
            }
        }
        _ => {
            parts.args.push(scalar(value, kind, spec.name, what, out));
        }
    }
}

fn nodes_from_value(
    key: &str,
    key_span: SourceSpan,
    value: &TomlSpanned<DeValue<'_>>,
    child: &ChildSpec,
    nodes: &mut Vec<Node>,
    out: &mut Vec<Diagnostic>,
) {
    let spec = child.spec;
    if spec.keyed {
        let DeValue::Table(entries) = value.get_ref() else {
            out.push(
                Diagnostic::error(
                    "ctm::wrong-type",
                    format!("`{key}` must be a table of named {key}s"),
                    spanned(value),
                )
                .with_label("expected a table")
                .with_help(format!("write each one as its own table: [{key}.NAME]")),
            );
            return;
        };
        for (name, body) in entries {
            let name_arg = Spanned::new(Value::String(name.get_ref().to_string()), spanned(name));
            if let Some(node) = node_from_value(key, spanned(name), body, spec, Some(name_arg), out)
            {
                nodes.push(node);
            }
        }
        return;
    }
    let variadic = spec.args.first().is_some_and(|a| a.variadic);
    if let (DeValue::Array(items), true, false) = (value.get_ref(), child.repeat, variadic) {
        for item in items.iter() {
            if let Some(node) = node_from_value(key, key_span, item, spec, None, out) {
                nodes.push(node);
            }
        }
        return;
    }
    if let Some(node) = node_from_value(key, key_span, value, spec, None, out) {
        nodes.push(node);
    }
}

fn node_from_value(
    key: &str,
    key_span: SourceSpan,
    value: &TomlSpanned<DeValue<'_>>,
    spec: &NodeSpec,
    name_arg: Option<Spanned<Value>>,
    out: &mut Vec<Diagnostic>,
) -> Option<Node> {
    let mut parts = Parts::default();
    parts.args.extend(name_arg);
    let value_span = spanned(value);
    match value.get_ref() {
        DeValue::Table(table) => fill_from_table(table, spec, &mut parts, out),
        DeValue::Boolean(enabled) if spec.is_flag() => {
            if !enabled {
                return None;
            }
        }
        _ if spec.is_flag() => {
            out.push(
                Diagnostic::error(
                    "ctm::wrong-type",
                    format!("`{key}` must be a boolean"),
                    value_span,
                )
                .with_label("expected true or false")
                .with_help(format!("write `{key} = true` to turn it on")),
            );
            return None;
        }
        _ => match spec.args.get(parts.args.len()) {
            Some(arg) => push_arg(
                value,
                arg.kind,
                arg.variadic,
                spec,
                arg.name,
                &mut parts,
                out,
            ),
            None => {
                out.push(
                    Diagnostic::error(
                        "ctm::wrong-type",
                        format!("`{key}` must be a table"),
                        value_span,
                    )
                    .with_label("expected a table")
                    .with_help(format!("for example, in KDL: {}", spec.example)),
                );
                return None;
            }
        },
    }
    Some(Node {
        name: Spanned::new(key.to_string(), key_span),
        args: parts.args,
        props: parts.props,
        children: parts.children,
        span: join_spans(key_span, value_span),
    })
}

/// A scalar where one is expected; arrays, tables, dates and numbers out
/// of range are reported, and kept as [`Value::Invalid`] so that a required
/// value is not also reported as missing.
fn scalar(
    value: &TomlSpanned<DeValue<'_>>,
    kind: ValueKind,
    node: &str,
    what: &str,
    out: &mut Vec<Diagnostic>,
) -> Spanned<Value> {
    let span = spanned(value);
    let converted = match value.get_ref() {
        DeValue::String(s) => Some(Value::String(s.to_string())),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(Value::Integer),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok().map(Value::Float),
        DeValue::Boolean(b) => Some(Value::Bool(*b)),
        DeValue::Datetime(_) => None,
        DeValue::Array(_) => None,
        DeValue::Table(_) => None,
    };
    if converted.is_none() {
        let found = match value.get_ref() {
            DeValue::Datetime(_) => "a date",
            DeValue::Array(_) => "an array",
            DeValue::Table(_) => "a table",
            _ => "a number out of range",
        };
        out.push(
            Diagnostic::error(
                "ctm::wrong-type",
                format!(
                    "`{what}` of `{node}` must be {}, found {found}",
                    kind.description()
                ),
                span,
            )
            .with_label(format!("expected {}", kind.description())),
        );
    }
    Spanned::new(converted.unwrap_or(Value::Invalid), span)
}
