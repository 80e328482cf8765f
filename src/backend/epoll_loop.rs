//! Readiness model, hand-written on mio (being written: not usable yet).

use crate::error::{ErrorKind, FetchError};

fn missing() -> FetchError {
    FetchError::new(
        ErrorKind::Other,
        "the epoll-loop backend is not written yet",
    )
}

pub fn run_worker(ctx: super::WorkerCtx) -> Result<crate::stats::Recorder, FetchError> {
    ctx.ready();
    Err(missing())
}

pub fn fetch_all(
    _targets: &[crate::target::Target],
    _opts: &super::ConnOptions,
) -> Result<Vec<Result<super::Fetched, FetchError>>, FetchError> {
    Err(missing())
}
