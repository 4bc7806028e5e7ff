//! Ports without races. A server this process starts binds port 0 and reports
//! the port it got (the sidecar logs it: [`super::SidecarProc`]). A port that
//! must be chosen before its server exists — an app's `--app-port`, handed to an
//! app process that binds it itself — is a [`ReservedPort`]: held by this
//! process from the moment it is chosen until the test ends, so that nothing
//! else on the machine can take it meanwhile.
//!
//! Picking a free port by binding port 0 and closing it again (the old
//! `free_port()`) is a race: until the child binds it, any other `bind(0)` on
//! the machine may get it. On Linux a `bind(0)` with `SO_REUSEADDR` (std, tokio,
//! Go, Node, Python's servers) draws from the odd ports of the lower half of the
//! ephemeral range, about 3,500 ports, so parallel tests collide often enough to
//! fail a run now and then (`launcher::sigterm_stops_the_app_and_its_children`
//! did: the app lost its port, exited, and the test waited 60 s for `READY`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

/// A port on 127.0.0.1 bound by this process with `SO_REUSEADDR` and not
/// listening. While it is held:
/// - no `bind(0)` and no outgoing connection anywhere on the machine gets it,
///   and a bind without `SO_REUSEADDR` fails;
/// - a server that binds it with `SO_REUSEADDR` (the sidecar, tokio and std
///   listeners, Go, Node, Python's `socketserver`, gRPC, the JVM) listens on it
///   as if it were free, and may stop and listen on it again;
/// - when nothing else listens, connections to it are refused (a port where
///   nobody answers).
///
/// Released on drop.
pub struct ReservedPort {
    _socket: tokio::net::TcpSocket,
    port: u16,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind 127.0.0.1:0");
        let port = socket.local_addr().unwrap().port();
        ReservedPort {
            _socket: socket,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReservedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReservedPort({})", self.port)
    }
}

/// `127.0.0.1:<port>` where nobody listens, for as long as this test process
/// runs: a broker or collector address that refuses connections.
pub fn closed_addr() -> String {
    static CLOSED: OnceLock<ReservedPort> = OnceLock::new();
    CLOSED.get_or_init(ReservedPort::new).addr()
}

#[test]
fn a_reserved_port_is_kept_from_others_and_lent_to_reuseaddr_servers() {
    let reserved = ReservedPort::new();
    let port = reserved.port();
    // Nobody listens: refused.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // A bind without SO_REUSEADDR fails...
    assert!(
        !plain_bind_succeeds(port),
        "a bind without SO_REUSEADDR got the reserved port {port}"
    );
    // ...std's listener (SO_REUSEADDR) serves on it, twice in a row...
    for _ in 0..2 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        drop((client, listener));
    }
    // ...and bind(0) never hands it out.
    for _ in 0..2000 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_ne!(l.local_addr().unwrap().port(), port);
    }
}

/// True when a socket without SO_REUSEADDR can bind `port`.
fn plain_bind_succeeds(port: u16) -> bool {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(false).unwrap();
    s.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .is_ok()
}
