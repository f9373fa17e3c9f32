//! Example offers for a first run: three casinos with generated postback secrets.

use crate::secret::generate_secret;
use crate::store::{NewOffer, Offer, Store, StoreResult};

/// Creates the three example offers if the store has no offer yet; returns those created.
pub async fn seed_examples(store: &dyn Store) -> StoreResult<Vec<Offer>> {
    if !store.list_offers(false).await?.is_empty() {
        return Ok(Vec::new());
    }
    let examples = [
        ("Casino Alpha", "https://casino-alpha.example/register"),
        ("Casino Beta", "https://casino-beta.example/signup?btag={click_id}&src={source}"),
        ("Casino Gamma", "https://casino-gamma.example/welcome?ref=aff42"),
    ];
    let mut created = Vec::with_capacity(examples.len());
    for (name, url) in examples {
        let offer = NewOffer {
            name: name.to_owned(),
            casino_url: url.to_owned(),
            weight: 1.0,
            postback_secret: generate_secret(),
            active: true,
            event_aliases: Default::default(),
            targeting: Default::default(),
            daily_caps: Default::default(),
        };
        created.push(store.create_offer(&offer).await?);
    }
    Ok(created)
}
