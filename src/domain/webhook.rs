use std::net::IpAddr;

use super::Invalid;

/// Every event type an organization's webhooks may take (the database's `events_type_known`).
pub const EVENT_TYPES: [&str; 9] = [
    "file.uploaded",
    "file.ready",
    "file.failed",
    "file.deleted",
    "member.joined",
    "member.role_changed",
    "member.deactivated",
    "link.created",
    "link.revoked",
];

/// The most event types one endpoint lists (`["*"]` takes them all).
const MAX_EVENT_TYPES: usize = 10;

/// The most characters of a URL (the database says the same).
const MAX_URL_CHARS: usize = 2048;

/// The events an endpoint takes: known types, without duplicates, or `["*"]` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSelection(Vec<String>);

impl EventSelection {
    pub fn parse(raw: &[String]) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > MAX_EVENT_TYPES {
            return Err(Invalid::new(
                "invalid_events",
                format!("events lists 1 to {MAX_EVENT_TYPES} event types, or [\"*\"] for all"),
            ));
        }
        if let Some(unknown) = raw.iter().find(|t| t.as_str() != "*" && !EVENT_TYPES.contains(&t.as_str())) {
            return Err(Invalid::new(
                "invalid_events",
                format!("unknown event type {unknown:?} (known: {}, or \"*\")", EVENT_TYPES.join(", ")),
            ));
        }
        if raw.iter().any(|t| t == "*") {
            return Ok(Self(vec!["*".to_owned()]));
        }
        let mut types: Vec<String> = Vec::with_capacity(raw.len());
        for kind in raw {
            if !types.contains(kind) {
                types.push(kind.clone());
            }
        }
        Ok(Self(types))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Where an endpoint receives deliveries: an absolute `https` URL (`http` only where the
/// service allows it), with a host, without credentials or a fragment. Where its host
/// resolves to is checked separately, at creation and at every delivery ([`is_public`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, Invalid> {
        let invalid = |why: &str| Invalid::new("invalid_url", format!("url {why}"));
        if raw.chars().count() > MAX_URL_CHARS {
            return Err(invalid(&format!("is longer than {MAX_URL_CHARS} characters")));
        }
        let url = url::Url::parse(raw).map_err(|e| invalid(&format!("is not an absolute URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(invalid("must use https (plain http is allowed only with WEBHOOK_ALLOW_HTTP)")),
            _ => return Err(invalid("must use https")),
        }
        if url.host().is_none() {
            return Err(invalid("has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("may not carry credentials (user:password@): they would be listed back"));
        }
        if url.fragment().is_some() {
            return Err(invalid("may not have a fragment"));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Whether a delivery may go to `ip`: not loopback, private, link-local (cloud metadata at
/// 169.254.169.254 included), shared (CGNAT, 100.64.0.0/10, where some clouds' metadata is),
/// unique-local (fd00:ec2::254 included), unspecified, multicast, broadcast, documentation or
/// otherwise reserved; an IPv4 address inside IPv6 (mapped or compatible) is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped().or_else(|| v6.to_ipv4()).filter(|_| !v6.is_loopback()) {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still private)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64, which reaches IPv4 inside
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(types: &[&str]) -> Vec<String> {
        types.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn event_selections_take_known_types_or_everything() {
        assert_eq!(EventSelection::parse(&list(&["file.ready", "file.ready"])).unwrap().as_slice(), ["file.ready"]);
        assert_eq!(EventSelection::parse(&list(&["file.ready", "*"])).unwrap().as_slice(), ["*"]);
        for bad in [list(&[]), list(&["file.readyy"]), list(&["FILE.READY"]), list(&["*"; 11])] {
            assert_eq!(EventSelection::parse(&bad).unwrap_err().code, "invalid_events", "{bad:?}");
        }
    }

    #[test]
    fn urls_are_https_with_a_host_and_no_credentials() {
        assert!(WebhookUrl::parse("https://hooks.example.com/in?token=x", false).is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/", true).is_ok());
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
            "hooks.example.com",
            "",
            "file:///etc/passwd",
        ] {
            assert_eq!(WebhookUrl::parse(bad, false).unwrap_err().code, "invalid_url", "{bad}");
        }
        assert!(WebhookUrl::parse(&format!("https://e.com/{}", "a".repeat(2048)), false).is_err());
    }

    #[test]
    fn only_public_addresses_are_destinations() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
