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
    /// Adds a secret value. A URL's secret parts are added too (the path, the query and
    /// each of its values, the user info), because servers quote them back on their own
    /// ("Cannot POST /services/T0/B0/…") and a webhook URL's secret is its path.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        self.add_one(secret);
        if let Ok(url) = reqwest::Url::parse(secret)
            && url.has_host()
        {
            let path = url.path();
            if path.len() > 1 {
                self.add_url_part(path);
                self.add_url_part(&path[1..]);
            }
            if let Some(query) = url.query() {
                self.add_one(query);
                for value in query
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(_, v)| v)
                {
                    self.add_url_part(value);
                }
            }
            if let Some(password) = url.password() {
                self.add_url_part(password);
            } else {
                // `https://TOKEN@host/…`: a long user name is a token; a short one
                // (`git`, `deploy`) is a name, and hiding it everywhere would garble output.
                if url.username().len() >= 12 {
                    self.add_url_part(url.username());
                }
            }
        }
    }

    /// Adds a part of a URL as written (percent-encoded) and as programs read it: a tool
    /// that prints its password prints `p@ss`, not `p%40ss`.
    fn add_url_part(&mut self, part: &str) {
        self.add_one(part);
        if part.contains('%') {
            self.add_one(&percent_decoded(part));
        }
        if part.contains('+') {
            // A query value as a form decoder reads it.
            self.add_one(&percent_decoded(&part.replace('+', " ")));
        }
    }

    fn add_one(&mut self, secret: &str) {
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

/// `%XX` sequences decoded (`+` kept, as in a URL's user info and path).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_secret_hides_its_path_query_and_user_info_wherever_quoted() {
        let mut r = Redactor::default();
        r.add("https://hooks.example.com/services/T0/B0/SLACKSECRETxyz?token=QUERYSECRET");
        r.add("redis://:s3cretRedisPw@127.0.0.1:6379/0");
        r.add("https://ghp_TOKENVALUE@github.com/o/r.git");
        let text = "answered 404: Cannot POST /services/T0/B0/SLACKSECRETxyz?token=QUERYSECRET; \
                    path=services/T0/B0/SLACKSECRETxyz; token QUERYSECRET; \
                    auth failed for :s3cretRedisPw; user ghp_TOKENVALUE";
        let out = r.redact(text);
        for secret in [
            "SLACKSECRET",
            "QUERYSECRET",
            "s3cretRedisPw",
            "ghp_TOKENVALUE",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        // As programs print them, decoded: `p%40ss%2Fw%3Ard` is the password `p@ss/w:rd`.
        let mut r = Redactor::default();
        r.add("redis://op%40user:p%40ss%2Fw%3Ard@127.0.0.1:6379/6");
        r.add("https://hooks.example.com/x?token=a%2Bb%20c+d");
        let out = r.redact("decoded pw: p@ss/w:rd; raw p%40ss%2Fw%3Ard; token a+b c d");
        assert_eq!(
            out,
            format!("decoded pw: {REDACTED}; raw {REDACTED}; token {REDACTED}")
        );
        // Short parts (`/0`, a user named `git`) are not secrets.
        let mut r = Redactor::default();
        r.add("ssh://deploy@host.example.com/0");
        assert_eq!(r.redact("deploy /0"), "deploy /0");
    }

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
