//! The demo server: the article's `/foo` and `/bar` after a delay, plus a few
//! routes useful for load tests. Built on tokio-uring, one ring per thread,
//! each thread with its own `SO_REUSEPORT` listener.

use std::net::SocketAddr;
use std::time::Duration;

/// How the demo server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Delay before `/foo` and `/bar` answer.
    pub delay: Duration,
    /// Threads, each with one io_uring and one listener.
    pub threads: usize,
    /// Largest request head accepted; larger gets 431.
    pub max_head_bytes: usize,
    /// A connection idle (or dribbling its head) this long is closed.
    pub idle_timeout: Duration,
}

/// A running server; dropping it does not stop it, call `shutdown`.
pub struct ServerHandle {
    pub addr: SocketAddr,
}

impl ServerHandle {
    pub fn shutdown(self) {
        todo!("helper implements")
    }
}

/// Binds the listeners and starts the server threads; returns once it accepts.
pub fn start(opts: ServeOptions) -> std::io::Result<ServerHandle> {
    let _ = opts;
    todo!("helper implements")
}

/// Runs the server until Ctrl-C.
pub fn run_foreground(opts: ServeOptions) -> anyhow::Result<()> {
    let _ = opts;
    todo!("helper implements")
}
