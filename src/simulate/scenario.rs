//! Scenarios: the offer mixes the simulator runs, in the form a user writes them.
//!
//! A scenario file (`casino-router simulate --scenario-file FILE.json`) is a [`ScenarioSpec`] in
//! JSON; the built-in scenarios ([`builtin`]) are values of the same types, so both go through one
//! validation, [`ScenarioSpec::validate`], into the [`Scenario`] the simulator runs. The spec types
//! are the boundary: serde, unknown fields refused, every default a named constant here. `Scenario`
//! is the model: countries and devices parsed, shares normalised, each offer's targeting compiled
//! into the [`OfferRules`] the routing table uses, and its terms (FTD rate, payout) known for every
//! day.
//!
//! Every error names the field at fault by its path (`offers[0].delay.median_hours`), serde's own
//! errors through `serde_path_to_error`, the validation's in the same form.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

use crate::routing::rules::{Targeting, ValuePattern, value_problem};
use crate::routing::table::MAX_ROUTED_OFFERS;
use crate::routing::{OfferRules, SegmentDims};
use crate::visitor::{Country, DeviceClass};

/// Days simulated when a file does not say.
pub const DEFAULT_DAYS: usize = 30;
/// Clicks a day when a file does not say.
pub const DEFAULT_CLICKS_PER_DAY: usize = 20_000;
/// Median hours from click to FTD postback when an offer does not say: a day, typical of casino
/// platforms.
pub const DEFAULT_DELAY_MEDIAN_HOURS: f64 = 24.0;
/// Spread (sigma of the log) of the delay when an offer does not say.
pub const DEFAULT_DELAY_SIGMA: f64 = 1.0;
/// Longest run: a year (the engine looks back 30 days; longer runs only take longer).
pub const MAX_DAYS: usize = 366;
/// Most clicks a day: beyond this a run takes hours.
pub const MAX_CLICKS_PER_DAY: usize = 1_000_000;
/// Longest median delay: a month, the engine's horizon.
pub const MAX_DELAY_MEDIAN_HOURS: f64 = 720.0;
/// Widest delay spread.
pub const MAX_DELAY_SIGMA: f64 = 4.0;

/// A scenario as written: the JSON of `--scenario-file`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// Short name, for the report and `--scenario`.
    pub name: String,
    /// What it tests, printed above the report.
    #[serde(default)]
    pub description: String,
    /// Virtual days to run.
    #[serde(default = "default_days")]
    pub days: usize,
    /// Clicks a day, spread evenly over its minutes.
    #[serde(default = "default_clicks_per_day")]
    pub clicks_per_day: usize,
    /// Who clicks; absent, one segment (unknown country `XX`, desktop).
    #[serde(default)]
    pub segments: Option<Vec<SegmentSpec>>,
    /// Which traits make the router's learning segments, as `SEGMENT_BY` sets them; absent, its
    /// default (`country,device`).
    #[serde(default)]
    pub segment_by: Option<String>,
    /// The offers.
    pub offers: Vec<OfferSpec>,
}

/// One kind of visitor and its share of the clicks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// ISO 3166-1 alpha-2 code in capitals, `XX` for unknown (the default).
    #[serde(default = "default_country")]
    pub country: String,
    /// `desktop` (the default), `mobile` or `tablet`.
    #[serde(default = "default_device")]
    pub device: String,
    /// The clicks' `source`; absent, none.
    #[serde(default)]
    pub source: Option<String>,
    /// Relative share of the clicks (> 0; the shares are normalised, so they need not sum to 1).
    #[serde(default = "default_share")]
    pub share: f64,
}

/// One offer as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferSpec {
    /// Unique within the scenario.
    pub name: String,
    /// True FTDs per click, in [0, 1], before the country and device multipliers.
    pub ftd_rate: f64,
    /// Payout per FTD (>= 0).
    pub payout: f64,
    /// How long its platform takes to report an FTD.
    #[serde(default)]
    pub delay: DelaySpec,
    /// Countries it accepts (capitals); absent, every country.
    #[serde(default)]
    pub countries: Option<Vec<String>>,
    /// Countries it refuses, even if `countries` lists them.
    #[serde(default)]
    pub blocked_countries: Option<Vec<String>>,
    /// Device classes it accepts; absent, every one.
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// Sources it accepts: exact values, or prefixes ending in `*`; absent, every click, with a
    /// source or without.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Multiplier of the FTD rate per country (absent countries: 1).
    #[serde(default)]
    pub rate_by_country: BTreeMap<String, f64>,
    /// Multiplier of the FTD rate per device (absent devices: 1).
    #[serde(default)]
    pub rate_by_device: BTreeMap<String, f64>,
    /// Multiplier of the FTD rate per source (absent sources, and clicks without one: 1).
    #[serde(default)]
    pub rate_by_source: BTreeMap<String, f64>,
    /// Day it joins the rotation (0: from the start).
    #[serde(default)]
    pub from_day: usize,
    /// New terms from a given day on, in day order.
    #[serde(default)]
    pub changes: Vec<ChangeSpec>,
}

/// Log-normal delay from click to FTD postback.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelaySpec {
    /// Median, in hours (> 0).
    pub median_hours: f64,
    /// Sigma of the log (>= 0).
    pub sigma: f64,
}

impl Default for DelaySpec {
    fn default() -> DelaySpec {
        DelaySpec { median_hours: DEFAULT_DELAY_MEDIAN_HOURS, sigma: DEFAULT_DELAY_SIGMA }
    }
}

/// New terms for an offer from the start of `day` on; what it leaves out stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    /// The day the change takes effect (after the offer's `from_day`, before the run's end).
    pub day: usize,
    /// The new FTD rate, before multipliers.
    #[serde(default)]
    pub ftd_rate: Option<f64>,
    /// The new payout per FTD.
    #[serde(default)]
    pub payout: Option<f64>,
}

fn default_days() -> usize {
    DEFAULT_DAYS
}

fn default_clicks_per_day() -> usize {
    DEFAULT_CLICKS_PER_DAY
}

fn default_country() -> String {
    Country::UNKNOWN.as_str().to_owned()
}

fn default_device() -> String {
    DeviceClass::Desktop.as_str().to_owned()
}

fn default_share() -> f64 {
    1.0
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("could not be read: {0}")]
    Read(std::io::Error),
    /// Not JSON at all.
    #[error("not a JSON scenario: {0}")]
    Syntax(serde_json::Error),
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("{field}: {problem}")]
    Field {
        /// Its path, as in `offers[0].delay.median_hours`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ScenarioError {
    fn field(field: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
        ScenarioError::Field { field: field.into(), problem: problem.into() }
    }
}

/// A validated scenario: what the simulator runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it tests.
    pub description: String,
    /// Virtual days.
    pub days: usize,
    /// Clicks a day.
    pub clicks_per_day: usize,
    /// Who clicks, shares summing to 1.
    pub segments: Vec<Segment>,
    /// Which traits make the router's learning segments.
    pub segment_by: SegmentDims,
    /// The offers, in the file's order.
    pub offers: Vec<Offer>,
    /// The first day anything changes (new terms, an offer joining), for the "after the change"
    /// figures; `None` when nothing does.
    pub change_day: Option<usize>,
}

/// One kind of visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Where they are.
    pub country: Country,
    /// What they use.
    pub device: DeviceClass,
    /// Where their clicks come from.
    pub source: Option<String>,
    /// Their share of the clicks.
    pub share: f64,
}

/// One offer, ready to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Its name.
    pub name: String,
    /// Its delay's median, in hours.
    pub delay_median_hours: f64,
    /// Its delay's sigma.
    pub delay_sigma: f64,
    /// Its targeting, as the routing table matches it.
    pub rules: OfferRules,
    /// First day in rotation.
    pub from_day: usize,
    /// Per segment: whether the offer accepts it.
    accepts: Vec<bool>,
    /// Per segment: the FTD rate's multiplier there (country times device).
    multiplier: Vec<f64>,
    /// Per day: the FTD rate (before multipliers) and the payout in force.
    terms: Vec<(f64, f64)>,
}

impl Offer {
    /// Whether the offer is in rotation on `day`.
    pub fn active_on(&self, day: usize) -> bool {
        day >= self.from_day
    }

    /// Whether the offer accepts visitors of `segment`.
    pub fn accepts(&self, segment: usize) -> bool {
        self.accepts[segment]
    }

    /// The true FTD rate in `segment` on `day`, at most 1.
    pub fn ftd_rate(&self, segment: usize, day: usize) -> f64 {
        (self.terms[day].0 * self.multiplier[segment]).min(1.0)
    }

    /// The payout per FTD of a click on `day`.
    pub fn payout(&self, day: usize) -> f64 {
        self.terms[day].1
    }

    /// The true earnings per click in `segment` on `day`.
    pub fn epc(&self, segment: usize, day: usize) -> f64 {
        self.ftd_rate(segment, day) * self.payout(day)
    }
}

impl ScenarioSpec {
    /// Parses and validates a scenario file's text.
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let spec: ScenarioSpec = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
            .map_err(|e| {
                let path = e.path().to_string();
                let error = e.into_inner();
                if error.classify() != serde_json::error::Category::Data {
                    return ScenarioError::Syntax(error);
                }
                // serde's message ends with the place in the text: the path says it better.
                let message = error.to_string();
                let problem = message.split(" at line ").next().unwrap_or(&message).to_owned();
                ScenarioError::field(if path == "." { "scenario".to_owned() } else { path }, problem)
            })?;
        spec.validate()
    }

    /// Checks every field and builds the model; the first error found, by its field's path.
    pub fn validate(&self) -> Result<Scenario, ScenarioError> {
        if self.name.trim().is_empty() || self.name.contains(['|', '\n', '\r']) {
            return Err(ScenarioError::field("name", "must be non-empty, on one line, without `|`"));
        }
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(ScenarioError::field("days", format!("must be 1 to {MAX_DAYS}, not {}", self.days)));
        }
        if !(1..=MAX_CLICKS_PER_DAY).contains(&self.clicks_per_day) {
            return Err(ScenarioError::field(
                "clicks_per_day",
                format!("must be 1 to {MAX_CLICKS_PER_DAY}, not {}", self.clicks_per_day),
            ));
        }
        let segments = self.segments()?;
        let segment_by = match &self.segment_by {
            Some(names) => names.parse().map_err(|problem| ScenarioError::field("segment_by", problem))?,
            None => SegmentDims::DEFAULT,
        };
        if self.offers.is_empty() || self.offers.len() > MAX_ROUTED_OFFERS {
            return Err(ScenarioError::field("offers", format!("must hold 1 to {MAX_ROUTED_OFFERS} offers")));
        }
        let offers = self
            .offers
            .iter()
            .enumerate()
            .map(|(i, offer)| offer.validate(&format!("offers[{i}]"), self.days, &segments))
            .collect::<Result<Vec<Offer>, _>>()?;
        for (i, offer) in self.offers.iter().enumerate() {
            if self.offers[..i].iter().any(|earlier| earlier.name == offer.name) {
                return Err(ScenarioError::field(format!("offers[{i}].name"), format!("{:?} is taken", offer.name)));
            }
        }
        if let Some(s) = (0..segments.len()).find(|&s| !offers.iter().any(|offer| offer.accepts(s))) {
            let segment = &segments[s];
            return Err(ScenarioError::field(
                format!("segments[{s}]"),
                format!("no offer accepts {segment} (see the offers' countries, devices and sources)"),
            ));
        }
        let change_day = self
            .offers
            .iter()
            .flat_map(|offer| std::iter::once(offer.from_day).chain(offer.changes.iter().map(|change| change.day)))
            .filter(|&day| day > 0)
            .min();
        Ok(Scenario {
            name: self.name.clone(),
            description: self.description.clone(),
            days: self.days,
            clicks_per_day: self.clicks_per_day,
            segments,
            segment_by,
            offers,
            change_day,
        })
    }

    fn segments(&self) -> Result<Vec<Segment>, ScenarioError> {
        let Some(specs) = &self.segments else {
            return Ok(vec![Segment {
                country: Country::UNKNOWN,
                device: DeviceClass::Desktop,
                source: None,
                share: 1.0,
            }]);
        };
        if specs.is_empty() {
            return Err(ScenarioError::field("segments", "must hold a segment (or be left out for one)"));
        }
        let mut segments = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let field = |name: &str| format!("segments[{i}].{name}");
            let country = country(&spec.country)
                .ok_or_else(|| ScenarioError::field(field("country"), bad_country(&spec.country)))?;
            let device =
                device(&spec.device).ok_or_else(|| ScenarioError::field(field("device"), bad_device(&spec.device)))?;
            if let Some(problem) = spec.source.as_deref().and_then(value_problem) {
                return Err(ScenarioError::field(field("source"), problem));
            }
            if !(spec.share.is_finite() && spec.share > 0.0) {
                return Err(ScenarioError::field(field("share"), format!("must be above 0, not {}", spec.share)));
            }
            let segment = Segment { country, device, source: spec.source.clone(), share: spec.share };
            if let Some(j) = segments.iter().position(|s: &Segment| s.is_like(&segment)) {
                return Err(ScenarioError::field(
                    format!("segments[{i}]"),
                    format!("the same country, device and source as segments[{j}]"),
                ));
            }
            segments.push(segment);
        }
        let total: f64 = segments.iter().map(|s| s.share).sum();
        segments.iter_mut().for_each(|s| s.share /= total);
        Ok(segments)
    }
}

impl Segment {
    /// Whether `other` is the same kind of visitor (whatever its share).
    fn is_like(&self, other: &Segment) -> bool {
        (self.country, self.device, &self.source) == (other.country, other.device, &other.source)
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.country, self.device.as_str())?;
        match &self.source {
            Some(source) => write!(f, " from {source:?}"),
            None => Ok(()),
        }
    }
}

impl OfferSpec {
    fn validate(&self, at: &str, days: usize, segments: &[Segment]) -> Result<Offer, ScenarioError> {
        let field = |name: &str| format!("{at}.{name}");
        if self.name.trim().is_empty() {
            return Err(ScenarioError::field(field("name"), "must be non-empty"));
        }
        check_rate(&field("ftd_rate"), self.ftd_rate)?;
        check_payout(&field("payout"), self.payout)?;
        if !(self.delay.median_hours > 0.0 && self.delay.median_hours <= MAX_DELAY_MEDIAN_HOURS) {
            return Err(ScenarioError::field(
                field("delay.median_hours"),
                format!("must be above 0 and at most {MAX_DELAY_MEDIAN_HOURS}, not {}", self.delay.median_hours),
            ));
        }
        if !(0.0..=MAX_DELAY_SIGMA).contains(&self.delay.sigma) {
            return Err(ScenarioError::field(
                field("delay.sigma"),
                format!("must be 0 to {MAX_DELAY_SIGMA}, not {}", self.delay.sigma),
            ));
        }
        let not_a_country = |code: &str| country(code).is_none().then(|| bad_country(code));
        check_list(at, "countries", &self.countries, "a country", not_a_country)?;
        // As in the admin API, an empty block list blocks nothing.
        let blocked = self.blocked_countries.clone().filter(|list| !list.is_empty());
        check_list(at, "blocked_countries", &blocked, "a country", not_a_country)?;
        let not_a_device = |name: &str| device(name).is_none().then(|| bad_device(name));
        check_list(at, "devices", &self.devices, "a device class", not_a_device)?;
        check_list(at, "sources", &self.sources, "a source", ValuePattern::problem)?;
        let rules = OfferRules::compile(&Targeting {
            countries: self.countries.clone(),
            blocked_countries: blocked,
            devices: self.devices.clone(),
            sources: self.sources.clone(),
            campaigns: None,
        });
        for (code, &factor) in &self.rate_by_country {
            let name = format!("{at}.rate_by_country.{code}");
            if country(code).is_none() {
                return Err(ScenarioError::field(name, bad_country(code)));
            }
            check_factor(&name, factor)?;
        }
        for (name, &factor) in &self.rate_by_device {
            let path = format!("{at}.rate_by_device.{name}");
            if device(name).is_none() {
                return Err(ScenarioError::field(path, bad_device(name)));
            }
            check_factor(&path, factor)?;
        }
        for (source, &factor) in &self.rate_by_source {
            check_factor(&format!("{at}.rate_by_source.{source}"), factor)?;
        }
        if self.from_day >= days {
            return Err(ScenarioError::field(field("from_day"), format!("must be before the last day ({days} days)")));
        }
        let mut terms = Vec::with_capacity(days);
        let mut current = (self.ftd_rate, self.payout);
        let mut changes = self.changes.iter().enumerate().peekable();
        for day in 0..days {
            while let Some((i, change)) = changes.next_if(|(_, change)| change.day <= day) {
                let name = |name: &str| format!("{at}.changes[{i}].{name}");
                if change.day <= self.from_day || (i > 0 && change.day <= self.changes[i - 1].day) {
                    return Err(ScenarioError::field(
                        name("day"),
                        "must be after the offer's from_day and the change before it",
                    ));
                }
                if change.ftd_rate.is_none() && change.payout.is_none() {
                    return Err(ScenarioError::field(format!("{at}.changes[{i}]"), "must set ftd_rate or payout"));
                }
                if let Some(rate) = change.ftd_rate {
                    check_rate(&name("ftd_rate"), rate)?;
                    current.0 = rate;
                }
                if let Some(payout) = change.payout {
                    check_payout(&name("payout"), payout)?;
                    current.1 = payout;
                }
            }
            terms.push(current);
        }
        if let Some((i, _)) = changes.next() {
            return Err(ScenarioError::field(format!("{at}.changes[{i}].day"), format!("must be before day {days}")));
        }
        let factor = |map: &BTreeMap<String, f64>, key: &str| map.get(key).copied().unwrap_or(1.0);
        Ok(Offer {
            name: self.name.clone(),
            delay_median_hours: self.delay.median_hours,
            delay_sigma: self.delay.sigma,
            accepts: segments
                .iter()
                .map(|s| rules.accepts_place(s.country, s.device) && rules.accepts_source(s.source.as_deref()))
                .collect(),
            multiplier: segments
                .iter()
                .map(|s| {
                    factor(&self.rate_by_country, s.country.as_str())
                        * factor(&self.rate_by_device, s.device.as_str())
                        * s.source.as_deref().map_or(1.0, |source| factor(&self.rate_by_source, source))
                })
                .collect(),
            rules,
            from_day: self.from_day,
            terms,
        })
    }
}

/// A country code as the admin API takes it: in capitals.
fn country(code: &str) -> Option<Country> {
    Country::from_code(code).filter(|country| country.as_str() == code)
}

fn device(name: &str) -> Option<DeviceClass> {
    DeviceClass::parse(name)
}

fn bad_country(code: &str) -> String {
    format!("{code:?} is not an ISO 3166-1 alpha-2 country code in capitals (or XX for unknown)")
}

fn bad_device(name: &str) -> String {
    format!("{name:?} is not one of desktop, mobile, tablet")
}

/// A targeting list of an offer (`at`): absent, or non-empty with no entry that has a `problem`.
fn check_list(
    at: &str,
    name: &str,
    list: &Option<Vec<String>>,
    what: &str,
    problem: impl Fn(&str) -> Option<String>,
) -> Result<(), ScenarioError> {
    let Some(list) = list else { return Ok(()) };
    if list.is_empty() {
        return Err(ScenarioError::field(format!("{at}.{name}"), format!("must list {what} (or be left out)")));
    }
    match list.iter().enumerate().find_map(|(i, entry)| problem(entry).map(|problem| (i, problem))) {
        Some((i, problem)) => Err(ScenarioError::field(format!("{at}.{name}[{i}]"), problem)),
        None => Ok(()),
    }
}

fn check_rate(field: &str, rate: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&rate) {
        return Ok(());
    }
    Err(ScenarioError::field(field, format!("must be 0 to 1, not {rate}")))
}

fn check_payout(field: &str, payout: f64) -> Result<(), ScenarioError> {
    if payout.is_finite() && payout >= 0.0 {
        return Ok(());
    }
    Err(ScenarioError::field(field, format!("must be 0 or more, not {payout}")))
}

fn check_factor(field: &str, factor: f64) -> Result<(), ScenarioError> {
    if factor.is_finite() && factor >= 0.0 {
        return Ok(());
    }
    Err(ScenarioError::field(field, format!("must be 0 or more, not {factor}")))
}

/// Reads, parses and validates a scenario file (errors do not repeat its path).
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(ScenarioError::Read)?;
    ScenarioSpec::from_json(&text)
}

/// The built-in scenarios, in report order: eight with one segment, then four whose best offer
/// depends on the visitor.
pub fn builtin() -> Vec<ScenarioSpec> {
    let five = || {
        vec![
            offer("A", 0.030, 150.0, 24.0), // EPC 4.50
            offer("B", 0.045, 80.0, 12.0),  // 3.60
            offer("C", 0.010, 300.0, 48.0), // 3.00
            offer("D", 0.020, 100.0, 24.0), // 2.00
            offer("E", 0.006, 200.0, 36.0), // 1.20
        ]
    };
    vec![
        scenario(
            "stationary-3",
            "3 offers, values fixed all month",
            vec![
                offer("A", 0.025, 120.0, 24.0), // EPC 3.00
                offer("B", 0.040, 110.0, 18.0), // 4.40
                offer("C", 0.008, 250.0, 48.0), // 2.00
            ],
        ),
        scenario("stationary-10", "10 offers drawn from FTD rates 0.5-6% and CPAs $50-400", generated_offers(10, 10)),
        scenario("stationary-30", "30 offers drawn from FTD rates 0.5-6% and CPAs $50-400", generated_offers(30, 30)),
        scenario("best-halves", "5 offers; the best one's FTD rate halves on day 15", {
            let mut offers = five();
            offers[0].changes = vec![ChangeSpec { day: 15, ftd_rate: Some(0.015), payout: None }];
            offers
        }),
        scenario("new-offer", "5 offers; a better one appears on day 10", {
            let mut offers = five();
            offers.push(OfferSpec { from_day: 10, ..offer("F", 0.040, 140.0, 24.0) }); // 5.60
            offers
        }),
        scenario("improver", "5 offers; on day 10 the fourth one's FTD rate triples, making it the best", {
            let mut offers = five();
            offers[3].changes = vec![ChangeSpec { day: 10, ftd_rate: Some(0.060), payout: None }]; // 6.00
            offers
        }),
        scenario(
            "slow-postbacks",
            "the best offer reports FTDs after 4 days (median), the others within hours",
            vec![
                offer("A", 0.030, 150.0, 96.0), // EPC 4.50, slow
                offer("B", 0.035, 110.0, 2.0),  // 3.85, fast
                offer("C", 0.020, 150.0, 6.0),  // 3.00, fast
            ],
        ),
        scenario(
            "close-values",
            "4 offers within 10% of each other, and one poor",
            vec![
                offer("A", 0.030, 100.0, 24.0),  // 3.00
                offer("B", 0.029, 100.0, 24.0),  // 2.90
                offer("C", 0.0275, 100.0, 24.0), // 2.75
                offer("D", 0.035, 80.0, 24.0),   // 2.80
                offer("E", 0.010, 100.0, 24.0),  // 1.00
            ],
        ),
        geo_split(),
        geo_restricted(),
        long_tail(),
        device_split(),
        geo_device(),
    ]
}

/// 4 countries, 4 offers: each offer is best in one country and worst in another (EPCs 2 to 5),
/// while over all the traffic they are within 6% of each other.
fn geo_split() -> ScenarioSpec {
    let by_country = |factors: [f64; 4]| -> BTreeMap<String, f64> {
        ["DE", "GB", "CA", "BR"].iter().zip(factors).map(|(code, f)| (code.to_string(), f)).collect()
    };
    let offers = vec![
        // Base EPC 4.00 each; per country DE, GB, CA, BR.
        OfferSpec { rate_by_country: by_country([1.25, 0.5, 0.75, 1.0]), ..offer("A", 0.040, 100.0, 12.0) },
        OfferSpec { rate_by_country: by_country([0.5, 1.25, 1.0, 0.75]), ..offer("B", 0.025, 160.0, 24.0) },
        OfferSpec { rate_by_country: by_country([0.75, 1.0, 1.25, 0.5]), ..offer("C", 0.050, 80.0, 6.0) },
        OfferSpec { rate_by_country: by_country([1.0, 0.75, 0.5, 1.25]), ..offer("D", 0.020, 200.0, 36.0) },
    ];
    ScenarioSpec {
        segments: Some(vec![
            segment("DE", "desktop", 0.4),
            segment("GB", "desktop", 0.3),
            segment("CA", "desktop", 0.2),
            segment("BR", "desktop", 0.1),
        ]),
        ..scenario("geo-split", "4 countries; the best offer in one is the worst in another", offers)
    }
}

/// 4 countries, 5 offers of which 4 take only some countries: each country has its own three
/// competitors and its own best.
fn geo_restricted() -> ScenarioSpec {
    let only = |codes: &[&str], spec: OfferSpec| OfferSpec {
        countries: Some(codes.iter().map(|c| c.to_string()).collect()),
        ..spec
    };
    let offers = vec![
        only(&["DE", "GB"], offer("A", 0.030, 150.0, 24.0)),       // EPC 4.50
        only(&["GB", "SE"], offer("B", 0.045, 80.0, 12.0)),        // 3.60
        only(&["DE", "SE", "FI"], offer("C", 0.010, 300.0, 48.0)), // 3.00
        offer("D", 0.020, 100.0, 24.0),                            // 2.00, everywhere
        only(&["FI"], offer("E", 0.040, 140.0, 24.0)),             // 5.60
    ];
    ScenarioSpec {
        segments: Some(vec![
            segment("DE", "desktop", 0.35),
            segment("GB", "desktop", 0.35),
            segment("SE", "desktop", 0.2),
            segment("FI", "desktop", 0.1),
        ]),
        ..scenario(
            "geo-restricted",
            "4 countries, offers licensed in some of them: DE {A,C,D}, GB {A,B,D}, SE {B,C,D}, FI {C,D,E}",
            offers,
        )
    }
}

/// The long tail's countries, largest first.
const LONG_TAIL_COUNTRIES: [&str; 60] = [
    "DE", "GB", "CA", "AU", "FR", "ES", "IT", "NL", "SE", "NO", "FI", "DK", "PL", "CZ", "AT", "CH", "BE", "IE", "PT",
    "BR", "MX", "AR", "CL", "CO", "PE", "IN", "JP", "KR", "NZ", "ZA", "NG", "KE", "EG", "TR", "GR", "HU", "RO", "BG",
    "HR", "SI", "SK", "LT", "LV", "EE", "IS", "LU", "MT", "CY", "UA", "RS", "BA", "MK", "AL", "ME", "MD", "GE", "AM",
    "AZ", "KZ", "UY",
];

/// 60 countries with Zipf traffic (share 1/rank: a fifth in the largest, 0.36% in the smallest,
/// 70 clicks a day). The five offers rank as everywhere else in all but the two largest countries
/// (each country's rates within 10% of the base, drawn with a fixed seed, never enough to reorder
/// A and B); in DE B's rate is 1.5 times its base (best there), in GB C's is 1.7 times.
fn long_tail() -> ScenarioSpec {
    let mut rng = SmallRng::seed_from_u64(60);
    let mut offers = vec![
        offer("A", 0.030, 150.0, 24.0), // EPC 4.50
        offer("B", 0.045, 80.0, 12.0),  // 3.60, 5.40 in DE
        offer("C", 0.010, 300.0, 48.0), // 3.00, 5.10 in GB
        offer("D", 0.020, 100.0, 24.0), // 2.00
        offer("E", 0.006, 200.0, 36.0), // 1.20
    ];
    for offer in &mut offers {
        offer.rate_by_country =
            LONG_TAIL_COUNTRIES.iter().map(|code| (code.to_string(), rng.random_range(0.9..1.1))).collect();
    }
    offers[1].rate_by_country.insert("DE".into(), 1.5);
    offers[2].rate_by_country.insert("GB".into(), 1.7);
    let segments = LONG_TAIL_COUNTRIES
        .iter()
        .enumerate()
        .map(|(rank, code)| segment(code, "desktop", 1.0 / (rank + 1) as f64))
        .collect();
    ScenarioSpec {
        segments: Some(segments),
        ..scenario(
            "long-tail",
            "60 countries with Zipf traffic; other bests in the two largest, the global ranking in the rest",
            offers,
        )
    }
}

/// One country on three devices: A converts twice as well on mobile, B on desktop, and C is best
/// on tablets.
fn device_split() -> ScenarioSpec {
    let by_device = |device: &str| BTreeMap::from([(device.to_string(), 2.0)]);
    let offers = vec![
        OfferSpec { rate_by_device: by_device("mobile"), ..offer("A", 0.020, 150.0, 24.0) }, // 6.00 mobile, 3.00
        OfferSpec { rate_by_device: by_device("desktop"), ..offer("B", 0.020, 150.0, 12.0) }, // 6.00 desktop, 3.00
        offer("C", 0.045, 80.0, 6.0),                                                        // 3.60
        offer("D", 0.010, 200.0, 36.0),                                                      // 2.00
    ];
    ScenarioSpec {
        segments: Some(vec![
            segment("GB", "mobile", 0.55),
            segment("GB", "desktop", 0.35),
            segment("GB", "tablet", 0.1),
        ]),
        ..scenario("device-split", "one offer converts twice as well on mobile, another on desktop", offers)
    }
}

/// 12 countries with Zipf traffic, each on mobile (60%) and desktop (40%): 24 segments. Each offer
/// has a device effect that holds in every country (A converts 0.7 times as well on mobile, B on
/// desktop, C 1.3 times as well on mobile, D 1.4 times on desktop, F 1.2 times on mobile) and its
/// own factor in each country, 0.8 to 1.25, drawn with a fixed seed: most segments have their own
/// best, and a small country's mobile visitors must learn from its desktop ones and from other
/// countries' mobile ones.
fn geo_device() -> ScenarioSpec {
    let mut rng = SmallRng::seed_from_u64(24);
    let countries = &LONG_TAIL_COUNTRIES[..12];
    let with = |spec: OfferSpec, device: &str, factor: f64| OfferSpec {
        rate_by_device: BTreeMap::from([(device.to_string(), factor)]),
        ..spec
    };
    let mut offers = vec![
        with(offer("A", 0.030, 150.0, 24.0), "mobile", 0.7), // EPC 4.50, 3.15 on mobile
        with(offer("B", 0.045, 90.0, 12.0), "desktop", 0.7), // 4.05, 2.84 on desktop
        with(offer("C", 0.015, 300.0, 36.0), "mobile", 1.3), // 4.50, 5.85 on mobile
        with(offer("D", 0.025, 160.0, 18.0), "desktop", 1.4), // 4.00, 5.60 on desktop
        offer("E", 0.012, 250.0, 48.0),                      // 3.00
        with(offer("F", 0.020, 120.0, 24.0), "mobile", 1.2), // 2.40, 2.88 on mobile
    ];
    for offer in &mut offers {
        offer.rate_by_country = countries.iter().map(|code| (code.to_string(), rng.random_range(0.8..1.25))).collect();
    }
    let segments = countries
        .iter()
        .enumerate()
        .flat_map(|(rank, code)| {
            let share = 1.0 / (rank + 1) as f64;
            [segment(code, "mobile", 0.6 * share), segment(code, "desktop", 0.4 * share)]
        })
        .collect();
    ScenarioSpec {
        segments: Some(segments),
        ..scenario(
            "geo-device",
            "12 countries x mobile and desktop; device effects common to all countries, a factor per country",
            offers,
        )
    }
}

fn scenario(name: &str, description: &str, offers: Vec<OfferSpec>) -> ScenarioSpec {
    ScenarioSpec {
        name: name.into(),
        description: description.into(),
        days: DEFAULT_DAYS,
        clicks_per_day: DEFAULT_CLICKS_PER_DAY,
        segments: None,
        segment_by: None,
        offers,
    }
}

fn segment(country: &str, device: &str, share: f64) -> SegmentSpec {
    SegmentSpec { country: country.into(), device: device.into(), source: None, share }
}

fn offer(name: &str, ftd_rate: f64, payout: f64, delay_median_hours: f64) -> OfferSpec {
    OfferSpec {
        name: name.into(),
        ftd_rate,
        payout,
        delay: DelaySpec { median_hours: delay_median_hours, ..DelaySpec::default() },
        countries: None,
        blocked_countries: None,
        devices: None,
        sources: None,
        rate_by_country: BTreeMap::new(),
        rate_by_device: BTreeMap::new(),
        rate_by_source: BTreeMap::new(),
        from_day: 0,
        changes: Vec::new(),
    }
}

/// Offers with FTD rates of 0.5-6%, CPAs of $50-400 and median delays of 4-72 hours, drawn with a
/// fixed seed.
fn generated_offers(count: usize, seed: u64) -> Vec<OfferSpec> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (1..=count)
        .map(|i| {
            let (ftd_rate, payout) = (rng.random_range(0.005..0.06), rng.random_range(50.0..400.0));
            offer(&format!("o{i}"), ftd_rate, payout, rng.random_range(4.0..72.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field a refused scenario names, and the whole message.
    fn refused(json: &str) -> (String, String) {
        match ScenarioSpec::from_json(json) {
            Err(error @ ScenarioError::Field { .. }) => {
                let ScenarioError::Field { field, .. } = &error else { unreachable!() };
                (field.clone(), error.to_string())
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    /// A valid scenario with `offer` as its only offer's fields and `extra` at the top level.
    fn with(extra: &str, offer: &str) -> String {
        format!(r#"{{"name": "t", {extra} "offers": [{{"name": "A", "ftd_rate": 0.03, "payout": 100 {offer}}}]}}"#)
    }

    #[test]
    fn the_example_file_parses_with_its_segments_offers_and_changes() {
        let scenario = ScenarioSpec::from_json(include_str!("../../examples/my-mix.json")).unwrap();
        assert_eq!((scenario.name.as_str(), scenario.days, scenario.clicks_per_day), ("my-mix", 30, 20_000));
        assert_eq!(scenario.segments.len(), 2);
        assert!((scenario.segments[0].share - 0.3).abs() < 1e-12);
        assert_eq!(scenario.offers.len(), 3);
        let a = &scenario.offers[0];
        // DE mobile: 0.03 x 1.5 x 0.8; GB is not A's.
        assert!((a.ftd_rate(0, 0) - 0.036).abs() < 1e-12 && (a.ftd_rate(0, 15) - 0.018).abs() < 1e-12);
        assert!(a.accepts(0) && !a.accepts(1));
        let c = &scenario.offers[2];
        assert!(!c.active_on(4) && c.active_on(5));
        assert_eq!((c.payout(19), c.payout(20)), (90.0, 70.0));
        assert_eq!(scenario.change_day, Some(5), "C joining is the first change");
    }

    #[test]
    fn the_source_example_file_parses_with_its_learning_segments_and_licences() {
        let scenario = ScenarioSpec::from_json(include_str!("../../examples/by-source.json")).unwrap();
        assert_eq!(scenario.segment_by, SegmentDims { country: true, device: true, source: true });
        assert_eq!((scenario.segments.len(), scenario.offers.len()), (7, 5));
        assert_eq!(scenario.segments[4].source.as_deref(), Some("tiktok"));
        let accepted = |offer: usize| (0..7).map(|s| scenario.offers[offer].accepts(s)).collect::<Vec<_>>();
        // C: GB and BR; D: fb and tiktok; E: desktop.
        assert_eq!(accepted(2), [false, false, false, true, true, true, true]);
        assert_eq!(accepted(3), [true, false, false, true, true, false, true]);
        assert_eq!(accepted(4), [false, false, true, false, false, true, false]);
        // B on German mobile google: 0.04 x 1.4 (google) x 0.9 (mobile).
        assert!((scenario.offers[1].ftd_rate(1, 0) - 0.0504).abs() < 1e-12);
    }

    #[test]
    fn only_name_ftd_rate_and_payout_are_needed() {
        let scenario = ScenarioSpec::from_json(&with("", "")).unwrap();
        assert_eq!((scenario.days, scenario.clicks_per_day), (DEFAULT_DAYS, DEFAULT_CLICKS_PER_DAY));
        assert_eq!(
            scenario.segments,
            [Segment { country: Country::UNKNOWN, device: DeviceClass::Desktop, source: None, share: 1.0 }],
            "one segment"
        );
        let offer = &scenario.offers[0];
        assert_eq!((offer.delay_median_hours, offer.delay_sigma), (DEFAULT_DELAY_MEDIAN_HOURS, DEFAULT_DELAY_SIGMA));
        assert_eq!((offer.from_day, offer.rules.clone(), offer.epc(0, 29)), (0, OfferRules::default(), 3.0));
        assert_eq!(scenario.change_day, None);
    }

    #[test]
    fn shares_are_normalised_and_rates_capped_at_one() {
        let json = with(
            r#""segments": [{"country": "DE", "share": 3}, {"country": "DE", "device": "mobile"}],"#,
            r#", "ftd_rate": 0.5, "rate_by_country": {"DE": 3}"#,
        )
        .replace(r#""ftd_rate": 0.03, "payout": 100 ,"#, r#""payout": 100,"#);
        let scenario = ScenarioSpec::from_json(&json).unwrap();
        let shares: Vec<f64> = scenario.segments.iter().map(|s| s.share).collect();
        assert_eq!(shares, [0.75, 0.25]);
        assert_eq!(scenario.offers[0].ftd_rate(0, 0), 1.0);
    }

    #[test]
    fn unknown_fields_are_refused_by_their_path() {
        assert_eq!(refused(&with(r#""seeds": 3,"#, "")).0, "seeds");
        assert_eq!(refused(&with("", r#", "delay": {"medain_hours": 3}"#)).0, "offers[0].delay.medain_hours");
        let (field, message) = refused(&with("", r#", "changes": [{"day": 3, "rate": 0.1}]"#));
        assert_eq!(field, "offers[0].changes[0].rate");
        assert!(message.contains("unknown field `rate`"), "{message}");
    }

    #[test]
    fn a_missing_required_field_is_named_with_where_it_is_missing() {
        let (field, message) = refused(r#"{"name": "t", "offers": [{"name": "A", "ftd_rate": 0.03}]}"#);
        assert_eq!(field, "offers[0]");
        assert_eq!(message, "offers[0]: missing field `payout`");
        assert_eq!(refused(r#"{"name": "t"}"#).1, "scenario: missing field `offers`");
        assert_eq!(refused(&with(r#""days": -1,"#, "")).0, "days");
        let wrong_type = r#"{"name": "t", "offers": [{"name": "A", "ftd_rate": 0.03, "payout": "100"}]}"#;
        assert_eq!(refused(wrong_type).0, "offers[0].payout");
    }

    #[test]
    fn bad_countries_and_devices_are_refused_by_their_path() {
        for (extra, offer, field) in [
            (r#""segments": [{"country": "de"}],"#, "", "segments[0].country"),
            (r#""segments": [{"country": "UK"}],"#, "", "segments[0].country"),
            (r#""segments": [{"device": "phone"}],"#, "", "segments[0].device"),
            ("", r#", "countries": ["DE", "XY"]"#, "offers[0].countries[1]"),
            ("", r#", "countries": []"#, "offers[0].countries"),
            ("", r#", "blocked_countries": ["DE", "EU"]"#, "offers[0].blocked_countries[1]"),
            ("", r#", "devices": ["mobile", "phone"]"#, "offers[0].devices[1]"),
            ("", r#", "devices": []"#, "offers[0].devices"),
            ("", r#", "sources": ["fb", "a*b"]"#, "offers[0].sources[1]"),
            ("", r#", "sources": []"#, "offers[0].sources"),
            ("", r#", "rate_by_source": {"fb": -1}"#, "offers[0].rate_by_source.fb"),
            (r#""segments": [{"source": ""}],"#, "", "segments[0].source"),
            (r#""segments": [{"source": "fb"}, {"source": "fb"}],"#, "", "segments[1]"),
            (r#""segment_by": "country,city","#, "", "segment_by"),
            ("", r#", "rate_by_country": {"Germany": 1.2}"#, "offers[0].rate_by_country.Germany"),
            ("", r#", "rate_by_device": {"Mobile": 1.2}"#, "offers[0].rate_by_device.Mobile"),
        ] {
            assert_eq!(refused(&with(extra, offer)).0, field, "{extra} {offer}");
        }
    }

    #[test]
    fn values_out_of_range_are_refused_by_their_path() {
        let offer = |fields: &str| format!(r#"{{"name": "t", "offers": [{{"name": "A", {fields}}}]}}"#);
        for (json, field) in [
            (offer(r#""ftd_rate": 1.5, "payout": 100"#), "offers[0].ftd_rate"),
            (offer(r#""ftd_rate": -0.1, "payout": 100"#), "offers[0].ftd_rate"),
            (offer(r#""ftd_rate": 0.1, "payout": -1"#), "offers[0].payout"),
            (with(r#""days": 0,"#, ""), "days"),
            (with(r#""clicks_per_day": 0,"#, ""), "clicks_per_day"),
            (with(r#""segments": [],"#, ""), "segments"),
            (with(r#""segments": [{"share": 0}],"#, ""), "segments[0].share"),
            (with(r#""segments": [{"country": "DE"}, {"country": "DE"}],"#, ""), "segments[1]"),
            (with("", r#", "delay": {"median_hours": 0}"#), "offers[0].delay.median_hours"),
            (with("", r#", "delay": {"sigma": -1}"#), "offers[0].delay.sigma"),
            (with("", r#", "rate_by_device": {"tablet": -2}"#), "offers[0].rate_by_device.tablet"),
            (with(r#""days": 10,"#, r#", "from_day": 10"#), "offers[0].from_day"),
            (with(r#""days": 10,"#, r#", "changes": [{"day": 10, "payout": 5}]"#), "offers[0].changes[0].day"),
            (with("", r#", "changes": [{"day": 0, "payout": 5}]"#), "offers[0].changes[0].day"),
            (
                with("", r#", "changes": [{"day": 5, "payout": 5}, {"day": 4, "payout": 6}]"#),
                "offers[0].changes[1].day",
            ),
            (with("", r#", "changes": [{"day": 5}]"#), "offers[0].changes[0]"),
            (with("", r#", "changes": [{"day": 5, "ftd_rate": 2}]"#), "offers[0].changes[0].ftd_rate"),
            (with(r#""name": "a|b","#, "").replacen(r#""name": "t", "#, "", 1), "name"),
        ] {
            assert_eq!(refused(&json).0, field, "{json}");
        }
    }

    #[test]
    fn a_segment_no_offer_accepts_is_refused() {
        let (field, message) = refused(&with(
            r#""segments": [{"country": "DE"}, {"country": "GB", "device": "mobile"}],"#,
            r#", "countries": ["DE"]"#,
        ));
        assert_eq!(field, "segments[1]");
        assert!(message.contains("no offer accepts GB/mobile"), "{message}");
    }

    #[test]
    fn an_offer_takes_the_devices_it_lists_and_not_the_countries_it_blocks() {
        let scenario = ScenarioSpec::from_json(
            r#"{"name": "t", "segments": [{"country": "DE", "device": "mobile"}, {"country": "DE"},
                                          {"country": "AT", "device": "mobile"}, {"country": "AT"}],
                "offers": [{"name": "phones", "ftd_rate": 0.03, "payout": 100, "devices": ["mobile", "tablet"]},
                           {"name": "not-AT", "ftd_rate": 0.03, "payout": 100, "blocked_countries": ["AT"]},
                           {"name": "any", "ftd_rate": 0.03, "payout": 100}]}"#,
        )
        .unwrap();
        let accepted = |offer: usize| (0..4).map(|s| scenario.offers[offer].accepts(s)).collect::<Vec<_>>();
        assert_eq!(accepted(0), [true, false, true, false]);
        assert_eq!(accepted(1), [true, true, false, false]);
        assert_eq!(accepted(2), [true; 4]);
        let (field, message) = refused(&with(r#""segments": [{"country": "DE"}],"#, r#", "devices": ["mobile"]"#));
        assert_eq!(field, "segments[0]");
        assert!(message.contains("no offer accepts DE/desktop"), "{message}");
        let blocks_nothing = ScenarioSpec::from_json(&with("", r#", "blocked_countries": []"#)).unwrap();
        assert!(blocks_nothing.offers[0].accepts(0), "an empty block list blocks nothing, as in the admin API");
    }

    #[test]
    fn segments_may_come_from_sources_that_offers_take_and_convert_on_apart() {
        let scenario = ScenarioSpec::from_json(
            r#"{"name": "t", "segment_by": "country, source",
                "segments": [{"country": "DE", "source": "fb_spring"}, {"country": "DE", "source": "google"},
                             {"country": "DE"}],
                "offers": [{"name": "fb-only", "ftd_rate": 0.02, "payout": 100, "sources": ["fb_*"]},
                           {"name": "any", "ftd_rate": 0.02, "payout": 100, "rate_by_source": {"google": 1.5}}]}"#,
        )
        .unwrap();
        assert_eq!(scenario.segment_by, SegmentDims { country: true, device: false, source: true });
        assert_eq!(scenario.segments[0].source.as_deref(), Some("fb_spring"));
        let accepted = |offer: usize| (0..3).map(|s| scenario.offers[offer].accepts(s)).collect::<Vec<_>>();
        assert_eq!(accepted(0), [true, false, false], "a sources rule takes no click without a source");
        assert_eq!(accepted(1), [true; 3]);
        let rates: Vec<f64> = (0..3).map(|s| scenario.offers[1].ftd_rate(s, 0)).collect();
        assert_eq!(rates, [0.02, 0.03, 0.02]);
        assert_eq!(ScenarioSpec::from_json(&with("", "")).unwrap().segment_by, SegmentDims::DEFAULT);
        let (field, message) = refused(&with(r#""segments": [{"source": "tiktok"}],"#, r#", "sources": ["fb"]"#));
        assert_eq!(field, "segments[0]");
        assert!(message.contains(r#"no offer accepts XX/desktop from "tiktok""#), "{message}");
    }

    #[test]
    fn two_offers_may_not_share_a_name() {
        let json = r#"{"name": "t", "offers": [{"name": "A", "ftd_rate": 0.1, "payout": 1},
                                               {"name": "A", "ftd_rate": 0.1, "payout": 2}]}"#;
        assert_eq!(refused(json).0, "offers[1].name");
    }

    #[test]
    fn a_file_that_is_not_json_or_not_there_is_refused() {
        assert!(matches!(ScenarioSpec::from_json("{\"name\": "), Err(ScenarioError::Syntax(_))));
        let missing = load(Path::new("/nonexistent/scenario.json")).unwrap_err();
        assert!(matches!(missing, ScenarioError::Read(_)), "{missing}");
    }

    #[test]
    fn the_built_in_scenarios_are_valid_and_keep_their_numbers() {
        let scenarios: Vec<Scenario> = builtin().iter().map(|spec| spec.validate().unwrap()).collect();
        let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "stationary-3",
                "stationary-10",
                "stationary-30",
                "best-halves",
                "new-offer",
                "improver",
                "slow-postbacks",
                "close-values",
                "geo-split",
                "geo-restricted",
                "long-tail",
                "device-split",
                "geo-device"
            ]
        );
        let epcs = |s: &Scenario, day: usize| -> Vec<f64> {
            s.offers.iter().map(|o| (100.0 * o.epc(0, day)).round() / 100.0).collect()
        };
        assert_eq!(epcs(&scenarios[0], 0), [3.0, 4.4, 2.0]);
        assert_eq!(epcs(&scenarios[3], 14), [4.5, 3.6, 3.0, 2.0, 1.2]);
        assert_eq!(epcs(&scenarios[3], 15), [2.25, 3.6, 3.0, 2.0, 1.2], "best-halves: A halves on day 15");
        assert_eq!((scenarios[3].change_day, scenarios[4].change_day), (Some(15), Some(10)));
        assert!(!scenarios[4].offers[5].active_on(9) && scenarios[4].offers[5].active_on(10));
        assert_eq!(epcs(&scenarios[5], 10), [4.5, 3.6, 3.0, 6.0, 1.2], "improver: D triples on day 10");
        assert_eq!((scenarios[5].change_day, epcs(&scenarios[5], 9)[3]), (Some(10), 2.0));
        // The generated offers are drawn as before: the first of stationary-10.
        let first = &scenarios[1].offers[0];
        assert!((0.005..0.06).contains(&first.ftd_rate(0, 0)) && (4.0..72.0).contains(&first.delay_median_hours));
        assert_eq!(scenarios[10].segments.len(), 60);
        assert_eq!(scenarios[12].segments.len(), 24);
    }

    #[test]
    fn in_geo_split_each_offer_is_best_in_one_country_and_worst_in_another() {
        let scenario = geo_split().validate().unwrap();
        let mut worst_in = Vec::new();
        for s in 0..4 {
            let epcs: Vec<f64> = scenario.offers.iter().map(|o| o.epc(s, 0)).collect();
            let best = (0..4).max_by(|&a, &b| epcs[a].total_cmp(&epcs[b])).unwrap();
            let worst = (0..4).min_by(|&a, &b| epcs[a].total_cmp(&epcs[b])).unwrap();
            assert_eq!(best, s, "country {s}: {epcs:?}");
            assert_ne!(worst, s);
            worst_in.push(worst);
        }
        worst_in.sort_unstable();
        assert_eq!(worst_in, [0, 1, 2, 3], "each offer is the worst somewhere");
    }
}
