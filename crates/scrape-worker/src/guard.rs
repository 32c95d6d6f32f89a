//! Which URLs and addresses the worker may fetch.
//!
//! Only `http` and `https` URLs with a host are fetched. Every address a host resolves to
//! must be public: private, loopback, link-local, multicast, unspecified, broadcast,
//! documentation, shared (CGNAT) and unique-local addresses are refused unless the host
//! (or the address) is listed in `scrape.allow_private_hosts`.
//!
//! The check runs where the connection is made: [`GuardedResolver`] is the HTTP client's
//! DNS resolver, so the addresses checked are exactly the addresses connected to, and a
//! DNS answer that changes between a check and the connection (rebinding) cannot slip
//! through. IP-literal hosts never reach a resolver, so [`AddressPolicy::check_url`]
//! checks them before each request, redirect hops included.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::FetchError;

/// The allow list and the checks built on it.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    hosts: HashSet<String>,
    ips: HashSet<IpAddr>,
}

/// The error the resolver returns for a refused host; the fetcher finds it in the HTTP
/// client's error chain to classify the failure as a blocked address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

impl AddressPolicy {
    /// A policy allowing non-public addresses only for the listed host names or IPs.
    pub fn new(allow_private_hosts: &[String]) -> Self {
        let mut policy = Self::default();
        for entry in allow_private_hosts {
            let entry = entry.trim().trim_start_matches('[').trim_end_matches(']');
            match entry.parse::<IpAddr>() {
                Ok(ip) => {
                    policy.ips.insert(ip);
                }
                Err(_) => {
                    policy.hosts.insert(entry.to_ascii_lowercase());
                }
            }
        }
        policy
    }

    /// Whether `host` may connect to `ip`.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip)
            || self.ips.contains(&ip)
            || self
                .hosts
                .contains(host.trim_end_matches('.').to_ascii_lowercase().as_str())
    }

    /// Checks the scheme and host of a URL, and the address when the host is an IP literal.
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl(format!(
                "scheme {:?} is not http or https: {url}",
                url.scheme()
            )));
        }
        let ip = match url.host() {
            None => return Err(FetchError::InvalidUrl(format!("no host: {url}"))),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        let host = url.host_str().unwrap_or_default();
        if self.allows(host, ip) {
            Ok(())
        } else {
            Err(FetchError::BlockedAddress(format!(
                "{ip} is not a public address"
            )))
        }
    }
}

pub use pipeline_core::net::is_public;

/// The HTTP client's DNS resolver: resolves with the system resolver and refuses the host
/// when any of its addresses is not allowed.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // One bad address refuses the host: a name mixing public and private
            // addresses is exactly what a rebinding attack looks like.
            if let Some(bad) = addrs.iter().find(|a| !policy.allows(&host, a.ip())) {
                return Err(Box::new(Blocked(format!(
                    "{host} resolves to {}, which is not a public address",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let policy = AddressPolicy::new(&["127.0.0.1".into(), "Demo.Local".into()]);
        let check = |u: &str| policy.check_url(&Url::parse(u).unwrap());
        assert!(check("http://127.0.0.1:8080/x").is_ok());
        assert!(matches!(
            check("http://10.0.0.1/"),
            Err(FetchError::BlockedAddress(_))
        ));
        assert!(matches!(
            check("http://[::1]/"),
            Err(FetchError::BlockedAddress(_))
        ));
        assert!(matches!(
            check("ftp://example.com/"),
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(matches!(
            check("file:///etc/passwd"),
            Err(FetchError::InvalidUrl(_))
        ));
        assert!(check("https://example.com/").is_ok());
        assert!(policy.allows("demo.local", "10.0.0.5".parse().unwrap()));
        assert!(!policy.allows("other.local", "10.0.0.5".parse().unwrap()));
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost_unless_allowed() {
        let strict = GuardedResolver::new(Arc::new(AddressPolicy::new(&[])));
        let err = strict
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is refused");
        assert!(err.downcast_ref::<Blocked>().is_some());
        let open = GuardedResolver::new(Arc::new(AddressPolicy::new(&["localhost".into()])));
        assert!(open.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
