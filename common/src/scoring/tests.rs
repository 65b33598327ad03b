use jiff::SignedDuration;
use proptest::prelude::*;

use super::*;
use crate::reading::{Reading, ReadingError};

fn now() -> Timestamp {
    "2026-11-22T01:10:00Z".parse().unwrap()
}

fn fresh(ratio: f64) -> RawReading {
    RawReading::Parsed(Reading {
        ratio,
        sampled_at: now() - SignedDuration::from_secs(30),
    })
}

const ALLOC: Allocatable = Allocatable {
    cpu_millis: 8000,
    memory_bytes: 32 << 30,
};

/// Default policy order: cpu-avg-5m, cpu-max-1h, mem-avg-5m, cpu-sustained-10m.
fn node(cpu: f64, cpu_max: f64, mem: f64) -> NodeAssessment {
    let p = Policy::default();
    assess_node(
        &p,
        &[fresh(cpu), fresh(cpu_max), fresh(mem), fresh(cpu)],
        &[],
        ALLOC,
        now(),
    )
}

fn node_with(readings: [RawReading; 4]) -> NodeAssessment {
    assess_node(&Policy::default(), &readings, &[], ALLOC, now())
}

#[test]
fn score_follows_the_design_formula() {
    // without an idle band: 10 × (0.5·0.6 + 0.2·0.5 + 0.3·0.8) / 1.0 = 6.4 → 6
    let p = Policy::from_yaml("scoring: {idleBelow: 0}").unwrap();
    assert_eq!(score(&p, &node(0.4, 0.5, 0.2)), 6);
    assert_eq!(score(&p, &node(0.005, 0.005, 0.005)), 10);
    assert_eq!(score(&p, &node(1.0, 1.0, 1.0)), 0);
    // 10 × (0.5·0.95 + 0.2·0.95 + 0.3·0.95) = 9.5 → rounds half away from zero
    assert_eq!(score(&p, &node(0.05, 0.05, 0.05)), 10);
    // the default idle band: loads up to 0.5 score as idle, above it (load − 0.5) / 0.5
    let p = Policy::default();
    assert_eq!(
        score(&p, &node(0.4, 0.5, 0.2)),
        10,
        "all idle: requests decide"
    );
    // 10 × (0.5·(1 − 0.6) + 0.2·(1 − 0.8) + 0.3·(1 − 0.4)) = 4.2 → 4
    assert_eq!(score(&p, &node(0.8, 0.9, 0.7)), 4);
    assert_eq!(score(&p, &node(1.0, 1.0, 1.0)), 0);
}

#[test]
fn each_non_valid_class_makes_the_node_unknown_and_scored_at_unknown_load() {
    let p = Policy::default();
    let stale = RawReading::Parsed(Reading {
        ratio: 0.1,
        sampled_at: now() - SignedDuration::from_mins(10),
    });
    for bad in [
        RawReading::Missing,
        RawReading::Invalid(ReadingError::RatioNan),
        RawReading::Parsed(Reading {
            ratio: 0.0,
            sampled_at: now(),
        }),
        stale,
    ] {
        let n = node_with([bad.clone(), fresh(0.1), fresh(0.1), fresh(0.1)]);
        assert!(!n.known, "{bad:?}");
        assert_eq!(score(&p, &n), 0, "unknownLoad 1.0 scores 0: {bad:?}");
        assert_eq!(
            filter_verdict(&p, &n),
            FilterVerdict::Pass,
            "unknown passes the filter: {bad:?}"
        );
    }
    let p = Policy::from_yaml("guards: {unknownLoad: 0.8}").unwrap();
    let n = assess_node(
        &p,
        &[RawReading::Missing, fresh(0.1), fresh(0.1), fresh(0.1)],
        &[],
        ALLOC,
        now(),
    );
    // (0.8 − 0.5) / 0.5 = 0.6 on every scored metric
    assert_eq!(score(&p, &n), 4);
}

#[test]
fn a_zero_reading_never_wins() {
    let p = Policy::default();
    let zero = node(0.0, 0.0, 0.0);
    let busy = node(0.7, 0.7, 0.7);
    assert!(!zero.known);
    assert!(score(&p, &zero) < score(&p, &busy));
}

#[test]
fn unscored_metrics_do_not_make_a_node_unknown() {
    let n = node_with([fresh(0.3), fresh(0.3), fresh(0.3), RawReading::Missing]);
    assert!(n.known);
}

#[test]
fn filter_rejects_valid_estimates_strictly_above_the_threshold() {
    let p = Policy::default();
    assert_eq!(
        filter_verdict(&p, &node(0.85, 0.9, 0.5)),
        FilterVerdict::Pass
    );
    let v = filter_verdict(&p, &node(0.86, 0.9, 0.5));
    assert_eq!(v.message().unwrap(), "realload: node cpu-avg-5m above 0.85");
    let v = filter_verdict(&p, &node(0.5, 0.9, 0.95));
    assert_eq!(v.message().unwrap(), "realload: node mem-avg-5m above 0.90");
    assert!(!v.passes());
}

fn pod_bound(at: Timestamp, cpu_millis: u64, memory_bytes: u64) -> BoundPod {
    BoundPod {
        bound_at: at,
        cpu_millis,
        memory_bytes,
        pinned: false,
        learned: None,
    }
}

#[test]
fn hotspot_counts_the_part_of_each_pod_the_newest_reading_does_not_show() {
    let p = Policy::default();
    assert_eq!(p.hotspot.reading_window, SignedDuration::from_mins(5));
    let sampled = now() - SignedDuration::from_secs(30);
    // bound a full window before the sample: the 5-minute average shows all of it
    let shown = pod_bound(sampled - SignedDuration::from_mins(5), 4000, 8 << 30);
    // bound half a window before: shown at half
    let half = pod_bound(sampled - SignedDuration::from_secs(150), 4000, 0);
    // bound after the sample: not shown at all
    let after = pod_bound(sampled + SignedDuration::from_secs(1), 2000, 8 << 30);
    let readings = [fresh(0.6), fresh(0.6), fresh(0.6), fresh(0.6)];
    let n = assess_node(&p, &readings, &[shown, half, after], ALLOC, now());
    // (4000 × 0.85 × 0.5 + 2000 × 0.85) / 8000 = 0.425 ; 8Gi × 0.70 / 32Gi = 0.175
    assert!((n.hotspot.cpu - 0.425).abs() < 1e-12, "{:?}", n.hotspot);
    assert!((n.hotspot.memory - 0.175).abs() < 1e-12);
    assert!((n.metrics[0].estimated.unwrap() - 1.025).abs() < 1e-12);
    assert!((n.metrics[2].estimated.unwrap() - 0.775).abs() < 1e-12);
    let quiet = assess_node(&p, &readings, &[], ALLOC, now());
    assert!(score(&p, &n) < score(&p, &quiet));
}

#[test]
fn a_zero_reading_window_forgets_a_pod_at_the_first_sample_after_its_binding() {
    let mut p = Policy::default();
    p.hotspot.reading_window = SignedDuration::ZERO;
    let sampled = now() - SignedDuration::from_secs(30);
    let before = pod_bound(sampled - SignedDuration::from_secs(1), 4000, 0);
    let at = pod_bound(sampled, 4000, 0);
    let after = pod_bound(sampled + SignedDuration::from_secs(1), 2000, 8 << 30);
    let readings = [fresh(0.6), fresh(0.6), fresh(0.6), fresh(0.6)];
    let n = assess_node(&p, &readings, &[before, at, after], ALLOC, now());
    // 2000m × 0.85 / 8000m = 0.2125 ; 8Gi × 0.70 / 32Gi = 0.175
    assert!((n.hotspot.cpu - 0.2125).abs() < 1e-12, "{:?}", n.hotspot);
    assert!((n.hotspot.memory - 0.175).abs() < 1e-12);
}

#[test]
fn the_unshown_part_falls_linearly_over_the_window() {
    let p = Policy::default();
    let sampled = now();
    let part = |secs_before: i64| {
        unshown_part(
            &p,
            sampled - SignedDuration::from_secs(secs_before),
            sampled,
        )
    };
    assert_eq!(part(-1), 1.0);
    assert_eq!(part(0), 1.0);
    assert!((part(60) - 0.8).abs() < 1e-12);
    assert!((part(240) - 0.2).abs() < 1e-12);
    assert_eq!(part(300), 0.0);
    assert_eq!(part(3600), 0.0);
}

#[test]
fn a_burst_of_bindings_pushes_a_node_over_the_filter() {
    let p = Policy::default();
    let readings = [fresh(0.5), fresh(0.5), fresh(0.3), fresh(0.5)];
    let pod = BoundPod {
        bound_at: now(),
        cpu_millis: 1000,
        memory_bytes: 0,
        pinned: false,
        learned: None,
    };
    // each pod adds 1000 × 0.85 / 8000 = 0.10625
    let three = assess_node(&p, &readings, &[pod; 3], ALLOC, now());
    assert!(filter_verdict(&p, &three).passes());
    let four = assess_node(&p, &readings, &[pod; 4], ALLOC, now());
    assert!(!filter_verdict(&p, &four).passes());
}

#[test]
fn zero_allocatable_adds_nothing_rather_than_infinity() {
    let p = Policy::default();
    let pod = BoundPod {
        bound_at: now(),
        cpu_millis: 1000,
        memory_bytes: 1,
        pinned: false,
        learned: None,
    };
    let s = hotspot_addition(&[pod], None, Allocatable::default(), &p);
    assert_eq!(
        s,
        ResourceShares {
            cpu: 0.0,
            memory: 0.0
        }
    );
}

#[test]
fn breaker_trips_strictly_above_the_fraction() {
    let p = Policy::default();
    assert!(!breaker_trips(&p, 0, 0));
    assert!(!breaker_trips(&p, 2, 4));
    assert!(breaker_trips(&p, 3, 4));
    assert!(breaker_trips(&p, 1, 1));
    let known = node(0.95, 0.9, 0.5);
    let unknown = node_with([RawReading::Missing, fresh(0.1), fresh(0.1), fresh(0.1)]);
    let d = decide(&p, &[known.clone(), unknown.clone()]);
    assert!(!d.breaker_tripped);
    assert_eq!(d.unknown, 1);
    assert!(
        !d.verdicts[0].passes(),
        "hot node filtered while the breaker holds"
    );
    let d = decide(&p, &[known, unknown.clone(), unknown]);
    assert!(d.breaker_tripped);
    assert!(d.verdicts.iter().all(FilterVerdict::passes));
    assert_eq!(d.scores, vec![NEUTRAL_SCORE; 3]);
}

// ---- properties ------------------------------------------------------------------------------

fn raw_reading() -> impl Strategy<Value = RawReading> {
    prop_oneof![
        4 => (0.0f64..=1.0, 0i64..600).prop_map(|(ratio, age)| RawReading::Parsed(Reading {
            ratio,
            sampled_at: now() - SignedDuration::from_secs(age),
        })),
        1 => Just(RawReading::Missing),
        1 => Just(RawReading::Invalid(ReadingError::RatioNan)),
    ]
}

fn bound_pods() -> impl Strategy<Value = Vec<BoundPod>> {
    proptest::collection::vec(
        (0i64..600, 0u64..16_000, 0u64..(64 << 30)).prop_map(|(ago, cpu, mem)| BoundPod {
            bound_at: now() - SignedDuration::from_secs(ago),
            cpu_millis: cpu,
            memory_bytes: mem,
            pinned: false,
            learned: None,
        }),
        0..6,
    )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        0.0f64..=1.0,
        0.0f64..=1.0,
        0.0f64..3.0,
        0.01f64..3.0,
        0.0f64..3.0,
    )
        .prop_map(|(unknown_load, fraction, w1, w2, w3)| {
            let mut p = Policy::default();
            p.guards.unknown_load = unknown_load;
            p.guards.max_unknown_fraction = fraction;
            p.metrics[0].weight = w1;
            p.metrics[1].weight = w2;
            p.metrics[2].weight = w3;
            p
        })
}

fn readings() -> impl Strategy<Value = Vec<RawReading>> {
    proptest::collection::vec(raw_reading(), 4)
}

proptest! {
    #[test]
    fn a_newer_sample_never_shows_less_of_a_pod(
        window in 0i64..3600,
        bound in -7200i64..7200,
        sampled in -7200i64..7200,
        later in 0i64..7200,
    ) {
        let mut p = Policy::default();
        p.hotspot.reading_window = SignedDuration::from_secs(window);
        let at = |s: i64| now() + SignedDuration::from_secs(s);
        let old = unshown_part(&p, at(bound), at(sampled));
        let new = unshown_part(&p, at(bound), at(sampled + later));
        prop_assert!((0.0..=1.0).contains(&old));
        prop_assert!(new <= old);
        if bound > sampled {
            prop_assert_eq!(old, 1.0);
        }
    }

    #[test]
    fn scores_are_always_within_range(p in policy(), r in readings(), pods in bound_pods()) {
        let n = assess_node(&p, &r, &pods, ALLOC, now());
        let s = score(&p, &n);
        prop_assert!((MIN_SCORE..=MAX_SCORE).contains(&s));
    }

    #[test]
    fn score_never_rises_as_a_metric_load_rises(
        p in policy(),
        ratios in proptest::collection::vec(0.005f64..=1.0, 4),
        which in 0usize..4,
        bump in 0.0f64..1.0,
        pods in bound_pods(),
    ) {
        let at = |rs: &[f64]| -> Vec<RawReading> { rs.iter().map(|r| fresh(*r)).collect() };
        let mut higher = ratios.clone();
        higher[which] = (higher[which] + bump).min(1.0);
        let low = assess_node(&p, &at(&ratios), &pods, ALLOC, now());
        let high = assess_node(&p, &at(&higher), &pods, ALLOC, now());
        prop_assert!(score(&p, &high) <= score(&p, &low));
        // more bound pods never raise the score either
        let mut more = pods.clone();
        more.push(BoundPod { bound_at: now(), cpu_millis: 500, memory_bytes: 1 << 30, pinned: false, learned: None });
        let busier = assess_node(&p, &at(&ratios), &more, ALLOC, now());
        prop_assert!(score(&p, &busier) <= score(&p, &low));
    }

    #[test]
    fn an_unknown_node_never_outranks_a_valid_node_below_unknown_load(
        p in policy(),
        r in readings(),
        valid in proptest::collection::vec(0.005f64..=1.0, 4),
    ) {
        let unknown = assess_node(&p, &r, &[], ALLOC, now());
        let known_readings: Vec<RawReading> = valid.iter().map(|v| fresh(*v)).collect();
        let known = assess_node(&p, &known_readings, &[], ALLOC, now());
        prop_assume!(!unknown.known && known.known);
        let all_below = p.metrics.iter().zip(&known.metrics)
            .filter(|(spec, _)| spec.is_scored())
            .all(|(_, m)| m.estimated.is_some_and(|e| e < p.guards.unknown_load));
        prop_assume!(all_below);
        prop_assert!(score(&p, &unknown) <= score(&p, &known));
    }

    #[test]
    fn a_tripped_breaker_scores_all_alike_and_filters_none(
        p in policy(),
        nodes in proptest::collection::vec((readings(), bound_pods()), 1..12),
    ) {
        let candidates: Vec<NodeAssessment> =
            nodes.iter().map(|(r, pods)| assess_node(&p, r, pods, ALLOC, now())).collect();
        let d = decide(&p, &candidates);
        let unknown = candidates.iter().filter(|c| !c.known).count();
        prop_assert_eq!(d.unknown, unknown);
        prop_assert_eq!(d.breaker_tripped, unknown as f64 > p.guards.max_unknown_fraction * candidates.len() as f64);
        if d.breaker_tripped {
            prop_assert!(d.verdicts.iter().all(FilterVerdict::passes));
            prop_assert!(d.scores.iter().all(|s| *s == d.scores[0]));
        } else if candidates.iter().any(|c| filter_verdict(&p, c).passes()) || !p.guards.never_strand {
            for (c, v) in candidates.iter().zip(&d.verdicts) {
                prop_assert_eq!(v, &filter_verdict(&p, c));
            }
        } else {
            // nothing would pass: only nodes at the unknown cap stay out (never stranded for load)
            for (c, v) in candidates.iter().zip(&d.verdicts) {
                let own = filter_verdict(&p, c);
                let hot_by_reading = judge(&p, c).reading_over;
                match own {
                    FilterVerdict::UnknownCap { .. } => prop_assert_eq!(v, &own),
                    FilterVerdict::Reject(_) if hot_by_reading => prop_assert_eq!(v, &own),
                    _ => prop_assert!(v.passes(), "{v:?}"),
                }
            }
        }
    }
}

#[test]
fn reservation_goes_to_the_best_known_passing_candidate_first_of_equals() {
    let decision = |verdicts: Vec<FilterVerdict>, scores: Vec<i64>, known: Vec<bool>| Decision {
        breaker_tripped: false,
        unknown: known.iter().filter(|k| !**k).count(),
        verdicts,
        scores,
        known,
    };
    let pass = || FilterVerdict::Pass;
    let d = decision(
        vec![pass(), pass(), pass(), pass()],
        vec![6, 9, 9, 3],
        vec![true, true, true, true],
    );
    assert_eq!(reservation_target(&d), Some(1), "first of the two nines");
    // A rejected node and an unknown node are never reserved on, however they score.
    let d = decision(
        vec![FilterVerdict::reject("cpu", 0.8, 0.9), pass(), pass()],
        vec![10, 10, 4],
        vec![true, false, true],
    );
    assert_eq!(reservation_target(&d), Some(2));
    let d = decision(vec![pass()], vec![10], vec![false]);
    assert_eq!(reservation_target(&d), None);
    let mut tripped = decision(vec![pass(), pass()], vec![5, 5], vec![true, true]);
    tripped.breaker_tripped = true;
    assert_eq!(
        reservation_target(&tripped),
        None,
        "no ranking when the breaker trips"
    );
    assert_eq!(reservation_target(&decision(vec![], vec![], vec![])), None);
}

#[test]
fn the_pod_being_placed_counts_in_the_estimate_of_each_node_by_its_size() {
    let p = Policy::default();
    let small = Allocatable {
        cpu_millis: 8000,
        memory_bytes: 32 << 30,
    };
    let big = Allocatable {
        cpu_millis: 32000,
        memory_bytes: 128 << 30,
    };
    let readings = [fresh(0.45), fresh(0.45), fresh(0.3), fresh(0.45)];
    let on = |alloc| judge(&p, &assess_node(&p, &readings, &[], alloc, now()));
    assert_eq!(
        (on(small).score, on(big).score),
        (10, 10),
        "equal without the pod"
    );
    // a 4-core pod: +0.425 on the small node (0.875: over the filter), +0.106 on the big one
    let small_with = on(small).with_pod(&p, 4000, 0, None);
    let big_with = on(big).with_pod(&p, 4000, 0, None);
    assert!(!small_with.verdict.passes(), "{small_with:?}");
    assert!(big_with.verdict.passes());
    assert!(
        big_with.score > small_with.score,
        "{big_with:?} {small_with:?}"
    );
    // switched off, or an unknown node: as judged
    let off = Policy::from_yaml("hotspot: {includePod: false}").unwrap();
    assert_eq!(on(small).with_pod(&off, 4000, 0, None), on(small));
    let unknown = judge(
        &p,
        &assess_node(
            &p,
            &[RawReading::Missing, fresh(0.1), fresh(0.1), fresh(0.1)],
            &[],
            small,
            now(),
        ),
    );
    assert_eq!(unknown.clone().with_pod(&p, 4000, 0, None), unknown);
}

#[test]
fn learned_usage_replaces_the_factors_for_bound_pods_and_the_pod_being_placed() {
    use crate::workload::UsageRatios;
    let p = Policy::default();
    let readings = [fresh(0.5), fresh(0.5), fresh(0.3), fresh(0.5)];
    let light = Some(UsageRatios {
        cpu: Some(0.2),
        memory: None,
    });
    let pod = |learned| BoundPod {
        bound_at: now(),
        cpu_millis: 4000,
        memory_bytes: 1 << 30,
        pinned: false,
        learned,
    };
    // 4000m × 0.2 / 8000 = 0.1 instead of × 0.85 = 0.425; memory keeps its factor
    let n = assess_node(&p, &readings, &[pod(light)], ALLOC, now());
    assert!((n.hotspot.cpu - 0.1).abs() < 1e-9, "{:?}", n.hotspot);
    let factor = assess_node(&p, &readings, &[pod(None)], ALLOC, now());
    assert!((factor.hotspot.cpu - 0.425).abs() < 1e-9);
    assert_eq!(n.hotspot.memory, factor.hotspot.memory);
    // the pod being placed: a light workload fits where the factor would filter the node
    let base = judge(&p, &assess_node(&p, &readings, &[], ALLOC, now()));
    assert!(!base.clone().with_pod(&p, 4000, 0, None).verdict.passes());
    assert!(base.clone().with_pod(&p, 4000, 0, light).verdict.passes());
    // and a heavy one counts for more than its request
    let heavy = Some(UsageRatios {
        cpu: Some(1.5),
        memory: None,
    });
    let shares = pod_shares(&p, 1000, 0, heavy, ALLOC);
    assert!((shares.cpu - 1000.0 * 1.5 / 8000.0).abs() < 1e-9);
}

#[test]
fn an_unknown_node_is_a_last_resort_when_the_policy_says_so() {
    let p = Policy::from_yaml("guards: {unknownLastResort: true}").unwrap();
    let unknown = || {
        judge(
            &p,
            &node_with([
                RawReading::Missing,
                RawReading::Missing,
                RawReading::Missing,
                RawReading::Missing,
            ]),
        )
    };
    assert!(!unknown().known && unknown().verdict.passes());
    let cool = judge(&p, &node(0.3, 0.3, 0.3));
    let hot = judge(&p, &node(0.95, 0.95, 0.5));
    // a known node passes: the unknown one is held back, with its own message and reason
    let d = decide_judged(&p, vec![unknown(), cool.clone()]);
    assert_eq!(d.verdicts[0], FilterVerdict::UnknownDeferred, "{d:?}");
    assert!(d.verdicts[1].passes());
    assert_eq!(
        d.verdicts[0].message().unwrap(),
        "realload: node load unknown; nodes with valid readings fit the pod"
    );
    assert_eq!(d.verdicts[0].reason(), Some(UNKNOWN_DEFERRED_REASON));
    // only hot known nodes: the unknown one takes the pod (its cap still applies)
    let d = decide_judged(&p, vec![unknown(), hot.clone()]);
    assert!(d.verdicts[0].passes() && !d.verdicts[1].passes(), "{d:?}");
    // known nodes over the filter only by the estimate: `neverStrand` lets them through first
    let warm = judge(&p, &node(0.70, 0.7, 0.5)).with_pod(&p, 4000, 0, None);
    assert!(!warm.verdict.passes() && !warm.reading_over);
    let d = decide_judged(&p, vec![unknown(), warm.clone()]);
    assert_eq!(d.verdicts[0], FilterVerdict::UnknownDeferred, "{d:?}");
    assert!(d.verdicts[1].passes());
    // the breaker trips when most candidates are unknown: nothing is held back
    let d = decide_judged(&p, vec![unknown(), unknown(), cool.clone()]);
    assert!(d.breaker_tripped && d.verdicts.iter().all(FilterVerdict::passes));
    // off (the default): the unknown node competes on its score
    let off = Policy::default();
    assert!(!off.guards.unknown_last_resort);
    let d = decide_judged(&off, vec![unknown(), cool]);
    assert!(d.verdicts.iter().all(FilterVerdict::passes), "{d:?}");
}

#[test]
fn the_filter_never_strands_a_pod_on_estimates_but_keeps_measured_hot_nodes_out() {
    let p = Policy::default();
    // readings under the 0.85 filter; a 4-core pod on 8 cores (+0.425) puts both over it
    let warm = judge(&p, &node(0.70, 0.7, 0.5)).with_pod(&p, 4000, 0, None);
    let warmer = judge(&p, &node(0.75, 0.75, 0.5)).with_pod(&p, 4000, 0, None);
    assert!(!warm.verdict.passes() && !warmer.verdict.passes());
    let d = decide_judged(&p, vec![warm.clone(), warmer.clone()]);
    assert!(d.verdicts.iter().all(FilterVerdict::passes), "{d:?}");
    assert!(d.scores[0] >= d.scores[1], "the score still ranks them");
    // a node hot by its reading alone is never let through
    let hot = judge(&p, &node(0.95, 0.95, 0.5));
    assert!(hot.reading_over);
    let d = decide_judged(&p, vec![hot.clone(), warm.clone()]);
    assert!(!d.verdicts[0].passes() && d.verdicts[1].passes(), "{d:?}");
    let d = decide_judged(&p, vec![hot.clone()]);
    assert!(
        !d.verdicts[0].passes(),
        "the pod waits rather than go to a hot node"
    );
    // a node that passes means nothing is rescued
    let cool = judge(&p, &node(0.3, 0.3, 0.3));
    let d = decide_judged(&p, vec![warm.clone(), cool]);
    assert!(
        !d.verdicts[0].passes() && d.verdicts[1].passes(),
        "a cooler node fits: {d:?}"
    );
    let strict = Policy::from_yaml("guards: {neverStrand: false}").unwrap();
    let d = decide_judged(&strict, vec![warm, warmer]);
    assert!(d.verdicts.iter().all(|v| !v.passes()));
}
