//! The KDL 2.0 reader: text → [`Document`], with every syntax error
//! reported where it is.
//!
//! It is a recursive descent over bytes that builds ctm's own tree and
//! nothing else, written for two reasons. Speed: the `kdl` crate (6.7.1)
//! keeps every byte of formatting and allocates error contexts on the
//! success path; on a 205 KB host file it took about 86 ms, this reader
//! 2.8 ms (docs/benchmarks.md). Safety: the crate recurses once per level
//! of nesting, per `*` or `/` inside a `/* */` comment and per stray
//! character at the top level, with frames of up to 50 KB in a debug
//! build, so 100 KB of `=` or of `}` overflow any thread's stack; and its
//! backtracking over slashdashed child blocks (`a /-{ a /-{ … } }`) takes
//! time exponential in their depth. ctm reads host files from the network,
//! so it never hands one to the crate.
//!
//! This reader recurses only into child blocks, at most
//! [`super::MAX_DEPTH`] deep (counting blocks commented out with `/-`),
//! and reads every byte a bounded number of times. Its grammar follows the
//! crate's `v2_parser.rs` rule by rule, including where the crate is
//! stricter than the spec (such as `/- node;`), and `tests/kdl_reader.rs`
//! holds the two to each other: on the official test suite, the examples,
//! the docs and generated documents, both accept the same texts and give
//! the same tree and spans, and `#null` and type annotations are reported
//! as the crate path ([`super::kdl::parse_with_kdl_crate`]) reports them.
//! Syntax errors are this reader's own: the first one is reported, as
//! `ctm::kdl-syntax`, and the document is then empty.

use miette::SourceSpan;

use super::{Document, MAX_DEPTH, Node, Spanned, Value, join_spans, too_deep};
use crate::diagnostic::{Diagnostic, newline_len};

/// A syntax error ends the reading.
type Res<T> = Result<T, Box<Diagnostic>>;

/// Reads a whole document. On a syntax error the document is empty and
/// the error is the one diagnostic; otherwise the diagnostics are those
/// for `#null` and type annotations, in the order of the text.
pub fn read(text: &str) -> (Document, Vec<Diagnostic>) {
    let (document, diagnostics, _) = read_measured(text);
    (document, diagnostics)
}

/// What the `kdl` crate recurses on in a valid document, beyond its
/// nesting: see [`super::kdl::check_for_kdl_crate`].
#[derive(Debug, Clone, Copy)]
pub struct Measures {
    /// The most pieces in one `/* */` comment, as the crate reads them:
    /// `/*`, `*/`, each other `*` or `/`, and each run of other text.
    pub comment_pieces: usize,
    /// That comment.
    pub comment: SourceSpan,
    /// The most slashdashed child blocks (`/-{ … }`) nested in one another.
    pub slashdashed_blocks: usize,
    /// The innermost `{` of those.
    pub slashdashed_block: SourceSpan,
}

impl Default for Measures {
    fn default() -> Measures {
        Measures {
            comment_pieces: 0,
            comment: span(0, 0),
            slashdashed_blocks: 0,
            slashdashed_block: span(0, 0),
        }
    }
}

/// [`read`], and the [`Measures`] of the text read.
pub fn read_measured(text: &str) -> (Document, Vec<Diagnostic>, Measures) {
    let mut cursor = Cursor {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        discarding: 0,
        string_start: 0,
        reported: Vec::new(),
        slashdashed_blocks: 0,
        measures: Measures::default(),
    };
    match cursor.document() {
        Ok(document) => {
            let mut reported = cursor.reported;
            reported.sort_by_key(|d| d.span.offset());
            (document, reported, cursor.measures)
        }
        Err(error) => (Document::default(), vec![*error], cursor.measures),
    }
}

/// A parsed entry, before its spans are tightened the way
/// `super::kdl::value_span` does.
struct Entry {
    key: Option<Spanned<String>>,
    value: Value,
    /// The type annotation's name, which ctm reports.
    annotation: Option<SourceSpan>,
    /// Where the entry starts (after any slashdashed entries before it).
    start: usize,
    /// Where the value's own text starts and ends.
    value_start: usize,
    value_end: usize,
}

/// A value as read, with its type annotation and its text's bounds.
struct ValueRead {
    value: Value,
    annotation: Option<SourceSpan>,
    start: usize,
    end: usize,
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Child blocks open around `pos`, slashdashed ones included.
    depth: usize,
    /// Above zero while reading something slashdashed away, where `#null`
    /// and type annotations are read and dropped rather than reported.
    discarding: usize,
    /// Where the string being read opens, for "unclosed" errors.
    string_start: usize,
    /// `#null` values and type annotations, reported but read.
    reported: Vec<Diagnostic>,
    /// Slashdashed child blocks open around `pos`.
    slashdashed_blocks: usize,
    measures: Measures,
}

fn span(start: usize, end: usize) -> SourceSpan {
    SourceSpan::new(start.into(), end - start)
}

fn is_unicode_space(c: char) -> bool {
    matches!(
        c,
        '\u{0009}' | '\u{0020}' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

fn is_newline_char(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{0085}' | '\u{000B}' | '\u{000C}' | '\u{2028}' | '\u{2029}'
    )
}

fn is_disallowed(c: char) -> bool {
    matches!(c,
        '\u{0000}'..='\u{0008}'
        | '\u{000E}'..='\u{001F}'
        | '\u{200E}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
    )
}

fn is_identifier_char(c: char) -> bool {
    !(is_unicode_space(c)
        || is_newline_char(c)
        || is_disallowed(c)
        || matches!(
            c,
            '=' | '\\' | '/' | '(' | ')' | '{' | '}' | '[' | ']' | ';' | '"' | '#'
        ))
}

// ---- diagnostics -------------------------------------------------------

fn syntax(at: SourceSpan, message: impl Into<String>, label: &str) -> Diagnostic {
    Diagnostic::error("ctm::kdl-syntax", message, at).with_label(label)
}

fn fail<T>(diagnostic: Diagnostic) -> Res<T> {
    Err(Box::new(diagnostic))
}

/// A character as a message shows it: itself in backticks, or its code
/// point when it would not be visible.
fn describe(c: char) -> String {
    if c.is_control() || is_disallowed(c) || is_newline_char(c) || c.is_whitespace() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("`{c}`")
    }
}

impl<'a> Cursor<'a> {
    // ---- characters -------------------------------------------------

    fn peek(&self) -> Option<char> {
        self.char_at(self.pos)
    }

    fn char_at(&self, at: usize) -> Option<char> {
        let b = *self.bytes.get(at)?;
        if b < 0x80 {
            Some(b as char)
        } else {
            self.text.get(at..)?.chars().next()
        }
    }

    fn at(&self, s: &str) -> bool {
        self.bytes[self.pos..].starts_with(s.as_bytes())
    }

    fn eof(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn bump(&mut self, c: char) {
        self.pos += c.len_utf8();
    }

    /// The length of the newline at `at`, if there is one: the one
    /// definition of a newline, which positions are counted by too.
    fn newline_at(&self, at: usize) -> Option<usize> {
        newline_len(self.bytes, at)
    }

    fn newline(&mut self) -> bool {
        match self.newline_at(self.pos) {
            Some(len) => {
                self.pos += len;
                true
            }
            None => false,
        }
    }

    fn unicode_space(&mut self) -> bool {
        match self.peek() {
            Some(c) if is_unicode_space(c) => {
                self.bump(c);
                true
            }
            _ => false,
        }
    }

    /// The character at the cursor, which is not what the grammar allows
    /// there; `expected` says what would be.
    fn unexpected(&self, expected: &str) -> Diagnostic {
        let Some(c) = self.peek() else {
            let end = self.bytes.len();
            return syntax(span(end, end), "unexpected end of file", expected);
        };
        let here = span(self.pos, self.pos + c.len_utf8());
        if self.at("/-") {
            return syntax(
                span(self.pos, self.pos + 2),
                "`/-` must be followed by the node, entry or child block it comments out",
                "nothing to comment out here",
            );
        }
        if is_disallowed(c) {
            return self.disallowed(c);
        }
        syntax(here, format!("unexpected {}", describe(c)), expected)
    }

    fn disallowed(&self, c: char) -> Diagnostic {
        syntax(
            span(self.pos, self.pos + c.len_utf8()),
            format!("the character {} is not allowed in KDL", describe(c)),
            "not allowed",
        )
        .with_help("control characters, byte order marks and text direction marks may only appear as escapes in quoted strings")
    }

    // ---- whitespace and comments ------------------------------------

    /// `ws := unicode-space | multi-line-comment`
    fn ws(&mut self) -> Res<bool> {
        if self.unicode_space() {
            return Ok(true);
        }
        if self.at("/*") {
            self.multi_line_comment()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn wss(&mut self) -> Res<bool> {
        let start = self.pos;
        while self.ws()? {}
        Ok(self.pos > start)
    }

    fn multi_line_comment(&mut self) -> Res<()> {
        let open = self.pos;
        self.pos += 2;
        let mut depth = 1usize;
        let mut pieces = 1;
        let mut in_text = false;
        while depth > 0 {
            let text = !(self.at("*") || self.at("/"));
            if !(text && in_text) {
                pieces += 1;
            }
            in_text = text;
            if self.at("*/") {
                self.pos += 2;
                depth -= 1;
            } else if self.at("/*") {
                self.pos += 2;
                depth += 1;
            } else {
                let Some(c) = self.peek() else {
                    return fail(
                        syntax(
                            span(open, open + 2),
                            "unclosed comment",
                            "this comment is never closed",
                        )
                        .with_help(
                            "close it with `*/` (comments nest: each `/*` needs its own `*/`)",
                        ),
                    );
                };
                self.bump(c);
            }
        }
        if pieces > self.measures.comment_pieces {
            self.measures.comment_pieces = pieces;
            self.measures.comment = span(open, self.pos);
        }
        Ok(())
    }

    /// `single-line-comment := '//' ^newline* (newline | eof)`
    fn single_line_comment(&mut self) -> bool {
        if !self.at("//") {
            return false;
        }
        self.pos += 2;
        while let Some(c) = self.peek() {
            if self.newline() {
                break;
            }
            self.bump(c);
        }
        true
    }

    /// `escline := '\\' ws* (single-line-comment | newline | eof) ws*`
    fn escline(&mut self) -> Res<bool> {
        let start = self.pos;
        if !self.at("\\") {
            return Ok(false);
        }
        self.pos += 1;
        self.wss()?;
        if !(self.single_line_comment() || self.newline() || self.eof()) {
            self.pos = start;
            return Ok(false);
        }
        self.wss()?;
        Ok(true)
    }

    /// `node-space := ws* escline ws* | ws+`
    fn node_space(&mut self) -> Res<bool> {
        let start = self.pos;
        self.wss()?;
        self.escline()?;
        Ok(self.pos > start)
    }

    fn node_space0(&mut self) -> Res<()> {
        while self.node_space()? {}
        Ok(())
    }

    fn node_space1(&mut self) -> Res<bool> {
        let start = self.pos;
        self.node_space0()?;
        Ok(self.pos > start)
    }

    /// `line-space := node-space | newline | single-line-comment`
    fn line_space(&mut self) -> Res<bool> {
        Ok(self.node_space()? || self.newline() || self.single_line_comment())
    }

    /// `node-terminator := ';' | newline | single-line-comment`
    fn node_terminator(&mut self) -> bool {
        if self.at(";") {
            self.pos += 1;
            return true;
        }
        self.newline() || self.single_line_comment()
    }

    /// `slashdash := '/-' (node-space | line-space)*`
    fn slashdash(&mut self) -> Res<bool> {
        if !self.at("/-") {
            return Ok(false);
        }
        self.pos += 2;
        while self.line_space()? {}
        Ok(true)
    }

    // ---- nodes --------------------------------------------------------

    fn document(&mut self) -> Res<Document> {
        if self.at("\u{FEFF}") {
            self.pos += 3;
        }
        let nodes = self.nodes()?;
        if self.at("}") {
            return fail(
                syntax(
                    span(self.pos, self.pos + 1),
                    "unexpected `}`: there is no child block to close",
                    "nothing to close here",
                )
                .with_help("remove it, or look for the `{` it was meant to close"),
            );
        }
        if !self.eof() {
            return fail(self.unexpected("expected a newline or `;` before this"));
        }
        Ok(Document { nodes })
    }

    /// `(line-space | slashdash base-node)*`, as the crate skips before
    /// and after nodes.
    fn skip_leading(&mut self) -> Res<()> {
        loop {
            if self.line_space()? {
                continue;
            }
            let save = self.pos;
            if self.slashdash()? && self.discarded(Self::base_node)?.is_some() {
                continue;
            }
            self.pos = save;
            return Ok(());
        }
    }

    /// `nodes := leading separated(0.., leading base-node, terminator)
    /// terminator? leading`. The crate tries `leading base-node` after
    /// each terminator and backtracks over the terminator when no node
    /// follows, then reads the same terminator and leading part again;
    /// here each is read once (reading them twice at every level of
    /// nested slashdashed nodes took exponential time).
    fn nodes(&mut self) -> Res<Vec<Node>> {
        self.skip_leading()?;
        let mut nodes = Vec::new();
        let Some(first) = self.base_node()? else {
            if self.node_terminator() {
                self.skip_leading()?;
            }
            return Ok(nodes);
        };
        nodes.push(first);
        loop {
            if !self.node_terminator() {
                self.skip_leading()?;
                return Ok(nodes);
            }
            self.skip_leading()?;
            match self.base_node()? {
                Some(node) => nodes.push(node),
                None => return Ok(nodes),
            }
        }
    }

    fn base_node(&mut self) -> Res<Option<Node>> {
        if self.eof() || self.at("}") {
            return Ok(None);
        }
        if self.at("{") {
            return fail(
                syntax(
                    span(self.pos, self.pos + 1),
                    "found a child block instead of a node name",
                    "node name expected before this",
                )
                .with_help(
                    "did you forget the node's name, or end the node before its child block?",
                ),
            );
        }
        let annotation = self.type_annotation()?;
        self.node_space0()?;
        let Some((name, name_start, name_end)) = self.identifier()? else {
            let expected = "a node name is expected here";
            return fail(match self.peek() {
                Some(c) if !is_disallowed(c) && !self.at("/-") => syntax(
                    span(self.pos, self.pos + c.len_utf8()),
                    format!("expected a node name, found {}", describe(c)),
                    expected,
                )
                .with_help("a node name is a string: a bare word such as `container`, or quoted"),
                _ => self.unexpected(expected),
            });
        };
        let name = Spanned::new(name, span(name_start, name_end));
        let mut entries = Vec::new();
        loop {
            let save = self.pos;
            if !self.node_space1()? {
                break;
            }
            self.pos = save;
            match self.node_entry()? {
                Some(entry) => entries.push(entry),
                None => {
                    self.pos = save;
                    break;
                }
            }
        }
        self.before_node_children()?;
        // Without a child block the crate backtracks and reads the same
        // slashdashed entries and blocks again, to the same place.
        let children = match self.node_children()? {
            Some(children) => {
                let save = self.pos;
                if !self.slashdashed_children()? {
                    self.pos = save;
                }
                children
            }
            None => Vec::new(),
        };
        self.node_space0()?;
        Ok(Some(self.build_node(name, annotation, entries, children)))
    }

    fn build_node(
        &mut self,
        name: Spanned<String>,
        annotation: Option<SourceSpan>,
        entries: Vec<Entry>,
        children: Vec<Node>,
    ) -> Node {
        let report = self.discarding == 0;
        if let (Some(at), true) = (annotation, report) {
            self.reported.push(type_annotation(at));
        }
        let mut node_span = name.span;
        let mut args = Vec::new();
        let mut props = Vec::new();
        for entry in entries {
            let value_span = self.value_span(&entry);
            node_span = join_spans(node_span, value_span);
            if report {
                if let Some(at) = entry.annotation {
                    self.reported.push(type_annotation(at));
                }
                if entry.value == Value::Invalid {
                    self.reported.push(null_value(value_span));
                }
            }
            let value = Spanned::new(entry.value, value_span);
            match entry.key {
                Some(key) => props.push((key, value)),
                None => args.push(value),
            }
        }
        Node {
            name,
            args,
            props,
            children,
            span: node_span,
        }
    }

    /// The same span `super::kdl::value_span` finds from the crate's entry
    /// span (which runs from `entry.start` to the end of the value) and the
    /// value's text: the first occurrence of that text after the first `=`
    /// after the key.
    fn value_span(&self, entry: &Entry) -> SourceSpan {
        let repr = &self.text[entry.value_start..entry.value_end];
        let repr = repr.trim();
        let after_key = match &entry.key {
            Some(key) => {
                let key_end = key.span.offset() + key.span.len();
                let from = key_end.max(entry.start);
                match self.text[from..entry.value_end].find('=') {
                    Some(eq) => from + eq + 1,
                    None => from,
                }
            }
            None => entry.start,
        };
        match self.text[after_key..entry.value_end].find(repr) {
            Some(pos) if !repr.is_empty() => span(after_key + pos, after_key + pos + repr.len()),
            _ => {
                let rest = &self.text[after_key..entry.value_end];
                let trimmed = rest.trim_start();
                let lead = rest.len() - trimmed.len();
                let start = after_key + lead;
                span(start, start + trimmed.trim_end().len())
            }
        }
    }

    /// The crate's `before_node_children`: slashdashed entries and
    /// slashdashed child blocks before the real child block.
    fn before_node_children(&mut self) -> Res<()> {
        let start = self.pos;
        let mut done = false;
        if self.node_space1()? {
            let after_space = self.pos;
            if self.slashdashed_entries()? {
                let after_entries = self.pos;
                if !(self.node_space1()? && self.slashdashed_children()?) {
                    self.pos = after_entries;
                }
                done = true;
            } else {
                self.pos = after_space;
                if self.slashdashed_children()? {
                    done = true;
                }
            }
        }
        if !done {
            self.pos = start;
        }
        self.node_space0()
    }

    /// `separated(1.., slashdash node-entry, node-space+)`
    fn slashdashed_entries(&mut self) -> Res<bool> {
        let start = self.pos;
        if !(self.slashdash()? && self.discarded(Self::node_entry)?.is_some()) {
            self.pos = start;
            return Ok(false);
        }
        loop {
            let save = self.pos;
            if !(self.node_space1()?
                && self.slashdash()?
                && self.discarded(Self::node_entry)?.is_some())
            {
                self.pos = save;
                return Ok(true);
            }
        }
    }

    /// `node-space* separated(1.., slashdash node-children, node-space+)`
    fn slashdashed_children(&mut self) -> Res<bool> {
        let start = self.pos;
        self.node_space0()?;
        if !(self.slashdash()? && self.slashdashed_block()?) {
            self.pos = start;
            return Ok(false);
        }
        loop {
            let save = self.pos;
            if !(self.node_space1()? && self.slashdash()? && self.slashdashed_block()?) {
                self.pos = save;
                return Ok(true);
            }
        }
    }

    /// A child block after `/-`, counted for [`Measures`].
    fn slashdashed_block(&mut self) -> Res<bool> {
        if !self.at("{") {
            return Ok(false);
        }
        self.slashdashed_blocks += 1;
        if self.slashdashed_blocks > self.measures.slashdashed_blocks {
            self.measures.slashdashed_blocks = self.slashdashed_blocks;
            self.measures.slashdashed_block = span(self.pos, self.pos + 1);
        }
        let read = self.discarded(Self::node_children)?.is_some();
        self.slashdashed_blocks -= 1;
        Ok(read)
    }

    /// `node-children := '{' nodes '}'`, at most [`MAX_DEPTH`] deep: the
    /// only recursion, so the stack a document needs is bounded.
    fn node_children(&mut self) -> Res<Option<Vec<Node>>> {
        if !self.at("{") {
            return Ok(None);
        }
        let open = self.pos;
        if self.depth == MAX_DEPTH {
            return fail(too_deep(span(open, open + 1)));
        }
        self.pos += 1;
        self.depth += 1;
        let nodes = self.nodes()?;
        self.depth -= 1;
        if self.eof() {
            return fail(
                syntax(
                    span(open, open + 1),
                    "no closing `}` for this child block",
                    "opened here",
                )
                .with_help("close the block with `}` after its last node"),
            );
        }
        if !self.at("}") {
            return fail(self.unexpected("expected a newline, `;` or `}` before this"));
        }
        self.pos += 1;
        Ok(Some(nodes))
    }

    /// The crate's `node_entry`: optional slashdashed entries, then a
    /// property or an argument.
    fn node_entry(&mut self) -> Res<Option<Entry>> {
        let begin = self.pos;
        self.node_space0()?;
        let save = self.pos;
        if !(self.slashdashed_entries()? && self.node_space1()?) {
            self.pos = save;
        }
        let start = self.pos;
        if let Some((key, key_start, key_end)) = self.identifier()? {
            let after_key = self.pos;
            self.node_space0()?;
            if self.at("=") {
                let equals = self.pos;
                self.pos += 1;
                self.node_space0()?;
                let Some(read) = self.value()? else {
                    return fail(
                        syntax(
                            span(equals, equals + 1),
                            "expected a value after `=`",
                            "property value missing",
                        )
                        .with_help("write the value right after `=`, e.g. memory=\"1G\""),
                    );
                };
                return Ok(Some(Entry {
                    key: Some(Spanned::new(key, span(key_start, key_end))),
                    value: read.value,
                    annotation: read.annotation,
                    start,
                    value_start: read.start,
                    value_end: read.end,
                }));
            }
            self.pos = after_key;
            return Ok(Some(Entry {
                key: None,
                value: Value::String(key),
                annotation: None,
                start,
                value_start: key_start,
                value_end: key_end,
            }));
        }
        match self.value()? {
            Some(read) => Ok(Some(Entry {
                key: None,
                value: read.value,
                annotation: read.annotation,
                start,
                value_start: read.start,
                value_end: read.end,
            })),
            None => {
                self.pos = begin;
                Ok(None)
            }
        }
    }

    /// Runs `read` on something slashdashed away.
    fn discarded<T>(&mut self, read: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        self.discarding += 1;
        let result = read(self);
        self.discarding -= 1;
        result
    }

    /// `type := '(' node-space* string node-space* ')'`: the span of the
    /// type's name, which the crate path reports.
    fn type_annotation(&mut self) -> Res<Option<SourceSpan>> {
        if !self.at("(") {
            return Ok(None);
        }
        let open = self.pos;
        self.pos += 1;
        self.node_space0()?;
        let Some((_, start, end)) = self.identifier()? else {
            return fail(self.unexpected("a type name is expected here"));
        };
        let ends = self.peek() == Some(')') || {
            let save = self.pos;
            let space = self.node_space()?;
            self.pos = save;
            space
        };
        if ends {
            self.node_space0()?;
        }
        if !(ends && self.at(")")) {
            return fail(
                syntax(
                    span(open, self.pos),
                    "unclosed type annotation",
                    "expected `)` after the type's name",
                )
                .with_help("ctm does not use type annotations: remove it"),
            );
        }
        self.pos += 1;
        Ok(Some(span(start, end)))
    }

    // ---- values -------------------------------------------------------

    /// `value := type? node-space* (keyword | number | string)`.
    fn value(&mut self) -> Res<Option<ValueRead>> {
        let annotation = self.type_annotation()?;
        if annotation.is_some() {
            self.node_space0()?;
        }
        let start = self.pos;
        let value = match self.keyword()? {
            Some(value) => Some(value),
            None => match self.number()? {
                Some(value) => Some(value),
                None => self.string()?.map(Value::String),
            },
        };
        Ok(value.map(|value| ValueRead {
            value,
            annotation,
            start,
            end: self.pos,
        }))
    }

    /// `#true`, `#false`, `#inf`, `#-inf`, `#nan`, and `#null` as
    /// [`Value::Invalid`] (reported by [`Cursor::build_node`]).
    fn keyword(&mut self) -> Res<Option<Value>> {
        if !self.at("#") || matches!(self.char_at(self.pos + 1), Some('#' | '"')) {
            return Ok(None);
        }
        let start = self.pos;
        self.pos += 1;
        // As the crate does, a keyword needs no terminator of its own:
        // `/- a #truex` is a slashdashed `a #true`, then a node `x`.
        let words: [(&str, Value); 6] = [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Invalid),
            ("nan", Value::Float(f64::NAN)),
            ("inf", Value::Float(f64::INFINITY)),
            ("-inf", Value::Float(f64::NEG_INFINITY)),
        ];
        for (word, value) in words {
            if self.at(word) {
                self.pos += word.len();
                return Ok(Some(value));
            }
        }
        self.identifier_chars();
        fail(
            syntax(
                span(start, self.pos.max(start + 1)),
                format!("unknown keyword `{}`", &self.text[start..self.pos]),
                "not a KDL keyword",
            )
            .with_help(
                "KDL 2.0's keywords are #true, #false, #null, #inf, #-inf and #nan; \
                 a string starting with `#` is written in quotes",
            ),
        )
    }

    /// A value must be followed by something that can end it.
    fn value_terminator_check(&self) -> Res<()> {
        let ok = match self.peek() {
            None => true,
            Some('=' | ')' | '{' | '}' | ';' | '\\') => true,
            Some('/') => matches!(self.char_at(self.pos + 1), Some('*' | '/')),
            Some(c) => is_unicode_space(c) || is_newline_char(c),
        };
        if ok {
            return Ok(());
        }
        match self.peek() {
            Some(c) if !is_disallowed(c) => fail(
                syntax(
                    span(self.pos, self.pos + c.len_utf8()),
                    format!("{} cannot come right after a value", describe(c)),
                    "expected a space, `;` or a newline before this",
                )
                .with_help(
                    "separate values with spaces; a string with special characters is quoted",
                ),
            ),
            _ => fail(self.unexpected("")),
        }
    }

    /// Digits of `radix` with `_` after the first; `None` if there is no
    /// first digit.
    fn digits(&mut self, radix: u32) -> Option<&'a str> {
        let start = self.pos;
        match self.bytes.get(self.pos) {
            Some(b) if (*b as char).is_digit(radix) => self.pos += 1,
            _ => return None,
        }
        while let Some(b) = self.bytes.get(self.pos) {
            if *b == b'_' || (*b as char).is_digit(radix) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Some(&self.text[start..self.pos])
    }

    fn bad_number(&self, start: usize, message: &str) -> Diagnostic {
        syntax(
            span(start, self.pos.max(start + 1)),
            message.to_string(),
            "invalid number",
        )
    }

    fn number(&mut self) -> Res<Option<Value>> {
        let start = self.pos;
        let negative = match self.bytes.get(self.pos) {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        if !matches!(self.bytes.get(self.pos), Some(b'0'..=b'9')) {
            self.pos = start;
            return Ok(None);
        }
        let radix = match self.bytes.get(self.pos..self.pos + 2) {
            Some(b"0x" | b"0X") => 16,
            Some(b"0o" | b"0O") => 8,
            Some(b"0b" | b"0B") => 2,
            _ => 10,
        };
        let too_large = "this number does not fit in 128 bits";
        if radix != 10 {
            self.pos += 2;
            let Some(digits) = self.digits(radix) else {
                let kind = match radix {
                    16 => "hexadecimal",
                    8 => "octal",
                    _ => "binary",
                };
                return fail(self.bad_number(
                    start,
                    &format!(
                        "`{}` must be followed by {kind} digits",
                        &self.text[start..self.pos]
                    ),
                ));
            };
            let Some(value) = integer(digits, radix, negative) else {
                return fail(self.bad_number(start, too_large));
            };
            self.value_terminator_check()?;
            return Ok(Some(Value::Integer(value)));
        }
        let digits = |cursor: &mut Self, message: &str| match cursor.digits(10) {
            Some(digits) => match integer(digits, 10, false) {
                Some(value) => Ok(value),
                None => fail(cursor.bad_number(start, too_large)),
            },
            None => fail(cursor.bad_number(start, message)),
        };
        let magnitude = digits(self, "")?;
        let int_value = if negative { -magnitude } else { magnitude };
        let mut is_float = false;
        if self.at(".") {
            self.pos += 1;
            digits(self, "a decimal point must be followed by a digit")?;
            is_float = true;
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self, "an exponent must have digits")?;
            is_float = true;
        }
        self.value_terminator_check()?;
        if !is_float {
            return Ok(Some(Value::Integer(int_value)));
        }
        let written = self.text[start..self.pos].replace('_', "");
        match written.parse::<f64>() {
            Ok(float) => Ok(Some(Value::Float(float))),
            Err(_) => fail(self.bad_number(start, "this is not a number")),
        }
    }

    // ---- strings ------------------------------------------------------

    /// A string used as a node name or property key, with its bounds.
    fn identifier(&mut self) -> Res<Option<(String, usize, usize)>> {
        let start = self.pos;
        Ok(self.string()?.map(|s| (s, start, self.pos)))
    }

    /// `string := identifier-string | raw-string | quoted-string`
    fn string(&mut self) -> Res<Option<String>> {
        self.string_start = self.pos;
        let value = if let Some(s) = self.identifier_string()? {
            Some(s)
        } else if self.at("#") {
            self.raw_string()?
        } else if self.at("\"") {
            Some(self.quoted_string()?)
        } else {
            None
        };
        if value.is_some() {
            self.value_terminator_check()?;
        }
        Ok(value)
    }

    fn identifier_chars(&mut self) {
        while let Some(c) = self.peek() {
            if !is_identifier_char(c) {
                break;
            }
            self.bump(c);
        }
    }

    fn identifier_string(&mut self) -> Res<Option<String>> {
        let start = self.pos;
        let first = match self.peek() {
            Some(c) if is_identifier_char(c) => c,
            _ => return Ok(None),
        };
        let is_digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        match first {
            '0'..='9' => return Ok(None),
            '+' | '-' => {
                self.pos += 1;
                match self.peek() {
                    c if is_digit(c) => {
                        self.pos = start;
                        return Ok(None);
                    }
                    Some('.') => {
                        self.pos += 1;
                        if is_digit(self.peek()) {
                            self.pos = start;
                            return Ok(None);
                        }
                    }
                    _ => {}
                }
                self.identifier_chars();
            }
            '.' => {
                self.pos += 1;
                if is_digit(self.peek()) {
                    self.pos = start;
                    return Ok(None);
                }
                self.identifier_chars();
            }
            _ => {
                self.identifier_chars();
                let word = &self.text[start..self.pos];
                if matches!(word, "true" | "false" | "null" | "inf" | "-inf" | "nan") {
                    return fail(
                        syntax(
                            span(start, self.pos),
                            format!("bare `{word}` is a reserved word in KDL 2.0"),
                            "neither a keyword nor a string",
                        )
                        .with_help(format!(
                            "write `#{word}` for the keyword, or `\"{word}\"` for the string"
                        )),
                    );
                }
            }
        }
        Ok(Some(self.text[start..self.pos].to_string()))
    }

    fn unclosed_string(&self, what: &str) -> Diagnostic {
        let open = self.string_start;
        // The opening `#`s and quotes.
        let opener = &self.bytes[open..];
        let hashes = opener.iter().take_while(|&&b| b == b'#').count();
        let quotes = if opener[hashes..].starts_with(b"\"\"\"") {
            3
        } else {
            1
        };
        syntax(
            span(open, open + hashes + quotes),
            format!("unclosed {what}"),
            "this string is never closed",
        )
    }

    /// `\` followed by whitespace and newlines, which a string drops.
    fn ws_escape(&mut self) -> bool {
        if !self.at("\\") {
            return false;
        }
        let start = self.pos;
        self.pos += 1;
        let after = self.pos;
        while self.unicode_space() || self.newline() {}
        if self.pos == after {
            self.pos = start;
            return false;
        }
        true
    }

    /// One `string-character` after a `\`: the escape's meaning.
    fn escaped_char(&mut self) -> Res<char> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return fail(self.unclosed_string("string"));
        };
        self.bump(c);
        let invalid = |cursor: &Self, message: String| {
            fail(
                syntax(span(start, cursor.pos), message, "invalid escape").with_help(
                    "the escapes are \\n, \\r, \\t, \\\\, \\\", \\b, \\f, \\s, \\u{…} \
                     and a backslash before whitespace",
                ),
            )
        };
        Ok(match c {
            '\\' => '\\',
            '"' => '"',
            'b' => '\u{0008}',
            'f' => '\u{000C}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            's' => ' ',
            'u' => {
                let bad = "`\\u` must be followed by 1 to 6 hexadecimal digits in braces, \
                           naming a Unicode scalar value";
                if !self.at("{") {
                    return invalid(self, bad.to_string());
                }
                self.pos += 1;
                let digits_start = self.pos;
                while self.pos - digits_start < 6
                    && self.bytes.get(self.pos).is_some_and(u8::is_ascii_hexdigit)
                {
                    self.pos += 1;
                }
                let hex = &self.text[digits_start..self.pos];
                if hex.is_empty() || !self.at("}") {
                    return invalid(self, bad.to_string());
                }
                self.pos += 1;
                match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => c,
                    None => return invalid(self, bad.to_string()),
                }
            }
            c => return invalid(self, format!("invalid escape `\\{}`", c.escape_default())),
        })
    }

    /// One character of a quoted string's line (not a newline, not a
    /// closing quote): pushes its meaning onto `out`.
    fn quoted_char(&mut self, out: &mut String) -> Res<()> {
        if self.ws_escape() {
            return Ok(());
        }
        if self.at("\\") {
            out.push(self.escaped_char()?);
            return Ok(());
        }
        let Some(c) = self.peek() else {
            return fail(self.unclosed_string("string"));
        };
        if is_disallowed(c) {
            return fail(self.disallowed(c));
        }
        self.bump(c);
        out.push(c);
        Ok(())
    }

    fn quoted_string(&mut self) -> Res<String> {
        if self.at("\"\"\"") {
            self.pos += 3;
            if !self.newline() {
                return fail(
                    syntax(
                        span(self.pos - 3, self.pos),
                        "a multi-line string must start with a newline after `\"\"\"`",
                        "newline expected after this",
                    )
                    .with_help("a string on one line is written in single quotes: \"…\""),
                );
            }
            return self.multi_line_quoted();
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Printable ASCII other than `"` and `\\` stands for itself:
            // taken a run at a time, not char by char (most of a host
            // file's strings are only that).
            let plain = self.bytes[self.pos..]
                .iter()
                .take_while(|&&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
                .count();
            out.push_str(&self.text[self.pos..self.pos + plain]);
            self.pos += plain;
            if self.newline_at(self.pos).is_some() {
                return fail(
                    syntax(
                        span(self.string_start, self.pos),
                        "unexpected newline in a single-line string",
                        "not closed on its line",
                    )
                    .with_help(
                        "close the string with `\"`; for a string of several lines, \
                         write `\"\"\"`, a newline, the lines, and `\"\"\"` on a line of its own",
                    ),
                );
            }
            if self.at("\"") {
                self.pos += 1;
                return Ok(out);
            }
            self.quoted_char(&mut out)?;
        }
    }

    /// `(ws-escape | unicode-space)*` then `"""`: the prefix (the spaces
    /// without the escaped ones) if the closing quotes follow.
    fn quoted_closing_prefix(&mut self) -> Option<String> {
        let start = self.pos;
        let mut prefix = String::new();
        loop {
            if self.ws_escape() {
                continue;
            }
            match self.peek() {
                Some(c) if is_unicode_space(c) => {
                    self.bump(c);
                    prefix.push(c);
                }
                _ => break,
            }
        }
        let found = self.at("\"\"\"");
        self.pos = start;
        found.then_some(prefix)
    }

    fn closing_quotes_not_alone(&self) -> Diagnostic {
        syntax(
            span(self.pos, self.pos + 3),
            "the closing `\"\"\"` of a multi-line string must be on a line of its own",
            "text before it on its line",
        )
        .with_help("move `\"\"\"` to the next line, or escape a quote in the text as \\\"")
    }

    /// Scans one line of a multi-line quoted string (checking it) and its
    /// newline; `out` gets its meaning when given.
    fn quoted_line(&mut self, mut out: Option<&mut String>) -> Res<()> {
        let mut scratch = String::new();
        loop {
            if self.newline() {
                return Ok(());
            }
            if self.eof() {
                return fail(self.unclosed_string("multi-line string"));
            }
            if self.at("\"\"\"") {
                return fail(self.closing_quotes_not_alone());
            }
            if self.at("\"") {
                self.pos += 1;
                if let Some(out) = out.as_deref_mut() {
                    out.push('"');
                }
                continue;
            }
            scratch.clear();
            self.quoted_char(&mut scratch)?;
            if let Some(out) = out.as_deref_mut() {
                out.push_str(&scratch);
            }
        }
    }

    /// `(ws-escape | unicode-space)* newline`
    fn empty_line(&mut self) -> bool {
        let start = self.pos;
        while self.ws_escape() || self.unicode_space() {}
        if self.newline() {
            return true;
        }
        self.pos = start;
        false
    }

    fn bad_indent(&self) -> Diagnostic {
        let width = self.peek().map_or(0, char::len_utf8);
        syntax(
            span(self.pos, self.pos + width),
            "every line of a multi-line string must start with the indentation of its closing `\"\"\"`",
            "indented less, or with other whitespace",
        )
    }

    fn multi_line_quoted(&mut self) -> Res<String> {
        let body = self.pos;
        let prefix = loop {
            if let Some(prefix) = self.quoted_closing_prefix() {
                break prefix;
            }
            self.quoted_line(None)?;
        };
        self.pos = body;
        let mut out = String::new();
        loop {
            // The closing line: the prefix, escaped whitespace, `"""`.
            let save = self.pos;
            if self.at(&prefix) {
                self.pos += prefix.len();
                while self.ws_escape() {}
                if self.at("\"\"\"") {
                    self.pos += 3;
                    out.pop();
                    return Ok(out);
                }
                self.pos = save;
            }
            if self.at(&prefix) {
                self.pos += prefix.len();
            } else if !self.peek_empty_line() {
                return fail(self.bad_indent());
            }
            if self.empty_line() {
                out.push('\n');
                continue;
            }
            self.quoted_line(Some(&mut out))?;
            out.push('\n');
        }
    }

    fn peek_empty_line(&mut self) -> bool {
        let save = self.pos;
        let found = self.empty_line();
        self.pos = save;
        found
    }

    fn lone_quote(&self, start: usize) -> Diagnostic {
        syntax(
            span(start, self.pos),
            "a raw string cannot be a single `\"`",
            "invalid raw string",
        )
        .with_help("write it as a quoted string: \"\\\"\"")
    }

    /// `raw-string := '#'+ ('"' … '"' | '"""' newline … '"""') '#'+`
    fn raw_string(&mut self) -> Res<Option<String>> {
        let start = self.pos;
        while self.at("#") {
            self.pos += 1;
        }
        let hashes = self.pos - start;
        let close_hashes = &self.text[start..start + hashes];
        if self.at("\"\"\"") && self.newline_at(self.pos + 3).is_some() {
            self.pos += 3;
            self.newline();
            let value = self.multi_line_raw(close_hashes)?;
            // The crate rejects a body of one `"` for both kinds.
            if value == "\"" {
                return fail(self.lone_quote(start));
            }
            return Ok(Some(value));
        }
        if !self.at("\"") {
            self.pos = start;
            return Ok(None);
        }
        self.pos += 1;
        let body = self.pos;
        loop {
            if self.at("\"") && self.bytes[self.pos + 1..].starts_with(close_hashes.as_bytes()) {
                break;
            }
            let Some(c) = self.peek() else {
                return fail(self.unclosed_string("raw string").with_help(format!(
                    "close it with `\"` and {hashes} `#`, as it was opened"
                )));
            };
            if is_disallowed(c) {
                return fail(self.disallowed(c));
            }
            if is_newline_char(c) {
                return fail(syntax(
                    span(start, self.pos),
                    "unexpected newline in a single-line raw string",
                    "not closed on its line",
                ));
            }
            self.bump(c);
        }
        let value = &self.text[body..self.pos];
        self.pos += 1 + hashes;
        if value == "\"" {
            return fail(self.lone_quote(start));
        }
        Ok(Some(value.to_string()))
    }

    fn at_raw_close(&self, hashes: &str) -> bool {
        self.at("\"\"\"") && self.bytes[self.pos + 3..].starts_with(hashes.as_bytes())
    }

    fn multi_line_raw(&mut self, hashes: &str) -> Res<String> {
        let body = self.pos;
        let prefix = loop {
            let line = self.pos;
            while self.unicode_space() {}
            if self.at_raw_close(hashes) {
                break &self.text[line..self.pos];
            }
            self.pos = line;
            loop {
                if self.newline() {
                    break;
                }
                if self.at_raw_close(hashes) {
                    return fail(self.closing_quotes_not_alone());
                }
                let Some(c) = self.peek() else {
                    return fail(self.unclosed_string("multi-line raw string"));
                };
                if is_disallowed(c) {
                    return fail(self.disallowed(c));
                }
                self.bump(c);
            }
        };
        self.pos = body;
        let mut out = String::new();
        loop {
            let save = self.pos;
            if self.at(prefix) {
                self.pos += prefix.len();
                while self.unicode_space() {}
                if self.at_raw_close(hashes) {
                    self.pos += 3 + hashes.len();
                    out.pop();
                    return Ok(out);
                }
                self.pos = save;
            }
            if self.at(prefix) {
                self.pos += prefix.len();
            } else if !self.peek_empty_line() {
                return fail(self.bad_indent());
            }
            if self.empty_line() {
                out.push('\n');
                continue;
            }
            let line = self.pos;
            // Checked in the first pass: the line ends in a newline.
            while self.newline_at(self.pos).is_none() {
                match self.peek() {
                    Some(c) => self.bump(c),
                    None => return fail(self.unclosed_string("multi-line raw string")),
                }
            }
            out.push_str(&self.text[line..self.pos]);
            self.newline();
            out.push('\n');
        }
    }
}

/// `#null` is read as [`Value::Invalid`], so that a required value
/// written as `#null` is not also reported as missing.
pub(super) fn null_value(at: SourceSpan) -> Diagnostic {
    Diagnostic::error("ctm::null-value", "`#null` is not a valid value here", at)
        .with_label("leave the entry out instead")
}

pub(super) fn type_annotation(at: SourceSpan) -> Diagnostic {
    Diagnostic::error(
        "ctm::type-annotation",
        "type annotations are not used by ctm",
        at,
    )
    .with_label("remove this annotation")
}

/// Parses digits (with `_`) of `radix` into an i128, as the crate does:
/// the magnitude must fit before the sign is applied.
fn integer(digits: &str, radix: u32, negative: bool) -> Option<i128> {
    let mut value: i128 = 0;
    for b in digits.bytes() {
        if b == b'_' {
            continue;
        }
        let digit = (b as char).to_digit(radix)?;
        value = value
            .checked_mul(radix as i128)?
            .checked_add(digit as i128)?;
    }
    Some(if negative { -value } else { value })
}
