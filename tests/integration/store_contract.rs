//! The store contract: each behaviour of the `Store` trait, tested on both stores in the same run
//! (SQLite always; PostgreSQL too, or a plain note that it was skipped, a failure under CI). Each
//! scenario asserts what the contract promises on each store, then the two stores' results are
//! compared, so that the implementations cannot drift apart unnoticed.

use crate::support;

use std::collections::BTreeMap;
use std::fmt::Debug;

use casino_router::app::new_click_id;
use casino_router::conversion::EventKind;
use casino_router::routing::{DailyCaps, OfferWindow, SegmentDims, Targeting, WeightPolicy};
use casino_router::store::{
    ClickOwner, ClickRecord, ClickUpkeep, Conversion, ConversionOutcome, DailyTotal, DashboardSession, DeleteOutcome,
    Dimension, FALLBACK_OFFER_ID, Figures, FtdBucket, Grouping, HeldPostback, HoldLimits, HoldOutcome, HourlyFigures,
    NewOffer, Offer, OfferPatch, OfferStats, PostbackLogEntry, PostbackLogQuery, PostbackOutcome, RoutingEvidence,
    RoutingShare, SegmentFtds, SegmentStats, Store, TimeRange,
};
use casino_router::visitor::{Country, DeviceClass};
use support::stores::{self, StoreUnderTest};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Runs `scenario` on every store and asserts that they all gave the same result.
async fn on_both<T: PartialEq + Debug>(scenario: impl AsyncFn(&StoreUnderTest) -> T) {
    let stores = stores::both().await;
    let mut first: Option<(&str, T)> = None;
    for store in &stores {
        let result = scenario(store).await;
        match &first {
            None => first = Some((store.name, result)),
            Some((name, expected)) => assert_eq!(&result, expected, "{} and {name} disagree", store.name),
        }
    }
}

fn new_offer(name: &str, weight: f64, active: bool) -> NewOffer {
    NewOffer {
        name: name.to_owned(),
        casino_url: format!("https://casino.example/{name}?click_id={{click_id}}"),
        weight,
        postback_secret: format!("secret-{name}"),
        active,
        event_aliases: BTreeMap::from([("first_dep".to_owned(), EventKind::Ftd)]),
        targeting: Targeting::default(),
        daily_caps: DailyCaps::default(),
    }
}

/// An offer without its creation time, which each database sets itself.
fn timeless(offer: &Offer) -> Offer {
    Offer { created_at: OffsetDateTime::UNIX_EPOCH, ..offer.clone() }
}

/// A click of a visitor from Germany on a desktop, its id minted at `at` as the router mints it.
fn click(offer_id: i64, at: OffsetDateTime) -> ClickRecord {
    ClickRecord {
        click_id: new_click_id(at, &mut rand::rng()),
        offer_id,
        created_at: at,
        user_agent: Some("contract-test".into()),
        ip_address: Some("203.0.113.7".parse().unwrap()),
        referrer: None,
        source: Some("src".into()),
        campaign: None,
        propensity: 0.5,
        country: Country::from_code("DE"),
        device: Some(DeviceClass::Desktop),
        is_bot: false,
        is_fallback: false,
        log_slot: None,
    }
}

fn conversion(click: &ClickRecord, kind: EventKind, payout: Option<f64>, tid: Option<&str>) -> Conversion {
    Conversion {
        click_id: click.click_id,
        offer_id: click.offer_id,
        clicked_at: click.created_at,
        kind,
        payout,
        currency: "EUR".to_owned(),
        tid: tid.map(str::to_owned),
        external_player_id: Some("player-1".to_owned()),
    }
}

/// The log entry a postback for `conversion` starts with (the store fills in its outcome).
fn log_for(conversion: &Conversion) -> PostbackLogEntry {
    PostbackLogEntry {
        received_at: OffsetDateTime::now_utc(),
        offer_id: Some(conversion.offer_id),
        click_id: Some(conversion.click_id.to_string()),
        event: Some(conversion.kind.as_str().to_owned()),
        payout: conversion.payout,
        currency: Some(conversion.currency.clone()),
        tid: conversion.tid.clone(),
        outcome: PostbackOutcome::Accepted,
        reason: None,
        source_ip: Some("198.51.100.1".parse().unwrap()),
        ignored_fields: Some("sub1, aff_id".to_owned()),
    }
}

async fn apply(store: &dyn Store, conversion: &Conversion) -> ConversionOutcome {
    store.apply_conversion(conversion, &log_for(conversion)).await.unwrap()
}

/// Every offer's figures over all time.
async fn stats(store: &dyn Store) -> Vec<OfferStats> {
    store.offer_stats(TimeRange::default()).await.unwrap()
}

/// How many hours back from `now`'s UTC hour `at`'s hour is.
fn hours_back(now: OffsetDateTime, at: OffsetDateTime) -> usize {
    let hour = |t: OffsetDateTime| t.unix_timestamp().div_euclid(3600);
    (hour(now) - hour(at)) as usize
}

/// A time with microseconds (both stores keep them) and no nanoseconds (neither does).
fn recent(minutes_ago: i64) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.microsecond() * 1000).unwrap() - Duration::minutes(minutes_ago)
}

#[tokio::test]
async fn offer_changes_round_trip_and_each_one_bumps_the_routing_version() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let mut trace = Vec::new();
        let version = async || store.routing_version().await.unwrap();
        let v0 = version().await;

        let before = OffsetDateTime::now_utc() - Duration::minutes(1);
        let alpha = store.create_offer(&new_offer("alpha", 2.0, true)).await.unwrap();
        assert_eq!(version().await, v0 + 1, "{name}: create bumps");
        let beta = store.create_offer(&new_offer("beta", 1.0, false)).await.unwrap();
        assert_eq!(version().await, v0 + 2, "{name}: create bumps");
        assert!(alpha.created_at > before && alpha.created_at < before + Duration::minutes(2), "{name}");
        let expected = new_offer("alpha", 2.0, true);
        assert_eq!(
            (&alpha.name, &alpha.casino_url, alpha.weight, &alpha.postback_secret, alpha.active, &alpha.event_aliases),
            (
                &expected.name,
                &expected.casino_url,
                expected.weight,
                &expected.postback_secret,
                expected.active,
                &expected.event_aliases
            ),
            "{name}"
        );
        assert_eq!(store.get_offer(alpha.id).await.unwrap(), Some(alpha.clone()), "{name}");
        assert_eq!(store.get_offer(alpha.id + 1000).await.unwrap(), None, "{name}");
        assert_eq!(store.list_offers(false).await.unwrap(), [alpha.clone(), beta.clone()], "{name}");
        assert_eq!(store.list_offers(true).await.unwrap(), std::slice::from_ref(&alpha), "{name}");
        trace.push(timeless(&alpha));
        trace.push(timeless(&beta));

        // A full update changes every field but the id and the creation time.
        let full = OfferPatch {
            name: Some("alpha-2".to_owned()),
            casino_url: Some("https://other.example/?c={click_id}".to_owned()),
            weight: Some(3.0),
            postback_secret: Some("secret-2".to_owned()),
            active: Some(false),
            event_aliases: Some(BTreeMap::new()),
            targeting: Some(Targeting {
                countries: Some(vec!["DE".to_owned(), "AT".to_owned()]),
                blocked_countries: Some(vec!["XX".to_owned()]),
                devices: Some(vec!["mobile".to_owned()]),
                sources: Some(vec!["fb_*".to_owned()]),
                campaigns: Some(vec!["spring".to_owned()]),
            }),
            daily_click_cap: Some(Some(500)),
            daily_ftd_cap: Some(Some(20)),
        };
        let updated = store.update_offer(alpha.id, &full).await.unwrap().expect("offer exists");
        assert_eq!(version().await, v0 + 3, "{name}: update bumps");
        let expected = Offer {
            name: "alpha-2".to_owned(),
            casino_url: "https://other.example/?c={click_id}".to_owned(),
            weight: 3.0,
            postback_secret: "secret-2".to_owned(),
            active: false,
            event_aliases: BTreeMap::new(),
            targeting: full.targeting.clone().unwrap(),
            daily_caps: DailyCaps { clicks: Some(500), ftds: Some(20) },
            ..alpha.clone()
        };
        assert_eq!(updated, expected, "{name}");

        // A patch changes only what it names.
        // A patch changes only what it names; a cap can be removed.
        let patch =
            OfferPatch { weight: Some(0.5), active: Some(true), daily_click_cap: Some(None), ..OfferPatch::default() };
        let patched = store.update_offer(alpha.id, &patch).await.unwrap().expect("offer exists");
        let daily_caps = DailyCaps { clicks: None, ..expected.daily_caps };
        assert_eq!(patched, Offer { weight: 0.5, active: true, daily_caps, ..expected }, "{name}");
        assert_eq!(store.get_offer(alpha.id).await.unwrap(), Some(patched.clone()), "{name}");
        assert_eq!(version().await, v0 + 4, "{name}: patch bumps");
        trace.push(timeless(&patched));

        // What changes nothing bumps nothing.
        assert_eq!(store.update_offer(alpha.id + 1000, &patch).await.unwrap(), None, "{name}");
        assert_eq!(store.delete_offer(alpha.id + 1000).await.unwrap(), DeleteOutcome::NotFound, "{name}");
        store.insert_clicks(&[click(beta.id, recent(1))]).await.unwrap();
        assert_eq!(store.delete_offer(beta.id).await.unwrap(), DeleteOutcome::HasClicks, "{name}");
        assert_eq!(store.get_offer(beta.id).await.unwrap(), Some(beta.clone()), "{name}: refused delete");
        assert_eq!(version().await, v0 + 4, "{name}: no change, no bump");

        assert_eq!(store.delete_offer(alpha.id).await.unwrap(), DeleteOutcome::Deleted, "{name}");
        assert_eq!(version().await, v0 + 5, "{name}: delete bumps");
        assert_eq!(store.get_offer(alpha.id).await.unwrap(), None, "{name}");
        assert_eq!(store.delete_offer(alpha.id).await.unwrap(), DeleteOutcome::NotFound, "{name}");
        assert_eq!(store.list_offers(false).await.unwrap(), [beta], "{name}");
        trace
    })
    .await;
}

#[tokio::test]
async fn click_inserts_are_idempotent_on_click_id_and_clicks_know_their_owner() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let offer = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let clicks: Vec<ClickRecord> = (0..4).map(|i| click(offer.id, recent(10 - i))).collect();

        let first = store.insert_clicks(&clicks[..3]).await.unwrap();
        let again = store.insert_clicks(&clicks).await.unwrap();
        let third = store.insert_clicks(&clicks[3..]).await.unwrap();
        assert_eq!((first, again, third), (3, 1, 0), "{name}: only new clicks count");
        assert_eq!(s.db.count("SELECT count(*) FROM clicks").await, 4, "{name}: each click stored once");
        assert_eq!(stats(store).await[0].clicks, 4, "{name}: each click counted once in the rollup");

        let owner = store.click_owner(clicks[1].click_id).await.unwrap();
        let expected = ClickOwner {
            offer_id: offer.id,
            postback_secret: offer.postback_secret.clone(),
            event_aliases: offer.event_aliases.clone(),
            clicked_at: clicks[1].created_at,
        };
        assert_eq!(owner, Some(expected.clone()), "{name}");
        assert_eq!(store.click_owner(Uuid::now_v7()).await.unwrap(), None, "{name}: unknown click");
        (first, again, third, expected.offer_id, expected.event_aliases)
    })
    .await;
}

/// A postback to apply: the click, the event, its payout and tid, and the outcome it must have.
type Step<'a> = (&'a ClickRecord, EventKind, Option<f64>, Option<&'a str>, ConversionOutcome);

#[tokio::test]
async fn conversions_of_every_kind_are_recorded_once_and_logged_with_their_outcome() {
    use ConversionOutcome::{Duplicate, NoFtd, Recorded};
    use EventKind::{Deposit, Ftd, Payout, Reg, Rejected};
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let offer = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let k: Vec<ClickRecord> = (0..4).map(|i| click(offer.id, recent(60 - i))).collect();
        store.insert_clicks(&k).await.unwrap();

        let steps: [Step; 19] = [
            (&k[0], Reg, None, None, Recorded),
            (&k[0], Reg, None, None, Duplicate),
            (&k[0], Ftd, Some(10.0), Some("f1"), Recorded),
            (&k[0], Ftd, Some(10.0), Some("f1-again"), Duplicate), // the same click's FTD twice
            (&k[1], Ftd, None, Some("f1"), Duplicate),             // another click, the same FTD tid
            (&k[0], Payout, Some(5.0), None, Duplicate),           // the FTD came with its payout
            (&k[2], Ftd, None, None, Recorded),
            (&k[2], Payout, Some(7.5), None, Recorded),
            (&k[2], Payout, Some(7.5), None, Duplicate),
            (&k[3], Payout, Some(1.0), None, NoFtd),
            (&k[3], Rejected, None, None, NoFtd),
            (&k[0], Deposit, Some(20.0), Some("d1"), Recorded),
            (&k[0], Deposit, Some(20.0), Some("d1"), Duplicate), // the same deposit tid twice
            (&k[1], Deposit, Some(20.0), Some("d1"), Duplicate), // its tid is unique per offer
            (&k[0], Deposit, Some(5.0), Some("d2"), Recorded),
            (&k[0], Rejected, None, None, Recorded),
            (&k[0], Rejected, None, None, Duplicate),
            (&k[2], Reg, None, None, Recorded),
            (&k[3], Ftd, None, Some("f1-again"), Recorded), // a repeat's tid was not taken
        ];
        for (i, &(click, kind, payout, tid, expected)) in steps.iter().enumerate() {
            let outcome = apply(store, &conversion(click, kind, payout, tid)).await;
            assert_eq!(
                outcome,
                expected,
                "{name}: step {i}, {kind:?} on click {}",
                k.iter().position(|c| c == click).unwrap()
            );
        }

        // Each postback's log line carries the outcome it had, oldest first here.
        let mut log = store.postback_log(&PostbackLogQuery { limit: 100, ..Default::default() }).await.unwrap();
        log.reverse();
        let logged: Vec<(Option<String>, PostbackOutcome, Option<String>)> =
            log.iter().map(|row| (row.entry.event.clone(), row.entry.outcome, row.entry.reason.clone())).collect();
        let expected: Vec<(Option<String>, PostbackOutcome, Option<String>)> = steps
            .iter()
            .map(|&(_, kind, _, _, outcome)| {
                let entry = log_for(&conversion(&k[0], kind, None, None)).concluded(kind, outcome);
                (Some(kind.as_str().to_owned()), entry.outcome, entry.reason)
            })
            .collect();
        assert_eq!(logged, expected, "{name}");

        // What was recorded: three FTDs (one rejected), two payouts, two deposits, two registrations.
        let figures = &stats(store).await[0];
        assert_eq!((figures.registrations, figures.ftds, figures.revenue), (2, 2, 7.5 + 25.0), "{name}");
        logged
    })
    .await;
}

#[tokio::test]
async fn a_rejected_ftd_no_longer_counts_in_stats() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let offer = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let (k1, k2) = (click(offer.id, recent(30)), click(offer.id, recent(20)));
        store.insert_clicks(&[k1.clone(), k2.clone()]).await.unwrap();
        apply(store, &conversion(&k1, EventKind::Ftd, Some(10.0), None)).await;
        apply(store, &conversion(&k2, EventKind::Ftd, Some(4.0), None)).await;
        apply(store, &conversion(&k1, EventKind::Deposit, Some(3.0), Some("d"))).await;
        let before = stats(store).await.remove(0);
        assert_eq!((before.ftds, before.revenue), (2, 17.0), "{name}");

        let outcome = apply(store, &conversion(&k1, EventKind::Rejected, None, None)).await;
        assert_eq!(outcome, ConversionOutcome::Recorded, "{name}");
        let after = stats(store).await.remove(0);
        // The FTD and its payout are gone from the figures; the click's further deposit stays.
        assert_eq!((after.clicks, after.ftds, after.revenue), (2, 1, 7.0), "{name}");
        (before, after)
    })
    .await;
}

#[tokio::test]
async fn a_postback_the_database_refuses_fails_alone_among_concurrent_ones() {
    // Ten clicks, each with an FTD and a deposit, and one deposit without a transaction id (the
    // database refuses it: `tid` is NOT NULL), all at once. PostgreSQL writes concurrent postbacks
    // as one transaction, so the refused one must not take the others down with it.
    on_both(async |s: &StoreUnderTest| {
        let name = s.name;
        let offer = s.store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let k: Vec<ClickRecord> = (0..10).map(|i| click(offer.id, recent(60 - i))).collect();
        s.store.insert_clicks(&k).await.unwrap();
        let mut conversions: Vec<Conversion> = Vec::new();
        for (i, click) in k.iter().enumerate() {
            conversions.push(conversion(click, EventKind::Ftd, Some(10.0), Some(&format!("f{i}"))));
            conversions.push(conversion(click, EventKind::Deposit, Some(2.0), Some(&format!("d{i}"))));
        }
        conversions.insert(7, conversion(&k[3], EventKind::Deposit, Some(1.0), None));
        // Spawned together on this test's one thread: each is queued before any is written.
        let tasks: Vec<_> = conversions
            .into_iter()
            .map(|conversion| {
                let store = s.store.clone();
                tokio::spawn(async move { store.apply_conversion(&conversion, &log_for(&conversion)).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().ok());
        }
        let mut expected = vec![Some(ConversionOutcome::Recorded); 21];
        expected[7] = None;
        assert_eq!(outcomes, expected, "{name}");
        let figures = &stats(&*s.store).await[0];
        assert_eq!((figures.ftds, figures.revenue), (10, 10.0 * 12.0), "{name}");
        let log = s.store.postback_log(&PostbackLogQuery { limit: 100, ..Default::default() }).await.unwrap();
        assert_eq!(log.len(), 20, "{name}: a line for each postback stored, none for the refused one");
        outcomes
    })
    .await;
}

#[tokio::test]
async fn the_postback_log_filters_and_pages_newest_first() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let t0 = datetime!(2026-03-01 12:00:00.000_001 UTC);
        let outcomes = [
            PostbackOutcome::Forbidden,
            PostbackOutcome::UnknownClick,
            PostbackOutcome::Invalid,
            PostbackOutcome::Forbidden,
            PostbackOutcome::NoFtd,
            PostbackOutcome::Forbidden,
        ];
        let mut entries = Vec::new();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let entry = PostbackLogEntry {
                received_at: t0 + Duration::minutes(i as i64),
                offer_id: [Some(1), Some(2), None][i % 3],
                click_id: Some(format!("click-{i}")),
                event: Some("ftd".to_owned()),
                payout: (i % 2 == 0).then_some(i as f64 + 0.25),
                currency: Some("USD".to_owned()),
                tid: None,
                outcome,
                reason: Some(format!("reason {i}")),
                source_ip: Some(if i % 2 == 0 { "192.0.2.9" } else { "2001:db8::1" }.parse().unwrap()),
                ignored_fields: (i % 2 == 1).then(|| format!("sub{i}")),
            };
            store.log_postback(&entry).await.unwrap();
            entries.push(entry);
        }
        let ids = async |query: PostbackLogQuery| -> Vec<i64> {
            let rows = store.postback_log(&PostbackLogQuery { limit: query.limit.max(1), ..query }).await.unwrap();
            rows.iter().map(|row| row.id).collect()
        };
        let all = store.postback_log(&PostbackLogQuery { limit: 10, ..Default::default() }).await.unwrap();
        let all_ids: Vec<i64> = all.iter().map(|row| row.id).collect();
        assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "{name}: newest first, {all_ids:?}");
        let mut stored: Vec<PostbackLogEntry> = all.into_iter().map(|row| row.entry).collect();
        stored.reverse();
        assert_eq!(stored, entries, "{name}: every field round-trips");
        // Ids by the entry's position, oldest first.
        let id = |i: usize| all_ids[all_ids.len() - 1 - i];
        let q = PostbackLogQuery { limit: 10, ..Default::default() };

        let by_offer = ids(PostbackLogQuery { offer_id: Some(1), ..q.clone() }).await;
        assert_eq!(by_offer, [id(3), id(0)], "{name}: offer_id");
        let by_outcome = ids(PostbackLogQuery { outcome: Some(PostbackOutcome::Forbidden), ..q.clone() }).await;
        assert_eq!(by_outcome, [id(5), id(3), id(0)], "{name}: outcome");
        let from = ids(PostbackLogQuery { from: Some(t0 + Duration::minutes(4)), ..q.clone() }).await;
        assert_eq!(from, [id(5), id(4)], "{name}: from is inclusive");
        let to = ids(PostbackLogQuery { to: Some(t0 + Duration::minutes(1)), ..q.clone() }).await;
        assert_eq!(to, [id(0)], "{name}: to is exclusive");
        let before = ids(PostbackLogQuery { before_id: Some(id(2)), ..q.clone() }).await;
        assert_eq!(before, [id(1), id(0)], "{name}: before_id");
        let combined = PostbackLogQuery {
            outcome: Some(PostbackOutcome::Forbidden),
            from: Some(t0 + Duration::minutes(1)),
            to: Some(t0 + Duration::minutes(5)),
            ..q.clone()
        };
        assert_eq!(ids(combined).await, [id(3)], "{name}: filters combine");

        let mut pages = Vec::new();
        let mut before_id = None;
        loop {
            let page = ids(PostbackLogQuery { before_id, limit: 4, ..Default::default() }).await;
            let Some(&last) = page.last() else { break };
            before_id = Some(last);
            pages.push(page);
        }
        assert_eq!(pages, [vec![id(5), id(4), id(3), id(2)], vec![id(1), id(0)]], "{name}: paging");
        let positions = |list: &[i64]| -> Vec<usize> {
            list.iter().map(|x| all_ids.len() - 1 - all_ids.iter().position(|y| y == x).unwrap()).collect()
        };
        (positions(&by_offer), positions(&by_outcome), positions(&from), positions(&to), stored)
    })
    .await;
}

#[tokio::test]
async fn offer_stats_count_clicks_and_events_by_click_time_over_a_range() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let b = store.create_offer(&new_offer("beta", 0.5, false)).await.unwrap();
        let idle = store.create_offer(&new_offer("idle", 1.0, true)).await.unwrap();
        let at = |h: u8, m: u8| datetime!(2026-01-01 0:00 UTC).replace_time(time::Time::from_hms(h, m, 0).unwrap());
        let a_clicks: Vec<ClickRecord> =
            [(10, 15), (10, 45), (11, 30), (12, 10), (13, 50)].iter().map(|&(h, m)| click(a.id, at(h, m))).collect();
        let b_click = click(b.id, at(11, 5));
        store.insert_clicks(&a_clicks).await.unwrap();
        store.insert_clicks(std::slice::from_ref(&b_click)).await.unwrap();
        apply(store, &conversion(&a_clicks[1], EventKind::Reg, None, None)).await;
        apply(store, &conversion(&a_clicks[2], EventKind::Ftd, Some(10.0), None)).await;
        apply(store, &conversion(&a_clicks[4], EventKind::Ftd, Some(2.5), None)).await;
        apply(store, &conversion(&a_clicks[3], EventKind::Deposit, Some(4.0), Some("d"))).await;
        apply(store, &conversion(&b_click, EventKind::Ftd, None, None)).await;

        let figures = |offer: &Offer, clicks, registrations, ftds, revenue| OfferStats {
            offer_id: offer.id,
            name: offer.name.clone(),
            weight: offer.weight,
            active: offer.active,
            clicks,
            registrations,
            ftds,
            revenue,
        };
        let all = store.offer_stats(TimeRange::default()).await.unwrap();
        assert_eq!(
            all,
            [figures(&a, 5, 1, 2, 16.5), figures(&b, 1, 0, 1, 0.0), figures(&idle, 0, 0, 0, 0.0)],
            "{name}"
        );

        // Edges from raw clicks ([10:30, 11:00)), whole hours from the rollup ([11:00, 13:00)).
        let range = TimeRange { from: Some(at(10, 30)), to: Some(at(13, 0)) };
        let ranged = store.offer_stats(range).await.unwrap();
        assert_eq!(
            ranged,
            [figures(&a, 3, 1, 1, 14.0), figures(&b, 1, 0, 1, 0.0), figures(&idle, 0, 0, 0, 0.0)],
            "{name}"
        );

        // Shorter than an hour: raw clicks only.
        let short = store.offer_stats(TimeRange { from: Some(at(10, 20)), to: Some(at(10, 50)) }).await.unwrap();
        assert_eq!(short[0], figures(&a, 1, 1, 0, 0.0), "{name}");
        // Open at one end.
        let since = store.offer_stats(TimeRange { from: Some(at(12, 0)), to: None }).await.unwrap();
        assert_eq!(since[0], figures(&a, 2, 0, 1, 6.5), "{name}");
        (all, ranged, short, since)
    })
    .await;
}

#[tokio::test]
async fn routing_evidence_buckets_clicks_and_ftds_by_offer_age_and_delay() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let b = store.create_offer(&new_offer("beta", 1.0, true)).await.unwrap();
        // Half past a whole number of hours ago: each click's age and its FTD's delay (the FTD is
        // recorded a moment after `now`) are whole hours with half an hour to spare either way.
        let now = recent(0);
        let ago = |minutes: i64| now - Duration::minutes(minutes);
        let a_clicks: Vec<ClickRecord> = (0..3).map(|_| click(a.id, ago(5 * 60 + 30))).collect();
        let b_clicks: Vec<ClickRecord> = (0..2).map(|_| click(b.id, ago(2 * 60 + 30))).collect();
        let too_old = click(a.id, ago(50 * 60 + 30));
        for batch in [&a_clicks[..], &b_clicks[..], std::slice::from_ref(&too_old)] {
            store.insert_clicks(batch).await.unwrap();
        }
        apply(store, &conversion(&a_clicks[0], EventKind::Ftd, Some(10.0), None)).await;
        apply(store, &conversion(&a_clicks[1], EventKind::Ftd, Some(99.0), None)).await;
        apply(store, &conversion(&a_clicks[1], EventKind::Rejected, None, None)).await;
        apply(store, &conversion(&b_clicks[0], EventKind::Ftd, None, None)).await;
        apply(store, &conversion(&too_old, EventKind::Ftd, Some(1.0), None)).await;

        let mut evidence = store.routing_evidence(now, 48).await.unwrap();
        evidence.clicks.sort_by_key(|&(offer_id, age, _)| (offer_id, age));
        evidence.ftds.sort_by_key(|bucket| (bucket.offer_id, bucket.age_hours, bucket.delay_hours));
        // Clicks by hour counted back from the current one; FTDs by whole hours of age.
        let (a_hour, b_hour) = (hours_back(now, a_clicks[0].created_at), hours_back(now, b_clicks[0].created_at));
        assert_eq!(evidence.clicks, [(a.id, a_hour, 3), (b.id, b_hour, 2)], "{name}: clicks, without the one too old");
        let into_hour = (now.minute() as f64 * 60.0 + now.second() as f64) / 3600.0;
        assert!((evidence.hour_elapsed - into_hour).abs() < 1e-3, "{name}: {} of the hour", evidence.hour_elapsed);
        let bucket = |offer_id, age_hours, payouts, payout_sum, payout_sum_sq| FtdBucket {
            offer_id,
            age_hours,
            delay_hours: age_hours,
            ftds: 1,
            payouts,
            payout_sum,
            payout_sum_sq,
        };
        assert_eq!(
            evidence.ftds,
            [bucket(a.id, 5, 1, 10.0, 100.0), bucket(b.id, 2, 0, 0.0, 0.0)],
            "{name}: FTDs, without the rejected one or the one too old"
        );
        // Each store's run has its own `now`.
        RoutingEvidence { hour_elapsed: 0.0, ..evidence }
    })
    .await;
}

#[tokio::test]
async fn recalculated_weights_follow_the_policy_over_each_active_offers_last_clicks() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 0.7, true)).await.unwrap();
        let b = store.create_offer(&new_offer("beta", 0.7, true)).await.unwrap();
        let idle = store.create_offer(&new_offer("idle", 0.7, false)).await.unwrap();
        let a_clicks: Vec<ClickRecord> = (0..4).map(|i| click(a.id, recent(10 - i))).collect();
        let b_clicks: Vec<ClickRecord> = (0..4).map(|i| click(b.id, recent(10 - i))).collect();
        store.insert_clicks(&a_clicks).await.unwrap();
        store.insert_clicks(&b_clicks).await.unwrap();
        store.insert_clicks(&[click(idle.id, recent(5))]).await.unwrap();
        // Alpha's oldest click falls outside a window of three; its rejected FTD counts for nothing.
        apply(store, &conversion(&a_clicks[0], EventKind::Deposit, Some(50.0), Some("d"))).await;
        apply(store, &conversion(&a_clicks[1], EventKind::Ftd, Some(100.0), None)).await;
        apply(store, &conversion(&a_clicks[1], EventKind::Rejected, None, None)).await;
        apply(store, &conversion(&a_clicks[2], EventKind::Ftd, Some(20.0), None)).await;
        apply(store, &conversion(&a_clicks[3], EventKind::Deposit, Some(10.0), Some("e"))).await;
        apply(store, &conversion(&b_clicks[3], EventKind::Ftd, Some(10.0), None)).await;

        let version = store.routing_version().await.unwrap();
        let policy = WeightPolicy { min_weight: 0.1, min_clicks: 2 };
        let weighted = store.recalculate_weights(3, &policy).await.unwrap().expect("no other recalculation");
        let windows: Vec<OfferWindow> = weighted.iter().map(|offer| offer.window).collect();
        assert_eq!(
            windows,
            [
                OfferWindow { offer_id: a.id, clicks: 3, ftds: 1, revenue: 30.0 },
                OfferWindow { offer_id: b.id, clicks: 3, ftds: 1, revenue: 10.0 },
            ],
            "{name}: the active offers' windows"
        );
        let evs: Vec<f64> = weighted.iter().map(|offer| offer.ev).collect();
        assert_eq!(evs, [10.0, 10.0 / 3.0], "{name}");
        let weights: Vec<f64> = weighted.iter().map(|offer| offer.weight).collect();
        let beta_weight = (10.0 / 3.0) / 10.0;
        assert_eq!(weights, [1.0, beta_weight], "{name}: EV over the best EV");

        assert_eq!(store.routing_version().await.unwrap(), version + 1, "{name}: one bump");
        let saved: Vec<f64> = store.list_offers(false).await.unwrap().iter().map(|offer| offer.weight).collect();
        assert_eq!(saved, [1.0, beta_weight, 0.7], "{name}: saved, the inactive offer untouched");
        assert_eq!(s.db.count("SELECT count(*) FROM weight_history").await, 2, "{name}: history");
        weighted
    })
    .await;
}

/// A click of `country` on `device` with `source`, a bot or not, at `at`.
fn visit(
    offer_id: i64,
    at: OffsetDateTime,
    country: &str,
    device: DeviceClass,
    source: Option<&str>,
    is_bot: bool,
) -> ClickRecord {
    ClickRecord {
        country: Country::from_code(country),
        device: Some(device),
        source: source.map(Into::into),
        is_bot,
        log_slot: None,
        is_fallback: offer_id == FALLBACK_OFFER_ID,
        ..click(offer_id, at)
    }
}

#[tokio::test]
async fn grouped_stats_count_people_bots_and_money_per_segment_from_rollups_and_edges() {
    use DeviceClass::{Desktop, Mobile};
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap().id;
        let b = store.create_offer(&new_offer("beta", 1.0, true)).await.unwrap().id;
        // Whole hours (from the rollups) and a partial last hour (from raw clicks).
        let t0 = datetime!(2026-02-02 10:00 UTC);
        let clicks = [
            visit(a, t0 + Duration::minutes(5), "DE", Mobile, Some("fb"), false),
            visit(a, t0 + Duration::minutes(65), "DE", Desktop, Some("fb"), false),
            visit(a, t0 + Duration::minutes(70), "DE", Mobile, None, true),
            visit(b, t0 + Duration::minutes(20), "BR", Mobile, Some("tt"), false),
            visit(b, t0 + Duration::minutes(125), "BR", Mobile, Some("tt"), false),
            visit(FALLBACK_OFFER_ID, t0 + Duration::minutes(30), "US", Desktop, None, false),
        ];
        store.insert_clicks(&clicks).await.unwrap();
        apply(store, &conversion(&clicks[0], EventKind::Ftd, Some(50.0), None)).await;
        apply(store, &conversion(&clicks[0], EventKind::Deposit, Some(20.0), Some("d1"))).await;
        apply(store, &conversion(&clicks[4], EventKind::Ftd, Some(30.0), None)).await;
        let range = TimeRange { from: Some(t0), to: Some(t0 + Duration::minutes(130)) };
        let grouped = async |by_offer, dimension| {
            let mut rows = store.segment_stats(range, Grouping { by_offer, dimension }).await.unwrap();
            rows.sort_by(|x, y| (x.offer_id, &x.value).cmp(&(y.offer_id, &y.value)));
            rows
        };
        let row = |offer_id: Option<i64>, value: Option<&str>, clicks, bots, ftds, revenue| SegmentStats {
            offer_id,
            value: value.map(str::to_owned),
            clicks,
            bots,
            ftds,
            revenue,
        };
        let by_offer = grouped(true, None).await;
        assert_eq!(
            by_offer,
            [
                row(Some(FALLBACK_OFFER_ID), None, 1, 0, 0, 0.0),
                row(Some(a), None, 2, 1, 1, 70.0),
                row(Some(b), None, 2, 0, 1, 30.0),
            ],
            "{name}"
        );
        let by_country = grouped(false, Some(Dimension::Country)).await;
        assert_eq!(
            by_country,
            [
                row(None, Some("BR"), 2, 0, 1, 30.0),
                row(None, Some("DE"), 2, 1, 1, 70.0),
                row(None, Some("US"), 1, 0, 0, 0.0)
            ],
            "{name}"
        );
        let by_offer_and_device = grouped(true, Some(Dimension::Device)).await;
        assert_eq!(
            by_offer_and_device,
            [
                row(Some(FALLBACK_OFFER_ID), Some("desktop"), 1, 0, 0, 0.0),
                row(Some(a), Some("desktop"), 1, 0, 0, 0.0),
                row(Some(a), Some("mobile"), 1, 1, 1, 70.0),
                row(Some(b), Some("mobile"), 2, 0, 1, 30.0),
            ],
            "{name}"
        );
        let by_source = grouped(false, Some(Dimension::Source)).await;
        assert_eq!(
            by_source,
            // No source: the bot and the fallback click.
            [row(None, None, 1, 1, 0, 0.0), row(None, Some("fb"), 2, 0, 1, 70.0), row(None, Some("tt"), 2, 0, 1, 30.0)],
            "{name}"
        );
        // Bots are not clicks of people in the plain stats either.
        let plain = stats(store).await;
        assert_eq!(plain.iter().map(|o| o.clicks).collect::<Vec<_>>(), [2, 2], "{name}");
        (by_offer, by_country, by_offer_and_device, by_source)
    })
    .await;
}

#[tokio::test]
async fn daily_totals_count_the_days_clicks_and_unrejected_ftds() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap().id;
        let b = store.create_offer(&new_offer("beta", 1.0, true)).await.unwrap().id;
        let now = OffsetDateTime::now_utc();
        let day_start = now.replace_time(time::Time::MIDNIGHT);
        let yesterday = day_start - Duration::hours(2);
        let today = now.max(day_start + Duration::seconds(1)) - Duration::seconds(1);
        let clicks = [
            click(a, yesterday),
            click(a, today),
            visit(a, today, "DE", DeviceClass::Mobile, None, true),
            click(b, today),
            click(b, yesterday),
        ];
        store.insert_clicks(&clicks).await.unwrap();
        // FTDs count by their arrival (today), whatever the click's day; a rejected one does not.
        apply(store, &conversion(&clicks[0], EventKind::Ftd, None, None)).await;
        apply(store, &conversion(&clicks[1], EventKind::Ftd, None, None)).await;
        apply(store, &conversion(&clicks[3], EventKind::Ftd, None, None)).await;
        apply(store, &conversion(&clicks[3], EventKind::Rejected, None, None)).await;
        let totals = store.daily_totals(day_start).await.unwrap();
        assert_eq!(
            totals,
            [DailyTotal { offer_id: a, clicks: 2, ftds: 2 }, DailyTotal { offer_id: b, clicks: 1, ftds: 0 }],
            "{name}: bots are sent to the casino and count against a click cap"
        );
        totals.iter().map(|t| (t.clicks, t.ftds)).collect::<Vec<_>>()
    })
    .await;
}

#[tokio::test]
async fn bots_are_no_exposure_for_either_weight_engine() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap().id;
        let people: Vec<ClickRecord> = (0..3).map(|i| click(a, recent(90 + i))).collect();
        let bots: Vec<ClickRecord> =
            (0..5).map(|i| visit(a, recent(80 + i), "US", DeviceClass::Desktop, None, true)).collect();
        store.insert_clicks(&[people.clone(), bots].concat()).await.unwrap();
        apply(store, &conversion(&people[0], EventKind::Ftd, Some(30.0), None)).await;
        let evidence = store.routing_evidence(OffsetDateTime::now_utc(), 24).await.unwrap();
        let exposure: u64 = evidence.clicks.iter().map(|&(_, _, n)| n).sum();
        assert_eq!(exposure, 3, "{name}: the Thompson engine sees only the clicks of people");
        let policy = WeightPolicy { min_weight: 0.1, min_clicks: 1 };
        let weighted = store.recalculate_weights(1000, &policy).await.unwrap().unwrap();
        assert_eq!(
            weighted[0].window,
            OfferWindow { offer_id: a, clicks: 3, ftds: 1, revenue: 30.0 },
            "{name}: nor EV"
        );
        (exposure, weighted[0].window.clicks)
    })
    .await;
}

#[tokio::test]
async fn segment_evidence_counts_people_and_ftds_per_segment_since_the_segment_rollup_began() {
    use DeviceClass::{Desktop, Mobile};
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let a = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap().id;
        let at = recent(0);
        let de_mobile: Vec<ClickRecord> = (0..3).map(|_| visit(a, at, "DE", Mobile, None, false)).collect();
        let fr_desktop: Vec<ClickRecord> = (0..2).map(|_| visit(a, at, "FR", Desktop, Some("fb"), false)).collect();
        let others = [visit(a, at, "DE", Mobile, None, true), visit(FALLBACK_OFFER_ID, at, "DE", Mobile, None, false)];
        // A click from before the store was first opened (a replayed journal, an upgrade): it and its
        // FTD count over all traffic, but in no segment, which has no clicks of that time to weigh.
        let before = visit(a, recent(3 * 60), "DE", Mobile, None, false);
        store
            .insert_clicks(&[de_mobile.clone(), fr_desktop, others.to_vec(), vec![before.clone()]].concat())
            .await
            .unwrap();
        apply(store, &conversion(&de_mobile[0], EventKind::Ftd, Some(50.0), None)).await;
        apply(store, &conversion(&before, EventKind::Ftd, Some(80.0), None)).await;

        let now = OffsetDateTime::now_utc();
        let mut evidence = store.routing_evidence(now, 24).await.unwrap();
        let key = |country: &str, device| SegmentDims::DEFAULT.key(Country::from_code(country).unwrap(), device, None);
        evidence.segments.clicks.sort();
        let hour = hours_back(now, at);
        assert_eq!(
            evidence.segments.clicks,
            [(a, hour, key("DE", Mobile), 3), (a, hour, key("FR", Desktop), 2)],
            "{name}: people's clicks per segment, not bots, the fallback or clicks from before"
        );
        assert_eq!(
            evidence.segments.ftds,
            [SegmentFtds {
                offer_id: a,
                age_hours: ((now - at).whole_hours()) as usize,
                segment: key("DE", Mobile),
                ftds: 1,
                payouts: 1,
                payout_sum: 50.0
            }],
            "{name}: the FTD of a click from before is not a segment's"
        );
        assert_eq!(evidence.ftds.iter().map(|b| b.ftds).sum::<u64>(), 2, "{name}: both count over all traffic");
        evidence.segments
    })
    .await;
}

/// The log lines' outcomes, oldest first.
async fn log_outcomes(store: &dyn Store) -> Vec<PostbackOutcome> {
    let query = PostbackLogQuery { limit: 100, ..PostbackLogQuery::default() };
    let mut lines: Vec<_> =
        store.postback_log(&query).await.unwrap().into_iter().map(|row| row.entry.outcome).collect();
    lines.reverse();
    lines
}

#[tokio::test]
async fn held_postbacks_wait_for_their_clicks_once_each_within_limits_and_expire() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let offer = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let other = store.create_offer(&new_offer("beta", 1.0, true)).await.unwrap();
        let (early, lost) = (click(offer.id, recent(1)), click(offer.id, recent(1)));
        let now = recent(0);
        let held = |click: &ClickRecord, kind: EventKind, tid: Option<&str>| HeldPostback {
            click_id: click.click_id,
            offer_id: click.offer_id,
            kind,
            payout: Some(120.5),
            currency: "EUR".to_owned(),
            tid: tid.map(str::to_owned),
            external_player_id: Some("p-1".to_owned()),
            expires_at: now + Duration::minutes(10),
        };
        let log = |held: &HeldPostback| log_for(&conversion(&early, held.kind, held.payout, held.tid.as_deref()));
        let limits = HoldLimits { per_offer: 3, total: 4 };
        let ftd = held(&early, EventKind::Ftd, None);
        let deposits = [held(&early, EventKind::Deposit, Some("d-1")), held(&early, EventKind::Deposit, Some("d-2"))];
        let mut outcomes = vec![store.hold_postback(&ftd, &log(&ftd), limits).await.unwrap()];
        outcomes.push(store.hold_postback(&ftd, &log(&ftd), limits).await.unwrap());
        for deposit in &deposits {
            outcomes.push(store.hold_postback(deposit, &log(deposit), limits).await.unwrap());
        }
        let fourth = held(&lost, EventKind::Reg, None);
        outcomes.push(store.hold_postback(&fourth, &log(&fourth), limits).await.unwrap());
        let elsewhere = HeldPostback { offer_id: other.id, ..held(&lost, EventKind::Ftd, None) };
        outcomes.push(store.hold_postback(&elsewhere, &log(&elsewhere), limits).await.unwrap());
        let full = HeldPostback { offer_id: other.id, ..held(&lost, EventKind::Reg, None) };
        outcomes.push(store.hold_postback(&full, &log(&full), limits).await.unwrap());
        use HoldOutcome::*;
        assert_eq!(
            outcomes,
            [Held, Duplicate, Held, Held, Full, Held, Full],
            "{name}: a repeat is a duplicate (two tids are two events), and the limits hold per offer and in all"
        );
        assert_eq!(s.db.count("SELECT count(*) FROM held_postbacks").await, 4, "{name}");
        use PostbackOutcome::{Accepted, Duplicate as Dup, Expired, Pending};
        assert_eq!(log_outcomes(store).await, [Pending, Dup, Pending, Pending, Pending], "{name}");

        let lease = std::time::Duration::from_secs(60);
        assert!(store.claim_held_postbacks(now, lease, 10).await.unwrap().is_empty(), "{name}: no click stored yet");
        store.insert_clicks(std::slice::from_ref(&early)).await.unwrap();
        assert_eq!(
            store.hold_postback(&held(&early, EventKind::Reg, None), &log(&ftd), limits).await.unwrap(),
            ClickStored,
            "{name}: nothing is held for a stored click"
        );
        let claimed = store.claim_held_postbacks(now, lease, 10).await.unwrap();
        assert_eq!(
            claimed.iter().map(|c| c.held.clone()).collect::<Vec<_>>(),
            [ftd.clone(), deposits[0].clone(), deposits[1].clone()],
            "{name}"
        );
        assert!(claimed.iter().all(|c| c.click_offer_id == offer.id && c.clicked_at == early.created_at), "{name}");
        assert_eq!(claimed[0].log.outcome, Pending, "{name}");
        assert_eq!(claimed[0].log.ignored_fields.as_deref(), Some("sub1, aff_id"), "{name}: the line as it arrived");
        assert!(
            store.claim_held_postbacks(now, lease, 10).await.unwrap().is_empty(),
            "{name}: claimed ones are not claimed again while their lease lasts"
        );
        let after_lease = now + Duration::seconds(61);
        assert_eq!(store.claim_held_postbacks(after_lease, lease, 10).await.unwrap().len(), 3, "{name}: then they are");
        for postback in &claimed {
            store.apply_conversion(&postback.conversion(), &postback.log).await.unwrap();
            store.release_held_postback(postback).await.unwrap();
        }
        assert_eq!(s.db.count("SELECT count(*) FROM held_postbacks").await, 1, "{name}: the applied ones are gone");
        assert_eq!(s.db.count("SELECT count(*) FROM ftd_events").await, 1, "{name}");
        assert_eq!(s.db.count("SELECT count(*) FROM deposits").await, 2, "{name}");

        assert_eq!(store.expire_held_postbacks(now).await.unwrap(), 0, "{name}: not yet");
        assert_eq!(store.expire_held_postbacks(now + Duration::minutes(11)).await.unwrap(), 1, "{name}");
        assert_eq!(s.db.count("SELECT count(*) FROM held_postbacks").await, 0, "{name}");
        assert_eq!(
            log_outcomes(store).await,
            [Dup, Expired, Accepted, Accepted, Accepted],
            "{name}: each pending line gave way to its outcome, or says expired"
        );
        outcomes
    })
    .await;
}

#[tokio::test]
async fn dashboard_sessions_are_found_by_hash_until_they_expire_or_are_deleted() {
    on_both(async |sut: &StoreUnderTest| {
        let store = &*sut.store;
        let now = datetime!(2026-12-04 12:00:00 UTC);
        let session = |id: &str, created_at: OffsetDateTime, hours: i64| DashboardSession {
            id_hash: format!("hash-{id}"),
            csrf_token: format!("csrf-{id}"),
            created_at,
            expires_at: created_at + Duration::hours(hours),
        };
        let (old, current) = (session("old", now - Duration::hours(13), 12), session("current", now, 12));
        store.create_session(&old).await.unwrap();
        // Expired an hour ago: not found, whatever its hash.
        assert_eq!(store.find_session("hash-old", now).await.unwrap(), None);
        assert_eq!(store.find_session("hash-old", now - Duration::hours(2)).await.unwrap(), Some(old.clone()));
        // A new session deletes the expired ones.
        store.create_session(&current).await.unwrap();
        assert_eq!(sut.db.count("SELECT count(*) FROM dashboard_sessions").await, 1);
        assert_eq!(store.find_session("hash-current", now + Duration::hours(11)).await.unwrap(), Some(current.clone()));
        assert_eq!(
            store.find_session("hash-current", now + Duration::hours(12)).await.unwrap(),
            None,
            "ends at expiry"
        );
        assert_eq!(store.find_session("current", now).await.unwrap(), None, "found by hash only");
        store.delete_session("hash-current").await.unwrap();
        store.delete_session("hash-current").await.unwrap();
        assert_eq!(store.find_session("hash-current", now).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn hourly_figures_add_up_each_offers_clicks_and_events_by_the_hour_of_the_click() {
    on_both(async |sut: &StoreUnderTest| {
        let store = &*sut.store;
        let alpha = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let (h0, h1) = (datetime!(2026-12-04 10:00:00 UTC), datetime!(2026-12-04 11:00:00 UTC));
        let clicks = [
            click(alpha.id, h0 + Duration::minutes(5)),
            click(alpha.id, h0 + Duration::minutes(59)),
            ClickRecord { is_bot: true, ..click(alpha.id, h0 + Duration::minutes(30)) },
            click(alpha.id, h1 + Duration::minutes(1)),
            click(alpha.id, h1 - Duration::hours(2)),
        ];
        store.insert_clicks(&clicks).await.unwrap();
        apply(store, &conversion(&clicks[0], EventKind::Ftd, Some(100.0), None)).await;
        apply(store, &conversion(&clicks[0], EventKind::Deposit, Some(25.5), Some("t1"))).await;
        apply(store, &conversion(&clicks[1], EventKind::Reg, None, None)).await;
        apply(store, &conversion(&clicks[3], EventKind::Ftd, Some(40.0), None)).await;
        // The click two hours before the range is outside it, and so are its events.
        apply(store, &conversion(&clicks[4], EventKind::Ftd, Some(999.0), None)).await;
        let figures = store.hourly_figures(h0, h1 + Duration::HOUR).await.unwrap();
        let figure =
            |clicks, bots, registrations, ftds, revenue| Figures { clicks, bots, registrations, ftds, revenue };
        assert_eq!(
            figures,
            [
                HourlyFigures { offer_id: alpha.id, hour: h0, figures: figure(2, 1, 1, 1, 125.5) },
                HourlyFigures { offer_id: alpha.id, hour: h1, figures: figure(1, 0, 0, 1, 40.0) },
            ]
        );
        figures
    })
    .await;
}

#[tokio::test]
async fn the_latest_clicks_come_newest_first_and_the_routing_history_keeps_one_share_per_slot() {
    on_both(async |sut: &StoreUnderTest| {
        let store = &*sut.store;
        let alpha = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let clicks: Vec<ClickRecord> = (0..5).map(|i| click(alpha.id, recent(10 - i))).collect();
        store.insert_clicks(&clicks).await.unwrap();
        let latest = store.latest_clicks(3).await.unwrap();
        let ids: Vec<String> = latest.iter().map(|c| c.click_id.clone()).collect();
        let newest: Vec<String> = clicks.iter().rev().take(3).map(|c| c.click_id.to_string()).collect();
        assert_eq!(ids, newest);
        assert_eq!((latest[0].country.as_deref(), latest[0].device.as_deref()), (Some("DE"), Some("desktop")));
        assert_eq!((latest[0].source.as_deref(), latest[0].is_bot), (Some("src"), false));

        let slot = datetime!(2026-12-04 12:10:00 UTC);
        let share = |slot, offer_id, traffic_share, posterior: Option<(f64, f64)>| RoutingShare {
            slot,
            offer_id,
            traffic_share,
            epc_mean: posterior.map(|p| p.0),
            probability_best: posterior.map(|p| p.1),
        };
        store.record_routing(&[share(slot, 1, 1.0, None)]).await.unwrap();
        // The slot's second record (another offer came) replaces the first's share.
        store.record_routing(&[share(slot, 1, 0.6, Some((2.5, 0.6))), share(slot, 2, 0.4, None)]).await.unwrap();
        let next = slot + Duration::minutes(10);
        store.record_routing(&[share(next, 1, 0.7, None)]).await.unwrap();
        let history = store.routing_history(slot, next).await.unwrap();
        assert_eq!(history, [share(slot, 1, 0.6, Some((2.5, 0.6))), share(slot, 2, 0.4, None)]);
        assert_eq!(store.routing_history(slot, next + Duration::SECOND).await.unwrap().len(), 3);
        (ids.len(), history)
    })
    .await;
}

#[tokio::test]
async fn the_event_rollup_follows_every_event_rejection_and_late_payout() {
    on_both(async |sut: &StoreUnderTest| {
        let store = &*sut.store;
        let alpha = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let beta = store.create_offer(&new_offer("beta", 1.0, true)).await.unwrap();
        let at = datetime!(2026-12-04 09:30:00 UTC);
        let clicks: Vec<ClickRecord> = (0..8)
            .map(|i| {
                let offer = if i % 2 == 0 { alpha.id } else { beta.id };
                let mut click = click(offer, at + Duration::minutes(20 * i));
                click.source = Some(format!("src-{}", i % 3).into());
                click.country = Country::from_code(["DE", "GB"][i as usize % 2]);
                click
            })
            .collect();
        store.insert_clicks(&clicks).await.unwrap();
        let (ftd, payout, reg, deposit, rejected) =
            (EventKind::Ftd, EventKind::Payout, EventKind::Reg, EventKind::Deposit, EventKind::Rejected);
        let events = [
            (0, ftd, Some(120.25), None),
            (0, ftd, Some(120.25), None), // a repeat: nothing
            (1, ftd, None, None),
            (1, payout, Some(60.0), None), // a late payout
            (2, ftd, Some(80.0), None),
            (2, rejected, None, None), // takes the FTD and its payout out
            (3, ftd, None, None),
            (3, rejected, None, None),
            (3, payout, Some(10.0), None), // no FTD left to pay
            (4, reg, None, None),
            (4, reg, None, None),
            (5, deposit, Some(15.5), Some("t1")),
            (6, deposit, Some(4.5), Some("t1")), // another offer's transaction id: its own
            (5, deposit, Some(15.5), Some("t1")), // a repeat
            (7, reg, None, None),
            (7, ftd, Some(30.0), None),
        ];
        for (i, kind, payout, tid) in events {
            apply(store, &conversion(&clicks[i], kind, payout, tid)).await;
        }
        sut.db.assert_event_rollup_matches_the_events().await;
        let mut figures = store.hourly_figures(at - Duration::minutes(30), at + Duration::hours(3)).await.unwrap();
        figures.iter_mut().for_each(|hour| hour.figures.revenue = (hour.figures.revenue * 100.0).round() / 100.0);
        figures
    })
    .await;
}

/// A day's worth of time.
fn days(n: i64) -> Duration {
    Duration::days(n)
}

#[tokio::test]
async fn retention_removes_old_clicks_and_keeps_their_events_and_figures() {
    on_both(async |s: &StoreUnderTest| {
        let (store, name) = (&*s.store, s.name);
        let offer = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
        let now = recent(0);
        // Clicks of today and of 20 days ahead; the upkeep runs as if 40 days had passed.
        let old: Vec<ClickRecord> = (0..3).map(|i| click(offer.id, now - Duration::minutes(i))).collect();
        let young = click(offer.id, now + days(20));
        store.insert_clicks(&old).await.unwrap();
        store.insert_clicks(std::slice::from_ref(&young)).await.unwrap();
        apply(store, &conversion(&old[0], EventKind::Ftd, Some(50.0), None)).await;
        apply(store, &conversion(&young, EventKind::Reg, None, None)).await;
        let before = stats(store).await;
        s.db.assert_event_rollup_matches_the_events().await;
        let rollup = "SELECT * FROM event_rollup_hourly ORDER BY dimension, hour, offer_id, value";
        let rollup_before = s.db.rows(rollup).await;

        let upkeep = ClickUpkeep { now: now + days(40), partition_days: 1, retention: Some(days(30)) };
        let done = store.maintain_clicks(upkeep).await.unwrap();
        assert_eq!(s.db.click_ids().await, [young.click_id], "{name}: only the click within retention is kept");
        assert_eq!(store.click_owner(old[0].click_id).await.unwrap(), None, "{name}");
        assert!(store.click_owner(young.click_id).await.unwrap().is_some(), "{name}");
        assert_eq!(stats(store).await, before, "{name}: the figures come from the rollups, which are kept");
        assert_eq!(s.db.count("SELECT count(*) FROM ftd_events").await, 1, "{name}: events are kept");
        assert_eq!(s.db.rows(rollup).await, rollup_before, "{name}: the event rollup is kept whole");

        // No event can be stored for a click that is not (or no longer) stored.
        let orphan = store
            .apply_conversion(
                &conversion(&old[1], EventKind::Reg, None, None),
                &log_for(&conversion(&old[1], EventKind::Reg, None, None)),
            )
            .await;
        assert!(!matches!(orphan, Ok(ConversionOutcome::Recorded)), "{name}: {orphan:?}");
        assert_eq!(s.db.count("SELECT count(*) FROM registrations").await, 1, "{name}: only the young click's");

        let again = store.maintain_clicks(upkeep).await.unwrap();
        assert!(again.partitions_dropped.is_empty() && again.clicks_deleted == 0, "{name}: {again:?}");
        let removed = match name {
            "sqlite" => done.clicks_deleted == 3 && done.partitions_dropped.is_empty(),
            _ => done.clicks_deleted == 0 && !done.partitions_dropped.is_empty(),
        };
        assert!(removed, "{name}: SQLite deletes clicks, PostgreSQL drops partitions: {done:?}");
        before
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_sqlite_clicks_in_batches_until_none_is_left() {
    let s = stores::StoreUnderTest::open(support::Backend::Sqlite).await;
    let offer = s.store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
    let now = recent(0);
    let clicks: Vec<ClickRecord> = (0..12_000).map(|i| click(offer.id, now - Duration::milliseconds(i))).collect();
    s.store.insert_clicks(&clicks).await.unwrap();
    let upkeep = ClickUpkeep { now: now + days(2), partition_days: 1, retention: Some(days(1)) };
    let done = s.store.maintain_clicks(upkeep).await.unwrap();
    assert_eq!(done.clicks_deleted, 12_000);
    assert_eq!(s.db.count("SELECT count(*) FROM clicks").await, 0);
    assert_eq!(stats(&*s.store).await[0].clicks, 12_000, "the rollup still counts them");
}

#[tokio::test]
async fn postgresql_lays_its_schema_out_for_one_server_or_for_citus() {
    let Some(s) = stores::postgres().await else { return };
    let citus = s.db.rows("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')").await;
    if citus[0][0].as_deref() != Some("t") {
        assert!(!support::on_citus(), "TEST_STORE=citus, but the test database has no Citus");
        let tids = s.db.rows("SELECT to_regclass('ftd_events_offer_tid') IS NOT NULL, to_regclass('event_tids')").await;
        assert_eq!(tids, [[Some("t".to_owned()), None]], "one server keeps tids unique by its indexes");
        return;
    }
    assert!(support::on_citus());
    // Each table: how it is distributed ('h' hash, 'n' reference), by which column, and with what.
    let layout =
        s.db.rows(
            "SELECT logicalrelid::text, partmethod, COALESCE(column_to_column_name(logicalrelid, partkey), ''),
                    colocationid
             FROM pg_dist_partition WHERE logicalrelid::text NOT LIKE 'click_partitions.%' ORDER BY 1",
        )
        .await;
    let of = |table: &str| {
        let row = layout.iter().find(|row| row[0].as_deref() == Some(table)).unwrap_or_else(|| panic!("{table}"));
        (row[1].clone().unwrap(), row[2].clone().unwrap(), row[3].clone().unwrap())
    };
    let clicks = of("clicks");
    assert_eq!((clicks.0.as_str(), clicks.1.as_str()), ("h", "click_id"));
    for table in ["ftd_events", "payouts", "registrations", "deposits", "held_postbacks"] {
        assert_eq!(of(table), clicks, "{table} lives with its clicks");
    }
    let rollup = of("click_rollup_hourly");
    assert_eq!((rollup.0.as_str(), rollup.1.as_str()), ("h", "offer_id"));
    for table in ["click_rollup_dims", "event_rollup_hourly", "event_tids", "routing_history", "weight_history"] {
        assert_eq!(of(table), rollup, "{table} is sharded by offer, with the rollups");
    }
    for table in ["offers", "routing_state", "segment_rollups"] {
        assert_eq!(of(table).0, "n", "{table} is a reference table");
    }
    let local: Vec<&str> = ["postback_log", "dashboard_sessions", "schema_migrations", "click_partitions.bounds"]
        .into_iter()
        .filter(|table| layout.iter().any(|row| row[0].as_deref() == Some(*table)))
        .collect();
    assert!(local.is_empty(), "{local:?} stay on the coordinator");
    // Every click partition the upkeep makes is distributed with clicks.
    s.store.maintain_clicks(ClickUpkeep { now: recent(0), partition_days: 1, retention: None }).await.unwrap();
    let partitions =
        s.db.rows(
            "SELECT count(*) FILTER (WHERE d.colocationid IS DISTINCT FROM (SELECT colocationid FROM pg_dist_partition
                                                                      WHERE logicalrelid = 'clicks'::regclass)),
                    count(*)
             FROM click_partitions.bounds b
             LEFT JOIN pg_dist_partition d ON d.logicalrelid = ('click_partitions.' || b.name)::regclass",
        )
        .await;
    let made: i64 = partitions[0][1].as_deref().unwrap().parse().unwrap();
    assert!(made >= 8, "a week ahead: {partitions:?}");
    assert_eq!(partitions[0][0].as_deref(), Some("0"), "{partitions:?}");
}

/// The PostgreSQL partition each click is stored in, by click id. On Citus the row is read from a
/// shard of the partition, named after it with the shard's number appended (`d20261204_102015`).
async fn partition_of(s: &StoreUnderTest, click: &ClickRecord) -> String {
    let rows =
        s.db.rows(&format!("SELECT tableoid::regclass::text FROM clicks WHERE click_id = '{}'", click.click_id)).await;
    let table = rows[0][0].clone().unwrap();
    match table.rsplit_once('_') {
        Some((partition, shard)) if support::on_citus() && shard.bytes().all(|b| b.is_ascii_digit()) => {
            partition.to_owned()
        }
        _ => table,
    }
}

#[tokio::test]
async fn postgres_keeps_daily_partitions_a_week_ahead_and_a_click_beyond_them_waits_in_the_default_one() {
    let Some(s) = stores::postgres().await else { return };
    let store = &*s.store;
    let offer = store.create_offer(&new_offer("alpha", 1.0, true)).await.unwrap();
    let now = recent(0);
    let upkeep = ClickUpkeep { now, partition_days: 1, retention: None };
    store.maintain_clicks(upkeep).await.unwrap();
    let covered = s.db.rows("SELECT max(ends) >= now() + interval '7 days' FROM click_partitions.bounds").await;
    assert_eq!(covered[0][0].as_deref(), Some("t"), "partitions reach a week ahead");

    let today = click(offer.id, now);
    let later = click(offer.id, now + days(30));
    store.insert_clicks(&[today.clone(), later.clone()]).await.unwrap();
    let day = |t: OffsetDateTime| format!("click_partitions.d{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    assert_eq!(partition_of(&s, &today).await, day(now));
    assert_eq!(partition_of(&s, &later).await, "click_partitions.other", "no partition covers it yet");

    let done = store.maintain_clicks(ClickUpkeep { now: now + days(30), partition_days: 3, ..upkeep }).await.unwrap();
    assert!(done.partitions_created >= 8, "{done:?}");
    let moved = partition_of(&s, &later).await;
    let bounds =
        s.db.rows(&format!(
            "SELECT ends - starts FROM click_partitions.bounds WHERE 'click_partitions.' || name = '{moved}'"
        ))
        .await;
    assert_eq!(bounds[0][0].as_deref(), Some("3 days"), "{moved}: the new partitions cover CLICK_PARTITION_DAYS");
    assert_eq!(s.db.count("SELECT count(*) FROM click_partitions.other").await, 0, "it moved out of the default");
    assert!(store.click_owner(later.click_id).await.unwrap().is_some());
    assert_eq!(
        store
            .maintain_clicks(ClickUpkeep { now: now + days(30), partition_days: 3, ..upkeep })
            .await
            .unwrap()
            .partitions_created,
        0
    );
}
