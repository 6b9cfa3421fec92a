//! Who the client is, as far as the network says: its address, for per-address limits. The
//! TCP peer, unless the peer is a reverse proxy named in `TRUSTED_PROXIES`: then the address it
//! forwards in `X-Forwarded-For`. Anyone can send that header, so it counts only from those
//! proxies, and only as far as they vouch for it (docs/deploy.md, "Behind a reverse proxy").

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use ipnet::IpNet;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy. Each proxy appends the
/// address it received the request from, so the list is read from its right end; whatever a
/// client wrote at its left end is reached only if every proxy after it is trusted.
pub fn address(req: &HttpRequest, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = |addr: &IpAddr| trusted_proxies.iter().any(|net| net.contains(addr));
    if !trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all(FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address: the proxy before it wrote something we cannot use, so
        // the last address a trusted proxy vouched for is the client.
        let Some(addr) = parse_hop(hop) else { break };
        client = addr;
        if !trusted(&addr) {
            break;
        }
    }
    Some(client)
}

/// `1.2.3.4`, `2001:db8::1`, or either with a port (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn from(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
        for value in forwarded {
            req = req.append_header((FORWARDED_FOR, *value));
        }
        req.to_http_request()
    }

    fn proxies(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|net| net.parse().unwrap()).collect()
    }

    fn ip(addr: &str) -> Option<IpAddr> {
        Some(addr.parse().unwrap())
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let untrusted = from("203.0.113.9:4000", &["198.51.100.1"]);
        assert_eq!(address(&untrusted, &[]), ip("203.0.113.9"));
        assert_eq!(address(&untrusted, &proxies(&["10.0.0.0/8"])), ip("203.0.113.9"));

        let proxied = from("10.0.0.5:4000", &["198.51.100.1"]);
        assert_eq!(address(&proxied, &proxies(&["10.0.0.0/8"])), ip("198.51.100.1"));
        assert_eq!(address(&proxied, &[]), ip("10.0.0.5"), "no proxy trusted: the peer is the client");
    }

    #[test]
    fn what_a_client_writes_before_the_proxies_is_not_believed() {
        // The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real address.
        let spoofed = from("10.0.0.5:4000", &["1.1.1.1, 198.51.100.1"]);
        assert_eq!(address(&spoofed, &proxies(&["10.0.0.0/8"])), ip("198.51.100.1"));
        // Two proxies, each trusted, each appending: the first untrusted address from the right.
        let chained = from("10.0.0.5:4000", &["1.1.1.1", "198.51.100.1, 10.0.0.7"]);
        assert_eq!(address(&chained, &proxies(&["10.0.0.0/8"])), ip("198.51.100.1"));
        // Junk where an address should be: the last address a trusted proxy vouched for.
        let junk = from("10.0.0.5:4000", &["1.1.1.1, not-an-address, 10.0.0.7"]);
        assert_eq!(address(&junk, &proxies(&["10.0.0.0/8"])), ip("10.0.0.7"));
        let with_ports = from("10.0.0.5:4000", &["[2001:db8::1]:443"]);
        assert_eq!(address(&with_ports, &proxies(&["10.0.0.0/8"])), ip("2001:db8::1"));
    }
}
