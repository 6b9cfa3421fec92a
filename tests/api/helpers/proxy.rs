//! Outages on demand: proxies in front of the services, and their addresses.

use super::*;

/// A TCP proxy in front of PostgreSQL or RabbitMQ that a test can take down (refusing and
/// cutting every connection), freeze (connections stay open but nothing gets through: a hung
/// peer) and bring back: outages and restarts, seen from the service.
pub struct TcpProxy {
    pub port: u16,
    state: std::sync::Arc<tokio::sync::watch::Sender<ProxyState>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyState {
    Up,
    Down,
    Frozen,
}

impl TcpProxy {
    /// Starts down; call `set_up(true)` to let traffic through.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, watcher) = tokio::sync::watch::channel(ProxyState::Down);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watcher = watcher.clone();
                let at_accept = *watcher.borrow();
                match at_accept {
                    ProxyState::Down => continue, // the connection is dropped at once
                    ProxyState::Frozen => {
                        // Held open, never answered, until the state changes; then cut.
                        tokio::spawn(async move {
                            let _held = inbound;
                            let _ = watcher.wait_for(|state| *state != ProxyState::Frozen).await;
                        });
                    }
                    ProxyState::Up => {
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                                _ = watcher.wait_for(|state| *state != ProxyState::Up) => {}
                            }
                            // Frozen: keep both ends open without forwarding a byte, until the
                            // state changes again; down or back up, the connection is cut.
                            if *watcher.borrow() == ProxyState::Frozen {
                                let _ = watcher.wait_for(|state| *state != ProxyState::Frozen).await;
                            }
                        });
                    }
                }
            }
        });
        Self { port, state: std::sync::Arc::new(state) }
    }

    pub fn set_up(&self, up: bool) {
        self.state.send_replace(if up { ProxyState::Up } else { ProxyState::Down });
    }

    /// A hung peer: open connections stay open and new ones are accepted, but nothing is
    /// forwarded either way until `set_up`.
    pub fn freeze(&self) {
        self.state.send_replace(ProxyState::Frozen);
    }
}

/// The test broker's URL split around its address: `(scheme and user, address, vhost path)`.
fn broker_url_parts() -> (String, std::net::SocketAddr, String) {
    let url = amqp_url();
    let (prefix, rest) = url.rsplit_once('@').expect("TEST_AMQP_URL has user@host");
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = host_port.replace("localhost", "127.0.0.1").parse().expect("TEST_AMQP_URL host:port");
    (prefix.to_owned(), addr, path.to_owned())
}

/// The RabbitMQ address of the test broker.
pub fn broker_addr() -> std::net::SocketAddr {
    broker_url_parts().1
}

/// The test broker's URL, reached through a proxy on `port` instead.
pub fn amqp_url_via(port: u16) -> String {
    let (prefix, _, path) = broker_url_parts();
    format!("{prefix}@127.0.0.1:{port}/{path}")
}

/// A local port nobody listens on (bound, then released).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
