//! Who a click's visitor is: country, device class, bot or not, in nanoseconds.
//!
//! Routing rules key on these three, so they are computed on every click, before the offer pick.
//! Each is pure code over immutable tables built once at start-up: [`GeoIp`] from a vendored or
//! configured `.mmdb` file, [`BotList`] from the vendored crawler-user-agents list; [`Country`] and
//! [`DeviceClass`] are small `Copy` values that index dense per-rule arrays.
//!
//! - [`country`]: ISO 3166-1 alpha-2 codes as a dense index, from codes and proxy headers.
//! - [`device`]: desktop, mobile or tablet from the user agent and `Sec-CH-UA-Mobile`.
//! - [`bots`]: crawlers and link-preview fetchers from the user agent.
//! - [`geoip`]: the country of an address, from a flattened MaxMind DB.
//!
//! Invariants: no I/O except in [`GeoIp::open`] and [`BotList::bundled`] at start-up; on the click
//! path nothing here allocates, locks or makes a syscall.

pub mod bots;
pub mod country;
pub mod device;
pub mod geoip;

pub use bots::BotList;
pub use country::Country;
pub use device::{DeviceClass, device_class};
pub use geoip::{GeoIp, GeoIpError};
