//! What the service is told about the network: where clients reach it (`PUBLIC_URL`) and which
//! proxies' forwarding headers it believes (`TRUSTED_PROXIES`), parsed and checked.

use std::net::SocketAddr;

use ipnet::IpNet;

/// `PUBLIC_URL`, checked: `http` or `https`, a host, perhaps a port and a path prefix, nothing
/// else. Kept without a trailing slash, so a path starting with `/` joins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = url::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the scheme must be http or https".into());
        }
        if url.host_str().is_none() || url.cannot_be_a_base() {
            return Err("a host is required".into());
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            return Err("give scheme, host, port and path only (no credentials, query or fragment)".into());
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The address a dev process listens on, as a URL.
    pub fn of_listener(addr: SocketAddr) -> Self {
        Self(format!("http://{addr}"))
    }

    /// `path` (starting with `/`) as an absolute URL of this service.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

pub(super) fn parse_network(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{value:?} is neither an address nor a network (CIDR)"))
}
