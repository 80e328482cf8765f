//! The one integration test binary: real sockets on 127.0.0.1, the real
//! kernel's io_uring, our demo server, nginx and Python's http.server.

mod backends;
mod docs;
mod doctor;
mod fault_server;
mod faults;
mod get;
mod h2;
mod limits;
mod live;
mod load;
mod merge;
mod parser_props;
mod reports;
mod seccomp;
mod serve;
mod serve_h2;
mod session;
mod support;
mod tls;
