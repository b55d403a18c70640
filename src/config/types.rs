//! Value types that cannot hold an invalid value: each checks its range while it is parsed,
//! so everything downstream (timers, `Instant` arithmetic, rate limiters) can use it without
//! a check of its own and without a way to panic.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A value refused for the key it is about, by a check across several fields (which a single
/// field's type cannot express). Its text, `key: reason`, is what serde carries up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: &'static str,
    pub reason: String,
}

impl KeyError {
    pub fn new(key: &'static str, reason: impl Into<String>) -> KeyError {
        KeyError {
            key,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// A duration between `MIN` and `MAX` seconds, written like `30s`, `5m` or `1h`. The upper
/// bounds keep every timer and `Instant` sum far from overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationIn<const MIN: u64, const MAX: u64>(Duration);

impl<const MIN: u64, const MAX: u64> DurationIn<MIN, MAX> {
    /// The duration, if it lies within the bounds.
    pub fn new(d: Duration) -> Result<Self, String> {
        if d < Duration::from_secs(MIN) || d > Duration::from_secs(MAX) {
            return Err(format!(
                "must be between {} and {}, got {}",
                human(Duration::from_secs(MIN)),
                human(Duration::from_secs(MAX)),
                human(d)
            ));
        }
        Ok(DurationIn(d))
    }

    /// A duration known at compile time to be in range: use it in a `const`, where an
    /// out-of-range value fails the build.
    pub const fn from_secs(secs: u64) -> Self {
        assert!(
            secs >= MIN && secs <= MAX,
            "duration out of its type's range"
        );
        DurationIn(Duration::from_secs(secs))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    /// Whole seconds as `i64` (at most `MAX`, far below `i64::MAX`).
    pub fn secs(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> Deref for DurationIn<MIN, MAX> {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for DurationIn<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self.0))
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for DurationIn<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write it like 30s, 5m or 1h"
            ))
        })?;
        DurationIn::new(parsed).map_err(de::Error::custom)
    }
}

/// `1h 30m`, not `5400s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A number or, from an expanded `${VAR}`, its text. Expansion happens after parsing, so
/// `index: ${SHARD}` arrives as a string; numeric keys accept both.
pub fn number_or_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar<T> {
        Native(T),
        Text(String),
    }
    match Scalar::<T>::deserialize(d)? {
        Scalar::Native(v) => Ok(v),
        Scalar::Text(s) => s
            .trim()
            .parse()
            .map_err(|e| de::Error::custom(format!("{s:?}: {e}"))),
    }
}

/// A finite number between `MIN_MILLI / 1000` and `MAX_MILLI / 1000`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct NumberIn<const MIN_MILLI: u64, const MAX_MILLI: u64>(f64);

impl<const MIN_MILLI: u64, const MAX_MILLI: u64> NumberIn<MIN_MILLI, MAX_MILLI> {
    const MIN: f64 = MIN_MILLI as f64 / 1000.0;
    const MAX: f64 = MAX_MILLI as f64 / 1000.0;

    pub fn new(v: f64) -> Result<Self, String> {
        if !v.is_finite() || v < Self::MIN || v > Self::MAX {
            return Err(format!(
                "must be a number between {} and {}, got {v}",
                Self::MIN,
                Self::MAX
            ));
        }
        Ok(NumberIn(v))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// A value known at compile time, in thousandths: use it in a `const`, where an
    /// out-of-range value fails the build.
    pub const fn from_milli(milli: u64) -> Self {
        assert!(
            milli >= MIN_MILLI && milli <= MAX_MILLI,
            "number out of its type's range"
        );
        NumberIn(milli as f64 / 1000.0)
    }
}

impl<'de, const MIN_MILLI: u64, const MAX_MILLI: u64> Deserialize<'de>
    for NumberIn<MIN_MILLI, MAX_MILLI>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: f64 = number_or_text(d)?;
        NumberIn::new(v).map_err(de::Error::custom)
    }
}

/// GetMetricData calls per second per target: unlimited, or a pace between one call every
/// 100 s and the account quota of 50 per second. (A smaller positive rate would mean a wait
/// no timer can hold.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestRate {
    Unlimited,
    PerSecond(NumberIn<10, 50_000>),
}

impl RequestRate {
    /// The time between two calls; zero when unlimited.
    pub fn spacing(self) -> Duration {
        match self {
            RequestRate::Unlimited => Duration::ZERO,
            // Within 0.01..=50 calls per second: between 20 ms and 100 s.
            RequestRate::PerSecond(r) => {
                Duration::try_from_secs_f64(1.0 / r.get()).unwrap_or(Duration::from_secs(100))
            }
        }
    }

    pub fn new(v: f64) -> Result<RequestRate, String> {
        if v == 0.0 {
            return Ok(RequestRate::Unlimited);
        }
        NumberIn::new(v).map(RequestRate::PerSecond).map_err(|_| {
            format!(
                "must be 0 (no limit) or between 0.01 and 50 (the GetMetricData quota), got {v}"
            )
        })
    }
}

impl<'de> Deserialize<'de> for RequestRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: f64 = number_or_text(d)?;
        RequestRate::new(v).map_err(de::Error::custom)
    }
}

/// A regular expression, compiled while the config is parsed (unanchored, as written).
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, regex::Error> {
        regex::Regex::new(text).map(Pattern)
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::new(&text)
            .map_err(|e| de::Error::custom(format!("invalid regular expression: {e}")))
    }
}

/// HTTP statuses a response counter counts: comma-separated terms, each a status (`429`),
/// a range (`500-504`), a class (`5xx`) or a lower bound (`>=400`), within 100 to 599.
/// Kept as sorted, disjoint ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statuses(Vec<(u16, u16)>);

impl Statuses {
    pub fn new(text: &str) -> Result<Statuses, String> {
        let status = |t: &str| -> Result<u16, String> {
            match t.trim().parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{:?} is not an HTTP status from 100 to 599",
                    t.trim()
                )),
            }
        };
        let mut ranges = Vec::new();
        for term in text.split(',').map(str::trim) {
            let range = if let Some(low) = term.strip_prefix(">=") {
                (status(low)?, 599)
            } else if let Some((low, high)) = term.split_once('-') {
                let (low, high) = (status(low)?, status(high)?);
                if low > high {
                    return Err(format!("{term:?}: the range runs backwards"));
                }
                (low, high)
            } else if let Some(class) = term.strip_suffix("xx").or(term.strip_suffix("XX")) {
                let low = status(&format!("{class}00"))?;
                (low, low + 99)
            } else {
                let n = status(term)?;
                (n, n)
            };
            ranges.push(range);
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (low, high) in ranges {
            match merged.last_mut() {
                Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        Ok(Statuses(merged))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }

    /// These statuses and `also` (the 429s the throttle family counts) as a CloudWatch Logs
    /// JSON filter pattern on a numeric `status` field.
    pub fn filter_pattern(&self, also: u16) -> String {
        let mut with = self.clone();
        with.0.push((also, also));
        let with = Statuses::new(&with.to_string()).unwrap_or(with);
        let terms: Vec<String> = with
            .0
            .iter()
            .map(|&(low, high)| match (low, high) {
                (l, h) if l == h => format!("$.status = {l}"),
                (l, 599) => format!("$.status >= {l}"),
                (l, h) => format!("($.status >= {l} && $.status <= {h})"),
            })
            .collect();
        format!("{{ {} }}", terms.join(" || "))
    }
}

impl Default for Statuses {
    /// Every client and server error.
    fn default() -> Statuses {
        Statuses(vec![(400, 599)])
    }
}

impl fmt::Display for Statuses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .0
            .iter()
            .map(|&(low, high)| match (low, high) {
                (l, h) if l == h => l.to_string(),
                (l, 599) => format!(">={l}"),
                (l, h) => format!("{l}-{h}"),
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

impl<'de> Deserialize<'de> for Statuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Statuses, D::Error> {
        // `statuses: 429` is a YAML number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Number(u64),
            Text(String),
        }
        let text = match Scalar::deserialize(d)? {
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(t) => t,
        };
        Statuses::new(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_merge_and_make_a_filter_pattern() {
        let s = Statuses::new(">=400").unwrap();
        assert_eq!(s, Statuses::default());
        assert!(s.contains(400) && s.contains(599) && !s.contains(399));
        assert_eq!(s.filter_pattern(429), "{ $.status >= 400 }");
        let s = Statuses::new("5xx, 403,404 ,502-503").unwrap();
        assert_eq!(s.to_string(), "403-404,>=500");
        assert_eq!(
            s.filter_pattern(429),
            "{ ($.status >= 403 && $.status <= 404) || $.status = 429 || $.status >= 500 }"
        );
        assert_eq!(
            Statuses::new("504").unwrap().filter_pattern(429),
            "{ $.status = 429 || $.status = 504 }"
        );
        for bad in [
            "", "99", "600", ">=", "5-4", "abc", "6xx", "400-700", "429,", "-1",
        ] {
            let err = Statuses::new(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn durations_hold_only_their_range() {
        type D = DurationIn<1, 60>;
        assert!(D::new(Duration::from_secs(1)).is_ok());
        assert!(D::new(Duration::from_secs(60)).is_ok());
        let err = D::new(Duration::from_millis(999)).unwrap_err();
        assert!(err.contains("between 1s and 1m"), "{err}");
        assert!(D::new(Duration::MAX).is_err());
        let parsed: Result<D, _> = yaml_serde::from_str("18446744073709551615s");
        assert!(parsed.is_err());
    }

    #[test]
    fn rates_are_unlimited_or_bounded_below() {
        assert_eq!(RequestRate::new(0.0).unwrap().spacing(), Duration::ZERO);
        assert_eq!(
            RequestRate::new(20.0).unwrap().spacing(),
            Duration::from_millis(50)
        );
        assert_eq!(
            RequestRate::new(0.01).unwrap().spacing(),
            Duration::from_secs(100)
        );
        for bad in [1.0e-30, -1.0, 50.5, f64::NAN, f64::INFINITY] {
            assert!(RequestRate::new(bad).is_err(), "{bad}");
        }
    }
}
