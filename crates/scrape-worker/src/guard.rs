//! Which URLs and addresses the worker may fetch.
//!
//! Only `http` and `https` URLs with a host are fetched. Every address a host resolves to
//! must be public: private, loopback, link-local, multicast, unspecified, broadcast,
//! documentation, shared (CGNAT) and unique-local addresses are refused unless the host
//! (or the address) is listed in `scrape.allow_private_hosts`. An entry with a port
//! (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`) allows its host on that port only.
//!
//! The check runs where the connection is made: [`GuardedResolver`] is the HTTP client's
//! DNS resolver, so the addresses checked are exactly the addresses connected to, and a
//! DNS answer that changes between a check and the connection (rebinding) cannot slip
//! through. IP-literal hosts never reach a resolver, so [`AddressPolicy::check_url`]
//! checks them before each request, redirect hops included.
//!
//! A resolver is asked for a name only, never a port, so it cannot tell `:8080` from
//! `:9090`. A resolver is therefore bound to a port ([`GuardedResolver::at_port`]): the
//! fetcher keeps one HTTP client per port that an entry names, and one for every other
//! port, whose resolver counts only the entries without a port.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pipeline_core::net::{AllowEntry, AllowedHost};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::FetchError;

/// The allow list and the checks built on it.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Names allowed, each on one port or (`None`) on any.
    hosts: HashSet<(String, Option<u16>)>,
    /// Addresses allowed, each on one port or (`None`) on any.
    ips: HashSet<(IpAddr, Option<u16>)>,
}

/// The error the resolver returns for a refused host; the fetcher finds it in the HTTP
/// client's error chain to classify the failure as a blocked address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

/// Why [`AddressPolicy::check_at`] refused an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not public, and no entry names the host or the address.
    NotPublic,
    /// Not public, and the entries naming the host or the address name other ports.
    OtherPort,
}

impl AddressPolicy {
    /// A policy allowing non-public addresses only for the listed host names or IPs.
    ///
    /// # Errors
    /// The first entry that does not parse ([`AllowEntry::parse`]: an empty entry, a port
    /// that is not 1 to 65535, a malformed name), with the reason.
    pub fn parse(allow_private_hosts: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in allow_private_hosts {
            let AllowEntry { host, port } = AllowEntry::parse(entry)?;
            match host {
                AllowedHost::Ip(ip) => policy.ips.insert((ip, port)),
                AllowedHost::Name(name) => policy.hosts.insert((name, port)),
            };
        }
        Ok(policy)
    }

    /// [`Self::parse`] for a list already validated (settings are, when they load): an entry
    /// that does not parse allows nothing, and is logged.
    pub fn new(allow_private_hosts: &[String]) -> Self {
        let valid: Vec<String> = allow_private_hosts
            .iter()
            .filter(|entry| match AllowEntry::parse(entry) {
                Ok(_) => true,
                Err(reason) => {
                    tracing::warn!(%reason, "allow_private_hosts entry ignored");
                    false
                }
            })
            .cloned()
            .collect();
        Self::parse(&valid).unwrap_or_default()
    }

    /// Whether `host` may connect to `ip` on any port: only entries without a port count.
    /// Where the port is known, [`Self::allows_at`] is the check.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        is_public(ip) || self.listed(host, ip, None)
    }

    /// Whether `host` may connect to `ip` on `port`.
    pub fn allows_at(&self, host: &str, ip: IpAddr, port: u16) -> bool {
        self.check_at(host, ip, port).is_ok()
    }

    /// [`Self::allows_at`], saying why not.
    ///
    /// # Errors
    /// [`Refused::OtherPort`] when an entry names the host or address on another port,
    /// else [`Refused::NotPublic`].
    pub fn check_at(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), Refused> {
        if is_public(ip) || self.listed(host, ip, None) || self.listed(host, ip, Some(port)) {
            return Ok(());
        }
        let host = normalize(host);
        let other_port = self.ips.iter().any(|(i, p)| *i == ip && p.is_some())
            || self.hosts.iter().any(|(h, p)| *h == host && p.is_some());
        Err(if other_port {
            Refused::OtherPort
        } else {
            Refused::NotPublic
        })
    }

    /// The ports that entries name (each needs an HTTP client of its own in the fetcher).
    pub fn ports(&self) -> BTreeSet<u16> {
        self.ips
            .iter()
            .filter_map(|(_, p)| *p)
            .chain(self.hosts.iter().filter_map(|(_, p)| *p))
            .collect()
    }

    fn listed(&self, host: &str, ip: IpAddr, port: Option<u16>) -> bool {
        self.ips.contains(&(ip, port)) || self.hosts.contains(&(normalize(host), port))
    }

    /// Checks the scheme and host of a URL, and the address when the host is an IP literal
    /// (on the URL's port, or its scheme's).
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
        let port = url.port_or_known_default().unwrap_or_default();
        match self.check_at(host, ip, port) {
            Ok(()) => Ok(()),
            Err(Refused::NotPublic) => Err(FetchError::BlockedAddress(format!(
                "{ip} is not a public address"
            ))),
            Err(Refused::OtherPort) => Err(FetchError::BlockedAddress(format!(
                "{ip} is not a public address, and is allowed on other ports than {port} only"
            ))),
        }
    }
}

/// A host name as entries hold it: lowercase, without the trailing dot.
fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

pub use pipeline_core::net::is_public;

/// The HTTP client's DNS resolver: resolves with the system resolver and refuses the host
/// when any of its addresses is not allowed, on its port when it is bound to one.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    port: Option<u16>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy` for a client whose port is not known: only entries
    /// without a port allow a non-public address.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy, port: None }
    }

    /// A resolver enforcing `policy` for a client that only connects to `port`.
    pub fn at_port(policy: Arc<AddressPolicy>, port: u16) -> Self {
        Self {
            policy,
            port: Some(port),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let port = self.port;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // One bad address refuses the host: a name mixing public and private
            // addresses is exactly what a rebinding attack looks like.
            let allowed = |ip| match port {
                Some(port) => policy.allows_at(&host, ip, port),
                None => policy.allows(&host, ip),
            };
            if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip())) {
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

    #[test]
    fn an_entry_with_a_port_allows_that_port_only() {
        let policy = AddressPolicy::parse(&[
            "127.0.0.1:8080".into(),
            "[::1]:8080".into(),
            "Demo.Local:8443".into(),
            "10.0.0.9".into(),
        ])
        .unwrap();
        let v4 = "127.0.0.1".parse().unwrap();
        let v6 = "::1".parse().unwrap();
        let private = "10.0.0.5".parse().unwrap();
        assert!(policy.allows_at("127.0.0.1", v4, 8080));
        assert_eq!(
            policy.check_at("127.0.0.1", v4, 8081),
            Err(Refused::OtherPort)
        );
        // The address rule holds whatever name resolves to it.
        assert!(policy.allows_at("anything.example", v4, 8080));
        assert!(!policy.allows_at("anything.example", v4, 80));
        assert!(policy.allows_at("::1", v6, 8080));
        assert!(!policy.allows_at("::1", v6, 443));
        assert!(policy.allows_at("demo.local.", private, 8443));
        assert_eq!(
            policy.check_at("demo.local", private, 80),
            Err(Refused::OtherPort)
        );
        assert_eq!(
            policy.check_at("other.local", private, 8443),
            Err(Refused::NotPublic)
        );
        // Without a port an entry allows every port, as before.
        assert!(policy.allows_at("x", "10.0.0.9".parse().unwrap(), 1));
        assert!(policy.allows("x", "10.0.0.9".parse().unwrap()));
        // Where the port is not known, a port-bound entry allows nothing.
        assert!(!policy.allows("127.0.0.1", v4));
        assert!(!policy.allows("demo.local", private));
        assert_eq!(policy.ports(), [8080, 8443].into());

        let check = |u: &str| policy.check_url(&Url::parse(u).unwrap());
        assert!(check("http://127.0.0.1:8080/x").is_ok());
        assert!(check("http://[::1]:8080/x").is_ok());
        for refused in [
            "http://127.0.0.1/",
            "https://127.0.0.1/",
            "http://127.0.0.1:8081/",
            "http://[::1]/",
            "http://127.0.0.2:8080/",
        ] {
            assert!(
                matches!(check(refused), Err(FetchError::BlockedAddress(_))),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_bad_entry_is_an_error_or_allows_nothing() {
        let err =
            AddressPolicy::parse(&["127.0.0.1".into(), "127.0.0.1:99999".into()]).unwrap_err();
        assert!(err.contains("`127.0.0.1:99999`"), "{err}");
        let lenient = AddressPolicy::new(&["127.0.0.1:0".into(), "localhost".into()]);
        let v4 = "127.0.0.1".parse().unwrap();
        assert!(!lenient.allows_at("127.0.0.1", v4, 0));
        assert!(!lenient.allows("127.0.0.1", v4));
        assert!(lenient.allows("localhost", v4));
    }

    #[tokio::test]
    async fn a_resolver_bound_to_a_port_applies_port_entries() {
        let policy = Arc::new(AddressPolicy::parse(&["localhost:8080".into()]).unwrap());
        let name = || "localhost".parse::<Name>().unwrap();
        assert!(
            GuardedResolver::at_port(policy.clone(), 8080)
                .resolve(name())
                .await
                .is_ok()
        );
        for resolver in [
            GuardedResolver::at_port(policy.clone(), 8081),
            GuardedResolver::new(policy),
        ] {
            let err = resolver.resolve(name()).await.err().expect("refused");
            assert!(err.downcast_ref::<Blocked>().is_some());
        }
    }
}
