//! A node's readings over time: when each became unusable, how far back its valid readings
//! cover the pods bound to it, and the span in which its judgement cannot change.

use jiff::{SignedDuration, Timestamp};
use realload_common::policy::Policy;
use realload_common::reading::{Assessed, RawReading};
use realload_common::scoring;
use smallvec::SmallVec;

/// Per policy metric, the instant its annotation began holding a value that can never be valid.
pub type BadSince = SmallVec<[Option<Timestamp>; 4]>;

/// The longest max age: a valid reading is never older, so pods bound before `now - horizon`
/// are covered by any valid reading of a known node.
pub fn horizon(policy: &Policy) -> SignedDuration {
    policy
        .metrics
        .iter()
        .map(|m| m.max_age)
        .max()
        .unwrap_or(SignedDuration::from_mins(3))
}

fn minus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// The instant up to which the ledger may forget a node's pods: `hotspot.readingWindow` before
/// its newest valid sample (and never earlier than that before `now - horizon`), since a pod
/// bound less than the window before the sample shows in it only in part; while the node is
/// unknown, never later than the second before it became unknown, so that the unknown-node cap
/// sees every pod placed since.
pub fn covered_until(
    policy: &Policy,
    readings: &[RawReading],
    bad_since: &[Option<Timestamp>],
    now: Timestamp,
) -> Timestamp {
    let floor = minus(now, horizon(policy));
    let assessed: SmallVec<[Assessed; 4]> = policy
        .metrics
        .iter()
        .zip(readings)
        .map(|(spec, r)| r.classify(now, spec.max_age, spec.floor))
        .collect();
    let known_floor = minus(
        scoring::newest_valid_sample(&assessed).map_or(floor, |t| t.max(floor)),
        policy.hotspot.reading_window,
    );
    match scoring::unknown_since(policy, readings, bad_since, now) {
        Some(since) if since > Timestamp::MIN => {
            let second = Timestamp::from_second(since.as_second()).unwrap_or(Timestamp::MIN);
            known_floor.min(minus(second, SignedDuration::from_secs(1)))
        }
        _ => known_floor,
    }
}

/// The span around `now` in which no reading of the node changes class (valid, stale, future).
pub(super) fn stable_span(
    policy: &Policy,
    readings: &[RawReading],
    now: Timestamp,
) -> (Timestamp, Timestamp) {
    let one = SignedDuration::from_nanos(1);
    let (mut from, mut until) = (Timestamp::MIN, Timestamp::MAX);
    for (spec, r) in policy.metrics.iter().zip(readings) {
        let RawReading::Parsed(reading) = r else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            reading.sampled_at.checked_sub(spec.max_age),
            reading.sampled_at.checked_add(spec.max_age),
        ) else {
            continue;
        };
        if now < start {
            until = until.min(start - one);
        } else if now > end {
            from = from.max(end + one);
        } else {
            from = from.max(start);
            until = until.min(end);
        }
    }
    (from, until)
}

/// Whether a reading is neither valid nor merely stale at `t`: missing, unparsable, below its
/// floor or dated in the future.
fn is_bad(policy: &Policy, i: usize, r: &RawReading, t: Timestamp) -> bool {
    let Some(spec) = policy.metrics.get(i) else {
        return false;
    };
    !matches!(
        r.classify(t, spec.max_age, spec.floor),
        Assessed::Valid { .. } | Assessed::Stale { .. }
    )
}

/// Carries each metric's "bad since" from the node's previous entry to its new readings, seen at
/// `t`: a bad value that was bad before keeps its instant; one that replaced a good reading went
/// bad at `t` (or when that reading went stale, if earlier); one seen for the first time is
/// dated `t - horizon`, as far back as the ledger remembers.
pub fn next_bad_since(
    policy: &Policy,
    previous: Option<(&[RawReading], &[Option<Timestamp>])>,
    readings: &[RawReading],
    t: Timestamp,
) -> BadSince {
    let first_sight = minus(t, horizon(policy));
    readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !is_bad(policy, i, r, t) {
                return None;
            }
            let Some((old_readings, old_since)) = previous else {
                return Some(first_sight);
            };
            if let Some(Some(since)) = old_since.get(i) {
                return Some(*since);
            }
            match old_readings.get(i) {
                Some(RawReading::Parsed(old))
                    if !is_bad(policy, i, &RawReading::Parsed(*old), t) =>
                {
                    let expiry = policy
                        .metrics
                        .get(i)
                        .and_then(|s| old.sampled_at.checked_add(s.max_age).ok());
                    Some(expiry.map_or(t, |e| e.min(t)))
                }
                _ => Some(first_sight),
            }
        })
        .collect()
}
