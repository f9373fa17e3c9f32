//! The Offers pages: the table (how each offer routes, what it earned, its caps used today, its
//! targeting), and the form that creates or edits one through the same validated operations as the
//! admin API, with their messages shown beside the field at fault.

use std::collections::BTreeMap;

use hyper::StatusCode;
use maud::{Markup, html};
use time::OffsetDateTime;

use super::form::Form;
use super::layout::{count, csrf_field, money, percent, shell};
use super::{PREFIX, Visit, failure, page, redirect};
use crate::app::{AppError, OfferChanges, OfferDraft, OfferStanding, Period, RuleChanges};
use crate::conversion::alias_names;
use crate::http::HttpResponse;
use crate::http::admin::DEFAULT_WEIGHT;
use crate::routing::Targeting;
use crate::store::Offer;

/// The targeting rules' fields: form name and label.
const RULES: [(&str, &str); 5] = [
    ("countries", "Countries (only these)"),
    ("blocked_countries", "Blocked countries"),
    ("devices", "Devices (desktop, mobile, tablet)"),
    ("sources", "Sources (exact, or a prefix ending in *)"),
    ("campaigns", "Campaigns (exact, or a prefix ending in *)"),
];

/// Every field of the form, longest name first: the order in which a message is matched to the
/// field it names (`blocked_countries` before `countries`).
const FIELDS: [&str; 12] = [
    "blocked_countries",
    "daily_click_cap",
    "postback_secret",
    "daily_ftd_cap",
    "event_aliases",
    "casino_url",
    "countries",
    "campaigns",
    "devices",
    "sources",
    "weight",
    "name",
];

/// A form's values as shown, and the message of the field at fault.
#[derive(Debug, Default)]
struct FormState {
    values: BTreeMap<&'static str, String>,
    active: bool,
    error: Option<(&'static str, String)>,
}

impl FormState {
    /// The values of a stored offer.
    fn of(offer: &Offer) -> FormState {
        let list = |rule: &Option<Vec<String>>| rule.as_ref().map(|entries| entries.join(", ")).unwrap_or_default();
        let cap = |cap: Option<u64>| cap.map(|cap| cap.to_string()).unwrap_or_default();
        let aliases = alias_names(&offer.event_aliases)
            .into_iter()
            .map(|(word, event)| format!("{word} = {event}"))
            .collect::<Vec<_>>()
            .join("\n");
        let t = &offer.targeting;
        let values = BTreeMap::from([
            ("name", offer.name.clone()),
            ("casino_url", offer.casino_url.clone()),
            ("weight", offer.weight.to_string()),
            ("event_aliases", aliases),
            ("countries", list(&t.countries)),
            ("blocked_countries", list(&t.blocked_countries)),
            ("devices", list(&t.devices)),
            ("sources", list(&t.sources)),
            ("campaigns", list(&t.campaigns)),
            ("daily_click_cap", cap(offer.daily_caps.clicks)),
            ("daily_ftd_cap", cap(offer.daily_caps.ftds)),
        ]);
        FormState { values, active: offer.active, error: None }
    }

    /// The values as submitted.
    fn submitted(form: &Form) -> FormState {
        let values = FIELDS.iter().map(|&field| (field, form.get(field).unwrap_or("").to_owned())).collect();
        FormState { values, active: form.get("active").is_some(), error: None }
    }

    fn value(&self, field: &str) -> &str {
        self.values.get(field).map_or("", String::as_str)
    }

    /// This form with `message` beside the field it names (the first field named, longest names
    /// first; the name field when it names none).
    fn with_error(mut self, message: String) -> FormState {
        let field = FIELDS.into_iter().find(|field| message.contains(field)).unwrap_or("name");
        self.error = Some((field, message));
        self
    }
}

/// What the form says, as the operations take it.
struct Parsed {
    draft: OfferDraft,
    /// Whether a new secret was typed (an edit keeps the secret otherwise).
    new_secret: bool,
}

/// Reads the form into an [`OfferDraft`]; a value that is not even of the right kind fails with a
/// message naming its field.
fn parse(form: &Form) -> Result<Parsed, String> {
    let weight = match form.filled("weight") {
        None => DEFAULT_WEIGHT,
        Some(text) => text.parse().map_err(|_| "weight must be a number".to_owned())?,
    };
    let cap = |field: &str| -> Result<Option<u64>, String> {
        form.filled(field).map(|text| text.parse().map_err(|_| format!("{field} must be a whole number"))).transpose()
    };
    // Entries separated by commas or lines; country codes in capitals, as the API keeps them.
    let list = |field: &str| -> Option<Vec<String>> {
        let country = field.ends_with("countries");
        let entries: Vec<String> = form
            .get(field)
            .unwrap_or("")
            .split([',', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| if country { entry.to_ascii_uppercase() } else { entry.to_owned() })
            .collect();
        (!entries.is_empty()).then_some(entries)
    };
    let mut event_aliases = BTreeMap::new();
    for line in form.get("event_aliases").unwrap_or("").lines().map(str::trim).filter(|line| !line.is_empty()) {
        let (word, event) = line
            .split_once('=')
            .ok_or_else(|| format!("event_aliases: {line:?} must read word = event, one per line"))?;
        event_aliases.insert(word.trim().to_owned(), event.trim().to_owned());
    }
    let secret = form.filled("postback_secret").map(str::to_owned);
    Ok(Parsed {
        new_secret: secret.is_some(),
        draft: OfferDraft {
            name: form.get("name").unwrap_or("").trim().to_owned(),
            casino_url: form.get("casino_url").unwrap_or("").trim().to_owned(),
            weight,
            postback_secret: secret,
            active: form.get("active").is_some(),
            event_aliases,
            targeting: Targeting {
                countries: list("countries"),
                blocked_countries: list("blocked_countries"),
                devices: list("devices"),
                sources: list("sources"),
                campaigns: list("campaigns"),
            },
            daily_click_cap: cap("daily_click_cap")?,
            daily_ftd_cap: cap("daily_ftd_cap")?,
        },
    })
}

/// `GET /dashboard/offers`: every offer, how it routes now, what it did today.
pub(super) async fn list(visit: &Visit<'_>) -> HttpResponse {
    let standings = match visit.app.offer_standings(Period::today(OffsetDateTime::now_utc())).await {
        Ok(standings) => standings,
        Err(error) => return failure(error),
    };
    let content = html! {
        p { a.button #new-offer href={ (PREFIX) "/offers/new" } { "New offer" } }
        div.table-wrap {
            table #offers {
                thead { tr {
                    th { "Offer" } th { "Status" } th { "Traffic share now" } th.num { "P(best)" } th { "EPC (90% interval)" }
                    th { "Caps used today" } th { "Targeting" } th.num { "Clicks today" } th.num { "FTDs today" } th.num { "Revenue today" } th {}
                } }
                tbody {
                    @for standing in &standings { (row(visit, standing)) }
                    @if standings.is_empty() { tr { td colspan="11" { "No offers yet." } } }
                }
            }
        }
    };
    page(StatusCode::OK, shell(visit, "offers", "Offers", content))
}

fn row(visit: &Visit<'_>, standing: &OfferStanding) -> Markup {
    let (offer, report) = (&standing.offer, &standing.report);
    let thompson = report.thompson;
    html! {
        tr data-offer-id=(offer.id) {
            td { a href={ (PREFIX) "/offers/" (offer.id) } { (offer.name) } }
            td { @if offer.active { span.outcome.accepted { "active" } } @else { span.outcome.expired { "inactive" } } }
            td.share { meter min="0" max="1" value=(report.traffic_share) {} " " (percent(report.traffic_share)) }
            td.num { @if let Some(t) = thompson { (percent(t.probability_best)) } @else { "–" } }
            td { @if let Some(t) = thompson { (money(t.epc_mean)) " (" (money(t.epc_interval_90[0])) " – " (money(t.epc_interval_90[1])) ")" } @else { "–" } }
            td { (caps_used(standing)) }
            td { (targeting_summary(&offer.targeting)) }
            td.num { (count(report.stats.clicks)) }
            td.num { (count(report.stats.ftds)) }
            td.num { (money(report.stats.revenue)) }
            td {
                form method="post" action={ (PREFIX) "/offers/" (offer.id) "/active" } {
                    (csrf_field(visit))
                    @if offer.active {
                        input type="hidden" name="active" value="false";
                        button.secondary type="submit" { "Deactivate" }
                    } @else {
                        input type="hidden" name="active" value="true";
                        button.secondary type="submit" { "Activate" }
                    }
                }
            }
        }
    }
}

/// `clicks 120 / 500, FTDs 3 / 10` for the caps an offer has; `none` without.
fn caps_used(standing: &OfferStanding) -> String {
    let caps = standing.offer.daily_caps;
    let (clicks, ftds) = standing.today.unwrap_or((0, 0));
    let mut parts = Vec::new();
    if let Some(cap) = caps.clicks {
        parts.push(format!("clicks {} / {}", count(clicks), count(cap)));
    }
    if let Some(cap) = caps.ftds {
        parts.push(format!("FTDs {} / {}", count(ftds), count(cap)));
    }
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// `countries GB, IE; devices mobile` for the rules an offer has; `everyone` without.
fn targeting_summary(targeting: &Targeting) -> String {
    let rules = [
        ("countries", &targeting.countries),
        ("not", &targeting.blocked_countries),
        ("devices", &targeting.devices),
        ("sources", &targeting.sources),
        ("campaigns", &targeting.campaigns),
    ];
    let parts: Vec<String> =
        rules.iter().filter_map(|(label, rule)| Some(format!("{label} {}", rule.as_ref()?.join(", ")))).collect();
    if parts.is_empty() { "everyone".to_owned() } else { parts.join("; ") }
}

/// `GET /dashboard/offers/new`.
pub(super) fn new_form(visit: &Visit<'_>) -> HttpResponse {
    let state = FormState { active: true, ..FormState::default() };
    page(StatusCode::OK, shell(visit, "offers", "New offer", offer_form(visit, None, &state)))
}

/// `GET /dashboard/offers/{id}`.
pub(super) async fn edit_form(visit: &Visit<'_>, id: i64) -> HttpResponse {
    match visit.app.offer(id).await {
        Ok(offer) => edit_page(visit, &offer, &FormState::of(&offer), false, StatusCode::OK),
        Err(error) => failure(error),
    }
}

/// `POST /dashboard/offers`: creates the offer, or shows the form again with the message.
pub(super) async fn create(visit: &Visit<'_>, form: &Form) -> HttpResponse {
    let invalid = |message: String| {
        let state = FormState::submitted(form).with_error(message);
        page(StatusCode::BAD_REQUEST, shell(visit, "offers", "New offer", offer_form(visit, None, &state)))
    };
    let parsed = match parse(form) {
        Ok(parsed) => parsed,
        Err(message) => return invalid(message),
    };
    match visit.app.create_offer(parsed.draft).await {
        Ok(offer) => redirect(&format!("{PREFIX}/offers/{}", offer.id)),
        Err(AppError::Invalid(message)) => invalid(message),
        Err(error) => failure(error),
    }
}

/// `POST /dashboard/offers/{id}`: saves every field of the form (a blank rule or cap removes it; a
/// blank secret keeps the current one).
pub(super) async fn update(visit: &Visit<'_>, id: i64, form: &Form) -> HttpResponse {
    let offer = match visit.app.offer(id).await {
        Ok(offer) => offer,
        Err(error) => return failure(error),
    };
    let invalid = |message: String| {
        let state = FormState::submitted(form).with_error(message);
        edit_page(visit, &offer, &state, false, StatusCode::BAD_REQUEST)
    };
    let Parsed { draft, new_secret } = match parse(form) {
        Ok(parsed) => parsed,
        Err(message) => return invalid(message),
    };
    let changes = OfferChanges {
        name: Some(draft.name),
        casino_url: Some(draft.casino_url),
        weight: Some(draft.weight),
        postback_secret: draft.postback_secret.filter(|_| new_secret),
        active: Some(draft.active),
        event_aliases: Some(draft.event_aliases),
        targeting: RuleChanges {
            countries: Some(draft.targeting.countries),
            blocked_countries: Some(draft.targeting.blocked_countries),
            devices: Some(draft.targeting.devices),
            sources: Some(draft.targeting.sources),
            campaigns: Some(draft.targeting.campaigns),
        },
        daily_click_cap: Some(draft.daily_click_cap),
        daily_ftd_cap: Some(draft.daily_ftd_cap),
    };
    match visit.app.update_offer(id, changes).await {
        Ok(_) => redirect(&format!("{PREFIX}/offers/{id}?saved=1")),
        Err(AppError::Invalid(message)) => invalid(message),
        Err(error) => failure(error),
    }
}

/// `POST /dashboard/offers/{id}/active`: activates or deactivates it.
pub(super) async fn set_active(visit: &Visit<'_>, id: i64, form: &Form) -> HttpResponse {
    let active = match form.get("active") {
        Some("true") => true,
        Some("false") => false,
        _ => return failure(AppError::invalid("active must be true or false")),
    };
    match visit.app.update_offer(id, OfferChanges { active: Some(active), ..OfferChanges::default() }).await {
        Ok(_) => redirect(&format!("{PREFIX}/offers")),
        Err(error) => failure(error),
    }
}

/// `POST /dashboard/offers/{id}/secret`: the edit page with the postback secret shown (a `POST`, so
/// that the secret is never in a URL, a history or a proxy's log).
pub(super) async fn reveal_secret(visit: &Visit<'_>, id: i64) -> HttpResponse {
    match visit.app.offer(id).await {
        Ok(offer) => edit_page(visit, &offer, &FormState::of(&offer), true, StatusCode::OK),
        Err(error) => failure(error),
    }
}

fn edit_page(
    visit: &Visit<'_>,
    offer: &Offer,
    state: &FormState,
    show_secret: bool,
    status: StatusCode,
) -> HttpResponse {
    let saved = visit.query.split('&').any(|pair| pair == "saved=1");
    let secret = if show_secret { offer.postback_secret.as_str() } else { "SECRET" };
    let template = format!(
        "{}/postback?click_id={{click_id}}&event={{event}}&payout={{payout}}&currency={{currency}}&tid={{transaction_id}}&secret={secret}",
        visit.origin
    );
    let content = html! {
        @if saved { p.saved role="status" { "Saved." } }
        (offer_form(visit, Some(offer.id), state))
        section.card #postback-url {
            h2 { "Postback URL" }
            p.hint { "Give this URL to the casino's platform, with its own macros in place of the {…} placeholders (for example its click id macro for {click_id}). Status words the platform sends can be mapped to events under Event aliases." }
            div.copy-row {
                input #postback-template type="text" readonly value=(template);
                button.secondary type="button" data-copy="#postback-template" { "Copy" }
            }
            @if show_secret {
                p { "Secret: " code #secret { (offer.postback_secret) } }
            } @else {
                form method="post" action={ (PREFIX) "/offers/" (offer.id) "/secret" } {
                    (csrf_field(visit))
                    button.secondary #show-secret type="submit" { "Show secret" }
                }
            }
        }
    };
    page(status, shell(visit, "offers", &offer.name, content))
}

/// The offer form: empty (`id` `None`, creates) or filled (edits).
fn offer_form(visit: &Visit<'_>, id: Option<i64>, state: &FormState) -> Markup {
    let action = match id {
        Some(id) => format!("{PREFIX}/offers/{id}"),
        None => format!("{PREFIX}/offers"),
    };
    let error_of = |name: &str| state.error.as_ref().filter(|(field, _)| *field == name).map(|(_, message)| message);
    let field = |name: &'static str, label: &str, kind: &str, hint: &str| {
        let error = error_of(name);
        html! {
            div.field {
                label for=(name) { (label) }
                input id=(name) name=(name) type=(kind) value=(state.value(name)) aria-invalid=[error.map(|_| "true")];
                @if !hint.is_empty() { small { (hint) } }
                @if let Some(message) = error { p.field-error id={ (name) "-error" } { (message) } }
            }
        }
    };
    let area = |name: &'static str, label: &str, hint: &str| {
        let error = error_of(name);
        html! {
            div.field {
                label for=(name) { (label) }
                textarea id=(name) name=(name) rows="3" aria-invalid=[error.map(|_| "true")] { (state.value(name)) }
                @if !hint.is_empty() { small { (hint) } }
                @if let Some(message) = error { p.field-error id={ (name) "-error" } { (message) } }
            }
        }
    };
    html! {
        form.card.offer-form method="post" action=(action) novalidate {
            (csrf_field(visit))
            (field("name", "Name", "text", ""))
            (field("casino_url", "Offer URL", "url", "Where clicks go; macros such as {click_id} are filled in."))
            (field("weight", "Weight", "text", "Used by the ev strategy only."))
            div.field.check {
                label { input type="checkbox" name="active" value="true" checked[state.active]; " Active (gets traffic)" }
            }
            (field("postback_secret", if id.is_some() { "New postback secret" } else { "Postback secret" }, "password",
                if id.is_some() { "Leave blank to keep the current one." } else { "Leave blank to generate one." }))
            (area("event_aliases", "Event aliases", "One per line: the platform's word = ftd, payout, reg, deposit or rejected."))
            fieldset {
                legend { "Targeting (blank: everyone)" }
                @for (name, label) in RULES { (field(name, label, "text", "")) }
            }
            fieldset {
                legend { "Daily caps (blank: none)" }
                (field("daily_click_cap", "Clicks a day", "text", ""))
                (field("daily_ftd_cap", "FTDs a day", "text", ""))
            }
            button type="submit" { @if id.is_some() { "Save" } @else { "Create offer" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_beside_the_field_it_names() {
        let state = |message: &str| FormState::default().with_error(message.to_owned()).error.unwrap().0;
        assert_eq!(state("casino_url must use http or https"), "casino_url");
        assert_eq!(state("macros may only appear in the path, query or fragment of casino_url"), "casino_url");
        assert_eq!(state("blocked_countries: \"ZZ\" is not a country code"), "blocked_countries");
        assert_eq!(state("countries: \"ZZ\" is not a country code"), "countries");
        assert_eq!(state("something else"), "name");
    }

    #[test]
    fn the_form_reads_lists_aliases_and_blank_caps() {
        let form = Form::parse(
            "name=A&casino_url=https%3A%2F%2Fa.example&weight=&active=true&countries=gb%2C+ie&devices=\
             &event_aliases=first_dep+%3D+ftd%0D%0Achargeback%3Drejected&daily_click_cap=100&daily_ftd_cap=",
        )
        .unwrap();
        let Parsed { draft, new_secret } = parse(&form).unwrap();
        assert_eq!(draft.weight, DEFAULT_WEIGHT);
        assert!(draft.active && !new_secret);
        assert_eq!(draft.targeting.countries, Some(vec!["GB".to_owned(), "IE".to_owned()]));
        assert_eq!(draft.targeting.devices, None);
        assert_eq!(draft.event_aliases.get("first_dep").map(String::as_str), Some("ftd"));
        assert_eq!(draft.event_aliases.get("chargeback").map(String::as_str), Some("rejected"));
        assert_eq!((draft.daily_click_cap, draft.daily_ftd_cap), (Some(100), None));
    }

    #[test]
    fn values_of_the_wrong_kind_name_their_field() {
        let error = |query: &str| parse(&Form::parse(query).unwrap()).err().unwrap();
        assert_eq!(error("weight=heavy"), "weight must be a number");
        assert_eq!(error("daily_ftd_cap=-1"), "daily_ftd_cap must be a whole number");
        assert!(error("event_aliases=first_dep").starts_with("event_aliases:"));
    }
}
