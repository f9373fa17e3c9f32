//! Routing: which offer a click goes to. Pure code, no I/O: the alias tables per eligible set, the
//! offers' targeting rules, the offer URL rules, the EV weight policy and Thompson sampling, each
//! unit-tested in its own file.

pub mod policy;
pub mod redirect;
pub mod rules;
pub mod segments;
pub mod table;
pub mod thompson;

pub use policy::{OfferWindow, WeightPolicy, WeightedOffer};
pub use redirect::{InvalidOfferUrl, RedirectTemplate};
pub use rules::{DailyCaps, OfferRules, Targeting};
pub use segments::{SegmentDims, SegmentKey, Segmentation};
pub use table::{DayCounts, Pick, RouteInput, RoutedOffer, RoutingTable, Segment};
