//! Problems found in user input, each pointing at the text it is about.
//!
//! Every stage collects [`Diagnostic`]s instead of stopping at the first, so
//! a user sees all problems at once. They render as miette reports for the
//! terminal and as JSON (`ctm check --format json`) for editors and the web
//! UI; both come from the same value.

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceSpan};
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
    pub fn report(&self, file_name: &str, text: &str) -> miette::Report {
        miette::Report::new(Rendered(self.clone()))
            .with_source_code(NamedSource::new(file_name, text.to_string()))
    }

    /// The JSON form, with 1-based line and column computed from the text.
    pub fn to_json(&self, file_name: &str, text: &str) -> JsonDiagnostic {
        let (line, column) = line_column(text, self.span.offset());
        JsonDiagnostic {
            file: file_name.to_string(),
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
                    let (line, column) = line_column(text, span.offset());
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

/// `diagnostics` sorted by position, then message: the order they are
/// shown in.
pub fn sorted(diagnostics: &[Diagnostic]) -> Vec<&Diagnostic> {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by(|a, b| (a.span.offset(), &a.message).cmp(&(b.span.offset(), &b.message)));
    sorted
}

/// Line and column (1-based, column in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
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
