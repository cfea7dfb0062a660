//! Identity names: `<sa>.<ns>.serviceaccount.identity.tulle.<trust-domain>` (DNS SAN) and
//! `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` (URI SAN).

use std::fmt;

/// The default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The audience of the projected ServiceAccount token a proxy sends to identity.
pub const TOKEN_AUDIENCE: &str = "identity.tulle.io";

const MIDDLE: &str = ".serviceaccount.identity.tulle.";

/// The identity of a ServiceAccount in a trust domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountIdentity {
    /// ServiceAccount name.
    pub service_account: String,
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Trust domain, `cluster.local` by default.
    pub trust_domain: String,
}

/// An identity name could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The name is not of the form `<sa>.<ns>.serviceaccount.identity.tulle.<trust-domain>`.
    #[error(
        "{0:?} is not an identity name; expected <sa>.<ns>.serviceaccount.identity.tulle.<trust-domain>"
    )]
    Malformed(String),
}

impl ServiceAccountIdentity {
    /// Builds the identity of `service_account` in `namespace`.
    pub fn new(
        service_account: impl Into<String>,
        namespace: impl Into<String>,
        trust_domain: impl Into<String>,
    ) -> Self {
        Self {
            service_account: service_account.into(),
            namespace: namespace.into(),
            trust_domain: trust_domain.into(),
        }
    }

    /// The DNS-like name, used as DNS SAN and TLS server name.
    pub fn dns_name(&self) -> String {
        format!(
            "{}.{}{MIDDLE}{}",
            self.service_account, self.namespace, self.trust_domain
        )
    }

    /// The SPIFFE ID, used as URI SAN.
    pub fn spiffe_uri(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// Parses a DNS-like identity name.
    pub fn parse_dns_name(name: &str) -> Result<Self, NameError> {
        let bad = || NameError::Malformed(name.to_string());
        let (head, td) = name.split_once(MIDDLE).ok_or_else(bad)?;
        // A namespace is a DNS label (no dots); a ServiceAccount name is a DNS subdomain and
        // may contain dots (`app.v2`): the namespace is the last label before MIDDLE.
        let (sa, ns) = head.rsplit_once('.').ok_or_else(bad)?;
        let label_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| !l.is_empty())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !label_ok(sa) || ns.len() > 63 || !label_ok(ns) || !label_ok(td) {
            return Err(bad());
        }
        Ok(Self::new(sa, ns, td))
    }
}

impl fmt::Display for ServiceAccountIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dns_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = ServiceAccountIdentity::new("web", "shop", DEFAULT_TRUST_DOMAIN);
        assert_eq!(
            id.dns_name(),
            "web.shop.serviceaccount.identity.tulle.cluster.local"
        );
        assert_eq!(id.spiffe_uri(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(
            ServiceAccountIdentity::parse_dns_name(&id.dns_name()),
            Ok(id)
        );
    }

    /// ServiceAccount names are DNS subdomains: dots are valid (issue 15 item 8; the proxy
    /// used to exit on them and identity refused to certify them).
    #[test]
    fn service_account_names_with_dots() {
        let id = ServiceAccountIdentity::new("web.v2", "shop", DEFAULT_TRUST_DOMAIN);
        let name = id.dns_name();
        assert_eq!(
            name,
            "web.v2.shop.serviceaccount.identity.tulle.cluster.local"
        );
        let parsed = ServiceAccountIdentity::parse_dns_name(&name).unwrap();
        assert_eq!(parsed.service_account, "web.v2");
        assert_eq!(parsed.namespace, "shop");
        assert_eq!(parsed, id);
        assert_eq!(
            parsed.spiffe_uri(),
            "spiffe://cluster.local/ns/shop/sa/web.v2"
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "web.shop.cluster.local",
            ".shop.serviceaccount.identity.tulle.cluster.local",
            "web.serviceaccount.identity.tulle.cluster.local",
            "web..b.serviceaccount.identity.tulle.cluster.local",
            ".web.b.serviceaccount.identity.tulle.cluster.local",
            "Web.shop.serviceaccount.identity.tulle.cluster.local",
            "web.shop.serviceaccount.identity.tulle.",
        ] {
            assert!(
                ServiceAccountIdentity::parse_dns_name(bad).is_err(),
                "{bad}"
            );
        }
    }
}
