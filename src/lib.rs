//! ringway: a thread-per-core, io_uring API gateway. See README.md and ../shared/DESIGN.md.

pub mod http1;
pub mod route;
