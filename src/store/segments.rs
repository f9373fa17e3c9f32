//! The evidence for learning per segment, as both stores keep and read it.
//!
//! Clicks: every batch's rollup also counts clicks per offer, hour and *segment* (the traits
//! `SEGMENT_BY` names, joined into one value) in `click_rollup_dims`, under a dimension named after
//! those traits (`segment:country,device`). A change of `SEGMENT_BY` thus starts a rollup of its own
//! rather than mixing two kinds of segment, and no migration is needed. FTDs: joined to their clicks'
//! traits at each refresh (FTDs are few).
//!
//! A segment rollup begins when a router that keeps it first opens the store (recorded in
//! `segment_rollups`), which may be long after the first click: the segment evidence is read only
//! from then on, so that FTDs of clicks counted in no segment do not make a segment look better
//! than it is. Visitors of no segment are routed on the offer-level evidence (every hour of it).

use std::collections::{BTreeMap, HashMap};

use crate::routing::thompson::{HORIZON_HOURS, SegmentHistory};
use crate::routing::{SegmentDims, SegmentKey};
use crate::store::ClickRecord;
use crate::visitor::{Country, DeviceClass};

/// Most segments the engine is given, those with the most clicks: each costs a set of Monte Carlo
/// draws at every refresh, and a visitor of any other segment is routed on the offer-level
/// probabilities (BENCHMARKS.md: 30 offers and 200 segments).
pub const MAX_SEGMENTS: usize = 500;

/// A click's segment traits, as [`SegmentRollup::traits_of`] reads them.
pub type SegmentTraits<'a> = (Option<Country>, Option<DeviceClass>, Option<&'a str>);

/// Which segments the rollup keeps, and the name their rows go by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRollup {
    dims: SegmentDims,
    dimension: String,
}

impl SegmentRollup {
    /// The rollup of segments made of `dims`.
    pub fn new(dims: SegmentDims) -> SegmentRollup {
        SegmentRollup { dims, dimension: format!("segment:{dims}") }
    }

    /// The traits segments are made of.
    pub fn dims(&self) -> SegmentDims {
        self.dims
    }

    /// The `click_rollup_dims.dimension` of its rows.
    pub fn dimension(&self) -> &str {
        &self.dimension
    }

    /// A click's segment: the traits the rollup keeps (`None` for those it leaves out; a click
    /// without a source has `""`), borrowed from the click so that counting it allocates nothing.
    /// `None` when segments are off, or for a click without a country or device (only in journals
    /// written before targeting) or sent to the fallback.
    pub fn traits_of<'a>(&self, click: &'a ClickRecord) -> Option<SegmentTraits<'a>> {
        if self.dims.is_none() || click.is_fallback {
            return None;
        }
        Some((
            if self.dims.country { Some(click.country?) } else { None },
            if self.dims.device { Some(click.device?) } else { None },
            self.dims.source.then(|| click.source.as_deref().unwrap_or("")),
        ))
    }

    /// A segment as the rollup stores it: its traits joined by `|`, the source last (it is free
    /// text).
    pub fn value(traits: &SegmentTraits<'_>) -> String {
        let (country, device, source) = traits;
        let parts = [country.map(Country::as_str), device.map(DeviceClass::as_str), *source];
        parts.into_iter().flatten().collect::<Vec<_>>().join("|")
    }

    /// The segment of a stored value, if it is one of these segments.
    pub fn decode(&self, value: &str) -> Option<SegmentKey> {
        let parts = usize::from(self.dims.country) + usize::from(self.dims.device) + usize::from(self.dims.source);
        let mut fields = value.splitn(parts, '|');
        let mut next = |on: bool| if on { fields.next().map(Some) } else { Some(None) };
        let (country, device, source) = (next(self.dims.country)?, next(self.dims.device)?, next(self.dims.source)?);
        self.key(country.unwrap_or_default(), device.unwrap_or_default(), source.unwrap_or_default())
    }

    /// The segment of a click with these stored traits (`""` for none), if it is one.
    pub fn key(&self, country: &str, device: &str, source: &str) -> Option<SegmentKey> {
        Some(SegmentKey {
            country: if self.dims.country { Some(Country::from_code(country)?) } else { None },
            device: if self.dims.device { Some(DeviceClass::parse(device)?) } else { None },
            source: self.dims.source.then(|| source.into()),
        })
    }
}

/// One segment's FTDs on one offer with the same click age.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFtds {
    /// The offer.
    pub offer_id: i64,
    /// Hours since the clicks.
    pub age_hours: usize,
    /// The clicks' segment.
    pub segment: SegmentKey,
    /// FTDs (not rejected).
    pub ftds: u64,
    /// How many of them have a payout.
    pub payouts: u64,
    /// Sum of those payouts.
    pub payout_sum: f64,
}

/// The segment part of the routing evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentEvidence {
    /// `(offer_id, click hour as in OfferHistory::clicks, segment, clicks)`, bots left out.
    pub clicks: Vec<(i64, usize, SegmentKey, u64)>,
    /// FTDs by offer, click age and segment.
    pub ftds: Vec<SegmentFtds>,
}

impl SegmentEvidence {
    /// The segments of `offer_ids` (in that order) with clicks, at most [`MAX_SEGMENTS`] of them
    /// (the most clicked), ordered by key so that every instance numbers them alike; and their
    /// histories, indexed by those numbers.
    pub fn histories(&self, offer_ids: &[i64]) -> (Vec<SegmentKey>, Vec<SegmentHistory>) {
        let index = |offer_id: i64| offer_ids.iter().position(|&id| id == offer_id);
        let mut totals: HashMap<&SegmentKey, u64> = HashMap::new();
        for (offer_id, age, segment, clicks) in &self.clicks {
            if index(*offer_id).is_some() && *age < HORIZON_HOURS {
                *totals.entry(segment).or_default() += clicks;
            }
        }
        let mut ranked: Vec<(&SegmentKey, u64)> = totals.into_iter().filter(|&(_, n)| n > 0).collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked.truncate(MAX_SEGMENTS);
        let mut keys: Vec<SegmentKey> = ranked.into_iter().map(|(key, _)| key.clone()).collect();
        keys.sort_unstable();
        let number = |key: &SegmentKey| keys.binary_search(key).ok();

        let mut histories: BTreeMap<(usize, usize), SegmentHistory> = Default::default();
        fn history(
            histories: &mut BTreeMap<(usize, usize), SegmentHistory>,
            segment: usize,
            offer: usize,
        ) -> &mut SegmentHistory {
            histories.entry((segment, offer)).or_insert_with(|| SegmentHistory { segment, offer, ..Default::default() })
        }
        for (offer_id, age, key, clicks) in &self.clicks {
            if let (Some(offer), Some(segment)) = (index(*offer_id), number(key))
                && *age < HORIZON_HOURS
            {
                history(&mut histories, segment, offer).clicks.push((*age, *clicks));
            }
        }
        for bucket in &self.ftds {
            if let (Some(offer), Some(segment)) = (index(bucket.offer_id), number(&bucket.segment))
                && bucket.age_hours < HORIZON_HOURS
            {
                let entry = history(&mut histories, segment, offer);
                entry.ftds.push((bucket.age_hours, bucket.ftds));
                entry.payouts.push((bucket.age_hours, bucket.payouts, bucket.payout_sum));
            }
        }
        (keys, histories.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(source: Option<&str>) -> ClickRecord {
        ClickRecord {
            click_id: uuid::Uuid::now_v7(),
            offer_id: 1,
            created_at: time::OffsetDateTime::now_utc(),
            user_agent: None,
            ip_address: None,
            referrer: None,
            source: source.map(Into::into),
            campaign: None,
            propensity: 0.5,
            country: Country::from_code("DE"),
            device: Some(DeviceClass::Mobile),
            is_bot: false,
            is_fallback: false,
            log_slot: None,
        }
    }

    #[test]
    fn a_clicks_segment_is_stored_and_read_back() {
        let all = SegmentRollup::new(SegmentDims { country: true, device: true, source: true });
        assert_eq!(all.dimension(), "segment:country,device,source");
        let value_of =
            |rollup: &SegmentRollup, click: &ClickRecord| rollup.traits_of(click).map(|t| SegmentRollup::value(&t));
        let value = value_of(&all, &click(Some("fb|ads"))).unwrap();
        assert_eq!(value, "DE|mobile|fb|ads");
        let de = Country::from_code("DE").unwrap();
        assert_eq!(all.decode(&value), Some(all.dims().key(de, DeviceClass::Mobile, Some("fb|ads"))));
        let by_device = SegmentRollup::new(SegmentDims { device: true, ..SegmentDims::NONE });
        assert_eq!(value_of(&by_device, &click(None)).as_deref(), Some("mobile"));
        assert_eq!(by_device.decode("mobile").and_then(|key| key.device), Some(DeviceClass::Mobile));
        assert_eq!(by_device.decode("phone"), None, "not a device class");
        assert_eq!(value_of(&SegmentRollup::new(SegmentDims::NONE), &click(None)), None);
        let fallback = ClickRecord { is_fallback: true, ..click(None) };
        assert_eq!(value_of(&all, &fallback), None, "a fallback click has no offer to learn about");
    }

    #[test]
    fn the_most_clicked_segments_are_kept_and_numbered_by_key() {
        let dims = SegmentDims { source: true, ..SegmentDims::NONE };
        let key = |source: &str| dims.key(Country::UNKNOWN, DeviceClass::Desktop, Some(source));
        let mut evidence = SegmentEvidence::default();
        for i in 0..MAX_SEGMENTS + 10 {
            evidence.clicks.push((7, 3, key(&format!("s{i:04}")), 1 + i as u64));
        }
        evidence.clicks.push((99, 3, key("other offer"), 1_000_000));
        evidence.ftds.push(SegmentFtds {
            offer_id: 7,
            age_hours: 3,
            segment: key("s0505"),
            ftds: 2,
            payouts: 2,
            payout_sum: 300.0,
        });
        let (keys, histories) = evidence.histories(&[7]);
        assert_eq!(keys.len(), MAX_SEGMENTS);
        assert!(!keys.contains(&key("s0000")) && keys.contains(&key("s0509")), "the least clicked are dropped");
        assert!(!keys.contains(&key("other offer")), "offers not asked about are not counted");
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let s0505 = keys.binary_search(&key("s0505")).unwrap();
        let history = histories.iter().find(|h| h.segment == s0505).unwrap();
        assert_eq!((history.offer, history.clicks.clone(), history.ftds.clone()), (0, vec![(3, 506)], vec![(3, 2)]));
        assert_eq!(history.payouts, [(3, 2, 300.0)]);
    }
}
