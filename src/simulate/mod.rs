//! The simulator behind `casino-router simulate`: the router's own routing code against synthetic
//! traffic, on a virtual clock, compared with an oracle that knows every offer's true value.
//!
//! A run follows a [`Scenario`] (built in, or a user's own offer mix from a JSON file: see
//! [`scenario`]) minute by minute: each minute's clicks (the day's clicks spread evenly) belong to a
//! segment (country x device) drawn by its share, and are routed by a real [`RoutingTable`] built by
//! the strategy under test, so an offer only gets the visitors its targeting accepts. `ev` is the
//! original formula ([`WeightPolicy`] on each offer's last 1,000 clicks, 20% exploration, every 6
//! hours); `thompson` is [`thompson::evaluate`] every minute, as the router refreshes it, on what the
//! router's store would hand it: hourly rollups by click age, the current hour's clicks as age 0 with
//! the share of the hour elapsed, per offer and per segment (the scenario's segments are the learning
//! segments, country x device, each with its own pools in the table). A
//! click converts with its offer's true FTD rate in its segment; the FTD postback arrives after a
//! log-normal delay (minutes to days), and only arrived postbacks are visible to the strategies.
//!
//! Revenue is counted in expectation (the true EPC of the offer each click went to, in the click's
//! segment) to keep the comparison sharp; the oracle sends every click to the offer with the
//! highest true EPC among those active and accepting the click's segment.
//!
//! The engine's evidence is kept by click age and aged at each hour's edge: within an hour only the
//! current hour's clicks and arriving FTDs change it, so a refresh costs the engine's time, not a
//! rebuild of 30 days of history. Over a run that is 43,200 evaluations, and they are most of its
//! time.

pub mod scenario;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, LogNormal};

pub use scenario::{Scenario, ScenarioError, ScenarioSpec};

use crate::config::RoutingStrategy;
use crate::routing::table::pick_probabilities;
use crate::routing::thompson::{self, Evidence, HORIZON_HOURS, OfferHistory, Payouts, SegmentHistory};
use crate::routing::{
    DailyCaps, OfferWindow, RedirectTemplate, RouteInput, RoutingTable, Segment, SegmentDims, SegmentKey, Segmentation,
    WeightPolicy,
};

/// Monte Carlo draws per Thompson refresh, as the router uses.
const DRAWS: usize = 1_000;
/// Minutes between `ev` recalculations (the router's default `CRON_INTERVAL_HOURS`, 6).
const EV_REFRESH_MINUTES: usize = 6 * 60;
/// `ev`'s exploration share (the router's default `EXPLORATION_RATE`).
const EV_EXPLORATION: f64 = 0.2;
/// `ev`'s window: each offer's last clicks (the router's default `LAST_N_CLICKS`).
const EV_LAST_CLICKS: usize = 1_000;
const MINUTES_PER_HOUR: usize = 60;
const MINUTES_PER_DAY: usize = 24 * MINUTES_PER_HOUR;

/// Every built-in scenario, validated, in report order.
pub fn scenarios() -> Vec<Scenario> {
    scenario::builtin().iter().map(|spec| spec.validate().expect("the built-in scenarios are valid")).collect()
}

/// A strategy as the simulator runs it: the router's `ROUTING_STRATEGY` and, for `thompson`, its
/// `THOMPSON_EXPLORATION_RATE`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Engine {
    pub strategy: RoutingStrategy,
    /// The share of each segment's traffic `thompson` spreads evenly (`ev` has its own, fixed).
    pub thompson_exploration_rate: f64,
}

impl Engine {
    /// `strategy` with the router's defaults.
    pub fn of(strategy: RoutingStrategy) -> Engine {
        Engine { strategy, thompson_exploration_rate: 0.0 }
    }

    /// The strategy's name in the report, with the exploration rate when one is set.
    pub fn name(&self) -> String {
        match self.strategy {
            RoutingStrategy::Thompson if self.thompson_exploration_rate > 0.0 => {
                // To a tenth of a percent: 0.07 is 7%, not 7.000000000000001%.
                let percent = (1000.0 * self.thompson_exploration_rate).round() / 10.0;
                format!("thompson, exploring {percent}%")
            }
            strategy => strategy.name().to_owned(),
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunResult {
    /// Expected revenue as a share of the oracle's.
    pub revenue_share: f64,
    /// The same, from the scenario's change on (equal to `revenue_share` without a change).
    pub revenue_share_after_change: f64,
    /// Share of clicks sent to the offer with the lowest true EPC in their segment at the time
    /// (among segments with more than one offer to choose from).
    pub worst_offer_share: f64,
    /// Hours from the change until more than half of an hour's clicks went to their segment's best
    /// offer.
    pub hours_to_shift: Option<f64>,
}

/// A clicked-but-not-yet-reported FTD.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PendingFtd {
    arrives_at: usize,
    offer: usize,
    /// The click's segment.
    segment: usize,
    clicked_at: usize,
    /// Its click's place in the offer's `ev` window (kept for `ev` only).
    recent_index: Option<usize>,
}

/// The truth on one day: which offers are in rotation, and per segment its best and worst.
struct Truth {
    day: usize,
    active: Vec<usize>,
    /// `epc[segment][offer]`: the true EPC (0 for an offer that does not take the segment).
    epc: Vec<Vec<f64>>,
    /// Per segment: the best offer and its EPC (none when no active offer takes the segment).
    best: Vec<Option<(usize, f64)>>,
    /// Per segment: the lowest EPC among the eligible offers, when there are two or more.
    worst: Vec<Option<f64>>,
}

impl Truth {
    fn on(scenario: &Scenario, day: usize) -> Truth {
        let active: Vec<usize> = (0..scenario.offers.len()).filter(|&i| scenario.offers[i].active_on(day)).collect();
        let segments = 0..scenario.segments.len();
        let eligible = |s: usize| active.iter().copied().filter(move |&i| scenario.offers[i].accepts(s));
        let epc: Vec<Vec<f64>> =
            segments.clone().map(|s| scenario.offers.iter().map(|offer| offer.epc(s, day)).collect()).collect();
        let best = segments
            .clone()
            .map(|s| {
                eligible(s).map(|i| (i, epc[s][i])).fold(None, |best: Option<(usize, f64)>, (i, e)| {
                    if best.is_none_or(|(_, b)| e > b) { Some((i, e)) } else { best }
                })
            })
            .collect();
        let worst = segments
            .map(|s| (eligible(s).count() > 1).then(|| eligible(s).map(|i| epc[s][i]).fold(f64::MAX, f64::min)))
            .collect();
        Truth { day, active, epc, best, worst }
    }
}

/// What the router's store would give the engine for one offer, kept by click age.
#[derive(Debug, Clone)]
struct OfferEvidence {
    history: OfferHistory,
}

impl OfferEvidence {
    fn new(offer_id: i64) -> OfferEvidence {
        OfferEvidence {
            history: OfferHistory {
                offer_id,
                clicks: vec![0; HORIZON_HOURS],
                ftds: vec![0; HORIZON_HOURS],
                payouts: vec![Payouts::default(); HORIZON_HOURS],
                ..OfferHistory::default()
            },
        }
    }

    fn add_ftd(&mut self, age: usize, delay: usize, payout: f64) {
        if age >= HORIZON_HOURS {
            return;
        }
        let history = &mut self.history;
        history.ftds[age] += 1;
        history.delays.push((age, delay.min(age), 1));
        history.payouts[age].add(Payouts::of(payout));
    }

    /// A new hour began: every click is an hour older, and what passes the horizon is forgotten.
    fn next_hour(&mut self) {
        let history = &mut self.history;
        for series in [&mut history.clicks, &mut history.ftds] {
            series.rotate_right(1);
            series[0] = 0;
        }
        history.payouts.rotate_right(1);
        history.payouts[0] = Payouts::default();
        history.delays.retain_mut(|(age, _, _)| {
            *age += 1;
            *age < HORIZON_HOURS
        });
        // One entry per (age, delay), as the store groups them.
        history.delays.sort_unstable();
        history.delays.dedup_by(|later, kept| {
            let same = (later.0, later.1) == (kept.0, kept.1);
            if same {
                kept.2 += later.2;
            }
            same
        });
    }
}

/// One segment's part of every offer's evidence, sparse and by click age (ascending; every FTD has a
/// payout, so a history's `payouts` are aligned with its `ftds`), aged at each hour's edge like
/// [`OfferEvidence`].
#[derive(Debug, Default)]
struct SegmentEvidence {
    histories: Vec<SegmentHistory>,
    /// `[offer * segments + segment]`: the pair's place in `histories`, once it has a click.
    index: Vec<Option<usize>>,
    segments: usize,
}

impl SegmentEvidence {
    fn new(offers: usize, segments: usize) -> SegmentEvidence {
        SegmentEvidence { index: vec![None; offers * segments], segments, ..SegmentEvidence::default() }
    }

    fn add_click(&mut self, offer: usize, segment: usize) {
        let slot = &mut self.index[offer * self.segments + segment];
        let i = *slot.get_or_insert_with(|| {
            self.histories.push(SegmentHistory { segment, offer, ..SegmentHistory::default() });
            self.histories.len() - 1
        });
        match self.histories[i].clicks.first_mut() {
            Some((0, n)) => *n += 1,
            _ => self.histories[i].clicks.insert(0, (0, 1)),
        }
    }

    fn add_ftd(&mut self, offer: usize, segment: usize, age: usize, payout: f64) {
        let Some(i) = self.index[offer * self.segments + segment] else { return };
        if age >= HORIZON_HOURS {
            return;
        }
        let history = &mut self.histories[i];
        let at = match history.ftds.binary_search_by_key(&age, |&(a, _)| a) {
            Ok(at) => at,
            Err(at) => {
                history.ftds.insert(at, (age, 0));
                history.payouts.insert(at, (age, 0, 0.0));
                at
            }
        };
        history.ftds[at].1 += 1;
        history.payouts[at].1 += 1;
        history.payouts[at].2 += payout;
    }

    /// A new hour began: see [`OfferEvidence::next_hour`].
    fn next_hour(&mut self) {
        for history in &mut self.histories {
            history.clicks.retain_mut(|(age, _)| {
                *age += 1;
                *age < HORIZON_HOURS
            });
            history.ftds.iter_mut().for_each(|(age, _)| *age += 1);
            history.payouts.iter_mut().for_each(|(age, _, _)| *age += 1);
            let kept = history.ftds.partition_point(|&(age, _)| age < HORIZON_HOURS);
            history.ftds.truncate(kept);
            history.payouts.truncate(kept);
        }
    }

    /// The histories of the `active` offers, with their places in that list as offer indices.
    fn of(&self, active: &[usize]) -> Vec<SegmentHistory> {
        self.histories
            .iter()
            .filter_map(|h| {
                let offer = active.iter().position(|&i| i == h.offer)?;
                Some(SegmentHistory { offer, ..h.clone() })
            })
            .collect()
    }
}

/// One run of `scenario` under `strategy` with `seed`.
pub fn run(scenario: &Scenario, engine: Engine, seed: u64) -> RunResult {
    let strategy = engine.strategy;
    let minutes = scenario.days * MINUTES_PER_DAY;
    let k = scenario.offers.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    let delays: Vec<LogNormal<f64>> = scenario
        .offers
        .iter()
        .map(|o| LogNormal::new(o.delay_median_hours.ln(), o.delay_sigma).expect("validated delay"))
        .collect();
    let segment_of = WeightedAliasIndex::new(scenario.segments.iter().map(|s| s.share).collect::<Vec<f64>>())
        .expect("validated shares");
    let visitors = visitors(scenario);
    let mut evidence: Vec<OfferEvidence> = (0..k).map(|i| OfferEvidence::new(i as i64)).collect();
    let (segmentation, learned_segment) = learning_segments(scenario.segment_by, &visitors);
    let mut segment_evidence = SegmentEvidence::new(k, segmentation.keys().len());
    // For `ev`: each offer's clicks in order, with the payout of their FTD once it has arrived.
    let mut recent: Vec<Vec<Option<f64>>> = vec![Vec::new(); k];
    let mut pending = BinaryHeap::new();
    let (mut revenue, mut oracle, mut revenue_after, mut oracle_after) = (0.0, 0.0, 0.0, 0.0);
    let (mut worst_clicks, mut total_clicks) = (0u64, 0u64);
    let change_minute = scenario.change_day.map(|day| day * MINUTES_PER_DAY);
    let (mut hour_clicks, mut hour_best_clicks) = (0usize, 0usize);
    let mut hours_to_shift = None;
    let mut truth = Truth::on(scenario, 0);
    let mut table = RoutingTable::default();
    let mut routed: Option<Vec<usize>> = None; // the active offers the table was built for

    for minute in 0..minutes {
        let (hour, day) = (minute / MINUTES_PER_HOUR, minute / MINUTES_PER_DAY);
        if minute > 0 && minute % MINUTES_PER_HOUR == 0 {
            evidence.iter_mut().for_each(OfferEvidence::next_hour);
            segment_evidence.next_hour();
            if let Some(at) = change_minute
                && minute > at
                && hours_to_shift.is_none()
                && hour_best_clicks * 2 > hour_clicks
            {
                hours_to_shift = Some((hour - 1 - at / MINUTES_PER_HOUR) as f64);
            }
            (hour_clicks, hour_best_clicks) = (0, 0);
        }
        if truth.day != day {
            truth = Truth::on(scenario, day);
        }
        while pending.peek().is_some_and(|Reverse(ftd): &Reverse<PendingFtd>| ftd.arrives_at <= minute) {
            let Some(Reverse(ftd)) = pending.pop() else { break };
            let payout = scenario.offers[ftd.offer].payout(ftd.clicked_at / MINUTES_PER_DAY);
            let age = hour - ftd.clicked_at / MINUTES_PER_HOUR;
            let delay = (ftd.arrives_at - ftd.clicked_at) / MINUTES_PER_HOUR;
            evidence[ftd.offer].add_ftd(age, delay, payout);
            if let Some(segment) = learned_segment[ftd.segment] {
                segment_evidence.add_ftd(ftd.offer, segment, age, payout);
            }
            if let Some(index) = ftd.recent_index {
                recent[ftd.offer][index] = Some(payout);
            }
        }
        let due = match strategy {
            RoutingStrategy::Ev => minute % EV_REFRESH_MINUTES == 0,
            RoutingStrategy::Thompson => true,
        };
        if due || routed.as_ref() != Some(&truth.active) {
            table = match strategy {
                RoutingStrategy::Ev => ev_table(scenario, &truth.active, &recent),
                RoutingStrategy::Thompson => {
                    let hour_elapsed = (minute % MINUTES_PER_HOUR) as f64 / MINUTES_PER_HOUR as f64;
                    let learned =
                        Learned { offers: &evidence, segments: &segment_evidence, segmentation: &segmentation };
                    let seed = seed ^ minute as u64;
                    thompson_table(
                        scenario,
                        &truth.active,
                        &learned,
                        hour_elapsed,
                        engine.thompson_exploration_rate,
                        seed,
                    )
                }
            };
            routed = Some(truth.active.clone());
        }
        let in_day = minute % MINUTES_PER_DAY;
        let clicks = (scenario.clicks_per_day * (in_day + 1)) / MINUTES_PER_DAY
            - (scenario.clicks_per_day * in_day) / MINUTES_PER_DAY;
        for _ in 0..clicks {
            let s = if visitors.len() == 1 { 0 } else { segment_of.sample(&mut rng) };
            let Some(picked) = table.pick(&visitors[s], &mut rng) else { continue };
            let Some((best_offer, best_epc)) = truth.best[s] else { continue };
            let offer = picked.offer.offer_id as usize;
            evidence[offer].history.clicks[0] += 1;
            if let Some(segment) = learned_segment[s] {
                segment_evidence.add_click(offer, segment);
            }
            let epc = truth.epc[s][offer];
            revenue += epc;
            oracle += best_epc;
            if change_minute.is_some_and(|at| minute >= at) {
                revenue_after += epc;
                oracle_after += best_epc;
            }
            worst_clicks += u64::from(truth.worst[s].is_some_and(|worst| epc <= worst));
            hour_best_clicks += usize::from(offer == best_offer);
            hour_clicks += 1;
            total_clicks += 1;
            let recent_index = (strategy == RoutingStrategy::Ev).then(|| {
                recent[offer].push(None);
                recent[offer].len() - 1
            });
            if rng.random_bool(scenario.offers[offer].ftd_rate(s, day)) {
                let delay_minutes = (delays[offer].sample(&mut rng) * MINUTES_PER_HOUR as f64).ceil() as usize;
                pending.push(Reverse(PendingFtd {
                    arrives_at: minute + delay_minutes,
                    offer,
                    segment: s,
                    clicked_at: minute,
                    recent_index,
                }));
            }
        }
    }
    if let Some(at) = change_minute
        && hours_to_shift.is_none()
        && hour_best_clicks * 2 > hour_clicks
    {
        hours_to_shift = Some((minutes / MINUTES_PER_HOUR - 1 - at / MINUTES_PER_HOUR) as f64);
    }
    let after = if change_minute.is_some() { revenue_after / oracle_after } else { revenue / oracle };
    RunResult {
        revenue_share: revenue / oracle,
        revenue_share_after_change: after,
        worst_offer_share: worst_clicks as f64 / total_clicks as f64,
        hours_to_shift,
    }
}

/// The scenario's segments as the routing table sees a visitor.
fn visitors(scenario: &Scenario) -> Vec<Segment<'_>> {
    scenario
        .segments
        .iter()
        .map(|s| Segment { country: s.country, device: s.device, source: s.source.as_deref(), campaign: None })
        .collect()
}

/// The router's learning segments for `visitors` made of the traits `dims` names, as the router
/// keeps them (none when `dims` names none), and each visitor segment's among them: several
/// segments of the scenario are one learning segment when they differ only in traits left out.
fn learning_segments(dims: SegmentDims, visitors: &[Segment<'_>]) -> (Segmentation, Vec<Option<usize>>) {
    if dims.is_none() {
        return (Segmentation::default(), vec![None; visitors.len()]);
    }
    let key_of = |visitor: &Segment<'_>| dims.key(visitor.country, visitor.device, visitor.source);
    let mut keys: Vec<SegmentKey> = Vec::new();
    for key in visitors.iter().map(key_of) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let segmentation = Segmentation::new(dims, keys);
    let learned = visitors.iter().map(|visitor| segmentation.index_of(&key_of(visitor))).collect();
    (segmentation, learned)
}

/// The table inputs for `active` offers (their index as the id), with their targeting.
fn route_inputs(scenario: &Scenario, active: &[usize], weights: &[f64]) -> Vec<RouteInput> {
    let redirect = RedirectTemplate::parse("https://offer.example/").expect("valid URL");
    active
        .iter()
        .zip(weights)
        .map(|(&offer, &weight)| RouteInput {
            offer_id: offer as i64,
            weight,
            redirect: redirect.clone(),
            clicks: Arc::default(),
            rules: scenario.offers[offer].rules.clone(),
            caps: DailyCaps::default(),
            today: Arc::default(),
        })
        .collect()
}

/// `ev`: the original formula on each offer's last 1,000 clicks (the FTDs that have arrived, their
/// payouts), renormalised within each pool, plus the exploration share.
fn ev_table(scenario: &Scenario, active: &[usize], recent: &[Vec<Option<f64>>]) -> RoutingTable {
    let windows: Vec<OfferWindow> = active
        .iter()
        .map(|&i| {
            let window = &recent[i][recent[i].len().saturating_sub(EV_LAST_CLICKS)..];
            let payouts = window.iter().flatten();
            OfferWindow {
                offer_id: i as i64,
                clicks: window.len() as u64,
                ftds: payouts.clone().count() as u64,
                revenue: payouts.sum(),
            }
        })
        .collect();
    let policy = WeightPolicy { min_weight: 0.1, min_clicks: 100 };
    let weights: Vec<f64> = policy.weigh(&windows).iter().map(|w| w.weight).collect();
    let inputs = route_inputs(scenario, active, &weights);
    RoutingTable::build(inputs, &Segmentation::default(), |_, members: &[usize]| {
        pick_probabilities(members.iter().map(|&i| weights[i]), EV_EXPLORATION)
    })
}

/// What `thompson` has learned by now.
struct Learned<'a> {
    offers: &'a [OfferEvidence],
    segments: &'a SegmentEvidence,
    segmentation: &'a Segmentation,
}

/// `thompson`: each pool's offers by their probability of being best among them for the pool's
/// segment, from the engine's evaluation of the active offers' evidence.
fn thompson_table(
    scenario: &Scenario,
    active: &[usize],
    learned: &Learned<'_>,
    hour_elapsed: f64,
    exploration: f64,
    seed: u64,
) -> RoutingTable {
    let offers: Vec<OfferHistory> = active.iter().map(|&i| learned.offers[i].history.clone()).collect();
    // With every offer active the histories are as kept; otherwise renumbered to the active ones.
    let segments = if active.len() == scenario.offers.len() {
        Cow::Borrowed(&learned.segments.histories[..])
    } else {
        Cow::Owned(learned.segments.of(active))
    };
    let evidence =
        Evidence { offers: &offers, segments: &segments, segment_traits: learned.segmentation.traits(), hour_elapsed };
    let result = thompson::evaluate(&evidence, DRAWS, seed);
    let inputs = route_inputs(scenario, active, &result.probability_best);
    RoutingTable::build(inputs, learned.segmentation, result.routing_shares(exploration))
}

/// Summary over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Mean revenue share and the half-width of its 95% interval.
    pub revenue: (f64, f64),
    /// The same after the change.
    pub revenue_after_change: (f64, f64),
    /// Mean share of clicks to the worst offer and the half-width of its 95% interval.
    pub worst_offer_share: (f64, f64),
    /// Median hours to shift traffic after the change (runs that never shifted count as the rest of
    /// the run).
    pub median_hours_to_shift: Option<f64>,
}

/// Runs `seeds` seeds (in parallel on the machine's cores) and summarises them.
pub fn summarize(scenario: &Scenario, engine: Engine, seeds: u64) -> Summary {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let results: Vec<RunResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..seeds).filter(|s| s % threads == t).map(|s| run(scenario, engine, s + 1)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("simulation thread")).collect()
    });
    let interval = |values: Vec<f64>| {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        (mean, 1.96 * sd / n.sqrt())
    };
    let median_hours_to_shift = scenario.change_day.map(|day| {
        let rest = ((scenario.days - day) * 24) as f64;
        let mut hours: Vec<f64> = results.iter().map(|r| r.hours_to_shift.unwrap_or(rest)).collect();
        hours.sort_unstable_by(f64::total_cmp);
        hours[hours.len() / 2]
    });
    Summary {
        revenue: interval(results.iter().map(|r| r.revenue_share).collect()),
        revenue_after_change: interval(results.iter().map(|r| r.revenue_share_after_change).collect()),
        worst_offer_share: interval(results.iter().map(|r| r.worst_offer_share).collect()),
        median_hours_to_shift,
    }
}

/// The report `casino-router simulate` prints: one Markdown row per scenario and strategy (`thompson`
/// with `thompson_exploration_rate`), each written to `out` as soon as it is known (a full report
/// takes long); `progress` hears what is being simulated and how long each step took.
pub fn report(
    scenarios: &[Scenario],
    seeds: u64,
    thompson_exploration_rate: f64,
    out: &mut impl std::io::Write,
    mut progress: impl FnMut(&str),
) -> std::io::Result<()> {
    writeln!(
        out,
        "| scenario | strategy | revenue, % of oracle | after the change | clicks to the worst offer | hours to shift (median) |\n\
         | --- | --- | --- | --- | --- | --- |"
    )?;
    for scenario in scenarios {
        let thompson = Engine { strategy: RoutingStrategy::Thompson, thompson_exploration_rate };
        for engine in [thompson, Engine::of(RoutingStrategy::Ev)] {
            let step = format!("{} / {}", scenario.name, engine.name());
            progress(&format!("simulating {step} ({seeds} seeds)"));
            let started = std::time::Instant::now();
            let summary = summarize(scenario, engine, seeds);
            progress(&format!("{step}: {:.0} s", started.elapsed().as_secs_f64()));
            let percent = |(mean, half): (f64, f64)| format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * half);
            let after = if scenario.change_day.is_some() { percent(summary.revenue_after_change) } else { "-".into() };
            let shift = summary.median_hours_to_shift.map_or("-".into(), |h| format!("{h:.0}"));
            let (worst, worst_half) = summary.worst_offer_share;
            writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} ± {:.2}% | {} |",
                scenario.name,
                engine.name(),
                percent(summary.revenue),
                after,
                100.0 * worst,
                100.0 * worst_half,
                shift
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(json: &str) -> Scenario {
        ScenarioSpec::from_json(json).unwrap()
    }

    #[test]
    fn the_oracle_is_the_best_eligible_active_offer_of_each_segment() {
        // DE: A (DE only, EPC 5) beats B (4); GB: only B (8 there), then C from day 1 (EPC 1 anywhere).
        let scenario = scenario(
            r#"{"name": "t", "days": 2, "segments": [{"country": "DE"}, {"country": "GB"}], "offers": [
                {"name": "A", "ftd_rate": 0.05, "payout": 100, "countries": ["DE"]},
                {"name": "B", "ftd_rate": 0.04, "payout": 100, "rate_by_country": {"GB": 2}},
                {"name": "C", "ftd_rate": 0.01, "payout": 100, "from_day": 1}]}"#,
        );
        let day0 = Truth::on(&scenario, 0);
        assert_eq!(day0.active, [0, 1]);
        assert_eq!(day0.best, [Some((0, 5.0)), Some((1, 8.0))]);
        assert_eq!(day0.worst, [Some(4.0), None], "GB has one offer to choose from: no worst");
        let day1 = Truth::on(&scenario, 1);
        assert_eq!(day1.active, [0, 1, 2]);
        assert_eq!(day1.best, [Some((0, 5.0)), Some((1, 8.0))]);
        assert_eq!(day1.worst, [Some(1.0), Some(1.0)]);
    }

    #[test]
    fn a_run_where_each_segment_has_one_offer_earns_the_oracle_under_both_strategies() {
        // The table offers each visitor only what accepts them: nothing to learn, nothing lost,
        // though B's EPC is far below A's.
        let scenario = scenario(
            r#"{"name": "t", "days": 1, "clicks_per_day": 2000,
                "segments": [{"country": "DE"}, {"country": "GB", "device": "mobile"}], "offers": [
                {"name": "A", "ftd_rate": 0.05, "payout": 100, "countries": ["DE"]},
                {"name": "B", "ftd_rate": 0.01, "payout": 100, "countries": ["GB"]}]}"#,
        );
        // The same by device class, and by a blocked country.
        let by_device = self::scenario(
            r#"{"name": "t", "days": 1, "clicks_per_day": 2000,
                "segments": [{"country": "DE", "device": "mobile"}, {"country": "DE"}, {"country": "AT"}], "offers": [
                {"name": "A", "ftd_rate": 0.05, "payout": 100, "devices": ["mobile"]},
                {"name": "B", "ftd_rate": 0.01, "payout": 100, "devices": ["desktop"], "blocked_countries": ["AT"]},
                {"name": "C", "ftd_rate": 0.02, "payout": 100, "countries": ["AT"]}]}"#,
        );
        for scenario in [scenario, by_device] {
            for strategy in [RoutingStrategy::Ev, RoutingStrategy::Thompson] {
                let result = run(&scenario, Engine::of(strategy), 1);
                assert_eq!(result.revenue_share, 1.0, "{strategy:?}");
                assert_eq!(result.worst_offer_share, 0.0, "{strategy:?}");
            }
        }
    }

    #[test]
    fn visitor_segments_that_differ_in_traits_left_out_learn_as_one() {
        let scenario = scenario(
            r#"{"name": "t", "segment_by": "country",
                "segments": [{"country": "DE", "device": "mobile"}, {"country": "DE"}, {"country": "GB"}],
                "offers": [{"name": "A", "ftd_rate": 0.05, "payout": 100}]}"#,
        );
        let visitors = visitors(&scenario);
        let (segmentation, learned) = learning_segments(scenario.segment_by, &visitors);
        assert_eq!(learned, [Some(0), Some(0), Some(1)]);
        assert_eq!(segmentation.keys().len(), 2);
        let (segmentation, learned) = learning_segments(SegmentDims::NONE, &visitors);
        assert_eq!((segmentation.keys().len(), learned), (0, vec![None; 3]));
    }

    #[test]
    fn the_report_names_the_exploration_rate_of_thompson_alone() {
        assert_eq!(Engine::of(RoutingStrategy::Thompson).name(), "thompson");
        let exploring = |strategy| Engine { strategy, thompson_exploration_rate: 0.07 }.name();
        assert_eq!(exploring(RoutingStrategy::Thompson), "thompson, exploring 7%");
        assert_eq!(exploring(RoutingStrategy::Ev), "ev");
    }

    #[test]
    fn segment_evidence_is_sparse_by_age_and_ages_like_the_offers() {
        let mut evidence = SegmentEvidence::new(2, 3);
        evidence.add_click(1, 2);
        evidence.add_click(1, 2);
        evidence.add_ftd(0, 0, 0, 50.0); // offer 0 has no click in segment 0: no history to add to
        evidence.next_hour();
        evidence.add_click(1, 2);
        evidence.add_ftd(1, 2, 1, 100.0);
        evidence.add_ftd(1, 2, 0, 80.0);
        assert_eq!(evidence.histories.len(), 1, "one history per pair with clicks");
        let history = &evidence.histories[0];
        assert_eq!((history.segment, history.offer), (2, 1));
        assert_eq!(history.clicks, [(0, 1), (1, 2)]);
        assert_eq!(history.ftds, [(0, 1), (1, 1)]);
        assert_eq!(history.payouts, [(0, 1, 80.0), (1, 1, 100.0)]);
        for _ in 0..HORIZON_HOURS - 2 {
            evidence.next_hour();
        }
        let history = &evidence.histories[0];
        assert_eq!(history.clicks, [(HORIZON_HOURS - 2, 1), (HORIZON_HOURS - 1, 2)]);
        evidence.next_hour();
        let history = &evidence.histories[0];
        assert_eq!(
            (history.clicks.as_slice(), history.ftds.as_slice()),
            (&[(HORIZON_HOURS - 1, 1)][..], &[(HORIZON_HOURS - 1, 1)][..])
        );
        assert_eq!(history.payouts, [(HORIZON_HOURS - 1, 1, 80.0)], "the older FTD's payout is forgotten");
        let only_offer_1 = evidence.of(&[1]);
        assert_eq!((only_offer_1[0].offer, evidence.of(&[0]).len()), (0, 0), "offer indices into the active list");
    }

    #[test]
    fn evidence_ages_by_the_hour_and_forgets_what_passes_the_horizon() {
        let mut evidence = OfferEvidence::new(1);
        evidence.history.clicks[0] = 10;
        evidence.add_ftd(0, 0, 100.0);
        evidence.add_ftd(HORIZON_HOURS - 1, 5, 50.0);
        evidence.add_ftd(HORIZON_HOURS, 5, 50.0); // beyond the horizon already: not counted
        let total = |history: &OfferHistory| history.payouts.iter().copied().sum::<Payouts>();
        assert_eq!(total(&evidence.history), Payouts { count: 2, sum: 150.0, sum_sq: 12_500.0 });
        evidence.next_hour();
        let history = &evidence.history;
        assert_eq!((history.clicks[0], history.clicks[1], history.ftds[1]), (0, 10, 1));
        assert_eq!(history.delays, [(1, 0, 1)], "the FTD aged 719 hours is forgotten");
        assert_eq!((total(history), history.payouts[1]), (Payouts::of(100.0), Payouts::of(100.0)));
        evidence.add_ftd(1, 1, 100.0);
        evidence.add_ftd(1, 1, 100.0);
        evidence.next_hour();
        assert_eq!(evidence.history.delays, [(2, 0, 1), (2, 1, 2)], "one entry per age and delay");
    }
}
