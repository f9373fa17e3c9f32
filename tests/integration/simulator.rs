//! Short runs of the simulator, as `casino-router simulate` runs it (refreshed every virtual minute,
//! a month takes minutes even optimised): on the three-offer scenario cut to its first two days,
//! Thompson sampling earns more than the original EV formula and sends less to the worst offer; an
//! offer that improves is found with an exploration rate; a cut in payout moves the traffic; sources
//! are learned apart when the segments are made of them.

use casino_router::config::RoutingStrategy;
use casino_router::simulate::{Engine, ScenarioSpec, scenarios, summarize};

#[test]
fn thompson_earns_more_than_ev_on_three_offers() {
    let mut scenario = scenarios().into_iter().find(|s| s.name == "stationary-3").unwrap();
    scenario.days = 2;
    let thompson = summarize(&scenario, Engine::of(RoutingStrategy::Thompson), 2);
    let ev = summarize(&scenario, Engine::of(RoutingStrategy::Ev), 2);
    assert!(thompson.revenue.0 > ev.revenue.0 + 0.05, "thompson {:?}, ev {:?}", thompson.revenue, ev.revenue);
    assert!(thompson.worst_offer_share.0 < ev.worst_offer_share.0);
    assert!(thompson.revenue.0 <= 1.0 && ev.revenue.0 > 0.3, "revenue is a share of the oracle's");
}

#[test]
fn an_offer_that_improves_is_found_with_an_exploration_rate_and_not_without() {
    // B converts at 1% beside A's 3% until day 1, then at 9%. Without an even share, `thompson`
    // has stopped sending B clicks by then and never learns of the change; with 10% spread evenly,
    // B's new FTDs are seen and it takes the traffic.
    let scenario = ScenarioSpec::from_json(
        r#"{"name": "improver", "days": 4, "clicks_per_day": 20000, "offers": [
            {"name": "A", "ftd_rate": 0.03, "payout": 100, "delay": {"median_hours": 1, "sigma": 0.5}},
            {"name": "B", "ftd_rate": 0.01, "payout": 100, "delay": {"median_hours": 1, "sigma": 0.5},
             "changes": [{"day": 1, "ftd_rate": 0.09}]}]}"#,
    )
    .unwrap();
    let thompson = |rate: f64| Engine { strategy: RoutingStrategy::Thompson, thompson_exploration_rate: rate };
    let without = summarize(&scenario, thompson(0.0), 2);
    let with = summarize(&scenario, thompson(0.1), 2);
    assert!(without.revenue_after_change.0 < 0.5, "without: {without:?}");
    assert!(with.revenue_after_change.0 > 0.75, "with 10%: {with:?}");
    assert!(with.median_hours_to_shift.is_some_and(|hours| hours < 24.0), "with 10%: {with:?}");
}

#[test]
fn a_cut_in_payout_moves_the_traffic_within_hours() {
    // A and B convert alike; A pays $150 per FTD, B $100, until A's payout falls to $50 on day 2.
    // Read at the average of every payout it made, A would stay ahead for days.
    let scenario = ScenarioSpec::from_json(
        r#"{"name": "payout-cut", "days": 4, "clicks_per_day": 20000, "offers": [
            {"name": "A", "ftd_rate": 0.03, "payout": 150, "delay": {"median_hours": 2, "sigma": 0.5},
             "changes": [{"day": 2, "payout": 50}]},
            {"name": "B", "ftd_rate": 0.03, "payout": 100, "delay": {"median_hours": 2, "sigma": 0.5}}]}"#,
    )
    .unwrap();
    let summary = summarize(&scenario, Engine::of(RoutingStrategy::Thompson), 2);
    assert!(summary.revenue_after_change.0 > 0.85, "{summary:?}");
    assert!(summary.median_hours_to_shift.is_some_and(|hours| hours < 12.0), "{summary:?}");
}

#[test]
fn sources_that_convert_apart_are_learned_apart_when_segment_by_names_source() {
    // A converts twice as well on fb's clicks as on google's, B the other way round: over all the
    // traffic they are alike, so only a router that learns per source can earn more than 3/4 of the
    // oracle.
    let mix = |segment_by: &str| {
        ScenarioSpec::from_json(&format!(
            r#"{{"name": "sources", "days": 2, "clicks_per_day": 10000, "segment_by": "{segment_by}",
                "segments": [{{"country": "DE", "source": "fb"}}, {{"country": "DE", "source": "google"}}],
                "offers": [
                 {{"name": "A", "ftd_rate": 0.04, "payout": 100, "rate_by_source": {{"fb": 2}},
                   "delay": {{"median_hours": 1, "sigma": 0.5}}}},
                 {{"name": "B", "ftd_rate": 0.04, "payout": 100, "rate_by_source": {{"google": 2}},
                   "delay": {{"median_hours": 1, "sigma": 0.5}}}}]}}"#
        ))
        .unwrap()
    };
    let thompson = Engine::of(RoutingStrategy::Thompson);
    let by_source = summarize(&mix("country,device,source"), thompson, 2);
    let without = summarize(&mix("country,device"), thompson, 2);
    assert!(by_source.revenue.0 > 0.9, "by source: {by_source:?}");
    assert!(without.revenue.0 < 0.8, "without the source: {without:?}");
}
