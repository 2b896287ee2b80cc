//! Secrets (values read from `*_env` variables, tokens, webhook URLs) never reach output,
//! logs or the audit log: every text bound there passes through a [`Redactor`] that knows
//! the secret values of the run.

use std::borrow::Cow;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not treated as secrets: redacting `1` or `on` everywhere
/// would make output unreadable, and such values protect nothing.
const MIN_SECRET_LEN: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN || self.secrets.iter().any(|s| s == secret) {
            return;
        }
        self.secrets.push(secret.to_owned());
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), REDACTED);
        }
        Cow::Owned(out)
    }

    /// Redacts every string (keys included) in a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&key).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_longest_first() {
        let mut r = Redactor::default();
        r.add("abcd");
        r.add("abcdefgh");
        r.add("on");
        assert_eq!(
            r.redact("x abcdefgh y abcd z on"),
            "x [redacted] y [redacted] z on"
        );
        let mut v = serde_json::json!({"k": ["abcd", {"abcd": 1}]});
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"k": ["[redacted]", {"[redacted]": 1}]})
        );
    }
}
