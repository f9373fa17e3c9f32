//! A short run of the simulator, as `casino-router simulate` runs it: on the three-offer scenario cut
//! to its first two days (refreshed every virtual minute, a month takes minutes even optimised),
//! Thompson sampling earns more than the original EV formula, and sends less to the worst offer.

use casino_router::config::RoutingStrategy;
use casino_router::simulate::{scenarios, summarize};

#[test]
fn thompson_earns_more_than_ev_on_three_offers() {
    let mut scenario = scenarios().into_iter().find(|s| s.name == "stationary-3").unwrap();
    scenario.days = 2;
    let thompson = summarize(&scenario, RoutingStrategy::Thompson, 2);
    let ev = summarize(&scenario, RoutingStrategy::Ev, 2);
    assert!(thompson.revenue.0 > ev.revenue.0 + 0.05, "thompson {:?}, ev {:?}", thompson.revenue, ev.revenue);
    assert!(thompson.worst_offer_share.0 < ev.worst_offer_share.0);
    assert!(thompson.revenue.0 <= 1.0 && ev.revenue.0 > 0.3, "revenue is a share of the oracle's");
}
