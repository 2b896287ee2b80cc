//! The audit log (SPEC §7): JSON Lines, one record per line, each carrying `prev`, the
//! SHA-256 of the previous line's exact bytes, so that any edit, deletion or reordering
//! breaks the chain at a line `verify` can name.
//!
//! Invariants:
//! - An append holds an exclusive file lock from reading the tail to `fdatasync`, so two
//!   processes never interleave lines or fork the chain.
//! - A record is written before `append` returns, and callers append before the side
//!   effect the record announces; a failed append is an error the caller must stop on
//!   (fail closed). `append` makes it durable (`fdatasync`, which covers every line
//!   before it); `append_deferred`, for a record that announces no side effect, leaves
//!   that to the next `append`, so a run pays one `fdatasync` per side effect.
//! - A torn last line (a crash mid-write) is never dropped silently: `verify` reports it,
//!   and the next append moves its bytes to `audit.jsonl.torn-<ts>` and records
//!   `audit.repaired` before its own record.
//! - Readers stream the file: memory does not grow with its size.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::redact::Redactor;

/// The `prev` of the first record.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub run: String,
    pub kind: String,
    pub actor: String,
    pub component: Option<String>,
    pub stage: Option<String>,
    pub data: Value,
    pub prev: String,
}

/// What a caller appends; the log adds `v`, `seq`, `ts`, `actor` and `prev`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub run: String,
    pub kind: &'static str,
    pub component: Option<String>,
    pub stage: Option<String>,
    pub data: Value,
}

/// The record just written and the new head (the SHA-256 of its line).
#[derive(Clone, Debug)]
pub struct Appended {
    pub seq: u64,
    pub head: String,
    /// Set when this append first moved a torn last line aside (and recorded that).
    pub repaired: Option<Repaired>,
}

/// A torn last line moved aside by an append.
#[derive(Clone, Debug)]
pub struct Repaired {
    pub moved_to: PathBuf,
    pub bytes: usize,
}

impl std::fmt::Display for Repaired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the audit log had a torn last line ({} bytes, a crash mid-write?): moved to {}, recorded as audit.repaired",
            self.bytes,
            self.moved_to.display()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path}: line {line} is not a record ({reason}); run `release audit verify`")]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(
        "audit log {path}: the hash chain breaks at line {line}: a record at or before it was edited, deleted or reordered, so nothing is decided from this log; `release audit verify` names the line: restore the log from a copy you trust"
    )]
    BrokenChain { path: PathBuf, line: u64 },
}

/// The lowercase hex SHA-256 of a line's bytes (without its newline).
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// The chain's end as last seen by this process: file length, last seq, head hash.
#[derive(Clone, Debug)]
struct Tail {
    len: u64,
    seq: u64,
    head: String,
}

/// Who acts, as recorded in every record: known, or being found on a thread of its own
/// (git's `user.email` costs a process start) while the caller gets on.
pub struct Actor {
    known: OnceLock<String>,
    finding: Mutex<Option<std::thread::JoinHandle<String>>>,
}

impl Actor {
    /// Starts finding the current actor for the project at `root` ([`current_actor`]) on
    /// a thread of its own; the first record appended waits for it.
    pub fn find(root: &Path) -> Self {
        let at = root.to_path_buf();
        match std::thread::Builder::new()
            .name("actor".into())
            .spawn(move || current_actor(&at))
        {
            Ok(thread) => Self {
                known: OnceLock::new(),
                finding: Mutex::new(Some(thread)),
            },
            Err(_) => Self::known(current_actor(root)),
        }
    }

    fn known(actor: String) -> Self {
        Self {
            known: OnceLock::from(actor),
            finding: Mutex::new(None),
        }
    }

    fn get(&self) -> &str {
        self.known.get_or_init(|| {
            let finding = self.finding.lock().ok().and_then(|mut f| f.take());
            finding
                .and_then(|thread| thread.join().ok())
                .unwrap_or_else(unknown_actor)
        })
    }
}

pub struct AuditLog {
    path: PathBuf,
    actor: Actor,
    redactor: Redactor,
    /// The open file and the tail this process last wrote; re-read when the file changed.
    state: Mutex<Option<(File, Tail)>>,
}

impl AuditLog {
    pub fn new(path: PathBuf, actor: String, redactor: Redactor) -> Self {
        Self::with_actor(path, Actor::known(actor), redactor)
    }

    /// A log only read (records, verify): nobody is looked up, since nothing is appended.
    pub fn reader(path: PathBuf) -> Self {
        Self::new(path, String::new(), Redactor::default())
    }

    /// A log whose actor is the current one for the project at `root`, found meanwhile
    /// ([`Actor::find`]).
    pub fn for_current_actor(path: PathBuf, root: &Path, redactor: Redactor) -> Self {
        Self::with_actor(path, Actor::find(root), redactor)
    }

    /// A log appended to by `actor` (known, or being found: [`Actor::find`]).
    pub fn with_actor(path: PathBuf, actor: Actor, redactor: Redactor) -> Self {
        Self {
            path,
            actor,
            redactor,
            state: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn actor(&self) -> &str {
        self.actor.get()
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one record and makes it durable (with every record before it) before
    /// returning: for a record that announces a side effect (SPEC §7).
    pub fn append(&self, entry: Entry) -> Result<Appended, AuditError> {
        self.append_with(entry, true)
    }

    /// Appends one record that announces no side effect (a run's start, a step's end, a
    /// dry-run's records): written at once, so readers and a crash of this process see it,
    /// and made durable by the next [`append`](Self::append), which `fdatasync`s the whole
    /// file. One `fdatasync` per side effect instead of one per record.
    pub fn append_deferred(&self, entry: Entry) -> Result<Appended, AuditError> {
        self.append_with(entry, false)
    }

    fn append_with(&self, entry: Entry, durable: bool) -> Result<Appended, AuditError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(|e| self.io(e))?;
            *state = Some((
                file,
                Tail {
                    len: u64::MAX,
                    seq: 0,
                    head: String::new(),
                },
            ));
        }
        let (file, tail) = state.as_mut().expect("opened above");
        file.lock().map_err(|e| self.io(e))?;
        let result = self.append_locked(file, tail, entry, durable);
        let unlocked = file.unlock().map_err(|e| self.io(e));
        if result.is_err() {
            // Forget the cached tail: the next append re-reads the file.
            tail.len = u64::MAX;
        }
        let appended = result?;
        unlocked?;
        Ok(appended)
    }

    fn append_locked(
        &self,
        file: &mut File,
        tail: &mut Tail,
        entry: Entry,
        durable: bool,
    ) -> Result<Appended, AuditError> {
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        let mut repaired = None;
        if len != tail.len {
            // Someone else wrote (or this is the first append): read the end of the file.
            *tail = match read_tail(file, len).map_err(|e| self.io(e))? {
                TailRead::Clean(t) => t,
                TailRead::Torn { clean, torn_at } => {
                    let (tail, repair) = self.repair(file, clean, torn_at, len, &entry.run)?;
                    repaired = Some(repair);
                    tail
                }
                TailRead::Corrupt { line, reason } => {
                    return Err(AuditError::Corrupt {
                        path: self.path.clone(),
                        line,
                        reason,
                    });
                }
            };
        }
        let appended = self.write_record(file, tail, entry, durable)?;
        Ok(Appended {
            repaired,
            ..appended
        })
    }

    /// Moves a torn last line aside, truncates it away, and records that it did.
    fn repair(
        &self,
        file: &mut File,
        clean: Tail,
        torn_at: u64,
        len: u64,
        run: &str,
    ) -> Result<(Tail, Repaired), AuditError> {
        let mut torn = Vec::new();
        file.seek(SeekFrom::Start(torn_at))
            .map_err(|e| self.io(e))?;
        file.take(len - torn_at)
            .read_to_end(&mut torn)
            .map_err(|e| self.io(e))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let aside = PathBuf::from(format!("{}.torn-{stamp}", self.path.display()));
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)
            .map_err(|e| self.io(e))?;
        out.write_all(&torn).map_err(|e| self.io(e))?;
        out.sync_all().map_err(|e| self.io(e))?;
        file.set_len(torn_at).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        let mut tail = clean;
        self.write_record(
            file,
            &mut tail,
            Entry {
                run: run.to_owned(),
                kind: "audit.repaired",
                component: None,
                stage: None,
                data: serde_json::json!({
                    "moved_to": aside.display().to_string(),
                    "bytes": torn.len(),
                }),
            },
            true,
        )?;
        Ok((
            tail,
            Repaired {
                moved_to: aside,
                bytes: torn.len(),
            },
        ))
    }

    fn write_record(
        &self,
        file: &mut File,
        tail: &mut Tail,
        mut entry: Entry,
        durable: bool,
    ) -> Result<Appended, AuditError> {
        self.redactor.redact_json(&mut entry.data);
        let record = Record {
            v: 1,
            seq: tail.seq + 1,
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            run: entry.run,
            kind: entry.kind.to_owned(),
            actor: self.actor.get().to_owned(),
            component: entry.component,
            stage: entry.stage,
            data: entry.data,
            prev: if tail.seq == 0 {
                ZERO_HASH.to_owned()
            } else {
                tail.head.clone()
            },
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| self.io(e.into()))?;
        let head = line_hash(&line);
        line.push(b'\n');
        file.write_all(&line).map_err(|e| self.io(e))?;
        if durable {
            file.sync_data().map_err(|e| self.io(e))?;
        }
        tail.len = tail.len.saturating_add(line.len() as u64);
        tail.seq = record.seq;
        tail.head.clone_from(&head);
        Ok(Appended {
            seq: record.seq,
            head,
            repaired: None,
        })
    }

    /// The records, streamed. A missing log has none.
    pub fn records(&self) -> Result<Records, AuditError> {
        self.records_after(0)
    }

    /// The log's length in bytes now (0 when there is none): where
    /// [`records_after`](Self::records_after) starts to read what is appended later.
    pub fn end_offset(&self) -> Result<u64, AuditError> {
        Ok(self
            .open()?
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len()))
    }

    /// The records from byte `offset` on (a length [`end_offset`](Self::end_offset) gave:
    /// those appended since), streamed and not checked against the chain; line numbers
    /// count from `offset`.
    pub fn records_after(&self, offset: u64) -> Result<Records, AuditError> {
        let source = match self.open()? {
            Some(mut file) => {
                if offset > 0 {
                    file.seek(SeekFrom::Start(offset)).map_err(|e| self.io(e))?;
                }
                Some(Source::Plain {
                    reader: BufReader::with_capacity(256 * 1024, file),
                    chain: None,
                })
            }
            None => None,
        };
        Ok(Records::new(source, &self.path))
    }

    /// The log file opened for reading; `None` when there is no log yet.
    fn open(&self) -> Result<Option<File>, AuditError> {
        match File::open(&self.path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Whether the log ends with a torn line (bytes after its last newline: a crash
    /// mid-write), which readers leave out; found from the last byte alone.
    pub fn has_torn_tail(&self) -> bool {
        use std::io::{Read as _, Seek as _};
        let Ok(Some(mut file)) = self.open() else {
            return false;
        };
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1))
            .and_then(|_| file.read_exact(&mut last))
            .is_ok_and(|()| last[0] != b'\n')
    }

    /// The records, streamed, each checked against the hash chain: a broken link ends the
    /// stream with [`AuditError::BrokenChain`] (after the lines before it). For every reader
    /// that decides something (gates, promotions, status), so that no decision rests on a
    /// record `audit verify` rejects. A thread of its own reads the file and hashes each
    /// line while the caller parses the blocks it has passed; a few blocks of
    /// [`CHECKED_BLOCK`] bytes are in flight at most, so memory stays flat.
    pub fn records_checked(&self) -> Result<Records, AuditError> {
        let file = self.open()?;
        // A log of a few blocks is hashed inline: a thread and its buffers would cost more
        // than they save.
        let small = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() <= 4 * CHECKED_BLOCK);
        if small {
            let source = file.map(|f| Source::Plain {
                reader: BufReader::with_capacity(64 * 1024, f),
                chain: Some(Chain::default()),
            });
            return Ok(Records::new(source, &self.path));
        }
        let source = file.map(|file| {
            let (blocks, receiver) = std::sync::mpsc::sync_channel(2);
            // Read blocks come back to be filled again: a handful of buffers serve the
            // whole file, and memory stays flat whatever its length.
            let (spent, free) = std::sync::mpsc::sync_channel(4);
            let path = self.path.clone();
            let spawned = std::thread::Builder::new()
                .name("audit-chain".into())
                .spawn(move || check_chain(file, &path, &blocks, &free));
            match spawned {
                Ok(_) => Source::Checked {
                    blocks: receiver,
                    spent,
                    block: Vec::new(),
                    at: 0,
                    finished: false,
                },
                Err(e) => Source::Failed(Some(self.io(e))),
            }
        });
        Ok(Records::new(source, &self.path))
    }

    /// Checks the whole chain, streaming.
    pub fn verify(&self) -> Result<Verification, AuditError> {
        self.verify_finding(None)
    }

    /// [`Self::verify`], also telling which line hashes to `kept` (a head hash kept
    /// earlier): the log has grown since, and everything up to that line is vouched for.
    pub fn verify_finding(&self, kept: Option<&str>) -> Result<Verification, AuditError> {
        let Some(file) = self.open()? else {
            return Ok(Verification {
                records: 0,
                head: None,
                problem: None,
                kept_at: None,
            });
        };
        verify_reader(BufReader::with_capacity(256 * 1024, file), kept).map_err(|e| self.io(e))
    }
}

/// The result of `verify`.
#[derive(Debug, Serialize)]
pub struct Verification {
    /// Records that verified (before any problem).
    pub records: u64,
    /// SHA-256 of the last good line.
    pub head: Option<String>,
    pub problem: Option<Problem>,
    /// The line whose hash is the head hash asked about, when a line has it.
    pub kept_at: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    /// 1-based line number.
    pub line: u64,
    pub kind: ProblemKind,
    pub message: String,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The last line has no newline: a crash mid-write.
    Torn,
    /// A line that is not a record.
    NotARecord,
    /// `prev` does not match the previous line's hash: edited, deleted or reordered.
    BrokenChain,
    /// `seq` does not follow the previous one.
    BadSequence,
}

/// Just what verification reads of a line.
#[derive(Deserialize)]
struct Link<'a> {
    v: u32,
    seq: u64,
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    prev: &'a str,
}

/// Verifies a stream of lines; memory stays flat whatever its length.
pub fn verify_reader(
    mut reader: impl BufRead,
    kept: Option<&str>,
) -> std::io::Result<Verification> {
    let mut buffer = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    let mut head: Option<String> = None;
    let mut last_seq = 0u64;
    let mut kept_at = None;
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            return Ok(Verification {
                records: line_no,
                head,
                problem: None,
                kept_at,
            });
        }
        let line_number = line_no + 1;
        let fail = |kind, message: String| Verification {
            records: line_no,
            head: head.clone(),
            problem: Some(Problem {
                line: line_number,
                kind,
                message,
            }),
            kept_at,
        };
        if buffer.last() != Some(&b'\n') {
            return Ok(fail(
                ProblemKind::Torn,
                format!(
                    "the last line ({} bytes) is torn: it has no newline (a crash mid-write?); the next append moves it aside and records that",
                    buffer.len()
                ),
            ));
        }
        let line = &buffer[..buffer.len() - 1];
        let parsed: Link<'_> = match serde_json::from_slice(line) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(fail(ProblemKind::NotARecord, format!("not a record: {e}"))),
        };
        if parsed.v != 1 {
            return Ok(fail(
                ProblemKind::NotARecord,
                format!("unknown record version {}", parsed.v),
            ));
        }
        // As the commands that decide from the log read it: a record they refuse is one
        // `verify` refuses too.
        if chrono::DateTime::parse_from_rfc3339(&parsed.ts).is_err() {
            return Ok(fail(
                ProblemKind::NotARecord,
                format!("`ts` {} is not an RFC 3339 time", parsed.ts),
            ));
        }
        let expected_prev = head.as_deref().unwrap_or(ZERO_HASH);
        if parsed.prev != expected_prev {
            return Ok(fail(
                ProblemKind::BrokenChain,
                format!(
                    "`prev` is {} but the previous line hashes to {expected_prev}: a line was edited, deleted or reordered at or before this one",
                    parsed.prev
                ),
            ));
        }
        if parsed.seq != last_seq + 1 {
            return Ok(fail(
                ProblemKind::BadSequence,
                format!(
                    "`seq` is {} where {} was expected",
                    parsed.seq,
                    last_seq + 1
                ),
            ));
        }
        last_seq = parsed.seq;
        let hash = line_hash(line);
        if kept == Some(hash.as_str()) {
            kept_at = Some(line_number);
        }
        head = Some(hash);
        line_no = line_number;
    }
}

/// What reading the end of the log found.
enum TailRead {
    Clean(Tail),
    Torn { clean: Tail, torn_at: u64 },
    Corrupt { line: u64, reason: String },
}

/// Reads backwards from the end to the last complete line (and any torn bytes after it).
fn read_tail(file: &mut File, len: u64) -> std::io::Result<TailRead> {
    if len == 0 {
        return Ok(TailRead::Clean(Tail {
            len,
            seq: 0,
            head: String::new(),
        }));
    }
    // Grow a window from the end until it holds the last complete line.
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        let mut bytes = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
        file.seek(SeekFrom::Start(start))?;
        (&mut *file).take(len - start).read_to_end(&mut bytes)?;
        // Complete lines end with '\n'; anything after the last one is torn.
        let last_newline = bytes.iter().rposition(|&b| b == b'\n');
        let Some(end) = last_newline else {
            if start == 0 {
                // Nothing complete at all: all of it is torn.
                return Ok(TailRead::Torn {
                    clean: Tail {
                        len: 0,
                        seq: 0,
                        head: String::new(),
                    },
                    torn_at: 0,
                });
            }
            window *= 4;
            continue;
        };
        let line_start = bytes[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1);
        let Some(line_start) = line_start.or((start == 0).then_some(0)) else {
            window *= 4;
            continue;
        };
        let line = &bytes[line_start..end];
        let parsed: Link<'_> = match serde_json::from_slice(line) {
            Ok(parsed) => parsed,
            Err(e) => {
                return Ok(TailRead::Corrupt {
                    line: 0,
                    reason: format!("the last complete line does not parse: {e}"),
                });
            }
        };
        let clean_len = start + end as u64 + 1;
        let tail = Tail {
            len: clean_len,
            seq: parsed.seq,
            head: line_hash(line),
        };
        return Ok(if clean_len == len {
            TailRead::Clean(tail)
        } else {
            TailRead::Torn {
                clean: tail,
                torn_at: clean_len,
            }
        });
    }
}

/// Streams the log's records.
pub struct Records {
    source: Option<Source>,
    line: u64,
    buffer: Vec<u8>,
    path: PathBuf,
}

/// Where [`Records`] takes its lines from.
enum Source {
    /// The file, line by line; with a chain, each line is checked as it is read.
    Plain {
        reader: BufReader<File>,
        chain: Option<Chain>,
    },
    /// Blocks of whole lines whose chain [`check_chain`] has checked, then its verdict.
    Checked {
        blocks: std::sync::mpsc::Receiver<Result<Vec<u8>, AuditError>>,
        /// Where read blocks go back to be filled again.
        spent: std::sync::mpsc::SyncSender<Vec<u8>>,
        block: Vec<u8>,
        at: usize,
        /// The thread has ended (or sent its error): nothing more comes.
        finished: bool,
    },
    /// The checking thread could not start.
    Failed(Option<AuditError>),
}

/// The hash chain as read so far.
struct Chain {
    /// The hex hash the next line's `prev` must hold.
    expected: [u8; 64],
    /// The `seq` of the line before.
    seq: u64,
    /// A link was broken: nothing after it is trusted.
    broken: bool,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            expected: [b'0'; 64],
            seq: 0,
            broken: false,
        }
    }
}

impl Chain {
    /// Checks that `line` links to the line before and follows its `seq`, as `audit
    /// verify` checks, and moves on to it; false (and broken from then on) when not.
    fn follow(&mut self, line: &[u8]) -> bool {
        if self.broken
            || prev_field(line) != Some(&self.expected[..])
            || number_field(line, b"\"seq\":") != Some(self.seq + 1)
            || number_field(line, b"\"v\":") != Some(1)
        {
            self.broken = true;
            return false;
        }
        self.seq += 1;
        hex::encode_to_slice(Sha256::digest(line), &mut self.expected)
            .expect("64 hex digits for 32 bytes");
        true
    }
}

/// The bytes [`check_chain`] reads at a time.
const CHECKED_BLOCK: u64 = 256 << 10;

/// Reads the log in blocks, checks each whole line's `prev` against the hash of the line
/// before, and sends the blocks of checked lines; on a broken link, sends the lines before
/// it and then the error. A torn last line (no newline) is left out, as [`Records`] does.
/// Stops early when the reader is gone.
fn check_chain(
    mut file: File,
    path: &Path,
    blocks: &std::sync::mpsc::SyncSender<Result<Vec<u8>, AuditError>>,
    free: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    use std::io::Read as _;
    let mut chain = Chain::default();
    let mut line_no = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = free.try_recv().unwrap_or_default();
        block.clear();
        block.extend_from_slice(&carry);
        let read = (&mut file).take(CHECKED_BLOCK).read_to_end(&mut block);
        let n = match read {
            Ok(n) => n,
            Err(source) => {
                let _ = blocks.send(Err(AuditError::Io {
                    path: path.to_path_buf(),
                    source,
                }));
                return;
            }
        };
        let whole = memchr::memrchr(b'\n', &block).map_or(0, |i| i + 1);
        carry.clear();
        carry.extend_from_slice(&block[whole..]);
        block.truncate(whole);
        let mut start = 0;
        while start < block.len() {
            let end = start + memchr::memchr(b'\n', &block[start..]).unwrap_or(block.len() - start);
            let line = &block[start..end];
            line_no += 1;
            if !chain.follow(line) {
                block.truncate(start);
                if !block.is_empty() && blocks.send(Ok(block)).is_err() {
                    return;
                }
                let _ = blocks.send(Err(AuditError::BrokenChain {
                    path: path.to_path_buf(),
                    line: line_no,
                }));
                return;
            }
            start = end + 1;
        }
        if !block.is_empty() && blocks.send(Ok(block)).is_err() {
            return;
        }
        if n == 0 {
            return;
        }
    }
}

/// The whole number a line holds under `key` (its first occurrence: a record starts
/// `{"v":1,"seq":N,`), read as `audit verify`'s JSON parser reads it: blanks after the
/// colon allowed, and anything but digits (`4.0`, `-1`) is no number.
fn number_field(line: &[u8], key: &[u8]) -> Option<u64> {
    let at = line.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &line[at..];
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let token = &rest[start..];
    let end = token
        .iter()
        .position(|b| matches!(b, b',' | b'}') || b.is_ascii_whitespace())
        .unwrap_or(token.len());
    let token = &token[..end];
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// The top-level `prev` of a record line as written (its last field), without parsing it.
/// Inside a JSON string a quote is escaped, so `"prev":"` only matches a key.
fn prev_field(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"prev\":\"";
    let at = line.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    line.get(at..at + 64)
}

impl Records {
    fn new(source: Option<Source>, path: &Path) -> Self {
        Self {
            source,
            line: 0,
            buffer: Vec::new(),
            path: path.to_path_buf(),
        }
    }

    /// The next line's bytes (without its newline), for readers that parse only what they
    /// need; the buffer is reused, so memory stays flat.
    pub fn next_line(&mut self) -> Option<Result<(u64, &[u8]), AuditError>> {
        match self.source.as_mut()? {
            Source::Plain { reader, chain } => {
                if chain.as_ref().is_some_and(|c| c.broken) {
                    return None;
                }
                self.buffer.clear();
                match reader.read_until(b'\n', &mut self.buffer) {
                    Ok(0) => None,
                    // A torn last line (a crash mid-write) is no record: `verify` reports
                    // it and the next append moves it aside.
                    Ok(_) if self.buffer.last() != Some(&b'\n') => None,
                    Ok(_) => {
                        self.line += 1;
                        let line = self.buffer.strip_suffix(b"\n").unwrap_or(&self.buffer);
                        if let Some(chain) = chain
                            && !chain.follow(line)
                        {
                            return Some(Err(AuditError::BrokenChain {
                                path: self.path.clone(),
                                line: self.line,
                            }));
                        }
                        Some(Ok((self.line, line)))
                    }
                    Err(source) => Some(Err(AuditError::Io {
                        path: self.path.clone(),
                        source,
                    })),
                }
            }
            Source::Failed(error) => error.take().map(Err),
            Source::Checked {
                blocks,
                spent,
                block,
                at,
                finished,
            } => {
                while *at >= block.len() {
                    if *finished {
                        return None;
                    }
                    match blocks.recv() {
                        Ok(Ok(next)) => {
                            let _ = spent.try_send(std::mem::replace(block, next));
                            *at = 0;
                        }
                        Ok(Err(e)) => {
                            *finished = true;
                            return Some(Err(e));
                        }
                        Err(_) => {
                            *finished = true;
                            return None;
                        }
                    }
                }
                let start = *at;
                let end =
                    start + memchr::memchr(b'\n', &block[start..]).unwrap_or(block.len() - start);
                *at = end + 1;
                self.line += 1;
                Some(Ok((self.line, &block[start..end])))
            }
        }
    }

    /// The error for line `line`, which is not a record.
    pub fn corrupt(&self, line: u64, reason: impl std::fmt::Display) -> AuditError {
        AuditError::Corrupt {
            path: self.path.clone(),
            line,
            reason: reason.to_string(),
        }
    }
}

impl Iterator for Records {
    type Item = Result<Record, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (number, parsed) = match self.next_line()? {
            Ok((number, line)) => (
                number,
                serde_json::from_slice(line).map_err(|e| e.to_string()),
            ),
            Err(e) => return Some(Err(e)),
        };
        Some(parsed.map_err(|reason| self.corrupt(number, reason)))
    }
}

/// The user part of the actor when neither git nor the environment names one.
const UNKNOWN_USER: &str = "unknown";

/// True for an actor recorded when nobody could tell who ran `release` (no git
/// `user.email`, no `$USER`): such a record names no person, so it never counts as one.
pub fn is_unidentified(actor: &str) -> bool {
    actor
        .strip_prefix(UNKNOWN_USER)
        .is_some_and(|rest| rest.starts_with('@'))
}

/// Who is acting: git's `user.email` for the project, else `$USER@host`.
pub fn current_actor(root: &Path) -> String {
    let email = std::process::Command::new("git")
        .args(["config", "--get", "user.email"])
        .current_dir(root)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    email.unwrap_or_else(unknown_actor)
}

/// `$USER@host`, for when git names nobody.
fn unknown_actor() -> String {
    // An empty or blank variable names nobody either (`USER= release approve …` must not
    // record an approver called "@host" who counts as a person).
    let named = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let user = named("USER")
        .or_else(|| named("LOGNAME"))
        .unwrap_or_else(|| UNKNOWN_USER.into());
    let uname = rustix::system::uname();
    format!("{user}@{}", uname.nodename().to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(dir: &Path) -> AuditLog {
        AuditLog::new(
            dir.join("audit.jsonl"),
            "tester@example.com".into(),
            Redactor::default(),
        )
    }

    fn entry(kind: &'static str, n: u64) -> Entry {
        Entry {
            run: "r-1".into(),
            kind,
            component: Some("api".into()),
            stage: Some("production".into()),
            data: serde_json::json!({ "n": n }),
        }
    }

    #[test]
    fn chain_links_each_line_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        let a = log.append(entry("run.started", 1)).unwrap();
        let b = log.append(entry("run.finished", 2)).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let first: Record = serde_json::from_str(lines[0]).unwrap();
        let second: Record = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(first.prev, ZERO_HASH);
        assert_eq!(second.prev, line_hash(lines[0].as_bytes()));
        assert_eq!(b.head, line_hash(lines[1].as_bytes()));
        let v = log.verify().unwrap();
        assert!(v.problem.is_none());
        assert_eq!(v.records, 2);
        assert_eq!(v.head.as_deref(), Some(b.head.as_str()));
        // Field order is the documented one.
        assert!(
            lines[0].starts_with("{\"v\":1,\"seq\":1,\"ts\":"),
            "{}",
            lines[0]
        );
    }

    fn checked_lines(log: &AuditLog) -> Result<u64, AuditError> {
        let mut records = log.records_checked()?;
        let mut n = 0;
        while let Some(next) = records.next_line() {
            n = next?.0;
        }
        Ok(n)
    }

    /// The actor found on its own thread is git's `user.email` for the project, in the
    /// records as from `actor()`.
    #[test]
    fn the_actor_found_meanwhile_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .current_dir(dir.path())
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["init", "-q"]);
        git(&["config", "user.email", "oncall@example.com"]);
        let log = AuditLog::for_current_actor(
            dir.path().join("audit.jsonl"),
            dir.path(),
            Redactor::default(),
        );
        log.append(entry("run.started", 1)).unwrap();
        assert_eq!(log.actor(), "oncall@example.com");
        let text = std::fs::read_to_string(log.path()).unwrap();
        let record: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(record.actor, "oncall@example.com");
    }

    #[test]
    fn checked_records_stop_where_verify_does() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        for n in 1..=3 {
            log.append(entry("gates.evaluated", n)).unwrap();
        }
        assert_eq!(checked_lines(&log).unwrap(), 3);
        let text = std::fs::read_to_string(log.path()).unwrap();

        // A byte changed in line 2: line 3's `prev` no longer matches.
        std::fs::write(log.path(), text.replacen("\"n\":2", "\"n\":7", 1)).unwrap();
        let err = checked_lines(&log).unwrap_err();
        assert!(
            matches!(err, AuditError::BrokenChain { line: 3, .. }),
            "{err}"
        );
        assert_eq!(log.verify().unwrap().problem.unwrap().line, 3);

        // A line appended by hand with a made-up `prev`.
        let forged = "{\"v\":1,\"seq\":4,\"ts\":\"2026-11-24T12:00:00.000Z\",\"run\":\"rx\",\"kind\":\"approval.recorded\",\"actor\":\"mallory@example.com\",\"component\":\"api\",\"stage\":\"staging\",\"data\":{\"to\":\"staging\"},\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n";
        std::fs::write(log.path(), format!("{text}{forged}")).unwrap();
        let err = checked_lines(&log).unwrap_err();
        assert!(
            matches!(err, AuditError::BrokenChain { line: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("release audit verify"), "{err}");
    }

    #[test]
    fn checked_records_give_the_same_lines_across_blocks_and_skip_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        // A line longer than a block, and enough lines to span several blocks.
        let mut big = entry("step.finished", 0);
        big.data = serde_json::json!({ "stdout": "x".repeat(1_500_000) });
        log.append(entry("run.started", 1)).unwrap();
        log.append(big).unwrap();
        for n in 0..5000 {
            log.append(entry("step.finished", n)).unwrap();
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"v\":1,\"seq\":99").unwrap();
        let mut plain = log.records().unwrap();
        let mut checked = log.records_checked().unwrap();
        let mut n = 0;
        loop {
            let a = plain
                .next_line()
                .map(|r| r.map(|(l, b)| (l, b.to_vec())).unwrap());
            let b = checked
                .next_line()
                .map(|r| r.map(|(l, b)| (l, b.to_vec())).unwrap());
            assert_eq!(a, b, "line {}", n + 1);
            if a.is_none() {
                break;
            }
            n += 1;
        }
        assert_eq!(n, 5002);
    }

    #[test]
    fn a_second_writer_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let one = log(dir.path());
        let two = log(dir.path());
        one.append(entry("a", 1)).unwrap();
        two.append(entry("b", 2)).unwrap();
        one.append(entry("c", 3)).unwrap();
        let v = one.verify().unwrap();
        assert!(v.problem.is_none(), "{:?}", v.problem);
        assert_eq!(v.records, 3);
    }

    #[test]
    fn a_torn_tail_is_reported_then_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path());
        log.append(entry("a", 1)).unwrap();
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"v\":1,\"seq\":2,\"ts\":\"20").unwrap();
        drop(f);
        let v = log.verify().unwrap();
        assert_eq!(v.problem.as_ref().unwrap().kind, ProblemKind::Torn);
        assert_eq!(v.problem.as_ref().unwrap().line, 2);

        let fresh = self::log(dir.path());
        fresh.append(entry("b", 2)).unwrap();
        let records: Vec<Record> = fresh.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].kind, "audit.repaired");
        let moved = records[1].data["moved_to"].as_str().unwrap();
        assert_eq!(
            std::fs::read(moved).unwrap(),
            b"{\"v\":1,\"seq\":2,\"ts\":\"20"
        );
        assert_eq!(records[1].data["bytes"], 23);
        assert!(fresh.verify().unwrap().problem.is_none());
    }

    #[test]
    fn secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut redactor = Redactor::default();
        redactor.add("hunter2-secret-token");
        let log = AuditLog::new(dir.path().join("a.jsonl"), "t".into(), redactor);
        log.append(Entry {
            data: serde_json::json!({ "url": "https://x/hunter2-secret-token/y", "list": ["hunter2-secret-token"] }),
            ..entry("k", 0)
        })
        .unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[redacted]"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Any change to a byte of a line before the last breaks verification at or before
        /// the line after it (its `prev` no longer matches), or makes it unparsable.
        #[test]
        fn any_edited_byte_is_found(n in 2u64..12, pick in any::<proptest::sample::Index>(), flip in 1u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let log = log(dir.path());
            for i in 0..n {
                log.append(entry("k", i)).unwrap();
            }
            let head_before = log.verify().unwrap().head;
            let mut bytes = std::fs::read(log.path()).unwrap();
            // The last line has no successor to vouch for it: `--expect-head` covers it.
            let last_start = bytes[..bytes.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
            let at = pick.index(bytes.len());
            prop_assume!(bytes[at] != b'\n');
            if at >= last_start {
                bytes[at] ^= flip;
                prop_assume!(bytes[at] != b'\n');
                std::fs::write(log.path(), &bytes).unwrap();
                let v = log.verify().unwrap();
                prop_assert!(v.problem.is_some() || v.head != head_before);
                return Ok(());
            }
            bytes[at] ^= flip;
            prop_assume!(bytes[at] != b'\n');
            std::fs::write(log.path(), &bytes).unwrap();
            let v = log.verify().unwrap();
            prop_assert!(v.problem.is_some(), "edit at {} not found", at);
            let edited_line = bytes[..at].split(|&b| b == b'\n').count() as u64;
            prop_assert!(v.problem.unwrap().line <= edited_line + 1);
        }

        #[test]
        fn deleting_a_line_is_found(n in 3u64..12, pick in any::<proptest::sample::Index>()) {
            let dir = tempfile::tempdir().unwrap();
            let log = log(dir.path());
            for i in 0..n {
                log.append(entry("k", i)).unwrap();
            }
            let text = std::fs::read_to_string(log.path()).unwrap();
            let mut lines: Vec<&str> = text.lines().collect();
            let removed = pick.index(lines.len() - 1); // not the last: that is a valid shorter log
            lines.remove(removed);
            std::fs::write(log.path(), lines.join("\n") + "\n").unwrap();
            let v = log.verify().unwrap();
            prop_assert_eq!(v.problem.map(|p| p.line), Some(removed as u64 + 1));
        }
    }
}
