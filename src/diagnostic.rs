//! Problems found in user input, each pointing at the text it is about.
//!
//! Every stage collects [`Diagnostic`]s instead of stopping at the first, so
//! a user sees all problems at once. They render as miette reports for the
//! terminal and as JSON (`ctm check --format json`) for editors and the web
//! UI; both come from the same value, and both take lines and columns from
//! one [`SourceFile`].

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable identifier, e.g. `ctm::unknown-node`.
    pub code: &'static str,
    pub message: String,
    pub span: SourceSpan,
    pub label: Option<String>,
    pub help: Option<String>,
    /// Other places that explain this one ("first defined here").
    pub related: Vec<(SourceSpan, String)>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>, span: SourceSpan) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, span: SourceSpan, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Attaches the file so that miette can show the offending lines.
    /// Indexes the text for this one diagnostic: to render several, make
    /// one [`SourceFile`] and use [`Diagnostic::report_in`].
    pub fn report(&self, file_name: &str, text: &str) -> miette::Report {
        self.report_in(&Arc::new(SourceFile::new(file_name, text)))
    }

    /// Attaches the file so that miette can show the offending lines.
    pub fn report_in(&self, file: &Arc<SourceFile>) -> miette::Report {
        miette::Report::new(Rendered(self.clone())).with_source_code(Arc::clone(file))
    }

    /// The JSON form, with 1-based line and column. Indexes the text for
    /// this one diagnostic: for several, use [`Diagnostic::to_json_in`].
    pub fn to_json(&self, file_name: &str, text: &str) -> JsonDiagnostic {
        self.to_json_in(&SourceFile::new(file_name, text))
    }

    /// The JSON form, with 1-based line and column from `file`.
    pub fn to_json_in(&self, file: &SourceFile) -> JsonDiagnostic {
        let (line, column) = file.line_column(self.span.offset());
        JsonDiagnostic {
            file: file.name.clone(),
            line,
            column,
            span: JsonSpan {
                offset: self.span.offset(),
                length: self.span.len(),
            },
            severity: self.severity,
            code: self.code,
            message: self.message.clone(),
            label: self.label.clone(),
            help: self.help.clone(),
            related: self
                .related
                .iter()
                .map(|(span, label)| {
                    let (line, column) = file.line_column(span.offset());
                    JsonRelated {
                        line,
                        column,
                        span: JsonSpan {
                            offset: span.offset(),
                            length: span.len(),
                        },
                        label: label.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// The JSON form of each of `diagnostics` in the file `file_name` holding
/// `text`, from one index of the text: a file can have a thousand
/// diagnostics, and the text be megabytes.
pub fn json_in_file<'a>(
    file_name: &str,
    text: &str,
    diagnostics: impl IntoIterator<Item = &'a Diagnostic>,
) -> Vec<JsonDiagnostic> {
    let file = SourceFile::new(file_name, text);
    diagnostics
        .into_iter()
        .map(|d| d.to_json_in(&file))
        .collect()
}

/// Each of `diagnostics` as a report showing its place in `text`, from
/// one index of the text (see [`json_in_file`]).
pub fn reports_in_file<'a>(
    file_name: &str,
    text: &str,
    diagnostics: impl IntoIterator<Item = &'a Diagnostic>,
) -> Vec<miette::Report> {
    let file = Arc::new(SourceFile::new(file_name, text));
    diagnostics
        .into_iter()
        .map(|d| d.report_in(&file))
        .collect()
}

/// `diagnostics` sorted by position, then message: the order they are
/// shown in.
pub fn sorted(diagnostics: &[Diagnostic]) -> Vec<&Diagnostic> {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by(|a, b| (a.span.offset(), &a.message).cmp(&(b.span.offset(), &b.message)));
    sorted
}

/// At most this many diagnostics are reported at once, by each of
/// `config::parse` and `validate::validate`; one more then says how many
/// were left out. A file of 100,000 mistakes is reported in a moment, and
/// its report is still readable.
pub const MAX_REPORTED: usize = 1000;

/// The diagnostic that stands for `count` left out, the first at `at`.
pub fn omitted(count: usize, at: SourceSpan) -> Diagnostic {
    Diagnostic::error(
        "ctm::too-many-problems",
        format!("{count} more problems are not shown"),
        at,
    )
    .with_label("the first of them")
    .with_help(format!(
        "ctm reports at most {MAX_REPORTED} problems at once; fix these and check again"
    ))
}

/// Keeps the first [`MAX_REPORTED`] diagnostics in the order of the text,
/// and one saying how many more there were.
pub fn limit(diagnostics: &mut Vec<Diagnostic>) {
    if diagnostics.len() <= MAX_REPORTED {
        return;
    }
    diagnostics.sort_by_key(|d| d.span.offset());
    let at = diagnostics[MAX_REPORTED].span;
    let count = diagnostics.len() - MAX_REPORTED;
    diagnostics.truncate(MAX_REPORTED);
    diagnostics.push(omitted(count, at));
}

/// The length of the newline that starts at byte `at`, if one does: any
/// of the newlines KDL 2.0 defines (CRLF, CR, LF, NEL, VT, FF, LS, PS).
/// Lines are counted by these in both syntaxes: TOML allows only LF and
/// CRLF and reports the others as errors, which are then on the line an
/// editor shows them on.
pub fn newline_len(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at..)? {
        [b'\r', b'\n', ..] => Some(2),
        [b'\r' | b'\n' | 0x0B | 0x0C, ..] => Some(1),
        // U+0085 NEL; U+2028 LS and U+2029 PS.
        [0xC2, 0x85, ..] => Some(2),
        [0xE2, 0x80, 0xA8 | 0xA9, ..] => Some(3),
        _ => None,
    }
}

/// Bytes between two column checkpoints; see [`SourceFile`].
const CHECKPOINT: usize = 4096;

/// Excerpts longer than this (plus the span) are cut to the span and this
/// much text around it, so that a diagnostic on a long line stays short.
const MAX_EXCERPT: usize = 1024;

/// A file indexed for positions: where each line starts, by
/// [`newline_len`], and how many characters come before every
/// `CHECKPOINT`th byte, so that a line and column cost a binary search and
/// at most `CHECKPOINT` bytes of counting, however long the file or the
/// line. The JSON renderer asks it for lines and columns; miette reads the
/// file through it ([`SourceCode`]), so the terminal shows the same ones.
/// miette itself breaks lines at LF and CRLF only, so the text it is shown
/// has every other newline written as one of those, of the same length.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    shown: String,
    line_starts: Vec<usize>,
    chars_before: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: &str) -> SourceFile {
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        let mut shown: Option<Vec<u8>> = None;
        let mut at = 0;
        while at < bytes.len() {
            // Only these bytes can start a newline.
            let Some(next) = bytes[at..]
                .iter()
                .position(|b| matches!(b, b'\r' | b'\n' | 0x0B | 0x0C | 0xC2 | 0xE2))
            else {
                break;
            };
            at += next;
            let Some(len) = newline_len(bytes, at) else {
                at += 1;
                continue;
            };
            let as_shown: &[u8] = match &bytes[at..at + len] {
                b"\n" | b"\r\n" => b"",
                [_] => b"\n",
                [_, _] => b"\r\n",
                _ => b" \r\n",
            };
            if !as_shown.is_empty() {
                shown.get_or_insert_with(|| bytes.to_vec())[at..at + len].copy_from_slice(as_shown);
            }
            at += len;
            line_starts.push(at);
        }
        // Whole newlines were replaced by ASCII ones: still UTF-8.
        let shown = shown.map_or_else(
            || text.to_string(),
            |bytes| String::from_utf8(bytes).unwrap_or_else(|_| text.to_string()),
        );
        // Counted in the text as shown, as columns are.
        let chars_before = shown
            .as_bytes()
            .chunks(CHECKPOINT)
            .scan(0, |count, chunk| {
                let before = *count;
                *count += chars_in(chunk);
                Some(before)
            })
            .collect();
        SourceFile {
            name: name.into(),
            shown,
            line_starts,
            chars_before,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Line and column (1-based, the column in characters) of a byte
    /// offset; an offset past the end is taken as the end.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.shown.len());
        let line = self.line(offset);
        (line + 1, self.column(offset, line) + 1)
    }

    /// The 0-based line `offset` is on.
    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset) - 1
    }

    /// The 0-based column, in characters, of `offset` on `line`.
    fn column(&self, offset: usize, line: usize) -> usize {
        self.chars_to(offset) - self.chars_to(self.line_starts[line])
    }

    /// Characters before byte `offset`.
    fn chars_to(&self, offset: usize) -> usize {
        let bytes = self.shown.as_bytes();
        let offset = offset.min(bytes.len());
        let block = offset / CHECKPOINT;
        let counted = self.chars_before.get(block).copied().unwrap_or(0);
        counted + chars_in(&bytes[(block * CHECKPOINT).min(offset)..offset])
    }

    /// Where line `line` ends, after its newline.
    fn line_end(&self, line: usize) -> usize {
        self.line_starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.shown.len())
    }

    fn floor_boundary(&self, mut at: usize) -> usize {
        while !self.shown.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    fn ceil_boundary(&self, mut at: usize) -> usize {
        while !self.shown.is_char_boundary(at) {
            at += 1;
        }
        at
    }
}

/// Characters in UTF-8 bytes: the bytes that do not continue a character.
fn chars_in(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count()
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let start = span.offset();
        let end = start + span.len();
        if end > self.shown.len() {
            return Err(MietteError::OutOfBounds);
        }
        let (mut from, mut to) = if context_lines_before == 0 && context_lines_after == 0 {
            // Where a label is: just its span.
            (start, end)
        } else {
            let first = self.line(start);
            let last = self.line(end.saturating_sub(1).max(start));
            let from_line = first.saturating_sub(context_lines_before);
            let to_line = (last + context_lines_after).min(self.line_starts.len() - 1);
            (self.line_starts[from_line], self.line_end(to_line))
        };
        if to - from > MAX_EXCERPT + span.len() {
            let margin = MAX_EXCERPT / 2;
            from = from.max(self.floor_boundary(start.saturating_sub(margin)));
            to = to.min(self.ceil_boundary((end + margin).min(self.shown.len())));
        }
        let line = self.line(from);
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            &self.shown.as_bytes()[from..to],
            SourceSpan::new(from.into(), to - from),
            line,
            self.column(from, line),
            self.line(to.saturating_sub(1).max(from)) - line + 1,
        )))
    }
}

#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub span: JsonSpan,
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub label: Option<String>,
    pub help: Option<String>,
    pub related: Vec<JsonRelated>,
}

#[derive(Debug, Serialize)]
pub struct JsonSpan {
    pub offset: usize,
    pub length: usize,
}

#[derive(Debug, Serialize)]
pub struct JsonRelated {
    pub line: usize,
    pub column: usize,
    pub span: JsonSpan,
    pub label: String,
}

/// Adapter to miette's report machinery.
#[derive(Debug)]
struct Rendered(Diagnostic);

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.0.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.0.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(self.0.label.clone(), self.0.span);
        let related = self
            .0
            .related
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}
