//! Times written in `release.yaml`: RFC 3339 instants, IANA time zones and weekly times
//! (`fri 16:00`) for freeze windows.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveTime, Weekday};
use serde::de::{self, Deserialize, Deserializer};

/// An RFC 3339 instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<FixedOffset>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(text.trim())
            .map(Timestamp)
            .map_err(|e| {
                de::Error::custom(format!(
                    "`{text}` is not an RFC 3339 time ({e}): write e.g. `2026-12-24T18:00:00+01:00` or `2026-12-24T17:00:00Z`"
                ))
            })
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.to_rfc3339())
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// An IANA time zone name (`Europe/Paris`, `UTC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<chrono_tz::Tz>().map(TimeZone).map_err(|_| {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
            let hint = super::yaml::nearest(&text, names)
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            de::Error::custom(format!(
                "unknown time zone `{text}`{hint}: use an IANA name such as `Europe/Paris` or `UTC`"
            ))
        })
    }
}

impl serde::Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl schemars::JsonSchema for TimeZone {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "IANA time zone, e.g. Europe/Paris" })
    }
}

/// A day of the week and a time of day: `fri 16:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeeklyTime {
    pub day: Weekday,
    pub time: NaiveTime,
}

impl WeeklyTime {
    /// Minutes since Monday 00:00.
    pub fn minute_of_week(&self) -> u32 {
        use chrono::Timelike;
        self.day.num_days_from_monday() * 24 * 60 + self.time.hour() * 60 + self.time.minute()
    }
}

impl FromStr for WeeklyTime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let help = "write a day and a time, e.g. `fri 16:00` or `mon 08:30`";
        let mut parts = text.split_whitespace();
        let (Some(day), Some(time), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("`{text}` is not a weekly time: {help}"));
        };
        let day = day
            .parse::<Weekday>()
            .map_err(|_| format!("`{day}` is not a day of the week: {help}"))?;
        let time = NaiveTime::parse_from_str(time, "%H:%M")
            .map_err(|_| format!("`{time}` is not a time of day (HH:MM): {help}"))?;
        Ok(WeeklyTime { day, time })
    }
}

impl fmt::Display for WeeklyTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = self.day.to_string().to_lowercase();
        write!(f, "{day} {}", self.time.format("%H:%M"))
    }
}

impl<'de> Deserialize<'de> for WeeklyTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl serde::Serialize for WeeklyTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for WeeklyTime {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WeeklyTime".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(mon|tue|wed|thu|fri|sat|sun)[a-z]* [0-2][0-9]:[0-5][0-9]$",
            "examples": ["fri 16:00"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_times() {
        let t: WeeklyTime = "fri 16:00".parse().unwrap();
        assert_eq!(t.day, Weekday::Fri);
        assert_eq!(t.to_string(), "fri 16:00");
        assert_eq!(
            "mon 00:00".parse::<WeeklyTime>().unwrap().minute_of_week(),
            0
        );
        assert!("friday".parse::<WeeklyTime>().is_err());
        assert!("fri 25:00".parse::<WeeklyTime>().is_err());
        assert!("fryday 10:00".parse::<WeeklyTime>().is_err());
    }
}
