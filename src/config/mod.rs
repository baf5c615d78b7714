//! Stage 1: source text → one syntax tree with spans.
//!
//! Both front-ends ([`kdl`] and [`toml`]) produce the same [`Document`]: nodes
//! with positional arguments, properties and children, every piece carrying
//! the byte span it came from. Both check the text against the one
//! [`vocab`]ulary, so a host file means the same thing in either syntax and
//! every structural error (unknown node, wrong type, missing value, control
//! character) is reported the same way. Meaning is assigned later, by
//! `validate`.
//!
//! Input is bounded before it is read: a host file is at most
//! [`MAX_SIZE_CLI`] or [`MAX_SIZE_WEB`] bytes ([`text_from_bytes`], which
//! also reports invalid UTF-8 where it is) and nests at most [`MAX_DEPTH`]
//! levels deep, and the readers and checks take time linear in the text.

pub mod kdl;
pub mod kdl_fast;
pub mod toml;
pub mod vocab;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use miette::SourceSpan;

use crate::diagnostic::Diagnostic;
use vocab::{NodeSpec, ValueKind};

/// How deeply a host file may nest: child blocks in KDL; table-header
/// keys, dotted-key parts, arrays and inline tables in TOML. A real host
/// file needs three levels (`container` → `ssh` → `authorized-key`); the
/// limit keeps every reader's recursion, and the stack it needs, small.
pub const MAX_DEPTH: usize = 32;

/// The largest host file the command line reads by default: 16 MiB,
/// some 80,000 containers as people write them (a host of 1,000 is about
/// 200 KB) or 440,000 of one line each. Checking such a file takes about
/// 60 times its size in memory (a 50 MB file of one-line containers:
/// 3.0 GB), so the bound is on memory as much as on time;
/// `--max-file-size` raises it.
pub const MAX_SIZE_CLI: usize = 16 << 20;

/// The largest host file the web editor accepts: 4 MiB, about 20,000
/// containers. A server takes text from the network, so its bound is lower.
pub const MAX_SIZE_WEB: usize = 4 << 20;

/// Text that could not be read as a host file: the one diagnostic, and
/// the text to show it against (invalid bytes shown as `?`, so that every
/// offset is the file's own).
#[derive(Debug)]
pub struct Rejected {
    pub diagnostic: Diagnostic,
    pub shown: String,
}

/// A host file's bytes as text: at most `limit` bytes (a caller reading a
/// file may stop after `limit + 1`), and UTF-8, else one diagnostic at
/// the first byte that is not.
pub fn text_from_bytes(bytes: Vec<u8>, limit: usize) -> Result<String, Box<Rejected>> {
    if bytes.len() > limit {
        let size = if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
            format!("{} MiB", limit >> 20)
        } else {
            format!("{limit} bytes")
        };
        let diagnostic = Diagnostic::error(
            "ctm::too-large",
            format!("the host file is larger than {size}, the most ctm reads here"),
            SourceSpan::new(0.into(), 0),
        )
        .with_label("not read")
        .with_help(
            "a host of 1,000 containers is about 200 KB: is this the host file? \
             (on the command line, --max-file-size MIB reads a larger one)",
        );
        return Err(Box::new(Rejected {
            diagnostic,
            shown: String::new(),
        }));
    }
    let (error, bytes) = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(error) => (error.utf8_error(), error.into_bytes()),
    };
    let offset = error.valid_up_to();
    let len = error.error_len().unwrap_or(bytes.len() - offset);
    let shown: String = bytes
        .utf8_chunks()
        .flat_map(|chunk| {
            chunk
                .valid()
                .chars()
                .chain(chunk.invalid().iter().map(|_| '?'))
        })
        .collect();
    let hex: Vec<String> = bytes[offset..offset + len]
        .iter()
        .map(|b| format!("{b:#04x}"))
        .collect();
    let diagnostic = Diagnostic::error(
        "ctm::not-utf8",
        format!(
            "the host file is not UTF-8: byte {offset} starts an invalid sequence ({})",
            hex.join(" ")
        ),
        SourceSpan::new(offset.into(), len),
    )
    .with_label("not UTF-8")
    .with_help("save the file as UTF-8 (for example with `iconv -t UTF-8`)");
    Err(Box::new(Rejected { diagnostic, shown }))
}

/// The diagnostic for nesting deeper than [`MAX_DEPTH`], at the bracket
/// or key that goes one level too deep.
pub(crate) fn too_deep(at: SourceSpan) -> Diagnostic {
    Diagnostic::error(
        "ctm::too-deep",
        format!("nested more than {MAX_DEPTH} levels deep"),
        at,
    )
    .with_label("one level too many")
    .with_help(
        "a host file needs three levels at most (container → ssh → authorized-key); \
         ctm reads no deeper, even in commented-out parts",
    )
}

/// Which syntax a host file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Kdl,
    Toml,
}

impl Format {
    /// Picks the syntax from the file extension; KDL unless it ends in `.toml`.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("toml") => Format::Toml,
            _ => Format::Kdl,
        }
    }
}

/// A host file's text and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    pub format: Format,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>, format: Format) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
            format,
        }
    }
}

/// A value with the byte span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: SourceSpan,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: SourceSpan) -> Spanned<T> {
        Spanned { value, span }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned {
            value: f(self.value),
            span: self.span,
        }
    }
}

/// A scalar as written in the file, before it is given a meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i128),
    Float(f64),
    Bool(bool),
    /// A value that could not be read (`#null`, a TOML date, a number out
    /// of range). It was reported where it was found; it stands in for the
    /// entry so that the entry does not also count as missing, fits every
    /// type, and every accessor treats it as absent.
    Invalid,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i128> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// Integers and floats alike, for keys such as `cpus=1.5`.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Invalid => "an invalid value",
        }
    }

    fn fits(&self, kind: ValueKind) -> bool {
        matches!(
            (kind, self),
            (_, Value::Invalid)
                | (ValueKind::String, Value::String(_))
                | (ValueKind::Integer, Value::Integer(_))
                | (ValueKind::Number, Value::Integer(_) | Value::Float(_))
                | (ValueKind::Bool, Value::Bool(_))
        )
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Invalid => f.write_str("(invalid)"),
        }
    }
}

/// One node of the syntax tree, checked against its [`NodeSpec`].
#[derive(Debug, Clone)]
pub struct Node {
    pub name: Spanned<String>,
    pub args: Vec<Spanned<Value>>,
    pub props: Vec<(Spanned<String>, Spanned<Value>)>,
    pub children: Vec<Node>,
    /// The whole node, for errors about it as a unit.
    pub span: SourceSpan,
}

impl Node {
    pub fn arg(&self, index: usize) -> Option<&Spanned<Value>> {
        self.args.get(index)
    }

    pub fn prop(&self, name: &str) -> Option<&Spanned<Value>> {
        self.props
            .iter()
            .find(|(key, _)| key.value == name)
            .map(|(_, value)| value)
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name.value == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name.value == name)
    }
}

/// A parsed host file: its top-level nodes.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub nodes: Vec<Node>,
}

impl Document {
    /// A digest of what the document says, not where: every node's name,
    /// arguments, properties and children, in order, without their spans.
    /// Texts that differ only in comments, blank space or layout have the
    /// same digest; validation reads nothing else (spans only place its
    /// diagnostics), so a document with the digest of one that validated
    /// without a diagnostic validates to the same model.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        fn text(hash: &mut sha2::Sha256, s: &str) {
            hash.update((s.len() as u64).to_le_bytes());
            hash.update(s.as_bytes());
        }
        fn value(hash: &mut sha2::Sha256, v: &Value) {
            match v {
                Value::String(s) => {
                    hash.update([b's']);
                    text(hash, s);
                }
                Value::Integer(i) => {
                    hash.update([b'i']);
                    hash.update(i.to_le_bytes());
                }
                Value::Float(f) => {
                    hash.update([b'f']);
                    hash.update(f.to_bits().to_le_bytes());
                }
                Value::Bool(b) => hash.update([b'b', u8::from(*b)]),
                Value::Invalid => hash.update([b'x']),
            }
        }
        fn nodes(hash: &mut sha2::Sha256, list: &[Node]) {
            hash.update((list.len() as u64).to_le_bytes());
            for node in list {
                text(hash, &node.name.value);
                hash.update((node.args.len() as u64).to_le_bytes());
                for arg in &node.args {
                    value(hash, &arg.value);
                }
                hash.update((node.props.len() as u64).to_le_bytes());
                for (key, v) in &node.props {
                    text(hash, &key.value);
                    value(hash, &v.value);
                }
                nodes(hash, &node.children);
            }
        }
        let mut hash = sha2::Sha256::new();
        nodes(&mut hash, &self.nodes);
        hash.finalize().into()
    }

    pub fn nodes_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.name.value == name)
    }
}

/// Parses a host file in its own syntax and checks it against the vocabulary.
///
/// Returns the document even when there are errors, so that later stages can
/// still report their own problems with the parts that were fine; a caller
/// must not compile a document that came with errors.
pub fn parse(source: &Source) -> (Document, Vec<Diagnostic>) {
    parse_as(source, &vocab::ROOT)
}

/// [`parse`] against the language whose top is `root`: [`vocab::ROOT`]
/// for a host file, [`vocab::FLEET`] for a fleet file.
pub fn parse_as(source: &Source, root: &'static NodeSpec) -> (Document, Vec<Diagnostic>) {
    let (document, mut diagnostics) = match source.format {
        Format::Kdl => kdl::parse(&source.text),
        Format::Toml => toml::parse(&source.text, root),
    };
    let syntax_failed = !diagnostics.is_empty() && document.nodes.is_empty();
    if !syntax_failed {
        let syntax = source.format;
        check_children(&document.nodes, root, None, syntax, &mut diagnostics);
    }
    crate::diagnostic::limit(&mut diagnostics);
    (document, diagnostics)
}

/// Words for one syntax: KDL says node/property, TOML says key.
fn noun(syntax: Format, kdl: &'static str) -> &'static str {
    match syntax {
        Format::Kdl => kdl,
        Format::Toml => "key",
    }
}

/// Checks `nodes`, the children of `parent` (`None` at the top level),
/// against `spec`, the parent's [`NodeSpec`].
fn check_children(
    nodes: &[Node],
    spec: &NodeSpec,
    parent: Option<&Node>,
    syntax: Format,
    out: &mut Vec<Diagnostic>,
) {
    let allowed = spec.children;
    let parent_name = parent.map(|p| p.name.value.as_str());
    for node in nodes {
        match allowed.iter().find(|c| c.spec.name == node.name.value) {
            Some(child) => check_node(node, child.spec, syntax, out),
            None => {
                let names = key_names(spec, syntax);
                let place = match parent_name {
                    Some(p) => format!(" in `{p}`"),
                    None => " at the top level".to_string(),
                };
                out.push(
                    Diagnostic::error(
                        "ctm::unknown-node",
                        format!(
                            "unknown {} `{}`{place}",
                            noun(syntax, "node"),
                            node.name.value
                        ),
                        node.name.span,
                    )
                    .with_label("not part of ctm's configuration language")
                    .with_help(did_you_mean(&node.name.value, &names)),
                );
            }
        }
    }
    for child in allowed {
        let mut same = nodes.iter().filter(|n| n.name.value == child.spec.name);
        let first = same.next();
        if child.required
            && first.is_none()
            && let Some(parent) = parent
        {
            out.push(
                Diagnostic::error(
                    "ctm::missing-node",
                    format!("`{}` needs `{}`", parent.name.value, child.spec.name),
                    parent.name.span,
                )
                .with_label(format!("`{}` is missing here", child.spec.name))
                .with_help(format!("add it, for example: {}", child.spec.example)),
            );
        }
        if !child.repeat
            && let Some(first) = first
        {
            for again in same {
                out.push(
                    Diagnostic::error(
                        "ctm::duplicate-node",
                        format!("`{}` is given more than once", again.name.value),
                        again.name.span,
                    )
                    .with_label("given again here")
                    .with_related(first.name.span, "first given here")
                    .with_help("keep only one of them"),
                );
            }
        }
    }
}

fn check_node(node: &Node, spec: &NodeSpec, syntax: Format, out: &mut Vec<Diagnostic>) {
    let node_name = &node.name.value;
    // Positional arguments.
    let fixed = spec.args.iter().filter(|a| !a.variadic).count();
    let variadic = spec.args.iter().find(|a| a.variadic);
    for (index, arg) in node.args.iter().enumerate() {
        let arg_spec = spec.args.get(index).or(variadic);
        match arg_spec {
            Some(arg_spec) => check_value(
                &arg.value,
                arg.span,
                arg_spec.kind,
                node_name,
                arg_spec.name,
                out,
            ),
            // An extra `#null` is reported as that already.
            None if arg.value == Value::Invalid => {}
            None => out.push(
                Diagnostic::error(
                    "ctm::extra-argument",
                    format!("`{node_name}` takes {}", count_words(fixed, "value")),
                    arg.span,
                )
                .with_label("unexpected value")
                .with_help(format!("for example: {}", spec.example)),
            ),
        }
    }
    for (index, arg_spec) in spec.args.iter().enumerate() {
        if arg_spec.required && node.args.len() <= index {
            out.push(
                Diagnostic::error(
                    "ctm::missing-value",
                    format!("`{node_name}` needs its {}", arg_spec.name),
                    node.name.span,
                )
                .with_label(format!("{} missing", arg_spec.name))
                .with_help(format!("for example: {}", spec.example)),
            );
        }
    }
    // Properties.
    let known: Vec<&str> = spec.props.iter().map(|p| p.name).collect();
    // Where each property was first given: one look-up per property, not
    // a scan of the ones before it (quadratic in a node's properties).
    let mut first: HashMap<&str, SourceSpan> = HashMap::with_capacity(node.props.len());
    for (key, value) in &node.props {
        if let Some(earlier) = first.get(key.value.as_str()) {
            out.push(
                Diagnostic::error(
                    "ctm::duplicate-property",
                    format!("`{}` is given twice on `{node_name}`", key.value),
                    key.span,
                )
                .with_label("given again here")
                .with_related(*earlier, "first given here"),
            );
            continue;
        }
        first.insert(&key.value, key.span);
        match spec.props.iter().find(|p| p.name == key.value) {
            Some(prop) => check_value(
                &value.value,
                value.span,
                prop.kind,
                node_name,
                prop.name,
                out,
            ),
            None => match spec.any_props {
                Some(kind) => {
                    check_value(&value.value, value.span, kind, node_name, &key.value, out)
                }
                None => out.push(
                    Diagnostic::error(
                        "ctm::unknown-property",
                        format!(
                            "unknown {} `{}` on `{node_name}`",
                            noun(syntax, "property"),
                            key.value
                        ),
                        key.span,
                    )
                    .with_label("not understood here")
                    .with_help(did_you_mean(&key.value, &known)),
                ),
            },
        }
        check_key_text(key, out);
    }
    for prop in spec.props.iter().filter(|p| p.required) {
        if !first.contains_key(prop.name) {
            out.push(
                Diagnostic::error(
                    "ctm::missing-property",
                    format!("`{node_name}` needs `{}`", prop.name),
                    node.name.span,
                )
                .with_label(format!("`{}` missing", prop.name))
                .with_help(format!("for example: {}", spec.example)),
            );
        }
    }
    check_key_text(&node.name, out);
    check_children(&node.children, spec, Some(node), syntax, out);
}

/// The names an unknown child of a `spec` node may have been meant as. In
/// TOML the node's arguments and properties are keys of its table too, so
/// a misspelt one arrives here as an unknown node; a keyed node's name is
/// its table's key, not a key inside it.
fn key_names(spec: &NodeSpec, syntax: Format) -> Vec<&'static str> {
    let children = spec.children.iter().map(|c| c.spec.name);
    match syntax {
        Format::Kdl => children.collect(),
        Format::Toml => {
            let args = spec.args.iter().skip(usize::from(spec.keyed));
            args.map(|a| a.name)
                .chain(spec.props.iter().map(|p| p.name))
                .chain(children)
                .collect()
        }
    }
}

fn check_value(
    value: &Value,
    span: SourceSpan,
    kind: ValueKind,
    node: &str,
    what: &str,
    out: &mut Vec<Diagnostic>,
) {
    if !value.fits(kind) {
        out.push(
            Diagnostic::error(
                "ctm::wrong-type",
                format!(
                    "`{what}` of `{node}` must be {}, found {}",
                    kind.description(),
                    value.type_name()
                ),
                span,
            )
            .with_label(format!("expected {}", kind.description())),
        );
        return;
    }
    if let Value::String(text) = value {
        check_text(text, span, out);
    }
}

fn check_key_text(key: &Spanned<String>, out: &mut Vec<Diagnostic>) {
    check_text(&key.value, key.span, out);
}

/// No value may carry a control character: a newline in a name or a key
/// would otherwise become an extra line in a unit file or an nft statement.
fn check_text(text: &str, span: SourceSpan, out: &mut Vec<Diagnostic>) {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        out.push(
            Diagnostic::error(
                "ctm::control-character",
                format!(
                    "value contains the control character {}",
                    c.escape_default()
                ),
                span,
            )
            .with_label("contains a control character")
            .with_help(
                "newlines, tabs and other control characters are never allowed in values: \
                 they could inject lines into the generated unit files or nftables rules",
            ),
        );
    }
}

fn count_words(n: usize, word: &str) -> String {
    match n {
        0 => format!("no {word}s"),
        1 => format!("one {word}"),
        n => format!("{n} {word}s"),
    }
}

/// Names a suggestion is looked for among, at most: reporting n unknown
/// references among m defined names then costs n × 1,000 comparisons at
/// worst, not n × m.
const MAX_SUGGESTION_CANDIDATES: usize = 1000;

/// Names longer than this are not compared: no name ctm knows or accepts
/// is, and comparing costs the product of the two lengths.
const MAX_SUGGESTION_LEN: usize = 128;

/// Names a help lists, at most.
const MAX_LISTED: usize = 20;

/// The closest known name, if one is close enough to be a likely typo;
/// else the names to choose from.
pub fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    if candidates.is_empty() {
        return "this node takes no children".to_string();
    }
    let best = (candidates.len() <= MAX_SUGGESTION_CANDIDATES && name.len() <= MAX_SUGGESTION_LEN)
        .then(|| {
            candidates
                .iter()
                .map(|c| (strsim::jaro_winkler(name, c), *c))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
        })
        .flatten();
    match best {
        Some((_, candidate)) => format!("did you mean `{candidate}`?"),
        None => format!("expected one of: {}", quote_list(candidates)),
    }
}

fn quote_list(names: &[&str]) -> String {
    let mut list = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        list.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    list
}

/// The span covering both `a` and `b`.
pub fn join_spans(a: SourceSpan, b: SourceSpan) -> SourceSpan {
    let start = a.offset().min(b.offset());
    let end = (a.offset() + a.len()).max(b.offset() + b.len());
    SourceSpan::new(start.into(), end - start)
}
