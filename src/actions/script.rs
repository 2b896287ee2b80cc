//! `run: {script, shell: true}`: the script is rendered whole (control blocks, `{% raw %}`
//! and all), but no value it prints becomes shell text. Each `{{ … }}` leaves a marker in
//! the rendered text and its value is kept aside; then a reading of the text as `sh` reads
//! it (quotes, `$( )`, backquotes, `${ }`, comments, here-documents) puts in each marker's
//! place a positional reference that fits where it stands, and the value is passed as that
//! argument. The value is thus always exactly one word, never split, globbed or run:
//!
//! | where | reference |
//! |---|---|
//! | outside quotes (in `$( )` and backquotes too) | `"${N}"` |
//! | inside double quotes, `${ … }` within them, an expanding here-document | `${N}` |
//! | inside single quotes | `'"${N}"'` (leave, insert quoted, re-enter) |
//! | in a comment | nothing (the shell ignores it) |
//!
//! Braces keep `${10}` from reading as `$1` followed by `0`. Two places cannot hold a value
//! and are refused: `$(( … ))`, where the shell would evaluate it as arithmetic, and a
//! here-document with a quoted delimiter (`<<'EOF'`), where the shell expands nothing.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::engine::context::Templater;

/// Opens and closes a marker: private-use characters no script holds.
const OPEN: char = '\u{e000}';
const CLOSE: char = '\u{e001}';

/// The script for `sh -c` and the values of its positional arguments, in order.
pub fn render(templater: &Templater, script: &str) -> Result<(String, Vec<String>), String> {
    if script.contains([OPEN, CLOSE]) {
        return Err("the script holds the private-use characters U+E000 or U+E001".into());
    }
    let values = Arc::new(Mutex::new(Vec::new()));
    let collected = values.clone();
    let marked = templater.render_with(script, move |value| {
        let mut values = collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        values.push(value);
        format!("{OPEN}{}{CLOSE}", values.len())
    })?;
    let text = place_references(&marked)?;
    let values = std::mem::take(
        &mut *values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok((text, values))
}

/// What keeps a script's values from fitting where they stand (a value inside `$(( ))` or
/// a quoted here-document), found by rendering it with a placeholder for every variable:
/// for `runbook validate`, so that it is known before the day. `None` when nothing does,
/// or when the template itself is wrong (reported on its own).
pub fn shape_problem(script: &str) -> Option<String> {
    let mut env = crate::template::environment();
    let vars = crate::template::template_variables(&env, script).ok()?;
    let count = Arc::new(Mutex::new(0usize));
    env.set_formatter(move |out, _, _| {
        let mut n = count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n += 1;
        std::fmt::Write::write_fmt(out, format_args!("{OPEN}{n}{CLOSE}"))
            .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
    });
    let marked = env
        .render_str(script, crate::template::placeholder_context(&vars))
        .ok()?;
    place_references(&marked).err()
}

/// How `sh` reads the text at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// Outside quotes: the top level, `$( … )` (with its open parentheses), backquotes.
    Plain {
        parens: usize,
    },
    Backquote,
    Single,
    Double,
    /// `${ … }`: a value there is quoted as the text around the `${` is.
    Brace {
        quoted: bool,
    },
    /// `$(( … ))`, with its open parentheses.
    Arithmetic {
        parens: usize,
    },
}

/// A here-document announced on the current line, whose body starts after it.
struct HereDoc {
    delimiter: String,
    strip_tabs: bool,
    expands: bool,
}

/// The marked text with a positional reference in place of each marker.
fn place_references(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut stack = vec![Frame::Plain { parens: 0 }];
    let mut pending: Vec<HereDoc> = Vec::new();
    let mut rest = text;
    // Whether the last character copied ends a word (so that `#` starts a comment).
    let mut at_word_start = true;
    while let Some(ch) = rest.chars().next() {
        let frame = *stack.last().unwrap_or(&Frame::Plain { parens: 0 });
        let unquoted = matches!(frame, Frame::Plain { .. } | Frame::Backquote);
        if ch == OPEN {
            let (n, after) = marker(rest);
            out.push_str(&reference(frame, n)?);
            rest = after;
            at_word_start = false;
        } else if unquoted && ch == '#' && at_word_start {
            // A comment, to the end of the line: its markers dropped.
            let end = rest.find('\n').unwrap_or(rest.len());
            let mut comment = &rest[..end];
            while let Some(at) = comment.find(OPEN) {
                out.push_str(&comment[..at]);
                comment = marker(&comment[at..]).1;
            }
            out.push_str(comment);
            rest = &rest[end..];
        } else if unquoted && ch == '\n' && !pending.is_empty() {
            out.push('\n');
            rest = &rest[1..];
            for doc in pending.drain(..) {
                let (body, after) = here_doc_body(rest, &doc)?;
                out.push_str(&body);
                rest = after;
            }
            at_word_start = true;
        } else {
            let copied = if matches!(frame, Frame::Plain { .. })
                && rest.starts_with("<<")
                && !rest.starts_with("<<<")
            {
                let (doc, len) = here_doc(rest);
                pending.extend(doc);
                len
            } else {
                transition(&mut stack, rest, ch)
            };
            let copied = copied.min(rest.len());
            out.push_str(&rest[..copied]);
            at_word_start = unquoted && (ch.is_whitespace() || ";&|()`".contains(ch));
            rest = &rest[copied..];
        }
    }
    Ok(out)
}

/// The reference to argument `n` that fits in `frame`.
fn reference(frame: Frame, n: usize) -> Result<String, String> {
    Ok(match frame {
        Frame::Plain { .. } | Frame::Backquote | Frame::Brace { quoted: false } => {
            format!("\"${{{n}}}\"")
        }
        Frame::Double | Frame::Brace { quoted: true } => format!("${{{n}}}"),
        Frame::Single => format!("'\"${{{n}}}\"'"),
        Frame::Arithmetic { .. } => {
            return Err(
                "a value inside `$(( … ))` would be evaluated by the shell as \
                        arithmetic: pass it as a variable and check it is a number first"
                    .into(),
            );
        }
    })
}

/// Enters or leaves quotes and nestings at `ch` (the start of `rest`); how many bytes to
/// copy as they are.
fn transition(stack: &mut Vec<Frame>, rest: &str, ch: char) -> usize {
    let nested = stack.len() > 1;
    let Some(top) = stack.last_mut() else {
        return ch.len_utf8();
    };
    let frame = *top;
    let opens_quote = matches!(
        frame,
        Frame::Plain { .. } | Frame::Backquote | Frame::Brace { .. }
    );
    match (frame, ch) {
        (Frame::Single, '\'')
        | (Frame::Double, '"')
        | (Frame::Backquote, '`')
        | (Frame::Brace { .. }, '}') => {
            stack.pop();
            1
        }
        (Frame::Single, _) => ch.len_utf8(),
        // An escaped character is copied as it is, quotes included.
        (_, '\\') => 1 + rest[1..].chars().next().map_or(0, char::len_utf8),
        (_, '\'') if opens_quote => {
            stack.push(Frame::Single);
            1
        }
        (_, '"') if opens_quote => {
            stack.push(Frame::Double);
            1
        }
        (_, '$') if rest.starts_with("$((") => {
            stack.push(Frame::Arithmetic { parens: 0 });
            3
        }
        (_, '$') if rest.starts_with("$(") => {
            stack.push(Frame::Plain { parens: 0 });
            2
        }
        (_, '$') if rest.starts_with("${") => {
            let quoted = matches!(frame, Frame::Double | Frame::Brace { quoted: true });
            stack.push(Frame::Brace { quoted });
            2
        }
        (_, '`') => {
            stack.push(Frame::Backquote);
            1
        }
        (Frame::Plain { parens } | Frame::Arithmetic { parens }, '(') if nested => {
            *top = with_parens(frame, parens + 1);
            1
        }
        (Frame::Plain { parens: 0 }, ')') if nested => {
            stack.pop();
            1
        }
        (Frame::Arithmetic { parens: 0 }, ')') if rest.starts_with("))") => {
            stack.pop();
            2
        }
        (Frame::Plain { parens } | Frame::Arithmetic { parens }, ')') if nested => {
            *top = with_parens(frame, parens.saturating_sub(1));
            1
        }
        _ => ch.len_utf8(),
    }
}

/// `frame` (a `$( )` or a `$(( ))`) with `parens` open parentheses.
fn with_parens(frame: Frame, parens: usize) -> Frame {
    match frame {
        Frame::Arithmetic { .. } => Frame::Arithmetic { parens },
        _ => Frame::Plain { parens },
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
/// `<<-'EOF'`, `<< "EOF"`), and how many bytes they take.
fn here_doc(text: &str) -> (Option<HereDoc>, usize) {
    let mut i = 2;
    let strip_tabs = text[i..].starts_with('-');
    if strip_tabs {
        i += 1;
    }
    i += text[i..].len() - text[i..].trim_start_matches([' ', '\t']).len();
    let word_len = text[i..]
        .find(|c: char| c.is_whitespace() || ";&|()<>".contains(c))
        .unwrap_or(text.len() - i);
    let word = &text[i..i + word_len];
    if word.is_empty() {
        return (None, i);
    }
    let expands = !word.contains(['\'', '"', '\\']);
    let delimiter: String = word.chars().filter(|c| !"'\"\\".contains(*c)).collect();
    (
        Some(HereDoc {
            delimiter,
            strip_tabs,
            expands,
        }),
        i + word_len,
    )
}

/// A here-document's body (through its delimiter line) with its markers replaced, and the
/// text after it. In an expanding body quotes are plain characters and a value goes in as
/// `${N}`: it is expanded, never split or globbed.
fn here_doc_body<'t>(text: &'t str, doc: &HereDoc) -> Result<(String, &'t str), String> {
    let mut body = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        let bare = line.trim_end_matches('\n');
        let bare = if doc.strip_tabs {
            bare.trim_start_matches('\t')
        } else {
            bare
        };
        if bare == doc.delimiter {
            body.push_str(line);
            return Ok((body, rest));
        }
        let mut line = line;
        while let Some(at) = line.find(OPEN) {
            if !doc.expands {
                return Err(format!(
                    "a value inside the here-document `<<'{}'` would stay as `${{…}}` text: \
                     its quoted delimiter turns expansion off; write `<<{}` to let the value in",
                    doc.delimiter, doc.delimiter
                ));
            }
            body.push_str(&line[..at]);
            let (n, after) = marker(&line[at..]);
            let _ = write!(body, "${{{n}}}");
            line = after;
        }
        body.push_str(line);
    }
    Ok((body, rest))
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
            r#"echo "${1}" && rm -rf "${2}"/x ''"${3}"'' \""${4}""#
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
            // A comment's apostrophe is not a quote.
            "# it's fine\nprintf '[%s]' {{ params.v }}",
            "printf '[%s]' {{ params.v }} # it's fine {{ params.v }}",
            // Quotes inside `$( )` and backquotes within double quotes start afresh.
            r#"echo "$(printf '[%s]' "{{ params.v }}")""#,
            r#"echo "$(printf '[%s]' {{ params.v }})""#,
            r#"echo "`printf '[%s]' {{ params.v }}`""#,
            r#"x=$(printf '[%s]' "{{ params.v }}"); echo "$x""#,
            r#"echo "${UNSET:-[{{ params.v }}]}""#,
            // A here-document: quotes are plain text there.
            "cat <<EOF\nit's [{{ params.v }}]\nEOF",
            "cat <<-EOF\n\tit's \"[{{ params.v }}]\"\n\tEOF\necho",
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
    fn validation_finds_the_places_that_cannot_hold_a_value() {
        assert!(
            shape_problem("echo $(( {{ params.n }} + 1 ))")
                .is_some_and(|e| e.contains("arithmetic"))
        );
        assert!(shape_problem("cat <<'EOF'\n{{ params.v }}\nEOF").is_some());
        assert_eq!(
            shape_problem("# it's\necho \"{{ params.v }}\" '{{ component }}'"),
            None
        );
    }

    #[test]
    fn places_that_cannot_hold_a_value_are_refused() {
        let t = templater("1");
        let error = render(&t, "echo $(( {{ params.n }} + 1 ))").unwrap_err();
        assert!(error.contains("arithmetic"), "{error}");
        let error = render(&t, "cat <<'EOF'\n{{ params.v }}\nEOF").unwrap_err();
        assert!(error.contains("quoted delimiter"), "{error}");
        // Arithmetic without a value is fine; so is a quoted here-document without one.
        assert_eq!(run("echo $(( 2 + 1 ))", "x"), "3\n");
        assert_eq!(
            run("cat <<'EOF'\n$HOME\nEOF\necho {{ params.v }}", "x"),
            "$HOME\nx\n"
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
                r#"printf '%s' "$(printf '%s' "{{ params.v }}")""#,
                "# it's\nprintf '%s' {{ params.v }}",
                r#"printf '%s' "${NOPE:-{{ params.v }}}""#,
            ][place];
            let printed = run(script, &value);
            // `$( )` drops trailing newlines, as the shell always does.
            let expected = if place == 3 { value.trim_end_matches('\n') } else { value.as_str() };
            proptest::prop_assert_eq!(printed, expected);
        }
    }
}
