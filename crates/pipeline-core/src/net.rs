//! Which network addresses count as public: the one rule the fetcher's guard (pages) and
//! the webhook worker (endpoints) apply, and the API checks when an endpoint is registered.

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
