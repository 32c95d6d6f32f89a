//! Which network addresses count as public: the one rule the fetcher's guard (pages) and
//! the webhook worker (endpoints) apply, and the API checks when an endpoint is registered;
//! and the form of an `allow_private_hosts` entry, which lifts that rule for one host.

use std::net::IpAddr;

/// `true` for globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                // 100.64.0.0/10 shared address space (carrier-grade NAT)
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // 192.0.0.0/24 protocol assignments, 198.18.0.0/15 benchmarking, 240/4 reserved
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // 2001:db8::/32 documentation, 64:ff9b::/96 NAT64 (may reach private v4)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || (seg[0] == 0x0064 && seg[1] == 0xff9b)
                // IPv4-compatible (deprecated) ::a.b.c.d
                || (seg[..6].iter().all(|s| *s == 0)))
        }
    }
}

/// One entry of an `allow_private_hosts` list: a host name or an address, allowed to be or
/// resolve to a non-public address, on one port or on any.
///
/// Forms: `127.0.0.1`, `::1`, `[::1]`, `localhost` (any port); `127.0.0.1:8080`,
/// `[::1]:8080`, `localhost:8080` (that port only). An IPv6 address with a port is written
/// in brackets: `::1:8080` is the address `::1:8080`, on any port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowEntry {
    /// The host the entry names.
    pub host: AllowedHost,
    /// The only port it is allowed on; `None`: any port.
    pub port: Option<u16>,
}

/// The host of an [`AllowEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowedHost {
    /// An address: allowed whatever name resolves to it.
    Ip(IpAddr),
    /// A host name, lowercased, without a trailing dot: allowed whatever it resolves to.
    Name(String),
}

impl AllowEntry {
    /// Parses an entry (surrounding spaces ignored).
    ///
    /// # Errors
    /// A message naming the entry and what is wrong with it: empty, a port that is not a
    /// number from 1 to 65535, an unclosed `[`, or a name with characters no host name has
    /// (a name outside ASCII is written in its `xn--` form, as URLs carry it).
    pub fn parse(entry: &str) -> Result<Self, String> {
        let text = entry.trim();
        let bad = |why: &str| Err(format!("`{text}`: {why}"));
        if text.is_empty() {
            return bad("an empty entry");
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::any_port(AllowedHost::Ip(ip)));
        }
        if let Some(rest) = text.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return bad("`[` without `]`");
            };
            // An IPv4 address in brackets was always accepted; URLs never write it so.
            let Ok(ip) = inside.parse::<IpAddr>() else {
                return bad("not an address in brackets");
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(parse_port(text, port)?),
                    None => return bad("expected `:PORT` after `]`"),
                },
            };
            return Ok(Self {
                host: AllowedHost::Ip(ip),
                port,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(text, port)?)),
            None => (text, None),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            if ip.is_ipv6() {
                return bad("an IPv6 address with a port is written in brackets: `[::1]:8080`");
            }
            return Ok(Self {
                host: AllowedHost::Ip(ip),
                port,
            });
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return bad(
                "not a host name, an address, or either with `:PORT` (a name outside ASCII is written in its xn-- form)",
            );
        }
        Ok(Self {
            host: AllowedHost::Name(name),
            port,
        })
    }

    fn any_port(host: AllowedHost) -> Self {
        Self { host, port: None }
    }
}

impl std::fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.host, self.port) {
            (AllowedHost::Ip(IpAddr::V6(ip)), Some(port)) => write!(f, "[{ip}]:{port}"),
            (AllowedHost::Ip(ip), Some(port)) => write!(f, "{ip}:{port}"),
            (AllowedHost::Name(name), Some(port)) => write!(f, "{name}:{port}"),
            (AllowedHost::Ip(ip), None) => write!(f, "{ip}"),
            (AllowedHost::Name(name), None) => f.write_str(name),
        }
    }
}

fn parse_port(entry: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!(
            "`{entry}`: port `{port}` is not a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, String> {
        AllowEntry::parse(s).map(|e| match e.host {
            AllowedHost::Ip(ip) => format!("ip {ip} {:?}", e.port),
            AllowedHost::Name(n) => format!("name {n} {:?}", e.port),
        })
    }

    #[test]
    fn allow_entries_parse() {
        for (entry, want) in [
            ("127.0.0.1", "ip 127.0.0.1 None"),
            (" 127.0.0.1:8080 ", "ip 127.0.0.1 Some(8080)"),
            ("::1", "ip ::1 None"),
            ("[::1]", "ip ::1 None"),
            ("[::1]:8080", "ip ::1 Some(8080)"),
            ("[fd00::5]:443", "ip fd00::5 Some(443)"),
            ("[127.0.0.1]", "ip 127.0.0.1 None"),
            // A bare IPv6 address is one address, whatever its last group reads like.
            ("::1:8080", "ip ::1:8080 None"),
            ("localhost", "name localhost None"),
            ("Demo.Local.", "name demo.local None"),
            ("localhost:8080", "name localhost Some(8080)"),
            (
                "my_host.internal:65535",
                "name my_host.internal Some(65535)",
            ),
        ] {
            assert_eq!(parse(entry).as_deref(), Ok(want), "{entry}");
        }
    }

    #[test]
    fn bad_allow_entries_are_refused_with_the_reason() {
        for (entry, why) in [
            ("", "empty"),
            ("127.0.0.1:0", "port `0` is not a number from 1 to 65535"),
            ("127.0.0.1:65536", "port `65536`"),
            ("127.0.0.1:", "port ``"),
            ("localhost:http", "port `http`"),
            ("localhost:+80", "port `+80`"),
            ("[::1", "without `]`"),
            ("[::1]8080", "expected `:PORT`"),
            ("[::1]:x", "port `x`"),
            ("[localhost]:80", "not an address in brackets"),
            ("::1]:80", "not a host name"),
            ("a b", "not a host name"),
            ("bücher.example", "xn--"),
            (":8080", "not a host name"),
            ("http://localhost", "port `//localhost`"),
        ] {
            let err = parse(entry).expect_err(entry);
            assert!(err.contains(why), "{entry}: {err}");
        }
    }

    #[test]
    fn entries_print_as_written() {
        for entry in [
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]:8080",
            "::1",
            "localhost:9",
        ] {
            assert_eq!(AllowEntry::parse(entry).unwrap().to_string(), entry);
        }
    }
}
