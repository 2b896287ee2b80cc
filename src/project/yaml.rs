//! A spanned YAML tree, and a serde `Deserializer` over it.
//!
//! Files are parsed once by serde-saphyr (its budgets refuse alias bombs and deep nesting)
//! into a generic [`Node`] tree where every node, key included, keeps its source span.
//! The typed models are then deserialized from sub-trees of it, one step, component or gate
//! at a time, so that validation can report every problem of a file in one pass, and every
//! serde error (unknown key, wrong type, bad value) comes back with the span of the node
//! it is about and, where serde lists the valid names, the nearest one.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, Visitor};

use super::spanned::SPANNED_MARKER;

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Nesting deeper than this is refused.
pub const MAX_DEPTH: usize = 64;
/// More values than this (aliases expanded) are refused.
pub const MAX_NODES: usize = 100_000;
/// What the file is, in parse errors; [`parse`]'s callers say "a runbook" or "release.yaml".
pub const ONE_DOCUMENT: &str = "this file";

/// Where a node stands in its file: 1-based line and column, byte offset and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub offset: usize,
    pub len: usize,
}

impl Span {
    /// True for the span of something with no position (a default or a synthesised value).
    pub fn is_unknown(&self) -> bool {
        self.line == 0
    }
}

/// A YAML value. Scalars other than strings keep their source spelling, so that a field
/// typed as a string gets exactly what was written (`0x10`, `1e3`, `007`, `yes`).
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool, String),
    Int(i64, String),
    UInt(u64, String),
    Float(f64, String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

impl Node {
    pub fn new(span: Span, value: Value) -> Self {
        Self { span, value }
    }

    /// The value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of `key` in a mapping node.
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.entries()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&Node, &Node)> {
        let entries: &[(Node, Node)] = match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        };
        entries.iter().map(|(k, v)| (k, v))
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar's text as written, for any scalar (string, number, boolean).
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s)
            | Value::Bool(_, s)
            | Value::Int(_, s)
            | Value::UInt(_, s)
            | Value::Float(_, s) => Some(s),
            _ => None,
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    /// Calls `visit` on every string scalar below this node (keys excluded), depth first.
    pub fn visit_strings<'a>(&'a self, visit: &mut impl FnMut(&'a Node, &'a str)) {
        match &self.value {
            Value::Str(s) => visit(self, s),
            Value::Seq(items) => items.iter().for_each(|n| n.visit_strings(visit)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| v.visit_strings(visit)),
            _ => {}
        }
    }

    fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Bool(..) => "a boolean",
            Value::Int(..) | Value::UInt(..) | Value::Float(..) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why a file could not be parsed at all.
#[derive(Debug)]
pub struct ParseError {
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

/// Stack for the parser thread: nesting up to [`MAX_DEPTH`] recurses through serde, which
/// in debug builds needs more than the 2 MiB of a test or tokio worker thread.
const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Parses YAML text into a spanned tree, refusing oversized input, alias bombs and deep
/// nesting fast. Safe to call from any thread: the recursion runs on a thread of its own
/// with a large stack.
pub fn parse(source: &str) -> Result<Node, ParseError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("yaml-parser".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || parse_on_this_thread(source))
            .map_or_else(
                |_| parse_on_this_thread(source),
                |handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(ParseError {
                            message: "the YAML parser failed on this input".into(),
                            span: Span::default(),
                            hint: Some("please report this file as a bug".into()),
                        })
                    })
                },
            )
    })
}

fn parse_on_this_thread(source: &str) -> Result<Node, ParseError> {
    if source.len() > MAX_FILE_BYTES {
        return Err(ParseError {
            message: format!(
                "file is {} bytes, over the limit of {} bytes (1 MiB)",
                source.len(),
                MAX_FILE_BYTES
            ),
            span: Span::default(),
            hint: Some("split it: configuration and runbooks are meant to be small".into()),
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: MAX_NODES,
            max_recorded_anchor_events: 50_000,
            max_total_scalar_bytes: 4 * MAX_FILE_BYTES,
            max_documents: 1,
        },
        strict_booleans: true,
        // Duplicates reach the tree, where validation reports each with both places.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    };
    let raw: serde_saphyr::Spanned<RawNode> = serde_saphyr::from_str_with_options(source, options)
        .map_err(|e| parse_error(source, &e))?;
    let index = LineIndex::new(source);
    Ok(raw_to_node(source, &index, raw))
}

fn parse_error(source: &str, error: &serde_saphyr::Error) -> ParseError {
    use serde_saphyr::MessageFormatter;
    let inner = error.without_snippet();
    let raw = serde_saphyr::DefaultMessageFormatter
        .format_message(inner)
        .into_owned();
    let (message, hint) = if raw.contains("budget breached") && raw.contains("Depth") {
        (
            format!("refused: nesting deeper than {MAX_DEPTH} levels"),
            Some(
                "configuration and runbooks need a few levels: flatten this structure".to_string(),
            ),
        )
    } else if raw.contains("budget breached") && raw.contains("Documents") {
        let line = second_document_line(source);
        let span = Span {
            line,
            column: 1,
            offset: LineIndex::new(source).offset(source, line, 1),
            len: 3,
        };
        return ParseError {
            message: format!(
                "{ONE_DOCUMENT} is one YAML document; a second one starts at line {line}: remove the `---`"
            ),
            span,
            hint: Some(
                "`---` starts a new document: keep one per file (move the second into a file of its own)"
                    .to_string(),
            ),
        };
    } else if raw.contains("budget breached") && has_anchors(source) {
        (
            "refused: this file expands to far more values than a configuration holds (anchors and aliases that multiply: an alias bomb?)".to_string(),
            Some("write the values out, or use fewer anchors and aliases".to_string()),
        )
    } else if raw.contains("budget breached") {
        (
            format!("refused: too many values (more than {MAX_NODES}) for a configuration file"),
            Some("split it: configuration and runbooks are meant to be small".to_string()),
        )
    } else if raw.contains("tab") {
        (
            raw,
            Some("YAML indentation must use spaces, not tabs".to_string()),
        )
    } else if raw.contains("unclosed quote") {
        (raw, None)
    } else {
        let hint = unclosed_flow(
            source,
            error
                .location()
                .map_or(0, |l| u32::try_from(l.line()).unwrap_or(u32::MAX)),
        );
        (raw, hint)
    };
    let index = LineIndex::new(source);
    let mut span = error
        .location()
        .map(|l| {
            let line = u32::try_from(l.line()).unwrap_or(u32::MAX);
            let column = u32::try_from(l.column()).unwrap_or(u32::MAX);
            let offset = l
                .span()
                .byte_offset()
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or_else(|| index.offset(source, line, column));
            Span {
                line,
                column,
                offset,
                len: 1,
            }
        })
        .unwrap_or_default();
    let mut hint = hint;
    if message.contains("tab") {
        // The scanner reports where it gave up, often the line above: point at the tab.
        if let Some((line, column)) = indentation_tab(source, span.line) {
            span = Span {
                line,
                column,
                offset: index.offset(source, line, column),
                len: 1,
            };
        }
    } else if message.contains("unclosed quote") {
        let (line, column, quote) = opening_quote(source, span);
        hint = Some(format!(
            "the `{quote}` opened at line {line}, column {column} is never closed: add the closing `{quote}`"
        ));
    }
    ParseError {
        message,
        span,
        hint,
    }
}

/// The tab in a line's indentation nearest to `near` (1-based line and column).
fn indentation_tab(source: &str, near: u32) -> Option<(u32, u32)> {
    source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            let column = line[..indent].find('\t')?;
            let line_no = u32::try_from(i + 1).ok()?;
            Some((line_no, u32::try_from(column + 1).ok()?))
        })
        .min_by_key(|&(line, _)| (line.abs_diff(near), std::cmp::Reverse(line)))
}

/// Where the quote the scanner found unclosed opens: at the error's position when a quote
/// is there, else the last quote opened and not closed before it.
fn opening_quote(source: &str, at: Span) -> (u32, u32, char) {
    if let Some(ch @ ('"' | '\'')) = source.get(at.offset..).and_then(|s| s.chars().next()) {
        return (at.line, at.column, ch);
    }
    let mut open = (at.line, at.column, '"');
    for (i, line) in source.lines().enumerate().take(at.line as usize) {
        let mut quote: Option<char> = None;
        for (column, ch) in line.chars().enumerate() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => {
                    quote = Some(ch);
                    open = (
                        u32::try_from(i + 1).unwrap_or(u32::MAX),
                        u32::try_from(column + 1).unwrap_or(u32::MAX),
                        ch,
                    );
                }
                (None, '#') => break,
                _ => {}
            }
        }
    }
    open
}

/// The line of the `---` that starts a second document (the first `---` when content comes
/// before it).
fn second_document_line(source: &str) -> u32 {
    let mut content = false;
    for (i, line) in source.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            if content {
                return u32::try_from(i + 1).unwrap_or(u32::MAX);
            }
            content = true; // what follows is the first document's content
        } else if !trimmed.is_empty() && !trimmed.starts_with('#') && !trimmed.starts_with('%') {
            content = true;
        }
    }
    1
}

/// Whether the text defines any anchor (`&name`), outside quotes and comments: only then
/// can a file of this size expand to too many values.
fn has_anchors(source: &str) -> bool {
    source.lines().any(|line| {
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for ch in line.chars() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => quote = Some(ch),
                (None, '#') if previous.is_whitespace() => return false,
                (None, '&') if previous.is_whitespace() || "[{,:-".contains(previous) => {
                    return true;
                }
                _ => {}
            }
            previous = ch;
        }
        false
    })
}

/// When a parse error follows a `[` or `{` that was never closed, names where it opened:
/// the parser itself only notices on a later line.
fn unclosed_flow(source: &str, error_line: u32) -> Option<String> {
    let mut open: Vec<(char, usize, usize)> = Vec::new();
    for (index, line) in source.lines().enumerate().take(error_line as usize) {
        let mut quote: Option<char> = None;
        for (column, ch) in line.chars().enumerate() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => quote = Some(ch),
                (None, '#') => break,
                (None, '[' | '{') => open.push((ch, index + 1, column + 1)),
                (None, ']' | '}') => {
                    open.pop();
                }
                _ => {}
            }
        }
    }
    let (ch, line, column) = open.first()?;
    let close = if *ch == '[' { ']' } else { '}' };
    Some(format!(
        "the `{ch}` opened at line {line}, column {column} is never closed: add `{close}`"
    ))
}

/// Maps (line, char column) back to byte offsets for parser errors that lack them.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn offset(&self, source: &str, line: u32, column: u32) -> usize {
        let Some(&start) = self.starts.get((line as usize).saturating_sub(1)) else {
            return source.len();
        };
        let rest = &source[start..];
        rest.char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(source.len(), |(i, _)| start + i)
    }
}

/// The shape serde-saphyr fills through `deserialize_any`.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<serde_saphyr::Spanned<RawNode>>),
    Map(
        Vec<(
            serde_saphyr::Spanned<String>,
            serde_saphyr::Spanned<RawNode>,
        )>,
    ),
}

impl<'de> de::Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawNode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }
            fn visit_none<E>(self) -> Result<RawNode, E> {
                Ok(RawNode::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<RawNode, D2::Error> {
                <RawNode as de::Deserialize>::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
                Ok(RawNode::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
                Ok(RawNode::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
                Ok(RawNode::UInt(v))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
                Ok(RawNode::Str(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
                Ok(RawNode::Str(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
                Ok(RawNode::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
                Ok(RawNode::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
                Ok(RawNode::Str(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
                Ok(RawNode::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<RawNode, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(RawNode::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<RawNode, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = a.next_key()? {
                    entries.push((key, a.next_value()?));
                }
                Ok(RawNode::Map(entries))
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

fn span_of(source: &str, index: &LineIndex, location: &serde_saphyr::Location) -> Span {
    let line = u32::try_from(location.line()).unwrap_or(u32::MAX);
    let column = u32::try_from(location.column()).unwrap_or(u32::MAX);
    let span = location.span();
    let offset = span
        .byte_offset()
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| o <= source.len())
        .unwrap_or_else(|| index.offset(source, line, column));
    let len = span
        .byte_len()
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(0)
        .min(source.len() - offset);
    Span {
        line,
        column,
        offset,
        len,
    }
}

fn raw_to_node(source: &str, index: &LineIndex, raw: serde_saphyr::Spanned<RawNode>) -> Node {
    let span = span_of(source, index, &raw.referenced);
    // The spelling of a plain scalar is where it is defined (an alias points elsewhere).
    let spelling = || {
        let defined = span_of(source, index, &raw.defined);
        source
            .get(defined.offset..defined.offset + defined.len)
            .unwrap_or_default()
            .to_owned()
    };
    let value = match raw.value {
        RawNode::Null => Value::Null,
        RawNode::Bool(b) => Value::Bool(b, spelling()),
        RawNode::Int(i) => Value::Int(i, non_empty(&spelling(), || i.to_string())),
        RawNode::UInt(u) => Value::UInt(u, non_empty(&spelling(), || u.to_string())),
        RawNode::Float(f) => Value::Float(f, non_empty(&spelling(), || f.to_string())),
        RawNode::Str(s) => Value::Str(s),
        RawNode::Seq(items) => Value::Seq(
            items
                .into_iter()
                .map(|item| raw_to_node(source, index, item))
                .collect(),
        ),
        RawNode::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Node::new(span_of(source, index, &k.referenced), Value::Str(k.value));
                    (key, raw_to_node(source, index, v))
                })
                .collect(),
        ),
    };
    let span = if let Value::Bool(_, s) = &value
        && span.len == 0
    {
        Span {
            len: s.len(),
            ..span
        }
    } else {
        span
    };
    Node::new(span, value)
}

fn non_empty(s: &str, fallback: impl FnOnce() -> String) -> String {
    if s.trim().is_empty() {
        fallback()
    } else {
        s.trim().to_owned()
    }
}

// ---------------------------------------------------------------------------------------
// Deserializing typed models from the tree.

/// A serde error with the span of the node it is about and, for unknown names, a hint.
#[derive(Debug, Clone)]
pub struct DeError {
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
    /// The key whose value the error is about (the innermost).
    pub key: Option<String>,
    /// The required key that is missing, for that error.
    pub missing: Option<&'static str>,
}

impl DeError {
    fn at(mut self, span: Span) -> Self {
        if self.span.is_unknown() {
            self.span = span;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "`{key}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            span: Span::default(),
            hint: None,
            key: None,
            missing: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self {
            message: format!("unknown key `{field}`"),
            span: Span::default(),
            hint: Some(suggest(field, expected)),
            key: None,
            missing: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self {
            message: format!("unknown value `{variant}`"),
            span: Span::default(),
            hint: Some(suggest(variant, expected)),
            key: None,
            missing: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            message: format!("missing required key `{field}`"),
            span: Span::default(),
            hint: Some(format!("add `{field}:` here")),
            key: None,
            missing: Some(field),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            for_people(exp),
            describe(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid value {}: expected {}",
            describe(&unexp),
            for_people(exp)
        ))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format_args!("key `{field}` is given twice"))
    }
}

/// What serde expected, in words for people rather than Rust type names.
fn for_people(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "`true` or `false`".into(),
        "a sequence" => "a list".into(),
        "a string" | "a borrowed string" => "a string".into(),
        _ if text.starts_with("struct ") || text.starts_with("a map") => "a mapping of keys".into(),
        _ if text.starts_with("enum ") => "one of the listed values".into(),
        _ => text,
    }
}

fn describe(unexp: &de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Str(s) => format!("the string {s:?}"),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "a mapping".into(),
        de::Unexpected::Unit => "nothing (null)".into(),
        other => other.to_string(),
    }
}

/// "did you mean `x`?" when a valid name is close, and always the valid names.
pub fn suggest(given: &str, valid: &[&str]) -> String {
    suggest_listed(given, valid, valid.len().max(MAX_CANDIDATES))
}

/// How many names a hint lists when they come from the user's files (step ids, stages,
/// components): a long list would make every diagnostic as long as the file.
pub const MAX_CANDIDATES: usize = 5;

/// As [`suggest`] for names written by the user: each listed once, and at most the
/// [`MAX_CANDIDATES`] nearest to `given`, then "… and N more".
pub fn suggest_among(given: &str, valid: &[&str]) -> String {
    suggest_listed(given, valid, MAX_CANDIDATES)
}

fn suggest_listed(given: &str, valid: &[&str], max: usize) -> String {
    let names = candidates(given, valid.iter().copied(), max);
    match nearest(given, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? (valid: {names})"),
        None if valid.is_empty() => "nothing is accepted here".into(),
        None => format!("valid: {names}"),
    }
}

/// The names as a hint lists them: "`a`, `b`, `c`", each once, in written order when there
/// are at most `max`, else the `max` nearest to `given` (by edit distance) and "… and N more".
pub fn candidates<'a>(given: &str, valid: impl IntoIterator<Item = &'a str>, max: usize) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut names: Vec<&str> = valid.into_iter().filter(|v| seen.insert(*v)).collect();
    let more = names.len().saturating_sub(max);
    if more > 0 {
        let mut ranked: Vec<(usize, usize, &str)> = names
            .iter()
            .enumerate()
            .map(|(i, v)| (strsim::levenshtein(given, v), i, *v))
            .collect();
        ranked.select_nth_unstable(max - 1);
        ranked.truncate(max);
        ranked.sort_unstable();
        names = ranked.into_iter().map(|(_, _, v)| v).collect();
    }
    let mut list = names
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        let _ = fmt::Write::write_fmt(&mut list, format_args!(" … and {more} more"));
    }
    list
}

/// The valid name closest to `given`, if it is close enough to be a likely typo.
pub fn nearest<'a>(given: &str, valid: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    valid
        .into_iter()
        .map(|v| (strsim::jaro_winkler(given, v), v))
        .filter(|(score, v)| *score >= 0.8 || (given.len() > 3 && v.contains(given)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v)
}

/// Deserializes a typed value from a node.
pub fn from_node<'a, T: de::Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    T::deserialize(NodeDeserializer(node)).map_err(|e| e.at(node.span))
}

#[derive(Clone, Copy)]
pub struct NodeDeserializer<'a>(pub &'a Node);

impl NodeDeserializer<'_> {
    fn type_error<T>(self, exp: &dyn de::Expected) -> Result<T, DeError> {
        Err(DeError::custom(format_args!(
            "expected {}, found {}",
            for_people(exp),
            self.0.kind()
        ))
        .at(self.0.span))
    }
}

macro_rules! deserialize_number {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            let converted: Option<$ty> = match &self.0.value {
                Value::Int(i, _) => <$ty>::try_from(*i).ok(),
                Value::UInt(u, _) => <$ty>::try_from(*u).ok(),
                _ => return self.type_error(&visitor),
            };
            match converted {
                Some(v) => visitor.$visit::<DeError>(v).map_err(|e| e.at(self.0.span)),
                None => Err(DeError::custom(format_args!(
                    "{} is out of range for {}", self.0.scalar_text().unwrap_or("?"), stringify!($ty)
                )).at(self.0.span)),
            }
        }
    )*};
}

impl<'a> Deserializer<'a> for NodeDeserializer<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b, _) => visitor.visit_bool(*b),
            Value::Int(i, _) => visitor.visit_i64(*i),
            Value::UInt(u, _) => visitor.visit_u64(*u),
            Value::Float(f, _) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.at(self.0.span))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Bool(b, _) => visitor.visit_bool(*b),
            _ => self.type_error(&visitor),
        }
    }

    deserialize_number! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    #[expect(clippy::cast_precision_loss, reason = "YAML integers used as floats")]
    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Float(f, _) => visitor.visit_f64(*f),
            Value::Int(i, _) => visitor.visit_f64(*i as f64),
            Value::UInt(u, _) => visitor.visit_f64(*u as f64),
            _ => self.type_error(&visitor),
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Bool(_, s) | Value::Int(_, s) | Value::UInt(_, s) | Value::Float(_, s) => {
                visitor.visit_borrowed_str(s)
            }
            _ => self.type_error(&visitor),
        }
        .map_err(|e| e.at(self.0.span))
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Null => visitor.visit_unit(),
            _ => self.type_error(&visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED_MARKER {
            return visitor.visit_seq(SpannedAccess {
                node: self.0,
                field: 0,
            });
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqAccess {
                    items: items.iter(),
                })
                .map_err(|e| e.at(self.0.span)),
            _ => self.type_error(&visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(entries) => visitor
                .visit_map(MapAccess {
                    entries: entries.iter(),
                    value: None,
                })
                .map_err(|e| e.at(self.0.span)),
            _ => self.type_error(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Str(_)
            | Value::Bool(..)
            | Value::Int(..)
            | Value::UInt(..)
            | Value::Float(..) => {
                let text = self.0.scalar_text().unwrap_or_default();
                visitor
                    .visit_enum(text.into_deserializer())
                    .map_err(|e: DeError| e.at(self.0.span))
            }
            Value::Map(entries) if entries.len() == 1 => visitor
                .visit_enum(EnumAccess { entry: &entries[0] })
                .map_err(|e| e.at(self.0.span)),
            _ => Err(DeError::custom(format_args!(
                "expected one of {}, found {}",
                variants
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.0.kind()
            ))
            .at(self.0.span)),
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'a> de::SeqAccess<'a> for SeqAccess<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDeserializer(node))
                .map(Some)
                .map_err(|e| e.at(node.span)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, &'a Node)>,
}

impl<'a> de::MapAccess<'a> for MapAccess<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some((key, value));
                seed.deserialize(NodeDeserializer(key))
                    .map(Some)
                    .map_err(|e| e.at(key.span))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .value
            .take()
            .ok_or_else(|| DeError::custom("value requested before its key"))?;
        seed.deserialize(NodeDeserializer(node)).map_err(|mut e| {
            if e.key.is_none() {
                e.key = key.scalar_text().map(str::to_owned);
            }
            e.at(node.span)
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess<'a> {
    entry: &'a (Node, Node),
}

impl<'a> de::EnumAccess<'a> for EnumAccess<'a> {
    type Error = DeError;
    type Variant = VariantAccess<'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let (key, value) = self.entry;
        let variant = seed
            .deserialize(NodeDeserializer(key))
            .map_err(|e| e.at(key.span))?;
        Ok((variant, VariantAccess(value)))
    }
}

struct VariantAccess<'a>(&'a Node);

impl<'a> de::VariantAccess<'a> for VariantAccess<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.0.value {
            Value::Null => Ok(()),
            _ => Err(DeError::custom("this value takes no settings").at(self.0.span)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(NodeDeserializer(self.0))
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        NodeDeserializer(self.0).deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        NodeDeserializer(self.0).deserialize_map(visitor)
    }
}

/// Hands a `Spanned<T>` its position (line, column, offset, len) and then its value.
struct SpannedAccess<'a> {
    node: &'a Node,
    field: u8,
}

impl<'a> de::SeqAccess<'a> for SpannedAccess<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let span = self.node.span;
        let field = self.field;
        self.field += 1;
        let number = match field {
            0 => u64::from(span.line),
            1 => u64::from(span.column),
            2 => span.offset as u64,
            3 => span.len as u64,
            4 => return seed.deserialize(NodeDeserializer(self.node)).map(Some),
            _ => return Ok(None),
        };
        seed.deserialize(de::value::U64Deserializer::<DeError>::new(number))
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_their_spelling_for_string_fields() {
        let node = parse("a: 0x10\nb: 007\nc: 1e3\nd: .inf\ne: true\n").unwrap();
        let map: std::collections::BTreeMap<String, String> = from_node(&node).unwrap();
        assert_eq!(map["a"], "0x10");
        assert_eq!(map["b"], "007");
        assert_eq!(map["c"], "1e3");
        assert_eq!(map["d"], ".inf");
        assert_eq!(map["e"], "true");
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let node = parse("first: 1\nsecond:\n  - x\n  - y\n").unwrap();
        let key = node.key("second").unwrap();
        assert_eq!((key.span.line, key.span.column), (2, 1));
        let y = &node.get("second").unwrap().items()[1];
        assert_eq!((y.span.line, y.span.column), (4, 5));
        assert_eq!(
            &"first: 1\nsecond:\n  - x\n  - y\n"[y.span.offset..][..1],
            "y"
        );
    }

    #[test]
    fn unknown_field_names_the_nearest_key() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Step {
            id: String,
            needs: Option<Vec<String>>,
        }
        let node = parse("id: a\nnedds: [b]\n").unwrap();
        let err = from_node::<Step>(&node).unwrap_err();
        assert_eq!(err.message, "unknown key `nedds`");
        assert!(err.hint.unwrap().starts_with("did you mean `needs`?"));
        assert_eq!((err.span.line, err.span.column), (2, 1));
    }

    #[test]
    fn candidate_lists_are_short_and_without_duplicates() {
        assert_eq!(candidates("x", ["a", "b", "a"], 5), "`a`, `b`");
        let many: Vec<String> = (0..4000).map(|i| format!("s{i}")).collect();
        let list = candidates("s12", many.iter().map(String::as_str), 5);
        assert!(list.starts_with("`s12`, "), "{list}");
        assert!(list.ends_with(" … and 3995 more"), "{list}");
        assert_eq!(list.matches('`').count(), 10, "{list}");
        let hint = suggest_among("stagin", &["development", "staging", "staging"]);
        assert_eq!(
            hint,
            "did you mean `staging`? (valid: `development`, `staging`)"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.span.line >= 2, "{err:?}");
    }

    #[test]
    fn alias_bomb_is_refused_fast() {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10u8 {
            let (prev, name) = ((b'a' + i - 1) as char, (b'a' + i) as char);
            let aliases = vec![format!("*{prev}"); 9].join(",");
            std::fmt::Write::write_fmt(&mut s, format_args!("{name}: &{name} [{aliases}]\n"))
                .unwrap();
        }
        let start = std::time::Instant::now();
        let err = parse(&s).unwrap_err();
        assert!(err.message.starts_with("refused"), "{err:?}");
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let s = format!("x: {}{}\n", "[".repeat(100), "]".repeat(100));
        let err = parse(&s).unwrap_err();
        assert!(err.message.starts_with("refused"), "{err:?}");
    }
}
