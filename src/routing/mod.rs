//! Routing: which offer a click goes to. Pure code, no I/O: the alias table, the offer URL rules, the
//! EV weight policy and Thompson sampling, each unit-tested in its own file.

pub mod policy;
pub mod redirect;
pub mod table;
pub mod thompson;

pub use policy::{OfferWindow, WeightPolicy, WeightedOffer};
pub use redirect::{InvalidOfferUrl, RedirectTemplate};
pub use table::{RouteInput, RoutedOffer, RoutingTable};
