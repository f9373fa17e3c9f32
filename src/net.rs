//! Client addresses: which IP a click came from, and whether it came through a trusted proxy, whose
//! headers (`X-Forwarded-For`, the country header) alone are believed.
//!
//! A visitor can put anything in `X-Forwarded-For`; only the hops added by our own proxies are true.
//! So the header is read from the right, skipping trusted proxies, and the first untrusted address is
//! the client. A request that did not come from a trusted proxy is taken at its socket address.

use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address is a one-address network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    base: IpAddr,
    prefix_len: u8,
}

/// A string that is not an address or CIDR network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR network")]
pub struct InvalidNetwork;

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let base: IpAddr = addr.trim().parse().map_err(|_| InvalidNetwork)?;
        let max_len = if base.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| InvalidNetwork)?,
            None => max_len,
        };
        if prefix_len > max_len {
            return Err(InvalidNetwork);
        }
        Ok(IpNetwork { base, prefix_len })
    }
}

impl IpNetwork {
    /// Whether `addr` lies in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        match (self.base, addr) {
            (IpAddr::V4(base), IpAddr::V4(addr)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                u32::from(base) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(addr)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                u128::from(base) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

/// Who sent a request, as far as it can be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// Whether the request came through a trusted proxy, whose headers (`X-Forwarded-For`, the
    /// country header) are believed.
    pub via_trusted_proxy: bool,
}

/// The client: `peer` itself unless `peer` is a trusted proxy, in which case the rightmost untrusted
/// address of `forwarded_for` (a comma-separated `X-Forwarded-For` value).
pub fn client(peer: IpAddr, forwarded_for: Option<&[u8]>, trusted: &[IpNetwork]) -> Client {
    let peer = canonical(peer);
    let is_trusted = |addr: IpAddr| trusted.iter().any(|network| network.contains(addr));
    // The header is read only from a trusted peer: anyone else's is not even parsed.
    if !is_trusted(peer) {
        return Client { ip: peer, via_trusted_proxy: false };
    }
    let mut client = Client { ip: peer, via_trusted_proxy: true };
    let Some(header) = forwarded_for.and_then(|h| std::str::from_utf8(h).ok()) else { return client };
    for hop in header.rsplit(',') {
        let Ok(addr) = hop.trim().parse::<IpAddr>() else { break };
        client.ip = canonical(addr);
        if !is_trusted(client.ip) {
            break;
        }
    }
    client
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let one: IpNetwork = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!("nonsense".parse::<IpNetwork>().is_err());
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted = ["127.0.0.1".parse().unwrap()];
        assert_eq!(
            client(ip("203.0.113.9"), Some(b"1.2.3.4"), &trusted),
            Client { ip: ip("203.0.113.9"), via_trusted_proxy: false }
        );
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_past_trusted_hops() {
        let trusted = ["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let header: &[u8] = b"6.6.6.6, 198.51.100.7, 10.0.0.2";
        assert_eq!(client(ip("127.0.0.1"), Some(header), &trusted).ip, ip("198.51.100.7"));
        assert_eq!(client(ip("127.0.0.1"), Some(b"garbage"), &trusted).ip, ip("127.0.0.1"));
        assert_eq!(client(ip("127.0.0.1"), None, &trusted), Client { ip: ip("127.0.0.1"), via_trusted_proxy: true });
    }
}
