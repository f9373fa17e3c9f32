//! Bots and link-preview fetchers, told from the `User-Agent` by the community list
//! crawler-user-agents (vendored in `data/bots/`) plus a few agents it lacks ([`EXTRA_PATTERNS`]).
//!
//! A link posted in Telegram, WhatsApp, Slack or iMessage is fetched at once by the messenger's
//! preview bot; counted as a click it would spend an offer's budget and skew its conversion rate.
//!
//! Why not a regex: the list has ~1,500 patterns; `regex::bytes::RegexSet` takes ~0.5 µs per agent
//! and one alternation `Regex` ~0.35 µs, most of the click budget (`benches/visitor.rs`). But almost
//! every pattern contains a literal that any match must contain (1,117 of them are nothing but a
//! literal). So, at start-up, each pattern is parsed (`regex-syntax`) and its best required literal
//! drawn out. Each literal of 4 bytes or more gets an anchor: its first 4-byte window that common
//! browser agents do not contain ([`COMMON_AGENTS`]). The scan hashes every 4-byte window of the
//! agent into a 65,536-bit filter (8 KiB, in L1); only a set bit leads to the anchors of that
//! bucket and a comparison of the whole literal. The few 3-byte literals have their own 2 KiB
//! filter. A literal that is a whole pattern is a bot at once; any other is confirmed by that
//! pattern's own small DFA (`regex-automata`, fully built, immutable). Patterns with no usable
//! literal (none in 1.60.0) would be run on every agent. ~0.18 µs for a 111-byte desktop Chrome
//! agent, ~0.2 µs over the bench's 40-agent mix (one alternation `Regex`: 0.20 and 0.30 µs; an
//! Aho-Corasick DFA over the same literals: 0.24 and 0.35 µs); compiling the list takes ~7 ms. Tests check the result equals the plain full-list
//! `RegexSet` on every instance the list gives and on browser agents.
//!
//! The list's patterns are case-sensitive, as its own validators use them.
//!
//! Invariants: [`BotList::is_bot`] allocates nothing, takes no lock and makes no syscall: the
//! filters, anchors and DFAs are immutable and searched with state on the stack.

use std::collections::{HashMap, HashSet};

use regex_automata::Input;
use regex_automata::dfa::{Automaton, dense};
use regex_syntax::hir::{Hir, HirKind};

/// The vendored crawler-user-agents list (`data/bots/README.md` says which version).
const LIST_JSON: &str = include_str!("../../data/bots/crawler-user-agents.json");

/// Agents the vendored list lacks, each a case-sensitive pattern like the list's, with the agent it
/// is for. The named link previewers (Telegram, WhatsApp, Facebook, Slack, Discord, X, Applebot,
/// iMessage) are all in the list already.
pub const EXTRA_PATTERNS: &[&str] = &[
    // Pinterest's crawler as `Pinterestbot/1.0`: the list only knows `pinterest\.com\/bot`.
    "Pinterestbot",
    // KakaoTalk's link preview: `kakaotalk-scrap/1.0; +https://devtalk.kakao.com/`.
    "kakaotalk-scrap",
    // Bluesky's link-card fetcher: `Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)`.
    "Bluesky Cardyb",
];

/// Most confirm DFAs run for one agent; past them the agent is taken for a bot.
pub const MAX_CONFIRMS: u32 = 16;

/// A compiled list of bot patterns.
pub struct BotList {
    /// One bit per hash bucket: whether some literal's anchor window hashes there. 8 KiB, so the
    /// scan's one load per position stays in L1.
    filter: Box<[u64; (1 << BUCKET_BITS) / 64]>,
    /// Bucket `h` holds `entries[bucket_starts[h]..bucket_starts[h + 1]]`.
    bucket_starts: Box<[u32]>,
    /// Every literal's anchor window, grouped by bucket.
    entries: Box<[Entry]>,
    /// The required literals, deduplicated.
    literals: Vec<Literal>,
    /// One bit per value of a literal's first three bytes (`ds9`, the `get` of `[wW]get`): the
    /// literals shorter than a window are looked for by their whole bytes.
    short_filter: Box<[u64; (1 << SHORT_BITS) / 64]>,
    /// The literals shorter than a window: their three bytes as an integer, and their id.
    short: Vec<(u32, usize)>,
    /// The DFA of each pattern that needs confirming, by index.
    confirms: Vec<dense::DFA<Vec<u32>>>,
    /// Confirm DFAs run on every agent: patterns from which no literal could be drawn.
    always: Vec<usize>,
}

/// A literal some pattern requires, and where in it its anchor window sits.
struct Literal {
    bytes: Box<[u8]>,
    /// Offset of the window the scan looks for: the first one not seen in common browser agents.
    anchor: usize,
    meaning: Meaning,
}

/// One literal's anchor window, in its bucket.
#[derive(Clone, Copy)]
struct Entry {
    window: u32,
    literal: u32,
}

/// What a literal found in an agent means.
enum Meaning {
    /// Some pattern is exactly this literal: a bot.
    Bot,
    /// These patterns (indices into `BotList::confirms`) require this literal; a bot if one matches.
    Confirm(Vec<usize>),
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum BotListError {
    #[error("bot pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("bot list JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A required literal shorter than this is no use as a filter (it would hit most agents).
const MIN_LITERAL_LEN: usize = 3;
/// Bytes in a scan window.
const WINDOW: usize = 4;
/// log2 of the number of hash buckets.
const BUCKET_BITS: u32 = 16;
/// log2 of the number of bits of `short_filter` (2 KiB).
const SHORT_BITS: u32 = 14;

/// Common browser agents: a literal's anchor window is chosen among those not in them, so that a
/// browser rarely hits a bucket at all (`Mozi`, `Chro`, `Safa` would hit on every agent).
const COMMON_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/27.0 Chrome/125.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 [FBAN/FBIOS;FBAV/490.0.0.42.108] Instagram 357.0.0.25.101",
];

#[inline]
fn bucket_of(window: u32) -> usize {
    (window.wrapping_mul(0x9e37_79b1) >> (32 - BUCKET_BITS)) as usize
}

impl BotList {
    /// The vendored list plus [`EXTRA_PATTERNS`]. Compiling takes ~7 ms in a release build (~0.2 s
    /// unoptimised); do it once at start-up.
    pub fn bundled() -> BotList {
        let patterns = bundled_patterns().expect("the vendored bot list is valid JSON (tested)");
        BotList::new(patterns.iter().map(String::as_str)).expect("the vendored bot patterns compile (tested)")
    }

    /// A list of these regular expressions (the regex crate's syntax, case-sensitive).
    pub fn new<'p>(patterns: impl IntoIterator<Item = &'p str>) -> Result<BotList, BotListError> {
        let mut literal_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut literals: Vec<Literal> = Vec::new();
        let mut confirms = Vec::new();
        let mut always = Vec::new();
        let mut literal_id = |literal: &[u8], literals: &mut Vec<Literal>| {
            *literal_ids.entry(literal.to_vec()).or_insert_with(|| {
                literals.push(Literal { bytes: literal.into(), anchor: 0, meaning: Meaning::Confirm(Vec::new()) });
                literals.len() - 1
            })
        };
        for pattern in patterns {
            let invalid = |reason: String| BotListError::Pattern { pattern: pattern.to_owned(), reason };
            let hir = regex_syntax::parse(pattern).map_err(|e| invalid(e.to_string()))?;
            if let HirKind::Literal(literal) = hir.kind()
                && literal.0.len() >= MIN_LITERAL_LEN
            {
                let id = literal_id(&literal.0, &mut literals);
                literals[id].meaning = Meaning::Bot;
                continue;
            }
            let dfa = dense::DFA::new(pattern).map_err(|e| invalid(e.to_string()))?;
            let confirm_idx = confirms.len();
            confirms.push(dfa);
            match required_literals(&hir) {
                Some(set) if shortest(&set) >= MIN_LITERAL_LEN => {
                    for literal in set {
                        let id = literal_id(&literal, &mut literals);
                        if let Meaning::Confirm(idxs) = &mut literals[id].meaning {
                            idxs.push(confirm_idx);
                        }
                    }
                }
                _ => always.push(confirm_idx),
            }
        }

        let common: HashSet<u32> =
            COMMON_AGENTS.iter().flat_map(|agent| agent.as_bytes().windows(WINDOW).map(window_of)).collect();
        let mut entries = Vec::new();
        let mut short = Vec::new();
        for (id, literal) in literals.iter_mut().enumerate() {
            if literal.bytes.len() < WINDOW {
                // MIN_LITERAL_LEN is 3, so exactly three bytes.
                let tri = u32::from_le_bytes([literal.bytes[0], literal.bytes[1], literal.bytes[2], 0]);
                short.push((tri, id));
                continue;
            }
            let windows: Vec<u32> = literal.bytes.windows(WINDOW).map(window_of).collect();
            literal.anchor = windows.iter().position(|w| !common.contains(w)).unwrap_or(0);
            entries.push(Entry { window: windows[literal.anchor], literal: id as u32 });
        }
        entries.sort_by_key(|entry| bucket_of(entry.window));
        let mut filter = Box::new([0u64; (1 << BUCKET_BITS) / 64]);
        let mut short_filter = Box::new([0u64; (1 << SHORT_BITS) / 64]);
        for &(tri, _) in &short {
            let bit = short_bit_of(tri);
            short_filter[bit / 64] |= 1 << (bit % 64);
        }
        let mut bucket_starts = vec![0u32; (1 << BUCKET_BITS) + 1];
        for entry in &entries {
            let bucket = bucket_of(entry.window);
            filter[bucket / 64] |= 1 << (bucket % 64);
            bucket_starts[bucket + 1] += 1;
        }
        for bucket in 0..1 << BUCKET_BITS {
            bucket_starts[bucket + 1] += bucket_starts[bucket];
        }
        Ok(BotList {
            filter,
            short_filter,
            bucket_starts: bucket_starts.into(),
            entries: entries.into(),
            literals,
            short,
            confirms,
            always,
        })
    }

    /// Whether this user agent is a bot's. Allocates nothing.
    ///
    /// Every position of the agent is a window of 4 bytes; a window whose bucket bit is set is
    /// compared with the anchors in that bucket, and a matching anchor with its whole literal. Each
    /// occurrence of a literal contains its anchor, so no literal is missed.
    ///
    /// Cost is bounded whatever the agent: each confirm DFA scans the agent from its start, so an
    /// agent that repeats a literal could make the confirms quadratic; after [`MAX_CONFIRMS`] runs
    /// the agent is taken for a bot (no browser's agent holds that many bots' words).
    pub fn is_bot(&self, user_agent: &[u8]) -> bool {
        let mut budget = MAX_CONFIRMS;
        self.scan(user_agent, &mut budget)
    }

    fn scan(&self, user_agent: &[u8], budget: &mut u32) -> bool {
        for (pos, window) in user_agent.windows(WINDOW).enumerate() {
            let window = window_of(window);
            let bucket = bucket_of(window);
            let short_bit = short_bit_of(window & 0x00ff_ffff);
            let hit = self.filter[bucket / 64] & (1 << (bucket % 64)) != 0
                || self.short_filter[short_bit / 64] & (1 << (short_bit % 64)) != 0;
            if hit && self.hit_at(pos, window, user_agent, budget) {
                return true;
            }
        }
        // The last three bytes are no window's first three.
        if let [.., a, b, c] = *user_agent
            && self.short_hit(u32::from_le_bytes([a, b, c, 0]), user_agent, budget)
        {
            return true;
        }
        self.always.iter().any(|&idx| self.confirm(idx, user_agent, budget))
    }

    /// The number of patterns with no literal, run on every agent (0 for the bundled list).
    pub fn n_always(&self) -> usize {
        self.always.len()
    }

    /// Whether a literal found at `pos`, whose window's filter bit is set, makes the agent a bot's.
    /// Kept out of line so the scan loop stays small.
    #[inline(never)]
    fn hit_at(&self, pos: usize, window: u32, user_agent: &[u8], budget: &mut u32) -> bool {
        if self.short_hit(window & 0x00ff_ffff, user_agent, budget) {
            return true;
        }
        let bucket = bucket_of(window);
        let entries = &self.entries[self.bucket_starts[bucket] as usize..self.bucket_starts[bucket + 1] as usize];
        entries.iter().filter(|entry| entry.window == window).any(|entry| {
            let literal = &self.literals[entry.literal as usize];
            pos.checked_sub(literal.anchor).is_some_and(|start| {
                user_agent[start..].starts_with(&literal.bytes) && self.means_bot(literal, user_agent, budget)
            })
        })
    }

    /// Whether three bytes of the agent are a short literal that makes it a bot's.
    #[inline]
    fn short_hit(&self, tri: u32, user_agent: &[u8], budget: &mut u32) -> bool {
        let bit = short_bit_of(tri);
        if self.short_filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return false;
        }
        self.short.iter().any(|&(short, id)| short == tri && self.means_bot(&self.literals[id], user_agent, budget))
    }

    /// Whether finding `literal` in the agent makes it a bot's.
    fn means_bot(&self, literal: &Literal, user_agent: &[u8], budget: &mut u32) -> bool {
        match &literal.meaning {
            Meaning::Bot => true,
            Meaning::Confirm(idxs) => idxs.iter().any(|&idx| self.confirm(idx, user_agent, budget)),
        }
    }

    fn confirm(&self, idx: usize, user_agent: &[u8], budget: &mut u32) -> bool {
        if *budget == 0 {
            return true;
        }
        *budget -= 1;
        // No quit bytes are configured, so the search cannot fail.
        matches!(self.confirms[idx].try_search_fwd(&Input::new(user_agent).earliest(true)), Ok(Some(_)))
    }
}

/// The `short_filter` bit of three bytes.
#[inline]
fn short_bit_of(tri: u32) -> usize {
    (tri.wrapping_mul(0x85eb_ca6b) >> (32 - SHORT_BITS)) as usize
}

/// Four bytes of an agent or literal as one integer.
#[inline]
fn window_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The patterns of the vendored list followed by [`EXTRA_PATTERNS`].
fn bundled_patterns() -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Entry {
        pattern: String,
    }
    let entries: Vec<Entry> = serde_json::from_str(LIST_JSON)?;
    Ok(entries.into_iter().map(|e| e.pattern).chain(EXTRA_PATTERNS.iter().map(|p| (*p).to_owned())).collect())
}

/// A set of literals one of which every match of `hir` contains, if there is one: the best of a
/// concatenation's parts, every branch of an alternation.
fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(literal) => Some(vec![literal.0.to_vec()]),
        HirKind::Capture(capture) => required_literals(&capture.sub),
        HirKind::Repetition(repetition) if repetition.min >= 1 => required_literals(&repetition.sub),
        HirKind::Concat(parts) => parts.iter().filter_map(required_literals).max_by_key(|set| shortest(set)),
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                all.extend(required_literals(branch)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// The length of the shortest literal of a set.
fn shortest(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Link-preview fetchers that must count as bots, named.
    const PREVIEWERS: &[(&str, &str)] = &[
        ("Telegram", "TelegramBot (like TwitterBot)"),
        ("WhatsApp", "WhatsApp/2.23.20.0 A"),
        ("Facebook", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
        ("Facebook bare", "facebookexternalhit/1.1"),
        ("Slack", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        ("Discord", "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"),
        ("X", "Twitterbot/1.0"),
        (
            "Applebot",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        ),
        ("iMessage", "facebookexternalhit/1.1 Facebot Twitterbot/1.0"),
        ("LinkedIn", "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"),
        (
            "Skype/Teams",
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
        ),
        ("Pinterest", "Pinterestbot/1.0"),
        ("KakaoTalk", "kakaotalk-scrap/1.0; +https://devtalk.kakao.com/"),
        ("Bluesky", "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)"),
        ("Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
        ("curl", "curl/8.5.0"),
    ];

    /// Real browsers, in-app browsers included, that must not count as bots.
    const BROWSERS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Android 15; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/27.0 Chrome/125.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 OPR/86.0.0.0",
        // Facebook and Instagram in-app browsers.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/490.0.0.42.108;FBBV/660000000;FBDV/iPhone16,2;FBMD/iPhone;FBSN/iOS;FBSV/18.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/0]",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/490.0.0.49.108;]",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 357.0.0.25.101 (iPhone16,2; iOS 18_1; en_US; en; scale=3.00; 1179x2556; 658000000)",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240905.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36 Instagram 357.0.0.43.101 Android (34/14; 420dpi; 1080x2400; Google/google; Pixel 8; shiba; shiba; en_US; 658000000)",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_37.5.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US",
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/131.2.1 like Chrome/131.0.6778.85 Safari/537.36",
    ];

    fn list() -> &'static BotList {
        static LIST: std::sync::LazyLock<BotList> = std::sync::LazyLock::new(BotList::bundled);
        &LIST
    }

    /// Every instance the vendored list gives for its patterns.
    fn instances() -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            instances: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_str(LIST_JSON).unwrap();
        entries.into_iter().flat_map(|e| e.instances).collect()
    }

    /// The plain full-list match: every pattern in one `RegexSet`.
    fn reference() -> regex::bytes::RegexSet {
        regex::bytes::RegexSetBuilder::new(bundled_patterns().unwrap()).size_limit(1 << 30).build().unwrap()
    }

    #[test]
    fn link_previewers_are_bots() {
        for (name, agent) in PREVIEWERS {
            assert!(list().is_bot(agent.as_bytes()), "{name}: {agent}");
        }
    }

    #[test]
    fn browsers_are_not_bots() {
        for agent in BROWSERS {
            assert!(!list().is_bot(agent.as_bytes()), "{agent}");
        }
        assert!(!list().is_bot(b""));
    }

    #[test]
    fn list_instances_are_bots() {
        let instances = instances();
        assert!(instances.len() > 2000, "{}", instances.len());
        for agent in instances.iter().step_by(7) {
            assert!(list().is_bot(agent.as_bytes()), "{agent}");
        }
    }

    #[test]
    fn fast_path_equals_full_match() {
        let full = reference();
        let mut agents = instances();
        agents.extend(BROWSERS.iter().map(|a| (*a).to_owned()));
        agents.extend(PREVIEWERS.iter().map(|(_, a)| (*a).to_owned()));
        // Near misses: the anchored and end-anchored patterns, moved.
        agents.extend(
            ["xSeekbot", "Seekbot", "AdsBot-Google-Mobile", "AdsBot-Google", "SSL Labs x", "curl", "xcurl"]
                .map(String::from),
        );
        for agent in &agents {
            assert_eq!(list().is_bot(agent.as_bytes()), full.is_match(agent.as_bytes()), "{agent}");
        }
        assert_eq!(list().n_always(), 0, "every bundled pattern has a literal");
    }

    #[test]
    fn extra_patterns_are_missing_from_the_list() {
        let list_only = BotList::new(list_patterns().iter().map(String::as_str)).unwrap();
        for agent in ["Pinterestbot/1.0", "kakaotalk-scrap/1.0; +https://devtalk.kakao.com/", "Bluesky Cardyb/1.1"] {
            assert!(!list_only.is_bot(agent.as_bytes()), "the list now knows {agent}: drop its extra pattern");
            assert!(list().is_bot(agent.as_bytes()), "{agent}");
        }
    }

    /// The vendored list's patterns alone.
    fn list_patterns() -> Vec<String> {
        let mut patterns = bundled_patterns().unwrap();
        patterns.truncate(patterns.len() - EXTRA_PATTERNS.len());
        patterns
    }

    #[test]
    fn bad_pattern_is_an_error_naming_it() {
        let error = BotList::new(["fine", "bro(ken"]).err().unwrap();
        assert!(error.to_string().contains("bro(ken"), "{error}");
    }

    #[test]
    fn literals_are_found_wherever_they_are() {
        // "Mozi", "ozil", ... are common windows, so the anchor sits further in.
        let list = BotList::new(["Mozilla/5\\.0 xyzbot", "\\(xyzzy\\)", "ds9"]).unwrap();
        assert!(list.literals[0].anchor > 0);
        for agent in
            ["Mozilla/5.0 xyzbot", "a Mozilla/5.0 xyzbot/1", "(xyzzy)", "ab (xyzzy)", "ds9", "xds9y", "abc ds9"]
        {
            assert!(list.is_bot(agent.as_bytes()), "{agent}");
        }
        for agent in ["zilla/5.0 xyzbot", "Mozilla/5.0 xyzbo", "(xyzzy", "xyzzy)", "ds", "d s9", ""] {
            assert!(!list.is_bot(agent.as_bytes()), "{agent}");
        }
    }

    #[test]
    fn short_and_literal_free_patterns_still_match() {
        let list = BotList::new(["^ab", "[xy]z", "Go+gle"]).unwrap();
        assert_eq!(list.n_always(), 2);
        assert!(list.is_bot(b"abc"));
        assert!(!list.is_bot(b"cab"));
        assert!(list.is_bot(b"yz"));
        assert!(list.is_bot(b"Gooogle"));
        assert!(!list.is_bot(b"Ggle"));
    }

    #[test]
    fn an_agent_that_repeats_a_literal_needing_confirmation_is_a_bot_after_the_budget() {
        // `ContextualBot[\s\S]*outcomes\.net` needs its DFA for each `ContextualBot`; without a
        // budget, each occurrence would scan the whole agent again.
        let crafted = "ContextualBot ".repeat(200);
        assert!(list().is_bot(crafted.as_bytes()), "the budget of confirm runs is spent: a bot");
        let once = format!("Mozilla/5.0 ContextualBot {}", "x".repeat(300));
        assert_eq!(
            list().is_bot(once.as_bytes()),
            reference().is_match(once.as_bytes()),
            "one run: the pattern decides"
        );
    }
}
