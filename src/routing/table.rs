//! The routing table: which offer a click goes to, precomputed so that a pick is one alias draw.
//!
//! Offers may accept only some visitors (country, device, source, campaign: see `rules`). Many
//! visitors share the same set of eligible offers, so the table holds one *pool* per distinct
//! eligible set that can occur, each a Vose alias table (`rand_distr::WeightedAliasIndex`) over its
//! members with their probabilities for that set (the strategy supplies them: EV weights
//! renormalised, or Thompson's probability of being best among those offers). Building finds the
//! sets; a click only looks its pool up:
//! - country x device: a dense array, one class per cell;
//! - source and campaign: each value falls into a class (an exact entry, the longest prefix entry it
//!   starts with, or none), found by one hash lookup and a scan of the prefix entries;
//! - the three classes index a precomputed array of pools.
//!
//! Daily caps: an offer capped when the table is built is in no pool. One that reaches its cap
//! afterwards is refused by [`RoutedOffer::take_slot`] at the pick (a compare or an atomic add, so the
//! cap is exact on this instance under any concurrency); from then until the next rebuild takes it
//! out, picks draw among the members still below their caps. Each entry also carries its prepared redirect and the propensity of the pick, which is
//! recorded with the click so that any other policy can later be scored offline.
//!
//! Invariant: a table is immutable once built (its cap counters aside). Changes build a new table that
//! is swapped in whole (`arc-swap`), so a click sees either the old or the new table, never a mixture,
//! and takes no lock. The pick allocates nothing.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::Rng;
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, StandardUniform};

use super::redirect::RedirectTemplate;
use super::rules::{DailyCaps, OfferRules, ValuePattern};
use super::segments::{SegmentKey, Segmentation};
use crate::visitor::{Country, DeviceClass};

/// Most offers a table routes to: an eligible set is a bitset of this many bits.
pub const MAX_ROUTED_OFFERS: usize = 256;
/// Stands for "a value no entry names" when classes are built: visitor values and entries hold no
/// control characters.
const NO_ENTRY: &str = "\0";

/// An offer's counts for the current UTC day, shared by every table that holds the offer; reset by
/// the application layer when the day changes.
#[derive(Debug, Default)]
pub struct DayCounts {
    /// Clicks routed to the offer today (by this instance, or stored by any instance at the last
    /// refresh, whichever is more).
    pub clicks: AtomicU64,
    /// FTDs of the offer that arrived today.
    pub ftds: AtomicU64,
}

/// What the table needs of one active offer.
#[derive(Debug, Clone)]
pub struct RouteInput {
    /// The offer's id.
    pub offer_id: i64,
    /// Its routing weight (>= 0).
    pub weight: f64,
    /// Its validated redirect.
    pub redirect: RedirectTemplate,
    /// Its redirect counter (see [`crate::metrics::Metrics::offer_click_counter`]).
    pub clicks: Arc<AtomicU64>,
    /// Who it accepts.
    pub rules: OfferRules,
    /// Its daily caps.
    pub caps: DailyCaps,
    /// Its counts today.
    pub today: Arc<DayCounts>,
}

impl RouteInput {
    /// Whether the offer has reached a daily cap.
    pub fn is_capped(&self) -> bool {
        at_cap(&self.caps, &self.today)
    }
}

fn at_cap(caps: &DailyCaps, today: &DayCounts) -> bool {
    let reached = |cap: Option<u64>, count: &AtomicU64| cap.is_some_and(|cap| count.load(Ordering::Relaxed) >= cap);
    reached(caps.clicks, &today.clicks) || reached(caps.ftds, &today.ftds)
}

/// One offer as the click path sees it.
#[derive(Debug, Clone)]
pub struct RoutedOffer {
    /// The offer's id, recorded with the click.
    pub offer_id: i64,
    /// Its share of traffic before rules narrow the choice: its probability among all offers in
    /// rotation (0 for an offer at its cap).
    pub propensity: f64,
    /// The weight it was given.
    pub weight: f64,
    /// Where its clicks are sent.
    pub redirect: RedirectTemplate,
    /// Counts its redirects, for `/metrics`; shared with every table that holds the offer.
    pub clicks: Arc<AtomicU64>,
    /// Its daily caps.
    pub caps: DailyCaps,
    /// Its counts today.
    pub today: Arc<DayCounts>,
    /// Whether it was below its caps when the table was built (and so is in the pools).
    pub in_rotation: bool,
}

impl RoutedOffer {
    /// Whether the offer has reached a daily cap by now.
    pub fn is_capped(&self) -> bool {
        at_cap(&self.caps, &self.today)
    }

    /// Takes one click of the offer's daily caps; `false` (and nothing taken) when it is at a cap.
    #[inline]
    pub fn take_slot(&self) -> bool {
        if let Some(cap) = self.caps.ftds
            && self.today.ftds.load(Ordering::Relaxed) >= cap
        {
            return false;
        }
        if let Some(cap) = self.caps.clicks
            && self.today.clicks.fetch_add(1, Ordering::Relaxed) >= cap
        {
            self.today.clicks.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back a slot taken for a click that was then refused.
    pub fn give_back_slot(&self) {
        if self.caps.clicks.is_some() {
            self.today.clicks.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What the table needs to know of a visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Where the visitor is.
    pub country: Country,
    /// What they use.
    pub device: DeviceClass,
    /// The click's `source`.
    pub source: Option<&'a str>,
    /// The click's `campaign`.
    pub campaign: Option<&'a str>,
}

impl Segment<'static> {
    /// A visitor no rule singles out: unknown country, desktop, no source, no campaign.
    pub const ANYONE: Segment<'static> =
        Segment { country: Country::UNKNOWN, device: DeviceClass::Desktop, source: None, campaign: None };
}

/// An offer picked for a click.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'t> {
    /// The offer.
    pub offer: &'t RoutedOffer,
    /// The probability with which it was picked for this visitor.
    pub propensity: f64,
}

/// An immutable snapshot of the offers in rotation and how visitors are shared among them.
#[derive(Debug, Default)]
pub struct RoutingTable {
    offers: Box<[RoutedOffer]>,
    pools: Box<[Pool]>,
    /// `[country * 3 + device]` -> place class.
    places: Box<[u32]>,
    sources: ValueClasses,
    campaigns: ValueClasses,
    /// `[(place * n_sources + source) * n_campaigns + campaign]` -> pool index, or `NO_POOL`.
    pool_of: Box<[u32]>,
    /// Set when a pick met an offer that reached a cap after the build: picks then skip capped
    /// offers explicitly (O(members)), so that each click's propensity stays exact.
    capped_since_built: AtomicBool,
}

const NO_POOL: u32 = u32::MAX;

/// The offers eligible for one kind of visitor, ready to draw from.
#[derive(Debug)]
struct Pool {
    alias: WeightedAliasIndex<f64>,
    /// Indices into the table's offers.
    members: Box<[u16]>,
    /// Each member's probability in this pool.
    propensities: Box<[f64]>,
}

/// A set of offers, by their index in the table.
type OfferSet = [u64; MAX_ROUTED_OFFERS / 64];

fn with_offer(mut set: OfferSet, index: usize) -> OfferSet {
    set[index / 64] |= 1 << (index % 64);
    set
}

fn intersection(a: &OfferSet, b: &OfferSet) -> OfferSet {
    std::array::from_fn(|i| a[i] & b[i])
}

fn members(set: &OfferSet) -> Vec<usize> {
    (0..MAX_ROUTED_OFFERS).filter(|&i| set[i / 64] & (1 << (i % 64)) != 0).collect()
}

/// The classes of one free-text dimension (source or campaign): values that make the same offers
/// eligible share a class, but a value that is a learning segment of its own (a *learned* value) has
/// a class of its own.
#[derive(Debug, Default)]
struct ValueClasses {
    exact: HashMap<Box<str>, u32>,
    /// Prefix entries, longest first, with the class of a value whose longest matching prefix they
    /// are (and that no exact entry names).
    prefixes: Box<[(Box<str>, u32)]>,
    /// The class of a click without the value.
    absent: u32,
    /// The class of a value no entry names.
    other: u32,
    /// How many classes.
    count: u32,
}

/// The country and device parts of a segment.
type PlaceKey = (Option<Country>, Option<DeviceClass>);

/// A class of [`ValueClasses`]: the offers its values make eligible, and the learned value it is
/// (`""` for clicks without the value), if any.
type ValueClass = (OfferSet, Option<Box<str>>);

impl ValueClasses {
    /// Classes for the rule entries `entries` and the `learned` values (sorted), where
    /// `accepts(offer, value)` says whether an offer takes a value.
    fn build(
        n_offers: usize,
        entries: impl Iterator<Item = ValuePattern>,
        learned: &[&str],
        accepts: impl Fn(usize, Option<&str>) -> bool,
    ) -> (ValueClasses, Vec<ValueClass>) {
        let mut classes_found: Vec<ValueClass> = Vec::new();
        let mut numbers: HashMap<ValueClass, u32> = HashMap::new();
        let mut class_of = |value: Option<&str>| -> u32 {
            let set = (0..n_offers).filter(|&i| accepts(i, value)).fold([0; MAX_ROUTED_OFFERS / 64], with_offer);
            let value = value.unwrap_or_default();
            let learned = learned.binary_search(&value).is_ok().then(|| Box::from(value));
            *numbers.entry((set, learned)).or_insert_with_key(|class| {
                classes_found.push(class.clone());
                (classes_found.len() - 1) as u32
            })
        };
        let mut classes =
            ValueClasses { absent: class_of(None), other: class_of(Some(NO_ENTRY)), ..Default::default() };
        for value in learned.iter().filter(|v| !v.is_empty()) {
            let class = class_of(Some(value));
            classes.exact.insert((*value).into(), class);
        }
        let mut prefixes = Vec::new();
        for entry in entries {
            match entry {
                ValuePattern::Exact(value) => {
                    if let Entry::Vacant(slot) = classes.exact.entry(value) {
                        let class = class_of(Some(slot.key()));
                        slot.insert(class);
                    }
                }
                ValuePattern::Prefix(stem) => {
                    if !prefixes.iter().any(|(known, _)| *known == stem) {
                        // A value starting with `stem` (and no longer prefix), that no exact entry names.
                        let class = class_of(Some(&format!("{stem}{NO_ENTRY}")));
                        prefixes.push((stem, class));
                    }
                }
            }
        }
        prefixes.sort_by_key(|(stem, _)| std::cmp::Reverse(stem.len()));
        classes.prefixes = prefixes.into_boxed_slice();
        classes.count = classes_found.len() as u32;
        (classes, classes_found)
    }

    #[inline]
    fn class(&self, value: Option<&str>) -> u32 {
        let Some(value) = value else { return self.absent };
        if self.count == 1 {
            return 0;
        }
        if let Some(&class) = self.exact.get(value) {
            return class;
        }
        self.prefixes.iter().find(|(stem, _)| value.starts_with(&**stem)).map_or(self.other, |&(_, class)| class)
    }
}

impl RoutingTable {
    /// Builds the table for `inputs`, with pools of their own for the segments of `segmentation`.
    /// `probabilities(segment, members)` gives the pick probabilities of a set of offers (indices into
    /// `inputs`, ascending) for a visitor of a segment (`None`: a visitor of no segment, or over all
    /// traffic), summing to 1: the strategy's say. Calls come grouped by segment. Offers at a daily
    /// cap are left out of rotation, and offers past [`MAX_ROUTED_OFFERS`] too (logged).
    pub fn build(
        inputs: Vec<RouteInput>,
        segmentation: &Segmentation,
        mut probabilities: impl FnMut(Option<usize>, &[usize]) -> Vec<f64>,
    ) -> RoutingTable {
        if inputs.len() > MAX_ROUTED_OFFERS {
            tracing::error!(
                offers = inputs.len(),
                routed = MAX_ROUTED_OFFERS,
                "more active offers than a table routes: the offers with the highest ids get no traffic"
            );
        }
        let n_offers = inputs.len().min(MAX_ROUTED_OFFERS);
        let in_rotation: OfferSet =
            (0..n_offers).filter(|&i| !inputs[i].is_capped()).fold([0; MAX_ROUTED_OFFERS / 64], with_offer);
        let all = members(&in_rotation);
        let shares = probabilities(None, &all);
        let dims = segmentation.dims();

        // Country x device: a class per eligible set and learned place (the country and device parts
        // of a segment that has its own pools).
        let learned_places: HashSet<PlaceKey> =
            segmentation.keys().iter().map(|key| (key.country, key.device)).collect();
        let mut place_classes: Vec<(OfferSet, Option<PlaceKey>)> = Vec::new();
        let places: Box<[u32]> = Country::all()
            .flat_map(|country| DeviceClass::ALL.map(move |device| (country, device)))
            .map(|(country, device)| {
                let set = all
                    .iter()
                    .filter(|&&i| inputs[i].rules.accepts_place(country, device))
                    .fold([0; MAX_ROUTED_OFFERS / 64], |set, &i| with_offer(set, i));
                let place = (dims.country.then_some(country), dims.device.then_some(device));
                let class = (set, learned_places.contains(&place).then_some(place));
                let index = place_classes.iter().position(|known| *known == class).unwrap_or_else(|| {
                    place_classes.push(class);
                    place_classes.len() - 1
                });
                index as u32
            })
            .collect();
        let entries = |patterns: fn(&OfferRules) -> &[ValuePattern]| {
            inputs[..n_offers].iter().flat_map(move |input| patterns(&input.rules).iter().cloned())
        };
        let learned_sources: Vec<&str> = if dims.source {
            let mut values: Vec<&str> = segmentation.keys().iter().filter_map(|key| key.source.as_deref()).collect();
            values.sort_unstable();
            values.dedup();
            values
        } else {
            Vec::new()
        };
        let (sources, source_classes) =
            ValueClasses::build(n_offers, entries(OfferRules::source_patterns), &learned_sources, |i, value| {
                inputs[i].rules.accepts_source(value)
            });
        let (campaigns, campaign_classes) =
            ValueClasses::build(n_offers, entries(OfferRules::campaign_patterns), &[], |i, value| {
                inputs[i].rules.accepts_campaign(value)
            });

        // Each slot's eligible set and segment; then one pool per distinct pair, made segment by
        // segment (so that the strategy can keep a segment's draws while it is asked about it).
        let mut slots: Vec<Option<(OfferSet, Option<usize>)>> =
            Vec::with_capacity(place_classes.len() * source_classes.len() * campaign_classes.len());
        for (place_set, place) in &place_classes {
            for (source_set, source) in &source_classes {
                let narrowed = intersection(place_set, source_set);
                let segment = match (place, dims.source) {
                    (Some((country, device)), true) => source.clone().and_then(|source| {
                        segmentation.index_of(&SegmentKey { country: *country, device: *device, source: Some(source) })
                    }),
                    (Some((country, device)), false) => {
                        segmentation.index_of(&SegmentKey { country: *country, device: *device, source: None })
                    }
                    (None, _) => None,
                };
                for (campaign_set, _) in &campaign_classes {
                    let eligible = intersection(&narrowed, campaign_set);
                    slots.push((eligible != [0; MAX_ROUTED_OFFERS / 64]).then_some((eligible, segment)));
                }
            }
        }
        let mut distinct: Vec<(Option<usize>, OfferSet)> =
            slots.iter().flatten().map(|&(set, segment)| (segment, set)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut pools: Vec<Pool> = Vec::with_capacity(distinct.len());
        let mut pool_index: HashMap<(OfferSet, Option<usize>), u32> = HashMap::with_capacity(distinct.len());
        for (segment, set) in distinct {
            let members = members(&set);
            pool_index.insert((set, segment), pools.len() as u32);
            pools.push(Pool::new(&members, probabilities(segment, &members)));
        }
        let pool_of: Vec<u32> = slots.iter().map(|slot| slot.map_or(NO_POOL, |key| pool_index[&key])).collect();

        let mut share_of = vec![0.0; n_offers];
        for (&i, share) in all.iter().zip(shares) {
            share_of[i] = share;
        }
        let offers = inputs
            .into_iter()
            .take(n_offers)
            .zip(share_of)
            .enumerate()
            .map(|(i, (input, propensity))| RoutedOffer {
                in_rotation: in_rotation[i / 64] & (1 << (i % 64)) != 0,
                offer_id: input.offer_id,
                propensity,
                weight: input.weight,
                redirect: input.redirect,
                clicks: input.clicks,
                caps: input.caps,
                today: input.today,
            })
            .collect();
        RoutingTable {
            offers,
            pools: pools.into(),
            places,
            sources,
            campaigns,
            pool_of: pool_of.into(),
            capped_since_built: AtomicBool::new(false),
        }
    }

    /// Picks an offer for a visitor, or `None` if no offer in rotation accepts them.
    #[inline]
    pub fn pick<R: Rng + ?Sized>(&self, segment: &Segment<'_>, rng: &mut R) -> Option<Pick<'_>> {
        let pool = self.pool(segment)?;
        if !self.capped_since_built.load(Ordering::Relaxed) {
            let member = pool.alias.sample(rng);
            let offer = &self.offers[usize::from(pool.members[member])];
            if offer.take_slot() {
                return Some(Pick { offer, propensity: pool.propensities[member] });
            }
            self.capped_since_built.store(true, Ordering::Relaxed);
        }
        // An offer reached a cap since the table was built (the next refresh rebuilds the table
        // without it): until then, draw among the members still below their caps, in proportion to
        // their shares, and record the share renormalised over them.
        pool.draw_uncapped(&self.offers, rng)
    }

    /// The pool a visitor draws from.
    #[inline]
    fn pool(&self, segment: &Segment<'_>) -> Option<&Pool> {
        let place = *self.places.get(segment.country.index() * DeviceClass::ALL.len() + segment.device.index())?;
        let source = self.sources.class(segment.source);
        let campaign = self.campaigns.class(segment.campaign);
        let slot = (place * self.sources.count + source) * self.campaigns.count + campaign;
        self.pools.get(*self.pool_of.get(slot as usize)? as usize)
    }

    /// The offers a visitor would be sent to, each with its probability (nothing: the fallback).
    pub fn shares(&self, segment: &Segment<'_>) -> Vec<(i64, f64)> {
        self.pool(segment).map_or_else(Vec::new, |pool| {
            pool.members
                .iter()
                .zip(&pool.propensities)
                .map(|(&i, &p)| (self.offers[usize::from(i)].offer_id, p))
                .collect()
        })
    }

    /// The offers in the table, with their shares of traffic.
    pub fn offers(&self) -> &[RoutedOffer] {
        &self.offers
    }

    /// Whether no offer is in rotation.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// How many distinct sets of eligible offers the table holds.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }
}

impl Pool {
    /// A pick among the members below their caps, by their shares; O(members), for the rare click
    /// that meets offers capped since the table was built.
    fn draw_uncapped<'t, R: Rng + ?Sized>(&self, offers: &'t [RoutedOffer], rng: &mut R) -> Option<Pick<'t>> {
        let open = || {
            self.members
                .iter()
                .zip(&self.propensities)
                .map(|(&i, &p)| (&offers[usize::from(i)], p))
                .filter(|(o, _)| !o.is_capped())
        };
        let total: f64 = open().map(|(_, p)| p).sum();
        let unit: f64 = StandardUniform.sample(rng);
        let mut point = unit * total;
        for (offer, share) in open() {
            point -= share;
            if point < 0.0 && offer.take_slot() {
                return Some(Pick { offer, propensity: share / total });
            }
        }
        // Rounding, or a cap reached meanwhile: the first member still below its cap, if any.
        open().find(|(offer, _)| offer.take_slot()).map(|(offer, share)| Pick { offer, propensity: share / total })
    }

    fn new(members: &[usize], probabilities: Vec<f64>) -> Pool {
        // Probabilities that are all zero (or not finite) fall back to equal shares.
        let usable =
            probabilities.iter().all(|p| p.is_finite() && *p >= 0.0) && probabilities.iter().sum::<f64>() > 0.0;
        let propensities = if usable { probabilities } else { vec![1.0 / members.len() as f64; members.len()] };
        let alias = WeightedAliasIndex::new(propensities.clone())
            .unwrap_or_else(|_| WeightedAliasIndex::new(vec![1.0; members.len()]).expect("one member or more"));
        Pool {
            alias,
            members: members.iter().map(|&i| i as u16).collect(),
            propensities: propensities.into_boxed_slice(),
        }
    }
}

/// `p_i = e/K + (1-e) * w_i / sum(w)`; equal shares when the weights sum to zero (or are not finite).
pub fn pick_probabilities(weights: impl ExactSizeIterator<Item = f64> + Clone, exploration: f64) -> Vec<f64> {
    let n_offers = weights.len();
    if n_offers == 0 {
        return Vec::new();
    }
    let uniform = 1.0 / n_offers as f64;
    let total: f64 = weights.clone().map(|w| w.max(0.0)).sum();
    if !(total > 0.0 && total.is_finite()) {
        return vec![uniform; n_offers];
    }
    let exploration = exploration.clamp(0.0, 1.0);
    weights.map(|w| exploration * uniform + (1.0 - exploration) * w.max(0.0) / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::rules::Targeting;
    use crate::routing::segments::SegmentDims;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn input(i: usize, weight: f64, targeting: &str) -> RouteInput {
        RouteInput {
            offer_id: i as i64 + 1,
            weight,
            redirect: RedirectTemplate::parse(&format!("https://o{i}.example/")).unwrap(),
            clicks: Arc::default(),
            rules: OfferRules::compile(&serde_json::from_str::<Targeting>(targeting).unwrap()),
            caps: DailyCaps::default(),
            today: Arc::default(),
        }
    }

    fn inputs(weights: &[f64]) -> Vec<RouteInput> {
        weights.iter().enumerate().map(|(i, &weight)| input(i, weight, "{}")).collect()
    }

    fn ev(inputs: &[RouteInput], exploration: f64) -> impl Fn(Option<usize>, &[usize]) -> Vec<f64> + use<> {
        let weights: Vec<f64> = inputs.iter().map(|i| i.weight).collect();
        move |_, members: &[usize]| pick_probabilities(members.iter().map(|&i| weights[i]), exploration)
    }

    fn table(inputs: Vec<RouteInput>, exploration: f64) -> RoutingTable {
        let probabilities = ev(&inputs, exploration);
        RoutingTable::build(inputs, &Segmentation::default(), probabilities)
    }

    fn anyone() -> Segment<'static> {
        Segment::ANYONE
    }

    fn country(code: &str) -> Country {
        Country::from_code(code).unwrap()
    }

    #[test]
    fn probabilities_mix_exploration_and_weights() {
        let p = pick_probabilities([1.0, 3.0].into_iter(), 0.2);
        assert!((p[0] - (0.1 + 0.8 * 0.25)).abs() < 1e-12);
        assert!((p[1] - (0.1 + 0.8 * 0.75)).abs() < 1e-12);
        assert_eq!(pick_probabilities([0.0, 0.0, 0.0].into_iter(), 0.2), vec![1.0 / 3.0; 3]);
        assert!(pick_probabilities(std::iter::empty(), 0.2).is_empty());
    }

    #[test]
    fn an_empty_table_picks_nothing() {
        let table = table(Vec::new(), 0.2);
        assert!(table.is_empty());
        assert!(table.pick(&anyone(), &mut SmallRng::seed_from_u64(1)).is_none());
    }

    #[test]
    fn propensities_sum_to_one() {
        let table = table(inputs(&[0.1, 1.0, 0.5, 0.0]), 0.2);
        let total: f64 = table.offers().iter().map(|o| o.propensity).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(table.offers()[3].propensity > 0.0, "exploration keeps a zero-weight offer alive");
    }

    #[test]
    fn pick_frequencies_match_probabilities_chi_square() {
        let table = table(inputs(&[1.0, 0.5, 0.1, 2.0, 0.0]), 0.2);
        let mut rng = SmallRng::seed_from_u64(42);
        let n = 200_000;
        let mut counts = [0u64; 5];
        for _ in 0..n {
            let pick = table.pick(&anyone(), &mut rng).unwrap();
            assert_eq!(pick.propensity, pick.offer.propensity, "one pool: the overall shares");
            counts[(pick.offer.offer_id - 1) as usize] += 1;
        }
        let chi_square: f64 = table
            .offers()
            .iter()
            .zip(counts)
            .map(|(offer, observed)| {
                let expected = offer.propensity * n as f64;
                (observed as f64 - expected).powi(2) / expected
            })
            .sum();
        // 4 degrees of freedom: the 99.9th percentile is 18.47.
        assert!(chi_square < 18.47, "chi-square {chi_square}, counts {counts:?}");
    }

    #[test]
    fn each_visitor_gets_only_offers_whose_rules_accept_them() {
        let offers = vec![
            input(0, 1.0, r#"{"countries": ["DE", "AT"]}"#),
            input(1, 1.0, r#"{"countries": ["GB"], "devices": ["mobile"]}"#),
            input(2, 1.0, r#"{"blocked_countries": ["DE"], "sources": ["fb_*", "google"]}"#),
            input(3, 1.0, r#"{"campaigns": ["spring"], "sources": ["fb_ads"]}"#),
        ];
        let rules: Vec<OfferRules> = offers.iter().map(|o| o.rules.clone()).collect();
        let table = table(offers, 0.0);
        let mut rng = SmallRng::seed_from_u64(3);
        let sources = [None, Some("fb_ads"), Some("fb_x"), Some("fb"), Some("google"), Some("other")];
        let campaigns = [None, Some("spring"), Some("autumn")];
        for code in ["DE", "AT", "GB", "FR", "XX"] {
            for device in DeviceClass::ALL {
                for source in sources {
                    for campaign in campaigns {
                        let segment = Segment { country: country(code), device, source, campaign };
                        let eligible: Vec<i64> = (0..4)
                            .filter(|&i| {
                                let r = &rules[i];
                                r.accepts_place(segment.country, device)
                                    && r.accepts_source(source)
                                    && r.accepts_campaign(campaign)
                            })
                            .map(|i| i as i64 + 1)
                            .collect();
                        let mut seen = Vec::new();
                        for _ in 0..200 {
                            match table.pick(&segment, &mut rng) {
                                Some(pick) => seen.push(pick.offer.offer_id),
                                None => break,
                            }
                        }
                        seen.sort_unstable();
                        seen.dedup();
                        assert_eq!(seen, eligible, "{segment:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn probabilities_are_those_of_the_eligible_set() {
        // Weights 3 and 1; only offer 2 takes GB visitors with no source.
        let offers = vec![input(0, 3.0, r#"{"countries": ["DE"]}"#), input(1, 1.0, "{}")];
        let table = table(offers, 0.0);
        let mut rng = SmallRng::seed_from_u64(9);
        let de = Segment { country: country("DE"), ..anyone() };
        let pick = table.pick(&Segment { country: country("GB"), ..anyone() }, &mut rng).unwrap();
        assert_eq!((pick.offer.offer_id, pick.propensity), (2, 1.0));
        let counts = (0..10_000).fold([0u32; 2], |mut counts, _| {
            let pick = table.pick(&de, &mut rng).unwrap();
            counts[(pick.offer.offer_id - 1) as usize] += 1;
            assert_eq!(pick.propensity, [0.75, 0.25][(pick.offer.offer_id - 1) as usize]);
            counts
        });
        assert!((7_200..7_800).contains(&counts[0]), "{counts:?}");
        assert_eq!(table.pool_count(), 2);
    }

    #[test]
    fn an_offer_at_its_click_cap_is_skipped_and_the_cap_is_exact() {
        let mut capped = input(0, 100.0, "{}");
        capped.caps.clicks = Some(10);
        let table = table(vec![capped, input(1, 1.0, "{}")], 0.0);
        let mut rng = SmallRng::seed_from_u64(5);
        let to_capped = (0..1_000).filter(|_| table.pick(&anyone(), &mut rng).unwrap().offer.offer_id == 1).count();
        assert_eq!(to_capped, 10);
        assert_eq!(table.offers()[0].today.clicks.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn when_the_drawn_offers_are_capped_the_rest_share_by_weight_with_renormalised_propensities() {
        // Offer 1 takes 90% and reaches its cap after the build; 2 and 3 (weights 3:1) share the rest.
        let mut capped = input(0, 90.0, "{}");
        capped.caps.clicks = Some(1);
        let table = table(vec![capped, input(1, 7.5, "{}"), input(2, 2.5, "{}")], 0.0);
        let mut rng = SmallRng::seed_from_u64(11);
        while table.pick(&anyone(), &mut rng).unwrap().offer.offer_id != 1 {}
        // The next draws of offer 1 are refused, and the table notices.
        for _ in 0..50 {
            table.pick(&anyone(), &mut rng);
        }
        let mut counts = [0u32; 3];
        for _ in 0..20_000 {
            let pick = table.pick(&anyone(), &mut rng).unwrap();
            let index = (pick.offer.offer_id - 1) as usize;
            counts[index] += 1;
            assert!((pick.propensity - [0.0, 0.75, 0.25][index]).abs() < 1e-12, "{pick:?}");
        }
        assert_eq!(counts[0], 0);
        assert!((14_500..15_500).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn offers_at_a_cap_when_built_are_out_of_rotation() {
        let mut capped = input(0, 1.0, "{}");
        capped.caps.ftds = Some(2);
        capped.today.ftds.store(2, Ordering::Relaxed);
        let only_capped = table(vec![capped.clone()], 0.0);
        assert!(only_capped.is_empty() && only_capped.offers()[0].propensity == 0.0);
        let mut other = input(1, 1.0, "{}");
        other.caps.ftds = Some(1);
        let table = table(vec![capped, other], 0.0);
        assert_eq!(table.offers()[1].propensity, 1.0);
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(table.pick(&anyone(), &mut rng).unwrap().offer.offer_id, 2);
        // Its FTD cap reached after the build: no offer left for anyone.
        table.offers()[1].today.ftds.store(1, Ordering::Relaxed);
        assert!(table.pick(&anyone(), &mut rng).is_none());
    }

    /// A segment's pool of two routes 90/10, any other pool evenly; the calls the table made, in order.
    fn by_segment(
        calls: &std::cell::RefCell<Vec<Option<usize>>>,
    ) -> impl FnMut(Option<usize>, &[usize]) -> Vec<f64> + '_ {
        move |segment, members| {
            calls.borrow_mut().push(segment);
            match (segment, members.len()) {
                (Some(_), 2) => vec![0.9, 0.1],
                (_, n) => vec![1.0 / n as f64; n],
            }
        }
    }

    fn propensity_of_first(table: &RoutingTable, segment: &Segment<'_>) -> f64 {
        let mut rng = SmallRng::seed_from_u64(3);
        (0..200)
            .map(|_| table.pick(segment, &mut rng).unwrap())
            .find(|pick| pick.offer.offer_id == 1)
            .map(|pick| pick.propensity)
            .unwrap()
    }

    #[test]
    fn a_learned_segment_is_routed_on_its_own_probabilities() {
        let de = country("DE");
        let dims = SegmentDims::DEFAULT;
        let segmentation = Segmentation::new(dims, vec![dims.key(de, DeviceClass::Mobile, None)]);
        let calls = std::cell::RefCell::new(Vec::new());
        let table = RoutingTable::build(inputs(&[1.0, 1.0]), &segmentation, by_segment(&calls));
        let visitor = |country, device| Segment { country, device, ..Segment::ANYONE };
        assert_eq!(propensity_of_first(&table, &visitor(de, DeviceClass::Mobile)), 0.9);
        assert_eq!(table.shares(&visitor(de, DeviceClass::Mobile)), [(1, 0.9), (2, 0.1)]);
        assert_eq!(propensity_of_first(&table, &visitor(de, DeviceClass::Desktop)), 0.5, "another device");
        assert_eq!(propensity_of_first(&table, &visitor(country("FR"), DeviceClass::Mobile)), 0.5, "another country");
        // The offer-level shares, then one pool per segment: each asked for once.
        assert_eq!(*calls.borrow(), [None, None, Some(0)]);
        assert_eq!(table.pool_count(), 2);
    }

    #[test]
    fn a_learned_source_is_routed_on_its_own_probabilities_beside_source_rules() {
        let dims = SegmentDims { source: true, ..SegmentDims::NONE };
        let anywhere = |source| dims.key(Country::UNKNOWN, DeviceClass::Desktop, source);
        // Segment 0 is the source "fb-1"; segment 1, clicks without a source.
        let segmentation = Segmentation::new(dims, vec![anywhere(Some("fb-1")), anywhere(None)]);
        // Offer 3 takes only sources starting with "fb": it is eligible for "fb-1" and "fb-2".
        let offers = vec![input(0, 1.0, "{}"), input(1, 1.0, "{}"), input(2, 1.0, r#"{"sources": ["fb*"]}"#)];
        let calls = std::cell::RefCell::new(Vec::new());
        let table = RoutingTable::build(offers, &segmentation, by_segment(&calls));
        let from = |source| Segment { source, ..Segment::ANYONE };
        let third = |table: &RoutingTable, segment: &Segment<'_>| {
            let mut rng = SmallRng::seed_from_u64(5);
            (0..300).any(|_| table.pick(segment, &mut rng).unwrap().offer.offer_id == 3)
        };
        assert_eq!(
            propensity_of_first(&table, &from(Some("fb-1"))),
            1.0 / 3.0,
            "three eligible: not the 2-member rule"
        );
        assert!(third(&table, &from(Some("fb-1"))) && third(&table, &from(Some("fb-2"))));
        assert!(!third(&table, &from(Some("google"))) && !third(&table, &from(None)));
        assert_eq!(propensity_of_first(&table, &from(None)), 0.9, "the empty source's segment");
        assert_eq!(propensity_of_first(&table, &from(Some("google"))), 0.5, "a source without a segment");
        let asked: Vec<Option<usize>> = calls.borrow().clone();
        assert!(asked.contains(&Some(0)) && asked.contains(&Some(1)), "{asked:?}");
        assert!(asked.windows(2).all(|w| w[0] <= w[1]), "calls grouped by segment: {asked:?}");
    }
}
