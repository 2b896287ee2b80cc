//! Durations as people write them in configuration: `500ms`, `30s`, `5m`, `7d`, `1h30m`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

/// A duration written with units. Keeps its spelling for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
];

const HELP: &str =
    "write a number and a unit, e.g. `30s`, `5m`, `7d` or `1h30m` (units: ms, s, m, h, d, w)";

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err(format!("empty duration: {HELP}"));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{s}` has no unit: write e.g. `{s}s`, `{s}m` or `{s}d` (units: ms, s, m, h, d, w)"
            ));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!("`{s}` is not a duration: {HELP}"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{s}` is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            let Some(&(_, millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    format!("`{s}` is not a duration: {HELP}")
                } else {
                    format!("unknown unit `{unit}` in `{s}`: {HELP}")
                });
            };
            rest = &rest[unit_len..];
            total = number
                .checked_mul(millis)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| format!("`{s}` is too large"))?;
        }
        Ok(Duration(std::time::Duration::from_millis(total)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return f.write_str("0s");
        }
        // Days are the largest unit shown: people write `7d` and `30d`, not `1w` and `4w2d`.
        for (unit, size) in UNITS.iter().rev().filter(|(u, _)| *u != "w") {
            if millis >= *size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d|w))+$",
            "description": "a duration: a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 7d, 1h30m",
            "examples": ["30s", "5m", "7d"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_usual_forms() {
        let ms = |s: &str| s.parse::<Duration>().unwrap().0.as_millis();
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("7d"), 7 * 86_400_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("2w"), 2 * 604_800_000);
    }

    #[test]
    fn explains_bad_forms() {
        assert!(
            "30".parse::<Duration>()
                .unwrap_err()
                .contains("`30s`, `30m` or `30d`")
        );
        assert!(
            "7days"
                .parse::<Duration>()
                .unwrap_err()
                .contains("unknown unit `days`")
        );
        assert!("s".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
        assert!("-5s".parse::<Duration>().is_err());
        assert!("99999999999999999999d".parse::<Duration>().is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(millis in 0u64..10_000_000_000_000) {
            let d = Duration(std::time::Duration::from_millis(millis));
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = s.parse::<Duration>();
        }
    }
}
