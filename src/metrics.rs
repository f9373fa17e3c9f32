//! Operational metrics, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Why hand-rolled: the click path records two of these (its offer's counter and its latency), and a
//! registry that looks labels up in a locked map would put a lock on every click. Here every series
//! the click path touches is a plain atomic it reaches without a lookup: each routing-table entry
//! holds its offer's counter, and the histogram has fixed buckets. Rendering, which is rare, does the
//! formatting work.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::routing::RoutingTable;
use crate::store::PostbackOutcome;

/// Upper bounds of the click latency buckets, in nanoseconds (1 µs to 10 ms).
const CLICK_LATENCY_BOUNDS_NS: [u64; 10] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000];
/// Upper bounds of the writer's batch-size buckets, in clicks.
const BATCH_SIZE_BOUNDS: [u64; 9] = [1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000];
/// Upper bounds of the writer's flush-latency buckets, in nanoseconds (100 µs to 10 s).
const FLUSH_LATENCY_BOUNDS_NS: [u64; 10] = [
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// A histogram with fixed buckets, updated with two relaxed atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Non-cumulative counts; the last slot is the `+Inf` overflow.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// Divides `sum` and the bounds when rendered (1e9 turns nanoseconds into seconds). A divisor, not
    /// a factor: `1000 / 1e9` is the double nearest 1e-6 and prints as `0.000001`, where `1000 * 1e-9`
    /// prints as `0.0000010000000000000002`.
    divisor: f64,
}

impl Histogram {
    fn new(bounds: &'static [u64], divisor: f64) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            divisor,
        }
    }

    /// Records one value, in the histogram's unit.
    #[inline]
    pub fn observe(&self, value: u64) {
        let index = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// Records a duration in a nanosecond histogram.
    #[inline]
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|bucket| bucket.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / self.divisor);
        }
        cumulative += self.buckets[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum.load(Relaxed) as f64 / self.divisor);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Writer figures that `/metrics` reads from the writer when it renders.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterSnapshot {
    /// Clicks waiting in the in-memory queue.
    pub queue_depth: usize,
    /// Capacity of that queue.
    pub queue_capacity: usize,
    /// Clicks the writer holds in memory during an outage.
    pub held: u64,
    /// Whether the writer is in an outage.
    pub outage: bool,
    /// Clicks in the on-disk journal.
    pub journal_clicks: u64,
    /// Bytes of the on-disk journal.
    pub journal_bytes: u64,
    /// Clicks committed to the database.
    pub written: u64,
    /// Clicks the database refused.
    pub failed: u64,
    /// Clicks refused at the door (queue full).
    pub rejected: u64,
}

/// The router's metrics. One per running router, shared by reference.
#[derive(Debug)]
pub struct Metrics {
    /// Time from a click's arrival in the handler to its response being ready.
    pub click_latency: Histogram,
    /// Clicks per batch the writer committed.
    pub batch_size: Histogram,
    /// Time the writer took to commit one batch.
    pub flush_latency: Histogram,
    /// Redirects per offer; each routing-table entry holds its offer's counter.
    offer_clicks: Mutex<BTreeMap<i64, Arc<AtomicU64>>>,
    /// Postbacks by outcome, in the order of [`PostbackOutcome::ALL`].
    postbacks: [AtomicU64; PostbackOutcome::ALL.len()],
    /// Postbacks answered 503 because the database was unavailable.
    postbacks_unavailable: AtomicU64,
    /// Unix time of the last weight recalculation that committed, 0 before the first.
    last_recalculation: AtomicI64,
    /// Clicks sent to the fallback URL (no offer accepted the visitor, or a bot under
    /// `BOT_ACTION=fallback`).
    pub fallback_clicks: AtomicU64,
    /// Clicks of bots and link previews, wherever they were sent.
    pub bot_clicks: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            click_latency: Histogram::new(&CLICK_LATENCY_BOUNDS_NS, 1e9),
            batch_size: Histogram::new(&BATCH_SIZE_BOUNDS, 1.0),
            flush_latency: Histogram::new(&FLUSH_LATENCY_BOUNDS_NS, 1e9),
            offer_clicks: Mutex::default(),
            postbacks: Default::default(),
            postbacks_unavailable: AtomicU64::new(0),
            last_recalculation: AtomicI64::new(0),
            fallback_clicks: AtomicU64::new(0),
            bot_clicks: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// The redirect counter of `offer_id`, created at zero the first time. Called when a routing
    /// table is built, never per click.
    pub fn offer_click_counter(&self, offer_id: i64) -> Arc<AtomicU64> {
        let mut counters = self.offer_clicks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counters.entry(offer_id).or_default().clone()
    }

    /// Counts a postback answered with `outcome`.
    pub fn postback(&self, outcome: PostbackOutcome) {
        self.postbacks[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts a postback answered 503 (database unavailable).
    pub fn postback_unavailable(&self) {
        self.postbacks_unavailable.fetch_add(1, Relaxed);
    }

    /// Records a committed weight recalculation at `unix_seconds`.
    pub fn recalculated(&self, unix_seconds: i64) {
        self.last_recalculation.store(unix_seconds, Relaxed);
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, table: &RoutingTable, writer: WriterSnapshot) -> String {
        let mut out = String::with_capacity(4096);
        header(&mut out, "casino_router_clicks_total", "Clicks redirected, by offer.", "counter");
        for (offer_id, counter) in self.offer_clicks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter() {
            let _ = writeln!(out, "casino_router_clicks_total{{offer_id=\"{offer_id}\"}} {}", counter.load(Relaxed));
        }
        header(&mut out, "casino_router_fallback_clicks_total", "Clicks sent to the fallback URL.", "counter");
        let _ = writeln!(out, "casino_router_fallback_clicks_total {}", self.fallback_clicks.load(Relaxed));
        header(&mut out, "casino_router_bot_clicks_total", "Clicks of bots and link previews.", "counter");
        let _ = writeln!(out, "casino_router_bot_clicks_total {}", self.bot_clicks.load(Relaxed));
        self.click_latency.render(
            &mut out,
            "casino_router_click_duration_seconds",
            "Time to answer a click, from its parsed request to its response, without the network.",
        );

        header(&mut out, "casino_router_offer_weight", "Routing weight of each active offer.", "gauge");
        for offer in table.offers() {
            let _ = writeln!(out, "casino_router_offer_weight{{offer_id=\"{}\"}} {}", offer.offer_id, offer.weight);
        }
        header(
            &mut out,
            "casino_router_offer_traffic_share",
            "Probability that a new click goes to each offer, for a visitor every offer accepts (targeting rules narrow it).",
            "gauge",
        );
        for offer in table.offers() {
            let _ = writeln!(
                out,
                "casino_router_offer_traffic_share{{offer_id=\"{}\"}} {}",
                offer.offer_id, offer.propensity
            );
        }
        gauge(
            &mut out,
            "casino_router_last_recalculation_timestamp_seconds",
            "Unix time of the last weight recalculation this instance committed (0: none yet).",
            self.last_recalculation.load(Relaxed),
        );

        gauge(
            &mut out,
            "casino_router_writer_queue_depth",
            "Clicks waiting in the writer's queue.",
            writer.queue_depth,
        );
        gauge(
            &mut out,
            "casino_router_writer_queue_capacity",
            "Capacity of the writer's queue.",
            writer.queue_capacity,
        );
        header(
            &mut out,
            "casino_router_writer_clicks_total",
            "Clicks by what became of them in the writer.",
            "counter",
        );
        for (result, value) in [("written", writer.written), ("failed", writer.failed), ("rejected", writer.rejected)] {
            let _ = writeln!(out, "casino_router_writer_clicks_total{{result=\"{result}\"}} {value}");
        }
        self.batch_size.render(&mut out, "casino_router_writer_batch_size", "Clicks per committed batch.");
        self.flush_latency.render(
            &mut out,
            "casino_router_writer_flush_duration_seconds",
            "Time to commit one batch of clicks, retries included.",
        );

        header(
            &mut out,
            "casino_router_postbacks_total",
            "Postbacks by outcome (a held one as pending, then by its final outcome).",
            "counter",
        );
        for (outcome, counter) in PostbackOutcome::ALL.iter().zip(&self.postbacks) {
            let _ = writeln!(
                out,
                "casino_router_postbacks_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                counter.load(Relaxed)
            );
        }
        let unavailable = self.postbacks_unavailable.load(Relaxed);
        let _ = writeln!(out, "casino_router_postbacks_total{{outcome=\"unavailable\"}} {unavailable}");
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_scaled() {
        let histogram = Histogram::new(&[10, 100], 2.0);
        for value in [5, 10, 50, 1000] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.render(&mut out, "h", "help");
        assert!(out.contains("h_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"50\"} 3\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("h_sum 532.5\n"), "{out}");
        assert!(out.contains("h_count 4\n"), "{out}");
        assert_eq!(histogram.count(), 4);
    }

    #[test]
    fn bucket_bounds_render_short_and_exact() {
        let text = Metrics::default().render(&RoutingTable::default(), WriterSnapshot::default());
        let labels = |name: &str| -> Vec<&str> {
            let prefix = format!("{name}_bucket{{le=\"");
            let lines = text.lines().filter_map(|line| line.strip_prefix(prefix.as_str()));
            lines.map(|rest| rest.split('"').next().unwrap()).collect()
        };
        let click = [
            "0.000001",
            "0.0000025",
            "0.000005",
            "0.00001",
            "0.000025",
            "0.00005",
            "0.0001",
            "0.00025",
            "0.001",
            "0.01",
            "+Inf",
        ];
        assert_eq!(labels("casino_router_click_duration_seconds"), click, "{text}");
        let flush = ["0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "10", "+Inf"];
        assert_eq!(labels("casino_router_writer_flush_duration_seconds"), flush, "{text}");
        let batch = ["1", "10", "50", "100", "250", "500", "1000", "2500", "5000", "+Inf"];
        assert_eq!(labels("casino_router_writer_batch_size"), batch, "{text}");
    }

    #[test]
    fn offer_counters_are_shared_per_offer() {
        let metrics = Metrics::default();
        metrics.offer_click_counter(3).fetch_add(2, Relaxed);
        metrics.offer_click_counter(3).fetch_add(1, Relaxed);
        metrics.postback(PostbackOutcome::Forbidden);
        let text = metrics.render(&RoutingTable::default(), WriterSnapshot::default());
        assert!(text.contains("casino_router_clicks_total{offer_id=\"3\"} 3\n"), "{text}");
        assert!(text.contains("casino_router_postbacks_total{outcome=\"forbidden\"} 1\n"), "{text}");
        assert!(text.contains("casino_router_postbacks_total{outcome=\"accepted\"} 0\n"), "{text}");
    }
}
