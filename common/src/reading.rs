//! Node load readings: the annotation codec and the reading-quality classification that every part
//! shares (docs/configuration.md, "Annotations and reading quality").
//!
//! A reading is parsed once, when the Node is seen ([`RawReading::from_annotation`]), and classified
//! against the clock when it is used ([`RawReading::classify`]), because staleness moves with time
//! while the annotation does not.

use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How a metric's annotation value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationFormat {
    /// `<ratio>,<RFC 3339 timestamp>` with a real UTC (or offset) timestamp.
    #[default]
    Realload,
    /// crane-scheduler's `<ratio>,<local time>Z`: the `Z` is literal, the time is in a configured zone.
    Crane,
}

/// A parsed utilisation sample: a ratio and the time it was sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub ratio: f64,
    pub sampled_at: Timestamp,
}

/// Why an annotation value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadingError {
    #[error("value has no ',' between ratio and timestamp")]
    NoSeparator,
    #[error("ratio {0:?} is not a number")]
    RatioNotANumber(String),
    #[error("ratio is NaN")]
    RatioNan,
    #[error("ratio {0} is negative")]
    RatioNegative(String),
    #[error("ratio {0} is above 1")]
    RatioAboveOne(String),
    #[error("ratio is infinite")]
    RatioInfinite,
    #[error("timestamp {0:?} is not RFC 3339")]
    BadTimestamp(String),
    #[error(
        "timestamp {0:?} is outside the supported range (years 0001 to 9999, up to 9999-12-30)"
    )]
    TimestampOutOfRange(String),
    #[error("timestamp {0:?} does not exist in the crane timezone")]
    BadLocalTime(String),
    #[error("timestamp is {ahead} ahead of the clock")]
    InFuture { ahead: String },
}

// ---------------------------------------------------------------------------------------------
// The trust rules: one home for what the collector refuses to write and readers refuse to use
// ---------------------------------------------------------------------------------------------

/// Why a ratio can never be a utilisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatioProblem {
    Nan,
    Infinite,
    Negative,
    AboveOne,
}

/// The range rule: a utilisation is a finite number in `[0, 1]`.
pub fn ratio_problem(ratio: f64) -> Option<RatioProblem> {
    if ratio.is_nan() {
        Some(RatioProblem::Nan)
    } else if ratio.is_infinite() {
        Some(RatioProblem::Infinite)
    } else if ratio < 0.0 {
        Some(RatioProblem::Negative)
    } else if ratio > 1.0 {
        Some(RatioProblem::AboveOne)
    } else {
        None
    }
}

/// The plausibility rule: below the metric's floor, a reading is more likely a broken exporter
/// than an idle node.
pub fn is_suspect_zero(ratio: f64, floor: f64) -> bool {
    ratio < floor
}

/// How a sample's time stands against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleAge {
    /// At most `max_age` old (a time slightly ahead counts as age zero).
    Fresh(SignedDuration),
    /// Older than `max_age`.
    Stale(SignedDuration),
    /// Dated ahead of the clock by more than the tolerance.
    Ahead(SignedDuration),
}

/// The time rule. Readers tolerate a sample dated up to `max_age` ahead (the writer's clock may
/// drift); the collector writes only samples at most [`WRITE_CLOCK_SKEW`] ahead.
pub fn sample_age(
    sampled_at: Timestamp,
    now: Timestamp,
    max_age: SignedDuration,
    ahead_tolerance: SignedDuration,
) -> SampleAge {
    let age = now.duration_since(sampled_at);
    if -age > ahead_tolerance {
        SampleAge::Ahead(-age)
    } else if age > max_age {
        SampleAge::Stale(age)
    } else {
        SampleAge::Fresh(age.max(SignedDuration::ZERO))
    }
}

/// How far ahead of the collector's clock a sample it writes may be dated.
pub const WRITE_CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The codec
// ---------------------------------------------------------------------------------------------

impl Reading {
    /// The reading as an annotation carries it: the ratio to 4 decimals, the time to the whole
    /// second (truncated: a written time is never later than the sample's). The collector
    /// compares new samples with what is written in this form.
    pub fn as_written(&self) -> Reading {
        let whole_seconds = Timestamp::from_second(self.sampled_at.as_second()).ok();
        Reading {
            ratio: (self.ratio.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0,
            sampled_at: whole_seconds.unwrap_or(self.sampled_at),
        }
    }
}

/// Writes a reading the way the collector annotates it: `0.4213,2026-11-22T01:02:03Z`.
pub fn format_annotation(reading: &Reading) -> String {
    let r = reading.as_written();
    format!(
        "{:.4},{}",
        r.ratio,
        r.sampled_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Writes a reading in a metric's format: realload's, or crane-scheduler's `<ratio>,<local
/// time>Z` (5 decimals, the time in `crane_tz` with a literal `Z`, as crane's annotator writes).
pub fn format_as(reading: &Reading, format: AnnotationFormat, crane_tz: &TimeZone) -> String {
    match format {
        AnnotationFormat::Realload => format_annotation(reading),
        AnnotationFormat::Crane => {
            let r = reading.as_written();
            let local = r.sampled_at.to_zoned(crane_tz.clone());
            format!("{:.5},{}", r.ratio, local.strftime("%Y-%m-%dT%H:%M:%SZ"))
        }
    }
}

/// Shaped like an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS…`), whether or not it is in range.
pub fn looks_like_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

/// Why a timestamp did not parse: out of range when it has the shape, otherwise not RFC 3339.
fn timestamp_error(text: &str) -> ReadingError {
    if looks_like_rfc3339(text) {
        ReadingError::TimestampOutOfRange(text.to_string())
    } else {
        ReadingError::BadTimestamp(text.to_string())
    }
}

/// Parses an annotation value in the given format. Range checks (NaN, negative, above 1) happen
/// here, so a parsed [`Reading`] always carries a ratio in `[0, 1]`.
pub fn parse_annotation(
    value: &str,
    format: AnnotationFormat,
    crane_tz: &TimeZone,
) -> Result<Reading, ReadingError> {
    let (ratio_text, time_text) = value.split_once(',').ok_or(ReadingError::NoSeparator)?;
    let ratio_text = ratio_text.trim();
    let time_text = time_text.trim();
    let ratio: f64 = ratio_text
        .parse()
        .map_err(|_| ReadingError::RatioNotANumber(ratio_text.to_string()))?;
    match ratio_problem(ratio) {
        None => {}
        Some(RatioProblem::Nan) => return Err(ReadingError::RatioNan),
        Some(RatioProblem::Infinite) => return Err(ReadingError::RatioInfinite),
        Some(RatioProblem::Negative) => {
            return Err(ReadingError::RatioNegative(ratio_text.to_string()));
        }
        Some(RatioProblem::AboveOne) => {
            return Err(ReadingError::RatioAboveOne(ratio_text.to_string()));
        }
    }
    let sampled_at = match format {
        AnnotationFormat::Realload => time_text
            .parse::<Timestamp>()
            .map_err(|_| timestamp_error(time_text))?,
        AnnotationFormat::Crane => {
            // Go layout "2006-01-02T15:04:05Z" printed in local time: the Z is not UTC.
            let civil = time_text
                .strip_suffix('Z')
                .unwrap_or(time_text)
                .parse::<DateTime>()
                .map_err(|_| ReadingError::BadTimestamp(time_text.to_string()))?;
            crane_tz
                .to_ambiguous_zoned(civil)
                .compatible()
                .map_err(|_| ReadingError::BadLocalTime(time_text.to_string()))?
                .timestamp()
        }
    };
    Ok(Reading { ratio, sampled_at })
}

/// A metric's annotation as seen on a Node, parsed but not yet judged against the clock.
#[derive(Debug, Clone, PartialEq)]
pub enum RawReading {
    Missing,
    Invalid(ReadingError),
    Parsed(Reading),
}

impl RawReading {
    pub fn from_annotation(
        value: Option<&str>,
        format: AnnotationFormat,
        crane_tz: &TimeZone,
    ) -> Self {
        match value {
            None => RawReading::Missing,
            Some(v) => match parse_annotation(v, format, crane_tz) {
                Ok(reading) => RawReading::Parsed(reading),
                Err(e) => RawReading::Invalid(e),
            },
        }
    }

    /// Judges the reading at `now` against a metric's max age and plausibility floor.
    ///
    /// A sample time further in the future than `max_age` is invalid: trusting it would keep a
    /// reading fresh for as long as the writer's clock is wrong.
    pub fn classify(&self, now: Timestamp, max_age: SignedDuration, floor: f64) -> Assessed {
        match self {
            RawReading::Missing => Assessed::Missing,
            RawReading::Invalid(e) => Assessed::Invalid(e.clone()),
            RawReading::Parsed(reading) => {
                match sample_age(reading.sampled_at, now, max_age, max_age) {
                    SampleAge::Ahead(ahead) => Assessed::Invalid(ReadingError::InFuture {
                        ahead: format!("{ahead:#}"),
                    }),
                    SampleAge::Stale(age) => Assessed::Stale {
                        reading: *reading,
                        age,
                    },
                    SampleAge::Fresh(age) if is_suspect_zero(reading.ratio, floor) => {
                        Assessed::SuspectZero {
                            reading: *reading,
                            age,
                        }
                    }
                    SampleAge::Fresh(age) => Assessed::Valid {
                        reading: *reading,
                        age,
                    },
                }
            }
        }
    }
}

/// The reading-quality classes. Only `Valid` readings drive decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quality {
    Valid,
    Missing,
    Stale,
    SuspectZero,
    Invalid,
}

impl Quality {
    pub const ALL: [Quality; 5] = [
        Quality::Valid,
        Quality::Missing,
        Quality::Stale,
        Quality::SuspectZero,
        Quality::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Valid => "valid",
            Quality::Missing => "missing",
            Quality::Stale => "stale",
            Quality::SuspectZero => "suspect-zero",
            Quality::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reading judged at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub enum Assessed {
    Valid {
        reading: Reading,
        age: SignedDuration,
    },
    Missing,
    Stale {
        reading: Reading,
        age: SignedDuration,
    },
    SuspectZero {
        reading: Reading,
        age: SignedDuration,
    },
    Invalid(ReadingError),
}

impl Assessed {
    pub fn quality(&self) -> Quality {
        match self {
            Assessed::Valid { .. } => Quality::Valid,
            Assessed::Missing => Quality::Missing,
            Assessed::Stale { .. } => Quality::Stale,
            Assessed::SuspectZero { .. } => Quality::SuspectZero,
            Assessed::Invalid(_) => Quality::Invalid,
        }
    }

    /// The ratio, but only when the reading may drive a decision.
    pub fn valid_ratio(&self) -> Option<f64> {
        match self {
            Assessed::Valid { reading, .. } => Some(reading.ratio),
            _ => None,
        }
    }

    /// The parsed reading whatever its quality (for display), if there is one.
    pub fn reading(&self) -> Option<&Reading> {
        match self {
            Assessed::Valid { reading, .. }
            | Assessed::Stale { reading, .. }
            | Assessed::SuspectZero { reading, .. } => Some(reading),
            Assessed::Missing | Assessed::Invalid(_) => None,
        }
    }

    pub fn age(&self) -> Option<SignedDuration> {
        match self {
            Assessed::Valid { age, .. }
            | Assessed::Stale { age, .. }
            | Assessed::SuspectZero { age, .. } => Some(*age),
            Assessed::Missing | Assessed::Invalid(_) => None,
        }
    }

    /// A short human reason for a non-valid reading (`None` when valid).
    pub fn reason(&self, max_age: SignedDuration, floor: f64) -> Option<String> {
        match self {
            Assessed::Valid { .. } => None,
            Assessed::Missing => Some("no annotation".to_string()),
            Assessed::Stale { age, .. } => Some(format!("{:#} old, max age {:#}", age, max_age)),
            Assessed::SuspectZero { reading, .. } => Some(format!(
                "{} below plausibility floor {}",
                reading.ratio, floor
            )),
            Assessed::Invalid(e) => Some(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const UTC: TimeZone = TimeZone::UTC;

    #[test]
    fn round_trips_the_contract_example() {
        let r = parse_annotation(
            "0.4213,2026-11-22T01:02:03Z",
            AnnotationFormat::Realload,
            &UTC,
        )
        .unwrap();
        assert_eq!(r.ratio, 0.4213);
        assert_eq!(r.sampled_at, ts("2026-11-22T01:02:03Z"));
        assert_eq!(format_annotation(&r), "0.4213,2026-11-22T01:02:03Z");
    }

    #[test]
    fn format_rounds_to_four_decimals_and_whole_seconds_in_utc() {
        let r = Reading {
            ratio: 0.123456,
            sampled_at: ts("2026-11-22T01:02:03.987+02:00"),
        };
        assert_eq!(format_annotation(&r), "0.1235,2026-11-21T23:02:03Z");
        let one = Reading {
            ratio: 1.0,
            sampled_at: ts("2026-11-22T00:00:00Z"),
        };
        assert_eq!(format_annotation(&one), "1.0000,2026-11-22T00:00:00Z");
    }

    #[test]
    fn the_trust_rules_at_their_boundaries() {
        use RatioProblem::*;
        for (ratio, want) in [
            (f64::NAN, Some(Nan)),
            (f64::INFINITY, Some(Infinite)),
            (f64::NEG_INFINITY, Some(Infinite)),
            (-0.0001, Some(Negative)),
            (0.0, None),
            (1.0, None),
            (1.0001, Some(AboveOne)),
        ] {
            assert_eq!(ratio_problem(ratio), want, "{ratio}");
        }
        assert!(is_suspect_zero(0.0049, 0.005) && !is_suspect_zero(0.005, 0.005));
        let now = ts("2026-11-22T01:00:00Z");
        let max_age = SignedDuration::from_mins(3);
        let at = |s: &str| sample_age(ts(s), now, max_age, WRITE_CLOCK_SKEW);
        assert_eq!(
            at("2026-11-22T00:57:00Z"),
            SampleAge::Fresh(SignedDuration::from_mins(3))
        );
        assert_eq!(
            at("2026-11-22T00:56:59Z"),
            SampleAge::Stale(SignedDuration::from_secs(181))
        );
        assert_eq!(
            at("2026-11-22T01:00:30Z"),
            SampleAge::Fresh(SignedDuration::ZERO)
        );
        assert_eq!(
            at("2026-11-22T01:00:31Z"),
            SampleAge::Ahead(SignedDuration::from_secs(31))
        );
        // Readers tolerate up to max age ahead.
        assert_eq!(
            sample_age(ts("2026-11-22T01:02:00Z"), now, max_age, max_age),
            SampleAge::Fresh(SignedDuration::ZERO)
        );
    }

    #[test]
    fn written_form_truncates_time_and_rounds_ratio_in_both_formats() {
        let r = Reading {
            ratio: 0.42126,
            sampled_at: ts("2026-11-22T01:02:03.999Z"),
        };
        assert_eq!(
            r.as_written(),
            Reading {
                ratio: 0.4213,
                sampled_at: ts("2026-11-22T01:02:03Z")
            }
        );
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            format_as(&r, AnnotationFormat::Realload, &tz),
            "0.4213,2026-11-22T01:02:03Z"
        );
        assert_eq!(
            format_as(&r, AnnotationFormat::Crane, &tz),
            "0.42130,2026-11-22T09:02:03Z"
        );
        let back = parse_annotation("0.42130,2026-11-22T09:02:03Z", AnnotationFormat::Crane, &tz);
        assert_eq!(back, Ok(r.as_written()));
    }

    #[test]
    fn accepts_offsets_and_fractional_seconds() {
        let r = parse_annotation(
            "0.5,2026-11-22T03:02:03.5+02:00",
            AnnotationFormat::Realload,
            &UTC,
        )
        .unwrap();
        assert_eq!(r.sampled_at, ts("2026-11-22T01:02:03.5Z"));
    }

    #[test]
    fn rejects_each_malformed_value_with_its_reason() {
        let p = |v| parse_annotation(v, AnnotationFormat::Realload, &UTC).unwrap_err();
        assert_eq!(p("0.5"), ReadingError::NoSeparator);
        assert_eq!(
            p("abc,2026-11-22T01:02:03Z"),
            ReadingError::RatioNotANumber("abc".into())
        );
        assert_eq!(
            p(",2026-11-22T01:02:03Z"),
            ReadingError::RatioNotANumber("".into())
        );
        assert_eq!(p("NaN,2026-11-22T01:02:03Z"), ReadingError::RatioNan);
        assert_eq!(p("inf,2026-11-22T01:02:03Z"), ReadingError::RatioInfinite);
        assert_eq!(
            p("-0.1,2026-11-22T01:02:03Z"),
            ReadingError::RatioNegative("-0.1".into())
        );
        assert_eq!(
            p("1.01,2026-11-22T01:02:03Z"),
            ReadingError::RatioAboveOne("1.01".into())
        );
        assert_eq!(
            p("0.5,yesterday"),
            ReadingError::BadTimestamp("yesterday".into())
        );
        assert_eq!(
            p("0.5,2026-11-22 01:02:03"),
            ReadingError::BadTimestamp("2026-11-22 01:02:03".into())
        );
    }

    #[test]
    fn crane_format_is_local_time_with_a_literal_z() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        let r = parse_annotation(
            "0.63012,2023-10-17T15:04:32Z",
            AnnotationFormat::Crane,
            &shanghai,
        )
        .unwrap();
        assert_eq!(r.ratio, 0.63012);
        assert_eq!(r.sampled_at, ts("2023-10-17T07:04:32Z"));
        let utc = parse_annotation(
            "0.63012,2023-10-17T15:04:32Z",
            AnnotationFormat::Crane,
            &UTC,
        )
        .unwrap();
        assert_eq!(utc.sampled_at, ts("2023-10-17T15:04:32Z"));
        assert!(matches!(
            parse_annotation("0.6,17/10/2023", AnnotationFormat::Crane, &UTC),
            Err(ReadingError::BadTimestamp(_))
        ));
    }

    #[test]
    fn classification_covers_every_class_and_its_boundaries() {
        let now = ts("2026-11-22T01:10:00Z");
        let max_age = SignedDuration::from_mins(3);
        let floor = 0.005;
        let at = |ratio: f64, t: &str| {
            RawReading::Parsed(Reading {
                ratio,
                sampled_at: ts(t),
            })
        };

        assert_eq!(
            RawReading::Missing.classify(now, max_age, floor).quality(),
            Quality::Missing
        );
        assert_eq!(
            RawReading::Invalid(ReadingError::RatioNan)
                .classify(now, max_age, floor)
                .quality(),
            Quality::Invalid
        );
        // exactly max age old: still valid; one second more: stale
        assert_eq!(
            at(0.5, "2026-11-22T01:07:00Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::Valid
        );
        assert_eq!(
            at(0.5, "2026-11-22T01:06:59Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::Stale
        );
        // zero and below the floor: suspect; at the floor: valid
        assert_eq!(
            at(0.0, "2026-11-22T01:09:00Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::SuspectZero
        );
        assert_eq!(
            at(0.0049, "2026-11-22T01:09:00Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::SuspectZero
        );
        assert_eq!(
            at(0.005, "2026-11-22T01:09:00Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::Valid
        );
        // a stale zero is stale (age is checked first)
        assert_eq!(
            at(0.0, "2026-11-22T01:00:00Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::Stale
        );
        // slightly in the future (clock skew) is fine, far in the future is not
        let skewed = at(0.5, "2026-11-22T01:11:00Z").classify(now, max_age, floor);
        assert_eq!(skewed.quality(), Quality::Valid);
        assert_eq!(skewed.age(), Some(SignedDuration::ZERO));
        assert_eq!(
            at(0.5, "2026-11-22T01:14:00Z")
                .classify(now, max_age, floor)
                .quality(),
            Quality::Invalid
        );
    }

    #[test]
    fn only_valid_readings_expose_a_ratio_and_reasons_name_the_problem() {
        let now = ts("2026-11-22T01:10:00Z");
        let max_age = SignedDuration::from_mins(3);
        let stale = RawReading::Parsed(Reading {
            ratio: 0.5,
            sampled_at: ts("2026-11-22T01:00:00Z"),
        })
        .classify(now, max_age, 0.005);
        assert_eq!(stale.valid_ratio(), None);
        assert_eq!(stale.reading().map(|r| r.ratio), Some(0.5));
        assert_eq!(stale.reason(max_age, 0.005).unwrap(), "10m old, max age 3m");
        let zero = RawReading::Parsed(Reading {
            ratio: 0.0,
            sampled_at: now,
        })
        .classify(now, max_age, 0.005);
        assert_eq!(
            zero.reason(max_age, 0.005).unwrap(),
            "0 below plausibility floor 0.005"
        );
        assert_eq!(
            Assessed::Missing.reason(max_age, 0.005).unwrap(),
            "no annotation"
        );
        let valid = RawReading::Parsed(Reading {
            ratio: 0.5,
            sampled_at: now,
        })
        .classify(now, max_age, 0.005);
        assert_eq!(valid.valid_ratio(), Some(0.5));
        assert_eq!(valid.reason(max_age, 0.005), None);
    }
}
