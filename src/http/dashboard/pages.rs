//! The dashboard's read-only pages: Overview, Reports (and its CSV), Routing, Postbacks, Live clicks.
//! Each parses its query, asks [`App`](crate::app::App) for the page's data, and renders it.

use hyper::StatusCode;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use maud::{Markup, html};
use time::{Date, Duration, OffsetDateTime};

use super::chart::{Series, line_chart};
use super::form::Form;
use super::layout::{count, date, money, percent, rate, shell, timestamp};
use super::{PREFIX, Visit, failure, page};
use crate::app::{Bucket, MAX_PERIOD_DAYS, Period, SegmentRow, offer_name};
use crate::http::HttpResponse;
use crate::store::{Dimension, Figures, Grouping, PostbackLogQuery, PostbackOutcome};

/// Postback-log lines per page.
const POSTBACKS_PER_PAGE: u32 = 50;
/// Clicks the live view lists.
const LIVE_CLICKS: u32 = 100;
/// How often the live view reloads, in seconds (read by `dashboard.js`).
const LIVE_REFRESH_SECONDS: u32 = 5;

/// A period as the picker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    Today,
    Yesterday,
    Days7,
    Days30,
    Custom,
}

impl Preset {
    const ALL: [Preset; 5] = [Preset::Today, Preset::Yesterday, Preset::Days7, Preset::Days30, Preset::Custom];

    fn as_str(self) -> &'static str {
        match self {
            Preset::Today => "today",
            Preset::Yesterday => "yesterday",
            Preset::Days7 => "7d",
            Preset::Days30 => "30d",
            Preset::Custom => "custom",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Preset::Today => "Today",
            Preset::Yesterday => "Yesterday",
            Preset::Days7 => "Last 7 days",
            Preset::Days30 => "Last 30 days",
            Preset::Custom => "Custom",
        }
    }
}

/// The period a page was asked for, as chosen and as resolved.
#[derive(Debug)]
struct Chosen {
    preset: Preset,
    period: Period,
    bucket: Bucket,
}

/// Reads `period` (a preset, `today` by default), `from` and `to` (dates, `to` included, for
/// `custom`) and `bucket` (`hour` or `day`; by default hours for up to two days). Times are UTC;
/// today's period ends with the current hour.
fn chosen_period(form: &Form, now: OffsetDateTime) -> Result<Chosen, String> {
    let name = form.filled("period").unwrap_or("today");
    let preset = Preset::ALL
        .into_iter()
        .find(|p| p.as_str() == name)
        .ok_or_else(|| format!("period must be one of today, yesterday, 7d, 30d, custom (got {name:?})"))?;
    let today = Period::today(now);
    let (midnight, next_hour) = (today.from(), today.to());
    let (from, to) = match preset {
        Preset::Today => (midnight, next_hour),
        Preset::Yesterday => (midnight - Duration::DAY, midnight),
        Preset::Days7 => (midnight - Duration::days(6), next_hour),
        Preset::Days30 => (midnight - Duration::days(29), next_hour),
        Preset::Custom => {
            let day = |field: &str| -> Result<OffsetDateTime, String> {
                let text =
                    form.filled(field).ok_or_else(|| format!("{field}: a date is needed for a custom period"))?;
                let format = time::macros::format_description!("[year]-[month]-[day]");
                Date::parse(text, format)
                    .map(|day| day.midnight().assume_utc())
                    .map_err(|_| format!("{field} must be a date such as 2026-12-01"))
            };
            (day("from")?, day("to")? + Duration::DAY)
        }
    };
    let period = Period::new(from, to).map_err(|error| match preset {
        Preset::Custom if from >= to => "from must not be after to".to_owned(),
        _ => error.to_string(),
    })?;
    let bucket = match form.filled("bucket") {
        Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        Some(other) => return Err(format!("bucket must be hour or day (got {other:?})")),
        None if to - from <= Duration::days(2) => Bucket::Hour,
        None => Bucket::Day,
    };
    Ok(Chosen { preset, period, bucket })
}

/// The period picker: a GET form keeping the page's other parameters (`keep`).
fn period_picker(chosen: &Chosen, keep: &[(&str, &str)]) -> Markup {
    let last_day = chosen.period.to() - Duration::DAY;
    html! {
        form.picker method="get" {
            @for (name, value) in keep { input type="hidden" name=(name) value=(value); }
            label { "Period "
                select name="period" {
                    @for preset in Preset::ALL {
                        option value=(preset.as_str()) selected[preset == chosen.preset] { (preset.label()) }
                    }
                }
            }
            label { "From " input type="date" name="from" value=(date(chosen.period.from())); }
            label { "To " input type="date" name="to" value=(date(last_day.max(chosen.period.from()))); }
            label { "By "
                select name="bucket" {
                    option value="hour" selected[chosen.bucket == Bucket::Hour] { "hour" }
                    option value="day" selected[chosen.bucket == Bucket::Day] { "day" }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

/// A page's query string, and the period it asks for.
fn query_and_period(visit: &Visit<'_>) -> Result<(Form, Chosen), String> {
    let form = Form::parse(&visit.query)?;
    let chosen = chosen_period(&form, OffsetDateTime::now_utc())?;
    Ok((form, chosen))
}

fn bad_request(visit: &Visit<'_>, message: &str) -> HttpResponse {
    page(StatusCode::BAD_REQUEST, shell(visit, "", "Bad request", html! { p.field-error { (message) } }))
}

/// The figure cards of a period.
fn totals_cards(totals: &Figures) -> Markup {
    let cards = [
        ("clicks", "Clicks", count(totals.clicks)),
        ("bots", "Bots", count(totals.bots)),
        ("registrations", "Registrations", count(totals.registrations)),
        ("ftds", "FTDs", count(totals.ftds)),
        ("cr", "CR", rate(totals.conversion_rate())),
        ("revenue", "Revenue", money(totals.revenue)),
        ("epc", "EPC", money(totals.epc())),
    ];
    html! {
        dl.cards {
            @for (key, label, value) in cards {
                div.card data-total=(key) { dt { (label) } dd { (value) } }
            }
        }
    }
}

/// `GET /dashboard`: totals, clicks and revenue over time per offer, the traffic share now.
pub(super) async fn overview(visit: &Visit<'_>) -> HttpResponse {
    let (_, chosen) = match query_and_period(visit) {
        Ok(found) => found,
        Err(message) => return bad_request(visit, &message),
    };
    let activity = match visit.app.activity(chosen.period, chosen.bucket).await {
        Ok(activity) => activity,
        Err(error) => return failure(error),
    };
    let labels: Vec<String> = activity
        .buckets
        .iter()
        .map(|&start| match chosen.bucket {
            Bucket::Hour => timestamp(start)[5..16].to_owned(),
            Bucket::Day => date(start),
        })
        .collect();
    let series = |value: fn(&Figures) -> f64| -> Vec<Series<'_>> {
        activity
            .offers
            .iter()
            .filter(|offer| offer.totals.clicks + offer.totals.bots > 0 || offer.totals.revenue > 0.0)
            .map(|offer| Series { name: &offer.name, values: offer.series.iter().map(value).collect() })
            .collect()
    };
    let clicks = series(|f| f.clicks as f64);
    let revenue = series(|f| f.revenue);
    let content = html! {
        (period_picker(&chosen, &[]))
        (totals_cards(&activity.totals))
        div.charts {
            (line_chart("Clicks", &labels, &clicks, |v| count(v.round() as u64)))
            (line_chart("Revenue", &labels, &revenue, money))
        }
        h2 { "Offers" }
        div.table-wrap {
            table {
                thead { tr { th { "Offer" } th { "Traffic share now" } th.num { "Clicks" } th.num { "FTDs" } th.num { "CR" } th.num { "Revenue" } th.num { "EPC" } } }
                tbody {
                    @for offer in &activity.offers {
                        tr {
                            td { (offer.name) }
                            td.share { meter min="0" max="1" value=(offer.traffic_share_now) {} " " (percent(offer.traffic_share_now)) }
                            td.num { (count(offer.totals.clicks)) }
                            td.num { (count(offer.totals.ftds)) }
                            td.num { (rate(offer.totals.conversion_rate())) }
                            td.num { (money(offer.totals.revenue)) }
                            td.num { (money(offer.totals.epc())) }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, shell(visit, "", "Overview", content))
}

/// The report's groupings: query value and label.
const GROUPS: [(&str, &str); 5] =
    [("offer", "Offer"), ("source", "Source"), ("campaign", "Campaign"), ("country", "Country"), ("device", "Device")];

/// The report's sortable columns: query value and label.
const COLUMNS: [(&str, &str); 7] = [
    ("group", "Group"),
    ("clicks", "Clicks"),
    ("bots", "Bots"),
    ("ftds", "FTDs"),
    ("cr", "CR"),
    ("revenue", "Revenue"),
    ("epc", "EPC"),
];

/// A report row's figures, as [`Figures`] (a grouped report counts no registrations).
fn row_figures(row: &SegmentRow) -> Figures {
    Figures {
        clicks: row.stats.clicks,
        bots: row.stats.bots,
        ftds: row.stats.ftds,
        revenue: row.stats.revenue,
        ..Figures::default()
    }
}

/// A report row's group, as shown.
fn row_label(row: &SegmentRow) -> String {
    if row.is_fallback {
        return "fallback URL".to_owned();
    }
    match (&row.offer_name, row.stats.offer_id, &row.stats.value) {
        (Some(name), _, _) => name.clone(),
        (None, Some(id), _) => format!("offer {id}"),
        (None, None, Some(value)) => value.clone(),
        (None, None, None) => "(none)".to_owned(),
    }
}

/// `GET /dashboard/reports`: figures grouped by offer, source, campaign, country or device over a
/// period, sorted by any column; `format=csv` downloads them.
pub(super) async fn reports(visit: &Visit<'_>) -> HttpResponse {
    let (form, chosen) = match query_and_period(visit) {
        Ok(found) => found,
        Err(message) => return bad_request(visit, &message),
    };
    let group = form.filled("group").unwrap_or("offer");
    let grouping = match group {
        "offer" => Grouping { by_offer: true, dimension: None },
        other => match Dimension::parse(other) {
            Some(dimension) => Grouping { by_offer: false, dimension: Some(dimension) },
            None => return bad_request(visit, "group must be one of offer, source, campaign, country, device"),
        },
    };
    let sort = form.filled("sort").unwrap_or("clicks");
    if !COLUMNS.iter().any(|(key, _)| *key == sort) {
        return bad_request(visit, "sort must be one of group, clicks, bots, ftds, cr, revenue, epc");
    }
    let ascending = form.filled("dir") == Some("asc");
    let report = match visit.app.segment_report(chosen.period.range(), grouping).await {
        Ok(report) => report,
        Err(error) => return failure(error),
    };
    let mut rows: Vec<(String, Figures)> = report.rows.iter().map(|row| (row_label(row), row_figures(row))).collect();
    rows.sort_by(|(a_label, a), (b_label, b)| {
        let order = match sort {
            "group" => a_label.cmp(b_label),
            "bots" => a.bots.cmp(&b.bots),
            "ftds" => a.ftds.cmp(&b.ftds),
            "cr" => a.conversion_rate().total_cmp(&b.conversion_rate()),
            "revenue" => a.revenue.total_cmp(&b.revenue),
            "epc" => a.epc().total_cmp(&b.epc()),
            _ => a.clicks.cmp(&b.clicks),
        };
        if ascending { order } else { order.reverse() }
    });
    if form.get("format") == Some("csv") {
        return csv(group, &chosen, &rows);
    }
    let period = [("period", chosen.preset.as_str()), ("bucket", "day")];
    let (from, to) = (date(chosen.period.from()), date(chosen.period.to() - Duration::DAY));
    let link = |sort: &str, dir: &str| {
        format!("{PREFIX}/reports?group={group}&period={}&from={from}&to={to}&sort={sort}&dir={dir}", period[0].1)
    };
    let content = html! {
        form.picker method="get" {
            label { "Group by "
                select name="group" {
                    @for (key, label) in GROUPS { option value=(key) selected[key == group] { (label) } }
                }
            }
            input type="hidden" name="sort" value=(sort);
            input type="hidden" name="dir" value=(if ascending { "asc" } else { "desc" });
            button type="submit" { "Group" }
        }
        (period_picker(&chosen, &[("group", group), ("sort", sort)]))
        p { a.button #csv href={ (link(sort, if ascending { "asc" } else { "desc" })) "&format=csv" } download { "Download CSV" } }
        div.table-wrap {
            table #report {
                thead { tr {
                    @for (key, label) in COLUMNS {
                        @let next = if key == sort && !ascending { "asc" } else { "desc" };
                        @let marker = if key != sort { "" } else if ascending { " ▲" } else { " ▼" };
                        th class=[(key != "group").then_some("num")] aria-sort=[(key == sort).then_some(if ascending { "ascending" } else { "descending" })] {
                            a href=(link(key, next)) { (label) (marker) }
                        }
                    }
                } }
                tbody {
                    @for (label, figures) in &rows {
                        tr {
                            td { (label) }
                            td.num { (count(figures.clicks)) }
                            td.num { (count(figures.bots)) }
                            td.num { (count(figures.ftds)) }
                            td.num { (rate(figures.conversion_rate())) }
                            td.num { (money(figures.revenue)) }
                            td.num { (money(figures.epc())) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="7" { "No clicks in this period." } } }
                }
            }
        }
    };
    page(StatusCode::OK, shell(visit, "reports", "Reports", content))
}

/// The report as CSV (RFC 4180), figures unformatted.
fn csv(group: &str, chosen: &Chosen, rows: &[(String, Figures)]) -> HttpResponse {
    let quote = |text: &str| {
        // A leading = + - @ would make a spreadsheet run the cell as a formula.
        let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
        format!("\"{}\"", text.replace('"', "\"\""))
    };
    let mut body = format!("{group},clicks,bots,ftds,cr,revenue,epc\r\n");
    for (label, f) in rows {
        body.push_str(&format!(
            "{},{},{},{},{:.6},{:.2},{:.4}\r\n",
            quote(label),
            f.clicks,
            f.bots,
            f.ftds,
            f.conversion_rate(),
            f.revenue,
            f.epc()
        ));
    }
    let mut response = page(StatusCode::OK, maud::PreEscaped(body));
    let name = format!(
        "attachment; filename=\"report-{group}-{}-{}.csv\"",
        date(chosen.period.from()),
        date(chosen.period.to() - Duration::DAY)
    );
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    response
}

/// `GET /dashboard/routing`: each offer's traffic share over time, and its posterior now.
pub(super) async fn routing(visit: &Visit<'_>) -> HttpResponse {
    let form = match Form::parse(&visit.query) {
        Ok(form) => form,
        Err(message) => return bad_request(visit, &message),
    };
    let now = OffsetDateTime::now_utc();
    let days = match form.filled("days").map(str::parse::<i64>) {
        None => 7,
        Some(Ok(days)) if (1..=MAX_PERIOD_DAYS).contains(&days) => days,
        Some(_) => return bad_request(visit, &format!("days must be a whole number from 1 to {MAX_PERIOD_DAYS}")),
    };
    let period = match Period::last_days(days, now) {
        Ok(period) => period,
        Err(error) => return failure(error),
    };
    let history = match visit.app.routing_history(period).await {
        Ok(history) => history,
        Err(error) => return failure(error),
    };
    let labels: Vec<String> = history.slots.iter().map(|&slot| timestamp(slot)[5..16].to_owned()).collect();
    let series: Vec<Series<'_>> = history
        .offers
        .iter()
        .map(|offer| Series {
            name: &offer.name,
            values: offer.shares.iter().map(|s| s.unwrap_or(0.0) * 100.0).collect(),
        })
        .collect();
    let content = html! {
        form.picker method="get" {
            label { "Days " input type="number" name="days" min="1" max=(MAX_PERIOD_DAYS) value=(days); }
            button type="submit" { "Show" }
        }
        @if history.slots.is_empty() {
            p { "No routing recorded in this period yet: the router records the shares every ten minutes." }
        } @else {
            (line_chart("Traffic share, %", &labels, &series, |v| format!("{v:.0}%")))
        }
        h2 { "Why: each offer's posterior now" }
        p.hint { "Earnings per click as the routing believes them now (mean and 90% interval, from the last 30 days of evidence), the probability of being the best offer, and the share of new clicks that follows from it. Clicks and FTDs: the last 24 hours." }
        div.table-wrap {
            table #posteriors {
                thead { tr { th { "Offer" } th.num { "Share now" } th.num { "P(best)" } th.num { "EPC" } th { "90% interval" } th.num { "Clicks 24 h" } th.num { "FTDs 24 h" } } }
                tbody {
                    @for offer in history.offers.iter().filter(|offer| offer.now.is_some()) {
                        @let now = offer.now.as_ref();
                        @let thompson = now.and_then(|report| report.thompson);
                        tr {
                            td { (offer.name) }
                            td.num { (percent(now.map_or(0.0, |r| r.traffic_share))) }
                            td.num { @if let Some(t) = thompson { (percent(t.probability_best)) } @else { "–" } }
                            td.num { @if let Some(t) = thompson { (money(t.epc_mean)) } @else { "–" } }
                            td { @if let Some(t) = thompson { (money(t.epc_interval_90[0])) " – " (money(t.epc_interval_90[1])) } @else { "–" } }
                            td.num { (count(now.map_or(0, |r| r.stats.clicks))) }
                            td.num { (count(now.map_or(0, |r| r.stats.ftds))) }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, shell(visit, "routing", "Routing", content))
}

/// `GET /dashboard/postbacks`: the postback log, newest first, filtered by offer and outcome, paged.
pub(super) async fn postbacks(visit: &Visit<'_>) -> HttpResponse {
    let form = match Form::parse(&visit.query) {
        Ok(form) => form,
        Err(message) => return bad_request(visit, &message),
    };
    let number = |field: &str| -> Result<Option<i64>, String> {
        form.filled(field).map(|text| text.parse().map_err(|_| format!("{field} must be a whole number"))).transpose()
    };
    let (offer_id, before_id) = match (number("offer"), number("before")) {
        (Ok(offer), Ok(before)) => (offer, before),
        (Err(message), _) | (_, Err(message)) => return bad_request(visit, &message),
    };
    let outcome = match form.filled("outcome") {
        None => None,
        Some(name) => match PostbackOutcome::parse(name) {
            Some(outcome) => Some(outcome),
            None => return bad_request(visit, "outcome must be one of the outcomes listed in the filter"),
        },
    };
    let query = PostbackLogQuery { offer_id, outcome, before_id, limit: POSTBACKS_PER_PAGE, ..Default::default() };
    let (log, offers) = match tokio::try_join!(visit.app.postback_log(&query), visit.app.list_offers(false)) {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let offer_name = |id: Option<i64>| id.map_or_else(|| "–".to_owned(), |id| offer_name(&offers, id));
    let next = log.next_before_id.map(|before| {
        let mut link = format!("{PREFIX}/postbacks?before={before}");
        if let Some(id) = offer_id {
            link.push_str(&format!("&offer={id}"));
        }
        if let Some(outcome) = outcome {
            link.push_str(&format!("&outcome={}", outcome.as_str()));
        }
        link
    });
    let content = html! {
        form.picker method="get" {
            label { "Offer "
                select name="offer" {
                    option value="" { "all" }
                    @for offer in &offers { option value=(offer.id) selected[Some(offer.id) == offer_id] { (offer.name) } }
                }
            }
            label { "Outcome "
                select name="outcome" {
                    option value="" { "all" }
                    @for o in PostbackOutcome::ALL { option value=(o.as_str()) selected[Some(o) == outcome] { (o.as_str()) } }
                }
            }
            button type="submit" { "Filter" }
        }
        div.table-wrap {
            table #postbacks {
                thead { tr { th { "Received (UTC)" } th { "Offer" } th { "Event" } th.num { "Payout" } th { "Outcome" } th { "Reason" } th { "Click id" } th { "Transaction" } } }
                tbody {
                    @for row in &log.rows {
                        @let entry = &row.entry;
                        tr data-outcome=(entry.outcome.as_str()) {
                            td { (timestamp(entry.received_at)) }
                            td { (offer_name(entry.offer_id)) }
                            td { (entry.event.as_deref().unwrap_or("–")) }
                            td.num { @if let Some(payout) = entry.payout { (money(payout)) " " (entry.currency.as_deref().unwrap_or("")) } @else { "–" } }
                            td { span class={ "outcome " (entry.outcome.as_str()) } { (entry.outcome.as_str()) } }
                            td { (entry.reason.as_deref().unwrap_or("")) }
                            td.mono { (entry.click_id.as_deref().unwrap_or("–")) }
                            td.mono { (entry.tid.as_deref().unwrap_or("")) }
                        }
                    }
                    @if log.rows.is_empty() { tr { td colspan="8" { "No postbacks match." } } }
                }
            }
        }
        @if let Some(next) = next { p { a.button #older href=(next) { "Older" } } }
    };
    page(StatusCode::OK, shell(visit, "postbacks", "Postbacks", content))
}

/// `GET /dashboard/live`: the latest clicks, reloaded every few seconds.
pub(super) async fn live(visit: &Visit<'_>) -> HttpResponse {
    let clicks = match visit.app.latest_clicks(LIVE_CLICKS).await {
        Ok(clicks) => clicks,
        Err(error) => return failure(error),
    };
    let content = html! {
        p.hint #live data-refresh=(LIVE_REFRESH_SECONDS) {
            "The last " (LIVE_CLICKS) " clicks stored, newest first; this page reloads every " (LIVE_REFRESH_SECONDS) " seconds. "
            "Clicks reach the database within a moment of their redirect (the writer batches them)."
        }
        div.table-wrap {
            table #clicks {
                thead { tr { th { "Time (UTC)" } th { "Offer" } th { "Country" } th { "Device" } th { "Source" } th { "Campaign" } th { "Bot" } } }
                tbody {
                    @for live in &clicks {
                        @let click = &live.click;
                        tr data-bot=(click.is_bot) {
                            td { (timestamp(click.created_at)) }
                            td { (live.offer_name) }
                            td { (click.country.as_deref().unwrap_or("–")) }
                            td { (click.device.as_deref().unwrap_or("–")) }
                            td { (click.source.as_deref().unwrap_or("")) }
                            td { (click.campaign.as_deref().unwrap_or("")) }
                            td { @if click.is_bot { span.outcome.invalid { "bot" } } }
                        }
                    }
                    @if clicks.is_empty() { tr { td colspan="7" { "No clicks yet." } } }
                }
            }
        }
    };
    page(StatusCode::OK, shell(visit, "live", "Live clicks", content))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn chosen(query: &str) -> Result<Chosen, String> {
        chosen_period(&Form::parse(query).unwrap(), datetime!(2026-12-04 17:20 UTC))
    }

    #[test]
    fn presets_resolve_to_whole_hours_ending_with_the_current_one() {
        let today = chosen("").unwrap();
        assert_eq!(
            (today.period.from(), today.period.to()),
            (datetime!(2026-12-04 00:00 UTC), datetime!(2026-12-04 18:00 UTC))
        );
        assert_eq!(today.bucket, Bucket::Hour);
        let yesterday = chosen("period=yesterday").unwrap();
        assert_eq!(yesterday.period.from(), datetime!(2026-12-03 00:00 UTC));
        assert_eq!(yesterday.period.to(), datetime!(2026-12-04 00:00 UTC));
        let week = chosen("period=7d").unwrap();
        assert_eq!(week.period.from(), datetime!(2026-11-28 00:00 UTC));
        assert_eq!(week.bucket, Bucket::Day);
        assert_eq!(chosen("period=30d&bucket=hour").unwrap().bucket, Bucket::Hour);
    }

    #[test]
    fn a_custom_period_includes_its_last_day() {
        let custom = chosen("period=custom&from=2026-11-01&to=2026-11-30").unwrap();
        assert_eq!(custom.period.from(), datetime!(2026-11-01 00:00 UTC));
        assert_eq!(custom.period.to(), datetime!(2026-12-01 00:00 UTC));
    }

    #[test]
    fn bad_periods_name_their_field() {
        assert!(chosen("period=week").unwrap_err().starts_with("period must be"));
        assert!(chosen("period=custom&to=2026-11-30").unwrap_err().starts_with("from:"));
        assert!(chosen("period=custom&from=2026-11-31&to=2026-11-30").unwrap_err().starts_with("from must be a date"));
        assert_eq!(chosen("period=custom&from=2026-11-30&to=2026-11-01").unwrap_err(), "from must not be after to");
        assert!(chosen("bucket=week").unwrap_err().starts_with("bucket must be"));
    }
}
