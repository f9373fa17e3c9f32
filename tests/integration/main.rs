//! The integration tests: one test binary, a module per concern (its own file beside this one), so
//! that the shared harness in `support/` is compiled and the whole dependency tree linked once, not
//! once per file (some twenty links made most of CI's time). A test's name is its module's:
//! `cargo test --test integration postbacks::` runs the postback tests.

mod support;

mod admin;
mod binary;
mod clicks;
mod conformance;
mod dashboard;
mod dashboard_browser;
mod docs_browser;
mod held_postbacks;
mod hostile;
mod metrics;
mod migrations;
mod openapi;
mod outage;
mod postbacks;
mod schema_parity;
mod segments;
mod simulator;
mod store_contract;
mod targeting;
mod weights;
