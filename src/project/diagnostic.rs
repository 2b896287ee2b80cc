//! Problems found in `release.yaml` and runbooks: where (file, line, column), what, and how
//! to fix it. Rendered with miette (the source line and a caret; colour only on a terminal)
//! or as JSON objects.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

use super::yaml::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A file's text, shared by the diagnostics that point into it.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: &Path, text: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            text: Arc::from(text),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(serialize_with = "serialize_path")]
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub hint: Option<String>,
    #[serde(skip)]
    offset: usize,
    #[serde(skip)]
    len: usize,
    #[serde(skip)]
    source: Option<Arc<str>>,
}

fn serialize_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&path.display())
}

impl Diagnostic {
    pub fn error(file: &SourceFile, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: file.path.clone(),
            line: span.line,
            column: span.column,
            message: message.into(),
            hint: None,
            offset: span.offset,
            len: span.len,
            source: Some(file.text.clone()),
        }
    }

    pub fn warning(file: &SourceFile, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, span, message)
        }
    }

    /// A problem about a file as a whole (missing, unreadable).
    pub fn about_file(path: &Path, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            hint: None,
            offset: 0,
            len: 0,
            source: None,
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn with_optional_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    fn kind(&self) -> &'static str {
        match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }

    fn kinds(&self) -> &'static str {
        match self.severity {
            Severity::Error => "errors",
            Severity::Warning => "warnings",
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:column`, the way editors and terminals link to a place.
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// The miette view of a diagnostic.
struct Report<'a> {
    diagnostic: &'a Diagnostic,
    source: Option<CharColumns>,
    heading: String,
}

/// A named source whose spans report columns in characters, as the heading and `--json`
/// do (miette counts bytes, which disagrees after any non-ASCII text).
struct CharColumns(NamedSource<Arc<str>>);

impl SourceCode for CharColumns {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let contents = self
            .0
            .read_span(span, context_lines_before, context_lines_after)?;
        let text = self.0.inner();
        let start = span.offset().min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let column = text
            .get(line_start..start)
            .map_or(contents.column(), |prefix| prefix.chars().count());
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.0.name().to_owned(),
            contents.data(),
            *contents.span(),
            contents.line(),
            if context_lines_before == 0 && context_lines_after == 0 {
                column
            } else {
                contents.column()
            },
            contents.line_count(),
        )))
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.heading)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.heading)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let span = LabeledSpan::new(None, self.diagnostic.offset, self.diagnostic.len);
        Some(Box::new(std::iter::once(span)))
    }
}

/// How many times the same diagnostic (file, message and hint) is shown before the rest
/// are counted on one line.
const MAX_REPEATS: usize = 3;

/// Renders diagnostics for a person: each with its location, source line, caret and hint,
/// then a one-line summary.
pub fn render(diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::none()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(120)
        .with_wrap_lines(false)
        .with_context_lines(1);
    let mut out = String::new();
    // The same problem in many places (a step pasted a thousand times) is shown a few
    // times, then counted: the output stays readable and its size bounded.
    // For each distinct problem: how many were shown, and its line in `repeats` once over.
    let mut seen: std::collections::HashMap<_, (usize, Option<usize>)> =
        std::collections::HashMap::new();
    let mut repeats: Vec<(&Diagnostic, usize)> = Vec::new();
    for diagnostic in diagnostics {
        let key = (
            diagnostic.file.as_path(),
            diagnostic.severity,
            diagnostic.message.as_str(),
            diagnostic.hint.as_deref(),
        );
        let (shown, repeat) = seen.entry(key).or_insert((0, None));
        if *shown == MAX_REPEATS {
            if let Some(i) = repeat {
                repeats[*i].1 += 1;
            } else {
                *repeat = Some(repeats.len());
                repeats.push((diagnostic, 1));
            }
            continue;
        }
        *shown += 1;
        let kind = match diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let heading = format!("{kind}: {}: {}", diagnostic.location(), diagnostic.message);
        let source = diagnostic
            .source
            .as_ref()
            .filter(|_| diagnostic.line > 0)
            .map(|text| {
                CharColumns(NamedSource::new(
                    diagnostic.file.display().to_string(),
                    text.clone(),
                ))
            });
        let report = Report {
            diagnostic,
            source,
            heading,
        };
        if handler.render_report(&mut out, &report).is_err() {
            out.push_str(&report.heading);
            out.push('\n');
        }
        out.push('\n');
    }
    for (diagnostic, more) in repeats {
        let _ = writeln!(
            out,
            "  … and {more} more {} like this in {}: {}\n",
            plural(more, diagnostic.kind(), diagnostic.kinds()),
            diagnostic.file.display(),
            diagnostic.message
        );
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if errors > 0 {
        let files = {
            let mut files: Vec<_> = diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| &d.file)
                .collect();
            files.sort();
            files.dedup();
            files.len()
        };
        let _ = writeln!(
            out,
            "{errors} {} in {files} {}{}: nothing was run",
            plural(errors, "error", "errors"),
            plural(files, "file", "files"),
            if warnings > 0 {
                format!(", {warnings} {}", plural(warnings, "warning", "warnings"))
            } else {
                String::new()
            }
        );
    }
    out
}

pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
