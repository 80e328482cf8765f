//! The one integration test binary: real sockets on 127.0.0.1, the real
//! kernel's io_uring, our demo server, nginx and Python's http.server.

mod backends;
mod doctor;
mod get;
mod load;
mod merge;
mod support;
