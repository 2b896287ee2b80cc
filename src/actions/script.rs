//! `run: {script, shell: true}`: the script is rendered whole (control blocks, `{% raw %}`
//! and all), but no value it prints becomes shell text. Each `{{ … }}` leaves a marker in
//! the rendered text and its value is kept aside, passed to `sh -c` as positional argument
//! N. The script starts by copying the arguments to variables (`__release_N="$N";`), so
//! that functions, `set --` and `shift` cannot change what a reference means; then a
//! reading of the text as `sh` reads it puts in each marker's place a reference to that
//! variable which fits where it stands:
//!
//! | where | reference |
//! |---|---|
//! | outside quotes | `"${__release_N}"` |
//! | inside double quotes, in a here-document with an unquoted delimiter | `${__release_N}` |
//! | inside single quotes | `'"${__release_N}"'` (leave, insert quoted, re-enter) |
//! | in a comment | nothing (the shell ignores it) |
//!
//! So the value is one word, never split, globbed or run by this script. Everywhere else
//! is refused, because no reference is safe there in every shell: inside `$( … )`,
//! backquotes, `${ … }` (a pattern there is a glob), `$(( … ))` (arithmetic evaluates
//! it), a here-document with a quoted delimiter (nothing expands) or inside a substitution
//! of an expanding one, and right after a `\` or `$`, which would change the reference.
//! The fix the message gives: set a variable on a line of its own (`v={{ … }}`) and use
//! `"$v"` there. Macros, `{% set %}` blocks and `{% filter %}` blocks print text made of
//! the script itself, which cannot be told from a value: refused too.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use minijinja::Environment;

use crate::engine::context::Templater;

/// Opens and closes a marker: private-use characters no script holds.
const OPEN: char = '\u{e000}';
const CLOSE: char = '\u{e001}';

/// Why a value printed by a block cannot be placed.
const BLOCK_OUTPUT: &str = "a value holds the private-use characters U+E000 or U+E001, or a \
    macro, a `{% set %}` block or a `{% filter %}` block printed script text and values \
    together, which cannot be kept apart: print each value with its own `{{ … }}`";

/// The fix for a value where no reference is safe.
const USE_A_VARIABLE: &str =
    "set a variable to it on a line of its own (`v={{ … }}`) and use \"$v\" there";

/// The script for `sh -c` and the values of its positional arguments, in order.
pub fn render(templater: &Templater, script: &str) -> Result<(String, Vec<String>), String> {
    if script.contains([OPEN, CLOSE]) {
        return Err("the script holds the private-use characters U+E000 or U+E001".into());
    }
    let values = Arc::new(Mutex::new(Vec::new()));
    let marked = templater.render_with(script, marker_for(values.clone()))?;
    let values = std::mem::take(&mut *lock(&values));
    if values.iter().any(|v| v.contains([OPEN, CLOSE])) {
        return Err(BLOCK_OUTPUT.into());
    }
    let mut text = String::new();
    for n in 1..=values.len() {
        let _ = write!(text, "{}=\"${{{n}}}\" ", variable(n));
    }
    if !values.is_empty() {
        // On the script's first line, so that the shell's line numbers stay the script's.
        text.pop();
        text.push(';');
    }
    text.push_str(&place_references(&marked)?);
    Ok((text, values))
}

/// The variable holding the value of the script's N-th `{{ … }}`.
fn variable(n: usize) -> String {
    format!("__release_{n}")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a printed value becomes in the rendered text: a numbered marker, the value kept.
fn marker_for(values: Arc<Mutex<Vec<String>>>) -> impl Fn(String) -> String + Send + Sync {
    move |value| {
        let mut values = lock(&values);
        values.push(value);
        format!("{OPEN}{}{CLOSE}", values.len())
    }
}

/// What keeps a script's values from fitting where they stand, found by rendering it with a
/// placeholder for every variable, a number, a word and empty (both branches of an `{% if
/// %}`, and filters that want a number): for `runbook validate`, so that it is known before the day. `None` when nothing
/// does, or when the template itself is wrong (reported on its own).
pub fn shape_problem(script: &str) -> Option<String> {
    if script.contains([OPEN, CLOSE]) {
        return Some("the script holds the private-use characters U+E000 or U+E001".into());
    }
    let env = crate::template::environment();
    let vars = crate::template::template_variables(&env, script).ok()?;
    // A number passes the `int` and `float` filters; an empty value takes the `else`.
    ["1", "x", ""].into_iter().find_map(|placeholder| {
        let values = Arc::new(Mutex::new(Vec::new()));
        let mut env: Environment<'_> = env.clone();
        let mark = marker_for(values.clone());
        env.set_formatter(move |out, _, value| {
            std::fmt::Write::write_str(out, &mark(value.to_string()))
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
        });
        let context = crate::template::placeholder_context_with(&vars, placeholder);
        let marked = env.render_str(script, context).ok()?;
        if lock(&values).iter().any(|v| v.contains([OPEN, CLOSE])) {
            return Some(BLOCK_OUTPUT.to_owned());
        }
        place_references(&marked).err()
    })
}

/// How `sh` reads the text at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// Outside quotes: the top level, or `$( … )` with its open parentheses.
    Plain {
        parens: usize,
    },
    Backquote,
    Single,
    Double,
    /// `${ … }`, inside double quotes or not (where a `'` is a plain character).
    Brace {
        quoted: bool,
    },
    /// `$(( … ))`, with its open parentheses.
    Arithmetic {
        parens: usize,
    },
}

const TOP: Frame = Frame::Plain { parens: 0 };

/// A here-document announced on the current line, whose body starts after it.
struct HereDoc {
    delimiter: String,
    strip_tabs: bool,
    expands: bool,
    /// Announced at the top level (not inside `$( )` or backquotes).
    top: bool,
}

/// The marked text with a reference in place of each marker, or why a marker stands where
/// none is safe. Past a construct the reading cannot follow with certainty (a here-document
/// announced inside a substitution, a `case` inside `$( )`, bash's `$'…'`), the reading is
/// lost: no later value is placed, each is refused.
fn place_references(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut stack = vec![TOP];
    let mut pending: Vec<HereDoc> = Vec::new();
    let mut rest = text;
    let mut lost: Option<&'static str> = None;
    // Whether the next character starts a word (so that `#` starts a comment, and `case`
    // is a keyword).
    let mut at_word_start = true;
    while let Some(ch) = rest.chars().next() {
        let frame = *stack.last().unwrap_or(&TOP);
        let unquoted = matches!(frame, Frame::Plain { .. } | Frame::Backquote);
        if ch == OPEN {
            if let Some(why) = lost {
                return Err(format!(
                    "a value after {why} cannot be placed with certainty: {USE_A_VARIABLE}, \
                     before that point"
                ));
            }
            let (n, after) = marker(rest);
            out.push_str(&reference(&stack, &out, n)?);
            rest = after;
            at_word_start = false;
        } else if rest.starts_with("\\\n") && frame != Frame::Single {
            // A line continuation: the shell removes it, and the word goes on.
            out.push_str("\\\n");
            rest = &rest[2..];
        } else if matches!(frame, Frame::Plain { .. }) && ch == '#' && at_word_start {
            // A comment, to the end of the line: its markers dropped. (Inside backquotes the
            // closing backquote comes first: no comment is looked for there.)
            let end = rest.find('\n').unwrap_or(rest.len());
            let mut comment = &rest[..end];
            while let Some(at) = comment.find(OPEN) {
                out.push_str(&comment[..at]);
                comment = marker(&comment[at..]).1;
            }
            out.push_str(comment);
            rest = &rest[end..];
        } else if ch == '\n' && !pending.is_empty() && stack.len() == 1 {
            out.push('\n');
            rest = &rest[1..];
            for doc in pending.drain(..) {
                let (body, after) = here_doc_body(rest, &doc)?;
                out.push_str(&body);
                rest = after;
            }
            at_word_start = true;
        } else if ch == '\n' && !pending.is_empty() {
            // The line that announced a here-document goes on inside a substitution or
            // quotes: where its body starts is the shell's to know.
            lost.get_or_insert("a here-document announced on a line that goes on past it");
            pending.clear();
            out.push('\n');
            rest = &rest[1..];
        } else if unquoted && rest.starts_with("<<<") {
            // bash's here-string (dash refuses it): not a here-document.
            out.push_str("<<<");
            rest = &rest[3..];
            at_word_start = false;
        } else if unquoted && rest.starts_with("<<") {
            let (doc, len) = here_doc(rest, stack.len() == 1)?;
            match doc {
                Some(doc) => pending.push(doc),
                None => {
                    lost.get_or_insert("a here-document whose delimiter cannot be read");
                }
            }
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            at_word_start = false;
        } else {
            if unquoted && rest.starts_with("$'") {
                lost.get_or_insert("bash's `$'…'` quoting");
            }
            if at_word_start && stack.len() > 1 && starts_word(rest, "case") {
                lost.get_or_insert("a `case` inside a substitution");
            }
            let depth = stack.len();
            let (copied, closed_substitution) = transition(&mut stack, rest, ch);
            let copied = copied.min(rest.len());
            out.push_str(&rest[..copied]);
            // A `$(` or backquote just opened starts a command, hence a word.
            let opened_command = stack.len() > depth
                && matches!(stack.last(), Some(Frame::Plain { .. } | Frame::Backquote));
            at_word_start = opened_command
                || (unquoted
                    && !closed_substitution
                    && (matches!(ch, ' ' | '\t' | '\n') || ";&|()".contains(ch)));
            rest = &rest[copied..];
        }
    }
    Ok(out)
}

/// Whether `rest` starts with the word `word` (followed by a blank, an operator or the end).
fn starts_word(rest: &str, word: &str) -> bool {
    rest.strip_prefix(word).is_some_and(|after| {
        after.is_empty() || after.starts_with([' ', '\t', '\n', ';', ')', '&', '|'])
    })
}

/// The reference to value `n` where the reading stands (`stack`), `out` being the text so
/// far; or why no reference is safe there.
fn reference(stack: &[Frame], out: &str, n: usize) -> Result<String, String> {
    let name = variable(n);
    let inner = stack.last().copied().unwrap_or(TOP);
    if inner != Frame::Single {
        check_before(out, "")?;
    }
    match stack {
        [_] => return Ok(format!("\"${{{name}}}\"")),
        [_, Frame::Double] => return Ok(format!("${{{name}}}")),
        [_, Frame::Single] => return Ok(format!("'\"${{{name}}}\"'")),
        _ => {}
    }
    let construct = stack[1..]
        .iter()
        .find_map(|frame| match frame {
            Frame::Plain { .. } => Some("`$( … )`"),
            Frame::Backquote => Some("backquotes"),
            Frame::Brace { .. } => Some("`${ … }`"),
            Frame::Arithmetic { .. } => {
                Some("`$(( … ))`, where the shell evaluates it as arithmetic,")
            }
            Frame::Single | Frame::Double => None,
        })
        .unwrap_or("nested quotes");
    Err(format!(
        "a value inside {construct} cannot be quoted safely there: {USE_A_VARIABLE}"
    ))
}

/// A `\` or `$` right before a value would change its reference (escape it, or make
/// `$$`): refused, in `where`.
fn check_before(out: &str, place: &str) -> Result<(), String> {
    match out.chars().last() {
        Some('\\') => Err(format!(
            "a `\\` right before a value{place} would escape its reference: {USE_A_VARIABLE}"
        )),
        Some('$') => Err(format!(
            "a `$` right before a value{place} would make it another expansion (`$${{…}}` is the \
             shell's process id): write `$` apart from `{{{{ … }}}}`, or {USE_A_VARIABLE}"
        )),
        _ => Ok(()),
    }
}

/// Enters or leaves quotes and nestings at `ch` (the start of `rest`): how many bytes to
/// copy as they are, and whether this closed a substitution (`)`, `))` or a backquote,
/// after which the word goes on).
fn transition(stack: &mut Vec<Frame>, rest: &str, ch: char) -> (usize, bool) {
    let nested = stack.len() > 1;
    let Some(top) = stack.last_mut() else {
        return (ch.len_utf8(), false);
    };
    let frame = *top;
    let opens_single = matches!(
        frame,
        Frame::Plain { .. } | Frame::Backquote | Frame::Brace { quoted: false }
    );
    let opens_double = opens_single || frame == Frame::Brace { quoted: true };
    match (frame, ch) {
        (Frame::Single, '\'') | (Frame::Double, '"') | (Frame::Brace { .. }, '}') => {
            stack.pop();
            (1, false)
        }
        (Frame::Backquote, '`') => {
            stack.pop();
            (1, true)
        }
        (Frame::Single, _) => (ch.len_utf8(), false),
        // An escaped character is copied as it is, quotes included (not a marker: that is
        // refused where it is met).
        (_, '\\') => match rest[1..].chars().next() {
            Some(OPEN) | None => (1, false),
            Some(next) => (1 + next.len_utf8(), false),
        },
        (_, '\'') if opens_single => {
            stack.push(Frame::Single);
            (1, false)
        }
        (_, '"') if opens_double => {
            stack.push(Frame::Double);
            (1, false)
        }
        (_, '$') if rest.starts_with("$((") => {
            stack.push(Frame::Arithmetic { parens: 0 });
            (3, false)
        }
        (_, '$') if rest.starts_with("$(") => {
            stack.push(TOP);
            (2, false)
        }
        (_, '$') if rest.starts_with("${") => {
            let quoted = matches!(frame, Frame::Double | Frame::Brace { quoted: true });
            stack.push(Frame::Brace { quoted });
            (2, false)
        }
        (_, '`') => {
            stack.push(Frame::Backquote);
            (1, false)
        }
        (Frame::Plain { parens }, '(') if nested => {
            *top = Frame::Plain { parens: parens + 1 };
            (1, false)
        }
        (Frame::Plain { parens: 0 }, ')') if nested => {
            stack.pop();
            (1, true)
        }
        (Frame::Plain { parens }, ')') if nested => {
            *top = Frame::Plain { parens: parens - 1 };
            (1, false)
        }
        (Frame::Arithmetic { parens }, '(') => {
            *top = Frame::Arithmetic { parens: parens + 1 };
            (1, false)
        }
        (Frame::Arithmetic { parens: 0 }, ')') if rest.starts_with("))") => {
            stack.pop();
            (2, true)
        }
        (Frame::Arithmetic { parens }, ')') => {
            *top = Frame::Arithmetic {
                parens: parens.saturating_sub(1),
            };
            (1, false)
        }
        _ => (ch.len_utf8(), false),
    }
}

/// The marker's number and the text after it.
fn marker(text: &str) -> (usize, &str) {
    let inner = &text[OPEN.len_utf8()..];
    let end = inner.find(CLOSE).unwrap_or(inner.len());
    let n = inner[..end].parse().unwrap_or(0);
    (n, &inner[(end + CLOSE.len_utf8()).min(inner.len())..])
}

/// A here-document's operator and delimiter word at the start of `text` (`<<EOF`,
/// `<<-'EOF'`, `<< "END OF NOTES"`), and how many bytes they take; `None` for a word that
/// cannot be read (an unclosed quote). The word ends at a blank, a newline or an operator
/// outside quotes (a `\r` is part of it, as for the shell). A value in it is refused.
fn here_doc(text: &str, top: bool) -> Result<(Option<HereDoc>, usize), String> {
    let mut i = 2;
    let strip_tabs = text[i..].starts_with('-');
    if strip_tabs {
        i += 1;
    }
    i += text[i..].len() - text[i..].trim_start_matches([' ', '\t']).len();
    let start = i;
    let mut delimiter = String::new();
    let mut quoted = false;
    let mut chars = text[i..].char_indices();
    let mut end = text.len();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => {
                end = start + at;
                break;
            }
            OPEN => {
                return Err(format!(
                    "a value in a here-document's delimiter would be lost: {USE_A_VARIABLE}"
                ));
            }
            '\'' | '"' => {
                quoted = true;
                let mut closed = false;
                for (_, q) in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    delimiter.push(q);
                }
                if !closed {
                    return Ok((None, text.len()));
                }
            }
            '\\' => {
                quoted = true;
                if let Some((_, next)) = chars.next() {
                    delimiter.push(next);
                }
            }
            _ => delimiter.push(c),
        }
    }
    if end == start || delimiter.is_empty() {
        return Ok((None, end));
    }
    Ok((
        Some(HereDoc {
            delimiter,
            strip_tabs,
            expands: !quoted,
            top,
        }),
        end,
    ))
}

/// A here-document's body (through its delimiter line) with its markers replaced, and the
/// text after it. In an expanding body at the top level a value goes in as `${…}`: it is
/// expanded, never split or globbed (quotes are plain characters there). After a `$(`,
/// backquote or `${` anywhere earlier in the body, or in a body the shell does not expand,
/// no reference is safe. A line continued by `\` is never the delimiter line.
fn here_doc_body<'t>(text: &'t str, doc: &HereDoc) -> Result<(String, &'t str), String> {
    let mut body = String::new();
    let mut rest = text;
    let mut continued = false;
    while !rest.is_empty() {
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        let bare = line.strip_suffix('\n').unwrap_or(line);
        let bare = if doc.strip_tabs {
            bare.trim_start_matches('\t')
        } else {
            bare
        };
        if !continued && bare == doc.delimiter {
            body.push_str(line);
            return Ok((body, rest));
        }
        let backslashes = bare.len() - bare.trim_end_matches('\\').len();
        continued = doc.expands && line.ends_with('\n') && backslashes % 2 == 1;
        let mut line = line;
        while let Some(at) = line.find(OPEN) {
            let before = &line[..at];
            if !doc.expands {
                return Err(format!(
                    "a value inside the here-document `<<'{0}'` would stay as text: its quoted \
                     delimiter turns expansion off; write `<<{0}` to let the value in",
                    doc.delimiter
                ));
            }
            body.push_str(before);
            if !doc.top || opens_substitution(&body) {
                return Err(format!(
                    "a value in a here-document after a substitution (`$(`, a backquote, \
                     `${{`) cannot be placed with certainty: {USE_A_VARIABLE}"
                ));
            }
            check_before(&body, " in a here-document")?;
            let (n, after) = marker(&line[at..]);
            let _ = write!(body, "${{{}}}", variable(n));
            line = after;
        }
        body.push_str(line);
    }
    Ok((body, rest))
}

/// Whether a here-document's body so far holds a substitution: past one, where a value
/// would stand is the shell's to know.
fn opens_substitution(body: &str) -> bool {
    body.contains("$(") || body.contains("${") || body.contains('`')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::context::{StepOutputs, base_context};

    fn templater(v: &str) -> Templater {
        let base = base_context(&serde_json::json!({
            "component": "api",
            "run": { "dry_run": false },
            "params": { "v": v, "n": "3" },
        }));
        Templater::new(&base, &StepOutputs::default())
    }

    /// What `sh` prints running the script with its values as arguments.
    fn run(script: &str, v: &str) -> String {
        let (text, values) = render(&templater(v), script).unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&text)
            .arg("sh")
            .args(&values)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            !dir.path().join("pwned").exists(),
            "{script} -> {text}: a value ran"
        );
        assert!(out.status.success(), "{script} -> {text}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn each_value_becomes_a_reference_that_fits_where_it_stands() {
        let (text, values) = render(
            &templater("x"),
            r#"echo {{ params.v }} && rm -rf "{{ component }}"/x '{{ params.n }}' \"{{ params.v }}"#,
        )
        .unwrap();
        assert_eq!(
            text,
            r#"__release_1="${1}" __release_2="${2}" __release_3="${3}" __release_4="${4}";echo "${__release_1}" && rm -rf "${__release_2}"/x ''"${__release_3}"'' \""${__release_4}""#
        );
        assert_eq!(values, ["x", "api", "3", "x"]);
        let (text, values) = render(&templater("x"), "plain").unwrap();
        assert_eq!((text.as_str(), values.len()), ("plain", 0));
    }

    const NASTY: &str = "a b;$(touch pwned)`touch pwned`'\"* \\ $HOME {{ x }}\n# c";

    /// Whatever the value and wherever it stands, `sh` sees exactly that value, once.
    #[test]
    fn values_stay_one_word_in_every_context() {
        for script in [
            "printf '[%s]' {{ params.v }}",
            r#"printf '[%s]' "{{ params.v }}""#,
            r#"printf '[%s]' "<{{ params.v }}>""#,
            "printf '[%s]' '<{{ params.v }}>'",
            "printf '[%s]' x{{ params.v }}y",
            "printf '[%s]' 'C:\\{{ params.v }}'",
            // A comment's apostrophe is not a quote, nor one after a line continuation.
            "# it's fine\nprintf '[%s]' {{ params.v }}",
            "printf '[%s]' {{ params.v }} # it's fine {{ params.v }}",
            "true \\\n# it's a comment\nprintf '[%s]' \"x'{{ params.v }}\"",
            // Quotes inside `$( )` and backquotes start afresh, also in a `case`.
            "x=`echo \"it's\"`; printf '[%s]' \"{{ params.v }}\"",
            r#"echo "${UNSET:-it's}" >/dev/null; printf '[%s]' "{{ params.v }}""#,
            // A `#` glued to a substitution is part of the word.
            "printf '[%s]' $(echo v1)#{{ params.v }}",
            // Functions, `set --` and `shift` leave the values alone.
            "f() { printf '[%s]' \"{{ params.v }}\"; }; set -- one two; shift; f other",
            // Here-documents: quotes are plain text there, also one inside backquotes.
            "cat <<EOF\nit's [{{ params.v }}]\nEOF",
            "cat <<-EOF\n\tit's \"[{{ params.v }}]\"\n\tEOF\necho",
            // Cases of the second review, read as dash reads them.
            "cat <<\"END OF NOTES\"\nDeployed.\nEND OF NOTES\nprintf '[%s]' {{ params.v }}",
            "cat <<EOF\r\nnotes\r\nEOF\r\nprintf '[%s]' {{ params.v }}\r\n",
            "cat <<EOF\nshare: \\\\srv\\drops\\\nEOF\necho \"shipped\nEOF\nprintf '[%s]' {{ params.v }}",
            "when=`date +%F # day`; printf '[%s]' {{ params.v }}",
            // Control blocks and raw text render as minijinja renders them.
            "{% if run.dry_run %}echo dry{% else %}printf '[%s]' {{ params.v }}{% endif %}",
            "echo '{% raw %}{{.State}}{% endraw %}' >/dev/null; printf '[%s]' {{ params.v }}",
        ] {
            let printed = run(script, NASTY);
            assert_eq!(printed.matches(NASTY).count(), 1, "{script}: {printed}");
        }
        assert_eq!(
            run("echo '{% raw %}{{.State.Status}}{% endraw %}'", "x"),
            "{{.State.Status}}\n"
        );
        assert_eq!(run("echo {{ \"}}\" }}", "x"), "}}\n");
    }

    #[test]
    fn places_that_cannot_hold_a_value_are_refused() {
        let t = templater("1");
        for (script, why) in [
            ("echo $(( {{ params.n }} + 1 ))", "arithmetic"),
            ("echo $(( ${N:-{{ params.n }}} ))", "arithmetic"),
            ("cat <<'EOF'\n{{ params.v }}\nEOF", "quoted"),
            (r#"echo "$(printf '%s' "{{ params.v }}")""#, "`$( … )`"),
            (
                r#"echo "$(case x in x) printf '%s' "{{ params.v }}";; esac)""#,
                "certainty",
            ),
            (
                r#"x=$(case a in a) echo "it's";; esac); printf '[%s]' "{{ params.v }}""#,
                "certainty",
            ),
            // Cases of the second review: the reading would have been wrong.
            (
                "cat <<EOF\nline (1) $(printf '<%s>' {{ params.v }})\nEOF",
                "substitution",
            ),
            (
                "cat <<EOF\n$(printf '<%s>' \\\n  {{ params.v }})\nEOF",
                "substitution",
            ),
            (
                "cat <<EOF; printf '[%s]' $(\n  printf '%s' {{ params.v }})\nnotes\nEOF",
                "certainty",
            ),
            (
                "x=`cat <<EOF\nit's\nEOF\n`; printf '[%s]' \"name='{{ params.v }}'\"",
                "certainty",
            ),
            (
                "cat <<EOF; x=$(\n  true)\nnotes\nEOF\nprintf '%s' {{ params.v }}",
                "certainty",
            ),
            ("cat <<{{ params.v }}\nhello\n{{ params.v }}", "delimiter"),
            (
                "x=$(case a in a) echo esac ;; *) echo;; esac); printf '%s' {{ params.v }}",
                "certainty",
            ),
            ("echo $'it\\'s' {{ params.v }}", "certainty"),
            (
                "echo \"`printf '%s' \\\"{{ params.v }}\\\"`\"",
                "backquotes",
            ),
            (r#"echo "${x#{{ params.v }}}""#, "`${ … }`"),
            (
                "cat <<EOF\n$(printf '%s' {{ params.v }})\nEOF",
                "after a substitution",
            ),
            (r#"echo "C:\{{ params.v }}""#, "escape"),
            (r#"echo "cost: ${{ params.v }}""#, "process id"),
            (
                "{% macro q(x) %}{{ x }}{% endmacro %}echo {{ q(params.v) }}",
                "macro",
            ),
            (
                "{% filter upper %}echo {{ params.v }}{% endfilter %}",
                "macro",
            ),
        ] {
            let error = render(&t, script).unwrap_err();
            assert!(error.contains(why), "{script}: {error}");
            assert!(shape_problem(script).is_some(), "validate misses {script}");
        }
        // Arithmetic without a value is fine; so is a quoted here-document without one.
        assert_eq!(run("echo $(( 2 + 1 ))", "x"), "3\n");
        assert_eq!(
            run("cat <<'EOF'\n$HOME\nEOF\necho {{ params.v }}", "x"),
            "$HOME\nx\n"
        );
    }

    #[test]
    fn validation_looks_at_both_branches() {
        assert!(
            shape_problem(
                "{% if params.n %}echo ok{% else %}echo $(( {{ params.n }} )){% endif %}"
            )
            .is_some_and(|e| e.contains("arithmetic"))
        );
        assert_eq!(
            shape_problem("# it's\necho \"{{ params.v }}\" '{{ component }}'"),
            None
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any value, any of these places: `sh` prints exactly the value.
        #[test]
        fn any_value_reaches_the_shell_as_it_is(
            value in "[ -~\\n\\t]{0,24}",
            place in 0usize..6,
        ) {
            let script = [
                "printf '%s' {{ params.v }}",
                r#"printf '%s' "{{ params.v }}""#,
                "printf '%s' '{{ params.v }}'",
                "f() { printf '%s' {{ params.v }}; }; set -- a b; f c",
                "# it's\nprintf '%s' {{ params.v }}",
                "cat <<EOF\n{{ params.v }}\nEOF",
            ][place];
            let printed = run(script, &value);
            // A here-document's body is the value and the line's end.
            let expected = if place == 5 { format!("{value}\n") } else { value.clone() };
            proptest::prop_assert_eq!(printed, expected);
        }
    }
}
