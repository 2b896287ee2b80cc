//! Line coverage from a coverage report (SPEC §3, the `coverage` gate), in the four formats
//! the gate reads: Cobertura XML, LCOV, coverage.py JSON and llvm-cov JSON (`llvm-cov
//! export -format=text`, which is also what `cargo llvm-cov --json` writes).
//!
//! The numbers are the report's own. Each reader takes the totals its producer wrote
//! (Cobertura's root `lines-covered`/`lines-valid`, coverage.py's `totals`, the sum of
//! llvm-cov's `data[*].totals.lines`, LCOV's `LH`/`LF`) and counts line by line only where
//! a report has no totals (Cobertura without the root attributes) or where its totals
//! cannot simply be added up (LCOV, whose records may repeat a source file: concatenated
//! shards, several test binaries). Counting merges by source file and line number, and a
//! line is covered when any record says it ran; so a line listed twice counts once.
//!
//! Reports are large and come from anywhere, so every reader is a single forward pass
//! without recursion (the XML and LCOV scanners here are hand-written; JSON goes through
//! `serde_json`, which skips the values it is not asked for without building them and refuses
//! nesting deeper than 128), and malformed input is an error naming the line, never a
//! panic. A report that counts no coverable line is an error too: 0 of 0 is no evidence.
//!
//! Errors are one sentence for the person on call: what is wrong with the file, then what
//! to do. They do not name the file; the caller does.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::project::config::CoverageFormat;

/// Covered and coverable lines, as the report counts them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineCoverage {
    pub covered: u64,
    pub total: u64,
    pub format: CoverageFormat,
}

impl LineCoverage {
    /// `100 × covered / total`. Multiplying first keeps whole percentages exact (4 of 5 is
    /// exactly 80.0, so `min: 80` passes). [`parse`] never returns a `total` of 0; a value
    /// built by hand with one measures 0.0, so that a gate fails closed.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        #[expect(clippy::cast_precision_loss, reason = "exact below 2^53 lines")]
        let (covered, total) = (self.covered as f64, self.total as f64);
        covered * 100.0 / total
    }
}

/// Reads the line coverage of a report, in `format` or, when `None`, in the format detected
/// from its content (see [`detect`]). A `format` that contradicts the content is an error;
/// a `format` given for content that [`detect`] does not recognise is tried as asked (the
/// escape hatch for an unusual but valid report).
pub fn parse(bytes: &[u8], format: Option<CoverageFormat>) -> Result<LineCoverage, String> {
    parse_classified(bytes, format).map_err(|(_, message)| message)
}

/// What is wrong with a report that cannot be read, for the fix shown under the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Nothing in the file: the coverage tool failed or did not run.
    Empty,
    /// The content is none of the four formats.
    Unrecognised,
    /// `format:` names another format than the content's.
    FormatMismatch,
    /// The format is known but the content is broken, truncated or contradicts itself
    /// (`LH` above `LF`, more covered lines than lines).
    Damaged,
    /// The report counts no coverable line (0 of 0).
    NoLines,
}

impl Problem {
    /// How to make the gate readable again.
    pub fn fix(self) -> &'static str {
        match self {
            Problem::Empty => {
                "run the tests with coverage on, then evaluate the gates again (the report must be written after the tests)"
            }
            Problem::Unrecognised => {
                "point `report:` at a Cobertura XML, LCOV, coverage.py JSON or llvm-cov JSON report, or set `format:`"
            }
            Problem::FormatMismatch => {
                "remove `format:` from the gate, or point `report:` at a report in that format"
            }
            Problem::Damaged => {
                "regenerate the report with the coverage tool after the tests: this one is damaged or contradicts itself"
            }
            Problem::NoLines => {
                "check that the tests ran with coverage on and that the report covers the component's code, then regenerate it"
            }
        }
    }
}

/// [`parse`], with what kind of problem stops it.
pub fn parse_classified(
    bytes: &[u8],
    format: Option<CoverageFormat>,
) -> Result<LineCoverage, (Problem, String)> {
    let text = without_bom(bytes);
    if text.trim_ascii().is_empty() {
        return Err((Problem::Empty, EMPTY.to_owned()));
    }
    let (format, json) = match (format, sniff(text)) {
        (None, Sniff::Found(found, json)) => (found, json),
        (None, Sniff::Unknown(why)) => return Err((Problem::Unrecognised, why)),
        (Some(asked), Sniff::Found(found, _)) if asked != found => {
            let (found, _) = names(found);
            let (asked_name, asked_key) = names(asked);
            return Err((
                Problem::FormatMismatch,
                format!(
                    "the report is {found} but the gate says `format: {asked_key}`: remove \
                     `format:` to use the report as it is, or point `report:` at the \
                     {asked_name} report"
                ),
            ));
        }
        (Some(asked), Sniff::Found(_, json)) => (asked, json),
        (Some(asked), Sniff::Unknown(_)) => (asked, None),
    };
    let damaged = |message: String| (Problem::Damaged, message);
    let (covered, total) = match format {
        CoverageFormat::Cobertura => read_cobertura(text).map_err(damaged)?,
        CoverageFormat::Lcov => read_lcov(text).map_err(damaged)?,
        CoverageFormat::CoveragePy => {
            read_coverage_py(&json_report(text, json).map_err(damaged)?).map_err(damaged)?
        }
        CoverageFormat::LlvmCov => {
            read_llvm_cov(&json_report(text, json).map_err(damaged)?).map_err(damaged)?
        }
    };
    if total == 0 {
        return Err((Problem::NoLines, NO_LINES.to_owned()));
    }
    if covered > total {
        return Err(damaged(format!(
            "the report is inconsistent: it counts {covered} covered lines out of {total}; \
             regenerate it"
        )));
    }
    Ok(LineCoverage {
        covered,
        total,
        format,
    })
}

const EMPTY: &str = "the report is empty: the coverage tool failed or did not run; \
                     regenerate it after the tests";

const NO_LINES: &str = "the report counts no coverable line (0 of 0), so there is nothing \
                        to compare with `min`: check that the tests ran with coverage on \
                        and that the report covers the component's code";

/// The report's format, judged from its content: an XML root element `<coverage>` (and not
/// Clover's, which shares the name) is Cobertura; a first line `TN:` or `SF:` (after blank
/// lines and `#` comments) is LCOV; a JSON object is llvm-cov JSON when its `type` is
/// `llvm.coverage.json.export` or it has `data`, and coverage.py JSON when its `totals` has
/// `num_statements`. XML and LCOV are judged from their start; JSON is read whole.
pub fn detect(bytes: &[u8]) -> Option<CoverageFormat> {
    match sniff(without_bom(bytes)) {
        Sniff::Found(format, _) => Some(format),
        Sniff::Unknown(_) => None,
    }
}

/// How messages name a format, and how `format:` spells it.
fn names(format: CoverageFormat) -> (&'static str, &'static str) {
    match format {
        CoverageFormat::Cobertura => ("Cobertura XML", "cobertura"),
        CoverageFormat::Lcov => ("LCOV", "lcov"),
        CoverageFormat::CoveragePy => ("coverage.py JSON", "coverage-py"),
        CoverageFormat::LlvmCov => ("llvm-cov JSON", "llvm-cov"),
    }
}

fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// What detection found; a parsed JSON report is kept so that it is read only once.
enum Sniff {
    Found(CoverageFormat, Option<JsonReport>),
    /// Why the content is none of the formats, as the error to show.
    Unknown(String),
}

fn sniff(text: &[u8]) -> Sniff {
    match text.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'<') => sniff_xml(text),
        Some(b'{') => match parse_json(text) {
            Ok(report) => match json_format(&report) {
                Some(format) => Sniff::Found(format, Some(report)),
                None => Sniff::Unknown(NOT_COVERAGE_JSON.to_owned()),
            },
            Err(why) => Sniff::Unknown(why),
        },
        _ if starts_like_lcov(text) => Sniff::Found(CoverageFormat::Lcov, None),
        _ => Sniff::Unknown(unrecognised(text)),
    }
}

fn unrecognised(text: &[u8]) -> String {
    if text.starts_with(b"\xFF\xFE") || text.starts_with(b"\xFE\xFF") {
        "the report is UTF-16 text, which none of the formats uses: write it as UTF-8 and \
         try again"
            .to_owned()
    } else if text.starts_with(b"\x1F\x8B") {
        "the report is gzip-compressed: decompress it (`gunzip`) and point `report:` at the \
         result"
            .to_owned()
    } else {
        "not a coverage report this tool reads: expected Cobertura XML, LCOV, coverage.py \
         JSON or llvm-cov JSON; regenerate it in one of these, or set `format:` on the gate \
         if it is one of them"
            .to_owned()
    }
}

/// At most 60 characters of `bytes`, for quoting the input in a message.
fn quoted(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.into_owned(),
    }
}

/// A whole number written in decimal digits only (no sign, no exponent).
fn parse_count(digits: &[u8]) -> Option<u64> {
    let digits = digits.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether an execution count is not zero; counts of any length are accepted, since only
/// zero or not matters.
fn parse_hit(digits: &[u8]) -> Option<bool> {
    let digits = digits.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().any(|&digit| digit != b'0'))
}

/// 1 + the number of line feeds before byte `at`.
fn line_at(text: &[u8], at: usize) -> usize {
    let before = text.get(..at).unwrap_or(text);
    before.split(|&byte| byte == b'\n').count()
}

// ---------------------------------------------------------------------------------------
// Lines merged by file

/// Lines seen per source file, for the reports counted line by line. A line is stored as
/// `number << 1 | covered`, so that one sort per file puts every mention of a line side by
/// side with its covered mention last, whatever order the records came in: merging costs
/// O(n log n) however often a file repeats.
#[derive(Default)]
struct LineTable<'a> {
    files: HashMap<&'a [u8], FileLines>,
}

#[derive(Default)]
struct FileLines {
    lines: Vec<u64>,
    /// The largest `(covered, total)` the file's records state (LCOV `LH`, `LF`). The file
    /// counts the larger of these and what its lines add up to: see [`read_lcov`].
    summary: (u64, u64),
}

impl<'a> LineTable<'a> {
    /// Records line `number` of `file`; false when the number is too large to store.
    fn add_line(&mut self, file: &'a [u8], number: u64, covered: bool) -> bool {
        let Some(packed) = number.checked_mul(2) else {
            return false;
        };
        let entry = self.files.entry(file).or_default();
        entry.lines.push(packed | u64::from(covered));
        true
    }

    fn add_summary(&mut self, file: &'a [u8], covered: u64, total: u64) {
        let entry = self.files.entry(file).or_default();
        entry.summary = (entry.summary.0.max(covered), entry.summary.1.max(total));
    }

    /// `(covered, total)` over all files; `None` when the sum overflows.
    fn totals(self) -> Option<(u64, u64)> {
        let (mut covered, mut total) = (0_u64, 0_u64);
        for (_, mut file) in self.files {
            file.lines.sort_unstable();
            let (mut file_covered, mut file_total) = (0_u64, 0_u64);
            for mentions in file.lines.chunk_by(|a, b| a >> 1 == b >> 1) {
                file_total += 1;
                file_covered += mentions.last().map_or(0, |last| last & 1);
            }
            covered = covered.checked_add(file_covered.max(file.summary.0))?;
            total = total.checked_add(file_total.max(file.summary.1))?;
        }
        Some((covered, total))
    }
}

const OVERFLOW: &str = "the report's line counts add up to more than 2^64: it is damaged; \
                        regenerate it";

// ---------------------------------------------------------------------------------------
// LCOV

fn starts_like_lcov(text: &[u8]) -> bool {
    text.split(|&byte| byte == b'\n')
        .map(<[u8]>::trim_ascii)
        .find(|line| !line.is_empty() && !line.starts_with(b"#"))
        .is_some_and(|line| line.starts_with(b"TN:") || line.starts_with(b"SF:"))
}

/// The record being read: from `SF:` to `end_of_record`.
struct LcovRecord<'a> {
    path: &'a [u8],
    has_lines: bool,
    hit: Option<u64>,
    found: Option<u64>,
}

/// Sums an LCOV tracefile. Per source file (`SF:`, compared byte for byte), the covered
/// count is the larger of two figures, and so is the total: what its `DA:` lines add up
/// to, merged by line across all its records, and the largest `LH` (`LF`) one of its
/// records states. For a file in one record whose `LH`/`LF` match its `DA:` lines (the
/// usual case) both figures are the same. They differ when the writer's own totals count
/// lines it lists no `DA:` for, as llvm-cov's LCOV export does (tests/fixtures/coverage:
/// 33 `DA:` lines, 12 hit, against `LF:34`, `LH:13` and `llvm-cov report`'s 13 of 34):
/// the stated totals are then the producer's figure. When a file repeats, its `DA:` union
/// is the measure, and a single record's `LH`/`LF` (all there is for records without
/// `DA:` lines) is a lower bound of the union, never an overstatement.
fn read_lcov(text: &[u8]) -> Result<(u64, u64), String> {
    let malformed = |number: usize, what: String| {
        format!("the LCOV report is malformed at line {number}: {what}; regenerate it")
    };
    let mut table = LineTable::default();
    let mut record: Option<LcovRecord<'_>> = None;
    let mut last_line = 0;
    for (index, raw) in text.split(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        let line = raw.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        last_line = number;
        if line == b"end_of_record" {
            let Some(done) = record.take() else {
                return Err(malformed(number, "`end_of_record` without an `SF:`".into()));
            };
            close_lcov_record(&mut table, &done).map_err(|what| malformed(number, what))?;
        } else if let Some(path) = line.strip_prefix(b"SF:") {
            if let Some(open) = &record {
                return Err(malformed(
                    number,
                    format!(
                        "`SF:` comes before the `end_of_record` of `{}`",
                        quoted(open.path)
                    ),
                ));
            }
            record = Some(LcovRecord {
                path,
                has_lines: false,
                hit: None,
                found: None,
            });
        } else if let Some(tag @ (b"DA:" | b"LH:" | b"LF:")) = line.get(..3) {
            let Some(open) = record.as_mut() else {
                return Err(malformed(
                    number,
                    format!("`{}` outside a record (no `SF:` before it)", quoted(tag)),
                ));
            };
            read_lcov_line(&mut table, open, line).map_err(|what| malformed(number, what))?;
        } else if !is_lcov_tag(line) {
            return Err(malformed(
                number,
                format!("`{}` is not an LCOV record", quoted(line)),
            ));
        }
    }
    if let Some(open) = record {
        return Err(format!(
            "the LCOV report ends inside the record of `{}` (no `end_of_record` after line \
             {last_line}): the file is truncated; regenerate it",
            quoted(open.path)
        ));
    }
    if table.files.is_empty() {
        return Err(NO_SOURCE_FILE.to_owned());
    }
    table.totals().ok_or_else(|| OVERFLOW.to_owned())
}

const NO_SOURCE_FILE: &str = "the LCOV report lists no source file (no `SF:` record): \
                              check that coverage was collected for the component's code";

/// A `DA:`, `LH:` or `LF:` line of `record`.
fn read_lcov_line<'a>(
    table: &mut LineTable<'a>,
    record: &mut LcovRecord<'a>,
    line: &'a [u8],
) -> Result<(), String> {
    if let Some(fields) = line.strip_prefix(b"DA:") {
        let mut fields = fields.split(|&byte| byte == b',');
        let number = fields.next().and_then(parse_count);
        let hit = fields.next().and_then(parse_hit);
        let (Some(number), Some(hit)) = (number, hit) else {
            return Err(format!("`{}` is not `DA:<line>,<count>`", quoted(line)));
        };
        if !table.add_line(record.path, number, hit) {
            return Err(format!("line number {number} is out of range"));
        }
        record.has_lines = true;
    } else if let Some(value) = line.strip_prefix(b"LH:") {
        record.hit = Some(parse_count(value).ok_or_else(|| not_a_count(line))?);
    } else if let Some(value) = line.strip_prefix(b"LF:") {
        record.found = Some(parse_count(value).ok_or_else(|| not_a_count(line))?);
    } else {
        return Err(format!("`{}` is not an LCOV record", quoted(line)));
    }
    Ok(())
}

fn not_a_count(line: &[u8]) -> String {
    format!("`{}` is not a whole number", quoted(line))
}

fn close_lcov_record<'a>(table: &mut LineTable<'a>, record: &LcovRecord<'a>) -> Result<(), String> {
    match (record.hit, record.found) {
        (Some(hit), Some(found)) if hit > found => Err(format!(
            "the record of `{}` has `LH:{hit}` above `LF:{found}`",
            quoted(record.path)
        )),
        (Some(hit), Some(found)) => {
            table.add_summary(record.path, hit, found);
            Ok(())
        }
        (None, None) => {
            // A file with no line data (only functions, say) is still a file of the report.
            table.files.entry(record.path).or_default();
            Ok(())
        }
        _ if record.has_lines => Ok(()),
        _ => Err(format!(
            "the record of `{}` has no `DA:` line and only one of `LH:` and `LF:`",
            quoted(record.path)
        )),
    }
}

/// An LCOV line this reader skips: `TN:`, `FN:`, `FNDA:`, `BRDA:`, `VER:` and any other
/// `UPPERCASE:` tag that newer lcov versions may add.
fn is_lcov_tag(line: &[u8]) -> bool {
    line.iter()
        .position(|&byte| byte == b':')
        .is_some_and(|colon| {
            colon > 0
                && line[..colon]
                    .iter()
                    .all(|&byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
        })
}

// ---------------------------------------------------------------------------------------
// JSON: coverage.py and llvm-cov

const LLVM_EXPORT_TYPE: &str = "llvm.coverage.json.export";

const NOT_COVERAGE_JSON: &str = "the report is JSON but neither coverage.py JSON (`coverage \
                                 json`) nor llvm-cov JSON (`llvm-cov export`, `cargo llvm-cov \
                                 --json`): regenerate it with one of these, or as LCOV or \
                                 Cobertura XML";

/// The parts of either JSON format that are read; everything else (per-file data, which
/// is most of the bytes) is skipped by `serde_json` without being built.
#[derive(Deserialize)]
struct JsonReport {
    #[serde(rename = "type")]
    kind: Option<Value>,
    totals: Option<Value>,
    data: Option<Vec<LlvmExport>>,
}

#[derive(Deserialize)]
struct LlvmExport {
    totals: Option<Value>,
}

fn parse_json(text: &[u8]) -> Result<JsonReport, String> {
    use serde_json::error::Category;
    let report = serde_json::from_slice(text).map_err(|error| match error.classify() {
        Category::Eof => format!(
            "the JSON report ends early (line {}): the file is truncated; regenerate it",
            error.line()
        ),
        Category::Syntax | Category::Io => {
            format!("the report is not valid JSON ({error}): regenerate it")
        }
        Category::Data => NOT_COVERAGE_JSON.to_owned(),
    })?;
    // serde would also read a struct from an array; neither format is one.
    if text.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(NOT_COVERAGE_JSON.to_owned());
    }
    Ok(report)
}

fn json_report(text: &[u8], parsed: Option<JsonReport>) -> Result<JsonReport, String> {
    parsed.map_or_else(|| parse_json(text), Ok)
}

fn json_format(report: &JsonReport) -> Option<CoverageFormat> {
    let llvm_type = report.kind.as_ref().and_then(Value::as_str) == Some(LLVM_EXPORT_TYPE);
    if llvm_type || report.data.is_some() {
        Some(CoverageFormat::LlvmCov)
    } else if report
        .totals
        .as_ref()
        .is_some_and(|totals| totals.get("num_statements").is_some())
    {
        Some(CoverageFormat::CoveragePy)
    } else {
        None
    }
}

/// `object.key` as a whole number, or an error naming `place` and saying how to `fix` it.
fn json_count(object: &Value, key: &str, place: &str, fix: &str) -> Result<u64, String> {
    object
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{place} has no whole number `{key}`: {fix}"))
}

fn read_coverage_py(report: &JsonReport) -> Result<(u64, u64), String> {
    const FIX: &str = "regenerate it with `coverage json`";
    let totals = report
        .totals
        .as_ref()
        .filter(|totals| totals.is_object())
        .ok_or_else(|| format!("the coverage.py JSON report has no `totals` object: {FIX}"))?;
    let place = "the coverage.py JSON report's `totals`";
    let covered = json_count(totals, "covered_lines", place, FIX)?;
    let total = json_count(totals, "num_statements", place, FIX)?;
    Ok((covered, total))
}

fn read_llvm_cov(report: &JsonReport) -> Result<(u64, u64), String> {
    const FIX: &str =
        "regenerate it with `llvm-cov export -format=text` or `cargo llvm-cov --json`";
    let exports = report.data.as_deref().unwrap_or_default();
    if exports.is_empty() {
        return Err(format!(
            "the llvm-cov JSON report has no `data` entry: {FIX}"
        ));
    }
    let (mut covered, mut total) = (0_u64, 0_u64);
    for (index, export) in exports.iter().enumerate() {
        let place = format!("the llvm-cov JSON report's `data[{index}].totals.lines`");
        let lines = export
            .totals
            .as_ref()
            .and_then(|totals| totals.get("lines"))
            .ok_or_else(|| format!("{place} is missing: {FIX}"))?;
        let export_covered = json_count(lines, "covered", &place, FIX)?;
        let export_total = json_count(lines, "count", &place, FIX)?;
        covered = covered.checked_add(export_covered).ok_or(OVERFLOW)?;
        total = total.checked_add(export_total).ok_or(OVERFLOW)?;
    }
    Ok((covered, total))
}

// ---------------------------------------------------------------------------------------
// Cobertura XML

fn sniff_xml(text: &[u8]) -> Sniff {
    match XmlScanner::new(text).next_event() {
        Ok(Some(XmlEvent::Start {
            name, attributes, ..
        })) => match check_root(name, attributes) {
            Ok(()) => Sniff::Found(CoverageFormat::Cobertura, None),
            Err(why) => Sniff::Unknown(why),
        },
        Ok(Some(XmlEvent::End { at, .. })) => {
            Sniff::Unknown(xml_malformed(text, at, "it starts with an end tag"))
        }
        Ok(None) => Sniff::Unknown(NO_ROOT.to_owned()),
        Err(error) => Sniff::Unknown(error.message(text)),
    }
}

const CLOVER: &str = "the report is Clover XML, not Cobertura: configure the coverage tool \
                      to write Cobertura XML or LCOV instead";

const NO_ROOT: &str = "the report is XML without any element: it is truncated or not a \
                       coverage report; regenerate it";

fn check_root(name: &[u8], attributes: &[u8]) -> Result<(), String> {
    if name != b"coverage" {
        return Err(format!(
            "the report is XML whose root element is `<{}>`, not Cobertura's `<coverage>`: \
             regenerate it as Cobertura XML or LCOV",
            quoted(name)
        ));
    }
    if matches!(attribute(attributes, b"clover"), Ok(Some(_))) {
        return Err(CLOVER.to_owned());
    }
    Ok(())
}

fn xml_malformed(text: &[u8], at: usize, what: &str) -> String {
    format!(
        "the XML report is malformed at line {}: {what}; regenerate it",
        line_at(text, at)
    )
}

/// Reads a Cobertura report: the root's `lines-covered`/`lines-valid` when both are there
/// and `lines-valid` is not 0, otherwise every `<line number hits>` merged by the
/// `filename` of its `<class>` and its number (Cobertura repeats a method's lines under
/// `<methods>`, and a file may have several classes). The whole document is walked either
/// way, so that a truncated report is an error even when its root has the totals.
fn read_cobertura(text: &[u8]) -> Result<(u64, u64), String> {
    let mut scanner = XmlScanner::new(text);
    let mut open: Vec<&[u8]> = Vec::new();
    // None before the root; then the root's totals, if it has them.
    let mut root: Option<Option<(u64, u64)>> = None;
    let mut class_file: &[u8] = b"";
    let mut table = LineTable::default();
    while let Some(event) = scanner.next_event().map_err(|error| error.message(text))? {
        match event {
            XmlEvent::Start {
                name,
                attributes,
                empty,
                at,
            } => {
                let read = |wanted: &[u8]| {
                    attribute(attributes, wanted).map_err(|what| xml_malformed(text, at, what))
                };
                match root {
                    None => {
                        check_root(name, attributes)?;
                        root = Some(root_totals(read(b"lines-covered")?, read(b"lines-valid")?)?);
                    }
                    Some(_) if open.is_empty() => {
                        return Err(xml_malformed(text, at, "a second element follows the root"));
                    }
                    Some(None) if name == b"class" => {
                        class_file = read(b"filename")?.unwrap_or_default();
                    }
                    Some(None) if name == b"line" => {
                        let number = read(b"number")?.and_then(parse_count);
                        let hit = read(b"hits")?.and_then(parse_hit);
                        let (Some(number), Some(hit)) = (number, hit) else {
                            return Err(xml_malformed(
                                text,
                                at,
                                "a `<line>` lacks a whole number `number` or `hits`",
                            ));
                        };
                        if !table.add_line(class_file, number, hit) {
                            return Err(xml_malformed(text, at, "a line number is out of range"));
                        }
                    }
                    Some(_) => {}
                }
                if !empty {
                    open.push(name);
                }
            }
            XmlEvent::End { name, at } => {
                match open.pop() {
                    Some(top) if top == name => {}
                    Some(top) => {
                        return Err(xml_malformed(
                            text,
                            at,
                            &format!("`</{}>` closes `<{}>`", quoted(name), quoted(top)),
                        ));
                    }
                    None => {
                        return Err(xml_malformed(
                            text,
                            at,
                            &format!("`</{}>` closes nothing", quoted(name)),
                        ));
                    }
                }
                if name == b"class" {
                    class_file = b"";
                }
            }
        }
    }
    if let Some(top) = open.last() {
        return Err(format!(
            "the Cobertura XML report ends inside `<{}>`: the file is truncated; regenerate it",
            quoted(top)
        ));
    }
    match root {
        None => Err(NO_ROOT.to_owned()),
        Some(Some(totals)) => Ok(totals),
        Some(None) => table.totals().ok_or_else(|| OVERFLOW.to_owned()),
    }
}

fn root_totals(covered: Option<&[u8]>, valid: Option<&[u8]>) -> Result<Option<(u64, u64)>, String> {
    let (Some(covered), Some(valid)) = (covered, valid) else {
        return Ok(None);
    };
    let count = |name: &str, value: &[u8]| {
        parse_count(value).ok_or_else(|| {
            format!(
                "the Cobertura root's `{name}=\"{}\"` is not a whole number: regenerate the \
                 report",
                quoted(value)
            )
        })
    };
    let (covered, valid) = (
        count("lines-covered", covered)?,
        count("lines-valid", valid)?,
    );
    Ok((valid > 0).then_some((covered, valid)))
}

/// A forward-only reader of XML tags: enough to walk a Cobertura report, skipping text,
/// comments, CDATA, processing instructions and the DOCTYPE. It checks what truncation or
/// garbling breaks (tags and quotes closed; end tags are matched by the caller) and no
/// more: it is not a validating parser, and it expands no entity.
struct XmlScanner<'a> {
    text: &'a [u8],
    pos: usize,
}

enum XmlEvent<'a> {
    Start {
        name: &'a [u8],
        /// The raw text between the name and `>` (or `/>`); see [`attribute`].
        attributes: &'a [u8],
        /// `<name/>`: no end tag follows.
        empty: bool,
        at: usize,
    },
    End {
        name: &'a [u8],
        at: usize,
    },
}

enum XmlError {
    Truncated { inside: &'static str },
    Malformed { at: usize, what: &'static str },
}

impl XmlError {
    fn message(&self, text: &[u8]) -> String {
        match self {
            Self::Truncated { inside } => {
                format!("the XML report ends inside {inside}: the file is truncated; regenerate it")
            }
            Self::Malformed { at, what } => xml_malformed(text, *at, what),
        }
    }
}

impl<'a> XmlScanner<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self { text, pos: 0 }
    }

    fn next_event(&mut self) -> Result<Option<XmlEvent<'a>>, XmlError> {
        let text = self.text;
        loop {
            let Some(at) = find(text, self.pos, b"<") else {
                self.pos = text.len();
                return Ok(None);
            };
            let rest = &text[at..];
            let skipped = if rest.starts_with(b"<!--") {
                skip_past(text, at + 4, b"-->", "a comment")?
            } else if rest.starts_with(b"<![CDATA[") {
                skip_past(text, at + 9, b"]]>", "a CDATA section")?
            } else if rest.starts_with(b"<?") {
                skip_past(text, at + 2, b"?>", "a processing instruction")?
            } else if rest.starts_with(b"<!") {
                skip_declaration(text, at + 2)?
            } else if rest.starts_with(b"</") {
                let (name, after) = read_name(text, at + 2);
                let close = after + count_whitespace(text, after);
                return match text.get(close) {
                    _ if name.is_empty() => Err(XmlError::Malformed {
                        at,
                        what: "`</` is not followed by a tag name",
                    }),
                    Some(b'>') => {
                        self.pos = close + 1;
                        Ok(Some(XmlEvent::End { name, at }))
                    }
                    Some(_) => Err(XmlError::Malformed {
                        at,
                        what: "an end tag is not closed by `>`",
                    }),
                    None => Err(XmlError::Truncated {
                        inside: "an end tag",
                    }),
                };
            } else {
                let (name, after) = read_name(text, at + 1);
                if name.is_empty() {
                    return Err(XmlError::Malformed {
                        at,
                        what: "`<` is not followed by a tag name",
                    });
                }
                let close = tag_end(text, after)?;
                let attributes = &text[after..close];
                let (attributes, empty) = match attributes.strip_suffix(b"/") {
                    Some(attributes) => (attributes, true),
                    None => (attributes, false),
                };
                self.pos = close + 1;
                return Ok(Some(XmlEvent::Start {
                    name,
                    attributes,
                    empty,
                    at,
                }));
            };
            self.pos = skipped;
        }
    }
}

/// The index of the first `needle` at or after `from`.
fn find(text: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    text.get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|offset| from + offset)
}

fn skip_past(
    text: &[u8],
    from: usize,
    end: &[u8],
    inside: &'static str,
) -> Result<usize, XmlError> {
    find(text, from, end)
        .map(|at| at + end.len())
        .ok_or(XmlError::Truncated { inside })
}

/// Past a `<!DOCTYPE …>` (or other `<!` declaration), internal subset `[…]` included.
fn skip_declaration(text: &[u8], from: usize) -> Result<usize, XmlError> {
    let mut quote = None;
    let mut depth = 0_usize;
    for (offset, &byte) in text.get(from..).unwrap_or_default().iter().enumerate() {
        match (quote, byte) {
            (Some(open), _) if byte == open => quote = None,
            (None, b'"' | b'\'') => quote = Some(byte),
            (None, b'[') => depth += 1,
            (None, b']') => depth = depth.saturating_sub(1),
            (None, b'>') if depth == 0 => return Ok(from + offset + 1),
            _ => {}
        }
    }
    Err(XmlError::Truncated {
        inside: "a declaration",
    })
}

/// The tag name starting at `from`, and where it ends.
fn read_name(text: &[u8], from: usize) -> (&[u8], usize) {
    let rest = text.get(from..).unwrap_or_default();
    let length = rest
        .iter()
        .position(|&byte| byte.is_ascii_whitespace() || matches!(byte, b'/' | b'>' | b'<'))
        .unwrap_or(rest.len());
    (&rest[..length], from + length)
}

fn count_whitespace(text: &[u8], from: usize) -> usize {
    let rest = text.get(from..).unwrap_or_default();
    rest.iter()
        .take_while(|byte| byte.is_ascii_whitespace())
        .count()
}

/// The index of the `>` that closes the start tag whose attributes begin at `from`
/// (a `>` inside a quoted value does not count).
fn tag_end(text: &[u8], from: usize) -> Result<usize, XmlError> {
    let mut quote = None;
    for (offset, &byte) in text.get(from..).unwrap_or_default().iter().enumerate() {
        match (quote, byte) {
            (Some(open), _) if byte == open => quote = None,
            (None, b'"' | b'\'') => quote = Some(byte),
            (None, b'>') => return Ok(from + offset),
            (None, b'<') => {
                return Err(XmlError::Malformed {
                    at: from + offset,
                    what: "a tag is not closed before the next `<`",
                });
            }
            _ => {}
        }
    }
    Err(XmlError::Truncated { inside: "a tag" })
}

/// The raw value of attribute `wanted` (entities not expanded), or what is wrong with the
/// attributes.
fn attribute<'a>(attributes: &'a [u8], wanted: &[u8]) -> Result<Option<&'a [u8]>, &'static str> {
    let mut rest = attributes;
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return Ok(None);
        }
        let name_length = rest
            .iter()
            .position(|&byte| byte == b'=' || byte.is_ascii_whitespace())
            .ok_or("an attribute has no value")?;
        let (name, after) = rest.split_at(name_length);
        let after = after
            .trim_ascii_start()
            .strip_prefix(b"=")
            .ok_or("an attribute has no `=`")?
            .trim_ascii_start();
        let (&quote, value) = after.split_first().ok_or("an attribute has no value")?;
        if quote != b'"' && quote != b'\'' {
            return Err("an attribute value is not quoted");
        }
        let length = value
            .iter()
            .position(|&byte| byte == quote)
            .ok_or("an attribute value is not closed")?;
        if name == wanted {
            return Ok(Some(&value[..length]));
        }
        rest = &value[length + 1..];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    use CoverageFormat::{Cobertura, CoveragePy, Lcov, LlvmCov};

    const ALL: [CoverageFormat; 4] = [Cobertura, Lcov, CoveragePy, LlvmCov];

    struct Fixture {
        name: &'static str,
        bytes: &'static [u8],
        format: CoverageFormat,
        covered: u64,
        total: u64,
    }

    macro_rules! fixture {
        ($name:literal, $format:expr, $covered:literal / $total:literal) => {
            Fixture {
                name: $name,
                bytes: include_bytes!(concat!("../../tests/fixtures/coverage/", $name)),
                format: $format,
                covered: $covered,
                total: $total,
            }
        };
    }

    /// The real reports and what their producers said (tests/fixtures/coverage/README.md).
    const FIXTURES: [Fixture; 11] = [
        // `coverage report`: TOTAL 33 statements, 1 missed / 20 missed.
        fixture!("coverage-py-high.xml", Cobertura, 32 / 33),
        fixture!("coverage-py-high.json", CoveragePy, 32 / 33),
        fixture!("coverage-py-low.xml", Cobertura, 13 / 33),
        fixture!("coverage-py-low.json", CoveragePy, 13 / 33),
        // c8's text reporter: lines 51.02 %; LH 20 + 5 of LF 32 + 17.
        fixture!("c8-partial.lcov", Lcov, 25 / 49),
        // node --test: "all files" line 90.48 %; LH 10 + 28 of LF 10 + 32.
        fixture!("node-test.lcov", Lcov, 38 / 42),
        // `llvm-cov report` TOTAL: 34 lines, 4 missed / 21 missed.
        fixture!("cargo-llvm-cov-high.json", LlvmCov, 30 / 34),
        fixture!("cargo-llvm-cov-summary-only.json", LlvmCov, 30 / 34),
        fixture!("cargo-llvm-cov-low.json", LlvmCov, 13 / 34),
        fixture!("cargo-llvm-cov-low.lcov", Lcov, 13 / 34),
        // cargo-llvm-cov's own Cobertura writer counts one line fewer than llvm-cov.
        fixture!("cargo-llvm-cov-low.cobertura.xml", Cobertura, 12 / 33),
    ];

    fn counts(bytes: &[u8], format: Option<CoverageFormat>) -> Result<(u64, u64), String> {
        parse(bytes, format).map(|coverage| (coverage.covered, coverage.total))
    }

    #[test]
    fn reads_each_real_report_detected_or_named() {
        for fixture in &FIXTURES {
            let expected = LineCoverage {
                covered: fixture.covered,
                total: fixture.total,
                format: fixture.format,
            };
            assert_eq!(
                detect(fixture.bytes),
                Some(fixture.format),
                "{}",
                fixture.name
            );
            assert_eq!(parse(fixture.bytes, None), Ok(expected), "{}", fixture.name);
            assert_eq!(
                parse(fixture.bytes, Some(fixture.format)),
                Ok(expected),
                "{}",
                fixture.name
            );
        }
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "exactness is the point")]
    fn percentages_are_exact_at_whole_numbers() {
        let coverage = |covered, total| LineCoverage {
            covered,
            total,
            format: Lcov,
        };
        assert_eq!(coverage(4, 5).percent(), 80.0);
        assert_eq!(coverage(7, 10).percent(), 70.0);
        assert_eq!(coverage(33, 33).percent(), 100.0);
        assert_eq!(coverage(0, 0).percent(), 0.0);
        let high = parse(FIXTURES[0].bytes, None).unwrap();
        assert!((high.percent() - 96.969_696_97).abs() < 1e-6);
    }

    #[test]
    fn a_wrong_format_names_both_formats() {
        for fixture in &FIXTURES {
            for asked in ALL.into_iter().filter(|&format| format != fixture.format) {
                let error = parse(fixture.bytes, Some(asked)).unwrap_err();
                let (found, _) = names(fixture.format);
                let (_, key) = names(asked);
                assert!(
                    error.starts_with(&format!("the report is {found} ")),
                    "{error}"
                );
                assert!(error.contains(&format!("`format: {key}`")), "{error}");
            }
        }
    }

    #[test]
    fn bom_crlf_and_surrounding_blank_lines_change_nothing() {
        for fixture in &FIXTURES {
            let text = std::str::from_utf8(fixture.bytes).unwrap();
            let dressed = format!("\u{feff}\r\n  {}\r\n\r\n", text.replace('\n', "\r\n"));
            assert_eq!(
                counts(dressed.as_bytes(), None),
                Ok((fixture.covered, fixture.total)),
                "{}",
                fixture.name
            );
        }
    }

    #[test]
    fn cobertura_without_root_totals_counts_lines_once_per_file() {
        // The cargo-llvm-cov report repeats method lines under `<methods>`; coverage.py's
        // does not. Either way the count matches the totals the root had.
        for fixture in FIXTURES
            .iter()
            .filter(|fixture| fixture.format == Cobertura)
        {
            let text = std::str::from_utf8(fixture.bytes).unwrap();
            let stripped = text
                .replace("lines-valid=", "was-lines-valid=")
                .replace("lines-covered=", "was-lines-covered=");
            assert_eq!(
                counts(stripped.as_bytes(), None),
                Ok((fixture.covered, fixture.total)),
                "{}",
                fixture.name
            );
        }
    }

    #[test]
    fn cobertura_merges_classes_of_one_file_and_falls_back_when_lines_valid_is_zero() {
        let report = br#"<?xml version="1.0"?>
<!DOCTYPE coverage SYSTEM "coverage-04.dtd" [ <!ENTITY x "a > b"> ]>
<coverage lines-valid="0" lines-covered="0"><!-- <line number="99" hits="1"/> -->
  <packages><package name="p"><classes>
    <class name="A" filename="a.java"><lines>
      <line number="1" hits="0"/><line number='2' hits="5"/>
    </lines></class>
    <class name="A$Inner" filename="a.java"><lines>
      <line number="1" hits="3"/><line number="3" hits="0"/>
    </lines></class>
    <class name="B" filename="b.java"><lines><line number="1" hits="0"/></lines></class>
  </classes></package></packages>
</coverage>
"#;
        assert_eq!(counts(report, None), Ok((2, 4)));
    }

    #[test]
    fn cobertura_errors_say_what_is_wrong() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"<coverage lines-valid=\"10\" lines-covered=\"3\"><packages>",
                "ends inside `<packages>`",
            ),
            (b"<coverage lines-valid=\"10", "ends inside a tag"),
            (
                b"<coverage lines-valid=\"ten\" lines-covered=\"3\"/>",
                "`lines-valid=\"ten\"` is not a whole number",
            ),
            (
                b"<coverage lines-valid=\"3\" lines-covered=\"4\"/>",
                "4 covered lines out of 3",
            ),
            (
                b"<coverage><a></b></coverage>",
                "line 1: `</b>` closes `<a>`",
            ),
            (
                b"<coverage/><coverage/>",
                "a second element follows the root",
            ),
            (
                b"<coverage>\n<line number=\"1\"/></coverage>",
                "line 2: a `<line>` lacks",
            ),
            (b"<coverage></coverage>", "no coverable line"),
        ];
        for (report, expected) in cases {
            let error = parse(report, Some(Cobertura)).unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn other_xml_reports_are_named() {
        let clover = b"<?xml version=\"1.0\"?><coverage generated=\"1\" clover=\"4.4.1\"/>";
        assert_eq!(detect(clover), None);
        assert!(parse(clover, None).unwrap_err().contains("Clover XML"));
        let jacoco = b"<report name=\"x\"><counter type=\"LINE\" missed=\"1\"/></report>";
        assert!(parse(jacoco, None).unwrap_err().contains("`<report>`"));
        assert!(
            parse(jacoco, Some(Cobertura))
                .unwrap_err()
                .contains("`<report>`")
        );
    }

    #[test]
    fn lcov_merges_repeated_files_by_line() {
        let report = b"TN:\nSF:a.js\nDA:1,1\nDA:2,0\nLF:2\nLH:1\nend_of_record\n\
                       TN:\nSF:a.js\nDA:1,0\nDA:2,3\nDA:3,0\nDA:3,0\nLF:3\nLH:1\nend_of_record\n\
                       SF:b.js\nDA:1,0\nend_of_record\n";
        assert_eq!(counts(report, None), Ok((2, 4)));
    }

    #[test]
    fn lcov_counts_the_larger_of_da_lines_and_lh_lf() {
        // llvm-cov's writer: LF/LH count a line that has no DA.
        let more_stated = b"SF:a.rs\nDA:1,1\nDA:2,0\nLF:3\nLH:2\nend_of_record\n";
        assert_eq!(counts(more_stated, None), Ok((2, 3)));
        let fewer_stated = b"SF:a.rs\nDA:1,1\nDA:2,1\nDA:3,0\nLF:2\nLH:1\nend_of_record\n";
        assert_eq!(counts(fewer_stated, None), Ok((2, 3)));
        let summaries = b"SF:a.js\nLH:3\nLF:10\nend_of_record\nSF:a.js\nLH:5\nLF:10\n\
                          end_of_record\nSF:b.js\nFN:1,f\nFNDA:0,f\nLH:1\nLF:2\nend_of_record\n";
        assert_eq!(counts(summaries, None), Ok((6, 12)));
    }

    #[test]
    fn lcov_errors_say_what_is_wrong() {
        let cases: [(&[u8], &str); 9] = [
            (b"SF:a\nDA:1,1\n", "ends inside the record of `a`"),
            (
                b"TN:\nDA:1,1\nend_of_record\n",
                "line 2: `DA:` outside a record",
            ),
            (
                b"SF:a\nSF:b\n",
                "line 2: `SF:` comes before the `end_of_record` of `a`",
            ),
            (
                b"SF:a\nDA:x,1\nend_of_record\n",
                "`DA:x,1` is not `DA:<line>,<count>`",
            ),
            (
                b"SF:a\nDA:1,-1\nend_of_record\n",
                "is not `DA:<line>,<count>`",
            ),
            (b"SF:a\nLH:3\nLF:2\nend_of_record\n", "`LH:3` above `LF:2`"),
            (
                b"SF:a\nLH:3\nend_of_record\n",
                "only one of `LH:` and `LF:`",
            ),
            (
                b"SF:a\nhello world\nend_of_record\n",
                "`hello world` is not an LCOV record",
            ),
            (b"SF:a\nFN:1,f\nend_of_record\n", "no coverable line"),
        ];
        for (report, expected) in cases {
            let error = parse(report, Some(Lcov)).unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        let huge = b"SF:a\nLH:18446744073709551615\nLF:18446744073709551615\nend_of_record\n\
                     SF:b\nLH:1\nLF:1\nend_of_record\n";
        assert!(parse(huge, None).unwrap_err().contains("more than 2^64"));
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let cases: [(&[u8], Option<CoverageFormat>, &str); 7] = [
            (b"{\"totals\": {\"num_statements\": 3", None, "truncated"),
            (b"{\"totals\": nope}", None, "not valid JSON"),
            (
                b"{\"total\": {\"lines\": {}}}",
                None,
                "neither coverage.py JSON",
            ),
            (b"[1, 2]", Some(CoveragePy), "neither coverage.py JSON"),
            (
                b"{\"totals\": {\"num_statements\": 3}}",
                None,
                "no whole number `covered_lines`",
            ),
            (
                b"{\"type\": \"llvm.coverage.json.export\", \"data\": []}",
                None,
                "no `data` entry",
            ),
            (
                b"{\"data\": [{\"totals\": {\"lines\": {\"count\": 3.5, \"covered\": 1}}}]}",
                None,
                "`data[0].totals.lines` has no whole number `count`",
            ),
        ];
        for (report, format, expected) in cases {
            let error = parse(report, format).unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn llvm_cov_sums_its_data_entries() {
        let report = br#"{"data":[{"files":[],"totals":{"lines":{"count":10,"covered":4}}},
                                    {"totals":{"lines":{"count":5,"covered":5}}}],
                          "type":"llvm.coverage.json.export","version":"2.0.1"}"#;
        assert_eq!(counts(report, None), Ok((9, 15)));
    }

    #[test]
    fn empty_garbage_and_truncated_reports_are_errors() {
        for empty in [&b""[..], b"  \n\r\n", b"\xEF\xBB\xBF"] {
            assert!(parse(empty, None).unwrap_err().contains("empty"));
            for format in ALL {
                assert!(parse(empty, Some(format)).is_err());
            }
        }
        assert!(parse(b"\xFF\xFEx\0", None).unwrap_err().contains("UTF-16"));
        assert!(parse(b"\x1F\x8B\x08\0", None).unwrap_err().contains("gzip"));
        let garbage = parse(b"hello", None).unwrap_err();
        assert!(
            garbage.starts_with("not a coverage report this tool reads"),
            "{garbage}"
        );
        for fixture in &FIXTURES {
            let whole = fixture.bytes.trim_ascii_end();
            for cut in [whole.len() / 2, whole.len() - 1] {
                assert!(
                    parse(&whole[..cut], None).is_err(),
                    "{} cut at {cut}",
                    fixture.name
                );
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 100_000;
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            for prefix in ["", "{\"totals\":", "{\"data\":[{\"totals\":", "{\"other\":"] {
                let report = format!("{prefix}{}{}", open.repeat(depth), close.repeat(depth));
                assert!(parse(report.as_bytes(), None).is_err());
                for format in ALL {
                    assert!(parse(report.as_bytes(), Some(format)).is_err());
                }
            }
        }
        let xml = format!("<coverage>{}", "<a>".repeat(depth));
        assert!(
            parse(xml.as_bytes(), None)
                .unwrap_err()
                .contains("truncated")
        );
    }

    #[test]
    fn large_reports_with_repeated_files_are_read_in_one_pass() {
        // 20 000 records of one file, as concatenated shards would give: merging must not
        // rescan the file's lines per record.
        let mut report = String::new();
        for shard in 0..20_000_u64 {
            report.push_str("SF:src/big.js\n");
            for line in 1..=10 {
                let hits = u64::from(line == shard % 10 + 1);
                writeln!(report, "DA:{line},{hits}").unwrap();
            }
            report.push_str("end_of_record\n");
        }
        assert_eq!(counts(report.as_bytes(), None), Ok((10, 10)));
    }

    /// One LCOV record: its file, its `DA:` lines, and whether it writes `LH`/`LF` and
    /// how many lines (covered, in all) they state beyond its own `DA:` lines.
    type Record = (u8, Vec<(u64, u64)>, Option<(u64, u64)>);

    /// A record's own `DA:` lines: line → covered.
    fn own_lines(hits: &[(u64, u64)]) -> BTreeMap<u64, bool> {
        let mut lines = BTreeMap::new();
        for &(line, count) in hits {
            *lines.entry(line).or_default() |= count > 0;
        }
        lines
    }

    /// The `LH`, `LF` a record writes.
    fn stated(hits: &[(u64, u64)], extra: (u64, u64)) -> (u64, u64) {
        let own = own_lines(hits);
        let hit = own.values().filter(|&&covered| covered).count() as u64;
        (hit + extra.0, own.len() as u64 + extra.1)
    }

    /// What the reader must find: per file, the larger of its merged `DA:` lines and the
    /// largest `LH`/`LF` stated, covered and total each.
    fn expected_counts(records: &[Record], summaries: &[(u8, u64, u64)]) -> (u64, u64) {
        let mut lines: BTreeMap<u8, BTreeMap<u64, bool>> = BTreeMap::new();
        let mut best: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
        let mut summaries = summaries.to_vec();
        for (file, hits, extra) in records {
            let file_lines = lines.entry(*file).or_default();
            for (line, covered) in own_lines(hits) {
                *file_lines.entry(line).or_default() |= covered;
            }
            if let Some(extra) = extra {
                let (hit, found) = stated(hits, *extra);
                summaries.push((*file, hit, found));
            }
        }
        for (file, hit, found) in summaries {
            let entry = best.entry(file).or_default();
            *entry = (entry.0.max(hit), entry.1.max(found));
        }
        let files: std::collections::BTreeSet<u8> =
            lines.keys().chain(best.keys()).copied().collect();
        files.into_iter().fold((0, 0), |(covered, total), file| {
            let file_lines = lines.get(&file).cloned().unwrap_or_default();
            let (hit, found) = best.get(&file).copied().unwrap_or_default();
            let line_hits = file_lines.values().filter(|&&covered| covered).count() as u64;
            let line_total = file_lines.len() as u64;
            (covered + line_hits.max(hit), total + line_total.max(found))
        })
    }

    fn render_lcov(
        records: &[Record],
        summaries: &[(u8, u64, u64)],
        crlf: bool,
        noise: bool,
    ) -> String {
        let mut out = String::new();
        let mut push = |line: String| {
            out.push_str(&line);
            out.push_str(if crlf { "\r\n" } else { "\n" });
        };
        for (file, hits, extra) in records {
            push("TN:".into());
            push(format!("SF:src/file {file}.js"));
            if noise {
                push("FN:1,main".into());
                push("FNDA:1,main".into());
                push(String::new());
            }
            for &(line, count) in hits {
                push(format!("DA:{line},{count}"));
                if noise {
                    push(format!("BRDA:{line},0,0,{count}"));
                }
            }
            if let Some(extra) = extra {
                let (hit, found) = stated(hits, *extra);
                push(format!("LH:{hit}"));
                push(format!("LF:{found}"));
            }
            push("end_of_record".into());
        }
        for &(file, hit, found) in summaries {
            push(format!("SF:src/file {file}.js"));
            push(format!("LF:{found}"));
            push(format!("LH:{hit}"));
            push("end_of_record".into());
        }
        out
    }

    fn summaries() -> impl Strategy<Value = Vec<(u8, u64, u64)>> {
        prop::collection::vec(
            (2_u8..6, 0_u64..50)
                .prop_flat_map(|(file, found)| (Just(file), 0..=found, Just(found))),
            0..4,
        )
    }

    proptest! {
        #[test]
        fn random_lcov_counts_exactly(
            records in prop::collection::vec(
                (
                    0_u8..4,
                    prop::collection::vec((1_u64..40, 0_u64..3), 0..25),
                    // Mostly LH/LF that match the DA lines; sometimes some lines more.
                    prop::option::of(prop_oneof![
                        3 => Just((0, 0)),
                        1 => (0_u64..3).prop_flat_map(|found| (0..=found, Just(found))),
                    ]),
                ),
                0..8,
            ),
            summaries in summaries(),
            crlf in any::<bool>(),
            noise in any::<bool>(),
        ) {
            let report = render_lcov(&records, &summaries, crlf, noise);
            let (covered, total) = expected_counts(&records, &summaries);
            let parsed = counts(report.as_bytes(), None);
            if total == 0 {
                prop_assert!(parsed.is_err());
            } else {
                prop_assert_eq!(parsed, Ok((covered, total)));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = detect(&bytes);
            let _ = parse(&bytes, None);
            for format in ALL {
                let _ = parse(&bytes, Some(format));
            }
        }

        #[test]
        fn damaged_real_reports_never_panic(
            which in 0..FIXTURES.len(),
            cut in any::<prop::sample::Index>(),
            junk in prop::collection::vec(any::<u8>(), 0..16),
            keep_tail in any::<bool>(),
        ) {
            let bytes = FIXTURES[which].bytes;
            let at = cut.index(bytes.len() + 1);
            let mut damaged = bytes[..at].to_vec();
            damaged.extend_from_slice(&junk);
            if keep_tail {
                damaged.extend_from_slice(&bytes[at..]);
            }
            let _ = detect(&damaged);
            for format in [None, Some(Cobertura), Some(Lcov), Some(CoveragePy), Some(LlvmCov)] {
                let _ = parse(&damaged, format);
            }
        }
    }
}
