//! Diagnostics: source files, byte spans and the problems found in them.
//!
//! Like Terraform's `tfdiags`, every stage reports problems as values rather than
//! failing on the first one, so `dr validate` can print all of them at once. A
//! [`Diagnostic`] carries its own source file, so it renders with file, line, column
//! and a labelled span through miette.

pub mod escape;

use std::fmt;
use std::sync::{Arc, OnceLock};

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SpanContents,
};

pub use escape::escape;

/// A half-open byte range inside one [`SourceFile`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span { start: clamp(start), end: clamp(end.max(start)) }
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The text of one input file, with a line index for turning offsets into positions.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
    /// The text with control characters masked, for quoting it under a diagnostic;
    /// made once per file, on first use.
    masked: OnceLock<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        let text = text.into();
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Arc::new(SourceFile { name: name.into(), text, line_starts, masked: OnceLock::new() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Byte offset of a (1-based line, 0-based character column) position.
    pub fn offset_of(&self, line: usize, col_chars: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let in_line = rest.char_indices().nth(col_chars).map(|(i, _)| i).unwrap_or(rest.len());
        start + in_line
    }

    /// 0-based index of the line holding a byte offset.
    fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position_of(&self, offset: usize) -> (usize, usize) {
        let line_idx = self.line_index(offset);
        let start = self.line_starts[line_idx];
        let col = self.text.get(start..offset).map(|s| s.chars().count()).unwrap_or(0);
        (line_idx + 1, col + 1)
    }

    /// The span narrowed to its first line, so multi-line nodes get a readable label.
    pub fn first_line(&self, span: Span) -> Span {
        let start = span.start as usize;
        let end = (span.end as usize).min(self.text.len());
        let cut = self.text.get(start..end).and_then(|s| s.find('\n')).map(|i| start + i);
        match cut {
            Some(c) if c > start => Span::new(start, c),
            _ => span,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One labelled location of a diagnostic.
#[derive(Clone, Debug)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One problem found in the input, with where it is and what to do about it.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `drplan::yaml::syntax`.
    pub code: &'static str,
    pub message: String,
    pub source: Option<Arc<SourceFile>>,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            source: None,
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }

    pub fn in_file(mut self, source: &Arc<SourceFile>) -> Diagnostic {
        self.source = Some(source.clone());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into() });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:column` of the primary label, as editors and CI annotations expect.
    pub fn location(&self) -> Option<String> {
        let source = self.source.as_ref()?;
        let label = self.labels.first()?;
        let (line, col) = source.position_of(label.span.start as usize);
        Some(format!("{}:{line}:{col}", source.name()))
    }

    /// 1-based line of the primary label.
    pub fn line(&self) -> Option<usize> {
        let source = self.source.as_ref()?;
        Some(source.position_of(self.labels.first()?.span.start as usize).0)
    }

    /// Renders the diagnostic the way the CLI prints it (no colour when `color` is false).
    pub fn render(&self, color: bool) -> String {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        let mut out = String::new();
        let report = Rendered::from(self);
        if handler.render_report(&mut out, &report).is_err() {
            out = format!("{self}\n");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display is text for a terminal or a log: escaped like the rendered form.
        match self.location() {
            Some(loc) => write!(f, "{}: {}", escape(&loc), escape(&self.message)),
            None => f.write_str(&escape(&self.message)),
        }
    }
}

/// Adapter giving a [`Diagnostic`] to miette's renderer, with everything taken from
/// the input escaped ([`escape`]) so a plan cannot send control sequences to the terminal.
struct Rendered {
    diag: Diagnostic,
    snippet: Option<Snippet>,
}

impl From<&Diagnostic> for Rendered {
    fn from(diag: &Diagnostic) -> Rendered {
        let mut diag = diag.clone();
        diag.message = escape(&diag.message).into_owned();
        diag.help = diag.help.map(|h| escape(&h).into_owned());
        for label in &mut diag.labels {
            label.message = escape(&label.message).into_owned();
        }
        let snippet = diag.source.clone().map(|file| Snippet { name: escape(file.name()).into_owned(), file });
        Rendered { diag, snippet }
    }
}

/// The source lines quoted under a diagnostic. Reads only the lines around a span
/// (through the file's line index, so a file with thousands of diagnostics renders
/// in linear time), masks control characters (byte for byte, so label offsets stay
/// valid) and reports columns in characters, as [`SourceFile::position_of`] does.
struct Snippet {
    name: String,
    file: Arc<SourceFile>,
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let file = &self.file;
        let text = file.masked.get_or_init(|| escape::mask(&file.text).into_owned());
        let (start, end) = (span.offset(), span.offset() + span.len());
        if end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return Err(MietteError::OutOfBounds);
        }
        let first = file.line_index(start);
        let last = file.line_index(end.saturating_sub(1).max(start));
        let (from, column) = if context_lines_before == 0 {
            (start, file.position_of(start).1 - 1)
        } else {
            (file.line_starts[first.saturating_sub(context_lines_before)], 0)
        };
        let to = if context_lines_after == 0 {
            end
        } else {
            file.line_starts.get(last + context_lines_after + 1).copied().unwrap_or(text.len())
        };
        let line = if context_lines_before == 0 { first } else { first.saturating_sub(context_lines_before) };
        let line_count = file.line_index(to.saturating_sub(1).max(from));
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            &text.as_bytes()[from..to],
            (from, to - from).into(),
            line,
            column,
            line_count,
        )))
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.diag, f)
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.snippet.as_ref().map(|n| n as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let source = self.diag.source.as_ref()?;
        let labels = self.diag.labels.iter().map(move |l| {
            let span = source.first_line(l.span);
            LabeledSpan::new(Some(l.message.clone()), span.start as usize, span.len())
        });
        Some(Box::new(labels))
    }
}

/// All problems found in one run of a stage, in the order they were found.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diag: Diagnostic) {
        self.0.push(diag);
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(other);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorted by file and position so output is stable and reads top to bottom.
    pub fn sorted(mut self) -> Diagnostics {
        self.0.sort_by_key(|d| {
            let name = d.source.as_ref().map(|s| s.name().to_string()).unwrap_or_default();
            let at = d.labels.first().map(|l| l.span.start).unwrap_or(0);
            (name, at)
        });
        self
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// `1 step`, `3 steps`: a count with its noun (regular English plurals only).
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}
