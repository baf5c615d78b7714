//! A fast KDL 2.0 reader: text → [`Document`] directly, with the same spans
//! as the `kdl`-crate path in [`super::kdl`].
//!
//! Why it exists: the `kdl` crate (6.7.1) keeps every byte of formatting and
//! parses through winnow with allocated error contexts on the success path;
//! on a 205 KB host file that took about 86 ms, most of ctm's time budget
//! (docs/benchmarks.md). This reader is a plain recursive descent over
//! bytes that builds ctm's own tree and nothing else.
//!
//! It is only a fast path. It returns `None` on any syntax error and on the
//! constructs ctm reports rather than reads (`#null`, type annotations);
//! the caller then parses with the `kdl` crate, which stays the reference
//! for what is valid, the source of every syntax error message, and the
//! comment-preserving model for editing. The grammar below follows the
//! crate's `v2_parser.rs` rule by rule (including where the crate is
//! stricter than the spec, such as `/- node;`), and `tests/kdl_reader.rs`
//! checks that the two agree, spans included, on the official test suite,
//! the examples, the docs and generated documents.

use miette::SourceSpan;

use super::{Document, Node, Spanned, Value, join_spans};

/// The reader declined: a syntax error, or something left to the `kdl`
/// crate path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declined;

type Res<T> = Result<T, Declined>;

/// Deeper nesting than this is left to the `kdl` crate.
const MAX_DEPTH: usize = 256;

/// Reads a whole document, or declines.
pub fn read(text: &str) -> Option<Document> {
    let mut cursor = Cursor {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        discarding: 0,
    };
    cursor.document().ok()
}

/// A parsed entry, before its spans are tightened the way
/// `super::kdl::value_span` does.
struct Entry {
    key: Option<Spanned<String>>,
    value: Value,
    /// Where the entry starts (after any slashdashed entries before it).
    start: usize,
    /// Where the value's own text starts and ends.
    value_start: usize,
    value_end: usize,
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// Above zero while reading something slashdashed away, where `#null`
    /// and type annotations are read and dropped rather than declined.
    discarding: usize,
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

    /// The length of the newline at `at`, if there is one.
    fn newline_at(&self, at: usize) -> Option<usize> {
        match self.bytes.get(at)? {
            b'\r' if self.bytes.get(at + 1) == Some(&b'\n') => Some(2),
            b'\r' | b'\n' | 0x0B | 0x0C => Some(1),
            b if *b < 0x80 => None,
            _ => {
                let c = self.char_at(at)?;
                is_newline_char(c).then(|| c.len_utf8())
            }
        }
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
        self.pos += 2;
        let mut depth = 1usize;
        while depth > 0 {
            if self.at("*/") {
                self.pos += 2;
                depth -= 1;
            } else if self.at("/*") {
                self.pos += 2;
                depth += 1;
            } else {
                let c = self.peek().ok_or(Declined)?;
                self.bump(c);
            }
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
        if !self.eof() {
            return Err(Declined);
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

    fn nodes(&mut self) -> Res<Vec<Node>> {
        self.skip_leading()?;
        let mut nodes = Vec::new();
        if let Some(node) = self.node()? {
            nodes.push(node);
            loop {
                let save = self.pos;
                if !self.node_terminator() {
                    break;
                }
                match self.node()? {
                    Some(node) => nodes.push(node),
                    None => {
                        self.pos = save;
                        break;
                    }
                }
            }
        }
        self.node_terminator();
        self.skip_leading()?;
        Ok(nodes)
    }

    fn node(&mut self) -> Res<Option<Node>> {
        let save = self.pos;
        self.skip_leading()?;
        let node = self.base_node()?;
        if node.is_none() {
            self.pos = save;
        }
        Ok(node)
    }

    fn base_node(&mut self) -> Res<Option<Node>> {
        if self.eof() || self.at("}") {
            return Ok(None);
        }
        if self.at("{") {
            // A child block without a node name.
            return Err(Declined);
        }
        self.type_annotation()?;
        self.node_space0()?;
        let (name, name_start, name_end) = self.identifier()?.ok_or(Declined)?;
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
        let save = self.pos;
        self.before_node_children()?;
        let children = match self.node_children()? {
            Some(children) => {
                let save = self.pos;
                if !self.slashdashed_children()? {
                    self.pos = save;
                }
                children
            }
            None => {
                self.pos = save;
                self.before_node_children()?;
                Vec::new()
            }
        };
        self.node_space0()?;
        Ok(Some(self.build_node(name, entries, children)))
    }

    fn build_node(&self, name: Spanned<String>, entries: Vec<Entry>, children: Vec<Node>) -> Node {
        let mut node_span = name.span;
        let mut args = Vec::new();
        let mut props = Vec::new();
        for entry in entries {
            let value_span = self.value_span(&entry);
            node_span = join_spans(node_span, value_span);
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
        if !(self.slashdash()? && self.discarded(Self::node_children)?.is_some()) {
            self.pos = start;
            return Ok(false);
        }
        loop {
            let save = self.pos;
            if !(self.node_space1()?
                && self.slashdash()?
                && self.discarded(Self::node_children)?.is_some())
            {
                self.pos = save;
                return Ok(true);
            }
        }
    }

    /// `node-children := '{' nodes '}'`
    fn node_children(&mut self) -> Res<Option<Vec<Node>>> {
        if !self.at("{") {
            return Ok(None);
        }
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Declined);
        }
        let nodes = self.nodes()?;
        self.depth -= 1;
        if !self.at("}") {
            return Err(Declined);
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
                self.pos += 1;
                self.node_space0()?;
                let (value, value_start, value_end) = self.value()?.ok_or(Declined)?;
                return Ok(Some(Entry {
                    key: Some(Spanned::new(key, span(key_start, key_end))),
                    value,
                    start,
                    value_start,
                    value_end,
                }));
            }
            self.pos = after_key;
            return Ok(Some(Entry {
                key: None,
                value: Value::String(key),
                start,
                value_start: key_start,
                value_end: key_end,
            }));
        }
        match self.value()? {
            Some((value, value_start, value_end)) => Ok(Some(Entry {
                key: None,
                value,
                start,
                value_start,
                value_end,
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

    /// `type := '(' node-space* string node-space* ')'`. Only read where it
    /// is slashdashed away; elsewhere the crate path reports it.
    fn type_annotation(&mut self) -> Res<bool> {
        if !self.at("(") {
            return Ok(false);
        }
        if self.discarding == 0 {
            return Err(Declined);
        }
        self.pos += 1;
        self.node_space0()?;
        self.identifier()?.ok_or(Declined)?;
        let ends = self.peek() == Some(')') || {
            let save = self.pos;
            let space = self.node_space()?;
            self.pos = save;
            space
        };
        if !ends {
            return Err(Declined);
        }
        self.node_space0()?;
        if !self.at(")") {
            return Err(Declined);
        }
        self.pos += 1;
        Ok(true)
    }

    // ---- values -------------------------------------------------------

    /// `value := keyword | number | string`, with its text's bounds.
    fn value(&mut self) -> Res<Option<(Value, usize, usize)>> {
        if self.type_annotation()? {
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
        Ok(value.map(|value| (value, start, self.pos)))
    }

    fn keyword(&mut self) -> Res<Option<Value>> {
        if !self.at("#") || matches!(self.char_at(self.pos + 1), Some('#' | '"')) {
            return Ok(None);
        }
        self.pos += 1;
        if self.at("null") && self.discarding > 0 {
            self.pos += 4;
            return Ok(Some(Value::Invalid));
        }
        let words: [(&str, Value); 5] = [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
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
        // `#null` (reported by the crate path) or not a keyword at all.
        Err(Declined)
    }

    /// A value must be followed by something that can end it.
    fn value_terminator_check(&self) -> Res<()> {
        let ok = match self.peek() {
            None => true,
            Some('=' | ')' | '{' | '}' | ';' | '\\') => true,
            Some('/') => matches!(self.char_at(self.pos + 1), Some('*' | '/')),
            Some(c) => is_unicode_space(c) || is_newline_char(c),
        };
        if ok { Ok(()) } else { Err(Declined) }
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
        if radix != 10 {
            self.pos += 2;
            let digits = self.digits(radix).ok_or(Declined)?;
            let value = integer(digits, radix, negative)?;
            self.value_terminator_check()?;
            return Ok(Some(Value::Integer(value)));
        }
        let int_part = self.digits(10).ok_or(Declined)?;
        let int_value = integer(int_part, 10, negative)?;
        let mut is_float = false;
        if self.at(".") {
            self.pos += 1;
            let frac = self.digits(10).ok_or(Declined)?;
            integer(frac, 10, false)?;
            is_float = true;
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let exp = self.digits(10).ok_or(Declined)?;
            integer(exp, 10, false)?;
            is_float = true;
        }
        self.value_terminator_check()?;
        if !is_float {
            return Ok(Some(Value::Integer(int_value)));
        }
        let written = self.text[start..self.pos].replace('_', "");
        let float: f64 = written.parse().map_err(|_| Declined)?;
        Ok(Some(Value::Float(float)))
    }

    // ---- strings ------------------------------------------------------

    /// A string used as a node name or property key, with its bounds.
    fn identifier(&mut self) -> Res<Option<(String, usize, usize)>> {
        let start = self.pos;
        Ok(self.string()?.map(|s| (s, start, self.pos)))
    }

    /// `string := identifier-string | raw-string | quoted-string`
    fn string(&mut self) -> Res<Option<String>> {
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
                    return Err(Declined);
                }
            }
        }
        Ok(Some(self.text[start..self.pos].to_string()))
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
        self.pos += 1;
        let c = self.peek().ok_or(Declined)?;
        self.bump(c);
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
                if !self.at("{") {
                    return Err(Declined);
                }
                self.pos += 1;
                let start = self.pos;
                while self.pos - start < 6
                    && self.bytes.get(self.pos).is_some_and(u8::is_ascii_hexdigit)
                {
                    self.pos += 1;
                }
                let hex = &self.text[start..self.pos];
                if hex.is_empty() || !self.at("}") {
                    return Err(Declined);
                }
                self.pos += 1;
                let code = u32::from_str_radix(hex, 16).map_err(|_| Declined)?;
                char::from_u32(code).ok_or(Declined)?
            }
            _ => return Err(Declined),
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
        let c = self.peek().ok_or(Declined)?;
        if is_disallowed(c) {
            return Err(Declined);
        }
        self.bump(c);
        out.push(c);
        Ok(())
    }

    fn quoted_string(&mut self) -> Res<String> {
        if self.at("\"\"\"") {
            self.pos += 3;
            if !self.newline() {
                return Err(Declined);
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
                return Err(Declined);
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

    /// Scans one line of a multi-line quoted string (checking it) and its
    /// newline; `out` gets its meaning when given.
    fn quoted_line(&mut self, mut out: Option<&mut String>) -> Res<()> {
        let mut scratch = String::new();
        loop {
            if self.newline() {
                return Ok(());
            }
            if self.at("\"\"\"") || self.eof() {
                return Err(Declined);
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
                return Err(Declined);
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
                return Err(Declined);
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
            let c = self.peek().ok_or(Declined)?;
            if is_disallowed(c) || is_newline_char(c) {
                return Err(Declined);
            }
            self.bump(c);
        }
        let value = &self.text[body..self.pos];
        self.pos += 1 + hashes;
        if value == "\"" {
            return Err(Declined);
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
                    return Err(Declined);
                }
                let c = self.peek().ok_or(Declined)?;
                if is_disallowed(c) {
                    return Err(Declined);
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
                return Err(Declined);
            }
            if self.empty_line() {
                out.push('\n');
                continue;
            }
            let line = self.pos;
            loop {
                if self.newline_at(self.pos).is_some() {
                    break;
                }
                if self.at_raw_close(hashes) {
                    return Err(Declined);
                }
                let c = self.peek().ok_or(Declined)?;
                self.bump(c);
            }
            out.push_str(&self.text[line..self.pos]);
            self.newline();
            out.push('\n');
        }
    }
}

/// Parses digits (with `_`) of `radix` into an i128, as the crate does:
/// the magnitude must fit before the sign is applied.
fn integer(digits: &str, radix: u32, negative: bool) -> Res<i128> {
    let mut value: i128 = 0;
    for b in digits.bytes() {
        if b == b'_' {
            continue;
        }
        let digit = (b as char).to_digit(radix).ok_or(Declined)?;
        value = value
            .checked_mul(radix as i128)
            .and_then(|v| v.checked_add(digit as i128))
            .ok_or(Declined)?;
    }
    Ok(if negative { -value } else { value })
}
