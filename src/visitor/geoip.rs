//! The country of an IP address, from a MaxMind DB (`.mmdb`) country database.
//!
//! The vendored database is DB-IP Lite's (`data/geoip/`, CC BY 4.0: attribution "IP Geolocation by
//! DB-IP", <https://db-ip.com>); MaxMind's GeoLite2/GeoIP2 Country and City files work too. Two
//! record shapes are read, into borrowed strings: ip-location-db's `{"country_code": "DE"}` and
//! MaxMind's `{"country": {"iso_code": "DE"}}`, falling back to `registered_country`.
//!
//! Why flattened: walking the mmdb search tree and decoding the record costs ~70 ns per IPv4
//! lookup; the flattened tables answer in ~9 ns (IPv6 ~21 ns), see `benches/visitor.rs`. A country
//! database has only a few hundred distinct records, so [`GeoIp::open`] walks every network once, decodes each distinct record once, and
//! keeps sorted arrays of range starts with the country of each range (adjacent ranges of one
//! country merged, gaps `XX`). An IPv4 lookup reads a 65,536-entry index by the top 16 bits and
//! binary-searches the few ranges of that block; IPv6 binary-searches its own array. IPv4-mapped
//! IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4; the deprecated IPv4-compatible form
//! (`::a.b.c.d`) is not, and reads as `XX`. Opening the vendored file takes ~0.12 s in a release
//! build (~1.5 s unoptimised) and keeps ~8.5 MB of tables (355,814 IPv4 and 345,871 IPv6 ranges).
//!
//! Invariants: [`GeoIp::country`] allocates nothing, takes no lock and makes no syscall; the tables
//! are immutable after `open`. Codes that are not assigned ISO 3166-1 codes (DB-IP's `XK` for
//! Kosovo, `EU`, `AP`) read as `XX`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use maxminddb::{MaxMindDbError, Reader};
use serde::Deserialize;

use super::Country;

/// A country database, flattened for lookups.
pub struct GeoIp {
    /// Start of each IPv4 range, ascending, the first 0; range `i` ends where `i + 1` starts.
    v4_starts: Vec<u32>,
    /// The country of each IPv4 range.
    v4_countries: Vec<Country>,
    /// For each /16 block, the range holding its first address: narrows the binary search.
    v4_blocks: Vec<u32>,
    /// Start of each IPv6 range (IPv4 space excluded), ascending, the first 0.
    v6_starts: Vec<u128>,
    /// The country of each IPv6 range.
    v6_countries: Vec<Country>,
    /// `database_type` from the metadata (`country`, `GeoLite2-Country`).
    database_type: String,
    /// `build_epoch` from the metadata, seconds since 1970.
    build_epoch: u64,
    /// Records whose code is not an assigned ISO code (`XK`, `EU`), read as `XX`, for `describe`.
    n_unassigned_codes: usize,
}

/// Why a GeoIP database could not be opened. Each error names the file.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("GeoIP database {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: MaxMindDbError,
    },
    #[error(
        "GeoIP database {}: no record has a country (`country_code`, `country.iso_code` or `registered_country.iso_code`); is it a country database?",
        path.display()
    )]
    NoCountry { path: PathBuf },
}

impl GeoIp {
    /// Reads and flattens the database at `path` (the vendored one: ~0.12 s in a release build); do
    /// it once at start-up, off the async workers.
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        let read_error = |source| GeoIpError::Read { path: path.to_owned(), source };
        let reader = Reader::open_readfile(path).map_err(read_error)?;

        let mut countries_by_offset: HashMap<usize, Option<Country>> = HashMap::new();
        let mut n_unassigned_codes = 0;
        let mut v4: Vec<(u32, u32, Country)> = Vec::new();
        let mut v6: Vec<(u128, u128, Country)> = Vec::new();
        for network in reader.networks(Default::default()).map_err(read_error)? {
            let network = network.map_err(read_error)?;
            let Some(offset) = network.offset() else { continue };
            let country = match countries_by_offset.get(&offset) {
                Some(country) => *country,
                None => {
                    let record: Option<Record> = network.decode().map_err(read_error)?;
                    let code = record.as_ref().and_then(Record::code);
                    let country = code.map(|code| Country::from_code(code).unwrap_or(Country::UNKNOWN));
                    if country == Some(Country::UNKNOWN) && code != Some("XX") {
                        n_unassigned_codes += 1;
                    }
                    countries_by_offset.insert(offset, country);
                    country
                }
            };
            let Some(country) = country else { continue };
            let network = network.network().map_err(read_error)?;
            let host_bits = |width: u32| width - u32::from(network.prefix());
            match network.network() {
                IpAddr::V4(start) => {
                    let start = u32::from(start);
                    let end = start | ((1u64 << host_bits(32)) - 1) as u32;
                    v4.push((start, end, country));
                }
                IpAddr::V6(start) => {
                    let start = u128::from(start);
                    let end = if host_bits(128) == 128 { u128::MAX } else { start | ((1u128 << host_bits(128)) - 1) };
                    v6.push((start, end, country));
                }
            }
        }
        if countries_by_offset.values().all(Option::is_none) {
            return Err(GeoIpError::NoCountry { path: path.to_owned() });
        }

        let (v4_starts, v4_countries) = flatten(v4);
        let (v6_starts, v6_countries) = flatten(v6);
        let v4_blocks = (0..=u16::MAX)
            .map(|block| (v4_starts.partition_point(|&start| start <= u32::from(block) << 16) - 1) as u32)
            .collect();
        let metadata = reader.metadata();
        Ok(GeoIp {
            v4_starts,
            v4_countries,
            v4_blocks,
            v6_starts,
            v6_countries,
            database_type: metadata.database_type.clone(),
            build_epoch: metadata.build_epoch,
            n_unassigned_codes,
        })
    }

    /// The country of an address; [`Country::UNKNOWN`] where the database has none (private and
    /// reserved ranges, unassigned codes). Allocates nothing.
    pub fn country(&self, ip: IpAddr) -> Country {
        match ip {
            IpAddr::V4(v4) => self.country_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.country_v4(v4),
                None => self.country_v6(v6),
            },
        }
    }

    /// The database type and build date, and the size of the flattened tables, for the start-up
    /// log line.
    pub fn describe(&self) -> String {
        let built = time::OffsetDateTime::from_unix_timestamp(self.build_epoch as i64)
            .map(|at| at.date().to_string())
            .unwrap_or_else(|_| format!("epoch {}", self.build_epoch));
        format!(
            "{} database built {built}: {} IPv4 and {} IPv6 ranges, {} unassigned codes read as XX",
            self.database_type,
            self.v4_starts.len(),
            self.v6_starts.len(),
            self.n_unassigned_codes
        )
    }

    fn country_v4(&self, ip: Ipv4Addr) -> Country {
        let ip = u32::from(ip);
        let block = (ip >> 16) as usize;
        let first = self.v4_blocks[block] as usize;
        let last = self.v4_blocks.get(block + 1).map_or(self.v4_starts.len() - 1, |&last| last as usize);
        // starts[first] <= ip, so at least one start in the block's slice is <= ip.
        let idx = first + self.v4_starts[first..=last].partition_point(|&start| start <= ip) - 1;
        self.v4_countries[idx]
    }

    fn country_v6(&self, ip: Ipv6Addr) -> Country {
        let ip = u128::from(ip);
        let idx = self.v6_starts.partition_point(|&start| start <= ip) - 1;
        self.v6_countries[idx]
    }
}

/// One record of a country database: ip-location-db's shape or MaxMind's, strings borrowed.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
}

/// MaxMind's country object; only the code is read.
#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

impl<'a> Record<'a> {
    fn code(&self) -> Option<&'a str> {
        self.country_code
            .or_else(|| self.country.as_ref().and_then(|c| c.iso_code))
            .or_else(|| self.registered_country.as_ref().and_then(|c| c.iso_code))
    }
}

/// Sorted range starts and their countries from inclusive `(start, end, country)` networks: gaps
/// become `XX`, neighbours of one country merge, the first range starts at 0.
fn flatten<T>(mut networks: Vec<(T, T, Country)>) -> (Vec<T>, Vec<Country>)
where
    T: Copy + Ord + Default + num_like::Successor,
{
    networks.sort_unstable_by_key(|&(start, _, _)| start);
    let mut starts = vec![T::default()];
    let mut countries = vec![Country::UNKNOWN];
    let mut push = |start: T, country: Country| {
        if *countries.last().unwrap() == country {
            return;
        }
        if *starts.last().unwrap() == start {
            *countries.last_mut().unwrap() = country;
            // The previous range may now be the same country as this one.
            if countries.len() >= 2 && countries[countries.len() - 2] == country {
                starts.pop();
                countries.pop();
            }
            return;
        }
        starts.push(start);
        countries.push(country);
    };
    let mut next_free = Some(T::default());
    for (start, end, country) in networks {
        if next_free.is_some_and(|free| free < start) {
            push(next_free.unwrap(), Country::UNKNOWN);
        }
        push(start, country);
        next_free = end.successor();
    }
    if let Some(free) = next_free {
        push(free, Country::UNKNOWN);
    }
    (starts, countries)
}

/// The next integer, for the end of a range; `None` past the last address.
mod num_like {
    pub trait Successor: Sized {
        fn successor(self) -> Option<Self>;
    }
    impl Successor for u32 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl Successor for u128 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendored_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/geoip/dbip-country.mmdb")
    }

    fn db() -> &'static GeoIp {
        static DB: std::sync::LazyLock<GeoIp> = std::sync::LazyLock::new(|| GeoIp::open(&vendored_path()).unwrap());
        &DB
    }

    fn country(ip: &str) -> &'static str {
        db().country(ip.parse().unwrap()).as_str()
    }

    #[test]
    fn well_known_addresses() {
        let cases = [
            ("8.8.8.8", "US"),        // Google Public DNS
            ("194.25.2.129", "DE"),   // Deutsche Telekom's DNS
            ("212.58.244.20", "GB"),  // BBC
            ("193.51.224.1", "FR"),   // RENATER (French research network)
            ("200.147.67.142", "BR"), // UOL
            ("133.11.0.1", "JP"),     // University of Tokyo
            ("139.130.4.5", "AU"),    // Telstra
        ];
        for (ip, want) in cases {
            assert_eq!(country(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        assert_eq!(country("2003::1"), "DE"); // Deutsche Telekom
        assert_eq!(country("2a01:e00::1"), "FR"); // Free
        assert_eq!(country("2001:200::1"), "JP"); // WIDE project
        assert_eq!(country("2620:0:862:ed1a::1"), "US"); // Wikimedia
        assert_eq!(country("::ffff:8.8.8.8"), "US");
        assert_eq!(country("::ffff:194.25.2.129"), "DE");
    }

    #[test]
    fn private_and_reserved_addresses_are_unknown() {
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(country(ip), "XX", "{ip}");
        }
    }

    #[test]
    fn describe_names_type_and_date() {
        let text = db().describe();
        assert!(text.starts_with("country ipvAll database built 2026-06-01:"), "{text}");
    }

    /// The flattened tables answer as the mmdb tree does, for addresses spread over both spaces.
    #[test]
    fn flattened_equals_tree() {
        let reader = Reader::open_readfile(vendored_path()).unwrap();
        let tree = |ip: IpAddr| -> Country {
            let found = reader.lookup(ip).unwrap();
            let record: Option<Record> = found.decode().unwrap();
            record.and_then(|r| r.code()).and_then(Country::from_code).unwrap_or(Country::UNKNOWN)
        };
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for _ in 0..50_000 {
            let ip = IpAddr::V4(Ipv4Addr::from(next() as u32));
            assert_eq!(db().country(ip), tree(ip), "{ip}");
        }
        for _ in 0..20_000 {
            // Global unicast, 2000::/4 and below, where the allocations are.
            let bits = (u128::from(next()) << 64 | u128::from(next())) >> 4 | 0x2000 << 112;
            let ip = IpAddr::V6(Ipv6Addr::from(bits));
            assert_eq!(db().country(ip), tree(ip), "{ip}");
        }
        // Both ends of every IPv4 range.
        for (i, &start) in db().v4_starts.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::from(start));
            assert_eq!(db().country(ip), tree(ip), "{ip}");
            if start > 0 {
                let ip = IpAddr::V4(Ipv4Addr::from(start - 1));
                assert_eq!(db().country(ip), tree(ip), "{ip} (end of range {})", i - 1);
            }
        }
    }

    #[test]
    fn not_an_mmdb_is_an_error_naming_the_path() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let error = GeoIp::open(&path).err().expect("Cargo.toml is no database");
        assert!(matches!(error, GeoIpError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("Cargo.toml"), "{error}");
    }

    #[test]
    fn missing_file_is_an_error_naming_the_path() {
        let path = Path::new("/nonexistent/GeoLite2-Country.mmdb");
        let error = GeoIp::open(path).err().expect("no such file");
        assert!(error.to_string().contains("/nonexistent/GeoLite2-Country.mmdb"), "{error}");
    }

    /// A minimal MaxMind DB file: IPv4, one tree node whose two records both point at `record`.
    fn tiny_mmdb(name: &str, record: &[u8]) -> PathBuf {
        fn text(s: &str) -> Vec<u8> {
            [&[0x40 | s.len() as u8][..], s.as_bytes()].concat()
        }
        fn uint16(v: u16) -> Vec<u8> {
            [&[0xa2][..], &v.to_be_bytes()].concat()
        }
        let node_count: u32 = 1;
        let pointer = (node_count + 16).to_be_bytes();
        let mut file = [&pointer[1..], &pointer[1..], &[0; 16], record, b"\xab\xcd\xefMaxMind.com"].concat();
        file.push(0xe9); // a map of nine entries
        for (key, value) in [
            ("binary_format_major_version", uint16(2)),
            ("binary_format_minor_version", uint16(0)),
            ("build_epoch", [&[0x08, 0x02][..], &1_780_000_000u64.to_be_bytes()].concat()),
            ("database_type", text("Test-Country")),
            ("description", vec![0xe0]),
            ("ip_version", uint16(4)),
            ("languages", vec![0x00, 0x04]),
            ("node_count", [&[0xc4][..], &node_count.to_be_bytes()].concat()),
            ("record_size", uint16(24)),
        ] {
            file.extend(text(key));
            file.extend(value);
        }
        let path = std::env::temp_dir().join(format!("casino-router-visitor-{}-{name}.mmdb", std::process::id()));
        std::fs::write(&path, file).unwrap();
        path
    }

    #[test]
    fn maxmind_record_shapes() {
        let de = b"\xe1\x47country\xe1\x48iso_code\x42DE";
        let registered_fr = b"\xe1\x52registered_country\xe1\x48iso_code\x42FR";
        for (name, record, want) in [("maxmind", &de[..], "DE"), ("registered", &registered_fr[..], "FR")] {
            let path = tiny_mmdb(name, record);
            let db = GeoIp::open(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(db.country("8.8.8.8".parse().unwrap()).as_str(), want, "{name}");
            assert_eq!(db.country("200.1.2.3".parse().unwrap()).as_str(), want, "{name}");
            assert!(db.describe().starts_with("Test-Country database built 2026-05-28"), "{}", db.describe());
        }
    }

    #[test]
    fn database_without_countries_is_an_error() {
        let path = tiny_mmdb("asn", b"\xe1\x43asn\xc2\xfb\xf0");
        let error = GeoIp::open(&path).err().expect("an ASN database has no countries");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(error, GeoIpError::NoCountry { .. }), "{error:?}");
        assert!(error.to_string().contains(&*path.to_string_lossy()), "{error}");
    }

    #[test]
    fn flatten_fills_gaps_and_merges() {
        let de = Country::from_code("DE").unwrap();
        let fr = Country::from_code("FR").unwrap();
        let xx = Country::UNKNOWN;
        let (starts, countries) = flatten(vec![(20u32, 29, fr), (10, 14, de), (15, 19, de), (30, u32::MAX, fr)]);
        assert_eq!(starts, vec![0, 10, 20]);
        assert_eq!(countries, vec![xx, de, fr]);
        let (starts, countries) = flatten(vec![(0u32, 9, de)]);
        assert_eq!(starts, vec![0, 10]);
        assert_eq!(countries, vec![de, xx]);
    }
}
