//! KDL 2.0 front-end: text → [`Document`].
//!
//! Host files are read by ctm's own reader, [`super::kdl_fast`], which
//! reports syntax errors itself. The `kdl` crate is kept as the reference
//! the reader is tested against ([`parse_with_kdl_crate`]) and as the
//! comment-keeping model the web editor edits; it is never given a host
//! file to read here, because on hostile text it overflows the stack or
//! takes exponential time (see [`super::kdl_fast`]).

use ::kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::kdl_fast::{null_value, type_annotation};
use super::{Document, Node, Spanned, Value, join_spans};
use crate::diagnostic::Diagnostic;

pub fn parse(text: &str) -> (Document, Vec<Diagnostic>) {
    super::kdl_fast::read(text)
}

/// The most pieces one `/* */` comment may have for the `kdl` crate: it
/// recurses once per piece, with about 4 KB of stack each in a debug
/// build (0.5 KB optimized).
pub const MAX_COMMENT_PIECES: usize = 256;

/// The most slashdashed child blocks (`/-{ … }`) nested in one another
/// for the `kdl` crate, which reads each twice for each one around it:
/// 2⁶ times the inner one at most.
pub const MAX_SLASHDASHED_BLOCKS: usize = 6;

/// Whether the `kdl` crate may be given `text` (the web editor edits a
/// host file through its document model): ctm's reader reads it without
/// a syntax error, so the crate's error recovery never runs and the text
/// nests at most [`super::MAX_DEPTH`] deep, and its comments and
/// slashdashed blocks are within [`MAX_COMMENT_PIECES`] and
/// [`MAX_SLASHDASHED_BLOCKS`]. The crate reads the worst such text within
/// 2 MiB of stack in a debug build (tests/kdl_reader.rs gives it 4 MiB),
/// far less optimized; a text that fails this check can need any amount.
pub fn check_for_kdl_crate(text: &str) -> Result<(), Box<Diagnostic>> {
    let (_, diagnostics, measures) = super::kdl_fast::read_measured(text);
    if let Some(error) = diagnostics
        .into_iter()
        .find(|d| matches!(d.code, "ctm::kdl-syntax" | "ctm::too-deep"))
    {
        return Err(Box::new(error));
    }
    if measures.comment_pieces > MAX_COMMENT_PIECES {
        return Err(Box::new(
            Diagnostic::error(
                "ctm::kdl-too-complex",
                format!(
                    "a `/* */` comment has more than {MAX_COMMENT_PIECES} `*`, `/` and runs of text between them"
                ),
                measures.comment,
            )
            .with_label("this comment")
            .with_help("comment out with `//` or `/-` instead, and edit then"),
        ));
    }
    if measures.slashdashed_blocks > MAX_SLASHDASHED_BLOCKS {
        return Err(Box::new(
            Diagnostic::error(
                "ctm::kdl-too-complex",
                format!(
                    "more than {MAX_SLASHDASHED_BLOCKS} slashdashed child blocks (`/-{{ … }}`) are nested in one another"
                ),
                measures.slashdashed_block,
            )
            .with_label("the innermost one")
            .with_help("remove the slashdashed blocks inside slashdashed blocks, and edit then"),
        ));
    }
    Ok(())
}

/// The reference path: the `kdl` crate's parser, then conversion, for the
/// tests that hold ctm's reader to it and for the benchmarks. Only for
/// trusted text of bounded size: the crate's recursion is not bounded.
pub fn parse_with_kdl_crate(text: &str) -> (Document, Vec<Diagnostic>) {
    match KdlDocument::parse(text) {
        Ok(doc) => {
            let mut diagnostics = Vec::new();
            let nodes = doc
                .nodes()
                .iter()
                .map(|n| convert_node(text, n, &mut diagnostics))
                .collect();
            (Document { nodes }, diagnostics)
        }
        Err(error) => {
            let diagnostics = error
                .diagnostics
                .iter()
                .map(|d| {
                    let mut diagnostic = Diagnostic::error(
                        "ctm::kdl-syntax",
                        d.message
                            .clone()
                            .unwrap_or_else(|| "invalid KDL syntax".to_string()),
                        narrow(text, clamp(d.span, text.len())),
                    )
                    .with_label(d.label.clone().unwrap_or_else(|| "here".to_string()));
                    if let Some(help) = &d.help {
                        diagnostic = diagnostic.with_help(help.clone());
                    }
                    diagnostic
                })
                .collect();
            (Document::default(), diagnostics)
        }
    }
}

fn clamp(span: SourceSpan, len: usize) -> SourceSpan {
    let offset = span.offset().min(len);
    SourceSpan::new(offset.into(), span.len().min(len - offset))
}

/// Narrows the kdl crate's fallback span to its last non-blank character.
/// For an error without a span of its own (a property without a value, an
/// integer too large) the crate reports the span from the start of the
/// file to where parsing stopped; the place to point at is that end. Other
/// spans, including those that rightly cover several lines (the nodes of
/// an unclosed block), are kept.
fn narrow(text: &str, span: SourceSpan) -> SourceSpan {
    let Some(covered) = text.get(..span.len()).map(str::trim_end) else {
        return span;
    };
    match covered.chars().next_back() {
        Some(last) if span.offset() == 0 && covered.contains('\n') => {
            SourceSpan::new((covered.len() - last.len_utf8()).into(), last.len_utf8())
        }
        _ => span,
    }
}

fn convert_node(text: &str, node: &KdlNode, out: &mut Vec<Diagnostic>) -> Node {
    let name = Spanned::new(node.name().value().to_string(), node.name().span());
    if let Some(ty) = node.ty() {
        out.push(type_annotation(ty.span()));
    }
    let mut span = name.span;
    let mut args = Vec::new();
    let mut props = Vec::new();
    for entry in node.entries() {
        let value_span = value_span(text, entry);
        span = join_spans(span, value_span);
        if let Some(ty) = entry.ty() {
            out.push(type_annotation(ty.span()));
        }
        let value = Spanned::new(convert_value(entry.value(), value_span, out), value_span);
        match entry.name() {
            Some(key) => props.push((Spanned::new(key.value().to_string(), key.span()), value)),
            None => args.push(value),
        }
    }
    let children = node
        .children()
        .map(|doc| {
            doc.nodes()
                .iter()
                .map(|n| convert_node(text, n, out))
                .collect()
        })
        .unwrap_or_default();
    Node {
        name,
        args,
        props,
        children,
        span,
    }
}

/// `#null` is reported here and kept as [`Value::Invalid`], so that a
/// required value written as `#null` is not also reported as missing.
fn convert_value(value: &KdlValue, span: SourceSpan, out: &mut Vec<Diagnostic>) -> Value {
    match value {
        KdlValue::String(s) => Value::String(s.clone()),
        KdlValue::Integer(i) => Value::Integer(*i),
        KdlValue::Float(f) => Value::Float(*f),
        KdlValue::Bool(b) => Value::Bool(*b),
        KdlValue::Null => {
            out.push(null_value(span));
            Value::Invalid
        }
    }
}

/// The span of just the value, without the surrounding whitespace and
/// comments the parser includes in an entry's span, and without `key=`.
fn value_span(text: &str, entry: &KdlEntry) -> SourceSpan {
    let span = entry.span();
    let start = span.offset().min(text.len());
    let end = (start + span.len()).min(text.len());
    let Some(slice) = text.get(start..end) else {
        return span;
    };
    let after_key = match entry.name() {
        Some(key) => {
            let key_end = key.span().offset() + key.span().len();
            let rel = key_end.saturating_sub(start).min(slice.len());
            match slice[rel..].find('=') {
                Some(eq) => rel + eq + 1,
                None => rel,
            }
        }
        None => 0,
    };
    let repr = entry
        .format()
        .map(|f| f.value_repr.trim())
        .filter(|r| !r.is_empty());
    let found = repr.and_then(|repr| {
        slice
            .get(after_key..)
            .and_then(|rest| rest.find(repr))
            .map(|pos| (after_key + pos, repr.len()))
    });
    match found {
        Some((pos, len)) => SourceSpan::new((start + pos).into(), len),
        None => {
            let rest = slice.get(after_key..).unwrap_or("");
            let trimmed = rest.trim_start();
            let lead = rest.len() - trimmed.len();
            let len = trimmed.trim_end().len();
            SourceSpan::new((start + after_key + lead).into(), len)
        }
    }
}
