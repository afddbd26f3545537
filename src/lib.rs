//! ringway: a thread-per-core, io_uring API gateway. See README.md and ../shared/DESIGN.md.
//!
//! Request path: `worker` accepts → `proxy` reads the head (`http1`), routes (`route`) against
//! the compiled `config`, runs the action, forwards through `upstream` pools; `error` renders
//! every failure. `control` owns signals and reloads.

pub mod admin;
pub mod config;
pub mod control;
pub mod error;
pub mod http1;
pub mod io;
pub mod json;
pub mod log;
pub mod proxy;
pub mod request_id;
pub mod route;
pub mod upstream;
pub mod worker;
