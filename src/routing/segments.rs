//! Learning segments: the kinds of visitor the `thompson` engine learns about apart.
//!
//! The casino that converts best in Germany is often not the best in Brazil, and mobile players
//! deposit differently from desktop ones. A segment is a combination of the visitor's traits that
//! `SEGMENT_BY` names (country x device class by default; the click's source may be one). The engine
//! gives each segment with evidence its own posteriors, pooled toward each offer's over all traffic
//! (`thompson`), and the table gives each such segment its own pools; a visitor of a segment without
//! evidence is routed on the offer-level probabilities.

use std::collections::HashMap;
use std::fmt;

use super::thompson::Traits;
use crate::visitor::{Country, DeviceClass};

/// Which of a visitor's traits make a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentDims {
    /// The visitor's country.
    pub country: bool,
    /// Their device class.
    pub device: bool,
    /// The click's `source` (a click without one is in the segment of the empty source).
    pub source: bool,
}

impl SegmentDims {
    /// No segments: every visitor is routed on the offer-level probabilities.
    pub const NONE: SegmentDims = SegmentDims { country: false, device: false, source: false };
    /// The default: country x device class.
    pub const DEFAULT: SegmentDims = SegmentDims { country: true, device: true, source: false };
}

impl std::str::FromStr for SegmentDims {
    type Err = String;

    /// Parses a comma-separated list of `country`, `device` and `source`, or `none`.
    fn from_str(value: &str) -> Result<SegmentDims, String> {
        let mut dims = SegmentDims::NONE;
        if value.trim().eq_ignore_ascii_case("none") {
            return Ok(dims);
        }
        for part in value.split(',').map(str::trim) {
            let flag = match part.to_ascii_lowercase().as_str() {
                "country" => &mut dims.country,
                "device" => &mut dims.device,
                "source" => &mut dims.source,
                _ => return Err(format!("{part:?} is not one of country, device, source (or none)")),
            };
            if *flag {
                return Err(format!("{part:?} is named twice"));
            }
            *flag = true;
        }
        Ok(dims)
    }
}

impl SegmentDims {
    /// Whether visitors are segmented at all.
    pub fn is_none(self) -> bool {
        self == SegmentDims::NONE
    }

    /// The segment of a visitor with these traits.
    pub fn key(self, country: Country, device: DeviceClass, source: Option<&str>) -> SegmentKey {
        SegmentKey {
            country: self.country.then_some(country),
            device: self.device.then_some(device),
            source: self.source.then(|| source.unwrap_or_default().into()),
        }
    }
}

impl fmt::Display for SegmentDims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(self.country, "country"), (self.device, "device"), (self.source, "source")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        if names.is_empty() { f.write_str("none") } else { f.write_str(&names.join(",")) }
    }
}

/// One segment: the value of each trait that makes segments, `None` for the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentKey {
    /// The visitors' country.
    pub country: Option<Country>,
    /// Their device class.
    pub device: Option<DeviceClass>,
    /// The clicks' source (empty: clicks without one).
    pub source: Option<Box<str>>,
}

/// The segments a table gives their own pools, by index (the index the engine's evidence uses).
#[derive(Debug, Clone)]
pub struct Segmentation {
    dims: SegmentDims,
    keys: Vec<SegmentKey>,
    index: HashMap<SegmentKey, usize>,
    traits: Vec<Traits>,
}

impl Default for Segmentation {
    fn default() -> Segmentation {
        Segmentation::new(SegmentDims::NONE, Vec::new())
    }
}

impl Segmentation {
    /// `keys` are segments made of `dims` (a key of other traits never matches a visitor).
    pub fn new(dims: SegmentDims, keys: Vec<SegmentKey>) -> Segmentation {
        let index = keys.iter().cloned().zip(0..).collect();
        let mut sources: HashMap<&str, u32> = HashMap::new();
        let traits = keys
            .iter()
            .map(|key| {
                let next = sources.len() as u32;
                [
                    key.country.map(|country| country.index() as u32),
                    key.device.map(|device| device.index() as u32),
                    key.source.as_deref().map(|source| *sources.entry(source).or_insert(next)),
                ]
            })
            .collect();
        Segmentation { dims, keys, index, traits }
    }

    /// The traits segments are made of.
    pub fn dims(&self) -> SegmentDims {
        self.dims
    }

    /// The segments, by index.
    pub fn keys(&self) -> &[SegmentKey] {
        &self.keys
    }

    /// What each segment is made of, by index, for the engine: countries and device classes by
    /// their index, sources numbered in the order they first appear.
    pub fn traits(&self) -> &[Traits] {
        &self.traits
    }

    /// The index of a segment.
    pub fn index_of(&self, key: &SegmentKey) -> Option<usize> {
        self.index.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_setting_parses_and_prints_back() {
        assert_eq!(SegmentDims::from_str("country,device"), Ok(SegmentDims::DEFAULT));
        assert_eq!(
            SegmentDims::from_str(" Device , source "),
            Ok(SegmentDims { device: true, source: true, ..SegmentDims::NONE })
        );
        assert_eq!(SegmentDims::from_str("none"), Ok(SegmentDims::NONE));
        assert_eq!(SegmentDims::DEFAULT.to_string(), "country,device");
        assert_eq!(SegmentDims::NONE.to_string(), "none");
        assert!(SegmentDims::from_str("country,country").unwrap_err().contains("twice"));
        assert!(SegmentDims::from_str("city").unwrap_err().contains("\"city\""));
        assert!(SegmentDims::from_str("").is_err(), "an empty value is not `none`");
    }

    #[test]
    fn a_visitors_segment_holds_only_the_traits_named() {
        let de = Country::from_code("DE").unwrap();
        let key = SegmentDims { device: true, source: true, ..SegmentDims::NONE }.key(de, DeviceClass::Mobile, None);
        assert_eq!(key, SegmentKey { country: None, device: Some(DeviceClass::Mobile), source: Some("".into()) });
        let segmentation =
            Segmentation::new(SegmentDims::DEFAULT, vec![SegmentDims::DEFAULT.key(de, DeviceClass::Mobile, Some("x"))]);
        assert_eq!(segmentation.index_of(&SegmentDims::DEFAULT.key(de, DeviceClass::Mobile, None)), Some(0));
        assert_eq!(segmentation.index_of(&SegmentDims::DEFAULT.key(de, DeviceClass::Desktop, None)), None);
    }

    #[test]
    fn segments_that_share_a_trait_value_share_its_number() {
        let (de, br) = (Country::from_code("DE").unwrap(), Country::from_code("BR").unwrap());
        let dims = SegmentDims { country: true, device: true, source: true };
        let keys = [
            (de, DeviceClass::Mobile, Some("a")),
            (br, DeviceClass::Mobile, None),
            (de, DeviceClass::Desktop, Some("a")),
        ];
        let segmentation = Segmentation::new(dims, keys.iter().map(|&(c, d, s)| dims.key(c, d, s)).collect());
        let [first, second, third] = segmentation.traits() else { panic!("three segments") };
        assert_eq!(first[0], third[0], "both German");
        assert_ne!(first[0], second[0]);
        assert_eq!(first[1], second[1], "both mobile");
        assert_ne!(first[1], third[1]);
        assert_eq!(first[2], third[2], "both of source a");
        assert_ne!(first[2], second[2], "no source is a source of its own");
        let country_and_source = SegmentDims { device: false, ..dims };
        let by_country =
            Segmentation::new(country_and_source, vec![country_and_source.key(de, DeviceClass::Mobile, None)]);
        assert_eq!(by_country.traits()[0][1], None, "device does not make these segments");
    }
}
